import { promises as fs } from 'node:fs';
import path from 'node:path';
import { type BotIdentity, botIdentitySchema } from '../credentials/identity.js';
import { BrokerError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../state/file-store.js';
import { readRescue, removeRescue, rescueFileOf, writeRescue } from './identity-rescue.js';
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
  /**
   * Keeps an identity that `save` refused where the next `load` finds it, and returns where; throws with the
   * reason when no safe place is left. Absent: the identity can live only in this process's memory.
   */
  rescue?(identity: BotIdentity): Promise<string>;
  /** What the last `load` did beyond reading (an identity taken back from a rescue file), for the log. */
  takeNotes?(): string[];
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

  private readonly notes: string[] = [];

  async prepare(): Promise<string[]> {
    try {
      const changes = await ensurePrivateDirectory(this.dir, this.key);
      changes.push(...(await ensurePrivateFile(this.file, this.key)));
      await probeWritable(this.dir, this.key);
      return changes;
    } catch (err) {
      const rescue = rescueFileOf(this.dir);
      const waiting = await readRescue(this.dir).catch(() => undefined);
      if (!waiting) throw err;
      throw new StorageError(
        `${errorMessage(err)}. The bot's newest identity waits in ${rescue}; once the storage works the bot takes it from there (no new join token is needed)`,
        { cause: err },
      );
    }
  }

  /**
   * The stored identity, or the one in the rescue file beside the storage when that is newer (it expires
   * later): a join or renewal whose save failed. It is moved into storage first; if storage still refuses it,
   * the load fails naming both, and the rescue file stays.
   */
  async load(): Promise<BotIdentity | undefined> {
    const stored = await this.loadStored();
    const rescued = await readRescue(this.dir);
    if (!rescued) return stored;
    const file = rescueFileOf(this.dir);
    if (stored && Date.parse(stored.expires) >= Date.parse(rescued.expires)) {
      await removeRescue(this.dir);
      this.notes.push(`removed ${file}: ${this.file} holds a newer identity`);
      return stored;
    }
    try {
      await this.save(rescued);
    } catch (err) {
      throw new StorageError(
        `${file} holds the bot's newest identity (generation ${rescued.generation}), but ${this.key} ${this.dir} still cannot take it: ${errorMessage(err)}. Fix the storage and run again; the identity stays in ${file}, no new join token is needed`,
        { cause: err },
      );
    }
    this.notes.push(
      `moved the identity kept in ${file} (generation ${rescued.generation}) into ${this.file}`,
    );
    return rescued;
  }

  async rescue(identity: BotIdentity): Promise<string> {
    return writeRescue(this.dir, identity);
  }

  takeNotes(): string[] {
    return this.notes.splice(0);
  }

  private async loadStored(): Promise<BotIdentity | undefined> {
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
    // Storage holds the newest identity now: a rescue file left from an earlier failure is stale.
    await removeRescue(this.dir).catch(() => undefined);
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
