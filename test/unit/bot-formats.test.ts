import { describe, expect, it } from 'vitest';
import {
  type DatabaseCredentials,
  OUTPUT_FORMATS,
  type OutputFormat,
  renderDatabaseArtifacts,
} from '../../src/credentials/formats.js';

// Stand-ins with the PEM framing only: the renderer must place them, not interpret them.
const CERT = '-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\na2V5\n-----END PRIVATE KEY-----\n';
const CA_A = '-----BEGIN CERTIFICATE-----\nY2EtYQ==\n-----END CERTIFICATE-----\n';
const CA_B = '-----BEGIN CERTIFICATE-----\nY2EtYg==\n-----END CERTIFICATE-----\n';

const creds: DatabaseCredentials = { certificatePem: CERT, privateKeyPem: KEY, serverCaPem: CA_A + CA_B };

const DEFAULT_FILES = ['key', 'teleport-database-ca.crt', 'teleport-host-ca.crt', 'tlscert'];

const EXPECTED: Record<OutputFormat, string[]> = {
  '': DEFAULT_FILES,
  tls: [...DEFAULT_FILES, 'tls.cas', 'tls.crt', 'tls.key'],
  mongo: [...DEFAULT_FILES, 'mongo.cas', 'mongo.crt'],
  cockroach: [...DEFAULT_FILES, 'cockroach/ca.crt', 'cockroach/node.crt', 'cockroach/node.key'],
};

/** The certificates in a PEM bundle, normalised to end in one newline each. */
function pemBlocks(text: string): string[] {
  return (text.match(/-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g) ?? []).map((b) => `${b}\n`);
}

describe('renderDatabaseArtifacts', () => {
  it('covers every format the configuration accepts', () => {
    expect([...OUTPUT_FORMATS].sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const format of OUTPUT_FORMATS) {
    it(`renders exactly the reference artifact names for format ${JSON.stringify(format)}`, () => {
      const files = renderDatabaseArtifacts(format, creds);
      expect(Object.keys(files).sort()).toEqual([...EXPECTED[format]].sort());
      expect(files.tlscert).toBe(CERT);
      expect(files.key).toBe(KEY);
      // Both CA names hold the whole bundle that verifies the database server, in order.
      expect(pemBlocks(files['teleport-host-ca.crt'] ?? '')).toEqual([CA_A, CA_B]);
      expect(files['teleport-database-ca.crt']).toBe(files['teleport-host-ca.crt']);
    });
  }

  it('tls: tls.crt is the certificate, tls.key the key, tls.cas the server CA bundle', () => {
    const files = renderDatabaseArtifacts('tls', creds);
    expect(files['tls.crt']).toBe(CERT);
    expect(files['tls.key']).toBe(KEY);
    expect(pemBlocks(files['tls.cas'] ?? '')).toEqual([CA_A, CA_B]);
  });

  it('mongo: mongo.crt is the certificate followed by the key; mongo.cas the server CA bundle', () => {
    const files = renderDatabaseArtifacts('mongo', creds);
    expect(pemBlocks(files['mongo.crt'] ?? '')).toEqual([CERT, KEY]);
    expect(files['mongo.crt']?.startsWith('-----BEGIN CERTIFICATE-----')).toBe(true);
    expect(pemBlocks(files['mongo.cas'] ?? '')).toEqual([CA_A, CA_B]);
  });

  it('mongo: a certificate without a trailing newline still gives two separate PEM blocks', () => {
    const files = renderDatabaseArtifacts('mongo', { ...creds, certificatePem: CERT.trimEnd() });
    expect(files['mongo.crt']).toMatch(/-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----/);
  });

  it('cockroach: node.crt, node.key and ca.crt under cockroach/', () => {
    const files = renderDatabaseArtifacts('cockroach', creds);
    expect(files['cockroach/node.crt']).toBe(CERT);
    expect(files['cockroach/node.key']).toBe(KEY);
    expect(pemBlocks(files['cockroach/ca.crt'] ?? '')).toEqual([CA_A, CA_B]);
  });

  it('no format puts the private key into a certificate or CA file other than mongo.crt', () => {
    for (const format of OUTPUT_FORMATS) {
      const files = renderDatabaseArtifacts(format, creds);
      for (const [name, content] of Object.entries(files)) {
        const holdsKey = content.includes('PRIVATE KEY');
        const keyFile = ['key', 'tls.key', 'cockroach/node.key', 'mongo.crt'].includes(name);
        expect(holdsKey, `${format}/${name}`).toBe(keyFile);
      }
    }
  });
});
