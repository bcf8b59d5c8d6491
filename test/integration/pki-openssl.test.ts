/**
 * What openssl makes of the certificates buildCertificate issues: the real `openssl` CLI verifies chains and
 * purposes and prints extensions, serials and key identifiers (a second opinion on the DER). The unit
 * checks of the same code are in test/unit/pki.test.ts.
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinPemBundle } from '../../src/credentials/pem.js';
import { buildCertificate, type CertificateProfile, verifyIssuedBy } from '../../src/pki/certificate.js';
import { OID_DB_DATABASE, OID_DB_SERVICE, OID_DB_USERNAME } from '../../src/pki/oids.js';
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
import { keyIdFromText, openssl, opensslText, opensslVerify, writeFiles } from '../support/openssl.js';
import { run } from '../support/run.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let ca: TestCa;
let otherCa: TestCa;
let dir: string;

beforeAll(async () => {
  [ca, otherCa, dir] = await Promise.all([testCa(), testCa('another unit test CA'), makeTempDir()]);
});
afterAll(removeTempDirs);

/** SHA-1 over the subjectPublicKey bits (for RSA: the PKCS#1 RSAPublicKey DER), RFC 5280 §4.2.1.2 (1). */
function rfc5280KeyId(publicKeyPem: string): string {
  const bits = createPublicKey(publicKeyPem).export({ type: 'pkcs1', format: 'der' });
  return createHash('sha1').update(bits).digest('hex');
}

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
});

describe('verifyIssuedBy', () => {
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
});

describe('parseCertificate', () => {
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
});
