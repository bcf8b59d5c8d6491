/**
 * Pins the random bytes of certificate serials (`randomBytes(16)`) to chosen values, for the edge cases of
 * DER INTEGER encoding that real randomness hits only once in a few hundred certificates. A test file mocks
 * node:crypto with `cryptoWithForcedSerials` and queues the bytes of the next serials in `forcedSerialBytes`:
 *
 *   vi.mock('node:crypto', async (importOriginal) =>
 *     (await import('../support/serial-bytes.js')).cryptoWithForcedSerials(importOriginal));
 */
import type * as Crypto from 'node:crypto';

/** The bytes the next `randomBytes(16)` calls return, first in first out; real randomness when empty. */
export const forcedSerialBytes: Buffer[] = [];

/** node:crypto whose `randomBytes(16)` (synchronous) takes its bytes from `forcedSerialBytes` first. */
export async function cryptoWithForcedSerials(importOriginal: () => Promise<typeof Crypto>) {
  const actual = await importOriginal();
  const randomBytes = ((size: number, ...rest: unknown[]) => {
    if (size === 16 && rest.length === 0 && forcedSerialBytes.length > 0) return forcedSerialBytes.shift();
    return (actual.randomBytes as (...args: unknown[]) => unknown)(size, ...rest);
  }) as typeof actual.randomBytes;
  return { ...actual, default: { ...actual, randomBytes }, randomBytes };
}
