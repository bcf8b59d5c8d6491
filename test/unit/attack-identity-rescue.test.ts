/**
 * The identity kept beside the storage when storage fails after a join (src/bot/identity-rescue.ts),
 * attacked by a local user: a rescue file planted through a symlink, with loose modes, by another user, or
 * in a parent directory others can write into (where the bot never writes one, so whatever is there is not
 * its own). None is taken back, a planted file cannot stop the bot from starting, and no message or log
 * line carries the private key.
 */
import { chmod, chown, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectoryIdentityStore, type IdentityStore } from '../../src/bot/identity-store.js';
import { saveOrRescue } from '../../src/bot/save-identity.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import { testIdentity } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const asRoot = process.getuid?.() === 0;

/** A storage directory holding generation 1, and the path of its rescue file. */
async function storageWithIdentity(parentMode = 0o700) {
  const parent = await makeTempDir();
  const dir = path.join(parent, 'storage');
  const stored = await testIdentity(1, 0);
  await new DirectoryIdentityStore(dir).save(stored);
  await chmod(parent, parentMode);
  return { parent, dir, stored, rescue: path.join(parent, '.storage.identity-rescue.json') };
}

/** An identity an attacker would like the bot to take: a later generation, expiring later, another key. */
async function planted(): Promise<BotIdentity> {
  return { ...(await testIdentity(7, 1)), expires: '2099-01-01T00:00:00.000Z' };
}

const storedGeneration = async (dir: string) =>
  JSON.parse(await readFile(path.join(dir, 'identity.json'), 'utf8')).generation as number;

describe('a rescue file the bot did not write is never taken back', () => {
  it('a symlink to an identity file: refused, the stored identity kept', async () => {
    const { parent, dir, rescue } = await storageWithIdentity();
    const elsewhere = path.join(parent, 'elsewhere.json');
    await writeFile(elsewhere, JSON.stringify(await planted()), { mode: 0o600 });
    await symlink(elsewhere, rescue);
    await expect(new DirectoryIdentityStore(dir).load()).rejects.toThrow(/is not a private file/);
    expect(await storedGeneration(dir)).toBe(1);
  });

  it('readable by others (0644): refused, the stored identity kept', async () => {
    const { dir, rescue } = await storageWithIdentity();
    await writeFile(rescue, JSON.stringify(await planted()), { mode: 0o644 });
    await chmod(rescue, 0o644);
    await expect(new DirectoryIdentityStore(dir).load()).rejects.toThrow(/chmod 600/);
    expect(await storedGeneration(dir)).toBe(1);
  });

  it.runIf(asRoot)('of another user, in a safe parent: refused, the stored identity kept', async () => {
    const { dir, rescue } = await storageWithIdentity();
    await writeFile(rescue, JSON.stringify(await planted()), { mode: 0o600 });
    await chown(rescue, 4242, 4242);
    await expect(new DirectoryIdentityStore(dir).load()).rejects.toThrow(/is not a private file/);
    expect(await storedGeneration(dir)).toBe(1);
  });

  for (const [what, mode] of [
    ['group-writable', 0o770],
    ['world-writable', 0o777],
  ] as const)
    it(`in a ${what} parent (where the bot never writes one): not taken, even as a private file of the bot's user`, async () => {
      // Others who can write the parent can swap the file between its check and its read.
      const { dir, rescue } = await storageWithIdentity(mode);
      await writeFile(rescue, JSON.stringify(await planted()), { mode: 0o600 });
      const loaded = await new DirectoryIdentityStore(dir).load();
      expect(loaded?.generation).toBe(1);
      expect(await storedGeneration(dir)).toBe(1);
    });

  it.runIf(asRoot)(
    "planted by another user in a sticky world-writable parent (/tmp-like): ignored, so it cannot stop the bot's start",
    async () => {
      const { dir, rescue } = await storageWithIdentity(0o1777);
      await writeFile(rescue, 'not even an identity', { mode: 0o600 });
      await chown(rescue, 4242, 4242);
      expect((await new DirectoryIdentityStore(dir).load())?.generation).toBe(1);
    },
  );
});

describe('the private key stays out of messages and logs', () => {
  it('a corrupt rescue file holding a key is refused without quoting it', async () => {
    const { dir, rescue } = await storageWithIdentity();
    const identity = await planted();
    await writeFile(rescue, JSON.stringify({ privateKeyPem: identity.privateKeyPem, generation: 'x' }), {
      mode: 0o600,
    });
    const err = (await new DirectoryIdentityStore(dir).load().catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/is corrupt: move it away/);
    expect(String(err.stack)).not.toContain('PRIVATE KEY');
  });

  it('a save that fails every time, and a rescue that fails too: neither the error nor the log has the key', async () => {
    const identity = await testIdentity(3, 2);
    const lines: string[] = [];
    const log = pino(
      { level: 'trace' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const store: IdentityStore = {
      description: 'directory /nowhere',
      load: async () => undefined,
      save: async (i) => {
        // A storage error that quotes what it was given, as a careless backend might.
        throw new Error(`EIO writing ${JSON.stringify(i).length} bytes`);
      },
      rescue: async () => {
        throw new Error('no safe place');
      },
    };
    const err = (await saveOrRescue(identity, {
      store,
      log,
      what: 'joined the authority',
      delaysMs: [0, 0],
    }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/could not save the identity to directory \/nowhere \(3 attempts\)/);
    expect(lines).toHaveLength(2);
    for (const text of [err.message, String(err.stack), ...lines]) {
      expect(text).not.toContain('PRIVATE KEY');
      expect(text).not.toContain(identity.privateKeyPem.split('\n')[1]);
    }
  });

  it('the rescue file the bot writes is 0600 in a 0700 parent, and gone once storage takes it back', async () => {
    const parent = await makeTempDir();
    const dir = path.join(parent, 'storage');
    await mkdir(dir, { mode: 0o700 });
    const identity = await testIdentity(2, 3);
    const file = await new DirectoryIdentityStore(dir).rescue(identity);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await new DirectoryIdentityStore(dir).load())?.generation).toBe(2);
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });
});
