/**
 * The PKCS#10 reader and writer on their own (src/pki/csr.ts), byte by byte: requests are assembled here from
 * their DER parts and signed by the key they hold, one part wrong at a time (a lying length, a wrong tag, an
 * unsupported or mislabelled signature algorithm, a signature over other bytes, bytes after the request), so
 * each refusal is the reader's own and not a side effect of a broken signature. RSA and ECDSA alike.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { createCsr, publicKeyOfCsr } from '../../src/pki/csr.js';
import { contextTag, oid, sequence, set, smallInteger, tlv, utf8String } from '../../src/pki/der.js';
import { testKeyPair } from '../support/fixtures.js';

const RSA_SHA256 = '1.2.840.113549.1.1.11';
const ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const NULL = Buffer.from([5, 0]);
const EMPTY_ATTRIBUTES = contextTag(0, Buffer.alloc(0), true);
const SUBJECT = sequence(set(sequence(oid('2.5.4.3'), utf8String('db.internal'))));

interface Signer {
  privateKey: KeyObject;
  privateKeyPem: string;
  publicKeyPem: string;
  spki: Buffer;
}

function signerOf(privateKey: KeyObject): Signer {
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    spki: publicKey.export({ type: 'spki', format: 'der' }),
  };
}
const ecKey = (namedCurve = 'P-256') => signerOf(generateKeyPairSync('ec', { namedCurve }).privateKey);
const rsaKey = async (slot = 0) => signerOf(createPrivateKey((await testKeyPair(slot)).privateKeyPem));

const pemOf = (der: Buffer, label = 'CERTIFICATE REQUEST') =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`;
const derOf = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

/** A CertificationRequestInfo from its parts; each may be swapped for a wrong one. */
function infoOf(
  spki: Buffer,
  parts: { version?: Buffer; subject?: Buffer; attributes?: Buffer | null; tag?: number } = {},
): Buffer {
  const { version = smallInteger(0), subject = SUBJECT, attributes = EMPTY_ATTRIBUTES, tag = 0x30 } = parts;
  return tlv(tag, Buffer.concat([version, subject, spki, ...(attributes ? [attributes] : [])]));
}

interface Signing {
  algorithm?: Buffer;
  hash?: string;
  /** The bytes signed, when not the info itself. */
  signed?: Buffer;
  signatureTag?: number;
  unusedBits?: number;
  after?: Buffer[];
}

/** A request around `info`, signed by `key` (SHA-256 and the algorithm that fits the key unless said). */
function requestOf(info: Buffer, key: Signer, s: Signing = {}): Buffer {
  const ec = key.privateKey.asymmetricKeyType === 'ec';
  const algorithm = s.algorithm ?? (ec ? sequence(oid(ECDSA_SHA256)) : sequence(oid(RSA_SHA256), NULL));
  const signature = sign(s.hash ?? 'sha256', s.signed ?? info, key.privateKey);
  const bits = tlv(s.signatureTag ?? 0x03, Buffer.concat([Buffer.from([s.unusedBits ?? 0]), signature]));
  return sequence(info, algorithm, bits, ...(s.after ?? []));
}
const csrOf = (key: Signer, s: Signing = {}) => pemOf(requestOf(infoOf(key.spki), key, s));

const NOT_DER = /is not a well-formed PKCS#10 request \(DER\)/;
const NO_PROOF = /has a signature that does not verify with the public key it holds/;

