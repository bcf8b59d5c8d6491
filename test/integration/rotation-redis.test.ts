/**
 * The CA rotation proof against a real Redis server (`tls-auth-clients yes`): the client CA and then the
 * server CA rotate phase by phase, the server takes new TLS files with `CONFIG SET tls-cert-file …
 * tls-key-file … tls-ca-cert-file …` as the README says, and a client opening a connection every 100 ms and
 * holding one open, through the tunnel proxy and directly with verified TLS, sees no failure and no drop;
 * afterwards every certificate chains only to the new keys. The rollback does the same. Fails with an
 * install message when redis-server is missing.
 */
import { chown, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { type StartedRedis, startRedis } from '../support/devdb/redis.js';
import { type Connection, type DatabaseTls, type Engine, rotationSuite } from '../support/rotation-proof.js';

/** The two ways the proof reaches Redis: TLS with the output's files, or plain to the tunnel. */
interface Target {
  host: string;
  port: number;
  tls?: { cert: string; key: string; ca: string; servername: string; rejectUnauthorized: boolean };
}

async function connect(options: Target): Promise<Connection> {
  const client = new Redis({
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 5_000,
    disableClientInfo: true,
    ...options,
  });
  client.on('error', () => undefined);
  await client.connect();
  return {
    ping: async () => {
      if ((await client.ping()) !== 'PONG') throw new Error('PING did not answer PONG');
    },
    close: async () => void (await client.quit()),
  };
}

class RedisEngine implements Engine {
  readonly protocol = 'redis' as const;
  private server: StartedRedis | undefined;
  private dir = '';
  private installs = 0;

  async start(baseDir: string, tls: DatabaseTls): Promise<number> {
    this.dir = path.resolve(baseDir);
    this.server = await startRedis({ baseDir, tls });
    return this.server.port;
  }

  /**
   * The README's step: write the new files and point Redis at them with CONFIG SET, which reloads its TLS
   * context (new names each time: Redis reloads when a setting changes).
   */
  async install(tls: DatabaseTls): Promise<void> {
    const n = ++this.installs;
    const owner = await stat(path.join(this.dir, 'server.crt'));
    const files = {
      cert: path.join(this.dir, `server-${n}.crt`),
      key: path.join(this.dir, `server-${n}.key`),
      ca: path.join(this.dir, `client-ca-${n}.crt`),
    };
    await writeFile(files.cert, tls.serverCertPem, { mode: 0o600 });
    await writeFile(files.key, tls.serverKeyPem, { mode: 0o600 });
    await writeFile(files.ca, tls.clientCaPem, { mode: 0o600 });
    for (const f of Object.values(files)) await chown(f, owner.uid, owner.gid);
    const out = await (this.server as StartedRedis).cli([
      'CONFIG',
      'SET',
      'tls-cert-file',
      files.cert,
      'tls-key-file',
      files.key,
      'tls-ca-cert-file',
      files.ca,
    ]);
    if (out.trim() !== 'OK') throw new Error(`CONFIG SET answered ${out.trim()}`);
  }

  direct(bundle: { files: Record<string, string | undefined> }, port: number): Promise<Connection> {
    return connect({
      host: '127.0.0.1',
      port,
      tls: {
        cert: bundle.files.tlscert as string,
        key: bundle.files.key as string,
        ca: bundle.files['teleport-database-ca.crt'] as string,
        servername: 'localhost',
        rejectUnauthorized: true,
      },
    });
  }

  tunnel(port: number): Promise<Connection> {
    return connect({ host: '127.0.0.1', port });
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

rotationSuite('a real Redis server', () => new RedisEngine());
