/**
 * The Destination contract (src/destinations/destination.ts), shared by every implementation: where a bot
 * delivers an output. `write` is all-or-nothing: a reader sees the previous complete bundle or the new
 * complete bundle, and a failed write leaves the previous one in place. Each implementation's test runs
 * `destinationContract` with a function that opens a fresh, empty destination.
 */
import { describe, expect, it } from 'vitest';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import type { Destination } from '../../src/destinations/destination.js';
import { testBundle } from '../support/fixtures.js';

export interface DestinationUnderTest {
  destination: Destination;
  /** Another handle on the same storage, as a reader elsewhere (another process, a Lambda) opens it. */
  reopen(): Destination;
}

/** A write this implementation must fail, leaving the previous bundle in place. */
export interface FailingWrite<T extends DestinationUnderTest> {
  what: string;
  write(subject: T): Promise<unknown>;
}

export function destinationContract<T extends DestinationUnderTest>(
  name: string,
  open: () => Promise<T>,
  failingWrites: readonly FailingWrite<T>[] = [],
): void {
  describe(`${name}: Destination contract`, () => {
    it('says what it is', async () => {
      const { destination } = await open();
      expect(destination.description).toMatch(/\S/);
    });

    it('reads undefined before anything is written', async () => {
      const { destination } = await open();
      expect(await destination.read()).toBeUndefined();
    });

    it('reads back exactly the bundle written', async () => {
      const { destination } = await open();
      const b = await testBundle({ format: 'tls' });
      await destination.write(b);
      expect(await destination.read()).toEqual(b);
    });

    it('a handle opened afterwards reads what was written', async () => {
      const subject = await open();
      const b = await testBundle();
      await subject.destination.write(b);
      expect(await subject.reopen().read()).toEqual(b);
    });

    it('a second write replaces the first whole: nothing of the first remains', async () => {
      const { destination } = await open();
      const first = await testBundle({ format: 'cockroach', slot: 0 });
      const second = await testBundle({ slot: 1 });
      await destination.write(first);
      await destination.write(second);
      expect(await destination.read()).toEqual(second);
    });

    it('a reader during a write sees the previous or the new bundle, never a mix', async () => {
      const subject = await open();
      const first = await testBundle({ format: 'tls', slot: 0 });
      const second = await testBundle({ format: 'tls', slot: 1 });
      await subject.destination.write(first);
      const reader = subject.reopen();
      const seen: (CredentialBundle | undefined)[] = [];
      let done = false;
      const writing = subject.destination.write(second).finally(() => {
        done = true;
      });
      while (!done) seen.push(await reader.read());
      await writing;
      seen.push(await reader.read());
      for (const b of seen) expect([first.serial, second.serial]).toContain(b?.serial);
      for (const b of seen) expect(b).toEqual(b?.serial === first.serial ? first : second);
      expect(seen.at(-1)).toEqual(second);
    });

    for (const failing of failingWrites)
      it(`a failed write (${failing.what}) leaves the previous bundle readable, and the next one lands`, async () => {
        const subject = await open();
        const good = await testBundle({ slot: 0 });
        await subject.destination.write(good);
        await expect(failing.write(subject)).rejects.toThrow();
        expect(await subject.destination.read()).toEqual(good);
        expect(await subject.reopen().read()).toEqual(good);
        const next = await testBundle({ slot: 1 });
        await subject.destination.write(next);
        expect(await subject.destination.read()).toEqual(next);
      });
  });
}
