/**
 * A one-time join token is spent by the join, so nothing that could have been checked before may fail after
 * it, and an identity the authority issued is never thrown away. The case that burned tokens: a storage
 * directory made as the guide says (`mkdir -p /var/lib/teleport/bot`, mode 0755).
 */
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { InProcessTransport } from '../../src/api/transports.js';
import type { Authority } from '../../src/authority/authority.js';
import { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig, resolveToken } from '../../src/bot/config.js';
import { DirectoryIdentityStore, type IdentityStore } from '../../src/bot/identity-store.js';
import { preflightOutputs } from '../../src/bot/preflight.js';
import { StorageError } from '../../src/bot/private-dir.js';
import type { ManualClock } from '../../src/clock.js';
import { ConfigError } from '../../src/config/errors.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, INTERNAL_DB_URI, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const RESOURCES = exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } });
const asRoot = process.getuid?.() === 0;

function config(output = '    destination: { type: memory }\n    username: alice'): BotConfig {
  return parseBotConfig(
    `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: env://UNUSED }
storage: { type: memory }
outputs:
  - type: database
    service: example-server
    database: example
${output}
`,
    'bot.yaml',
  );
}

let slot = 0;
async function setup(cfg: BotConfig, identityStore: IdentityStore) {
  const { authority, clock } = await testAuthority({ start: '2026-03-01T12:00:00Z', resources: RESOURCES });
  const { token } = await authority.addToken('example');
  let current = token;
  const dest = new MemoryDestination();
  const bot = new Bot({
    config: cfg,
    client: new AuthorityClient(new InProcessTransport(authority), clock as ManualClock),
    identityStore,
    destinationFor: () => dest,
    joinToken: async () => current,
    clock,
    log: pino({ level: 'silent' }),
    generateKeyPair: () => testKeyPair(slot++ % 4),
    preflight: () => preflightOutputs(cfg),
    saveRetryDelaysMs: [0, 0],
  });
  return { authority, clock, bot, dest, spend: () => (current = 'spent-already') };
}

/** A new process with the same configuration, its identity in the directory store `dir`, and no token left. */
function restartedBot(authority: Authority, clock: ManualClock, dir: string): Bot {
  return new Bot({
    config: config(),
    client: new AuthorityClient(new InProcessTransport(authority), clock),
    identityStore: new DirectoryIdentityStore(dir),
    destinationFor: () => new MemoryDestination(),
    joinToken: async () => 'spent-already',
    clock,
    log: pino({ level: 'silent' }),
    generateKeyPair: () => testKeyPair(slot++ % 4),
  });
}

/** A directory store whose saves fail until `fixed` is set: storage that breaks right after the join. */
class FlakyStore extends DirectoryIdentityStore {
  fixed = false;
  override async save(identity: BotIdentity): Promise<void> {
    if (!this.fixed) throw new Error('EIO: i/o error, write');
    return super.save(identity);
  }
}

describe('a storage directory made with `mkdir -p` (0755), as the guide says', () => {
  it('is tightened to 0700 before the join, the identity is saved, and a restart renews without a token', async () => {
    const dir = path.join(await makeTempDir(), 'var/lib/teleport/bot');
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    const { authority, bot, clock } = await setup(config(), new DirectoryIdentityStore(dir));
    const [result] = await bot.runCycle();
    expect(result?.ok).toBe(true);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
    expect(await authority.listTokens()).toHaveLength(0);

    // `chmod 755` again by hand: the next process tightens it again and renews (no token is left).
    await chmod(dir, 0o755);
    const restarted = restartedBot(authority, clock, dir);
    const [again] = await restarted.runCycle();
    expect(again?.ok).toBe(true);
    expect(JSON.parse(await readFile(path.join(dir, 'identity.json'), 'utf8')).generation).toBe(2);
  });
});