describe('publicKeyOfCsr takes a well-formed, self-signed request', () => {
  it('with RSA or ECDSA P-256 keys and SHA-256, SHA-384 or SHA-512, returning the key it holds', async () => {
    const rsa = await rsaKey();
    const ec = ecKey();
    const cases: [Signer, string, string][] = [
      [rsa, '1.2.840.113549.1.1.11', 'sha256'],
      [rsa, '1.2.840.113549.1.1.12', 'sha384'],
      [rsa, '1.2.840.113549.1.1.13', 'sha512'],
      [ec, '1.2.840.10045.4.3.2', 'sha256'],
      [ec, '1.2.840.10045.4.3.3', 'sha384'],
      [ec, '1.2.840.10045.4.3.4', 'sha512'],
    ];
    for (const [key, algorithm, hash] of cases)
      expect(publicKeyOfCsr(csrOf(key, { algorithm: sequence(oid(algorithm)), hash }))).toBe(
        key.publicKeyPem,
      );
  });

  it('in the PEM spellings tools write: NEW CERTIFICATE REQUEST, CRLF lines, one line, surrounding blanks', async () => {
    const key = await rsaKey(1);
    const der = requestOf(infoOf(key.spki), key);
    const pem = pemOf(der);
    const base64 = der.toString('base64');
    const spellings = [
      pemOf(der, 'NEW CERTIFICATE REQUEST'),
      pem.replaceAll('\n', '\r\n'),
      `-----BEGIN CERTIFICATE REQUEST-----\n${base64}\n-----END CERTIFICATE REQUEST-----`,
      `\n  ${pem}\n\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${base64.replace(/(.{76})/g, '$1\r\n')}\r\n-----END CERTIFICATE REQUEST-----\r\n`,
    ];
    for (const spelling of spellings) expect(publicKeyOfCsr(spelling)).toBe(key.publicKeyPem);
  });

  it('whatever its base64 holds: every alphabet character, padded or not', async () => {
    const key = await rsaKey();
    const bodies: string[] = [];
    // An RSA signature's length is fixed (ECDSA's is not), so subjects one byte apart give DER of every
    // length modulo 3: no padding, "=" and "==".
    for (const name of ['a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef']) {
      const info = infoOf(key.spki, { subject: sequence(set(sequence(oid('2.5.4.3'), utf8String(name)))) });
      const pem = pemOf(requestOf(info, key));
      expect(publicKeyOfCsr(pem)).toBe(key.publicKeyPem);
      bodies.push(pem);
    }
    const text = bodies.join('');
    for (const c of ['+', '/', '=', '==', 'A', 'z', '0', '9']) expect(text).toContain(c);
  });
});

describe('publicKeyOfCsr refuses what is not one PEM certificate request', () => {
  it('other PEM labels, text around the block, a block with no end, characters outside base64', async () => {
    const key = ecKey();
    const good = csrOf(key);
    const body = good.split('\n').slice(1, -2).join('\n');
    for (const bad of [
      good.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'),
      good.replace(/CERTIFICATE REQUEST/g, 'OLD CERTIFICATE REQUEST'),
      `Certificate Request:\n${good}`,
      `${good}signed by me\n`,
      good.replace('-----END CERTIFICATE REQUEST-----\n', ''),
      `-----BEGIN CERTIFICATE REQUEST-----\n${body}\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${body.replace(/^(.{10})/, '$1!')}\n-----END CERTIFICATE REQUEST-----\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${body.replace(/^(.{10})/, '$1\t')}\n-----END CERTIFICATE REQUEST-----\n`,
      '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n',
    ])
      expect(() => publicKeyOfCsr(bad), bad.slice(0, 40)).toThrow(/is not a PEM certificate request/);
  });
});

