import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthorityClient, type AuthorityTransport } from '../../src/api/client.js';
import { AuthorityUnavailableError } from '../../src/api/errors.js';
import type { ApiRequest, ApiResponse } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import type { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import {
  DirectoryIdentityStore,
  type IdentityStore,
  MemoryIdentityStore,
} from '../../src/bot/identity-store.js';
import { ManualClock } from '../../src/clock.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { AccessDeniedError, BrokerError, GenerationMismatchError } from '../../src/errors.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, exampleRoleYaml, INTERNAL_DB_URI, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const MIN = 60_000;
const H = 3_600_000;

/** The example (its role without a session cap), with the database service at db.internal:5432. */
const RESOURCES = exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } });

const ROLE_WITHOUT_ALICE = exampleRoleYaml({ maxSessionTtl: null, users: ['bob'] });

interface OutputSpec {
  service?: string;
  username?: string;
}

function botConfig(outputs: OutputSpec[] = [{}], top = ''): BotConfig {
  const outs = outputs
    .map(
      (o) => `  - type: database
    destination: { type: memory }
    service: ${o.service ?? 'example-server'}
    database: example
    username: ${o.username ?? 'alice'}`,
    )
    .join('\n');
  return parseBotConfig(
    `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: env://UNUSED }
storage: { type: memory }
${top}
outputs:
${outs}
`,
    'bot.yaml',
  );
}

const START = '2026-03-01T12:00:00Z';

/** A fresh authority (its own store, audit log and clock) with the example role, db and bot, and one join token. */
async function setup() {
  const { authority, clock, audit } = await testAuthority({ start: START, resources: RESOURCES });
  const { token } = await authority.addToken('example');
  return { clock, audit, authority, token };
}

/** A log that keeps its JSON lines, to check what the bot says (and never says). */
function captureLog() {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  return { log, lines, text: () => lines.join('') };
}

let keySlot = 0;
/** Cached RSA keys, handed out round-robin: the authority only needs a valid RSA public key per request. */
const nextKeys = () => testKeyPair(keySlot++ % 4);

interface BotSetup {
  authority: Authority;
  clock: ManualClock;
  token: string | (() => string);
  config?: BotConfig;
  identityStore?: IdentityStore;
  transport?: AuthorityTransport;
  random?: () => number;
}

function makeBot(s: BotSetup) {
  const config = s.config ?? botConfig();
  const destinations = config.outputs.map(() => new MemoryDestination());
  const identityStore = s.identityStore ?? new MemoryIdentityStore();
  const logs = captureLog();
  const bot = new Bot({
    config,
    client: new AuthorityClient(s.transport ?? new InProcessTransport(s.authority), s.clock),
    identityStore,
    destinationFor: (o) => destinations[config.outputs.indexOf(o)]!,
    joinToken: async () => (typeof s.token === 'function' ? s.token() : s.token),
    clock: s.clock,
    log: logs.log,
    generateKeyPair: nextKeys,
    ...(s.random ? { random: s.random } : {}),
  });
  return { bot, destinations, dest: destinations[0]!, identityStore, logs };
}

/** A transport that fails with AuthorityUnavailableError while `failing` says so, and counts calls. */
class FlakyTransport implements AuthorityTransport {
  readonly description = 'flaky in-process authority';
  calls = 0;
  failNext = 0;
  alwaysFail = false;
  constructor(private readonly inner: AuthorityTransport) {}
  async send(request: ApiRequest): Promise<ApiResponse> {
    this.calls++;
    if (this.alwaysFail || this.failNext > 0) {
      this.failNext = Math.max(0, this.failNext - 1);
      throw new AuthorityUnavailableError('cannot reach the authority: ECONNREFUSED');
    }
    return this.inner.send(request);
  }
}

const generationOf = async (store: IdentityStore) => (await store.load())?.generation;

