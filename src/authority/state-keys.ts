/**
 * Every key the authority (and its API) keeps in the state store, spelled once, each carrying the type of
 * the value stored under it, and the typed access through them. Nothing else spells a key: a renamed or
 * retyped key is one edit here, and a value written under the wrong key does not compile.
 */
import type { CaRecord, CaType } from '../pki/ca.js';
import type { Expect, StateStore, Versioned } from '../state/store.js';
import type { Bot, Db, Resource, Role } from './resources.js';

declare const storedValue: unique symbol;
declare const listedValue: unique symbol;

/** A state key; `T` is the type of the value stored under it. Made only by `stateKeys`. */
export type StateKey<T> = string & { readonly [storedValue]: T };
/** A key prefix whose every item holds a `T`. */
export type StatePrefix<T> = string & { readonly [listedValue]: T };

/** Stored form of a join token: only a hash of the secret is kept. */
export interface StoredToken {
  id: string;
  joinMethod: 'token' | 'iam';
  botName: string;
  expires?: string;
  createdAt: string;
  /** iam tokens only: their name (not a secret) and allow rules. */
  name?: string;
  allow?: { aws_account: string; aws_arn?: string | undefined }[];
}

export interface Lock {
  bot: string;
  reason: string;
  createdAt: string;
}

/**
 * Per-bot renewal state: the lineage and generation of the only identity allowed to renew or be used, and
 * what a retry of the last renewal must be answered with. Written with one compare-and-swap per renewal.
 */
export interface BotState {
  generation: number;
  serial: string;
  expires: string;
  /** The lineage (random 128 bits, hex) a join started; absent only in states written before lineages. */
  lineage?: string;
  /** The last renewal and its answer, committed with the generation it moved to. */
  lastRenewal?: RenewalAnswer;
  /** Nonces of renewals accepted while their proofs are still fresh: none is accepted twice. */
  renewalNonces?: SeenNonce[];
}

/** A renewal remembered with its answer: the request id, who asked (serial) and for what (digest). */
export interface RenewalAnswer {
  requestId: string;
  fromSerial: string;
  paramsDigest: string;
  answer: { certificatePem: string; serial: string; generation: number; expires: string; botCaPem: string };
}

/** A proof's nonce, kept until the proof is too old to be accepted anyway. */
export interface SeenNonce {
  nonce: string;
  expires: string;
}

/** A used iam join challenge, kept until it expires so it is used once; the challenge itself is not stored. */
export interface UsedChallenge {
  expires: string;
}

/** The authority's key for iam join challenges (HMAC-SHA256), base64. */
export interface ChallengeKey {
  secret: string;
  createdAt: string;
}

export interface ClusterInfo {
  name: string;
  createdAt: string;
}

/** The resource file a deployed authority last applied, by content hash. */
export interface AppliedResources {
  hash: string;
  appliedAt: string;
}

/** Resource kinds stored under their own name (tokens are stored by the hash of theirs). */
export type NamedKind = Exclude<Resource['kind'], 'token'>;
export type NamedResource<K extends NamedKind> = Extract<Resource, { kind: K }>;

const key = <T>(spelling: string) => spelling as StateKey<T>;
const prefix = <T>(spelling: string) => spelling as StatePrefix<T>;

const RESOURCE_PREFIX: { [K in NamedKind]: StatePrefix<NamedResource<K>> } = {
  role: prefix<Role>('roles'),
  db: prefix<Db>('dbs'),
  bot: prefix<Bot>('bots'),
};

/** The state keys and prefixes, by what they hold. */
export const stateKeys = {
  ca: (type: CaType) => key<CaRecord>(`cas/${type}`),
  /** The client CA of one database service: the only CA that database trusts. */
  dbClientCa: (service: string) => key<CaRecord>(`servicecas/${service}`),
  dbClientCas: prefix<CaRecord>('servicecas'),
  cluster: key<ClusterInfo>('config/cluster'),
  appliedResources: key<AppliedResources>('config/resources'),
  resource: <K extends NamedKind>(kind: K, name: string) =>
    key<NamedResource<K>>(`${RESOURCE_PREFIX[kind]}/${name}`),
  resources: <K extends NamedKind>(kind: K): StatePrefix<NamedResource<K>> => RESOURCE_PREFIX[kind],
  bot: (name: string) => key<Bot>(`${RESOURCE_PREFIX.bot}/${name}`),
  bots: RESOURCE_PREFIX.bot,
  role: (name: string) => key<Role>(`${RESOURCE_PREFIX.role}/${name}`),
  roles: RESOURCE_PREFIX.role,
  db: (name: string) => key<Db>(`${RESOURCE_PREFIX.db}/${name}`),
  dbs: RESOURCE_PREFIX.db,
  botState: (bot: string) => key<BotState>(`botstate/${bot}`),
  /** A join token by its id (the SHA-256 of its secret). */
  token: (id: string) => key<StoredToken>(`tokens/${id}`),
  tokens: prefix<StoredToken>('tokens'),
  lock: (bot: string) => key<Lock>(`locks/${bot}`),
  locks: prefix<Lock>('locks'),
  /** A used iam join challenge, by its nonce. */
  challenge: (nonce: string) => key<UsedChallenge>(`challenges/${nonce}`),
  challenges: prefix<UsedChallenge>('challenges'),
  challengeKey: key<ChallengeKey>('config/challenge-key'),
  /** A proof nonce an issuance used, by the nonce. */
  nonce: (nonce: string) => key<SeenNonce>(`nonces/${nonce}`),
  nonces: prefix<SeenNonce>('nonces'),
  /** An API request remembered for deduplication; its shape belongs to the API. */
  request: <T>(requestId: string) => key<T>(`requests/${requestId}`),
  requests: <T>() => prefix<T>('requests'),
} as const;

/**
 * The prefixes whose items are short-lived: each value has an ISO `expires`, after which it means nothing.
 * The authority prunes them (`pruneExpired`); the DynamoDB store is given them as its TTL partitions.
 */
export const shortLivedPrefixes: readonly StatePrefix<{ expires: string }>[] = [
  stateKeys.challenges,
  stateKeys.requests<{ expires: string }>(),
  stateKeys.nonces,
];

/** The state store seen through typed keys: reads return, and writes accept, the key's value type. */
export class TypedState {
  constructor(readonly store: StateStore) {}

  get<T>(key: StateKey<T>): Promise<Versioned<T> | undefined> {
    return this.store.get<T>(key);
  }

  /** Whether anything is stored under `key`, whatever its type. */
  async has(key: StateKey<unknown>): Promise<boolean> {
    return (await this.store.get(key)) !== undefined;
  }

  put<T>(key: StateKey<T>, value: T, expect?: Expect): Promise<number> {
    return this.store.put(key, value, expect);
  }

  delete(key: StateKey<unknown>, expect?: Expect): Promise<boolean> {
    return this.store.delete(key, expect);
  }

  list<T>(prefix: StatePrefix<T>): Promise<Versioned<T>[]> {
    return this.store.list<T>(prefix);
  }

  /** The values under `prefix`, sorted by key. */
  async values<T>(prefix: StatePrefix<T>): Promise<T[]> {
    return (await this.store.list<T>(prefix)).map((item) => item.value);
  }
}
