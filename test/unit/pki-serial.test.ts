import { describe, expect, it, vi } from 'vitest';
import { randomSerialHex } from '../../src/pki/certificate.js';
import { forcedSerialBytes } from '../support/serial-bytes.js';

vi.mock('node:crypto', async (importOriginal) =>
  (await import('../support/serial-bytes.js')).cryptoWithForcedSerials(importOriginal),
);

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
