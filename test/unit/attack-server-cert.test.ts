/**
 * The database server certificate action attacked as a caller would (src/authority/server-cert.ts, the
 * event schema of functions/authority-sign.ts): host names a client could be fooled by (wildcards that cover
 * more than one domain, NUL, commas, newlines), a CA or client certificate instead of a server one, a long
 * TTL, a private key or an oversized request in the payload, extra fields that would steer the signing. Each
 * refusal is audited with the request id, and nothing is signed; no audit line carries key material.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signServerEventSchema } from '../../functions/authority-sign.js';
import { checkServerCertRequest } from '../../src/authority/server-cert.js';
import * as z from '../../src/config/zod.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, HOUR, testKeyPair } from '../support/fixtures.js';

const START = '2026-03-01T12:00:00Z';
const SERVICE = 'example-server';

async function world() {
  const t = await testAuthority({ start: START, resources: exampleResourcesYaml() });
  const keys = await testKeyPair(0);
  const sign = (hosts: string[], options: { ttlMs?: number; publicKeyPem?: string } = {}) =>
    t.authority.signDatabaseServerKey(hosts, options.publicKeyPem ?? keys.publicKeyPem, {
      service: SERVICE,
      ttlMs: options.ttlMs,
      requestId: 'req-attack',
    });
  return { ...t, keys, sign };
}

describe('host names a server certificate may carry', () => {
  // Each would put a name into a certificate every broker client trusts (the db-server CA is shared by all
  // services) that is no host name: a wildcard covering a whole top-level domain or every single-label host,
  // a partial or repeated wildcard, bytes that end or split a name in a C client, an empty label.
  const refused = [
    '*',
    '*.internal',
    '*.*.example.com',
    'db.*.example.com',
    'f*o.example.com',
    '**.example.com',
    'db\0.evil.com',
    'db.internal\nX-Other: 1',
    'db.internal,evil.com',
    'db..internal',
    '.db.internal',
    '-db.internal',
    'db internal',
    'db.internal:5432',
    'fe80::1%eth0',
    `${'a'.repeat(64)}.example.com`,
    `${'a.'.repeat(127)}com`,
    '',
  ];
  for (const host of refused)
    it(`refuses ${JSON.stringify(host)} with the flag to fix, signs nothing, audits the refusal`, async () => {
      const { sign, audit } = await world();
      await expect(sign(['db.internal', host])).rejects.toThrow(/--host/);
      expect(audit.events.filter((e) => e.event === 'server_cert.issue')).toEqual([
        expect.objectContaining({ outcome: 'denied', kind: 'db-server', requestId: 'req-attack' }),
      ]);
      expect(audit.events.some((e) => e.outcome === 'success')).toBe(false);
    });

  it('signs ordinary names, IPv4 and IPv6 addresses, and a wildcard as the whole leftmost label of a domain', async () => {
    const { sign } = await world();
    const hosts = ['db.internal', 'db-1', '10.0.0.5', '::1', '*.db.example.com'];
    const cert = new X509Certificate((await sign(hosts)).certificatePem);
    expect(cert.subjectAltName).toBe(
      'DNS:db.internal, DNS:db-1, IP Address:10.0.0.5, IP Address:0:0:0:0:0:0:0:1, DNS:*.db.example.com, DNS:localhost, IP Address:127.0.0.1',
    );
  });

  it('an empty host list is refused', () => {
    expect(() => checkServerCertRequest([], HOUR)).toThrow(/--host/);
  });
});

describe('what is signed is a server certificate and nothing more', () => {
  it('not a CA, not a client certificate, for the key sent, no longer than asked', async () => {
    const { sign, keys } = await world();
    const signed = await sign(['db.internal'], { ttlMs: 24 * HOUR });
    const cert = new X509Certificate(signed.certificatePem);
    expect(cert.ca).toBe(false);
    // serverAuth only: the certificate cannot log in to a database as a client.
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(keys.publicKeyPem);
    expect(Date.parse(cert.validTo) - Date.parse(START)).toBeLessThanOrEqual(24 * HOUR);
    expect(cert.checkIssued(new X509Certificate(signed.clientCaPem))).toBe(false);
  });

  it('refuses a TTL of zero, below zero, not a number, infinite or over a year', async () => {
    const { sign } = await world();
    for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 8761 * HOUR])
      await expect(sign(['db.internal'], { ttlMs })).rejects.toThrow(/TTL must be between 1s and 8760h/);
  });

  it('refuses a private key, a short RSA key, another curve and Ed25519 in place of the public key', async () => {
    const { sign, keys, audit } = await world();
    const weak = [
      keys.privateKeyPem,
      generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }),
      generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({
        type: 'spki',
        format: 'pem',
      }),
      generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }),
    ] as string[];
    for (const publicKeyPem of weak)
      await expect(sign(['db.internal'], { publicKeyPem })).rejects.toThrow(/SPKI PEM/);
    expect(audit.events.every((e) => e.outcome === 'denied')).toBe(true);
    // The private key sent by mistake is in no audit line.
    expect(JSON.stringify(audit.events)).not.toMatch(/PRIVATE KEY|MII/);
  });

  it('the audit line of an issue traces it: service, names, serial, expiry and request id, no key', async () => {
    const { sign, audit } = await world();
    const signed = await sign(['db.internal']);
    expect(audit.events.at(-1)).toEqual({
      event: 'server_cert.issue',
      outcome: 'success',
      kind: 'db-server',
      name: `${SERVICE}:db.internal,localhost,127.0.0.1`,
      serial: signed.serial,
      expires: signed.expires,
      requestId: 'req-attack',
      time: expect.any(String),
    });
    expect(JSON.stringify(audit.events)).not.toContain('BEGIN');
  });
});

describe("the action's event (functions/authority-sign.ts) is bounded and cannot steer the signing", () => {
  const base = {
    service: SERVICE,
    hosts: ['db.internal'],
    csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nMFkw\n-----END CERTIFICATE REQUEST-----\n',
  };
  const parse = (event: unknown) => z.safeParse(signServerEventSchema, event);
  const rejects = (event: unknown) => expect(parse(event).success).toBe(false);

  it('takes the plain request', () => {
    expect(parse(base).success).toBe(true);
  });
  it('refuses a field that would choose the profile, the CA or the names besides hosts', () => {
    for (const extra of [{ profile: 'ca' }, { ca: true }, { sans: ['*'] }, { caType: 'bot' }, { ttlMs: 1 }])
      rejects({ ...base, ...extra });
  });
  it('refuses more than 100 hosts, a host over 253 characters, a request over 16 KiB', () => {
    rejects({ ...base, hosts: Array.from({ length: 101 }, (_, i) => `h${i}.internal`) });
    rejects({ ...base, hosts: [`${'a'.repeat(254)}`] });
    rejects({ ...base, csrPem: `${base.csrPem}${' '.repeat(16_384)}` });
  });
  it('refuses a private key in any PEM spelling, also after a request, without quoting it', () => {
    for (const label of ['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY', 'ENCRYPTED PRIVATE KEY']) {
      const result = parse({
        ...base,
        csrPem: `${base.csrPem}-----BEGIN ${label}-----\nSECRETBYTES\n-----END ${label}-----\n`,
      });
      expect(result.success).toBe(false);
      expect(JSON.stringify(result.error?.issues)).not.toContain('SECRETBYTES');
    }
  });
  it('refuses a TTL that is no positive duration', () => {
    for (const ttl of ['0s', '-1h', 'forever', ''] as const) rejects({ ...base, ttl });
  });
});
