import { type Clock, systemClock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import { AccessDeniedError } from '../errors.js';
import {
  type CaKey,
  type CaType,
  createLocalCa,
  localSignerFactory,
  type ServiceCaFactory,
  type SignerFactory,
} from '../pki/ca.js';
import { type KeyAlgorithm, keyAlgorithmOf, tryParsePublicKey } from '../pki/keys.js';
import { parseCertificate } from '../pki/parse.js';
import type { StateStore } from '../state/store.js';
import type { AuditEvent, AuditSink } from './audit.js';
import { type IamJoinVerifier, verifyIamJoin } from './iam-join.js';
import { stateKeys, TypedState } from './state-keys.js';

export interface AuthorityOptions {
  store: StateStore;
  audit: AuditSink;
  clock?: Clock;
  signerFactory?: SignerFactory;
  /**
   * The key of each CA this authority makes itself (embedded mode): rsa2048 (default) or ecdsa-p256. Left
   * out, keys made after `initialize` (a service's client CA, a rotation's next key) follow the shared
   * db-client CA's, so an authority initialised with ECDSA CAs keeps making them.
   */
  caKeyAlgorithm?: KeyAlgorithm;
  /**
   * Makes the first key of a database service's client CA when the service first needs one; by default a
   * fresh local key (embedded mode). AWS mode makes it from the service's KMS key.
   */
  serviceCaFactory?: ServiceCaFactory;
  /** Verifies iam joins; by default forwards the signed request to the real AWS STS with global fetch. */
  iamVerifier?: IamJoinVerifier;
  /** Makes the new key of a CA rotation; by default a fresh local key (embedded mode). */
  rotationKeyFactory?: RotationKeyFactory;
  /**
   * Told about each key a finished rotation or rollback removed from its CA, once it is trusted nowhere; AWS
   * mode schedules the KMS key's deletion. Returns what was done, for the audit line.
   */
  retireCaKey?: (key: CaKey) => Promise<string>;
}

/** The CA a rotation makes a key for; `kmsKeyId` names the key the stack created for it (AWS mode). */
export interface RotationKeyRequest {
  type: CaType;
  service?: string | undefined;
  clusterName: string;
  kmsKeyId?: string | undefined;
}

export type RotationKeyFactory = (request: RotationKeyRequest) => Promise<CaKey>;

/** An audit event as a decision point states it: the time and, for a refusal, the outcome are added. */
export type Decision = Omit<AuditEvent, 'time' | 'outcome'>;

/**
 * What every part of the authority shares: the state (through typed keys), the audit sink, the clock, how
 * CA keys become signers and how iam joins are verified. Injected, so the authority stays runtime-free.
 */
export class AuthorityContext {
  readonly store: StateStore;
  readonly state: TypedState;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly signerFactory: SignerFactory;
  readonly caKeyAlgorithm: KeyAlgorithm;
  private readonly caKeyAlgorithmOption: KeyAlgorithm | undefined;
  readonly serviceCaFactory: ServiceCaFactory;
  readonly iamVerifier: IamJoinVerifier;
  readonly rotationKeyFactory: RotationKeyFactory;
  readonly retireCaKey: ((key: CaKey) => Promise<string>) | undefined;

  constructor(options: AuthorityOptions) {
    this.store = options.store;
    this.state = new TypedState(options.store);
    this.audit = options.audit;
    this.clock = options.clock ?? systemClock;
    this.signerFactory = options.signerFactory ?? localSignerFactory;
    this.caKeyAlgorithm = options.caKeyAlgorithm ?? 'rsa2048';
    this.caKeyAlgorithmOption = options.caKeyAlgorithm;
    this.serviceCaFactory =
      options.serviceCaFactory ??
      ((service, clusterName) =>
        this.localCaAlgorithm().then((keyAlgorithm) =>
          createLocalCa('db-client', clusterName, this.clock, { service, keyAlgorithm }),
        ));
    this.iamVerifier =
      options.iamVerifier ?? ((request, challenge) => verifyIamJoin(request, challenge, { fetch }));
    this.rotationKeyFactory =
      options.rotationKeyFactory ??
      (async ({ type, service, clusterName, kmsKeyId }) => {
        if (kmsKeyId !== undefined)
          throw new ConfigError(
            'this authority keeps its CA keys in its state directory; a KMS key id is for an authority whose CAs are in KMS (AWS mode)',
          );
        return createLocalCa(type, clusterName, this.clock, {
          service,
          keyAlgorithm: await this.localCaAlgorithm(),
        });
      });
    this.retireCaKey = options.retireCaKey;
  }

  /** The key algorithm of a CA key made after `initialize`: the option, or the shared db-client CA's. */
  async localCaAlgorithm(): Promise<KeyAlgorithm> {
    if (this.caKeyAlgorithmOption) return this.caKeyAlgorithmOption;
    const pem = (await this.state.get(stateKeys.ca('db-client')))?.value.keys[0]?.certificatePem;
    const key = pem ? tryParsePublicKey(parseCertificate(pem).publicKeyPem) : undefined;
    return (key && keyAlgorithmOf(key)) ?? 'rsa2048';
  }

  /** Writes an audit event stamped with the authority's clock. */
  async record(event: Omit<AuditEvent, 'time'>): Promise<void> {
    await this.audit.write({ time: this.clock.now().toISOString(), ...event });
  }

  /**
   * Audits a refusal, then throws the AccessDeniedError the caller sees. The audit reason is for operators;
   * `message` is for the caller and says what to do.
   */
  async deny(decision: Decision, message: string): Promise<never> {
    const { event, ...detail } = decision;
    await this.record({ event, outcome: 'denied', ...detail });
    throw new AccessDeniedError(message);
  }
}

/** `{ requestId }` when there is one: audit events carry it only then. */
export function withRequestId(requestId: string | undefined): { requestId?: string } {
  return requestId ? { requestId } : {};
}
