import { CA_TYPES, type CaType } from '../pki/ca.js';
import { caPin, parseCertificate } from '../pki/parse.js';
import { type CaRegistry, signingKey } from './ca-registry.js';
import type { AuthorityContext } from './context.js';
import { stateKeys } from './state-keys.js';

export interface AuthorityStatus {
  cluster: string;
  cas: { type: CaType; keys: number; pin: string; expires: string; fingerprint: string }[];
  /** Each database service's own client CA (created on first need), by service. */
  serviceCas: { service: string; keys: number; pin: string; expires: string; fingerprint: string }[];
  roles: number;
  dbs: number;
  bots: number;
  tokens: number;
  locks: number;
}

/** What `broker status` shows: the cluster, each CA's signing certificate, and how many of each thing exist. */
export async function authorityStatus(ctx: AuthorityContext, cas: CaRegistry): Promise<AuthorityStatus> {
  const { state } = ctx;
  const cluster = (await state.get(stateKeys.cluster))?.value;
  const out: AuthorityStatus['cas'] = [];
  for (const type of CA_TYPES) {
    const ca = await cas.ca(type);
    const { certificatePem } = signingKey(ca);
    const info = parseCertificate(certificatePem);
    out.push({
      type,
      keys: ca.keys.length,
      pin: caPin(certificatePem),
      expires: info.notAfter.toISOString(),
      fingerprint: info.fingerprint,
    });
  }
  const serviceCas: AuthorityStatus['serviceCas'] = [];
  for (const ca of await state.values(stateKeys.dbClientCas)) {
    const { certificatePem } = signingKey(ca);
    const info = parseCertificate(certificatePem);
    serviceCas.push({
      service: ca.service ?? '?',
      keys: ca.keys.length,
      pin: caPin(certificatePem),
      expires: info.notAfter.toISOString(),
      fingerprint: info.fingerprint,
    });
  }
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