describe('publicKeyOfCsr refuses DER that is not a CertificationRequest', () => {
  it('lengths that run past the end or stop short, and bytes after the request', async () => {
    const key = await rsaKey();
    const der = requestOf(infoOf(key.spki), key);
    const longer = Buffer.from(der);
    longer.writeUInt16BE(der.readUInt16BE(2) + 1, 2); // 30 82 LL LL: the outer length claims one byte more
    const shorter = Buffer.from(der);
    shorter.writeUInt16BE(der.readUInt16BE(2) - 1, 2);
    for (const bad of [
      longer,
      shorter,
      Buffer.concat([der, Buffer.from([0])]),
      Buffer.concat([der, der]),
      der.subarray(0, 1),
      Buffer.alloc(0),
    ])
      expect(() => publicKeyOfCsr(pemOf(bad))).toThrow(NOT_DER);
  });

  it('an outer element that is not a SEQUENCE, or a SEQUENCE of other than info, algorithm, signature', async () => {
    const key = ecKey();
    const der = requestOf(infoOf(key.spki), key);
    const asSet = Buffer.from(der);
    asSet[0] = 0x31;
    const info = infoOf(key.spki);
    const algorithm = sequence(oid(ECDSA_SHA256));
    const bits = tlv(0x03, Buffer.concat([Buffer.from([0]), sign('sha256', info, key.privateKey)]));
    for (const bad of [
      asSet,
      sequence(info, algorithm),
      sequence(info),
      sequence(),
      requestOf(info, key, { after: [NULL] }),
      requestOf(info, key, { after: [bits] }),
    ])
      expect(() => publicKeyOfCsr(pemOf(bad))).toThrow(NOT_DER);
  });

  it('a signature that is not a BIT STRING, or a BIT STRING with unused bits, though the bytes verify', () => {
    const key = ecKey();
    expect(() => publicKeyOfCsr(csrOf(key, { signatureTag: 0x04 }))).toThrow(NOT_DER);
    expect(() => publicKeyOfCsr(csrOf(key, { unusedBits: 1 }))).toThrow(NOT_DER);
    expect(() => publicKeyOfCsr(csrOf(key, { unusedBits: 0 }))).not.toThrow();
  });

  it('an info that is not a SEQUENCE of version 1, Name, key and [0] attributes, though signed by its key', async () => {
    const key = await rsaKey(2);
    const infos = [
      infoOf(key.spki, { tag: 0x31 }),
      infoOf(key.spki, { version: smallInteger(1) }),
      infoOf(key.spki, { version: tlv(0x02, Buffer.from([0, 0])) }),
      infoOf(key.spki, { version: tlv(0x02, Buffer.alloc(0)) }),
      infoOf(key.spki, { version: tlv(0x04, Buffer.from([0])) }),
      infoOf(key.spki, { subject: set(sequence(oid('2.5.4.3'), utf8String('db.internal'))) }),
      infoOf(key.spki, { subject: utf8String('db.internal') }),
      infoOf(key.spki, { attributes: null }),
      infoOf(key.spki, { attributes: contextTag(0, Buffer.alloc(0), false) }),
      infoOf(key.spki, { attributes: contextTag(1, Buffer.alloc(0), true) }),
      tlv(0x30, Buffer.concat([smallInteger(0), SUBJECT, set(key.spki.subarray(2)), EMPTY_ATTRIBUTES])),
      tlv(0x30, Buffer.alloc(0)),
    ];
    for (const info of infos) expect(() => publicKeyOfCsr(pemOf(requestOf(info, key)))).toThrow(NOT_DER);
  });

  it('a signature algorithm with no OBJECT IDENTIFIER first', () => {
    const key = ecKey();
    for (const algorithm of [sequence(), sequence(NULL, oid(ECDSA_SHA256)), sequence(utf8String('ecdsa'))])
      expect(() => publicKeyOfCsr(csrOf(key, { algorithm }))).toThrow(NOT_DER);
  });
});

describe('publicKeyOfCsr refuses keys and algorithms the broker does not take', () => {
  it('a SubjectPublicKeyInfo Node cannot read', () => {
    const key = ecKey();
    const info = infoOf(sequence(sequence(oid('1.2.840.10045.2.1')), tlv(0x03, Buffer.from([0, 4, 1, 2]))));
    expect(() => publicKeyOfCsr(pemOf(requestOf(info, key)))).toThrow(/holds no public key Node can read/);
  });

  it('keys other than RSA of 2048 bits or more and ECDSA P-256, though self-signed', () => {
    const weak = signerOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey);
    const p384 = ecKey('P-384');
    const ed = signerOf(generateKeyPairSync('ed25519').privateKey);
    const edRequest = sequence(
      infoOf(ed.spki),
      sequence(oid('1.3.101.112')),
      tlv(0x03, Buffer.concat([Buffer.from([0]), sign(null, infoOf(ed.spki), ed.privateKey)])),
    );
    for (const pem of [csrOf(weak), csrOf(p384), pemOf(edRequest)])
      expect(() => publicKeyOfCsr(pem)).toThrow(/not RSA of at least 2048 bits or ECDSA P-256/);
  });

  it('signature algorithms other than SHA-2 with RSA or ECDSA, naming the OID', async () => {
    const rsa = await rsaKey();
    const ec = ecKey();
    const cases: [Signer, string, string][] = [
      [rsa, '1.2.840.113549.1.1.5', 'sha1'], // sha1WithRSAEncryption
      [rsa, '1.2.840.113549.1.1.14', 'sha224'], // sha224WithRSAEncryption
      [ec, '1.2.840.10045.4.1', 'sha1'], // ecdsa-with-SHA1
      [ec, '1.2.840.10045.4.3.1', 'sha224'], // ecdsa-with-SHA224
      [rsa, '2.16.840.1.101.3.4.2.1', 'sha256'], // the SHA-256 hash OID alone
      [rsa, '2.999.7', 'sha256'],
    ];
    for (const [key, algorithm, hash] of cases)
      expect(() => publicKeyOfCsr(csrOf(key, { algorithm: sequence(oid(algorithm)), hash }))).toThrow(
        `is signed with an algorithm the broker does not take (${algorithm}; SHA-2 with RSA or ECDSA)`,
      );
  });

  it('an RSA signature labelled ECDSA, and an ECDSA one labelled RSA, though the bytes verify', async () => {
    const rsa = await rsaKey();
    const ec = ecKey();
    for (const [key, algorithm] of [
      [rsa, ECDSA_SHA256],
      [ec, RSA_SHA256],
      [rsa, '1.2.840.10045.4.3.4'],
      [ec, '1.2.840.113549.1.1.13'],
    ] as const)
      expect(() => publicKeyOfCsr(csrOf(key, { algorithm: sequence(oid(algorithm)) }))).toThrow(
        `is signed with an algorithm the broker does not take (${algorithm};`,
      );
  });
});

