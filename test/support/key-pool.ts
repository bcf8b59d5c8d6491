/**
 * Global setup of the test projects: a few RSA-2048 test key pairs, made once per run. Generating one costs
 * 100-200 ms here and nearly every test file wanted the same handful; test/support/fixtures.ts takes its
 * key slots and test CA keys from this pool first. The pool reaches the test workers and the processes
 * tests start through the environment (TEST_KEY_POOL), and exists only in memory for the run.
 */
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';

export const KEY_POOL_VARIABLE = 'TEST_KEY_POOL';
/** testKeyPair slots 0..SLOTS-1, then keys for the first CAS test CAs of a process. */
export const KEY_POOL_SLOTS = 6;
export const KEY_POOL_CAS = 4;

export default async function setup(): Promise<(() => void) | undefined> {
  if (process.env[KEY_POOL_VARIABLE]) return undefined;
  const keys: KeyPairPem[] = await Promise.all(
    Array.from({ length: KEY_POOL_SLOTS + KEY_POOL_CAS }, () => generateRsaKeyPair()),
  );
  process.env[KEY_POOL_VARIABLE] = JSON.stringify(keys);
  return () => {
    delete process.env[KEY_POOL_VARIABLE];
  };
}

/** The pool this process received, or [] (outside a test run). */
export function keyPool(): KeyPairPem[] {
  const text = process.env[KEY_POOL_VARIABLE];
  return text ? (JSON.parse(text) as KeyPairPem[]) : [];
}
