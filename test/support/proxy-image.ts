/**
 * The proxy sidecar image (proxy-container/Dockerfile) as CI builds it with podman (.ci/image.sh), run as a
 * container the way ECS runs it: the image's own user, a read-only root file system, configuration by
 * environment. Host networking, so the container reaches the test's loopback servers (a Secrets Manager
 * double or moto, PostgreSQL) and the test reaches the proxy's port and diagnostics.
 *
 * In CI (CI=true) a missing podman or image fails the test that needs it; elsewhere the test is skipped
 * with a message saying to run `bash .ci/image.sh`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { freePort } from '../../src/devdb/postgres.js';
import { type RunResult, run } from './run.js';

const IMAGE_NAME_FILE = `${process.env.BROKER_IMAGE_CACHE ?? '/opt/broker-ci/image'}/image-name`;

/** The image to run: $BROKER_PROXY_IMAGE, or the one .ci/image.sh last built. */
function imageName(): string {
  if (process.env.BROKER_PROXY_IMAGE) return process.env.BROKER_PROXY_IMAGE;
  if (existsSync(IMAGE_NAME_FILE)) return readFileSync(IMAGE_NAME_FILE, 'utf8').trim();
  return 'localhost/broker-proxy:ci';
}

/** `podman ARGS`: its exit code and output (never throws on a non-zero exit). */
export function podman(args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return run('podman', args, { timeoutMs });
}

/**
 * The built image's name; in CI a missing podman or image throws. Elsewhere it returns undefined after
 * saying why; the caller skips.
 */
export async function requireProxyImage(): Promise<string | undefined> {
  const image = imageName();
  const found = await podman(['image', 'exists', image]).catch((err: Error) => ({
    code: -1,
    stdout: '',
    stderr: err.message,
  }));
  if (found.code === 0) return image;
  const why = `the proxy image ${image} is not built (${found.code === -1 ? `podman: ${found.stderr}` : 'podman has no such image'}): run \`bash .ci/image.sh\``;
  if (process.env.CI === 'true') throw new Error(`${why}. CI must run the image test.`);
  console.warn(`SKIPPED: ${why}`);
  return undefined;
}

/** A running proxy container. */
export interface ProxyContainer {
  name: string;
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** The diagnostics address (/livez, /readyz, /metrics). */
  diag: string;
  /** `podman healthcheck run`: the image's HEALTHCHECK, as ECS runs it; 0 when healthy. */
  healthcheck(): Promise<number>;
  /** `podman exec` in the container as its user. */
  exec(args: readonly string[]): Promise<RunResult>;
  signal(signal: 'SIGHUP' | 'SIGTERM'): Promise<void>;
  /** Waits for the container to stop; its exit code. */
  exited(timeoutMs?: number): Promise<number>;
  logs(): Promise<string>;
  remove(): Promise<void>;
}

/**
 * Starts the image as ECS would start the sidecar for `secretId`: read-only root file system, the image's
 * user, the task definition's environment, and the endpoint override a test needs (the AWS SDK reads
 * AWS_ENDPOINT_URL_SECRETS_MANAGER itself).
 */
export async function startProxyContainer(options: {
  image: string;
  secretId: string;
  service: string;
  secretsManagerEndpoint: string;
}): Promise<ProxyContainer> {
  const name = `broker-proxy-test-${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  const diag = `127.0.0.1:${await freePort()}`;
  const env = {
    BROKER_BUNDLE_SECRET_ID: options.secretId,
    BROKER_SERVICE: options.service,
    BROKER_PROXY_PORT: String(port),
    BROKER_DIAG_ADDR: diag,
    BROKER_MAX_SIGTERM_DELAY: '10s',
    BROKER_LOG_LEVEL: 'info',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: options.secretsManagerEndpoint,
  };
  const started = await podman([
    'run',
    '--detach',
    '--name',
    name,
    '--read-only',
    '--network=host',
    ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    options.image,
  ]);
  if (started.code !== 0) throw new Error(`podman run failed (${started.code}):\n${started.stderr}`);
  const logs = async () => {
    const out = await podman(['logs', name]);
    return `${out.stdout}${out.stderr}`;
  };
  return {
    name,
    port,
    diag,
    async healthcheck() {
      return (await podman(['healthcheck', 'run', name])).code ?? -1;
    },
    exec: (args) => podman(['exec', name, ...args]),
    async signal(signal) {
      const out = await podman(['kill', '--signal', signal, name]);
      if (out.code !== 0) throw new Error(`podman kill --signal ${signal} failed:\n${out.stderr}`);
    },
    async exited(timeoutMs = 30_000) {
      const out = await podman(['wait', name], timeoutMs);
      if (out.code !== 0) throw new Error(`podman wait failed:\n${out.stderr}`);
      return Number(out.stdout.trim());
    },
    logs,
    async remove() {
      await podman(['rm', '--force', '--time', '0', name]);
    },
  };
}
