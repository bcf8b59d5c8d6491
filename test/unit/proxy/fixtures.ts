/**
 * Real credential bundles for the proxy tests: an in-memory authority issues database client certificates
 * and the bot's renderer lays them out, exactly as a directory output would hold them. Keys are throwaway
 * test keys generated at test time (see ../helpers.ts).
 */
import pino, { type Logger } from 'pino';
import { MemoryAuditLog } from '../../../src/authority/audit.js';
import { Authority } from '../../../src/authority/authority.js';
import { parseResources } from '../../../src/authority/resources.js';
import { ManualClock } from '../../../src/clock.js';
import type { CredentialBundle } from '../../../src/credentials/bundle.js';
import { renderDatabaseArtifacts } from '../../../src/credentials/formats.js';
import type { BundleSource } from '../../../src/proxy/credentials.js';
import { MemoryStateStore } from '../../../src/state/memory-store.js';
import { nowSeconds, testKeyPair } from '../helpers.js';

export const MIN = 60_000;
export const H = 3_600_000;

const SEED = `kind: role
version: v6
metadata: { name: db-role }
spec:
  allow:
    db_labels: { '*': '*' }
    db_names: [example]
    db_users: [alice]
    rules: [{ resources: [db_server, db], verbs: [read, list] }]
  deny: {}
  options: { max_session_ttl: 8h }
---
kind: db
version: v3
metadata: { name: example-server, labels: { env: dev } }
spec:
  protocol: postgres
  uri: db.internal:5432
  tls: { server_name: db.internal }
`;

export interface BundleFactory {
  /** The authority's clock; certificates are issued at its time. */
  clock: ManualClock;
  /** A bundle with a certificate valid for `ttlMs` from the clock's time, for key slot `slot`. */
  issue(ttlMs?: number, slot?: number): Promise<CredentialBundle>;
}

/** An initialised in-memory authority with bot `proxy-bot` allowed alice@example-server/example. */
export async function bundleFactory(): Promise<BundleFactory> {
  const clock = new ManualClock(nowSeconds());
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog(), clock });
  await authority.initialize('proxy-unit');
  await authority.createResources(parseResources(SEED, 'seed.yaml'));
  await authority.addBot('proxy-bot', ['db-role']);
  return {
    clock,
    async issue(ttlMs = H, slot = 0) {
      const keys = await testKeyPair(slot);
      const route = { service: 'example-server', database: 'example', username: 'alice' };
      const issued = await authority.issueDatabaseCertificate('proxy-bot', route, keys.publicKeyPem, ttlMs);
      return {
        kind: 'database-credentials',
        version: 1,
        service: issued.db.service,
        protocol: issued.db.protocol,
        endpoint: issued.db.uri,
        serverName: issued.db.serverName,
        database: route.database,
        username: route.username,
        format: '',
        serial: issued.serial,
        issuedAt: issued.issuedAt,
        expiresAt: issued.expires,
        files: renderDatabaseArtifacts('', {
          certificatePem: issued.certificatePem,
          privateKeyPem: keys.privateKeyPem,
          serverCaPem: issued.serverCaPem,
        }),
      };
    },
  };
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
