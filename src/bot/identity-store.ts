import { promises as fs } from 'node:fs';
import path from 'node:path';
import { type BotIdentity, botIdentitySchema } from '../credentials/identity.js';
import { BrokerError } from '../errors.js';
import { writeFileAtomic } from '../state/file-store.js';
import { ensurePrivateDirectory, ensurePrivateFile, probeWritable, StorageError } from './private-dir.js';

/** Where a bot keeps its renewable identity between runs. */
export interface IdentityStore {
  readonly description: string;
  load(): Promise<BotIdentity | undefined>;
  save(identity: BotIdentity): Promise<void>;
  /**
   * Checks, before the bot spends a one-time join token, that a save will succeed, and fixes what it safely
   * can; returns what it changed. Absent: nothing to check.
   */
  prepare?(): Promise<string[]>;
}

/**
 * The identity in `PATH/identity.json` (directory 0700, file 0600, written atomically). As tbot does, it
 * takes a directory made with a plain `mkdir -p` (0755) and tightens it itself; it refuses what it cannot
 * safely fix (a symlink, a directory of another user). `key` names the configuration key in messages.
 */
export class DirectoryIdentityStore implements IdentityStore {
  readonly description: string;
  private readonly file: string;
  constructor(
    private readonly dir: string,
    private readonly key = 'storage.path',
  ) {
    this.description = `directory ${dir}`;
    this.file = path.join(dir, 'identity.json');
  }

  async prepare(): Promise<string[]> {
    const changes = await ensurePrivateDirectory(this.dir, this.key);
    changes.push(...(await ensurePrivateFile(this.file, this.key)));
    await probeWritable(this.dir, this.key);
    return changes;
  }

  async load(): Promise<BotIdentity | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR')
        throw new StorageError(`${this.key} ${this.dir} is not a directory`);
      throw new BrokerError(
        'bad_identity',
        `cannot read the bot identity ${this.file}: ${(err as Error).message}`,
      );
    }
    await ensurePrivateDirectory(this.dir, this.key);
    await ensurePrivateFile(this.file, this.key);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const result = botIdentitySchema.safeParse(parsed);
    if (!result.success)
      throw new BrokerError(
        'bad_identity',
        `the bot identity ${this.file} is corrupt; move it away and join again with a new token (broker tokens add --type=bot --bot NAME)`,
      );
    return result.data;
  }

  async save(identity: BotIdentity): Promise<void> {
    await ensurePrivateDirectory(this.dir, this.key);
    await writeFileAtomic(this.file, `${JSON.stringify(identity)}\n`, 0o600);
  }
}

/** Keeps the identity in memory only: the bot joins again on every start. */
export class MemoryIdentityStore implements IdentityStore {
  readonly description = 'memory';
  private identity: BotIdentity | undefined;
  async load(): Promise<BotIdentity | undefined> {
    return this.identity;
  }
  async save(identity: BotIdentity): Promise<void> {
    this.identity = identity;
  }
}