describe('no misconfiguration burns the token', () => {
  it('keeps an identity that storage refused after the join, and saves it once storage works, without a new token', async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    const store = new FlakyStore(dir);
    const { authority, bot, dest, spend } = await setup(config(), store);
    const err = (await bot.runCycle().catch((e: unknown) => e)) as Error;
    expect(err.message).toContain(
      `joined the authority, but could not save the identity to directory ${dir} (3 attempts): EIO: i/o error, write`,
    );
    const rescue = path.join(path.dirname(dir), '.storage.identity-rescue.json');
    expect(err.message).toContain(`It was written to ${rescue} (mode 0600) instead`);
    expect(err.message).toMatch(/no new join token is needed/);
    expect((await stat(rescue)).mode & 0o777).toBe(0o600);
    expect(await authority.listTokens()).toHaveLength(0); // the token is spent...
    spend();
    // ...and the next cycle still cannot save: it neither joins again nor renews past the unsaved identity.
    await expect(bot.runCycle()).rejects.toThrow(/could not save the identity/);
    expect(dest.writes).toBe(0);

    store.fixed = true; // the operator fixes the storage; the same process goes on
    const [result] = await bot.runCycle();
    expect(result?.ok).toBe(true);
    expect((await store.load())?.generation).toBe(2);
  });

  it('a one-shot run whose storage fails after the join leaves the identity beside it; the next run takes it without a token', async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    const store = new FlakyStore(dir);
    const { authority, clock, bot } = await setup(config(), store);
    const err = (await bot.runCycle().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(StorageError);
    expect(await authority.listTokens()).toHaveLength(0); // spent: this process ends here, as --oneshot does

    // The operator fixes the storage; a new process with the same configuration and no token left.
    const restarted = restartedBot(authority, clock, dir);
    const [result] = await restarted.runCycle();
    expect(result?.ok).toBe(true);
    expect(JSON.parse(await readFile(path.join(dir, 'identity.json'), 'utf8')).generation).toBe(2);
    await expect(stat(path.join(path.dirname(dir), '.storage.identity-rescue.json'))).rejects.toThrow(
      /ENOENT/,
    );
  });

  it('says when the identity could not be kept beside the storage either (others can write the parent)', async () => {
    const parent = await makeTempDir();
    await chmod(parent, 0o777);
    const dir = path.join(parent, 'storage');
    const { bot } = await setup(config(), new FlakyStore(dir));
    const err = (await bot.runCycle().catch((e: unknown) => e)) as Error;
    expect(err.message).toContain(
      `could not be kept anywhere else either (not written beside the storage: others can write into ${parent})`,
    );
    expect(err.message).toMatch(/this process keeps it in memory .* needs a new join token/);
    await expect(stat(path.join(parent, '.storage.identity-rescue.json'))).rejects.toThrow(/ENOENT/);
    await chmod(parent, 0o700);
  });

  it('a rescue file older than the stored identity is removed, not used', async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    const store = new FlakyStore(dir);
    const { bot } = await setup(config(), store);
    await bot.runCycle().catch(() => undefined); // generation 1 in the rescue file only
    store.fixed = true;
    await bot.runCycle(); // generation 2 saved: storage removes the stale rescue file itself
    const rescue = path.join(path.dirname(dir), '.storage.identity-rescue.json');
    await expect(stat(rescue)).rejects.toThrow(/ENOENT/);
    // One left by hand (an old copy) loses to the newer stored identity and is removed on load.
    await writeFile(
      rescue,
      JSON.stringify({ ...(await store.load()), generation: 1, expires: '2020-01-01T00:00:00Z' }),
      { mode: 0o600 },
    );
    expect((await new DirectoryIdentityStore(dir).load())?.generation).toBe(2);
    await expect(stat(rescue)).rejects.toThrow(/ENOENT/);
  });

  it.runIf(asRoot)('refuses a storage directory of another user before spending the token', async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, 4242, 4242);
    const { authority, bot } = await setup(config(), new DirectoryIdentityStore(dir));
    await expect(bot.runCycle()).rejects.toThrow(
      /storage\.path .* is owned by uid 4242, not by the bot's user/,
    );
    expect(await authority.listTokens()).toHaveLength(1);
  });

  it('refuses a storage path that is a file before spending the token', async () => {
    const dir = path.join(await makeTempDir(), 'storage');
    await mkdir(path.dirname(dir), { recursive: true });
    await import('node:fs/promises').then((fs) => fs.writeFile(dir, 'not a directory'));
    const { authority, bot } = await setup(config(), new DirectoryIdentityStore(dir));
    await expect(bot.runCycle()).rejects.toThrow(/storage\.path .* is not a directory/);
    expect(await authority.listTokens()).toHaveLength(1);
  });

  it.runIf(asRoot)('refuses a destination directory of another user before spending the token', async () => {
    const out = path.join(await makeTempDir(), 'out');
    await mkdir(out, { mode: 0o755 });
    await chown(out, 4242, 4242);
    const cfg = config(`    destination: { type: directory, path: ${out} }\n    username: alice`);
    const { authority, bot } = await setup(
      cfg,
      new DirectoryIdentityStore(path.join(await makeTempDir(), 's')),
    );
    await expect(bot.runCycle()).rejects.toThrow(/outputs\.0\.destination\.path: .* is owned by uid 4242/);
    expect(await authority.listTokens()).toHaveLength(1);
  });

  it('tightens a destination of this user that others can write, before the join', async () => {
    const out = path.join(await makeTempDir(), 'out');
    await mkdir(out);
    await chmod(out, 0o777);
    const cfg = config(`    destination: { type: directory, path: ${out} }\n    username: alice`);
    expect(await preflightOutputs(cfg)).toEqual([expect.stringContaining(`tightened destination ${out}`)]);
    expect((await stat(out)).mode & 0o777).toBe(0o755);
  });

  it('refuses an output without username (tbot allows it: a Teleport proxy takes it) before spending the token', async () => {
    const cfg = config('    destination: { type: memory }');
    const { authority, bot } = await setup(
      cfg,
      new DirectoryIdentityStore(path.join(await makeTempDir(), 's')),
    );
    const err = (await bot.runCycle().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^outputs\.0\.username: not set\. Without a Teleport cluster/);
    expect(await authority.listTokens()).toHaveLength(1);
  });
});

describe('onboarding.token as an absolute path (tbot reads the file)', () => {
  it('reads the token from the file, trimmed', async () => {
    const file = path.join(await makeTempDir(), 'token');
    await import('node:fs/promises').then((fs) => fs.writeFile(file, 'the-token\n'));
    expect(await resolveToken(file, {})).toBe('the-token');
  });

  it('names the path when the file cannot be read, and never sends the path as the token', async () => {
    const missing = path.join(await makeTempDir(), 'nope');
    const err = (await resolveToken(missing, {}).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain(`onboarding.token: cannot read the token file ${missing}`);
    expect(err.message).toContain('an absolute path is read as a file, as tbot does');
  });

  it('takes a relative value as the token itself, as tbot does', async () => {
    expect(await resolveToken('abc123', {})).toBe('abc123');
  });
});
