/**
 * The contract every BundleSource keeps (src/proxy/sources/bundle-source.ts), run against each
 * implementation: nothing written reads as undefined, the newest complete write is what a load returns, and
 * a corrupt or partial write is an error that names the source, never a half bundle handed to the proxy.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { BrokerError } from '../../src/errors.js';
import type { BundleSource } from '../../src/proxy/sources/bundle-source.js';

/** One implementation under test, with the writer its bundles come from in real use. */
export interface BundleSourceSubject {
  source: BundleSource;
  /** Writes a bundle the way the bot's destination for this source does. */
  write(bundle: CredentialBundle): Promise<void>;
  /** Leaves `bundle` behind cut short: the newest text or file ends halfway. */
  writeTruncated(bundle: CredentialBundle): Promise<void>;
  /** Leaves `bundle` behind with another issuance's private key beside its certificate. */
  writeMixed(bundle: CredentialBundle, otherKeyPem: string): Promise<void>;
  /** What every error must name so an operator can find the source: the directory, the secret id. */
  where: string;
  close(): Promise<void>;
}

export interface BundleSourceContractOptions {
  /** A fresh, empty subject for each test. */
  subject: () => Promise<BundleSourceSubject>;
  /** Two real bundles for one route, the second issued after the first, and a key of neither. */
  bundles: () => { first: CredentialBundle; newer: CredentialBundle; otherKeyPem: string };
}

/** Registers the BundleSource contract tests for one implementation. */
export function bundleSourceContract(name: string, options: BundleSourceContractOptions): void {
  describe(`BundleSource contract: ${name}`, () => {
    let subject: BundleSourceSubject;
    beforeEach(async () => {
      subject = await options.subject();
    });
    afterEach(() => subject.close());

    /** The error a load fails with; fails the test when the load returns anything. */
    const loadError = async (): Promise<BrokerError> => {
      const result = await subject.source.load().then(
        (bundle) => ({ bundle }),
        (err: unknown) => ({ err }),
      );
      if ('bundle' in result)
        throw new Error(`load() returned ${result.bundle ? `serial ${result.bundle.serial}` : 'undefined'}`);
      expect(result.err).toBeInstanceOf(BrokerError);
      return result.err as BrokerError;
    };

    it('describes itself', () => {
      expect(subject.source.description).toContain(subject.where);
    });

    it('reads undefined before anything was written, every time', async () => {
      expect(await subject.source.load()).toBeUndefined();
      expect(await subject.source.load()).toBeUndefined();
    });

    it('returns the bundle that was written', async () => {
      const { first } = options.bundles();
      await subject.write(first);
      expect(await subject.source.load()).toEqual(first);
    });

    it('returns the newer bundle after a newer write, and keeps returning it', async () => {
      const { first, newer } = options.bundles();
      await subject.write(first);
      expect((await subject.source.load())?.serial).toBe(first.serial);
      await subject.write(newer);
      expect(await subject.source.load()).toEqual(newer);
      expect(await subject.source.load()).toEqual(newer);
    });

    it('fails a write cut short with a BundleError or DestinationError naming the source', async () => {
      const { first, newer } = options.bundles();
      await subject.write(first);
      await subject.writeTruncated(newer);
      const err = await loadError();
      expect(['BundleError', 'DestinationError']).toContain(err.name);
      expect(err.message).toContain(subject.where);
    });

    it('fails a bundle that mixes two issuances, without quoting the key', async () => {
      const { newer, otherKeyPem } = options.bundles();
      await subject.writeMixed(newer, otherKeyPem);
      const err = await loadError();
      expect(err.name).toBe('BundleError');
      expect(err.message).toContain(subject.where);
      expect(err.message).toContain('files.key');
      expect(err.message).not.toContain('PRIVATE KEY');
    });

    it('reads a complete write again after a corrupt one', async () => {
      const { first, newer } = options.bundles();
      await subject.writeTruncated(first);
      await loadError();
      await subject.write(newer);
      expect(await subject.source.load()).toEqual(newer);
    });
  });
}