describe('Bot: join, renew and render against the real authority', () => {
  it('joins on the first cycle (generation 1) and renders a certificate for the route', async () => {
    const { authority, clock, audit, token } = await setup();
    const { bot, dest, identityStore, logs } = makeBot({ authority, clock, token });
    const results = await bot.runCycle();

    expect(results).toEqual([
      {
        output: 'alice@example-server/example -> memory memory',
        route: { service: 'example-server', database: 'example', username: 'alice' },
        ok: true,
        serial: expect.stringMatching(/^[0-9a-f]+$/),
        expires: new Date(clock.now().getTime() + H).toISOString(),
      },
    ]);
    expect(await generationOf(identityStore)).toBe(1);
    expect((await authority.listBots())[0]?.status.generation).toBe(1);
    expect(await authority.listTokens()).toEqual([]); // the one-time token is spent

    const b = dest.bundle!;
    expect(dest.writes).toBe(1);
    expect(b).toMatchObject({
      kind: 'database-credentials',
      version: 1,
      service: 'example-server',
      protocol: 'postgres',
      endpoint: 'db.internal:5432',
      serverName: 'db.internal',
      database: 'example',
      username: 'alice',
      format: '',
      serial: results[0]?.serial,
    });
    expect(Object.keys(b.files).sort()).toEqual([
      'key',
      'teleport-database-ca.crt',
      'teleport-host-ca.crt',
      'tlscert',
    ]);
    const cert = new X509Certificate(b.files.tlscert!);
    expect(cert.subject).toContain('CN=alice');
    expect(BigInt(`0x${cert.serialNumber}`)).toBe(BigInt(`0x${b.serial}`));
    expect(cert.checkPrivateKey(createPrivateKey(b.files.key!))).toBe(true);
    const clientCa = new X509Certificate(await authority.dbClientCaBundle('example-server'));
    expect(cert.checkIssued(clientCa) && cert.verify(clientCa.publicKey)).toBe(true);
    expect(b.files['teleport-host-ca.crt']).toBe(await authority.caBundle('db-server'));

    expect(audit.events.filter((e) => e.outcome === 'success').map((e) => e.event)).toEqual(
      expect.arrayContaining(['bot.join', 'db_cert.issue']),
    );
    // Nothing secret in the bot's log: not the token, not a key, not a certificate.
    expect(logs.text()).not.toContain(token);
    expect(logs.text()).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
  });

  it('renews on the next cycles (generation 2, 3) and renders a new certificate each time', async () => {
    const { authority, clock, audit, token } = await setup();
    const { bot, dest, identityStore } = makeBot({ authority, clock, token });
    const first = await bot.runCycle();
    const identity1 = await identityStore.load();
    clock.advance(20 * MIN);
    const second = await bot.runCycle();
    const identity2 = await identityStore.load();
    expect(identity2?.generation).toBe(2);
    expect(identity2?.certificatePem).not.toBe(identity1?.certificatePem);
    expect(second[0]?.ok).toBe(true);
    expect(second[0]?.serial).not.toBe(first[0]?.serial);
    expect(dest.bundle?.serial).toBe(second[0]?.serial);
    const cert = new X509Certificate(dest.bundle!.files.tlscert!);
    expect(BigInt(`0x${cert.serialNumber}`)).toBe(BigInt(`0x${second[0]?.serial}`));
    expect(new Date(cert.validTo).getTime()).toBe(clock.now().getTime() + H);
    clock.advance(20 * MIN);
    await bot.runCycle();
    expect(await generationOf(identityStore)).toBe(3);
    expect(dest.writes).toBe(3);
    expect(audit.events.filter((e) => e.event === 'bot.renew' && e.outcome === 'success')).toHaveLength(2);
    expect(audit.events.filter((e) => e.event === 'bot.join')).toHaveLength(1);
  });

  it('refuses a join token that was already used', async () => {
    const { authority, clock, token } = await setup();
    await makeBot({ authority, clock, token }).bot.runCycle();
    const second = makeBot({ authority, clock, token });
    const err = await second.bot.runCycle().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as Error).message).toMatch(/join token is unknown or was already used/);
    expect((err as Error).message).not.toContain(token);
    expect(second.dest.writes).toBe(0);
    expect(await second.identityStore.load()).toBeUndefined();
  });

  it('refuses an expired join token', async () => {
    const { authority, clock } = await setup();
    const { token } = await authority.addToken('example', 10 * MIN);
    clock.advance(11 * MIN);
    const { bot, dest, logs } = makeBot({ authority, clock, token });
    const err = await bot.runCycle().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as Error).message).toMatch(/join token expired at/);
    expect((err as Error).message).not.toContain(token);
    expect(dest.writes).toBe(0);
    expect(logs.text()).not.toContain(token);
  });
});

