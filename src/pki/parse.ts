import { createHash, X509Certificate } from 'node:crypto';
import { BrokerError } from '../errors.js';
import { childrenOf, contentsOf, readElement, TAG, tbsParts } from './der.js';
import { memoByText } from './memo.js';
import { decodeOid } from './oid-der.js';
import { BROKER_ARC, LEGACY_BROKER_ARC } from './oids.js';

export interface CertificateInfo {
  serial: string;
  subjectCommonName: string;
  issuerCommonName: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 fingerprint of the DER, lower-case hex. */
  fingerprint: string;
  /** SPKI PEM of the certificate's public key. */
  publicKeyPem: string;
  /** The broker's private extensions, OID → UTF-8 value. */
  privateExtensions: Record<string, string>;
  isCA: boolean;
  sans: string[];
}

/** The broker's OID for an extension id (a legacy-arc id mapped to the current arc), or undefined. */
function ourOid(id: string): string | undefined {
  if (id.startsWith(`${BROKER_ARC}.`)) return id;
  if (id.startsWith(`${LEGACY_BROKER_ARC}.`)) return `${BROKER_ARC}${id.slice(LEGACY_BROKER_ARC.length)}`;
  return undefined;
}

/**
 * Reads the broker's private extensions (UTF8String values under BROKER_ARC) straight from the DER: Node's
 * X509Certificate does not expose extensions it does not know. An extension under LEGACY_BROKER_ARC is read
 * under the current arc's OID, so certificates issued before the arc moved keep their meaning.
 */
function readPrivateExtensions(der: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const { fields } = tbsParts(der);
  const explicit = fields.find((f) => f.tag === 0xa3);
  const list = explicit ? childrenOf(der, explicit)[0] : undefined;
  for (const ext of list ? childrenOf(der, list) : []) {
    const parts = childrenOf(der, ext);
    const idNode = parts[0];
    const valueNode = parts[parts.length - 1];
    if (!idNode || !valueNode || idNode.tag !== TAG.oid || valueNode.tag !== TAG.octetString) continue;
    const id = ourOid(decodeOid(contentsOf(der, idNode)));
    if (id === undefined) continue;
    try {
      const value = contentsOf(der, valueNode);
      const inner = readElement(value, 0);
      if (inner.tag !== TAG.utf8String || inner.end !== value.length) continue;
      out[id] = new TextDecoder('utf-8', { fatal: true }).decode(contentsOf(value, inner));
    } catch {
      // An extension we cannot read is not ours to interpret; leave it out.
    }
  }
  return out;
}

function commonNameOf(dn: string): string {
  const cn = dn.split('\n').find((line) => line.startsWith('CN='));
  return cn ? cn.slice(3) : '';
}

/**
 * Parses the facts the broker needs from one certificate PEM. Throws a BrokerError on garbage. The result is
 * frozen and shared: the authority reads the same identity certificate on every request of a bot's cycle.
 */
export const parseCertificate: (pem: string) => Readonly<CertificateInfo> = memoByText(256, readCertificate);

function readCertificate(pem: string): Readonly<CertificateInfo> {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (err) {
    throw new BrokerError('bad_certificate', 'not a valid X.509 certificate (PEM expected)', { cause: err });
  }
  const privateExtensions = readPrivateExtensions(x509.raw);
  const sans = (x509.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((s) => s.replace(/^(DNS|IP Address):/, ''));
  return Object.freeze({
    serial: x509.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
    subjectCommonName: commonNameOf(x509.subject),
    issuerCommonName: commonNameOf(x509.issuer),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    fingerprint: createHash('sha256').update(x509.raw).digest('hex'),
    publicKeyPem: x509.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateExtensions: Object.freeze(privateExtensions),
    isCA: x509.ca,
    sans: Object.freeze(sans) as string[],
  });
}

/**
 * Whether `certificatePem` names `caPem`'s subject as its issuer and carries a valid signature by its key
 * (validity dates are the caller's to check). Remembered per pair, since a bot presents one identity on
 * every request of a cycle.
 */
export function isSignedBy(certificatePem: string, caPem: string): boolean {
  return signedBy(JSON.stringify([certificatePem, caPem]));
}

// Keyed by the JSON of the pair, which no choice of the two texts can make ambiguous.
const signedBy = memoByText(256, (pair) => {
  const [certificatePem, caPem] = JSON.parse(pair) as [string, string];
  const cert = new X509Certificate(certificatePem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
});

/** Teleport-style CA pin: `sha256:` + hex SHA-256 of the CA's SubjectPublicKeyInfo DER. */
export function caPin(caPem: string): string {
  const spki = new X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}
