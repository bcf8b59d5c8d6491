import { randomBytes } from 'node:crypto';
import type { AuditEvent, AuditSink } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { DatabaseRoute } from '../../src/credentials/route.js';
import { localSignerFactory, type SignerFactory } from '../../src/pki/ca.js';
import { buildCertificate, type CertificateTemplate, verifyIssuedBy } from '../../src/pki/certificate.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import {
  OID_BOT_NAME,
  OID_CERT_ROLE,
  OID_DB_DATABASE,
  OID_DB_PROTOCOL,
  OID_DB_SERVICE,
  OID_DB_USERNAME,
} from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { LocalSigner, type Signer } from '../../src/pki/signer.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';

/** Counts audit events instead of keeping them, so a long run does not grow the heap. */
export class CountingAuditSink implements AuditSink {
  success = 0;
  other = 0;
  lastReason: string | undefined;
  async write(event: AuditEvent): Promise<void> {
    if (event.outcome === 'success') this.success++;
    else {
      this.other++;
      this.lastReason = event.reason;
    }
  }
}

const RESOURCES = `
kind: role
version: v6
metadata:
  name: bench-role
spec:
  allow:
    db_labels:
      env: bench
    db_names: [app]
    db_users: [app_reader]
    rules:
      - resources: [db_server, db]
        verbs: [read, list]
  options:
    max_session_ttl: 8h
---
kind: db
version: v3
metadata:
  name: bench-db
  labels:
    env: bench
spec:
  protocol: postgres
  uri: db.bench.internal:5432
---
kind: bot
version: v1
metadata:
  name: bench-bot
spec:
  roles: [bench-role]
`;

const BOT = 'bench-bot';
const ROUTE: DatabaseRoute = { service: 'bench-db', database: 'app', username: 'app_reader' };
const TTL_MS = 3_600_000;
/** Distinct subject keys the requests cycle through (a bot's keys are made by the bot, not the authority). */
export const SUBJECT_KEYS = 4;

/** One operation a measurement repeats. */
export type Operation = () => Promise<unknown>;

export interface IssuanceWorkloads {
  /** `Authority.issueDatabaseCertificate`: locks, bot, roles and db from the store, RBAC, build, sign, audit. */
  issue: Operation;
  /**
   * Diagnostic: the same call on a second authority whose `signerFactory` (a public AuthorityOptions field)
   * keeps one Signer per CA key instead of making one per request. Not the shipped default.
   */
  issueCachedSigner: Operation;
  /** `buildCertificate` alone with a signer made once: DER building plus the signature. */
  build: Operation;
  /** `LocalSigner.sign` alone (Node's `crypto.sign` on libuv's thread pool): the floor for both above. */
  sign: Operation;
  audit: CountingAuditSink;
  /** Checks a certificate of each kind against the db-client CA; throws when one does not verify. */
  verifySamples(): Promise<void>;
}

/** A SignerFactory that makes one Signer per CA certificate and reuses it. */
function cachingSignerFactory(): SignerFactory {
  const signers = new Map<string, Signer>();
  return (key) => {
    let signer = signers.get(key.certificatePem);
    if (!signer) {
      signer = localSignerFactory(key);
      signers.set(key.certificatePem, signer);
    }
    return signer;
  };
}

async function newAuthority(audit: AuditSink, signerFactory?: SignerFactory): Promise<Authority> {
  const authority = new Authority({
    store: new MemoryStateStore(),
    audit,
    ...(signerFactory ? { signerFactory } : {}),
  });
  await authority.initialize('bench');
  await authority.createResources(parseResources(RESOURCES, 'bench-resources.yaml'));
  return authority;
}

export async function setUpIssuance(): Promise<IssuanceWorkloads> {
  const audit = new CountingAuditSink();
  const authority = await newAuthority(audit);
  // One sink for both authorities: every measured request must add exactly one success event to it.
  const cachedAuthority = await newAuthority(audit, cachingSignerFactory());
  const keys = await Promise.all(Array.from({ length: SUBJECT_KEYS }, () => generateRsaKeyPair()));
  const publicKeys = keys.map((k) => k.publicKeyPem);
  let next = 0;
  const nextKey = () => publicKeys[next++ % publicKeys.length] as string;

  const ca = (await authority.ca('db-client')).keys[0];
  if (!ca?.privateKeyPem) throw new Error('the db-client CA has no local key');
  const issuer = { certificatePem: ca.certificatePem, signer: new LocalSigner(ca.privateKeyPem) };
  const template = (publicKeyPem: string): CertificateTemplate => {
    const now = new Date();
    return {
      subject: { commonName: ROUTE.username, organization: BOT },
      publicKeyPem,
      issuedAt: now,
      notAfter: new Date(now.getTime() + TTL_MS),
      profile: 'client',
      privateExtensions: {
        [OID_CERT_ROLE]: 'db-client',
        [OID_DB_SERVICE]: ROUTE.service,
        [OID_DB_PROTOCOL]: 'postgres',
        [OID_DB_DATABASE]: ROUTE.database,
        [OID_DB_USERNAME]: ROUTE.username,
        [OID_BOT_NAME]: BOT,
      },
    };
  };
  // About the size of a client certificate's to-be-signed bytes; the signature hashes it first anyway.
  const tbs = randomBytes(900);

  const issue = () => authority.issueDatabaseCertificate(BOT, ROUTE, nextKey(), TTL_MS);
  const issueCachedSigner = () => cachedAuthority.issueDatabaseCertificate(BOT, ROUTE, nextKey(), TTL_MS);
  const build = () => buildCertificate(template(nextKey()), issuer);
  const sign = () => issuer.signer.sign(tbs);

  const verifySamples = async () => {
    const now = new Date();
    const samples = [
      // Issuance signs with the service's own client CA (created on the first issuance).
      [
        'issueDatabaseCertificate',
        (await issue()).certificatePem,
        await authority.dbClientCaBundle(ROUTE.service),
      ],
      ['buildCertificate', (await build()).certificatePem, ca.certificatePem],
      [
        'issueDatabaseCertificate (cached signer)',
        (await issueCachedSigner()).certificatePem,
        await cachedAuthority.dbClientCaBundle(ROUTE.service),
      ],
    ] as const;
    for (const [what, pem, caPem] of samples) {
      if (!verifyIssuedBy(pem, caPem, now))
        throw new Error(`${what} produced a certificate that does not verify against its client CA`);
      const info = parseCertificate(pem);
      if (info.privateExtensions[OID_DB_SERVICE] !== ROUTE.service)
        throw new Error(`${what} produced a certificate without the db service extension`);
    }
    if (audit.other > 0) throw new Error(`the authority denied a request: ${audit.lastReason}`);
  };

  await verifySamples();
  return { issue, issueCachedSigner, build, sign, audit, verifySamples };
}
