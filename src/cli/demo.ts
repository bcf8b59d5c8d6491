import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import pg from 'pg';
import { startAuthorityServer } from '../api/server.js';
import { FileAuditLog } from '../authority/audit.js';
import { Authority } from '../authority/authority.js';
import { parseResources } from '../authority/resources.js';
import { loadBotConfig } from '../bot/config.js';
import { createBot, signalWaiter } from '../bot/runtime.js';
import { findPostgresBinaries, POSTGRES_INSTALL_HINT, startPostgres } from '../devdb/postgres.js';
import { BrokerError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { generateRsaKeyPair } from '../pki/keys.js';
import { FileStateStore, writeFileAtomic } from '../state/file-store.js';

type Out = (line: string) => void;

const EXAMPLES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'examples');

/**
 * Connects with the rendered files exactly as a client would with sslmode=verify-full (server certificate
 * checked against teleport-host-ca.crt and the host name, client certificate from tlscert/key).
 */
export async function checkConnection(opts: {
  port: number;
  outDir: string;
  user?: string;
}): Promise<{ user: string; serial: string; version: string }> {
  const read = (name: string) => fs.readFile(path.join(opts.outDir, name), 'utf8');
  const client = new pg.Client({
    host: 'localhost',
    port: opts.port,
    database: 'example',
    user: opts.user ?? 'alice',
    connectionTimeoutMillis: 10_000,
    ssl: {
      ca: await read('teleport-host-ca.crt'),
      cert: await read('tlscert'),
      key: await read('key'),
      servername: 'localhost',
      rejectUnauthorized: true,
    },
  });
  // No end() after a failed connect: pg can wait forever on a socket the server already refused.
  await client.connect();
  try {
    const { rows } = await client.query<{ user: string; serial: string; version: string }>(
      'SELECT current_user AS user, s.client_serial::text AS serial, s.version FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()',
    );
    return rows[0] as { user: string; serial: string; version: string };
  } finally {
    await client.end();
  }
}

function connectionString(port: number, outDir: string): string {
  const f = (name: string) => path.join(outDir, name);
  return `host=localhost port=${port} dbname=example user=alice sslmode=verify-full sslrootcert=${f('teleport-host-ca.crt')} sslcert=${f('tlscert')} sslkey=${f('key')}`;
}

/**
 * The quick start: a local authority, the example resources, a throwaway PostgreSQL that trusts the
 * broker, a bot writing the default output to a directory, and a real verify-full connection with it.
 */
