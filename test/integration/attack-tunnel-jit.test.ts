/**
 * The database-tunnel's just-in-time certificate (src/cli/bot-tunnels.ts) attacked by a local client: with
 * the certificate expired and the authority failing, a flood of new connections must not become a flood of
 * issuance requests (each one a Lambda invocation and an audit line in AWS mode), and no connection may go
 * upstream with the expired certificate: the client is told why, over the PostgreSQL protocol.
 *
 * No database is needed: the service's endpoint is a closed port, so a connection that went upstream would
 * fail with a connection error, not with the tunnel's own message.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthorityTransport } from '../../src/api/client.js';
import type { ApiRequest } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import { createBot } from '../../src/bot/runtime.js';
import { prepareTunnels, type TunnelRuntime } from '../../src/cli/bot-tunnels.js';
import type { ManualClock } from '../../src/clock.js';
import { freePort } from '../../src/devdb/postgres.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml } from '../support/fixtures.js';

const START = new Date(Date.now() - 20 * 60_000);

let clock: ManualClock;
let tunnel: TunnelRuntime;
let tunnelPort = 0;
let issueAttempts = 0;
let authorityDown = false;

/** One client connection through the tunnel; the error it ends with. */
async function connectError(): Promise<Error> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: tunnelPort,
    user: 'alice',
    database: 'example',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    return err as Error;
  } finally {
    await client.end().catch(() => undefined);
  }
  throw new Error('the connection went through with an expired certificate');
}

beforeAll(async () => {
  const made = await testAuthority({
    start: START.toISOString(),
    resources: exampleResourcesYaml({
      role: { maxSessionTtl: '10m' },
      db: { uri: `localhost:${await freePort()}` },
    }),
  });
  clock = made.clock;
  const { token } = await made.authority.addToken('example');
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
  [tunnel] = (await prepareTunnels(config, { log, unsafeListen: false, clock })) as [TunnelRuntime];
  const inner = new InProcessTransport(made.authority);
  const transport: AuthorityTransport = {
    description: 'in process (failing on demand)',
    async send(request: ApiRequest) {
      if (request.type === 'issue-db-cert') {
        issueAttempts++;
        if (authorityDown) throw new Error('connect ECONNREFUSED (the authority is down)');
      }
      return inner.send(request);
    },
  };
  const bot = createBot(
    { ...config, outputs: [tunnel.output] },
    { log, clock, transport, destinations: new Map([[tunnel.output, tunnel.destination]]) },
  );
  tunnel.attach(bot);
  const [first] = await bot.runCycle();
  expect(first?.ok, first?.error).toBe(true);
  await tunnel.proxy.start();
}, 120_000);

afterAll(async () => {
  await tunnel?.proxy.stop(1000);
  tunnel?.creds.stop();
});

describe('database-tunnel under a flood of connections while the authority is down', () => {
  it('issues at most once per few seconds, never goes upstream with the expired certificate, and tries again later', async () => {
    clock.set(new Date()); // the certificate (10 minutes, issued 20 minutes ago) has expired
    authorityDown = true;
    const before = issueAttempts;
    const errors: Error[] = [];
    // Sequential connections: each arrives after the previous one's issuance attempt has failed.
    for (let i = 0; i < 20; i++) errors.push(await connectError());
    // Connections arriving together.
    errors.push(...(await Promise.all(Array.from({ length: 20 }, () => connectError()))));
    for (const err of errors)
      expect(err.message).toMatch(/broker proxy: the database certificate .* expired/);
    expect(issueAttempts - before).toBeLessThanOrEqual(2);

    // Later, the tunnel asks again: the flood holds issuance back, it does not stop it.
    clock.set(new Date(clock.now().getTime() + 10_000));
    const later = issueAttempts;
    await connectError();
    expect(issueAttempts - later).toBe(1);
  }, 120_000);
});
