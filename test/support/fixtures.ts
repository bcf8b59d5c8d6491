/**
 * Test fixtures, defined once for every test tree.
 *
 * - The reference guide's example (role `example-role`, database service `example-server`, bot `example`,
 *   database `example`, user `alice`), read from the shipped `examples/role.yaml` and `examples/db.yaml`, so
 *   the example is itself a test input; helpers build the variants tests need (another uri, protocol or
 *   name, more bots).
 * - Test CA material and key pairs. Every key is a throwaway generated at test time and kept in memory;
 *   none is ever committed. RSA-2048 generation costs 100-200 ms here, so the first key slots and CA keys
 *   come from one pool made per run (./key-pool.ts), and key pairs and CAs are cached per process.
 * - Real credential bundles (DESIGN.md §4): a client certificate for a route signed by a test CA, its key,
 *   the CA bundle and the endpoint, or the bundle of a certificate an authority issued.
 */
import { sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import { parseDocument } from 'yaml';
import { parseResources, type Resource } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { type OutputFormat, renderDatabaseArtifacts } from '../../src/credentials/formats.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import type { DatabaseRoute, DbProtocol } from '../../src/credentials/route.js';
import { buildCertificate, type CertificateTemplate } from '../../src/pki/certificate.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { KEY_POOL_SLOTS, keyPool } from './key-pool.js';

/** Absolute path of the repository root (for files of the repository and child processes using tsx). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const MINUTE = 60_000;
export const HOUR = 3_600_000;

/** The current time truncated to whole seconds, as X.509 validity times carry no milliseconds. */
export function nowSeconds(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

// ---------------------------------------------------------------------------------------------------------
// The reference guide's example

/** The names of the reference guide's example (examples/role.yaml, examples/db.yaml, examples/bot.yaml). */
export const EXAMPLE = {
  role: 'example-role',
  service: 'example-server',
  bot: 'example',
  database: 'example',
  username: 'alice',
} as const;

/** The example bot's route: user alice on database example of service example-server. */
export const EXAMPLE_ROUTE: DatabaseRoute = {
  service: EXAMPLE.service,
  database: EXAMPLE.database,
  username: EXAMPLE.username,
};

/** The shipped example files, as text. */
export const EXAMPLE_ROLE_FILE = 'examples/role.yaml';
export const EXAMPLE_DB_FILE = 'examples/db.yaml';
const exampleRoleText = readFileSync(path.join(REPO_ROOT, EXAMPLE_ROLE_FILE), 'utf8');
const exampleDbText = readFileSync(path.join(REPO_ROOT, EXAMPLE_DB_FILE), 'utf8');

/** A uri no test connects to: unit tests issue for it, and assertions name it. */
export const INTERNAL_DB_URI = 'db.internal:5432';

/** A variant of the example database service; without options, examples/db.yaml as shipped. */
export interface ExampleDbOptions {
  /** metadata.name (default example-server). */
  name?: string;
  /** spec.protocol (default postgres). */
  protocol?: DbProtocol;
  /**
   * spec.uri. When it is given without `serverName`, the tls block goes, so the server name is the uri's
   * host (the broker's default) rather than the shipped `localhost`.
   */
  uri?: string;
  /** spec.tls.server_name. */
  serverName?: string;
  /** spec.tls.ca_cert (a CA bundle that verifies the database's own server certificate). */
  caCert?: string;
}

/** The example `db` resource (examples/db.yaml) as YAML, with the changes `options` asks for. */
export function exampleDbYaml(options: ExampleDbOptions = {}): string {
  if (Object.keys(options).length === 0) return exampleDbText;
  const doc = parseDocument(exampleDbText);
  if (options.name !== undefined) doc.setIn(['metadata', 'name'], options.name);
  if (options.protocol !== undefined) doc.setIn(['spec', 'protocol'], options.protocol);
  if (options.uri !== undefined) {
    doc.setIn(['spec', 'uri'], options.uri);
    if (options.serverName === undefined) doc.deleteIn(['spec', 'tls']);
  }
  if (options.serverName !== undefined) doc.setIn(['spec', 'tls', 'server_name'], options.serverName);
  if (options.caCert !== undefined) doc.setIn(['spec', 'tls', 'ca_cert'], options.caCert);
  return doc.toString();
}

/** A variant of the example role; without options, examples/role.yaml as shipped. */
export interface ExampleRoleOptions {
  /** metadata.name (default example-role). */
  name?: string;
  /** spec.options.max_session_ttl (default the shipped 8h); null removes it (the authority's cap applies). */
  maxSessionTtl?: string | null;
  /** spec.allow.db_users (default the shipped [alice]). */
  users?: string[];
}

/** The example `role` resource (examples/role.yaml) as YAML, with the changes `options` asks for. */
export function exampleRoleYaml(options: ExampleRoleOptions = {}): string {
  if (Object.keys(options).length === 0) return exampleRoleText;
  const doc = parseDocument(exampleRoleText);
  if (options.name !== undefined) doc.setIn(['metadata', 'name'], options.name);
  if (options.maxSessionTtl === null) doc.deleteIn(['spec', 'options']);
  else if (options.maxSessionTtl !== undefined)
    doc.setIn(['spec', 'options', 'max_session_ttl'], options.maxSessionTtl);
  if (options.users !== undefined) doc.setIn(['spec', 'allow', 'db_users'], options.users);
  return doc.toString();
}

/** A `bot` resource holding `roles` (default the example role). */
export function botYaml(name: string = EXAMPLE.bot, roles: readonly string[] = [EXAMPLE.role]): string {
  return `kind: bot\nversion: v1\nmetadata: { name: ${name} }\nspec: { roles: [${roles.join(', ')}] }\n`;
}

export interface ExampleResourcesOptions {
  role?: ExampleRoleOptions;
  /** The database service; null leaves it out. */
  db?: ExampleDbOptions | null;
  /** Bots holding the example role (default: the example bot); [] for none. */
  bots?: readonly string[];
  /** More YAML documents appended after the example's. */
  extra?: string;
}

/** The example resources (role, database service, bots) as one multi-document YAML text. */
export function exampleResourcesYaml(options: ExampleResourcesOptions = {}): string {
  const docs = [
    exampleRoleYaml(options.role),
    ...(options.db === null ? [] : [exampleDbYaml(options.db)]),
    ...(options.bots ?? [EXAMPLE.bot]).map((name) => botYaml(name)),
    ...(options.extra ? [options.extra] : []),
  ];
  return docs.map((d) => (d.endsWith('\n') ? d : `${d}\n`)).join('---\n');
}

/** The example resources, parsed as the authority's `create -f` would. */
export function exampleResources(options: ExampleResourcesOptions = {}): Resource[] {
  return parseResources(exampleResourcesYaml(options), 'example resources');
}

// ---------------------------------------------------------------------------------------------------------
// Key pairs and CAs

const pool = keyPool();
const keyCache = new Map<number, Promise<KeyPairPem>>();

/**
 * A test key pair; the same `slot` returns the same key within one process. The first slots come from the
 * run's key pool (./key-pool.ts), the others are generated (RSA-2048) and cached.
 */
export function testKeyPair(slot = 0): Promise<KeyPairPem> {
  let keys = keyCache.get(slot);
  if (!keys) {
    const pooled = slot < KEY_POOL_SLOTS ? pool[slot] : undefined;
    keys = pooled ? Promise.resolve(pooled) : generateRsaKeyPair();
    keyCache.set(slot, keys);
  }
  return keys;
}

export interface TestCa {
  certificatePem: string;
  keys: KeyPairPem;
  issuer: { certificatePem: string; signer: LocalSigner };
}

const caCache = new Map<string, Promise<TestCa>>();

/** A cached self-signed test CA named `name`, valid from a minute ago for 30 days. */
export function testCa(name = 'unit test CA'): Promise<TestCa> {
  let ca = caCache.get(name);
  if (!ca) {
    // Each CA of a process gets its own key: the pool's CA keys first.
    const pooled = pool[KEY_POOL_SLOTS + caCache.size];
    ca = (async () => {
      const keys = pooled ?? (await generateRsaKeyPair());
      const signer = new LocalSigner(keys.privateKeyPem);
      const issuedAt = nowSeconds();
      const { certificatePem } = await buildCertificate(
        {
          subject: { commonName: name, organization: 'unit tests' },
          publicKeyPem: keys.publicKeyPem,
          issuedAt,
          notAfter: new Date(issuedAt.getTime() + 30 * 24 * HOUR),
          profile: 'ca',
        },
        { signer },
      );
      return { certificatePem, keys, issuer: { certificatePem, signer } };
    })();
    caCache.set(name, ca);
  }
  return ca;
}

/**
 * A leaf certificate signed by `ca` (default testCa()): alice's one-hour client certificate for key slot 1,
 * unless `overrides` say otherwise. Returns the template with the certificate and its serial.
 */
export async function testLeafCertificate(
  overrides: Partial<CertificateTemplate> = {},
  ca?: TestCa,
): Promise<{ template: CertificateTemplate; certificatePem: string; serial: string }> {
  const issuer = ca ?? (await testCa());
  const issuedAt = overrides.issuedAt ?? nowSeconds();
  const template: CertificateTemplate = {
    subject: { commonName: EXAMPLE.username, organization: 'example-bot' },
    publicKeyPem: overrides.publicKeyPem ?? (await testKeyPair(1)).publicKeyPem,
    issuedAt,
    notAfter: new Date(issuedAt.getTime() + HOUR),
    profile: 'client',
    ...overrides,
  };
  return { template, ...(await buildCertificate(template, issuer.issuer)) };
}

/**
 * The same certificate with serial `serialHex`, signed again by `ca`: for tests that name issuances by
 * their serial. Every other field and extension stays as the CA issued it.
 */
function withSerial(certificatePem: string, serialHex: string, ca: TestCa): string {
  if (!/^[0-7][0-9a-f]{1,39}$/i.test(serialHex))
    throw new Error(`serial ${serialHex} must be positive hex (2-40 digits, first digit 0-7)`);
  const cert = forge.pki.certificateFromPem(certificatePem);
  cert.serialNumber = serialHex.toLowerCase();
  // forge builds the to-be-signed bytes; Node signs them (forge's own RSA is far slower).
  const tbs = (
    forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert);
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, ca.keys.privateKeyPem);
  Object.assign(cert, { tbsCertificate: tbs, signature: signature.toString('binary') });
  return forge.pki.certificateToPem(cert);
}

// ---------------------------------------------------------------------------------------------------------
// Credential bundles

export interface TestBundleOptions {
  /** The route the certificate is for (default the example's: alice@example-server/example). */
  route?: Partial<DatabaseRoute>;
  protocol?: DbProtocol;
  /** host:port of the database (default db.internal:5432). */
  endpoint?: string;
  /** The name the database's certificate carries (default the endpoint's host). */
  serverName?: string;
  format?: OutputFormat;
  /** The certificate's serial, hex (default a random one, as the authority picks). */
  serial?: string;
  /** The key pair slot of testKeyPair (default 0). */
  slot?: number;
  /** Issue time (default now, whole seconds). */
  issuedAt?: Date;
  /** Lifetime (default one hour). */
  ttlMs?: number;
  /** The name of the test CA that signs (default testCa()'s); its certificate is the bundle's CA bundle. */
  ca?: string;
  /** More artifact files, merged over the rendered ones. */
  files?: Record<string, string>;
}

/**
 * A credential bundle with a real client certificate for the route, signed by a test CA, the matching key
 * and the CA bundle, as the bot would write it: parseBundle accepts it.
 */
export async function testBundle(options: TestBundleOptions = {}): Promise<CredentialBundle> {
  const route = { ...EXAMPLE_ROUTE, ...options.route };
  const ca = await testCa(options.ca);
  const keys = await testKeyPair(options.slot ?? 0);
  const issuedAt = options.issuedAt ?? nowSeconds();
  const expiresAt = new Date(issuedAt.getTime() + (options.ttlMs ?? HOUR));
  const issued = await testLeafCertificate(
    {
      subject: { commonName: route.username },
      publicKeyPem: keys.publicKeyPem,
      issuedAt,
      notAfter: expiresAt,
    },
    ca,
  );
  const certificatePem =
    options.serial === undefined
      ? issued.certificatePem
      : withSerial(issued.certificatePem, options.serial, ca);
  const endpoint = options.endpoint ?? INTERNAL_DB_URI;
  const format = options.format ?? '';
  return {
    kind: 'database-credentials',
    version: 1,
    service: route.service,
    protocol: options.protocol ?? 'postgres',
    endpoint,
    serverName:
      options.serverName ?? endpoint.slice(0, endpoint.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1'),
    database: route.database,
    username: route.username,
    format,
    serial: options.serial?.toLowerCase() ?? issued.serial,
    issuedAt: issuedAt.toISOString(),
    expiresAt: expiresAt.toISOString(),
    files: {
      ...renderDatabaseArtifacts(format, {
        certificatePem,
        privateKeyPem: keys.privateKeyPem,
        serverCaPem: ca.certificatePem,
      }),
      ...options.files,
    },
  };
}

/** What an authority answers for a database certificate (the part a bundle needs). */
export interface IssuedDatabaseCertificate {
  certificatePem: string;
  serial: string;
  issuedAt: string;
  expires: string;
  serverCaPem: string;
  db: { service: string; protocol: DbProtocol; uri: string; serverName: string };
}

/** The bundle of a certificate an authority issued for `route` and the key pair `keys`, as the bot lays it out. */
export function bundleOf(
  issued: IssuedDatabaseCertificate,
  keys: Pick<KeyPairPem, 'privateKeyPem'>,
  route: Pick<DatabaseRoute, 'database' | 'username'>,
  format: OutputFormat = '',
): CredentialBundle {
  return {
    kind: 'database-credentials',
    version: 1,
    service: issued.db.service,
    protocol: issued.db.protocol,
    endpoint: issued.db.uri,
    serverName: issued.db.serverName,
    database: route.database,
    username: route.username,
    format,
    serial: issued.serial,
    issuedAt: issued.issuedAt,
    expiresAt: issued.expires,
    files: renderDatabaseArtifacts(format, {
      certificatePem: issued.certificatePem,
      privateKeyPem: keys.privateKeyPem,
      serverCaPem: issued.serverCaPem,
    }),
  };
}

/** Anything that issues database certificates to a bot the way the authority does. */
export interface DatabaseCertificateIssuer {
  issueDatabaseCertificate(
    bot: string,
    route: DatabaseRoute,
    publicKeyPem: string,
    ttlMs?: number,
  ): Promise<IssuedDatabaseCertificate>;
}

export interface IssuedBundleOptions {
  /** The bot the certificate is issued to (default the example bot). */
  bot?: string;
  route?: Partial<DatabaseRoute>;
  format?: OutputFormat;
  /** The key pair (default testKeyPair(slot)). */
  keys?: KeyPairPem;
  slot?: number;
  ttlMs?: number;
}

/** Has `authority` issue a certificate for the route (default the example's) and returns its bundle. */
export async function issueBundle(
  authority: DatabaseCertificateIssuer,
  options: IssuedBundleOptions = {},
): Promise<CredentialBundle> {
  const route = { ...EXAMPLE_ROUTE, ...options.route };
  const keys = options.keys ?? (await testKeyPair(options.slot ?? 0));
  const issued = await authority.issueDatabaseCertificate(
    options.bot ?? EXAMPLE.bot,
    route,
    keys.publicKeyPem,
    options.ttlMs,
  );
  return bundleOf(issued, keys, route, options.format);
}

/**
 * A bot identity holding a real certificate for the key of `slot` (signed by a test CA, which stands in for
 * the bot CA), as an identity store keeps it.
 */
export async function testIdentity(generation = 1, slot = 0): Promise<BotIdentity> {
  const b = await testBundle({ slot });
  return {
    certificatePem: b.files.tlscert as string,
    privateKeyPem: b.files.key as string,
    generation,
    expires: b.expiresAt,
    botCaPem: b.files['teleport-host-ca.crt'] as string,
  };
}
