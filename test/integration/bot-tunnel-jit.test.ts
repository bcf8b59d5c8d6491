/**
 * A `database-tunnel` service checks its certificate on every new connection, as tbot's tunnel does: a
 * connection that finds it expired gets a fresh one issued first, and connections that arrive together
 * share one issuance. Against a real PostgreSQL that verifies client certificates with the wall clock, so
 * a connection that went up with the expired certificate would be refused.
 *
 * The authority, the bot and the tunnel share a clock that starts 20 minutes in the past; the role caps
 * database certificates at 10 minutes, so the tunnel's first certificate has really expired when the clock
 * is set to now, while the bot's identity (1 h) is still valid.
 */
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthorityTransport } from '../../src/api/client.js';
import type { ApiRequest } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import type { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import { createBot } from '../../src/bot/runtime.js';
import { prepareTunnels, type TunnelRuntime } from '../../src/cli/bot-tunnels.js';
import type { ManualClock } from '../../src/clock.js';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let postgres: StartedPostgres;
let clock: ManualClock;
let bot: Bot;
let tunnel: TunnelRuntime;
let tunnelPort = 0;
/** `issue-db-cert` requests the bot sent. */
let issued = 0;

const START = new Date(Date.now() - 20 * 60_000);

async function currentUser(): Promise<string> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: tunnelPort,
    user: 'alice',
    database: 'example',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await requirePostgres();
  work = await tempDir('tunnel-jit');
  const dbPort = await freePort();
  const made = await testAuthority({
    start: START.toISOString(),
    resources: exampleResourcesYaml({ role: { maxSessionTtl: '10m' }, db: { uri: `localhost:${dbPort}` } }),
  });
  const { authority } = made;
  clock = made.clock;
  const server = await authority.signDatabaseServer(['localhost', '127.0.0.1'], {
    service: 'example-server',
  });
  postgres = await startPostgres({
    baseDir: path.join(work.dir, 'pg'),
    port: dbPort,
    tls: {
      serverCertPem: server.certificatePem,
      serverKeyPem: server.privateKeyPem,
      clientCaPem: server.clientCaPem,
    },
    users: ['alice'],
    databases: ['example'],
  });
  const { token } = await authority.addToken('example');
  tunnelPort = await freePort();
  const config: BotConfig = parseBotConfig(
    `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: ${token} }
storage: { type: memory }
credential_ttl: 1h
renewal_interval: 20m
services:
  - type: database-tunnel
    listen: tcp://127.0.0.1:${tunnelPort}
    service: example-server
    database: example
    username: alice
`,
    'tbot.yaml',
  );
  const log = pino({ level: 'silent' });
  const tunnels = await prepareTunnels(config, { log, unsafeListen: false, clock });
  tunnel = tunnels[0]!;
  const inner = new InProcessTransport(authority);
  const transport: AuthorityTransport = {
    description: 'in process (counting)',
    send(request: ApiRequest) {
      if (request.type === 'issue-db-cert') issued++;
      return inner.send(request);
    },
  };
  bot = createBot(
    { ...config, outputs: [tunnel.output] },
    { log, clock, transport, destinations: new Map([[tunnel.output, tunnel.destination]]) },
  );
  tunnel.attach(bot);
  const [first] = await bot.runCycle();
  expect(first?.ok, first?.error).toBe(true);
  await tunnel.proxy.start();
}, 180_000);

afterAll(async () => {
  await tunnel?.proxy.stop(1000);
  tunnel?.creds.stop();
  await postgres?.stop();
  await work?.cleanup();
});

describe('database-tunnel: a certificate just in time for each new connection', () => {
  it('connections after the certificate expired get a fresh one, issued once for all of them, and reach PostgreSQL', async () => {
    const expired = tunnel.creds.loaded!;
    clock.set(new Date()); // the certificate issued 20 minutes ago for 10 minutes has expired, really
    expect(expired.expiresAt.getTime()).toBeLessThan(Date.now());
    const before = issued;
    const users = await Promise.all(Array.from({ length: 6 }, () => currentUser()));
    expect(users).toEqual(Array(6).fill('alice'));
    expect(issued - before).toBe(1);
    const fresh = tunnel.creds.loaded!;
    expect(fresh.serial).not.toBe(expired.serial);
    expect(fresh.expiresAt.getTime()).toBeGreaterThan(Date.now());
    // The next connection finds the fresh certificate valid: nothing more is issued.
    expect(await currentUser()).toBe('alice');
    expect(issued - before).toBe(1);
  });
});
