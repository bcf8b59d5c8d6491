#!/usr/bin/env bash
# Builds FerretDB (a MongoDB-wire server on PostgreSQL) for the MongoDB integration tests
# (test/support/devdb/ferretdb.ts): the pinned release, from the Go module proxy, with the installed Go, and
# with .ci/ferretdb-tls-reload.patch applied: it adds mongod's `rotateCertificates` command, so that the CA
# rotation proof reloads FerretDB's TLS files the way an operator reloads mongod's, without the restart that
# would close every open connection.
#
# Cached: the binary lives in $CACHE/<version>-tls-reload-<first 12 hex of the patch's SHA-256>/ferretdb and
# is rebuilt only when it is missing or does not report the pinned version and that patch (`--version` prints
# `package: source+tls-reload-<hash>`), so a changed patch, or a binary built without it, is never used;
# /usr/local/bin/ferretdb links to it. A cold build downloads about 90 modules and takes minutes (it is
# printed); a warm run takes well under a second.
#
# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@<version>` builds a binary that panics at start:
# FerretDB embeds build/version/version.txt, which its release process generates and the module does not
# ship. So the module is downloaded, copied out of the read-only module cache, given that one-line file and
# built with `go build`, which is what FerretDB's own `task gen-version build-host` amounts to.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
PATCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ferretdb-tls-reload.patch"
[ -r "$PATCH" ] || { echo "$PATCH is missing: FerretDB is built with it (it adds rotateCertificates)" >&2; exit 1; }
PACKAGE="source+tls-reload-$(sha256sum "$PATCH" | cut -c1-12)"
CACHE="${BROKER_FERRETDB_CACHE:-/opt/broker-ci/ferretdb}"
BIN="$CACHE/$FERRETDB_VERSION-${PACKAGE#source+}/ferretdb"
LINK=/usr/local/bin/ferretdb

started=$(date +%s)
reports_pinned() {
  [ -x "$1" ] || return 1
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  grep -qx "version: $FERRETDB_VERSION" <<<"$out" && grep -qx "package: $PACKAGE" <<<"$out"
}

if reports_pinned "$BIN"; then
  echo "FerretDB $FERRETDB_VERSION ($PACKAGE): cached at $BIN"
else
  GO=$(command -v go || true)
  [ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
  if [ -z "$GO" ]; then
    echo "FerretDB $FERRETDB_VERSION must be built, but no Go toolchain was found (looked in PATH and /usr/local/go/bin);" >&2
    echo "install Go 1.24 or later (FerretDB v1.24.2 needs it; https://go.dev/dl/) and run .ci/ferretdb.sh again" >&2
    exit 1
  fi
  echo "Building FerretDB $FERRETDB_VERSION ($PACKAGE) with $("$GO" version) (first run only; takes minutes)"
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  # A module-less directory, so that `go mod download` reads only the proxy and GOFLAGS from the caller.
  src=$(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$GO" mod download -json \
    "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] && [ -d "$src" ] || { echo "go mod download did not report a source directory for FerretDB $FERRETDB_VERSION" >&2; exit 1; }
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  echo "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"
  echo "$PACKAGE" >"$work/src/build/version/package.txt"
  # `patch` is Debian priority "optional", so `git apply` (which needs no repository) stands in for it.
  if command -v patch >/dev/null; then apply=(patch -d "$work/src" -p1 --forward --batch --silent)
  elif command -v git >/dev/null; then apply=(git -C "$work/src" apply -p1 -)
  else echo "applying $PATCH needs \`patch\` or \`git\`; install either (apt-get install patch)" >&2; exit 1; fi
  "${apply[@]}" <"$PATCH" ||
    { echo "$PATCH does not apply to FerretDB $FERRETDB_VERSION; make it again from that release's source" >&2; exit 1; }
  mkdir -p "$(dirname "$BIN")"
  (cd "$work/src" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    "$GO" build -trimpath -o "$BIN.tmp" ./cmd/ferretdb)
  mv -f "$BIN.tmp" "$BIN"
  reports_pinned "$BIN" || { echo "the FerretDB built at $BIN does not report version $FERRETDB_VERSION and package $PACKAGE:" >&2; "$BIN" --version >&2 || true; exit 1; }
fi

if [ -w "$(dirname "$LINK")" ] && [ "$(readlink "$LINK" 2>/dev/null || true)" != "$BIN" ]; then
  ln -sfn "$BIN" "$LINK"
fi
echo "FerretDB $FERRETDB_VERSION ($PACKAGE) ready at $BIN in $(($(date +%s) - started)) s"
