import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildCertificate, randomSerialHex } from '../../src/pki/certificate.js';
import { parseCertificate } from '../../src/pki/parse.js';
import {
  makeTempDir,
  nowSeconds,
  opensslVerify,
  removeTempDirs,
  type TestCa,
  testCa,
  testKeyPair,
} from './helpers.js';

// Serials come from randomBytes(16). These tests pin the random bytes to the edge cases of DER INTEGER
// encoding, which real randomness hits only once in a few hundred certificates.
const forcedSerialBytes = vi.hoisted(() => [] as Buffer[]);

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  const randomBytes = ((size: number, ...rest: unknown[]) => {
    if (size === 16 && rest.length === 0 && forcedSerialBytes.length > 0) return forcedSerialBytes.shift();
    return (actual.randomBytes as (...args: unknown[]) => unknown)(size, ...rest);
  }) as typeof actual.randomBytes;
  return { ...actual, default: { ...actual, randomBytes }, randomBytes };
});

let ca: TestCa;
let dir: string;
beforeAll(async () => {
  [ca, dir] = await Promise.all([testCa(), makeTempDir()]);
});
afterAll(removeTempDirs);

async function certWithSerialBytes(hex: string) {
  forcedSerialBytes.push(Buffer.from(hex, 'hex'));
  const issuedAt = nowSeconds();
  return buildCertificate(
    {
      subject: { commonName: 'alice' },
      publicKeyPem: (await testKeyPair(1)).publicKeyPem,
      issuedAt,
      notAfter: new Date(issuedAt.getTime() + 3_600_000),
      profile: 'client',
    },
    ca.issuer,
  );
}

describe('randomSerialHex', () => {
  it.each([
    ['top bit clear', '7f0102030405060708090a0b0c0d0e0f', '7f0102030405060708090a0b0c0d0e0f'],
    [
      'top bit set (gets a 00 sign byte)',
      '8f0102030405060708090a0b0c0d0e0f',
      '008f0102030405060708090a0b0c0d0e0f',
    ],
  ])('%s', (_name, bytes, want) => {
    forcedSerialBytes.push(Buffer.from(bytes, 'hex'));
    expect(randomSerialHex()).toBe(want);
  });
});

describe('buildCertificate serial numbers (DER INTEGER edge cases)', () => {
  it.each([
    ['top bit set', 'ff0102030405060708090a0b0c0d0e0f', 'ff0102030405060708090a0b0c0d0e0f'],
    [
      'leading zero byte followed by a high byte',
      '00ff02030405060708090a0b0c0d0e0f',
      'ff02030405060708090a0b0c0d0e0f',
    ],
    // A leading 00 before a byte below 0x80 is not minimal DER: OpenSSL refuses such an INTEGER.
    [
      'leading zero byte followed by a low byte',
      '000102030405060708090a0b0c0d0e0f',
      '0102030405060708090a0b0c0d0e0f',
    ],
  ])(
    '%s: the certificate parses and verifies, and the reported serial is its serial',
    async (_name, bytes, want) => {
      const { certificatePem, serial } = await certWithSerialBytes(bytes);
      expect(() => new X509Certificate(certificatePem)).not.toThrow();
      const info = parseCertificate(certificatePem);
      expect(info.serial).toBe(want);
      expect(serial).toBe(want);
      const verified = await opensslVerify(dir, ca.certificatePem, certificatePem);
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    },
  );
});
