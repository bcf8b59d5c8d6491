import { createHash } from 'node:crypto';
import { type KMSClient, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import type { Clock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import { readConfigDocuments } from '../config/read-documents.js';
import { CA_TYPES, type CaType } from '../pki/ca.js';
import { createKmsCa, kmsServiceCaFactory, kmsSignerFactory } from '../pki/kms-signer.js';
import { ConflictError } from '../state/errors.js';
import type { StateStore } from '../state/store.js';
import type { AuditEvent, AuditSink } from './audit.js';
import { Authority } from './authority.js';
import type { IamJoinVerifier } from './iam-join.js';
import { resourcesFromDocuments } from './resources-schema.js';
import { stateKeys, TypedState } from './state-keys.js';

/** Audit events as JSON lines on stdout: in Lambda they land in CloudWatch Logs, one event per line. */
export class StdoutAuditLog implements AuditSink {
  /** `fields` go into every line (the stack name, which the denials metric filter takes as a dimension). */
  constructor(
    private readonly write_: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
    private readonly fields: Readonly<Record<string, string>> = {},
  ) {}
  async write(event: AuditEvent): Promise<void> {
    this.write_(JSON.stringify({ audit: true, ...this.fields, ...event }));
  }
}

export interface AuthorityBootstrapOptions {
  store: StateStore;
  kms: KMSClient;
  /** The KMS key (RSA_2048, SIGN_VERIFY) of each CA. */
  caKeyIds: Record<CaType, string>;
  /** The KMS key of each database service's own client CA, by service (db resource name). */
  dbClientCaKeyIds?: Readonly<Record<string, string>>;
  /**
   * The KMS key the stack created to be each CA's next key (`bot`, `db-server`, `db-client/<service>`), for
   * `broker auth rotate --phase init`; a rotation may also name its key itself.
   */
  nextCaKeyIds?: Readonly<Record<string, string>>;
  /** The resources (roles, dbs, bots, iam tokens) the stack was deployed with: JSON documents, or YAML. */
  resourcesYaml: string;
  clusterName: string;
  audit: AuditSink;
  clock: Clock;
  iamVerifier?: IamJoinVerifier;
}

/**
 * Brings an AWS authority to its deployed configuration once per cold start: creates any missing CA
 * certificate (the shared ones and each database service's client CA) from its KMS key (concurrent cold starts race with compare-and-swap, the loser uses the
 * winner's), and applies the resource file when its content changed since the last cold start.
 */
export async function bootstrapAuthority(options: AuthorityBootstrapOptions): Promise<Authority> {
  const { store, kms, clock } = options;
  const state = new TypedState(store);
  const serviceKeys = options.dbClientCaKeyIds ?? {};
  const authority = new Authority({
    store,
    audit: options.audit,
    clock,
    signerFactory: kmsSignerFactory(kms),
    serviceCaFactory: kmsServiceCaFactory({ kmsClient: kms, keyIds: serviceKeys, clock }),
    rotationKeyFactory: ({ type, service, clusterName, kmsKeyId }) => {
      const ca = service === undefined ? type : `db-client/${service}`;
      const next = options.nextCaKeyIds ?? {};
      const keyId = kmsKeyId ?? (Object.hasOwn(next, ca) ? next[ca] : undefined);
      if (!keyId)
        throw new ConfigError(
          `there is no next KMS key for the ${ca} CA; deploy the stack with nextCaKeys: ['${ca}'] (it creates one) and start the rotation again, or name a key with --kms-key`,
        );
      return createKmsCa(type, {
        clusterName,
        kmsClient: kms,
        keyId,
        clock,
        ...(service === undefined ? {} : { service }),
      });
    },
    retireCaKey: (key) => scheduleKeyDeletion(kms, key),
    ...(options.iamVerifier ? { iamVerifier: options.iamVerifier } : {}),
  });
  const cas = [
    ...CA_TYPES.map((type) => ({ type, key: stateKeys.ca(type), keyId: options.caKeyIds[type], name: type })),
    // Each database service's client CA too, so `ca-bundles` serves it before the service's first issuance.
    ...Object.entries(serviceKeys).map(([service, keyId]) => ({
      type: 'db-client' as const,
      service,
      key: stateKeys.dbClientCa(service),
      keyId,
      name: `db-client/${service}`,
    })),
  ];
  for (const ca of cas) {
    if (await state.has(ca.key)) continue;
    const { clusterName } = options;
    const service = 'service' in ca ? ca.service : undefined;
    const key = await createKmsCa(ca.type, {
      clusterName,
      kmsClient: kms,
      keyId: ca.keyId,
      clock,
      ...(service === undefined ? {} : { service }),
    });
    try {
      await state.put(
        ca.key,
        { type: ca.type, ...(service === undefined ? {} : { service }), keys: [key] },
        'absent',
      );
      await options.audit.write({
        time: clock.now().toISOString(),
        event: 'ca.create',
        outcome: 'success',
        kind: 'ca',
        name: ca.name,
      });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  const hash = createHash('sha256').update(options.resourcesYaml).digest('hex');
  const applied = await state.get(stateKeys.appliedResources);
  if (applied?.value.hash !== hash) {
    // Parsed only when they changed; the stack writes JSON, read without loading the YAML library.
    const docs = await readConfigDocuments(options.resourcesYaml, 'deployed resources');
    await authority.createResources(resourcesFromDocuments(docs, 'deployed resources'), { force: true });
    await state.put(stateKeys.appliedResources, { hash, appliedAt: clock.now().toISOString() });
  }
  return authority;
}

/** How long a retired CA key stays recoverable (CancelKeyDeletion) before KMS deletes it: the longest KMS allows. */
export const RETIRED_KEY_PENDING_DAYS = 30;

/**
 * Schedules the deletion of a CA key that a finished rotation (or rollback) removed: it signs nothing and no
 * bundle names it any more. KMS keeps it recoverable for RETIRED_KEY_PENDING_DAYS.
 */
async function scheduleKeyDeletion(kms: KMSClient, key: { kmsKeyId?: string }): Promise<string> {
  if (!key.kmsKeyId) return 'removed from the CA (it was not a KMS key)';
  const out = await kms.send(
    new ScheduleKeyDeletionCommand({ KeyId: key.kmsKeyId, PendingWindowInDays: RETIRED_KEY_PENDING_DAYS }),
  );
  const when = out.DeletionDate
    ? ` on ${out.DeletionDate.toISOString()}`
    : ` in ${RETIRED_KEY_PENDING_DAYS} days`;
  return `KMS key ${key.kmsKeyId} scheduled for deletion${when}`;
}
