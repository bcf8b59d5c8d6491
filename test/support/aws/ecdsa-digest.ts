/**
 * ECDSA P-256 signing of a precomputed SHA-256 digest, for the KMS double's `MessageType: DIGEST` requests on
 * ECC_NIST_P256 keys. Node's crypto.sign always hashes its input, and KMS signs the digest as given, so the
 * double does the curve arithmetic itself (FIPS 186-4 §6.4, textbook affine arithmetic with BigInt: slow,
 * not constant-time, fine for a test double). The signature is DER (SEQUENCE { r, s }), as KMS returns it.
 */
import { type KeyObject, randomBytes } from 'node:crypto';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const A = P - 3n;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: Point = [
  0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
];

type Point = [bigint, bigint] | null;

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;

function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function add(p1: Point, p2: Point): Point {
  if (!p1) return p2;
  if (!p2) return p1;
  const [x1, y1] = p1;
  const [x2, y2] = p2;
  if (x1 === x2 && mod(y1 + y2, P) === 0n) return null;
  const l =
    x1 === x2 && y1 === y2
      ? mod((3n * x1 * x1 + A) * inverse(2n * y1, P), P)
      : mod((y2 - y1) * inverse(x2 - x1, P), P);
  const x3 = mod(l * l - x1 - x2, P);
  return [x3, mod(l * (x1 - x3) - y1, P)];
}

function multiply(k: bigint, point: Point): Point {
  let result: Point = null;
  let addend = point;
  for (let e = k; e > 0n; e >>= 1n) {
    if (e & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

const big = (bytes: Uint8Array) => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);

function derInteger(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if ((bytes[0] as number) >= 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

/** Signs a 32-byte SHA-256 digest with a P-256 private key; returns the DER-encoded signature. */
export function signP256Digest(privateKey: KeyObject, digest: Uint8Array): Buffer {
  const jwk = privateKey.export({ format: 'jwk' });
  if (jwk.crv !== 'P-256' || !jwk.d) throw new Error('not a P-256 private key');
  const d = big(Buffer.from(jwk.d, 'base64url'));
  const e = big(digest);
  for (;;) {
    const k = mod(big(randomBytes(40)), N - 1n) + 1n;
    const point = multiply(k, G);
    if (!point) continue;
    const r = mod(point[0], N);
    if (r === 0n) continue;
    const s = mod(inverse(k, N) * (e + r * d), N);
    if (s === 0n) continue;
    const body = Buffer.concat([derInteger(r), derInteger(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}
