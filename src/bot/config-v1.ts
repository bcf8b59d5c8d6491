/**
 * tbot's v1 configuration, migrated in memory to v2 as tbot does when it reads one (and as `broker
 * migrate` prints it): `destinations` become `outputs`, `storage: { directory: PATH }` becomes
 * `storage: { type: directory, path: PATH }`, `certificate_ttl` becomes `credential_ttl`.
 */
import type { ConfigIssue } from './config-tbot.js';

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The top-level keys tbot reads from a v1 file (it ignores any other). */
const V1_KEYS = [
  'version',
  'onboarding',
  'debug',
  'auth_server',
  'certificate_ttl',
  'renewal_interval',
  'oneshot',
  'fips',
  'diag_addr',
  'destinations',
  'storage',
  'outputs',
];
/** The project's own top-level keys, kept through the migration. */
const PROJECT_KEYS = ['ca_pins'];

const DATABASE_TEMPLATES = ['tls_cas', 'identity', 'mongo', 'cockroach', 'tls'];
const FORMAT_OF: Record<string, string> = { mongo: 'mongo', cockroach: 'cockroach', tls: 'tls' };

export interface V1Migration {
  value: Record<string, unknown>;
  issues: ConfigIssue[];
  warnings: string[];
}

/** v1's `directory: PATH | {path, ...}` or `memory: {}` mixin, as a v2 destination. */
function migrateMixin(d: Record<string, unknown>, at: (string | number)[], issues: ConfigIssue[]): unknown {
  const hasDir = d.directory !== undefined && d.directory !== null;
  const hasMem = d.memory !== undefined;
  if (hasDir && hasMem) {
    issues.push({ path: at, message: "both 'memory' and 'directory' cannot be specified (as in tbot)" });
    return undefined;
  }
  if (hasMem) return { type: 'memory' };
  if (!hasDir) {
    issues.push({
      path: at,
      message: "at least one of 'memory' and 'directory' must be specified (as in tbot)",
    });
    return undefined;
  }
  return typeof d.directory === 'string'
    ? { type: 'directory', path: d.directory }
    : { type: 'directory', ...(isRecord(d.directory) ? d.directory : {}) };
}

/** A v1 template entry (`mongo` or `{ mongo: {} }`) as its name. */
function templateName(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (isRecord(t)) {
    const keys = Object.keys(t);
    return keys.length === 1 ? keys[0] : undefined;
  }
  return undefined;
}

function migrateDestination(d: unknown, i: number, issues: ConfigIssue[]): unknown {
  const at = ['destinations', i];
  if (!isRecord(d)) {
    issues.push({ path: at, message: 'must be a mapping' });
    return undefined;
  }
  const kinds = [
    d.app ? 'app' : undefined,
    d.kubernetes_cluster ? 'kubernetes_cluster' : undefined,
    Array.isArray(d.configs) && d.configs.some((c) => templateName(c) === 'ssh_host_cert')
      ? 'ssh_host_cert'
      : undefined,
  ].filter(Boolean);
  if (kinds.length > 0 || !isRecord(d.database)) {
    const what = kinds[0] ?? 'an identity (SSH/tsh) destination, having no database';
    issues.push({
      path: kinds[0] ? [...at, kinds[0] as string] : at,
      message: `${what} needs a Teleport cluster (Teleport's Auth Service issues it and its Proxy serves it); this broker migrates database destinations only`,
    });
    return undefined;
  }
  const configs = Array.isArray(d.configs) ? d.configs : [];
  let format = '';
  for (const [j, c] of configs.entries()) {
    const name = templateName(c);
    if (!name || !DATABASE_TEMPLATES.includes(name)) {
      issues.push({
        path: [...at, 'configs', j],
        message: `config template ${JSON.stringify(name ?? c)} unsupported by a database output (tbot refuses it too); allowed: ${DATABASE_TEMPLATES.join(', ')}`,
      });
      continue;
    }
    const f = FORMAT_OF[name];
    if (f && format)
      issues.push({
        path: [...at, 'configs', j],
        message: 'multiple candidate formats for database output (as in tbot)',
      });
    if (f) format = f;
  }
  const db = d.database;
  return {
    type: 'database',
    destination: migrateMixin(d, at, issues),
    ...(Array.isArray(d.roles) && d.roles.length ? { roles: d.roles } : {}),
    ...(format ? { format } : {}),
    service: db.service,
    ...(db.database !== undefined && db.database !== '' ? { database: db.database } : {}),
    ...(db.username !== undefined && db.username !== '' ? { username: db.username } : {}),
  };
}

/** Migrates a v1 document (version `v1` or none) to v2, with refusals at v1 paths. */
export function migrateV1(doc: Record<string, unknown>): V1Migration {
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  if (doc.outputs !== undefined)
    issues.push({
      path: ['outputs'],
      message:
        'config has been detected as potentially v1 (no version: v2), but includes the v2 outputs field: add version: v2',
    });
  const ignored = Object.keys(doc).filter((k) => !V1_KEYS.includes(k) && !PROJECT_KEYS.includes(k));
  if (ignored.length)
    warnings.push(`version v1: tbot ignores ${ignored.join(', ')} in a v1 file, and so does this broker`);
  const value: Record<string, unknown> = { version: 'v2' };
  for (const key of [
    'onboarding',
    'debug',
    'auth_server',
    'renewal_interval',
    'oneshot',
    'fips',
    'diag_addr',
    ...PROJECT_KEYS,
  ])
    if (doc[key] !== undefined) value[key] = doc[key];
  if (doc.certificate_ttl !== undefined) value.credential_ttl = doc.certificate_ttl;
  if (isRecord(doc.storage)) value.storage = migrateMixin(doc.storage, ['storage'], issues);
  if (Array.isArray(doc.destinations))
    value.outputs = doc.destinations.map((d, i) => migrateDestination(d, i, issues));
  return { value, issues, warnings };
}
