/**
 * The certificate requests of `broker auth sign --format=db --function` (src/pki/csr.ts) against the real
 * `openssl`: openssl verifies the requests the broker makes (RSA and ECDSA), and the broker takes the requests
 * `openssl req -new` makes (with the SANs and CA flag it asks for ignored) and refuses one whose signature
 * openssl's own tampering breaks.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr, publicKeyOfCsr } from '../../src/pki/csr.js';
import { generateEcdsaKeyPair } from '../../src/pki/keys.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, testKeyPair } from '../support/fixtures.js';
import { openssl, writeFiles } from '../support/openssl.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('broker-csr-openssl-');
});
afterAll(removeTempDirs);

describe('certificate requests and openssl', () => {
  it("openssl verifies the broker's requests, RSA and ECDSA", async () => {
    for (const [name, keys] of [
      ['rsa', await testKeyPair(0)],
      ['ec', await generateEcdsaKeyPair()],
    ] as const) {
      await writeFiles(dir, { [`${name}.csr`]: createCsr(keys.privateKeyPem, 'db.internal') });
      const result = await openssl(['req', '-in', `${name}.csr`, '-verify', '-noout', '-subject'], dir);
      expect(result.code, result.stderr).toBe(0);
      expect(`${result.stdout}${result.stderr}`).toMatch(/verify OK/i);
      expect(result.stdout).toMatch(/CN\s*=\s*db\.internal/);
    }
  });

  it('takes a request openssl made, signing its key for the given hosts only', async () => {
    const keys = await testKeyPair(1);
    await writeFiles(dir, { 'server.key': keys.privateKeyPem });
    const made = await openssl(
      [
        'req',
        '-new',
        '-key',
        'server.key',
        '-subj',
        '/CN=evil.example',
        '-addext',
        'subjectAltName=DNS:evil.example,DNS:*.example.com',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-out',
        'server.csr',
      ],
      dir,
    );
    expect(made.code, made.stderr).toBe(0);
    const csrPem = await readFile(path.join(dir, 'server.csr'), 'utf8');
    expect(publicKeyOfCsr(csrPem)).toBe(keys.publicKeyPem);
    const { authority } = await testAuthority({
      start: '2026-03-01T12:00:00Z',
      resources: exampleResourcesYaml(),
    });
    const signed = await authority.signDatabaseServerCsr(['db.internal'], csrPem, {
      service: 'example-server',
    });
    const cert = new X509Certificate(signed.certificatePem);
    expect(cert.subjectAltName).toBe('DNS:db.internal, DNS:localhost, IP Address:127.0.0.1');
    expect(cert.ca).toBe(false);
    expect(cert.checkPrivateKey(createPrivateKey(keys.privateKeyPem))).toBe(true);

    // One flipped bit in the signed part (the subject's name): openssl and the broker both refuse it.
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('evil.example'));
    der[at] = (der[at] as number) ^ 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await writeFiles(dir, { 'tampered.csr': tampered });
    const check = await openssl(['req', '-in', 'tampered.csr', '-verify', '-noout'], dir);
    // (openssl 3.0 exits 0 here and says so only in its output.)
    expect(`${check.stdout}${check.stderr}`).toMatch(/verify failure/i);
    expect(() => publicKeyOfCsr(tampered)).toThrow(/does not verify with the public key it holds/);
  });
});
