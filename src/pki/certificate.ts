import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import {
  bitString,
  booleanTrue,
  bytesOf,
  childrenOf,
  contentsOf,
  contextTag,
  integerFromHex,
  ipAddressBytes,
  isIpAddress,
  namedBits,
  octetString,
  oid,
  readElement,
  sequence,
  set,
  smallInteger,
  tbsParts,
  time,
  utf8String,
} from './der.js';
import { type SignatureAlgorithm, type Signer, signatureAlgorithmOf } from './signer.js';

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
  /** SPKI PEM of the subject's public key (RSA or EC P-256). */
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

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecPublicKey: '1.2.840.10045.2.1',
} as const;

/** AlgorithmIdentifier of each signature: RSA carries NULL parameters, ECDSA none (RFC 5758 §3.2). */
const SIGNATURE_ALGORITHM_DER: Record<SignatureAlgorithm, Buffer> = {
  sha256WithRSAEncryption: Buffer.from('300d06092a864886f70d01010b0500', 'hex'),
  'ecdsa-with-SHA256': Buffer.from('300a06082a8648ce3d040302', 'hex'),
};

/** Name ::= RDNSequence, O then OU then CN, each a UTF8String in its own RDN. */
function encodeName(dn: DistinguishedName): Buffer {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  const parts: Buffer[] = [];
  if (dn.organization) parts.push(rdn(OID.organization, dn.organization));
  if (dn.organizationalUnit) parts.push(rdn(OID.organizationalUnit, dn.organizationalUnit));
  parts.push(rdn(OID.commonName, dn.commonName));
  return sequence(...parts);
}

