/**
 * Degenerate subject keys, as an attacker would send them to a join, a renewal, an issuance or the
 * server-certificate action: an EC key whose point is the point at infinity (which made Node 20 abort the
 * whole process, not throw, when its details were read) and RSA keys with public exponent 1 (for which a
 * "signature" is the padded digest itself, so a request "proves" possession of a key nobody holds).
 */
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { assertPublicKey } from '../../src/authority/limits.js';
import { publicKeyOfCsr } from '../../src/pki/csr.js';
import { keyAlgorithmOf, tryParsePublicKey } from '../../src/pki/keys.js';

/** An SPKI of id-ecPublicKey on P-256 whose BIT STRING holds the single byte 00: the point at infinity. */
const INFINITY_SPKI = 'MBkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAgAA';
const pem = (label: string, b64: string) =>
  `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
/** A certificate request around that key (signature bytes are junk: the key must be refused first). */
const INFINITY_CSR =
  'MEcwLgIBADAMMQowCAYDVQQDDAF4MBkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAgAAoAAwCgYIKoZIzj0EAwIDCQAwBgIBAQIBAQ==';

function der(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}
const seq = (...parts: Buffer[]) => der(0x30, Buffer.concat(parts));

/** A 2048-bit modulus (2^2048 − 1) with e = 1, as SPKI DER. */
function rsaE1Spki(): Buffer {
  const n = Buffer.concat([Buffer.from([0]), Buffer.alloc(256, 0xff)]);
  const rsaPublicKey = seq(der(0x02, n), der(0x02, Buffer.from([1])));
  const algorithm = Buffer.from('300d06092a864886f70d0101010500', 'hex');
  return seq(algorithm, der(0x03, Buffer.concat([Buffer.from([0]), rsaPublicKey])));
}

/**
 * A certificate request for the e = 1 key, "signed" without any private key: with e = 1, RSA verification
 * compares the signature itself with the PKCS#1 v1.5 padding of the digest.
 */
function rsaE1Csr(): string {
  const info = seq(
    der(0x02, Buffer.from([0])),
    seq(der(0x31, seq(Buffer.from('0603550403', 'hex'), der(0x0c, Buffer.from('x'))))),
    rsaE1Spki(),
    Buffer.from('a000', 'hex'),
  );
  const digestInfo = Buffer.concat([
    Buffer.from('3031300d060960864801650304020105000420', 'hex'),
    createHash('sha256').update(info).digest(),
  ]);
  const signature = Buffer.concat([
    Buffer.from([0x00, 0x01]),
    Buffer.alloc(256 - 3 - digestInfo.length, 0xff),
    Buffer.from([0x00]),
    digestInfo,
  ]);
  const algorithm = Buffer.from('300d06092a864886f70d01010b0500', 'hex');
  const csr = seq(info, algorithm, der(0x03, Buffer.concat([Buffer.from([0]), signature])));
  return pem('CERTIFICATE REQUEST', csr.toString('base64'));
}

describe('degenerate subject keys are refused, and refusing them does not take the process down', () => {
  it('an EC key at the point at infinity: no algorithm, a clear refusal from every entry point', () => {
    const key = createPublicKey({ key: Buffer.from(INFINITY_SPKI, 'base64'), format: 'der', type: 'spki' });
    expect(keyAlgorithmOf(key)).toBeUndefined();
    expect(() => assertPublicKey(pem('PUBLIC KEY', INFINITY_SPKI))).toThrow(/ECDSA P-256 key, in SPKI PEM/);
    expect(() => publicKeyOfCsr(pem('CERTIFICATE REQUEST', INFINITY_CSR))).toThrow();
  });

  it('an RSA key with public exponent 1: refused, though its request "verifies" without a private key', () => {
    const spki = pem('PUBLIC KEY', rsaE1Spki().toString('base64'));
    const key = tryParsePublicKey(spki);
    expect(key?.asymmetricKeyDetails?.publicExponent).toBe(1n);
    expect(keyAlgorithmOf(key as NonNullable<typeof key>)).toBeUndefined();
    expect(() => assertPublicKey(spki)).toThrow(/RSA key of at least 2048 bits/);
    expect(() => publicKeyOfCsr(rsaE1Csr())).toThrow();
  });

  it('ordinary keys keep their names: RSA-2048 with e = 65537 and P-256, public or private', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    expect(keyAlgorithmOf(rsa.publicKey)).toBe('rsa2048');
    expect(keyAlgorithmOf(rsa.privateKey)).toBe('rsa2048');
    expect(keyAlgorithmOf(ec.publicKey)).toBe('ecdsa-p256');
    expect(keyAlgorithmOf(ec.privateKey)).toBe('ecdsa-p256');
    expect(keyAlgorithmOf(p384.publicKey)).toBeUndefined();
  });
});
