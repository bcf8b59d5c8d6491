#!/usr/bin/env bash
# Builds the proxy sidecar image (proxy-container/Dockerfile) with podman, for the image test
# (test/integration/proxy-image.test.ts). The official node base image cannot be pulled here, so the same
# base is made locally: a minimal Debian (debootstrap) with the distribution's Node.js, npm from the npm
# registry, and the `node` user (uid 1000) the official image has. It is imported as a local image and passed
# as the build argument BASE_IMAGE, so the shipped Dockerfile still names the official image.
#
# Cached: the base is built once per key (suite, npm version, this recipe) and kept both as a podman image
# and as a tarball under $CACHE, so a rerun imports it in seconds or finds it in place; podman's layer cache
# keeps `npm ci` of an unchanged lockfile. Prints the image name last; writes it to $CACHE/image-name too.
#
# Podman on this kind of machine (root, no systemd, cgroups v1 with a v2 hierarchy beside it, which crun
# refuses as "hybrid mode"): runc, the cgroupfs manager, host networking (the tests reach loopback) and
# resource limits below the machine's own.
# They are set in the containers.conf this script writes.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=trixie                       # Debian 13: nodejs 20.19
MIRROR=http://deb.debian.org/debian
NPM_VERSION=10.9.4                 # the npm line the official node:20/22 images ship
BASE_PACKAGES=nodejs,ca-certificates
CACHE="${BROKER_IMAGE_CACHE:-/opt/broker-ci/image}"
IMAGE=localhost/broker-proxy:ci

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for p in podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Podman settings that work as root on a machine without systemd.
if [ ! -f /etc/containers/containers.conf ] || ! grep -q 'broker-ci v3' /etc/containers/containers.conf; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee /etc/containers/containers.conf >/dev/null <<'CONF'
# broker-ci v3: podman as root without systemd (written by .ci/image.sh)
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
netns = "host"
# runc may not raise the limits to this machine's own maxima ("setting rlimit ... operation not permitted").
default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]
CONF
fi

mkdir -p "$CACHE"
# The machine's own extra CA certificates (a TLS-inspecting egress proxy's, if any) go into the base, so
# `npm ci` in the build stage reaches the registry as the host does; they are part of the key too.
recipe_hash=$( (sed -n '/^# BASE RECIPE/,/^# END BASE RECIPE/p' "$0"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null) |
  sha256sum | cut -c1-12)
KEY="$SUITE-npm$NPM_VERSION-$recipe_hash"
BASE="localhost/broker-node-base:$KEY"
TARBALL="$CACHE/base-$KEY.tar"

# BASE RECIPE (its text is part of the cache key)
make_base() {
  local work rootfs npmdir
  work=$(mktemp -d "$CACHE/build.XXXXXX")
  rootfs="$work/rootfs"
  echo "Making the base image $BASE (debootstrap $SUITE with $BASE_PACKAGES)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # npm as the official image has it, from the npm registry (its dependencies are bundled in the package).
  npmdir="$rootfs/usr/local/lib/node_modules/npm"
  mkdir -p "$npmdir"
  (cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$npmdir" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  # The official image's unprivileged user.
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  # What a slim image leaves out.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$work"
}
import_base() {
  # Node.js (npm included) trusts the system's CA file, which holds the machine's extra CAs.
  podman import --quiet --change 'CMD ["node"]' --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' "$TARBALL" "$BASE" >/dev/null
}
# END BASE RECIPE

if ! podman image exists "$BASE"; then
  [ -f "$TARBALL" ] || make_base
  import_base
  # Older keys' tarballs and images are of no further use.
  find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "base-$KEY.tar" -delete
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/broker-node-base:' | grep -vx "$BASE"); do
    podman rmi --force "$old" >/dev/null 2>&1 || true
  done
fi

# Podman 4.3 (Debian 12's) cannot name a stage through an ARG (`FROM ${PROXY_BUNDLE} AS bundle`), which
# BuildKit can: such a FROM gets the ARG's default stage name written out; nothing else is changed.
dockerfile="$CACHE/Dockerfile.podman"
bundle_stage=$(sed -n 's/^ARG PROXY_BUNDLE=\([A-Za-z0-9_-]*\)$/\1/p' proxy-container/Dockerfile)
sed "s/^FROM \${PROXY_BUNDLE} /FROM ${bundle_stage:-build} /" proxy-container/Dockerfile >"$dockerfile"

# Containers an interrupted image test left behind.
for leftover in $(podman ps --all --quiet --filter name=broker-proxy-test-); do
  podman rm --force --time 0 "$leftover" >/dev/null 2>&1 || true
done

echo "Building $IMAGE from proxy-container/Dockerfile on $BASE"
build() {
  # Docker's image format, which keeps the HEALTHCHECK (OCI's has none).
  podman build --quiet --format docker --network=host --layers --build-arg "BASE_IMAGE=$BASE" \
    -f "$dockerfile" "$@" . >/dev/null
}
# The build stage is tagged too, so that pruning what earlier builds left keeps its layers (`npm ci` of an
# unchanged lockfile is then cached).
build --target build -t localhost/broker-proxy-build:ci
build -t "$IMAGE"
podman image prune --force >/dev/null
echo "$IMAGE" >"$CACHE/image-name"
echo "$IMAGE"
