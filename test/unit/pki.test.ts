import { verify, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { joinPemBundle, splitPemBundle } from '../../src/credentials/pem.js';
import { BrokerError } from '../../src/errors.js';
import { BACKDATE_MS, buildCertificate, verifyIssuedBy } from '../../src/pki/certificate.js';
import { generateRsaKeyPair, publicKeyOf, tryParsePublicKey } from '../../src/pki/keys.js';
import { BROKER_ARC, OID_DB_SERVICE } from '../../src/pki/oids.js';
import { caPin, parseCertificate } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import {
  HOUR,
  testLeafCertificate as leaf,
  nowSeconds,
  type TestCa,
  testCa,
  testKeyPair,
} from '../support/fixtures.js';

let ca: TestCa;
let otherCa: TestCa;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([testCa(), testCa('another unit test CA')]);
});

describe('keys', () => {
  it('generates RSA-2048 key pairs in PKCS#8 and SPKI PEM, different every time', async () => {
    const [a, b] = await Promise.all([testKeyPair(1), testKeyPair(2)]);
    expect(a.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(a.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const details = tryParsePublicKey(a.publicKeyPem)?.asymmetricKeyDetails;
    expect(details?.modulusLength).toBe(2048);
    expect(details?.publicExponent).toBe(65537n);
    expect(a.publicKeyPem).not.toBe(b.publicKeyPem);
  });

  it('derives the public half of a private key', async () => {
    const keys = await testKeyPair(1);
    expect(publicKeyOf(keys.privateKeyPem)).toBe(keys.publicKeyPem);
  });

  it.each([
    ['garbage', 'not a key'],
    ['empty', ''],
    ['a truncated PEM', '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n'],
  ])('tryParsePublicKey returns undefined for %s', (_name, pem) => {
    expect(tryParsePublicKey(pem)).toBeUndefined();
  });
});

describe('LocalSigner', () => {
  it('produces PKCS#1 v1.5 SHA-256 signatures that verify with the public key', async () => {
    const keys = await testKeyPair(1);
    const signer = new LocalSigner(keys.privateKeyPem);
    expect(signer.publicKeyPem).toBe(keys.publicKeyPem);
    const data = Buffer.from('to be signed');
    const signature = await signer.sign(data);
    expect(signature.length).toBe(256);
    expect(verify('sha256', data, keys.publicKeyPem, signature)).toBe(true);
    expect(verify('sha256', Buffer.from('something else'), keys.publicKeyPem, signature)).toBe(false);
  });

  it('refuses a key that is not a private key', () => {
    expect(() => new LocalSigner('not a key')).toThrow();
  });
});

describe('buildCertificate: leaf certificates', () => {
  it('back-dates notBefore by one minute from issuedAt and ends exactly at notAfter', async () => {
    expect(BACKDATE_MS).toBe(60_000);
    const { template, certificatePem } = await leaf();
    const x509 = new X509Certificate(certificatePem);
    expect(new Date(x509.validFrom).getTime()).toBe(template.issuedAt.getTime() - 60_000);
    expect(new Date(x509.validTo).getTime()).toBe(template.notAfter.getTime());
    const info = parseCertificate(certificatePem);
    expect(info.notBefore.getTime()).toBe(template.issuedAt.getTime() - 60_000);
    expect(info.notAfter.getTime()).toBe(template.notAfter.getTime());
  });

  it('uses random positive serials of at most 128 bits that differ between certificates', async () => {
    const certs = await Promise.all(Array.from({ length: 16 }, () => leaf()));
    const serials = certs.map((c) => c.serial);
    expect(new Set(serials).size).toBe(serials.length);
    for (const { serial, certificatePem } of certs) {
      expect(serial).toMatch(/^[0-9a-f]{1,32}$/);
      expect(serial).not.toMatch(/^00/);
      expect(parseCertificate(certificatePem).serial).toBe(serial);
      expect(BigInt(`0x${new X509Certificate(certificatePem).serialNumber}`)).toBe(BigInt(`0x${serial}`));
    }
    // 128 random bits: with 16 serials, at least one has a non-zero top byte (fails with p = 2^-128).
    expect(serials.some((s) => s.length === 32)).toBe(true);
  });

  it('encodes the subject as O then CN and names the CA as issuer', async () => {
    const { certificatePem } = await leaf({ subject: { commonName: 'alice', organization: 'example-bot' } });
    const x509 = new X509Certificate(certificatePem);
    expect(x509.subject).toBe('O=example-bot\nCN=alice');
    expect(x509.issuer).toBe(new X509Certificate(ca.certificatePem).subject);
    const info = parseCertificate(certificatePem);
    expect(info.subjectCommonName).toBe('alice');
    expect(info.issuerCommonName).toBe('unit test CA');
  });

  it("embeds the subject's public key, not the issuer's", async () => {
    const { certificatePem, template } = await leaf();
    const info = parseCertificate(certificatePem);
    expect(info.publicKeyPem).toBe(template.publicKeyPem);
    expect(info.publicKeyPem).not.toBe(ca.keys.publicKeyPem);
  });
});

describe('verifyIssuedBy', () => {
  it('checks the issuer signature and the validity window', async () => {
    const { certificatePem, template } = await leaf();
    const inside = new Date(template.issuedAt.getTime() + 1000);
    expect(verifyIssuedBy(certificatePem, ca.certificatePem, inside)).toBe(true);
    expect(verifyIssuedBy(certificatePem, otherCa.certificatePem, inside)).toBe(false);
    expect(
      verifyIssuedBy(certificatePem, ca.certificatePem, new Date(template.notAfter.getTime() + 1000)),
    ).toBe(false);
    expect(
      verifyIssuedBy(certificatePem, ca.certificatePem, new Date(template.issuedAt.getTime() - 61_000)),
    ).toBe(false);
    // Within the one-minute back-dating allowance.
    expect(
      verifyIssuedBy(certificatePem, ca.certificatePem, new Date(template.issuedAt.getTime() - 59_000)),
    ).toBe(true);
  });
});

describe('PEM bundles', () => {
  it('splits a bundle into certificates, ignoring text around them and adding missing newlines', () => {
    const bundle = `# comment\n${ca.certificatePem}junk between\n${otherCa.certificatePem.trimEnd()}`;
    const parts = splitPemBundle(bundle);
    expect(parts).toEqual([ca.certificatePem, otherCa.certificatePem]);
    expect(parts.every((p) => p.endsWith('-----END CERTIFICATE-----\n'))).toBe(true);
  });

  it('splits text without certificates into nothing', () => {
    expect(splitPemBundle('')).toEqual([]);
    expect(splitPemBundle('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toEqual([]);
  });

  it('joins certificates de-duplicated, in first-seen order, each ending in a newline', () => {
    const joined = joinPemBundle([
      ca.certificatePem,
      `${otherCa.certificatePem.trimEnd()}\n${ca.certificatePem}`,
      '',
      otherCa.certificatePem.trimEnd(),
    ]);
    expect(joined).toBe(ca.certificatePem + otherCa.certificatePem);
    expect(splitPemBundle(joined)).toHaveLength(2);
    expect(joinPemBundle([])).toBe('');
  });
});

describe('caPin', () => {
  it('depends only on the key: differs between CAs, same for a re-issued certificate with the same key', async () => {
    expect(caPin(ca.certificatePem)).not.toBe(caPin(otherCa.certificatePem));
    const reissued = await buildCertificate(
      {
        subject: { commonName: 'unit test CA', organization: 'unit tests' },
        publicKeyPem: ca.keys.publicKeyPem,
        issuedAt: nowSeconds(),
        notAfter: new Date(Date.now() + 2 * HOUR),
        profile: 'ca',
      },
      { signer: ca.issuer.signer },
    );
    expect(reissued.certificatePem).not.toBe(ca.certificatePem);
    expect(caPin(reissued.certificatePem)).toBe(caPin(ca.certificatePem));
  });
});

describe('parseCertificate', () => {
  it('reports serial, names, validity, fingerprint and public key', async () => {
    const { certificatePem, serial, template } = await leaf({ sans: ['db.internal'] });
    const info = parseCertificate(certificatePem);
    const x509 = new X509Certificate(certificatePem);
    expect(info).toMatchObject({
      serial,
      subjectCommonName: 'alice',
      issuerCommonName: 'unit test CA',
      publicKeyPem: template.publicKeyPem,
      isCA: false,
      sans: ['db.internal'],
      privateExtensions: {},
    });
    expect(info.fingerprint).toBe(x509.fingerprint256.replace(/:/g, '').toLowerCase());
  });

  it('ignores extensions outside the 2.25 arc and keeps the ones under it', async () => {
    const { certificatePem } = await leaf({ privateExtensions: { [`${BROKER_ARC}.9.9`]: 'x' } });
    expect(Object.keys(parseCertificate(certificatePem).privateExtensions)).toEqual([`${BROKER_ARC}.9.9`]);
  });

  it.each([
    ['garbage text', 'hello'],
    ['an empty string', ''],
    [
      'a PEM with a broken body',
      '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
    ],
    ['a public key', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'],
  ])('throws a BrokerError with code bad_certificate for %s', (_name, pem) => {
    let caught: unknown;
    try {
      parseCertificate(pem);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(BrokerError);
    expect((caught as BrokerError).code).toBe('bad_certificate');
    expect((caught as BrokerError).message).toMatch(/not a valid X\.509 certificate/);
  });

  it('throws bad_certificate for a truncated certificate', async () => {
    const { certificatePem } = await leaf();
    const lines = certificatePem.trimEnd().split('\n');
    const truncated = [...lines.slice(0, 5), lines.at(-1)].join('\n');
    expect(() => parseCertificate(truncated)).toThrow(expect.objectContaining({ code: 'bad_certificate' }));
  });

  it('signs with the issuer it is given when several CAs are in use', async () => {
    const fresh = await generateRsaKeyPair();
    const { certificatePem } = await leaf(
      { publicKeyPem: fresh.publicKeyPem, privateExtensions: { [OID_DB_SERVICE]: 's' } },
      otherCa,
    );
    const info = parseCertificate(certificatePem);
    expect(info.issuerCommonName).toBe('another unit test CA');
    expect(info.publicKeyPem).toBe(fresh.publicKeyPem);
    expect(verifyIssuedBy(certificatePem, otherCa.certificatePem, new Date())).toBe(true);
    expect(verifyIssuedBy(certificatePem, ca.certificatePem, new Date())).toBe(false);
  });
});