describe('Bot: denied outputs keep the previous credentials', () => {
  it('reports an unknown service as a failed output with the reason, and still renders the others', async () => {
    const { authority, clock, token } = await setup();
    const config = botConfig([{}, { service: 'nope-server' }]);
    const { bot, destinations } = makeBot({ authority, clock, token, config });
    const results = await bot.runCycle();
    expect(results.map((r) => r.ok)).toEqual([true, false]);
    expect(results[1]).toMatchObject({
      output: 'alice@nope-server/example -> memory memory',
      route: { service: 'nope-server', database: 'example', username: 'alice' },
      ok: false,
    });
    expect(results[1]?.error).toMatch(
      /access to alice@nope-server\/example denied: database service "nope-server" does not exist/,
    );
    expect(destinations[0]?.writes).toBe(1);
    expect(destinations[1]?.writes).toBe(0);
  });

  it('reports a username the role does not allow, and leaves the previous bundle untouched', async () => {
    const { authority, clock, token } = await setup();
    const { bot, dest } = makeBot({ authority, clock, token });
    const [first] = await bot.runCycle();
    const before = structuredClone(dest.bundle);
    // An operator takes alice away from the role.
    await authority.createResources(parseResources(ROLE_WITHOUT_ALICE, 'role.yaml'), { force: true });
    clock.advance(20 * MIN);
    const [second] = await bot.runCycle();
    expect(second?.ok).toBe(false);
    expect(second?.error).toMatch(/database user "alice" is not in allow\.db_users/);
    expect(dest.writes).toBe(1);
    expect(dest.bundle).toEqual(before);
    expect(dest.bundle?.serial).toBe(first?.serial);
  });

  it('leaves the previous bundle when the database service is removed', async () => {
    const { authority, clock, token } = await setup();
    const { bot, dest } = makeBot({ authority, clock, token });
    const [first] = await bot.runCycle();
    await authority.removeResource('db', 'example-server');
    const [second] = await bot.runCycle();
    expect(second).toMatchObject({ ok: false });
    expect(second?.error).toMatch(/database service "example-server" does not exist/);
    expect(dest.bundle?.serial).toBe(first?.serial);
  });

  it('reports a username never allowed from the first cycle on', async () => {
    const { authority, clock, token } = await setup();
    const { bot, dest } = makeBot({ authority, clock, token, config: botConfig([{ username: 'bob' }]) });
    const [result] = await bot.runCycle();
    expect(result).toMatchObject({ ok: false, route: { username: 'bob' } });
    expect(result?.error).toMatch(/database user "bob" is not in allow\.db_users/);
    expect(dest.bundle).toBeUndefined();
  });
});

