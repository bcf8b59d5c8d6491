import { createHash, createPublicKey, verify, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinPemBundle, splitPemBundle } from '../../src/credentials/pem.js';
import { BrokerError } from '../../src/errors.js';
import {
  BACKDATE_MS,
  buildCertificate,
  type CertificateProfile,
  type CertificateTemplate,
  verifyIssuedBy,
} from '../../src/pki/certificate.js';
import { generateRsaKeyPair, publicKeyOf, tryParsePublicKey } from '../../src/pki/keys.js';
import { BROKER_ARC, OID_DB_DATABASE, OID_DB_SERVICE, OID_DB_USERNAME } from '../../src/pki/oids.js';
import { caPin, parseCertificate } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import {
  keyIdFromText,
  makeTempDir,
  nowSeconds,
  openssl,
  opensslText,
  opensslVerify,
  removeTempDirs,
  run,
  type TestCa,
  testCa,
  testKeyPair,
  writeFiles,
} from './helpers.js';

const HOUR = 3_600_000;

let ca: TestCa;
let otherCa: TestCa;
let dir: string;

beforeAll(async () => {
  [ca, otherCa, dir] = await Promise.all([testCa(), testCa('another unit test CA'), makeTempDir()]);
});
afterAll(removeTempDirs);

async function leaf(overrides: Partial<CertificateTemplate> = {}, issuer: TestCa = ca) {
  const keys = await testKeyPair(1);
  const issuedAt = nowSeconds();
  const template: CertificateTemplate = {
    subject: { commonName: 'alice', organization: 'example-bot' },
    publicKeyPem: keys.publicKeyPem,
    issuedAt,
    notAfter: new Date(issuedAt.getTime() + HOUR),
    profile: 'client',
    ...overrides,
  };
  return { template, ...(await buildCertificate(template, issuer.issuer)) };
}

/** SHA-1 over the subjectPublicKey bits (for RSA: the PKCS#1 RSAPublicKey DER), RFC 5280 §4.2.1.2 (1). */
function rfc5280KeyId(publicKeyPem: string): string {
  const bits = createPublicKey(publicKeyPem).export({ type: 'pkcs1', format: 'der' });
  return createHash('sha1').update(bits).digest('hex');
}

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

