/**
 * Shared pieces for the proxy tests: an authority with the example resources, a bundle written the way the
 * bot writes it, a tunnel-mode proxy reading it, a bundle source the test controls and a logger it can read.
 */
import pino from 'pino';
import { beforeAll, beforeEach } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import type { OutputFormat } from '../../src/credentials/formats.js';
import type { DbProtocol } from '../../src/credentials/route.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import type { Logger } from '../../src/log.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { CredentialCache } from '../../src/proxy/credential-cache.js';
import { DatabaseProxy } from '../../src/proxy/proxy.js';
import type { BundleSource } from '../../src/proxy/sources/bundle-source.js';
import { DirectoryBundleSource } from '../../src/proxy/sources/directory.js';
import { mysqlTunnel } from '../../src/proxy/tunnels/mysql.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { botYaml, exampleDbYaml, exampleRoleYaml, issueBundle } from './fixtures.js';

/** Silent unless BROKER_TEST_LOG names a level (e.g. debug), then JSON on stderr. */
export function testLogger(): Logger {
  return pino({ level: process.env.BROKER_TEST_LOG ?? 'silent' }, pino.destination(2));
}

/** An initialized in-memory authority with the example role (alice on database example) and the example bot. */
export async function newAuthority(): Promise<Authority> {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  await authority.initialize();
  await authority.createResources(parseResources(`${exampleRoleYaml()}---\n${botYaml()}`, 'roles.yaml'));
  return authority;
}

/** Registers a `db` resource (server name localhost, as the server certificate says). */
export async function addDatabase(
  authority: Authority,
  name: string,
  protocol: DbProtocol,
  uri: string,
): Promise<void> {
  await authority.createResources(
    parseResources(exampleDbYaml({ name, protocol, uri, serverName: 'localhost' }), `${name}.yaml`),
  );
}

export interface WrittenBundle {
  bundle: CredentialBundle;
  keys: KeyPairPem;
}

/** Issues alice's certificate (with a fresh key) for `service` and writes the output to `dir`, as the bot does. */
export async function writeBundle(
  authority: Authority,
  dir: string,
  route: { service: string; database: string; username?: string },
  format: OutputFormat = '',
): Promise<WrittenBundle> {
  const keys = await generateRsaKeyPair();
  const bundle = await issueBundle(authority, { route, format, keys });
  await new DirectoryDestination(dir).write(bundle);
  return { bundle, keys };
}

export interface RunningProxy {
  port: number;
  proxy: DatabaseProxy;
  stop(): Promise<void>;
}

/** `broker proxy db --tunnel` on 127.0.0.1 (a free port) reading the directory output `dir`. */
export async function startTunnelProxy(dir: string): Promise<RunningProxy> {
  const log = testLogger();
  const creds = new CredentialCache(new DirectoryBundleSource(dir), { log });
  await creds.start();
  if (!creds.ready) {
    creds.stop();
    throw new Error(`the proxy found no valid bundle in ${dir}`);
  }
  const proxy = new DatabaseProxy({
    creds,
    log,
    tunnel: true,
    listen: { address: '127.0.0.1', port: 0 },
    handlers: { mysql: mysqlTunnel },
    startupTimeoutMs: 5_000,
    dialTimeoutMs: 5_000,
  });
  const address = await proxy.start();
  return {
    port: Number(address.slice(address.lastIndexOf(':') + 1)),
    proxy,
    stop: async () => {
      await proxy.stop(2_000);
      creds.stop();
    },
  };
}

/** Rejects when `p` takes longer than `ms`: a hang becomes a failure that says what hung. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `setup` once before the tests of the enclosing describe. When it fails (e.g. a database server is
 * not installed) every test fails with its error: vitest reports the tests of a failed beforeAll as
 * skipped, and a missing server must be a failure, never a skip.
 */
export function setupOnce(setup: () => Promise<void>): void {
  let failure: unknown;
  beforeAll(async () => {
    try {
      await setup();
    } catch (err) {
      failure = err;
    }
  });
  beforeEach(() => {
    if (failure) throw failure;
  });
}

/** Milliseconds `promise` took to settle, with its outcome. */
export async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number } & ({ ok: true; value: T } | { ok: false; error: Error })> {
  const start = Date.now();
  try {
    const value = await promise;
    return { ms: Date.now() - start, ok: true, value };
  } catch (error) {
    return { ms: Date.now() - start, ok: false, error: error as Error };
  }
}

/** A BundleSource the test controls: each load() returns (or throws) what `next` holds then. */
export class FakeSource implements BundleSource {
  readonly description = 'fake source test-bundles';
  next: CredentialBundle | Error | undefined;
  loads = 0;
  load(): Promise<CredentialBundle | undefined> {
    this.loads++;
    const next = this.next;
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }
}

/** A pino logger that keeps its JSON lines in memory, for assertions on what was logged. */
export function memoryLogger(): { log: Logger; lines: Record<string, unknown>[]; text(): string } {
  const raw: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void raw.push(line) });
  return {
    log,
    get lines() {
      return raw
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}
