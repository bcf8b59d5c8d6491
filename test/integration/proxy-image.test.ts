/**
 * The proxy sidecar image, built from proxy-container/Dockerfile by podman (.ci/image.sh), run as ECS runs
 * it: as the image's unprivileged user with a read-only root file system, configured by environment,
 * reading its bundle from Secrets Manager (the double, and moto in server mode, over loopback). Its HEALTHCHECK fails until a bundle
 * exists and passes after; it serves a PostgreSQL query through the tunnel to a real server with the
 * bundle's certificate; and on SIGTERM it drains the open connection before it exits 0.
 */
import path from 'node:path';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { requirePythonTool, startMoto } from '../support/aws/moto.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { EXAMPLE, exampleResourcesYaml, issueBundle } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { type ProxyContainer, requireProxyImage, startProxyContainer } from '../support/proxy-image.js';
import { tempDir } from '../support/temp.js';

const image = await requireProxyImage();
const motoServer = image ? requirePythonTool('moto_server') : undefined;

/** Where the container reads its bundle: an endpoint, and a client for the test to write with. */
interface SecretsBackend {
  endpoint: string;
  client: SecretsManagerClient;
  close(): Promise<void>;
}

const BACKENDS: { name: string; skip: boolean; start(): Promise<SecretsBackend> }[] = [
  {
    name: 'the Secrets Manager double',
    skip: !image,
    async start() {
      const double = await SecretsManagerDouble.start();
      // Retries: a keep-alive connection the double closed while the container started is simply reopened.
      const client = double.client({ maxAttempts: 3 });
      return {
        endpoint: double.endpoint,
        client,
        close: async () => {
          client.destroy();
          await double.close();
        },
      };
    },
  },
  {
    name: 'moto',
    skip: !image || !motoServer,
    async start() {
      const moto = await startMoto(motoServer as string);
      const client = new SecretsManagerClient({ ...moto.clientOptions(), maxAttempts: 3 });
      return {
        endpoint: moto.endpoint,
        client,
        close: async () => {
          client.destroy();
          await moto.close();
        },
      };
    },
  },
];
const SECRET = 'broker/image-test/example';
const WHO_AM_I =
  'SELECT current_user AS user, s.ssl, s.client_serial::text AS serial FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()';

/** Polls `check` every 250 ms until it is true; a timeout shows the container's output. */
async function until(
  proxy: ProxyContainer,
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting until ${what}; the container's output:\n${await proxy.logs()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(!image)('the proxy image (podman, read-only root, non-root user)', () => {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let server: StartedPostgres | undefined;
  const containers: ProxyContainer[] = [];

  beforeAll(async () => {
    await requirePostgres();
    work = await tempDir('proxy-image');
    await authority.initialize();
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: EXAMPLE.service });
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['alice'],
      databases: ['example'],
    });
    await authority.createResources(
      parseResources(exampleResourcesYaml({ db: { uri: `localhost:${server.port}` } }), 'resources.yaml'),
    );
  });

  afterAll(async () => {
    for (const container of containers) {
      // The container's own output, for a failure's diagnosis.
      if (process.env.BROKER_TEST_LOG) console.log(await container.logs());
      await container.remove();
    }
    await server?.stop();
    await work?.cleanup();
  });

  for (const backend of BACKENDS)
    it.skipIf(backend.skip)(
      `reading ${backend.name}: runs as its own user on a read-only root, is unhealthy without a bundle, serves PostgreSQL with one, and drains on SIGTERM`,
      async () => {
        const aws = await backend.start();
        try {
          const sm = aws.client;
          // The stack creates the output's secret empty; the first bot run fills it.
          await sm.send(new CreateSecretCommand({ Name: SECRET }));
          const proxy = await startProxyContainer({
            image: image as string,
            secretId: SECRET,
            service: EXAMPLE.service,
            secretsManagerEndpoint: aws.endpoint,
          });
          containers.push(proxy);

          // The image's user, not root; the root file system refuses writes.
          expect((await proxy.exec(['id', '-u'])).stdout.trim()).toBe('1000');
          const write = await proxy.exec(['sh', '-c', 'echo x > /app/written']);
          expect(write.code).not.toBe(0);
          expect(write.stderr).toMatch(/Read-only file system/);

          // The proxy is up (its diagnostics answer) but has no bundle: the HEALTHCHECK fails.
          await until(proxy, 'the proxy serves /livez', async () =>
            fetch(`http://${proxy.diag}/livez`).then(
              (r) => r.ok,
              () => false,
            ),
          );
          expect(await proxy.healthcheck()).not.toBe(0);
          expect((await fetch(`http://${proxy.diag}/readyz`)).status).toBe(503);

          // The bot's first run writes the bundle; the proxy reads it (at once on SIGHUP) and turns healthy.
          const bundle = await issueBundle(authority, { slot: 3 });
          expect(bundle.endpoint).toBe(`localhost:${server?.port}`);
          await new SecretsManagerDestination({ client: sm, secretId: SECRET }).write(bundle);
          await proxy.signal('SIGHUP');
          await until(proxy, 'the HEALTHCHECK passes', async () => (await proxy.healthcheck()) === 0);

          // Tunnel: no TLS and no password from the client; the proxy attaches alice's certificate upstream.
          const client = new pg.Client({
            host: '127.0.0.1',
            port: proxy.port,
            user: 'alice',
            database: 'example',
            ssl: false,
          });
          await client.connect();
          const who = await client.query(WHO_AM_I);
          expect(who.rows[0]).toEqual({
            user: 'alice',
            ssl: true,
            serial: BigInt(`0x${bundle.serial}`).toString(),
          });

          // SIGTERM with a connection open: the proxy stops being ready, keeps serving the open connection, and
          // exits 0 once it closes.
          await proxy.signal('SIGTERM');
          await until(proxy, 'the proxy reports draining', async () =>
            fetch(`http://${proxy.diag}/readyz`).then(
              async (r) =>
                r.status === 503 && ((await r.json()) as { reason?: string }).reason === 'draining',
              () => false,
            ),
          );
          expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
          await client.end();
          expect(await proxy.exited()).toBe(0);
          expect(await proxy.logs()).toContain('all connections finished; exiting');
        } finally {
          await aws.close();
        }
      },
      120_000,
    );
});
