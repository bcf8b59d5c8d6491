/**
 * The database-tunnel's certificate just in time (src/cli/bot-tunnels.ts, Bot.renderNow): when a
 * connection must wait for a fresh certificate, that connections arriving together share one issuance, and
 * that an issuance on demand never crosses a renewal (a request signed with a superseded generation would
 * lock the bot). The tunnel against a real PostgreSQL is test/integration/bot-tunnel-jit.test.ts.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AuthorityClient, type AuthorityTransport } from '../../src/api/client.js';
import type { ApiRequest } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { Bot } from '../../src/bot/bot.js';
import { parseBotConfig } from '../../src/bot/config.js';
import { MemoryIdentityStore } from '../../src/bot/identity-store.js';
import { singleFlight, staleReason } from '../../src/cli/bot-tunnels.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import type { LoadedCredentials } from '../../src/proxy/loaded-credentials.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, INTERNAL_DB_URI, testKeyPair } from '../support/fixtures.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');

function loaded(issuedAt: number, expiresAt: number): LoadedCredentials {
  return {
    serial: 'ab12',
    expiresAt: new Date(expiresAt),
    bundle: { issuedAt: new Date(issuedAt).toISOString() },
  } as unknown as LoadedCredentials;
}

describe('staleReason: when a connection must wait for a fresh certificate', () => {
  const hour = loaded(T0, T0 + 3600_000);
  it('none yet', () => {
    expect(staleReason(undefined, new Date(T0))).toBe('no certificate yet');
  });
  it('valid with more than the margin left: used as it is', () => {
    expect(staleReason(hour, new Date(T0))).toBeUndefined();
    expect(staleReason(hour, new Date(T0 + 3600_000 - 61_000))).toBeUndefined();
  });
  it('within a minute of expiry (a tenth of an hour is more): issued again', () => {
    expect(staleReason(hour, new Date(T0 + 3600_000 - 59_000))).toMatch(/expires in 59 s/);
  });
  it('expired: issued again', () => {
    expect(staleReason(hour, new Date(T0 + 3600_000))).toMatch(
      /serial ab12\) expired at 2026-03-01T13:00:00/,
    );
  });
  it('a short certificate: the margin is a tenth of its lifetime', () => {
    const short = loaded(T0, T0 + 100_000);
    expect(staleReason(short, new Date(T0 + 89_000))).toBeUndefined();
    expect(staleReason(short, new Date(T0 + 91_000))).toMatch(/expires in 9 s/);
  });
});

describe('singleFlight', () => {
  it('callers that arrive while a call runs share it; a later caller starts a new one', async () => {
    let calls = 0;
    let release: () => void = () => undefined;
    const run = singleFlight(async () => {
      calls++;
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    const waiting = Array.from({ length: 5 }, () => run());
    expect(calls).toBe(1);
    release();
    await Promise.all(waiting);
    const again = run();
    expect(calls).toBe(2);
    release();
    await again;
  });

  it('a failure reaches every waiting caller, and the next caller tries again', async () => {
    let calls = 0;
    const run = singleFlight(async () => {
      calls++;
      throw new Error('authority down');
    });
    const results = await Promise.allSettled([run(), run(), run()]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(calls).toBe(1);
    await expect(run()).rejects.toThrow('authority down');
    expect(calls).toBe(2);
  });
});

/** A transport that holds every certificate request 50 ms before passing it on. */
function slowIssues(inner: AuthorityTransport): AuthorityTransport {
  return {
    description: inner.description,
    async send(request: ApiRequest) {
      if (request.type === 'issue-db-cert') await new Promise((resolve) => setTimeout(resolve, 50));
      return inner.send(request);
    },
  };
}

describe('Bot.renderNow: issuance on demand beside the renewal loop', () => {
  it('never crosses a renewal: a certificate request in flight when a cycle renews leaves the bot unlocked', async () => {
    const { authority, clock, audit } = await testAuthority({
      start: '2026-03-01T12:00:00Z',
      resources: exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } }),
    });
    const { token } = await authority.addToken('example');
    const config = parseBotConfig(
      `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: ${token} }
storage: { type: memory }
outputs:
  - type: database
    destination: { type: memory }
    service: example-server
    database: example
    username: alice
`,
      'bot.yaml',
    );
    const dest = new MemoryDestination();
    let slot = 0;
    const bot = new Bot({
      config,
      // Certificate requests travel slowly, so a renewal sent after one would overtake it without the turn.
      client: new AuthorityClient(slowIssues(new InProcessTransport(authority)), clock),
      identityStore: new MemoryIdentityStore(),
      destinationFor: () => dest,
      joinToken: async () => token,
      clock,
      log: pino({ level: 'silent' }),
      generateKeyPair: () => testKeyPair(slot++ % 4),
    });
    const output = config.outputs[0]!;
    await bot.runCycle(); // joined: generation 1
    // A tunnel connection asks for a certificate, and the loop's next cycle (a renewal) starts right after.
    const onDemand = bot.renderNow(output);
    const cycle = bot.runCycle();
    await expect(onDemand).resolves.toMatchObject({ ok: true });
    await expect(cycle).resolves.toEqual([expect.objectContaining({ ok: true })]);
    await expect(bot.renderNow(output)).resolves.toMatchObject({ ok: true });
    expect(await authority.listLocks()).toEqual([]);
    const issued = audit.events.filter((e) => e.event === 'db_cert.issue' && e.outcome === 'success');
    expect(issued).toHaveLength(4);
  });
});