describe('publicKeyOfCsr refuses a signature that does not prove possession of the key', () => {
  it('a signature over other bytes than the whole info: its contents, the whole request, another info', async () => {
    for (const key of [await rsaKey(), ecKey()]) {
      const info = infoOf(key.spki);
      const header = info.length - info.subarray(2).length;
      for (const signed of [
        info.subarray(header),
        info.subarray(0, info.length - 1),
        Buffer.concat([info, Buffer.from([0])]),
        infoOf(key.spki, { subject: sequence() }),
        Buffer.alloc(0),
      ])
        expect(() => publicKeyOfCsr(pemOf(requestOf(info, key, { signed })))).toThrow(NO_PROOF);
    }
  });

  it('a signature by another key, a hash other than the one named, a flipped bit, no signature at all', async () => {
    const rsa = await rsaKey();
    const other = await rsaKey(1);
    const ec = ecKey();
    const info = infoOf(rsa.spki);
    const byOther = sequence(
      info,
      sequence(oid(RSA_SHA256), NULL),
      tlv(0x03, Buffer.concat([Buffer.from([0]), sign('sha256', info, other.privateKey)])),
    );
    const flipped = requestOf(infoOf(ec.spki), ec);
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] as number) ^ 0x01;
    for (const der of [
      byOther,
      requestOf(info, rsa, { hash: 'sha384' }),
      requestOf(infoOf(ec.spki), ec, { hash: 'sha512' }),
      flipped,
      sequence(info, sequence(oid(RSA_SHA256), NULL), tlv(0x03, Buffer.from([0]))),
    ])
      expect(() => publicKeyOfCsr(pemOf(der))).toThrow(NO_PROOF);
  });
});

describe('a refusal', () => {
  it('is a bad_request BrokerError that says what to send and quotes nothing of the request', async () => {
    const key = await rsaKey();
    const other = await rsaKey(1);
    const good = requestOf(infoOf(key.spki), key);
    const byOther = requestOf(infoOf(key.spki), other);
    for (const bad of ['GARBAGE', pemOf(Buffer.concat([good, Buffer.from([0])])), pemOf(byOther)]) {
      const error = (() => {
        try {
          publicKeyOfCsr(bad);
        } catch (e) {
          return e as Error & { code?: string };
        }
        throw new Error('accepted');
      })();
      expect(error).toMatchObject({ name: 'BrokerError', code: 'bad_request' });
      expect(error.message).toMatch(
        /; send a PKCS#10 request \(BEGIN CERTIFICATE REQUEST\) signed by the server's own key, as `broker auth sign --format=db --function` makes it$/,
      );
      expect(error.message).not.toContain('GARBAGE');
      expect(error.message).not.toContain(good.toString('base64').slice(0, 16));
    }
  });
});

describe('createCsr', () => {
  it('writes CN=name, an empty attribute set and the algorithm identifier RFC 4055 / RFC 5758 spell', async () => {
    const rsa = await rsaKey();
    const ec = ecKey();
    for (const [key, algorithm] of [
      [rsa, '300d06092a864886f70d01010b0500'], // sha256WithRSAEncryption, NULL parameters
      [ec, '300a06082a8648ce3d040302'], // ecdsa-with-SHA256, no parameters
    ] as const) {
      const pem = createCsr(key.privateKeyPem, 'db.internal');
      expect(pem).toMatch(
        /^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE REQUEST-----\n$/,
      );
      const der = derOf(pem);
      const info = infoOf(key.spki);
      const at = der.indexOf(info); // after the outer SEQUENCE's tag and length
      expect([2, 3, 4]).toContain(at);
      expect(der.subarray(at + info.length).toString('hex')).toMatch(new RegExp(`^${algorithm}03`));
      expect(publicKeyOfCsr(pem)).toBe(key.publicKeyPem);
    }
    const parsed = forge.pki.certificationRequestFromPem(createCsr(rsa.privateKeyPem, 'db.internal'));
    expect(parsed.subject.getField('CN').value).toBe('db.internal');
    expect(parsed.verify()).toBe(true);
  });
});
