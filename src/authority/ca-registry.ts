import { joinPemBundle } from '../credentials/pem.js';
import { CA_TYPES, type CaKey, type CaRecord, type CaType, createLocalCa } from '../pki/ca.js';
import { parseCertificate } from '../pki/parse.js';
import type { Signer } from '../pki/signer.js';
import { StateError } from '../state/errors.js';
import type { AuthorityContext } from './context.js';
import { AlreadyExistsError } from './errors.js';
import { stateKeys } from './state-keys.js';

/** How many parsed certificates, signers and bundles each cache holds before it starts over. */
const CACHE_LIMIT = 32;

/** The authority's three CAs: creating them, reading them on every request, and signing with them. */
export class CaRegistry {
  // The CA record is read on every request (so a rotation takes effect at once), but parsing its
  // certificate and its private key costs more than signing: both are kept per certificate.
  private readonly expiries = new Map<string, Date>();
  private readonly signers = new Map<string, Signer>();
  private readonly bundles = new Map<string, string>();

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
      const key = await createLocalCa(type, clusterName, clock);
      await state.put(stateKeys.ca(type), { type, keys: [key] }, 'absent');
      await this.ctx.record({ event: 'ca.create', outcome: 'success', kind: 'ca', name: type });
    }
  }

  /** A CA as stored; refuses a missing or expired one, with what to do about it. */
  async ca(type: CaType): Promise<CaRecord> {
    const item = await this.ctx.state.get(stateKeys.ca(type));
    if (!item || item.value.keys.length === 0)
      throw new StateError(
        `the ${type} CA is missing; is this an initialised state directory? (run \`broker init\`)`,
      );
    const notAfter = this.expiry(signingKey(item.value).certificatePem);
    if (notAfter < this.ctx.clock.now())
      throw new StateError(
        `the ${type} CA expired at ${notAfter.toISOString()}; rotate it before issuing anything`,
      );
    return item.value;
  }

  /** PEM bundle of every active certificate of a CA. */
  async caBundle(type: CaType): Promise<string> {
    const certs = (await this.ca(type)).keys.map((k) => k.certificatePem);
    const id = certs.join('');
    let bundle = this.bundles.get(id);
    if (bundle === undefined) {
      bundle = joinPemBundle(certs);
      remember(this.bundles, id, bundle);
    }
    return bundle;
  }

  /** The certificate and signer of a CA's signing key, for `buildCertificate`. */
  async issuer(type: CaType): Promise<{ certificatePem: string; signer: Signer }> {
    const key = signingKey(await this.ca(type));
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

function remember<V>(cache: Map<string, V>, id: string, value: V): void {
  if (cache.size > CACHE_LIMIT) cache.clear();
  cache.set(id, value);
}
