/**
 * The world of the bot's `database-tunnel` service (src/cli/bot-tunnels.ts), whose certificate is issued
 * just in time for a new connection: an authority and a bot on one manual clock that starts 20 minutes in
 * the past, a role that caps database certificates at 10 minutes (so setting the clock to now really expires
 * the tunnel's first certificate, while the bot's 1 h identity stays valid), a tbot.yaml with one
 * `database-tunnel` service for alice on `example-server`/`example`, memory storage, the tunnel prepared by
 * `prepareTunnels`, the bot's first cycle run and the tunnel listening. `broker proxy db --tunnel` worlds
 * are in tunnel-world.ts.
 */
import pg from 'pg';
import pino from 'pino';
import { expect } from 'vitest';
import type { AuthorityTransport } from '../../src/api/client.js';
import type { ApiRequest } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import type { Authority } from '../../src/authority/authority.js';
import type { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import { createBot } from '../../src/bot/runtime.js';
import { prepareTunnels, type TunnelRuntime } from '../../src/cli/bot-tunnels.js';
import type { ManualClock } from '../../src/clock.js';
import { freePort } from '../../src/devdb/postgres.js';
import { testAuthority } from './authority.js';
import { exampleResourcesYaml } from './fixtures.js';

export interface JitTunnelSpec {
  /** The port of `example-server`'s endpoint (localhost): a database's, or a closed one. */
  dbPort: number;
  /** Names the bot's transport in its messages. */
  description: string;
  /** Sees each request the bot sends before the authority does; a throw fails that request. */
  intercept?(request: ApiRequest): void;
}

export interface JitTunnelWorld {
  authority: Authority;
  /** The authority's, the bot's and the tunnel's clock, at 20 minutes ago. */
  clock: ManualClock;
  bot: Bot;
  tunnel: TunnelRuntime;
  /** Where the tunnel listens (127.0.0.1). */
  tunnelPort: number;
  /** A PostgreSQL client for alice on `example` through the tunnel (not connected; errors are its callers'). */
  client(): pg.Client;
  stop(): Promise<void>;
}

/** Builds the world (call it in a `beforeAll`; `stop` it in the `afterAll`). */
export async function jitTunnelWorld(spec: JitTunnelSpec): Promise<JitTunnelWorld> {
  const made = await testAuthority({
    start: new Date(Date.now() - 20 * 60_000).toISOString(),
    resources: exampleResourcesYaml({
      role: { maxSessionTtl: '10m' },
      db: { uri: `localhost:${spec.dbPort}` },
    }),
  });
  const { authority, clock } = made;
  const { token } = await authority.addToken('example');
  const tunnelPort = await freePort();
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
  const [tunnel] = (await prepareTunnels(config, { log, unsafeListen: false, clock })) as [TunnelRuntime];
  const inner = new InProcessTransport(authority);
  const transport: AuthorityTransport = {
    description: spec.description,
    async send(request: ApiRequest) {
      spec.intercept?.(request);
      return inner.send(request);
    },
  };
  const bot = createBot(
    { ...config, outputs: [tunnel.output] },
    { log, clock, transport, destinations: new Map([[tunnel.output, tunnel.destination]]) },
  );
  tunnel.attach(bot);
  try {
    const [first] = await bot.runCycle();
    expect(first?.ok, first?.error).toBe(true);
    await tunnel.proxy.start();
  } catch (err) {
    tunnel.creds.stop();
    throw err;
  }
  return {
    authority,
    clock,
    bot,
    tunnel,
    tunnelPort,
    client() {
      const client = new pg.Client({
        host: '127.0.0.1',
        port: tunnelPort,
        user: 'alice',
        database: 'example',
        connectionTimeoutMillis: 10_000,
      });
      client.on('error', () => undefined);
      return client;
    },
    async stop() {
      await tunnel.proxy.stop(1000);
      tunnel.creds.stop();
    },
  };
}
