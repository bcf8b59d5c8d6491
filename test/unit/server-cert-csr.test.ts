/**
 * Proof of possession for database server certificates (src/pki/csr.ts, src/authority/server-cert.ts): the
 * AWS-mode action signs the public key of a PKCS#10 request only when the request's self-signature verifies
 * with that key. Requests are made here both by the broker's own writer and by node-forge (another
 * implementation), and attacked as a caller would: a request signed by another key than the one it holds,
 * a captured request body replayed with another public key swapped in, garbage, a certificate or a private
 * key instead of a request, trailing bytes. Each refusal is audited and quotes nothing of the request; the
 * request's own names and extensions never reach the certificate.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { createCsr, publicKeyOfCsr } from '../../src/pki/csr.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, testKeyPair } from '../support/fixtures.js';

const SERVICE = 'example-server';

/** A request made by node-forge: its public key is `subjectKey`'s, its signature by `signingKey`. */
function forgeCsr(
  subjectKey: { publicKeyPem: string },
  signingKey: { privateKeyPem: string },
  options: { sans?: string[]; ca?: boolean } = {},
): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(subjectKey.publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: 'evil.example' }]);
  const extensions: object[] = [];
  if (options.sans)
    extensions.push({ name: 'subjectAltName', altNames: options.sans.map((value) => ({ type: 2, value })) });
  if (options.ca) extensions.push({ name: 'basicConstraints', cA: true, critical: true });
  if (extensions.length) csr.setAttributes([{ name: 'extensionRequest', extensions }]);
  csr.sign(forge.pki.privateKeyFromPem(signingKey.privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

const derOf = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
const pemOf = (der: Buffer) =>
  `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;

async function world() {
  const t = await testAuthority({ start: '2026-03-01T12:00:00Z', resources: exampleResourcesYaml() });
  const sign = (csrPem: string, hosts = ['db.internal']) =>
    t.authority.signDatabaseServerCsr(hosts, csrPem, { service: SERVICE, requestId: 'req-csr' });
  const refusals = () =>
    t.audit.events.filter((e) => e.event === 'server_cert.issue' && e.outcome === 'denied');
  return { ...t, sign, refusals };
}

describe('a certificate request proves possession of its key', () => {
  it("the broker's own request (RSA and ECDSA) and node-forge's verify, and yield the request's public key", async () => {
    const rsa = await testKeyPair(0);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecPair = {
      privateKeyPem: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      publicKeyPem: ec.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    };
    expect(publicKeyOfCsr(createCsr(rsa.privateKeyPem, 'db.internal'))).toBe(rsa.publicKeyPem);
    expect(publicKeyOfCsr(createCsr(ecPair.privateKeyPem, 'db.internal'))).toBe(ecPair.publicKeyPem);
    expect(publicKeyOfCsr(forgeCsr(rsa, rsa))).toBe(rsa.publicKeyPem);
    // node-forge reads the broker's request and finds its signature good too.
    const parsed = forge.pki.certificationRequestFromPem(createCsr(rsa.privateKeyPem, 'db.internal'));
    expect(parsed.verify()).toBe(true);
  });

  it('signs the public key of a good request for the hosts given, with none of its own names or extensions', async () => {
    const { sign, audit } = await world();
    const keys = await testKeyPair(1);
    const signed = await sign(forgeCsr(keys, keys, { sans: ['evil.example', '*.example.com'], ca: true }));
    const cert = new X509Certificate(signed.certificatePem);
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(keys.publicKeyPem);
    expect(cert.subjectAltName).toBe('DNS:db.internal, DNS:localhost, IP Address:127.0.0.1');
    expect(cert.subject).not.toMatch(/evil/);
    expect(cert.ca).toBe(false);
    expect(audit.events.at(-1)).toMatchObject({
      event: 'server_cert.issue',
      outcome: 'success',
      requestId: 'req-csr',
    });
  });

  it('refuses a request signed by another key than the one it holds, audited, nothing signed', async () => {
    const { sign, refusals, audit } = await world();
    const victim = await testKeyPair(2);
    const attacker = await testKeyPair(3);
    const forged = forgeCsr(victim, attacker);
    expect(() => publicKeyOfCsr(forged)).toThrow(
      /signature that does not verify with the public key it holds/,
    );
    await expect(sign(forged)).rejects.toThrow(
      /the certificate request has a signature that does not verify.*no proof of possession/,
    );
    expect(refusals()).toEqual([
      expect.objectContaining({
        kind: 'db-server',
        name: `${SERVICE}:db.internal`,
        requestId: 'req-csr',
        reason: expect.stringMatching(/does not verify/),
      }),
    ]);
    expect(audit.events.some((e) => e.outcome === 'success')).toBe(false);
  });

  it('refuses a captured request body replayed with another public key swapped in', async () => {
    const { sign, refusals } = await world();
    const owner = await testKeyPair(2);
    const other = await testKeyPair(4);
    const der = derOf(createCsr(owner.privateKeyPem, 'db.internal'));
    const ownerSpki = derOf(owner.publicKeyPem);
    const otherSpki = derOf(other.publicKeyPem);
    expect(otherSpki.length).toBe(ownerSpki.length);
    const at = der.indexOf(ownerSpki);
    expect(at).toBeGreaterThan(0);
    const swapped = Buffer.from(der);
    otherSpki.copy(swapped, at);
    await expect(sign(pemOf(swapped))).rejects.toThrow(/does not verify with the public key it holds/);
    // The same with the signature of another good request pasted over (a splice of two captured requests).
    const otherDer = derOf(createCsr(other.privateKeyPem, 'other.internal'));
    const spliced = Buffer.concat([
      der.subarray(0, der.length - 256),
      otherDer.subarray(otherDer.length - 256),
    ]);
    await expect(sign(pemOf(spliced))).rejects.toThrow(/does not verify/);
    expect(refusals()).toHaveLength(2);
  });

  it('refuses garbage, truncation, trailing bytes, a certificate or a private key, quoting none of it', async () => {
    const { sign, refusals, audit } = await world();
    const keys = await testKeyPair(1);
    const good = derOf(createCsr(keys.privateKeyPem, 'db.internal'));
    const cert = new X509Certificate(
      (await sign(createCsr(keys.privateKeyPem, 'db.internal'))).certificatePem,
    );
    const cases: [string, RegExp][] = [
      ['', /is not a PEM certificate request/],
      ['GARBAGE-Zm9vYmFy', /is not a PEM certificate request/],
      [Buffer.from([0x30, 0x82, 0xff, 0xff, 0x01]).toString('latin1'), /is not a PEM certificate request/],
      [pemOf(Buffer.from('R0FSQkFHRQ-not-der-at-all')), /is not a well-formed PKCS#10 request/],
      [pemOf(good.subarray(0, good.length - 10)), /is not a well-formed PKCS#10 request/],
      [pemOf(Buffer.concat([good, Buffer.from([0x05, 0x00])])), /is not a well-formed PKCS#10 request/],
      [pemOf(cert.raw), /is not a well-formed PKCS#10 request/],
      [cert.toString(), /is not a PEM certificate request/],
      [keys.privateKeyPem, /is not a PEM certificate request/],
      [`${createCsr(keys.privateKeyPem, 'a')}${createCsr(keys.privateKeyPem, 'b')}`, /is not a PEM/],
    ];
    for (const [csrPem, why] of cases) await expect(sign(csrPem)).rejects.toThrow(why);
    expect(refusals()).toHaveLength(cases.length);
    const text = JSON.stringify(audit.events);
    expect(text).not.toMatch(/PRIVATE KEY|GARBAGE|BEGIN [A-Z ]*-----/);
    expect(text).not.toContain(keys.privateKeyPem.split('\n')[1] as string);
  });

  it('refuses a request for a key the broker does not sign (RSA 1024), though its signature verifies', async () => {
    const { sign } = await world();
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const csr = createCsr(weak.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 'db.internal');
    await expect(sign(csr)).rejects.toThrow(/not RSA of at least 2048 bits or ECDSA P-256/);
  });
});