describe('buildCertificate: CA profile', () => {
  it('makes a self-signed CA that openssl accepts, with critical CA:TRUE and keyCertSign', async () => {
    const verified = await opensslVerify(dir, ca.certificatePem, ca.certificatePem);
    expect(verified.stdout + verified.stderr).toMatch(/: OK/);
    expect(verified.code).toBe(0);

    const text = await opensslText(dir, ca.certificatePem);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s*\n\s*CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*.*Certificate Sign, CRL Sign/);
    expect(text).not.toMatch(/Extended Key Usage/);
    expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
    expect(text).toMatch(/Subject: O ?= ?unit tests, CN ?= ?unit test CA/);

    const x509 = new X509Certificate(ca.certificatePem);
    expect(x509.ca).toBe(true);
    expect(x509.checkIssued(x509)).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(parseCertificate(ca.certificatePem).isCA).toBe(true);
  });

  it('gives a self-signed CA an authority key identifier equal to its own subject key identifier', async () => {
    const text = await opensslText(dir, ca.certificatePem);
    const ski = keyIdFromText(text, 'Subject Key Identifier');
    expect(ski).toBe(rfc5280KeyId(ca.keys.publicKeyPem));
    expect(keyIdFromText(text, 'Authority Key Identifier')).toBe(ski);
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

  it('is accepted by openssl verify against the issuing CA and rejected against another CA', async () => {
    const { certificatePem } = await leaf();
    const good = await opensslVerify(dir, ca.certificatePem, certificatePem);
    expect(good.code, good.stderr).toBe(0);
    const bad = await opensslVerify(dir, otherCa.certificatePem, certificatePem);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/unable to get local issuer certificate/);
  });

  it('is accepted when the CA file is a bundle holding several CAs', async () => {
    const { certificatePem } = await leaf();
    const bundle = joinPemBundle([otherCa.certificatePem, ca.certificatePem]);
    const result = await opensslVerify(dir, bundle, certificatePem);
    expect(result.code, result.stderr).toBe(0);
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

  it('prints the same serial as openssl', async () => {
    const { serial, certificatePem } = await leaf();
    await writeFiles(dir, { 'serial.pem': certificatePem });
    const result = await openssl(['x509', '-noout', '-serial', '-in', 'serial.pem'], dir);
    expect(
      result.stdout
        .trim()
        .replace(/^serial=/, '')
        .toLowerCase()
        .replace(/^(00)+/, ''),
    ).toBe(serial);
  });

  it.each<[CertificateProfile, { client: boolean; server: boolean }]>([
    ['client', { client: true, server: false }],
    ['server', { client: false, server: true }],
    ['client-server', { client: true, server: true }],
  ])('%s profile: extended key usage, CA:FALSE, digitalSignature+keyEncipherment', async (profile, want) => {
    const { certificatePem } = await leaf({ profile, sans: ['db.internal'] });
    const text = await opensslText(dir, certificatePem);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s*\n\s*CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*Digital Signature, Key Encipherment\s*\n/);
    expect(text.includes('TLS Web Client Authentication')).toBe(want.client);
    expect(text.includes('TLS Web Server Authentication')).toBe(want.server);
    expect(new X509Certificate(certificatePem).ca).toBe(false);
    expect(parseCertificate(certificatePem).isCA).toBe(false);

    const asClient = await opensslVerify(dir, ca.certificatePem, certificatePem, ['-purpose', 'sslclient']);
    const asServer = await opensslVerify(dir, ca.certificatePem, certificatePem, ['-purpose', 'sslserver']);
    expect(asClient.code === 0).toBe(want.client);
    expect(asServer.code === 0).toBe(want.server);
  });

  it('a leaf certificate cannot act as a CA for another certificate', async () => {
    const intermediate = await leaf({ profile: 'client-server' });
    const child = await buildCertificate(
      {
        subject: { commonName: 'child' },
        publicKeyPem: (await testKeyPair(2)).publicKeyPem,
        issuedAt: nowSeconds(),
        notAfter: new Date(Date.now() + HOUR),
        profile: 'client',
      },
      {
        certificatePem: intermediate.certificatePem,
        signer: new LocalSigner((await testKeyPair(1)).privateKeyPem),
      },
    );
    const direct = await opensslVerify(dir, ca.certificatePem, child.certificatePem);
    await writeFiles(dir, { 'intermediate.pem': intermediate.certificatePem });
    const chained = await opensslVerify(dir, ca.certificatePem, child.certificatePem, [
      '-untrusted',
      'intermediate.pem',
    ]);
    expect(direct.code).not.toBe(0);
    expect(chained.code).not.toBe(0);
    expect(chained.stdout + chained.stderr).toMatch(/invalid CA certificate|not a CA|invalid non-CA/i);
  });

  it('puts DNS names and IP addresses into the right subjectAltName types', async () => {
    const sans = ['db.internal', 'localhost', '127.0.0.1', '10.1.2.3', '*.example.com'];
    const { certificatePem } = await leaf({ profile: 'server', sans });
    const text = await opensslText(dir, certificatePem);
    expect(text).toMatch(
      /DNS:db\.internal, DNS:localhost, IP Address:127\.0\.0\.1, IP Address:10\.1\.2\.3, DNS:\*\.example\.com/,
    );
    const x509 = new X509Certificate(certificatePem);
    expect(x509.checkHost('db.internal')).toBe('db.internal');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.checkIP('10.1.2.4')).toBeUndefined();
    expect(parseCertificate(certificatePem).sans).toEqual(sans);
  });

  it('omits subjectAltName when there are no SANs', async () => {
    const { certificatePem } = await leaf({ sans: [] });
    expect(await opensslText(dir, certificatePem)).not.toMatch(/Subject Alternative Name/);
    expect(parseCertificate(certificatePem).sans).toEqual([]);
  });

  it('carries private extensions as non-critical UTF-8 values that parseCertificate reads back', async () => {
    const privateExtensions = {
      [OID_DB_SERVICE]: 'example-server',
      [OID_DB_DATABASE]: 'exämple-δb',
      [OID_DB_USERNAME]: 'alice',
    };
    const { certificatePem } = await leaf({ privateExtensions });
    expect(parseCertificate(certificatePem).privateExtensions).toEqual(privateExtensions);
    const text = await opensslText(dir, certificatePem);
    for (const oid of Object.keys(privateExtensions)) {
      expect(text).toContain(`${oid}:`);
      expect(text).not.toContain(`${oid}: critical`);
    }
    // Non-critical unknown extensions must not stop a standard verifier.
    const result = await opensslVerify(dir, ca.certificatePem, certificatePem);
    expect(result.code, result.stderr).toBe(0);
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

  it("chains key identifiers: the leaf's authority key id is the CA's subject key id", async () => {
    const { certificatePem, template } = await leaf();
    const leafText = await opensslText(dir, certificatePem);
    const caText = await opensslText(dir, ca.certificatePem, 'ca-text.pem');
    expect(keyIdFromText(leafText, 'Authority Key Identifier')).toBe(
      keyIdFromText(caText, 'Subject Key Identifier'),
    );
    expect(keyIdFromText(leafText, 'Subject Key Identifier')).toBe(rfc5280KeyId(template.publicKeyPem));
    expect(keyIdFromText(leafText, 'Subject Key Identifier')).not.toBe(
      keyIdFromText(caText, 'Subject Key Identifier'),
    );
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

  it('refuses a certificate signed by another key under the same issuer name', async () => {
    // Same subject as the CA, different key: the name matches but the signature does not.
    const impostorKeys = await testKeyPair(3);
    const impostor = await buildCertificate(
      {
        subject: { commonName: 'unit test CA', organization: 'unit tests' },
        publicKeyPem: impostorKeys.publicKeyPem,
        issuedAt: nowSeconds(),
        notAfter: new Date(Date.now() + HOUR),
        profile: 'ca',
      },
      { signer: new LocalSigner(impostorKeys.privateKeyPem) },
    );
    const { certificatePem } = await leaf(
      {},
      {
        ...ca,
        issuer: {
          certificatePem: impostor.certificatePem,
          signer: new LocalSigner(impostorKeys.privateKeyPem),
        },
      },
    );
    expect(verifyIssuedBy(certificatePem, ca.certificatePem, new Date())).toBe(false);
    expect((await opensslVerify(dir, ca.certificatePem, certificatePem)).code).not.toBe(0);
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
  it('is sha256:<64 hex> over the CA SubjectPublicKeyInfo DER, as openssl computes it', async () => {
    const pin = caPin(ca.certificatePem);
    expect(pin).toMatch(/^sha256:[0-9a-f]{64}$/);
    await writeFiles(dir, { 'pin-ca.pem': ca.certificatePem });
    const pub = await openssl(['x509', '-noout', '-pubkey', '-in', 'pin-ca.pem', '-out', 'pin-pub.pem'], dir);
    expect(pub.code, pub.stderr).toBe(0);
    const der = await openssl(
      ['pkey', '-pubin', '-in', 'pin-pub.pem', '-outform', 'DER', '-out', 'pin-pub.der'],
      dir,
    );
    expect(der.code, der.stderr).toBe(0);
    const digest = await openssl(['dgst', '-sha256', '-r', 'pin-pub.der'], dir);
    expect(pin).toBe(`sha256:${digest.stdout.split(' ')[0]}`);
  });

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

  it('parses a certificate with an EC key (e.g. a database server CA from elsewhere)', async () => {
    const ecDir = await makeTempDir();
    const made = await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'ec.key',
        '-out',
        'ec.pem',
        '-subj',
        '/CN=external ec CA',
        '-days',
        '1',
      ],
      { cwd: ecDir },
    );
    expect(made.code, made.stderr).toBe(0);
    const pem = await readFile(`${ecDir}/ec.pem`, 'utf8');
    const info = parseCertificate(pem);
    expect(info.subjectCommonName).toBe('external ec CA');
    expect(info.isCA).toBe(true);
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