export function registerDemoCommand(program: Command, out: Out): void {
  program
    .command('demo')
    .description(
      'run the whole broker on this machine: authority, bot, directory output and a throwaway PostgreSQL',
    )
    .option('--dir <dir>', 'working directory for the demo (recreated)', 'var/demo')
    .option('--renewal-interval <duration>', 'how often the bot renews', '1m')
    .option('--once', 'render and connect once, then exit')
    .action(async (opts: { dir: string; renewalInterval: string; once?: boolean }) => {
      const dir = path.resolve(opts.dir);
      const rel = (p: string) => path.relative(process.cwd(), p) || '.';
      if (!(await findPostgresBinaries())) throw new BrokerError('missing_dependency', POSTGRES_INSTALL_HINT);
      await fs.rm(dir, { recursive: true, force: true });
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      const log = createLogger({
        base: { component: 'demo' },
        level: process.env.BROKER_LOG_LEVEL ?? 'warn',
      });

      out(`1/5  Authority: new CAs in ${rel(path.join(dir, 'authority'))}`);
      const stateDir = path.join(dir, 'authority');
      const authority = new Authority({
        store: await FileStateStore.create(stateDir),
        audit: new FileAuditLog(path.join(stateDir, 'audit.log')),
      });
      await authority.initialize('demo');
      const server = await startAuthorityServer({
        authority,
        socketPath: path.join(stateDir, 'authority.sock'),
        log,
      });

      out(
        '2/5  PostgreSQL: `auth sign --format=db --service example-server`: trusts only certificates issued for example-server',
      );
      // For the example-server service only: this PostgreSQL trusts that service's client CA and no other.
      const signed = await authority.signDatabaseServer(['localhost'], { service: 'example-server' });
      // Under the system temp directory: as root, PostgreSQL runs as its own OS user, which must reach it.
      const pgDir = await fs.mkdtemp(path.join(os.tmpdir(), 'broker-demo-pg-'));
      await fs.chmod(pgDir, 0o711);
      const postgres = await startPostgres({
        baseDir: pgDir,
        tls: {
          serverCertPem: signed.certificatePem,
          serverKeyPem: signed.privateKeyPem,
          clientCaPem: signed.clientCaPem,
        },
        users: ['alice', 'bob'],
        databases: ['example'],
      });
      const cleanup = async () => {
        await postgres.stop();
        await fs.rm(pgDir, { recursive: true, force: true });
        await server.close();
      };
      try {
        out(`     listening on localhost:${postgres.port} (hostssl ... cert: no passwords)`);
        out(
          '3/5  Resources: examples/role.yaml (example-role), examples/db.yaml (example-server), bot "example"',
        );
        const role = await fs.readFile(path.join(EXAMPLES, 'role.yaml'), 'utf8');
        const db = (await fs.readFile(path.join(EXAMPLES, 'db.yaml'), 'utf8')).replace(
          /uri: .*/,
          `uri: localhost:${postgres.port}`,
        );
        await authority.createResources([
          ...parseResources(role, 'examples/role.yaml'),
          ...parseResources(db, 'examples/db.yaml'),
        ]);
        const { token } = await authority.addBot('example', []);
        await authority.updateBot('example', { add: ['example-role'] });
        await writeFileAtomic(path.join(dir, 'join-token'), `${token}\n`, 0o600);

        const outDir = path.join(dir, 'out');
        const botYaml = path.join(dir, 'bot.yaml');
        const template = await fs.readFile(path.join(EXAMPLES, 'bot.yaml'), 'utf8');
        await fs.writeFile(
          botYaml,
          template
            .replace(/auth_server: .*/, `auth_server: unix://${path.join(stateDir, 'authority.sock')}`)
            .replace(/token: file:\/\/.*/, `token: file://${path.join(dir, 'join-token')}`)
            .replace(/path: var\/bot\/storage/, `path: ${path.join(dir, 'bot')}`)
            .replace(/path: var\/out\/example/, `path: ${outDir}`)
            .replace(/credential_ttl: .*/, 'credential_ttl: 10m')
            .replace(/renewal_interval: .*/, `renewal_interval: ${opts.renewalInterval}`),
          { mode: 0o600 },
        );
        out(`4/5  Bot: ${rel(botYaml)} -> default output in ${rel(outDir)}`);
        const config = await loadBotConfig(botYaml);
        const bot = createBot(config, {
          log: createLogger({ base: { component: 'bot' }, level: process.env.BROKER_LOG_LEVEL ?? 'warn' }),
        });
        const conn = connectionString(postgres.port, rel(outDir));
        let step = '5/5  Connected';
        const render = async () => {
          const results = await bot.runCycle(true);
          for (const r of results) {
            if (!r.ok)
              throw new BrokerError('demo_failed', `the bot could not render ${r.output}: ${r.error}`);
            out(`     rendered certificate serial ${r.serial}, expires ${r.expires}`);
          }
          const who = await checkConnection({ port: postgres.port, outDir });
          const serialHex = BigInt(who.serial).toString(16).padStart(32, '0');
          out(
            `${step} to PostgreSQL as ${who.user} over ${who.version} with certificate serial ${serialHex} (sslmode=verify-full)`,
          );
        };
        await render();
        step = '     renewed; connected';
        const { publicKeyPem } = await generateRsaKeyPair();
        const denied = await authority
          .issueDatabaseCertificate(
            'example',
            { service: 'example-server', database: 'example', username: 'bob' },
            publicKeyPem,
          )
          .then(
            () => 'allowed (unexpected)',
            (err) => errorMessage(err),
          );
        out(`     and as bob? ${denied}`);
        out('');
        out('Connect yourself (while this runs):');
        out(`  psql "${conn}"`);
        if (opts.once) return;
        out(`Renewing every ${opts.renewalInterval}; Ctrl-C to stop.`);
        const waiter = signalWaiter(log);
        try {
          for (;;) {
            const why = await waiter.wait(config.renewal_interval);
            if (why === 'stop') break;
            try {
              await render();
            } catch (err) {
              out(`     renewal failed, previous credentials kept: ${errorMessage(err)}`);
            }
          }
        } finally {
          waiter.dispose();
        }
      } finally {
        await cleanup();
      }
    });
}
