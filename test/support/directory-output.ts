/** Looking at a directory destination's output from outside, as a client configured with its paths would. */
import { readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { readDirectoryOutput } from '../../src/destinations/directory.js';
import { makeTempDir } from './temp.js';

/** A fresh output path (not yet created) under a real, symlink-free temp directory. */
export async function outputPath(): Promise<string> {
  return path.join(await realpath(await makeTempDir('broker-dest-')), 'out');
}

/** Reads every artifact through its name in the destination, as a client configured with those paths would. */
export async function readByName(dir: string, names: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of names) out[name] = await readFile(path.join(dir, name), 'utf8');
  return out;
}

/** The entries of `.versions`, i.e. the issuances kept on disk. */
export const versions = async (dir: string) => (await readdir(path.join(dir, '.versions'))).sort();

/** Asserts that every artifact name resolves to `b`'s content and `read()` returns exactly `b`. */
export async function expectCurrent(dir: string, b: CredentialBundle): Promise<void> {
  expect(await readByName(dir, Object.keys(b.files))).toEqual(b.files);
  expect(await readDirectoryOutput(dir)).toEqual(b);
}
