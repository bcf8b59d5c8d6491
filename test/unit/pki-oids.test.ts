/**
 * The broker's private-extension arc: every arc small enough for every X.509 implementation (RFC 5280 asks
 * each to read arcs up to 2^28 - 1; Go's crypto/x509, in FerretDB and CockroachDB, refuses arcs over 31 bits),
 * derived from the broker's UUID by the GUID scheme of `1.2.840.113556.1.8000.2554`, and certificates issued
 * under the former `2.25.<uuid>` arc still read the same.
 */
import { describe, expect, it } from 'vitest';
import { buildCertificate } from '../../src/pki/certificate.js';
import * as oids from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { HOUR, testKeyPair } from '../support/fixtures.js';

const START = new Date('2030-01-01T00:00:00Z');
const current = Object.entries(oids).filter(([name]) => name.startsWith('OID_')) as [string, string][];

async function selfSigned(privateExtensions: Record<string, string>): Promise<string> {
  const keys = await testKeyPair(0);
  const { certificatePem } = await buildCertificate(
    {
      subject: { commonName: 'arc test' },
      publicKeyPem: keys.publicKeyPem,
      issuedAt: START,
      notAfter: new Date(START.getTime() + HOUR),
      profile: 'client',
      privateExtensions,
    },
    { signer: new LocalSigner(keys.privateKeyPem) },
  );
  return certificatePem;
}

describe("the broker's OID arc", () => {
  it('keeps every arc of every OID below 2^28', () => {
    expect(current.length).toBeGreaterThan(5);
    for (const [name, oid] of [['BROKER_ARC', oids.BROKER_ARC] as const, ...current])
      for (const arc of oid.split('.')) expect(BigInt(arc), `${name} ${oid}`).toBeLessThan(2n ** 28n);
  });

  it('is the UUID of the legacy 2.25 arc, split as the GUID arc prescribes (aaaabbbb-cccc-dddd-eeee-ffffffgggggg)', () => {
    const hex = BigInt(oids.LEGACY_BROKER_ARC.slice('2.25.'.length)).toString(16).padStart(32, '0');
    const cuts = [0, 4, 8, 12, 16, 20, 26, 32];
    const parts = cuts.slice(1).map((end, i) => Number.parseInt(hex.slice(cuts[i], end), 16));
    expect(oids.BROKER_ARC).toBe(`1.2.840.113556.1.8000.2554.${parts.join('.')}`);
  });

  it('reads extensions issued under the legacy arc as the current OIDs, and ignores foreign 2.25 arcs', async () => {
    const legacy = (oid: string) => oid.replace(oids.BROKER_ARC, oids.LEGACY_BROKER_ARC);
    const pem = await selfSigned({
      [legacy(oids.OID_CERT_ROLE)]: 'bot-identity',
      [legacy(oids.OID_BOT_NAME)]: 'example',
      [legacy(oids.OID_BOT_GENERATION)]: '7',
      '2.25.1.1': 'not ours',
    });
    expect(parseCertificate(pem).privateExtensions).toEqual({
      [oids.OID_CERT_ROLE]: 'bot-identity',
      [oids.OID_BOT_NAME]: 'example',
      [oids.OID_BOT_GENERATION]: '7',
    });
  });

  it('writes and reads the current arc', async () => {
    const pem = await selfSigned({ [oids.OID_DB_SERVICE]: 'example-server', '1.2.3.4': 'not ours' });
    expect(parseCertificate(pem).privateExtensions).toEqual({ [oids.OID_DB_SERVICE]: 'example-server' });
  });
});
