import { CA_TYPES, type CaRecord, type CaType } from '../pki/ca.js';
import type { CaRotation, RotationPhase } from '../pki/ca-rotation.js';
import { caPin, parseCertificate } from '../pki/parse.js';
import { type CaRegistry, signingKey } from './ca-registry.js';
import type { AuthorityContext } from './context.js';
import { phaseOf } from './rotation.js';
import { stateKeys } from './state-keys.js';

/** One key of a CA as `broker status` shows it. */
export interface CaKeyStatus {
  /** `signing`; during a rotation the other key is `trusted (new)` or `trusted (old)`. */
  role: 'signing' | 'trusted (new)' | 'trusted (old)';
  pin: string;
  expires: string;
  fingerprint: string;
}

/** A CA as `broker status` shows it: the signing key's pin and expiry, its rotation phase and every active key. */
export interface CaStatus {
  keys: number;
  pin: string;
  expires: string;
  fingerprint: string;
  phase: RotationPhase;
  rotation?: CaRotation;
  activeKeys: CaKeyStatus[];
}

export interface AuthorityStatus {
  cluster: string;
  cas: ({ type: CaType } & CaStatus)[];
  /** Each database service's own client CA (created on first need), by service. */
  serviceCas: ({ service: string } & CaStatus)[];
  roles: number;
  dbs: number;
  bots: number;
  tokens: number;
  locks: number;
}

/** What `broker status` shows: the cluster, each CA's keys and rotation phase, and how many of each thing exist. */
export async function authorityStatus(ctx: AuthorityContext, cas: CaRegistry): Promise<AuthorityStatus> {
  const { state } = ctx;
  const cluster = (await state.get(stateKeys.cluster))?.value;
  const out: AuthorityStatus['cas'] = [];
  for (const type of CA_TYPES) out.push({ type, ...caStatus(await cas.ca(type)) });
  const serviceCas: AuthorityStatus['serviceCas'] = [];
  for (const ca of await state.values(stateKeys.dbClientCas))
    serviceCas.push({ service: ca.service ?? '?', ...caStatus(ca) });
  return {
    cluster: cluster?.name ?? 'broker',
    cas: out,
    serviceCas,
    roles: (await state.list(stateKeys.roles)).length,
    dbs: (await state.list(stateKeys.dbs)).length,
    bots: (await state.list(stateKeys.bots)).length,
    tokens: (await state.list(stateKeys.tokens)).length,
    locks: (await state.list(stateKeys.locks)).length,
  };
}

function caStatus(ca: CaRecord): CaStatus {
  const phase = phaseOf(ca);
  // The second key is the newcomer in init and rollback (the old key signs), the leaver otherwise.
  const other: CaKeyStatus['role'] =
    phase === 'init' || phase === 'rollback' ? 'trusted (new)' : 'trusted (old)';
  const activeKeys = ca.keys.map((key, i): CaKeyStatus => {
    const info = parseCertificate(key.certificatePem);
    return {
      role: i === 0 ? 'signing' : other,
      pin: caPin(key.certificatePem),
      expires: info.notAfter.toISOString(),
      fingerprint: info.fingerprint,
    };
  });
  const signing = activeKeys[0] ?? {
    pin: caPin(signingKey(ca).certificatePem),
    expires: '',
    fingerprint: '',
  };
  return {
    keys: ca.keys.length,
    pin: signing.pin,
    expires: signing.expires,
    fingerprint: signing.fingerprint,
    phase,
    ...(ca.rotation ? { rotation: ca.rotation } : {}),
    activeKeys,
  };
}
