import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { encodeOid } from './oid-der.js';
import type { Signer } from './signer.js';

const { asn1, pki } = forge;

/** Clock skew allowance: every certificate's notBefore is back-dated this much. */
export const BACKDATE_MS = 60_000;

export interface DistinguishedName {
  commonName: string;
  organization?: string;
  organizationalUnit?: string;
}

export type CertificateProfile = 'ca' | 'client' | 'server' | 'client-server';

export interface CertificateTemplate {
  subject: DistinguishedName;
  /** SPKI PEM of the subject's public key. */
  publicKeyPem: string;
  /** Issue time; notBefore is this minus BACKDATE_MS. */
  issuedAt: Date;
  notAfter: Date;
  profile: CertificateProfile;
  /** DNS names and IP addresses; each is placed in the right SAN type. */
  sans?: readonly string[];
  /** Private extensions: OID → UTF-8 value, encoded as UTF8String, never critical. */
  privateExtensions?: Readonly<Record<string, string>>;
}

export interface Issuer {
  /** The CA certificate, PEM. Self-signed issuance passes the template's own subject instead. */
  certificatePem?: string;
  signer: Signer;
}

/** Random positive 128-bit serial number, hex. */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  const hex = bytes.toString('hex');
  // DER INTEGERs are signed: a leading 00 keeps a serial with the top bit set positive.
  return (bytes[0] as number) >= 0x80 ? `00${hex}` : hex;
}

function subjectAttributes(dn: DistinguishedName): forge.pki.CertificateField[] {
  const attrs: forge.pki.CertificateField[] = [];
  if (dn.organization)
    attrs.push({ shortName: 'O', value: dn.organization, valueTagClass: asn1.Type.UTF8 as never });
  if (dn.organizationalUnit)
    attrs.push({ shortName: 'OU', value: dn.organizationalUnit, valueTagClass: asn1.Type.UTF8 as never });
  attrs.push({ shortName: 'CN', value: dn.commonName, valueTagClass: asn1.Type.UTF8 as never });
  return attrs;
}

/** SHA-1 of the subjectPublicKey bits, as RFC 5280 §4.2.1.2 method (1) describes; binary string. */
function keyIdentifier(spkiDer: Buffer): string {
  return createHash('sha1').update(subjectPublicKeyBits(spkiDer)).digest('binary');
}

/** DER bytes of an SPKI PEM, read without parsing the key (the caller validated it). */
export function spkiDerOf(publicKeyPem: string): Buffer {
  const body = publicKeyPem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

/** Reads a DER length at `offset`; returns [length, offset of the contents]. */
function derLength(der: Buffer, offset: number): [number, number] {
  const first = der[offset] as number;
  if (first < 0x80) return [first, offset + 1];
  const n = first & 0x7f;
  let len = 0;
  for (let i = 1; i <= n; i++) len = len * 256 + (der[offset + i] as number);
  return [len, offset + 1 + n];
}

/** The subjectPublicKey bits of an SPKI (the BIT STRING contents after its unused-bits byte). */
function subjectPublicKeyBits(spki: Buffer): Buffer {
  // SEQUENCE { AlgorithmIdentifier SEQUENCE, BIT STRING }
  const [, seqStart] = derLength(spki, 1);
  const [algLen, algStart] = derLength(spki, seqStart + 1);
  const bitTag = algStart + algLen;
  const [bitLen, bitStart] = derLength(spki, bitTag + 1);
  return spki.subarray(bitStart + 1, bitStart + bitLen);
}

function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let l = length; l > 0; l = Math.floor(l / 256)) bytes.unshift(l & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

// AlgorithmIdentifier { sha256WithRSAEncryption, NULL }
const SHA256_WITH_RSA_ALGORITHM = Buffer.from('300d06092a864886f70d01010b0500', 'hex');

// node-forge builds the SubjectPublicKeyInfo from a parsed key with big-integer arithmetic; the broker
// already has the DER, so a fixed placeholder key goes through forge and its node is swapped for the real one.
let placeholderKey: forge.pki.rsa.PublicKey | undefined;
function placeholderPublicKey(): forge.pki.rsa.PublicKey {
  placeholderKey ??= pki.rsa.setPublicKey(new forge.jsbn.BigInteger('3'), new forge.jsbn.BigInteger('3'));
  return placeholderKey;
}

interface IssuerFacts {
  attributes: forge.pki.CertificateField[];
  keyId: string;
}

// Parsing the CA certificate and its key costs more than the rest of a signature; an authority signs with
// a handful of CAs, so their facts are kept (bounded, keyed by the PEM itself).
const issuerCache = new Map<string, IssuerFacts>();

function issuerFacts(certificatePem: string): IssuerFacts {
  let facts = issuerCache.get(certificatePem);
  if (!facts) {
    const issuerCert = pki.certificateFromPem(certificatePem);
    facts = {
      attributes: issuerCert.subject.attributes,
      keyId: keyIdentifier(spkiDerOf(pki.publicKeyToPem(issuerCert.publicKey))),
    };
    if (issuerCache.size >= 64) issuerCache.clear();
    issuerCache.set(certificatePem, facts);
  }
  return facts;
}

/** Extension { extnID OID, extnValue OCTET STRING (UTF8String) }, built here because forge cannot encode large arcs. */
function utf8Extension(id: string, value: string): forge.asn1.Asn1 {
  const inner = asn1.toDer(
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, forge.util.encodeUtf8(value)),
  );
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, encodeOid(id).toString('binary')),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, inner.getBytes()),
  ]);
}

