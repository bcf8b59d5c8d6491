/**
 * The IdentityStore contract (src/bot/identity-store.ts), shared by every implementation: where a bot keeps
 * its renewable identity between runs. What was saved last is what loads, a save replaces the previous
 * identity whole, and a failed save leaves the stored identity unchanged. Each implementation's test runs
 * `identityStoreContract` with a function that opens a fresh, empty store.
 */
import { describe, expect, it } from 'vitest';
import type { IdentityStore } from '../../src/bot/identity-store.js';
import { BrokerError } from '../../src/errors.js';
import { testIdentity } from '../support/fixtures.js';

export interface IdentityStoreUnderTest {
  store: IdentityStore;
  /** Another handle on the same storage, as the bot's next run opens it. */
  reopen(): IdentityStore;
}

/** A save this implementation must fail, leaving the stored identity unchanged. */
export interface FailingSave<T extends IdentityStoreUnderTest> {
  what: string;
  save(subject: T): Promise<unknown>;
  /** Undoes what made the save fail, if it was outside the store (before the stored identity is read). */
  repair?(subject: T): Promise<void>;
}

export interface IdentityStoreContractOptions<T extends IdentityStoreUnderTest> {
  failingSaves?: readonly FailingSave<T>[];
  /** Puts `text` where the store keeps its identity, as a damaged or hand-edited store would hold it. */
  corrupt?(subject: T, text: string): Promise<void>;
}

export function identityStoreContract<T extends IdentityStoreUnderTest>(
  name: string,
  open: () => Promise<T>,
  options: IdentityStoreContractOptions<T> = {},
): void {
  describe(`${name}: IdentityStore contract`, () => {
    it('says what it is', async () => {
      const { store } = await open();
      expect(store.description).toMatch(/\S/);
    });

    it('loads undefined before anything is saved', async () => {
      const { store } = await open();
      expect(await store.load()).toBeUndefined();
    });

    it('loads exactly the identity saved, also through a handle opened afterwards', async () => {
      const subject = await open();
      const identity = await testIdentity(1, 0);
      await subject.store.save(identity);
      expect(await subject.store.load()).toEqual(identity);
      expect(await subject.reopen().load()).toEqual(identity);
    });

    it('a second save replaces the first', async () => {
      const { store } = await open();
      await store.save(await testIdentity(1, 0));
      const renewed = await testIdentity(2, 1);
      await store.save(renewed);
      expect(await store.load()).toEqual(renewed);
    });

    it('saving the same identity again (a retry) changes nothing', async () => {
      const { store } = await open();
      const identity = await testIdentity(3, 0);
      await store.save(identity);
      await store.save(identity);
      expect(await store.load()).toEqual(identity);
    });

    for (const failing of options.failingSaves ?? [])
      it(`a failed save (${failing.what}) leaves the stored identity unchanged`, async () => {
        const subject = await open();
        const stored = await testIdentity(1, 0);
        await subject.store.save(stored);
        await expect(failing.save(subject)).rejects.toThrow();
        await failing.repair?.(subject);
        expect(await subject.store.load()).toEqual(stored);
        expect(await subject.reopen().load()).toEqual(stored);
      });

    const { corrupt } = options;
    if (corrupt)
      it('refuses a corrupt stored identity with bad_identity, saying to join again, without quoting it', async () => {
        const subject = await open();
        const identity = await testIdentity(1, 0);
        const secretLooking = 'c2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtdG8tYmUtcXVvdGVk';
        for (const text of [
          `{"privateKeyPem": "${secretLooking}"`,
          JSON.stringify({ ...identity, generation: 'one' }),
        ]) {
          await corrupt(subject, text);
          const err = await subject.store.load().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err, text).toBeInstanceOf(BrokerError);
          expect((err as BrokerError).code).toBe('bad_identity');
          expect((err as Error).message).toMatch(/join again/);
          expect((err as Error).message).not.toContain(secretLooking);
          expect((err as Error).message).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
        }
      });
  });
}
