import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { BrokerError } from '../errors.js';
import { toPem } from './certificate.js';
import {
  bitString,
  childrenOf,
  contentsOf,
  contextTag,
  oid,
  readElement,
  sequence,
  set,
  smallInteger,
  utf8String,
} from './der.js';
import { keyAlgorithmOf } from './keys.js';

/**
 * PKCS#10 certificate requests (RFC 2986), as `tctl auth sign` takes them: a server's key pair signs its own
 * request, so whoever sends it proves it holds the private key of the public key inside. Read and written
 * with the broker's own DER code and verified with Node's crypto (RSA and ECDSA alike), no ASN.1 library.
 *
 * Only the public key is taken from a request. Its subject, its attributes and any extensions it asks for
 * (subjectAltName, basicConstraints, ...) are ignored: the certificate's names come from the caller's host
 * list alone, so a request can prove possession of a key and nothing else.
 */

const PEM =
  /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (NEW )?CERTIFICATE REQUEST-----\r?\n?$/;

/** Signature algorithms a request may use, by OID: SHA-2 with RSA PKCS#1 v1.5 or ECDSA. */
const SIGNATURE_HASHES: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
const OID_SHA256_RSA = '1.2.840.113549.1.1.11';
const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_COMMON_NAME = '2.5.4.3';

const refuse = (why: string) =>
  new BrokerError(
    'bad_request',
    `the certificate request ${why}; send a PKCS#10 request (BEGIN CERTIFICATE REQUEST) signed by the server's own key, as \`broker auth sign --format=db --function\` makes it`,
  );

/** The dotted form of an OBJECT IDENTIFIER's contents. */
function dotted(bytes: Buffer): string {
  const arcs: number[] = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(value);
      value = 0;
    }
  }
  const [first = 0, ...rest] = arcs;
  const top = first < 80 ? Math.floor(first / 40) : 2;
  return [top, first - top * 40, ...rest].join('.');
}

/**
 * The public key (SPKI PEM) of a PKCS#10 request whose self-signature verifies with that key; refuses
 * anything else (not PEM, not DER, trailing bytes, a signature by another key, an unsupported algorithm or
 * key) with a BrokerError `bad_request` that names the problem and quotes nothing of the request.
 */
export function publicKeyOfCsr(csrPem: string): string {
  const pem = PEM.exec(csrPem.trim().concat('\n'));
  if (!pem) throw refuse('is not a PEM certificate request');
  const der = Buffer.from((pem[2] as string).replace(/\s+/g, ''), 'base64');
  let info: Buffer;
  let spki: Buffer;
  let algorithm: string;
  let signature: Buffer;
  try {
    const outer = readElement(der, 0);
    if (outer.tag !== 0x30 || outer.end !== der.length) throw new Error('not one SEQUENCE');
    const [infoEl, algEl, sigEl, ...extra] = childrenOf(der, outer);
    if (!infoEl || !algEl || !sigEl || extra.length || infoEl.tag !== 0x30 || sigEl.tag !== 0x03)
      throw new Error('not a CertificationRequest');
    const [version, subject, spkiEl, attributes] = childrenOf(der, infoEl);
    const versionBytes = version && contentsOf(der, version);
    if (version?.tag !== 0x02 || versionBytes?.length !== 1 || versionBytes[0] !== 0)
      throw new Error('not version 1');
    if (subject?.tag !== 0x30 || spkiEl?.tag !== 0x30 || attributes?.tag !== 0xa0)
      throw new Error('not a CertificationRequestInfo');
    const algOid = childrenOf(der, algEl)[0];
    if (algOid?.tag !== 0x06) throw new Error('no signature algorithm');
    info = der.subarray(infoEl.offset, infoEl.end);
    spki = der.subarray(spkiEl.offset, spkiEl.end);
    algorithm = dotted(contentsOf(der, algOid));
    const bits = contentsOf(der, sigEl);
    if (bits[0] !== 0) throw new Error('signature with unused bits');
    signature = bits.subarray(1);
  } catch {
    throw refuse('is not a well-formed PKCS#10 request (DER)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw refuse('holds no public key Node can read');
  }
  if (keyAlgorithmOf(key) === undefined)
    throw refuse('holds a key that is not RSA of at least 2048 bits or ECDSA P-256');
  const hash = SIGNATURE_HASHES[algorithm];
  const ecdsa = algorithm.startsWith('1.2.840.10045.');
  if (!hash || ecdsa !== (key.asymmetricKeyType === 'ec'))
    throw refuse(
      `is signed with an algorithm the broker does not take (${algorithm}; SHA-2 with RSA or ECDSA)`,
    );
  let valid = false;
  try {
    valid = verify(hash, info, key, signature);
  } catch {
    valid = false;
  }
  if (!valid)
    throw refuse(
      'has a signature that does not verify with the public key it holds: it was not signed by that key (no proof of possession)',
    );
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * A PKCS#10 request for a key pair, signed by its private key (SHA-256 with RSA or ECDSA), subject
 * `CN=commonName`, no attributes: what the operator's machine sends for a server certificate.
 */
export function createCsr(privateKeyPem: string, commonName: string): string {
  const key = createPrivateKey(privateKeyPem);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject = sequence(set(sequence(oid(OID_COMMON_NAME), utf8String(commonName))));
  const info = sequence(smallInteger(0), subject, spki, contextTag(0, Buffer.alloc(0), true));
  const ec = key.asymmetricKeyType === 'ec';
  const algorithm = ec ? sequence(oid(OID_ECDSA_SHA256)) : sequence(oid(OID_SHA256_RSA), Buffer.from([5, 0]));
  return toPem('CERTIFICATE REQUEST', sequence(info, algorithm, bitString(sign('sha256', info, key))));
}
