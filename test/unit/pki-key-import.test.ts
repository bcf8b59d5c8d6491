import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { tryParsePublicKey } from '../../src/pki/keys.js';
import { isSignedBy, parseCertificate } from '../../src/pki/parse.js';
import { testCa, testLeafCertificate } from '../support/fixtures.js';

const spkiPem = (der: Buffer) =>
  `-----BEGIN PUBLIC KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PUBLIC KEY-----\n`.replace(
    /\n\n/g,
    '\n',
  );

describe('tryParsePublicKey', () => {
  it('reads RSA and P-256 keys as the same keys OpenSSL decodes, other algorithms too', () => {
    const kinds = [
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
      generateKeyPairSync('rsa', { modulusLength: 3072 }),
      generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      generateKeyPairSync('ec', { namedCurve: 'P-384' }),
      generateKeyPairSync('ed25519'),
    ];
    for (const { publicKey } of kinds) {
      const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const key = tryParsePublicKey(pem);
      expect(key?.equals(createPublicKey(pem))).toBe(true);
      expect(key?.asymmetricKeyDetails).toEqual(publicKey.asymmetricKeyDetails);
      expect(tryParsePublicKey(pem.replace(/\n/g, '\r\n'))?.equals(publicKey)).toBe(true);
    }
  });

  it('refuses a P-256 point off the curve and garbage; leaves a non-canonical SPKI to OpenSSL as before', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    ec[ec.length - 1] = (ec[ec.length - 1] as number) ^ 1;
    expect(tryParsePublicKey(spkiPem(ec))).toBeUndefined();
    expect(tryParsePublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toBeUndefined();
    // Bytes after the SPKI: OpenSSL reads the key anyway, and so does the broker, exactly as it did.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    const trailing = spkiPem(Buffer.concat([rsa, Buffer.from([0, 0])]));
    expect(tryParsePublicKey(trailing)?.equals(createPublicKey(trailing))).toBe(true);
  });
});

describe('parsed certificates are shared', () => {
  it('parseCertificate returns one frozen result per PEM, and isSignedBy checks issuer and signature', async () => {
    const ca = await testCa('key-import-ca');
    const other = await testCa('key-import-other');
    const leaf = await testLeafCertificate({}, ca);
    const first = parseCertificate(leaf.certificatePem);
    expect(parseCertificate(leaf.certificatePem)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.privateExtensions)).toBe(true);
    expect(isSignedBy(leaf.certificatePem, ca.certificatePem)).toBe(true);
    expect(isSignedBy(leaf.certificatePem, other.certificatePem)).toBe(false);
    expect(isSignedBy(leaf.certificatePem, ca.certificatePem)).toBe(true);
  });
});
