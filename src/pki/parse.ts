import { createHash, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { BrokerError } from '../errors.js';
import { decodeOid } from './oid-der.js';

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

type Node = forge.asn1.Asn1;

/**
 * Reads the `2.25.*` extensions (UTF8String values) straight from the DER: node-forge's certificate parser
 * cannot decode OIDs with arcs over 32 bits.
 */
function readPrivateExtensions(der: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const cert = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  const tbs = (cert.value as Node[])[0] as Node;
  const explicit = (tbs.value as Node[]).find(
    (n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3,
  );
  const list = explicit ? ((explicit.value as Node[])[0]?.value as Node[] | undefined) : undefined;
  for (const ext of list ?? []) {
    const parts = ext.value as Node[];
    const idNode = parts[0];
    const valueNode = parts[parts.length - 1];
    if (!idNode || !valueNode || idNode.type !== forge.asn1.Type.OID) continue;
    const id = decodeOid(Buffer.from(idNode.value as string, 'binary'));
    if (!id.startsWith('2.25.')) continue;
    try {
      const inner = forge.asn1.fromDer(forge.util.createBuffer(valueNode.value as string));
      out[id] = forge.util.decodeUtf8(inner.value as string);
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

/** Parses the facts the broker needs from one certificate PEM. Throws a BrokerError on garbage. */
export function parseCertificate(pem: string): CertificateInfo {
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
  return {
    serial: x509.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
    subjectCommonName: commonNameOf(x509.subject),
    issuerCommonName: commonNameOf(x509.issuer),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    fingerprint: createHash('sha256').update(x509.raw).digest('hex'),
    publicKeyPem: x509.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privateExtensions,
    isCA: x509.ca,
    sans,
  };
}

/** Teleport-style CA pin: `sha256:` + hex SHA-256 of the CA's SubjectPublicKeyInfo DER. */
export function caPin(caPem: string): string {
  const spki = new X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}