function extensionsFor(template: CertificateTemplate, subjectKeyId: string, issuerKeyId: string): object[] {
  const ext: object[] = [];
  if (template.profile === 'ca') {
    ext.push({ name: 'basicConstraints', cA: true, critical: true });
    ext.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    ext.push({ name: 'basicConstraints', cA: false, critical: true });
    ext.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    ext.push({
      name: 'extKeyUsage',
      clientAuth: template.profile !== 'server',
      serverAuth: template.profile === 'server' || template.profile === 'client-server',
    });
  }
  // Both key identifiers are given as encoded values: forge would otherwise derive the subject's from
  // cert.publicKey, which here is a placeholder (see placeholderPublicKey).
  const octets = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, subjectKeyId);
  ext.push({ id: '2.5.29.14', critical: false, value: asn1.toDer(octets).getBytes() });
  const aki = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, issuerKeyId),
  ]);
  ext.push({ id: '2.5.29.35', critical: false, value: asn1.toDer(aki).getBytes() });
  if (template.sans && template.sans.length > 0) {
    ext.push({
      name: 'subjectAltName',
      altNames: template.sans.map((san) => (isIP(san) ? { type: 7, ip: san } : { type: 2, value: san })),
    });
  }
  return ext;
}

/**
 * Builds an X.509 v3 certificate with node-forge and signs its to-be-signed bytes through `issuer.signer`
 * (sha256WithRSAEncryption). Returns the certificate PEM and its serial (hex, without a leading 00).
 */
export async function buildCertificate(
  template: CertificateTemplate,
  issuer: Issuer,
): Promise<{ certificatePem: string; serial: string }> {
  const cert = pki.createCertificate();
  const spkiDer = spkiDerOf(template.publicKeyPem);
  cert.publicKey = placeholderPublicKey();
  const subjectKeyId = keyIdentifier(spkiDer);
  const serial = randomSerialHex();
  cert.serialNumber = serial;
  cert.validity.notBefore = new Date(template.issuedAt.getTime() - BACKDATE_MS);
  cert.validity.notAfter = template.notAfter;
  cert.setSubject(subjectAttributes(template.subject));
  let issuerKeyId = subjectKeyId;
  if (issuer.certificatePem) {
    const facts = issuerFacts(issuer.certificatePem);
    cert.setIssuer(facts.attributes);
    issuerKeyId = facts.keyId;
  } else {
    cert.setIssuer(subjectAttributes(template.subject));
  }
  cert.setExtensions(extensionsFor(template, subjectKeyId, issuerKeyId));

  cert.siginfo.algorithmOid = pki.oids.sha256WithRSAEncryption as string;
  const tbs = (
    pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert);
  const tbsParts = tbs.value as forge.asn1.Asn1[];
  tbsParts[6] = asn1.fromDer(forge.util.createBuffer(spkiDer.toString('binary')));
  // extensions: [3] { SEQUENCE OF Extension } is the last element of the TBS.
  const extensions = (
    (tbsParts[tbsParts.length - 1] as forge.asn1.Asn1).value as forge.asn1.Asn1[]
  )[0] as forge.asn1.Asn1;
  for (const [id, value] of Object.entries(template.privateExtensions ?? {}))
    (extensions.value as forge.asn1.Asn1[]).push(utf8Extension(id, value));
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = Buffer.from(await issuer.signer.sign(tbsDer));
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
  const bitString = Buffer.concat([derHeader(0x03, signature.length + 1), Buffer.from([0]), signature]);
  const body = Buffer.concat([tbsDer, SHA256_WITH_RSA_ALGORITHM, bitString]);
  const certificatePem = toPem('CERTIFICATE', Buffer.concat([derHeader(0x30, body.length), body]));
  return { certificatePem, serial: serial.replace(/^00/, '') };
}

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** Verifies that `certificatePem` was signed by `caPem`'s key and is within its validity at `at`. */
export function verifyIssuedBy(certificatePem: string, caPem: string, at: Date): boolean {
  const cert = new X509Certificate(certificatePem);
  const ca = new X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
  return new Date(cert.validFrom) <= at && at <= new Date(cert.validTo);
}