describe('Bot: identity lifecycle', () => {
  it('locks the bot when a copy of the identity renews after the real one', async () => {
    const { authority, clock, audit, token } = await setup();
    const real = makeBot({ authority, clock, token });
    await real.bot.runCycle();
    // Someone copies the stored identity to another machine.
    const stolen = new MemoryIdentityStore();
    await stolen.save(structuredClone((await real.identityStore.load()) as BotIdentity));
    const copy = makeBot({ authority, clock, token: 'no-token', identityStore: stolen });

    clock.advance(MIN);
    const [renewed] = await real.bot.runCycle();
    expect(await generationOf(real.identityStore)).toBe(2);

    const err = await copy.bot.runCycle().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GenerationMismatchError);
    expect((err as Error).message).toMatch(
      /bot "example" is now locked: its identity presented generation 1/,
    );
    expect(await authority.listLocks()).toEqual([
      expect.objectContaining({ bot: 'example', reason: expect.stringMatching(/generation mismatch/) }),
    ]);
    expect(audit.events.some((e) => e.event === 'bot.generation_mismatch' && e.bot === 'example')).toBe(true);
    expect(copy.dest.writes).toBe(0);

    // The real bot is locked out too until an operator investigates; its last output stays in place.
    const locked = await real.bot.runCycle().catch((e: unknown) => e);
    expect(locked).toBeInstanceOf(AccessDeniedError);
    expect((locked as Error).message).toMatch(/is locked/);
    expect(real.dest.bundle?.serial).toBe(renewed?.serial);
  });

  it('locks the bot when the copy renews first and the real bot comes second; runLoop stops', async () => {
    const { authority, clock, token } = await setup();
    const real = makeBot({ authority, clock, token });
    await real.bot.runCycle();
    const stolen = new MemoryIdentityStore();
    await stolen.save(structuredClone((await real.identityStore.load()) as BotIdentity));
    await makeBot({ authority, clock, token: 'no-token', identityStore: stolen }).bot.runCycle();

    const waits: number[] = [];
    const loop = real.bot.runLoop(async (ms) => {
      waits.push(ms);
      return waits.length > 5 ? 'stop' : 'tick';
    });
    await expect(loop).rejects.toBeInstanceOf(GenerationMismatchError);
    expect(waits).toEqual([]); // no retry: a copied identity needs an operator
    expect(await authority.listLocks()).toHaveLength(1);
  });

  it('joins again when the identity expired, and says it needs a new join token when the old one is spent', async () => {
    const { authority, clock, token } = await setup();
    let current = token;
    const { bot, dest, identityStore, logs } = makeBot({ authority, clock, token: () => current });
    const [first] = await bot.runCycle();
    clock.advance(H + MIN);

    const err = await bot.runCycle().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as Error).message).toMatch(/join token is unknown or was already used/);
    expect((err as Error).message).toMatch(/identity expired at .* so it needs a new join token/);
    expect((err as Error).message).toContain('broker tokens add --type=bot --bot');
    expect(logs.text()).toMatch(/stored bot identity has expired; joining again/);
    expect(dest.bundle?.serial).toBe(first?.serial);

    // The operator issues a new token: the bot joins again from generation 1.
    current = (await authority.addToken('example')).token;
    const [again] = await bot.runCycle();
    expect(again?.ok).toBe(true);
    expect(await generationOf(identityStore)).toBe(1);
    expect(dest.bundle?.serial).toBe(again?.serial);
  });

  it('keeps the identity in a private directory and renews from it after a restart', async () => {
    const { authority, clock, token } = await setup();
    const dir = path.join(await makeTempDir(), 'storage');
    const first = makeBot({ authority, clock, token, identityStore: new DirectoryIdentityStore(dir) });
    await first.bot.runCycle();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);

    // A new process with the same storage renews instead of joining (the token is spent anyway).
    const restarted = makeBot({
      authority,
      clock,
      token: 'spent',
      identityStore: new DirectoryIdentityStore(dir),
    });
    const [result] = await restarted.bot.runCycle();
    expect(result?.ok).toBe(true);
    expect(await generationOf(new DirectoryIdentityStore(dir))).toBe(2);
  });

  for (const [what, content] of [
    ['not JSON', '{"certificatePem": "-----BEGIN CERT'],
    [
      'JSON without the key',
      '{"certificatePem":"x","generation":1,"expires":"2030-01-01T00:00:00Z","botCaPem":""}',
    ],
  ] as const) {
    it(`refuses a corrupt identity file (${what}) with an error naming it, without spending a token`, async () => {
      const { authority, clock, token } = await setup();
      const dir = path.join(await makeTempDir(), 'storage');
      await mkdir(dir, { mode: 0o700 });
      const file = path.join(dir, 'identity.json');
      await writeFile(file, content, { mode: 0o600 });
      const { bot, dest } = makeBot({
        authority,
        clock,
        token,
        identityStore: new DirectoryIdentityStore(dir),
      });
      const err = await bot.runCycle().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('bad_identity');
      expect((err as Error).message).toContain(file);
      expect((err as Error).message).toMatch(/corrupt/);
      expect(dest.writes).toBe(0);
      expect(await authority.listTokens()).toHaveLength(1);
      expect(await readFile(file, 'utf8')).toBe(content); // not overwritten: an operator may want to look
    });
  }

  for (const offset of [10 * MIN, -10 * MIN]) {
    it(`reports a bot clock ${offset > 0 ? 'ahead of' : 'behind'} the authority's by 10 minutes`, async () => {
      const { authority, clock, token } = await setup();
      const botClock = new ManualClock(new Date(clock.now().getTime() + offset));
      const { bot, dest, logs } = makeBot({ authority, clock: botClock, token });
      // The token join carries no timestamp; the signed issuance does, and the authority refuses it.
      const [result] = await bot.runCycle();
      expect(result?.ok).toBe(false);
      expect(result?.error).toMatch(/600s away from the authority's clock/);
      expect(result?.error).toMatch(/fix the clock \(NTP\)/);
      expect(dest.writes).toBe(0);
      expect(logs.text()).toMatch(
        new RegExp(`this machine's clock is 1?0m0s ${offset > 0 ? 'ahead of' : 'behind'} the authority`),
      );
      // The renewal is refused for the same reason.
      const err = await bot.runCycle().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect((err as Error).message).toMatch(/clock/);
    });
  }
});

