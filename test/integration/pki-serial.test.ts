/**
 * Certificates whose serials sit on the edge cases of DER INTEGER encoding parse, report their serial, and
 * verify with the real `openssl` (which refuses a non-minimal INTEGER). The serial bytes are pinned with
 * test/support/serial-bytes.ts; randomSerialHex itself is unit-tested in test/unit/pki-serial.test.ts.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseCertificate } from '../../src/pki/parse.js';
import { type TestCa, testCa, testLeafCertificate } from '../support/fixtures.js';
import { opensslVerify } from '../support/openssl.js';
import { forcedSerialBytes } from '../support/serial-bytes.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

vi.mock('node:crypto', async (importOriginal) =>
  (await import('../support/serial-bytes.js')).cryptoWithForcedSerials(importOriginal),
);

let ca: TestCa;
let dir: string;
beforeAll(async () => {
  [ca, dir] = await Promise.all([testCa(), makeTempDir()]);
});
afterAll(removeTempDirs);

async function certWithSerialBytes(hex: string) {
  forcedSerialBytes.push(Buffer.from(hex, 'hex'));
  return testLeafCertificate({ subject: { commonName: 'alice' } }, ca);
}

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