/** DER bytes of an SPKI PEM, read without parsing the key (the caller validated it). */
export function spkiDerOf(publicKeyPem: string): Buffer {
  const body = publicKeyPem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

/** SHA-1 of the subjectPublicKey bits, as RFC 5280 §4.2.1.2 method (1) describes. */
function keyIdentifier(spkiDer: Buffer): Buffer {
  // SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING }; the bits follow the unused-bits byte.
  const bits = childrenOf(spkiDer, readElement(spkiDer, 0))[1];
  if (!bits) throw new Error('the public key is not an SPKI');
  return createHash('sha1')
    .update(spkiDer.subarray(bits.start + 1, bits.end))
    .digest();
}

interface IssuerFacts {
  /** The issuer's subject Name, byte for byte as its certificate holds it (name matching compares bytes). */
  name: Buffer;
  keyId: Buffer;
}

// Reading the CA certificate costs more than the rest of a certificate; an authority signs with a handful of
// CAs, so their facts are kept (bounded, keyed by the PEM itself).
const issuerCache = new Map<string, IssuerFacts>();

function issuerFacts(certificatePem: string): IssuerFacts {
  let facts = issuerCache.get(certificatePem);
  if (!facts) {
    const der = new X509Certificate(certificatePem).raw;
    const { fields, hasVersion } = tbsParts(der);
    const at = hasVersion ? 1 : 0;
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    const subject = fields[at + 4];
    const spki = fields[at + 5];
    if (!subject || !spki) throw new Error('the CA certificate has no subject or public key');
    facts = { name: bytesOf(der, subject), keyId: keyIdentifier(bytesOf(der, spki)) };
    if (issuerCache.size >= 64) issuerCache.clear();
    issuerCache.set(certificatePem, facts);
  }
  return facts;
}

const extension = (id: string, critical: boolean, value: Buffer) =>
  critical ? sequence(oid(id), booleanTrue(), octetString(value)) : sequence(oid(id), octetString(value));

/** True when the SPKI holds an EC key (id-ecPublicKey). */
function isEcKey(spkiDer: Buffer): boolean {
  const alg = childrenOf(spkiDer, readElement(spkiDer, 0))[0];
  const algOid = alg ? childrenOf(spkiDer, alg)[0] : undefined;
  return algOid !== undefined && contentsOf(spkiDer, algOid).equals(oid(OID.ecPublicKey).subarray(2));
}

// The extensions that depend only on the profile and the key type, encoded once each.
const fixedCache = new Map<string, readonly Buffer[]>();
function fixedExtensions(profile: CertificateProfile, ecKey: boolean): readonly Buffer[] {
  const key = `${profile}/${ecKey}`;
  let ext = fixedCache.get(key);
  if (!ext) {
    if (profile === 'ca')
      ext = [
        extension(OID.basicConstraints, true, sequence(booleanTrue())),
        // digitalSignature (0), keyCertSign (5), cRLSign (6)
        extension(OID.keyUsage, true, namedBits([0, 5, 6])),
      ];
    else {
      const usages: Buffer[] = [];
      if (profile !== 'server') usages.push(oid(OID.clientAuth));
      if (profile !== 'client') usages.push(oid(OID.serverAuth));
      ext = [
        extension(OID.basicConstraints, true, sequence()),
        // digitalSignature (0), and keyEncipherment (2) for RSA keys: an EC key cannot encipher (RFC 5480 §3).
        extension(OID.keyUsage, true, namedBits(ecKey ? [0] : [0, 2])),
        extension(OID.extKeyUsage, false, sequence(...usages)),
      ];
    }
    fixedCache.set(key, ext);
  }
  return ext;
}

function extensionsFor(
  template: CertificateTemplate,
  spkiDer: Buffer,
  ids: { subject: Buffer; issuer: Buffer },
): Buffer {
  const ext: Buffer[] = [...fixedExtensions(template.profile, isEcKey(spkiDer))];
  ext.push(extension(OID.subjectKeyIdentifier, false, octetString(ids.subject)));
  ext.push(extension(OID.authorityKeyIdentifier, false, sequence(contextTag(0, ids.issuer, false))));
  if (template.sans && template.sans.length > 0) {
    const names = template.sans.map((san) =>
      isIpAddress(san)
        ? contextTag(7, ipAddressBytes(san), false)
        : contextTag(2, Buffer.from(san, 'ascii'), false),
    );
    ext.push(extension(OID.subjectAltName, false, sequence(...names)));
  }
  for (const [id, value] of Object.entries(template.privateExtensions ?? {}))
    ext.push(extension(id, false, utf8String(value)));
  return contextTag(3, sequence(...ext), true);
}

/**
 * Builds an X.509 v3 certificate and signs its to-be-signed bytes through `issuer.signer`
 * (sha256WithRSAEncryption or ecdsa-with-SHA256, after the CA key). Returns the certificate PEM and its
 * serial (hex, without a leading 00).
 */
export async function buildCertificate(
  template: CertificateTemplate,
  issuer: Issuer,
): Promise<{ certificatePem: string; serial: string }> {
  const spkiDer = spkiDerOf(template.publicKeyPem);
  const subjectKeyId = keyIdentifier(spkiDer);
  const serial = randomSerialHex();
  const subjectName = encodeName(template.subject);
  const facts = issuer.certificatePem
    ? issuerFacts(issuer.certificatePem)
    : { name: subjectName, keyId: subjectKeyId };
  const algorithm = SIGNATURE_ALGORITHM_DER[signatureAlgorithmOf(issuer.signer)];
  const tbs = sequence(
    contextTag(0, smallInteger(2), true), // version v3
    integerFromHex(serial),
    algorithm,
    facts.name,
    sequence(time(new Date(template.issuedAt.getTime() - BACKDATE_MS)), time(template.notAfter)),
    subjectName,
    spkiDer,
    extensionsFor(template, spkiDer, { subject: subjectKeyId, issuer: facts.keyId }),
  );
  const signature = Buffer.from(await issuer.signer.sign(tbs));
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
  const certificatePem = toPem('CERTIFICATE', sequence(tbs, algorithm, bitString(signature)));
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
