import { ConfigError } from '../config/errors.js';
import { joinPemBundle } from '../credentials/pem.js';
import { CA_TYPES, type CaKey, type CaRecord, type CaType, createLocalCa } from '../pki/ca.js';
import { parseCertificate } from '../pki/parse.js';
import type { Signer } from '../pki/signer.js';
import { ConflictError, StateError } from '../state/errors.js';
import type { AuthorityContext } from './context.js';
import { AlreadyExistsError, NotFoundError } from './errors.js';
import { resourceName } from './resources-schema.js';
import { advanceDueRotation } from './rotations.js';
import { type StateKey, stateKeys } from './state-keys.js';

/** How many parsed certificates, signers and bundles each cache holds before it starts over. */
const CACHE_LIMIT = 32;

/** A CA's signing certificate and signer, for `buildCertificate`. */
export interface CaIssuer {
  certificatePem: string;
  signer: Signer;
}

/**
 * The authority's CAs: the three shared ones (bot, database client, database server) and one client CA per
 * database service; creating them, reading them on every request, and signing with them.
 */
export class CaRegistry {
  // The CA record is read on every request (so a rotation takes effect at once), but parsing its
  // certificate and its private key costs more than signing: both are kept per certificate.
  private readonly expiries = new Map<string, Date>();
  private readonly signers = new Map<string, Signer>();
  private readonly bundles = new Map<string, string>();
  /** Service CAs being created by this process, so concurrent first issuances make one key, not several. */
  private readonly creating = new Map<string, Promise<void>>();

  constructor(private readonly ctx: AuthorityContext) {}

  /** Creates the three CAs. Refuses when any exists, so an initialised authority is never overwritten. */
  async initialize(clusterName: string): Promise<void> {
    const { state, clock } = this.ctx;
    for (const type of CA_TYPES) {
      if (await state.has(stateKeys.ca(type)))
        throw new AlreadyExistsError(
          `this authority is already initialised (the ${type} CA exists); refusing to overwrite it`,
        );
    }
    await state.put(stateKeys.cluster, { name: clusterName, createdAt: clock.now().toISOString() }, 'absent');
    for (const type of CA_TYPES) {
      const key = await createLocalCa(type, clusterName, clock, { keyAlgorithm: this.ctx.caKeyAlgorithm });
      await state.put(stateKeys.ca(type), { type, keys: [key] }, 'absent');
      await this.ctx.record({ event: 'ca.create', outcome: 'success', kind: 'ca', name: type });
    }
  }

  /** A CA as stored; refuses a missing or expired one, with what to do about it. */
  async ca(type: CaType): Promise<CaRecord> {
    const record = await this.read(stateKeys.ca(type), `the ${type} CA`);
    if (!record)
      throw new StateError(
        `the ${type} CA is missing; is this an initialised state directory? (run \`broker init\`)`,
      );
    return record;
  }

  /** PEM bundle of every active certificate of a CA. */
  async caBundle(type: CaType): Promise<string> {
    return this.bundleOf(await this.ca(type));
  }

  /** The certificate and signer of a CA's signing key. */
  async issuer(type: CaType): Promise<CaIssuer> {
    return this.issuerOf(await this.ca(type));
  }

  /**
   * The client CA of database service `service`, created (and audited) the first time it is needed: by the
   * first issuance for the service, or by `auth sign --format=db --service`. Only callers that decided the
   * service deserves a CA (an allowed issuance, an operator) may call this: it grows the state.
   */
  async serviceCa(service: string): Promise<CaRecord> {
    assertServiceName(service);
    const key = stateKeys.dbClientCa(service);
    let record = await this.read(key, `the client CA of database service "${service}"`);
    if (record) return record;
    let creating = this.creating.get(service);
    if (!creating) {
      creating = this.createServiceCa(service).finally(() => this.creating.delete(service));
      this.creating.set(service, creating);
    }
    await creating;
    record = await this.read(key, `the client CA of database service "${service}"`);
    if (!record)
      throw new StateError(`the client CA of database service "${service}" vanished after creation`);
    return record;
  }

