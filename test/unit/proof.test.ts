/** Proofs of possession of a bot identity key: what is signed, and every way a proof fails to verify. */
import { describe, expect, it } from 'vitest';
import { createProof, MAX_CLOCK_SKEW_MS, proofPayload, verifyProof } from '../../src/pki/proof.js';
import { testKeyPair } from '../support/fixtures.js';

const NOW = new Date('2026-03-01T12:00:00.000Z');
const PARAMS = { generation: 3, output: 'példa' };

describe('proofPayload', () => {
  it('is the version tag, type, timestamp, nonce and JSON parameters, one per line, in UTF-8', () => {
    const payload = proofPayload('renew', '2026-03-01T12:00:00.000Z', 'ab'.repeat(16), PARAMS);
    expect(payload.toString('utf8')).toBe(
      `broker-proof-v1\nrenew\n2026-03-01T12:00:00.000Z\n${'ab'.repeat(16)}\n{"generation":3,"output":"példa"}`,
    );
    expect(payload.length).toBe(Buffer.byteLength(payload.toString('utf8')));
  });
});

describe('createProof and verifyProof', () => {
  it('signs at the given time with a fresh 128-bit nonce, and verifies with the public key', async () => {
    const { privateKeyPem, publicKeyPem } = await testKeyPair(0);
    const a = createProof('renew', PARAMS, privateKeyPem, NOW);
    const b = createProof('renew', PARAMS, privateKeyPem, NOW);
    expect(a.timestamp).toBe('2026-03-01T12:00:00.000Z');
    expect(a.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(b.nonce).not.toBe(a.nonce);
    expect(Buffer.from(a.signature, 'base64')).toHaveLength(256);
    expect(verifyProof('renew', PARAMS, a, publicKeyPem)).toBe(true);
    expect(verifyProof('renew', { ...PARAMS }, b, publicKeyPem)).toBe(true);
  });

  it('a proof verifies for nothing but what was signed, and only with the signer’s key', async () => {
    const { privateKeyPem, publicKeyPem } = await testKeyPair(0);
    const other = await testKeyPair(1);
    const proof = createProof('renew', PARAMS, privateKeyPem, NOW);
    expect(verifyProof('issue', PARAMS, proof, publicKeyPem)).toBe(false);
    expect(verifyProof('renew', { ...PARAMS, generation: 4 }, proof, publicKeyPem)).toBe(false);
    expect(
      verifyProof('renew', PARAMS, { ...proof, timestamp: '2026-03-01T12:00:01.000Z' }, publicKeyPem),
    ).toBe(false);
    expect(verifyProof('renew', PARAMS, { ...proof, nonce: 'cd'.repeat(16) }, publicKeyPem)).toBe(false);
    expect(verifyProof('renew', PARAMS, proof, other.publicKeyPem)).toBe(false);
    const signature = Buffer.from(proof.signature, 'base64');
    signature[0] = (signature[0] as number) ^ 1;
    expect(
      verifyProof('renew', PARAMS, { ...proof, signature: signature.toString('base64') }, publicKeyPem),
    ).toBe(false);
  });

  it.each<[string, { key?: string; signature?: string }]>([
    ['a public key that is not PEM', { key: 'not a key' }],
    ['a truncated public key', { key: 'truncated' }],
    ['an empty signature', { signature: '' }],
  ])('%s makes the proof fail to verify, without throwing', async (_what, change) => {
    const { privateKeyPem, publicKeyPem } = await testKeyPair(0);
    const proof = createProof('renew', PARAMS, privateKeyPem, NOW);
    const key = change.key === 'truncated' ? publicKeyPem.slice(0, 120) : (change.key ?? publicKeyPem);
    const signature = change.signature ?? proof.signature;
    expect(() => verifyProof('renew', PARAMS, { ...proof, signature }, key)).not.toThrow();
    expect(verifyProof('renew', PARAMS, { ...proof, signature }, key)).toBe(false);
  });

  it('allows five minutes of clock skew', () => {
    expect(MAX_CLOCK_SKEW_MS).toBe(300_000);
  });
});
