/**
 * A `database` output may leave out `database`, as in tbot: certificates for MySQL, CockroachDB and Redis
 * are not bound to a database name (Teleport checks db_names only for PostgreSQL and MongoDB), and for the
 * others the roles decide. Runs the real bot, API client and authority in-process.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { routeSchema } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { Bot, routeOf } from '../../src/bot/bot.js';
import { parseBotConfig } from '../../src/bot/config.js';
import { MemoryIdentityStore } from '../../src/bot/identity-store.js';
import type { DbProtocol } from '../../src/credentials/route.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { testAuthority } from '../support/authority.js';
import { exampleResources, INTERNAL_DB_URI, testKeyPair } from '../support/fixtures.js';

const START = '2026-03-01T12:00:00Z';

/** Bot configuration with one memory output for the example service, without `database`. */
const CONFIG = `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: env://UNUSED }
storage: { type: memory }
outputs:
  - type: database
    destination: { type: memory }
    service: example-server
    username: alice
`;

async function renderWithout(protocol: DbProtocol, dbNames?: string[]) {
  const resources = exampleResources({
    role: { maxSessionTtl: null },
    db: { uri: INTERNAL_DB_URI, protocol },
  });
  const role = resources.find((r) => r.kind === 'role');
  if (dbNames && role?.kind === 'role' && role.spec.allow) role.spec.allow.db_names = dbNames;
  const { authority, clock, audit } = await testAuthority({ start: START, resources });
  const { token } = await authority.addToken('example');
  const config = parseBotConfig(CONFIG, 'bot.yaml');
  const dest = new MemoryDestination();
  const bot = new Bot({
    config,
    client: new AuthorityClient(new InProcessTransport(authority), clock),
    identityStore: new MemoryIdentityStore(),
    destinationFor: () => dest,
    joinToken: async () => token,
    clock,
    log: pino({ level: 'silent' }),
    generateKeyPair: () => testKeyPair(0),
  });
  const result = await bot.runCycle();
  return { result, bundle: await dest.read(), audit };
}

describe('an output without database', () => {
  it('parses, and asks for the route with an empty database name', () => {
    const [output] = parseBotConfig(CONFIG, 'bot.yaml').outputs;
    expect(output?.database).toBeUndefined();
    expect(routeOf(output!)).toEqual({ service: 'example-server', database: '', username: 'alice' });
    expect(routeSchema.parse(routeOf(output!))).toEqual(routeOf(output!));
  });

  it.each(['mysql', 'cockroachdb', 'redis'] as const)(
    'is issued for %s, which does not check db_names, and its bundle names no database',
    async (protocol) => {
      const { bundle } = await renderWithout(protocol);
      expect(bundle?.protocol).toBe(protocol);
      expect(bundle?.database).toBe('');
      expect(bundle?.username).toBe('alice');
    },
  );

  it.each(['postgres', 'mongodb'] as const)(
    'is refused for %s when db_names lists names, with the reason, and nothing is written',
    async (protocol) => {
      const { bundle, audit } = await renderWithout(protocol);
      expect(bundle).toBeUndefined();
      const denied = audit.events.find((e) => e.event === 'db_cert.issue' && e.outcome === 'denied');
      expect(denied?.reason).toContain('allow.db_names');
    },
  );

  it("is issued for postgres when a role's db_names holds '*'", async () => {
    const { bundle } = await renderWithout('postgres', ['*']);
    expect(bundle?.database).toBe('');
  });
});
