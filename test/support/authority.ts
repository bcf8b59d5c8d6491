/**
 * Authorities for tests. `initialize` makes three RSA CA keys, which is slow, so it runs once per cluster
 * name, start time and instance in a process; each test then gets a fresh authority on its own memory store
 * (its own audit log and manual clock) holding a copy of that state, with the resources it names created.
 */
import { CreateKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import type { AuthorityOptions } from '../../src/authority/context.js';
import { parseResources, type Resource } from '../../src/authority/resources.js';
import { stateKeys } from '../../src/authority/state-keys.js';
import { ManualClock } from '../../src/clock.js';
import { CA_TYPES, type CaKey, type CaType, createLocalCa, type ServiceCaFactory } from '../../src/pki/ca.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
import { createKmsCa, kmsSignerFactory } from '../../src/pki/kms-signer.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { EXAMPLE, nowSeconds, testKeyPair } from './fixtures.js';

/** The state `initialize` writes: the cluster record and the three CAs. */
const INITIAL_KEYS: string[] = [stateKeys.cluster, ...CA_TYPES.map((t) => stateKeys.ca(t))];

const initialized = new Map<string, Promise<Map<string, unknown>>>();

export interface InitializedStateOptions {
  /** The start time of the initialising authority's clock (its CAs are valid from then). */
  start: Date | string;
  /** Default `unit`. */
  clusterName?: string;
  /** Distinct initialisations of one cluster name and start (another authority's CAs); default 0. */
  instance?: number;
}

/** What one real `initialize` wrote (cluster record and CA keys), cached per cluster name, start and instance. */
export function initializedState(options: InitializedStateOptions): Promise<Map<string, unknown>> {
  const clusterName = options.clusterName ?? 'unit';
  const start = new Date(options.start);
  const id = `${clusterName}@${start.toISOString()}#${options.instance ?? 0}`;
  let state = initialized.get(id);
  if (!state) {
    state = (async () => {
      const store = new MemoryStateStore();
      const authority = new Authority({ store, audit: new MemoryAuditLog(), clock: new ManualClock(start) });
      await authority.initialize(clusterName);
      const values = new Map<string, unknown>();
      for (const key of INITIAL_KEYS) values.set(key, (await store.get(key))?.value);
      return values;
    })();
    initialized.set(id, state);
  }
  return state;
}

const serviceCas = new Map<string, Promise<CaKey>>();

/**
 * Each database service's client CA, made once per cluster name, start, instance and service in a process
 * (an RSA key costs more than the test using it), as `initializedState` does for the shared CAs.
 */
function cachedServiceCa(options: InitializedStateOptions): ServiceCaFactory {
  const start = new Date(options.start);
  return (service, clusterName) => {
    const id = `${clusterName}@${start.toISOString()}#${options.instance ?? 0}/${service}`;
    let key = serviceCas.get(id);
    if (!key) {
      key = createLocalCa('db-client', clusterName, new ManualClock(start), service);
      serviceCas.set(id, key);
    }
    return key;
  };
}

export interface TestAuthority {
  authority: Authority;
  store: MemoryStateStore;
  audit: MemoryAuditLog;
  clock: ManualClock;
}

export interface TestAuthorityOptions extends InitializedStateOptions {
  /** Resources to create: YAML text (several documents) or parsed resources. */
  resources?: string | Resource[];
  /** More authority options (iamVerifier, signerFactory). */
  with?: Omit<AuthorityOptions, 'store' | 'audit' | 'clock'>;
}

/**
 * A fresh authority holding a copy of an initialised authority's CAs, its clock at `start`, with
 * `resources` created and the audit log emptied.
 */
export async function testAuthority(options: TestAuthorityOptions): Promise<TestAuthority> {
  const store = new MemoryStateStore();
  for (const [key, value] of await initializedState(options)) await store.put(key, value, 'absent');
  const audit = new MemoryAuditLog();
  const clock = new ManualClock(new Date(options.start));
  const authority = new Authority({
    serviceCaFactory: cachedServiceCa(options),
    ...options.with,
    store,
    audit,
    clock,
  });
  if (options.resources !== undefined)
    await authority.createResources(
      typeof options.resources === 'string'
        ? parseResources(options.resources, 'resources.yaml')
        : options.resources,
    );
  audit.events.length = 0;
  return { authority, store, audit, clock };
}

export interface JoinedBot {
  /** The one-time join token that was spent. */
  token: string;
  keys: KeyPairPem;
  identityPem: string;
}

/**
 * Joins `bot` (default the example bot) with the key pair of `slot`: with `roles`, the bot is added with
 * them (and its first token); without, the resources define it and a join token is added.
 */
export async function joinBot(
  authority: Authority,
  options: { bot?: string; roles?: string[]; slot?: number } = {},
): Promise<JoinedBot> {
  const bot = options.bot ?? EXAMPLE.bot;
  const { token } = options.roles
    ? await authority.addBot(bot, options.roles)
    : await authority.addToken(bot);
  const keys = await testKeyPair(options.slot ?? 0);
  const identity = await authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem });
  return { token, keys, identityPem: identity.certificatePem };
}

/** A fresh RSA_2048 SIGN_VERIFY key, created through the real SDK (in the KMS double `client` reaches). */
export async function createKmsKey(client: KMSClient): Promise<string> {
  const out = await client.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }));
  return out.KeyMetadata?.KeyId as string;
}

/**
 * An authority whose three CAs are keys in the KMS double (seeded as `initialize` would store them), with
 * `resources` created; it signs through `signingClient` (default `client`). Its clock starts now.
 */
export async function kmsTestAuthority(options: {
  client: KMSClient;
  signingClient?: KMSClient;
  resources: string;
}): Promise<TestAuthority & { cas: Record<CaType, CaKey> }> {
  const clock = new ManualClock(nowSeconds());
  const store = new MemoryStateStore();
  const cas = {} as Record<CaType, CaKey>;
  for (const type of CA_TYPES) {
    cas[type] = await createKmsCa(type, {
      clusterName: 'kms-unit',
      kmsClient: options.client,
      keyId: await createKmsKey(options.client),
      clock,
    });
    await store.put(stateKeys.ca(type), { type, keys: [cas[type]] }, 'absent');
  }
  await store.put(stateKeys.cluster, { name: 'kms-unit', createdAt: clock.now().toISOString() }, 'absent');
  const audit = new MemoryAuditLog();
  const authority = new Authority({
    store,
    audit,
    clock,
    signerFactory: kmsSignerFactory(options.signingClient ?? options.client),
    // Each database service's client CA is a KMS key of its own, created in the double when first needed.
    serviceCaFactory: async (service, clusterName) =>
      createKmsCa('db-client', {
        clusterName,
        kmsClient: options.client,
        keyId: await createKmsKey(options.client),
        clock,
        service,
      }),
  });
  await authority.createResources(parseResources(options.resources, 'resources.yaml'));
  return { authority, store, audit, clock, cas };
}