describe('Bot.runLoop', () => {
  it('backs off exponentially from 1 s while the authority is unreachable, capped at 5 min', async () => {
    const { authority, clock, token } = await setup();
    const transport = new FlakyTransport(new InProcessTransport(authority));
    transport.alwaysFail = true;
    const { bot, dest, logs } = makeBot({ authority, clock, token, transport, random: () => 1 });
    const waits: number[] = [];
    await bot.runLoop(async (ms) => {
      waits.push(ms);
      clock.advance(ms);
      return waits.length >= 13 ? 'stop' : 'tick';
    });
    expect(waits).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000,
      300_000,
    ]);
    expect(transport.calls).toBe(13);
    expect(dest.writes).toBe(0);
    expect(logs.text()).toMatch(/renewal failed; the last good outputs stay in place/);
    expect(await authority.listTokens()).toHaveLength(1); // never reached the authority: token unspent
  });

  it('jitters the back-off between half and all of the step, and caps it at the renewal interval', async () => {
    const { authority, clock, token } = await setup();
    const transport = new FlakyTransport(new InProcessTransport(authority));
    transport.alwaysFail = true;
    const config = botConfig([{}], 'credential_ttl: 5m\nrenewal_interval: 1m');
    const { bot } = makeBot({ authority, clock, token, transport, config, random: () => 0 });
    const waits: number[] = [];
    await bot.runLoop(async (ms) => {
      waits.push(ms);
      return waits.length >= 8 ? 'stop' : 'tick';
    });
    expect(waits).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  });

  it('waits a renewal interval after success; a tick before it renews only the identity, a wake renders', async () => {
    const { authority, clock, token } = await setup();
    const transport = new FlakyTransport(new InProcessTransport(authority));
    const { bot, dest } = makeBot({ authority, clock, token, transport, random: () => 0.5 });
    const script: Array<() => 'tick' | 'wake' | 'stop'> = [
      () => 'tick', // early tick (the clock did not move): outputs are not due yet
      () => 'wake', // SIGHUP: render now
      () => {
        clock.advance(20 * MIN); // the interval passed: the regular cycle renders
        return 'tick';
      },
      () => 'stop',
    ];
    const waits: number[] = [];
    const writesAtWait: number[] = [];
    await bot.runLoop(async (ms) => {
      waits.push(ms);
      writesAtWait.push(dest.writes);
      return script[waits.length - 1]!();
    });
    expect(waits).toEqual([20 * MIN, 20 * MIN, 20 * MIN, 20 * MIN]);
    expect(writesAtWait).toEqual([1, 1, 2, 3]);
    expect(dest.writes).toBe(3);
    const callsAtStop = transport.calls;
    await new Promise((r) => setTimeout(r, 20));
    expect(transport.calls).toBe(callsAtStop); // nothing runs after stop
  });

  it('keeps the last good bundle while the authority fails, and recovers when it returns', async () => {
    const { authority, clock, token } = await setup();
    const transport = new FlakyTransport(new InProcessTransport(authority));
    const { bot, dest } = makeBot({ authority, clock, token, transport, random: () => 1 });
    const waits: number[] = [];
    const serialAtWait: (string | undefined)[] = [];
    await bot.runLoop(async (ms) => {
      waits.push(ms);
      serialAtWait.push(dest.bundle?.serial);
      clock.advance(ms);
      if (waits.length === 1) transport.failNext = 3; // the authority goes away for three cycles
      return waits.length >= 5 ? 'stop' : 'tick';
    });
    const good = serialAtWait[0];
    expect(good).toBeDefined();
    // After the first success: the regular interval (20 min, +10% jitter at random() = 1), then back-off.
    expect(waits).toEqual([22 * MIN, 1_000, 2_000, 4_000, 22 * MIN]);
    expect(serialAtWait.slice(0, 4)).toEqual([good, good, good, good]);
    // Back again: the next cycle renews and renders a new certificate (forced after the failures).
    expect(serialAtWait[4]).toBeDefined();
    expect(serialAtWait[4]).not.toBe(good);
    expect(dest.writes).toBe(2);
  });

  it('backs off when an output is denied, and keeps retrying it', async () => {
    const { authority, clock, token } = await setup();
    const { bot, dest } = makeBot({
      authority,
      clock,
      token,
      config: botConfig([{ username: 'bob' }]),
      random: () => 1,
    });
    const waits: number[] = [];
    await bot.runLoop(async (ms) => {
      waits.push(ms);
      return waits.length >= 3 ? 'stop' : 'tick';
    });
    expect(waits).toEqual([1_000, 2_000, 4_000]);
    expect(dest.writes).toBe(0);
  });
});