  /** The client CA bundle of database service `service`; refuses (creating nothing) when it has none yet. */
  async existingServiceBundle(service: string): Promise<string> {
    assertServiceName(service);
    const record = await this.read(
      stateKeys.dbClientCa(service),
      `the client CA of database service "${service}"`,
    );
    if (!record)
      throw new NotFoundError(
        `database service "${service}" has no client CA yet; \`broker auth sign --format=db --service ${service} --host HOST --out PREFIX\` creates it and writes it as PREFIX.cas`,
      );
    return this.bundleOf(record);
  }

  /** PEM bundle of every active certificate of `service`'s client CA (created when missing). */
  async serviceBundle(service: string): Promise<string> {
    return this.bundleOf(await this.serviceCa(service));
  }

  /** The signing certificate and signer of `service`'s client CA (created when missing). */
  async serviceIssuer(service: string): Promise<CaIssuer> {
    return this.issuerOf(await this.serviceCa(service));
  }

  private async createServiceCa(service: string): Promise<void> {
    const { state } = this.ctx;
    const clusterName = (await state.get(stateKeys.cluster))?.value.name ?? 'broker';
    const key = await this.ctx.serviceCaFactory(service, clusterName);
    try {
      await state.put(stateKeys.dbClientCa(service), { type: 'db-client', service, keys: [key] }, 'absent');
    } catch (err) {
      // Another authority process created it first: use theirs.
      if (err instanceof ConflictError) return;
      throw err;
    }
    await this.ctx.record({
      event: 'ca.create',
      outcome: 'success',
      kind: 'ca',
      name: `db-client/${service}`,
    });
  }

  /** A CA record as stored, or undefined when missing (or holding no key); refuses an expired one. */
  private async read(key: StateKey<CaRecord>, what: string): Promise<CaRecord | undefined> {
    const item = await this.ctx.state.get(key);
    if (!item || item.value.keys.length === 0) return undefined;
    // An automatic rotation moves on at the first read after its phase is due: no timer needed.
    const record =
      item.value.rotation?.mode === 'auto' ? await advanceDueRotation(this.ctx, key, item) : item.value;
    const notAfter = this.expiry(signingKey(record).certificatePem);
    if (notAfter < this.ctx.clock.now())
      throw new StateError(`${what} expired at ${notAfter.toISOString()}; rotate it before issuing anything`);
    return record;
  }

  private bundleOf(ca: CaRecord): string {
    const certs = ca.keys.map((k) => k.certificatePem);
    const id = certs.join('');
    let bundle = this.bundles.get(id);
    if (bundle === undefined) {
      bundle = joinPemBundle(certs);
      remember(this.bundles, id, bundle);
    }
    return bundle;
  }

  private issuerOf(ca: CaRecord): CaIssuer {
    const key = signingKey(ca);
    const id = `${key.certificatePem}\0${key.kmsKeyId ?? ''}`;
    let signer = this.signers.get(id);
    if (!signer) {
      signer = this.ctx.signerFactory(key);
      remember(this.signers, id, signer);
    }
    return { certificatePem: key.certificatePem, signer };
  }

  private expiry(certificatePem: string): Date {
    let notAfter = this.expiries.get(certificatePem);
    if (!notAfter) {
      notAfter = parseCertificate(certificatePem).notAfter;
      remember(this.expiries, certificatePem, notAfter);
    }
    return notAfter;
  }
}

/** The key that signs: the first; the others stay trusted so a rotation breaks nobody. */
export function signingKey(ca: CaRecord): CaKey {
  return ca.keys[0] as CaKey;
}

/** A database service name is a resource name: anything else is neither a service nor a state key. */
function assertServiceName(service: string): void {
  if (!resourceName.safeParse(service).success)
    throw new ConfigError(
      `database service ${JSON.stringify(service)} is not a resource name (1-63 letters, digits, ".", "_", "@" or "-")`,
    );
}

function remember<V>(cache: Map<string, V>, id: string, value: V): void {
  if (cache.size > CACHE_LIMIT) cache.clear();
  cache.set(id, value);
}
