import type { Clock } from '../clock.js';
import type { CaRotation } from './ca-rotation.js';
import { buildCertificate, type DistinguishedName } from './certificate.js';
import { generateKeyPairOf, type KeyAlgorithm } from './keys.js';
import { LocalSigner, type Signer } from './signer.js';

/** The three certificate authorities. */
export const CA_TYPES = ['bot', 'db-client', 'db-server'] as const;
export type CaType = (typeof CA_TYPES)[number];

export const CA_DESCRIPTIONS: Record<CaType, string> = {
  bot: 'signs bot identities and the authority server certificate',
  'db-client':
    'the client CA shared by every database service before per-service CAs; kept for existing setups, signs nothing new (each service has its own: --service)',
  'db-server': 'signs database server certificates; clients verify databases with it',
};

/** One key of a CA: the certificate and where its private key lives. */
export interface CaKey {
  certificatePem: string;
  /** PKCS#8 PEM, embedded mode only (state file 0600). */
  privateKeyPem?: string;
  /** A KMS key id or ARN, AWS mode only. */
  kmsKeyId?: string;
}

/**
 * A CA as stored: every active key. The first signs; all are trusted (so a rotation breaks nobody). A
 * database service's own client CA is a `db-client` record naming its `service`.
 */
export interface CaRecord {
  type: CaType;
  /** Set on the client CA of one database service: it signs only certificates for that service. */
  service?: string;
  keys: CaKey[];
  /** Absent until the first rotation (src/authority/rotation.ts). */
  rotation?: CaRotation;
}

/**
 * Makes the first key of a database service's client CA: a fresh local key by default; in AWS mode, the
 * certificate of the service's KMS key.
 */
export type ServiceCaFactory = (service: string, clusterName: string) => Promise<CaKey>;

/**
 * The subject of a CA certificate. Each database service's client CA has its own subject (CN = the service),
 * so no two CAs a database could be given share a name.
 */
export function caSubject(type: CaType, clusterName: string, service?: string): DistinguishedName {
  return service === undefined
    ? { commonName: `${clusterName} ${type} CA`, organization: clusterName }
    : {
        commonName: service,
        organizationalUnit: `${type} CA of one database service`,
        organization: clusterName,
      };
}

/** Turns a stored CA key into a Signer (local key or KMS). */
export type SignerFactory = (key: CaKey) => Signer;

export const localSignerFactory: SignerFactory = (key) => {
  if (!key.privateKeyPem)
    throw new Error(
      'this CA key is not held locally (no private key in the state); configure the KMS signer',
    );
  return new LocalSigner(key.privateKeyPem);
};

const CA_VALIDITY_MS = 10 * 365 * 24 * 3_600_000;

/** How a local CA is made: `service` for a service's client CA; the key RSA-2048 unless said otherwise. */
export interface LocalCaOptions {
  service?: string | undefined;
  keyAlgorithm?: KeyAlgorithm | undefined;
}

/** Creates a self-signed CA with a fresh key, valid ten years; a string names the service (see LocalCaOptions). */
export async function createLocalCa(
  type: CaType,
  clusterName: string,
  clock: Clock,
  options: string | LocalCaOptions = {},
): Promise<CaKey> {
  const { service, keyAlgorithm } =
    typeof options === 'string' ? { service: options, keyAlgorithm: undefined } : options;
  const keys = await generateKeyPairOf(keyAlgorithm ?? 'rsa2048');
  const now = clock.now();
  const { certificatePem } = await buildCertificate(
    {
      subject: caSubject(type, clusterName, service),
      publicKeyPem: keys.publicKeyPem,
      issuedAt: now,
      notAfter: new Date(now.getTime() + CA_VALIDITY_MS),
      profile: 'ca',
    },
    { signer: new LocalSigner(keys.privateKeyPem) },
  );
  return { certificatePem, privateKeyPem: keys.privateKeyPem };
}