/** Delivers a renewal to the authority but loses its answer once, as a timed-out Lambda Invoke would. */
class LosesOneRenewAnswer implements AuthorityTransport {
  readonly description = 'in-process authority that loses one answer';
  lost = 0;
  constructor(private readonly inner: AuthorityTransport) {}
  async send(request: ApiRequest): Promise<ApiResponse> {
    const response = await this.inner.send(request);
    if (request.type === 'renew' && this.lost === 0) {
      this.lost++;
      throw new AuthorityUnavailableError('the answer was lost on the way back');
    }
    return response;
  }
}

describe('Bot: a renewal whose answer was lost', () => {
  it('retries with the same request id, gets the first answer back, and is not locked', async () => {
    const { authority, clock, token } = await setup();
    const transport = new LosesOneRenewAnswer(new InProcessTransport(authority));
    const { bot, identityStore } = makeBot({ authority, clock, token, transport });
    await bot.runCycle(true); // join: generation 1
    clock.advance(20 * MIN);
    await expect(bot.runCycle(true)).rejects.toThrow(AuthorityUnavailableError);
    expect(await generationOf(identityStore)).toBe(1); // the bot never saw generation 2
    clock.advance(MIN);
    const results = await bot.runCycle(true);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(await generationOf(identityStore)).toBe(2);
    expect(await authority.listLocks()).toEqual([]);
    // A new renewal after that moves on normally.
    clock.advance(20 * MIN);
    await bot.runCycle(true);
    expect(await generationOf(identityStore)).toBe(3);
  });
});
