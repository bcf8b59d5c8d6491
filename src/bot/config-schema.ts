import { promises as fs } from 'node:fs';
import path from 'node:path';
import { type SourceDocument, validateDocument } from '../config/documents.js';
import { ConfigError } from '../config/errors.js';
import * as z from '../config/zod.js';
import { OUTPUT_FORMATS } from '../credentials/formats.js';
import { parseDuration } from '../duration.js';
import { KEY_ALGORITHMS } from '../pki/keys.js';
import { crossCheck, secretWriteIssues } from './config-rules.js';
import { type ConfigIssue, tbotRefusals } from './config-tbot.js';
import { migrateV1 } from './config-v1.js';

export { SECRET_WRITE_GUIDANCE, SECRET_WRITE_MIN_INTERVAL_MS } from './config-rules.js';

const duration = (what: string) =>
  z.pipe(
    z.string().check(
      z.refine((s) => (parseDuration(s) ?? 0) > 0, {
        message: `${what} must be a duration such as "20m" or "1h"`,
      }),
    ),
    z.transform((s) => parseDuration(s) as number),
  );
const nonEmpty = () => z.string().check(z.minLength(1));
const integer = () => z.number().check(z.int());

/** tbot's `symlinks` and `acls` settings of a directory (see toDirectory for what each means here). */
const symlinksMode = z.enum(['secure', 'try-secure', 'insecure']);
const aclsMode = z.enum(['off', 'try', 'required']);
/** tbot's `readers`: users and groups that tbot grants read access with filesystem ACLs. */
const aclReader = z.union([
  z.strictObject({ user: z.union([nonEmpty(), integer()]) }),
  z.strictObject({ group: z.union([nonEmpty(), integer()]) }),
]);

const directoryDestination = z.strictObject({
  type: z.literal('directory'),
  path: nonEmpty(),
  /**
   * The project's `owner` | `group` (0640 files and 0750 directories for the directory's group), or tbot's
   * list of `{ user: }` / `{ group: }` ACL readers.
   */
  readers: z._default(z.union([z.enum(['owner', 'group']), z.array(aclReader)]), 'owner'),
  symlinks: z.optional(symlinksMode),
  acls: z.optional(aclsMode),
});
const secretsManagerDestination = z.strictObject({
  type: z.literal('secretsmanager'),
  name: z.string().check(z.minLength(1), z.maxLength(512)),
});
const memoryDestination = z.strictObject({ type: z.literal('memory') });

export const destinationSchema = z.discriminatedUnion('type', [
  directoryDestination,
  secretsManagerDestination,
  memoryDestination,
]);

const databaseOutputFields = {
  destination: destinationSchema,
  service: nonEmpty(),
  /**
   * Optional, as in tbot: MySQL, CockroachDB and Redis certificates are not bound to a database name
   * (Teleport's databaseNameMatcher checks db_names only for PostgreSQL and MongoDB), so those outputs may
   * leave it out; for the others the roles decide (only a `'*'` in db_names allows an output without one).
   */
  database: z.optional(nonEmpty()),
  /** Optional in tbot, where Teleport's proxy takes the user at connect time; `broker start` needs it. */
  username: z.optional(nonEmpty()),
  format: z.optional(z.enum(OUTPUT_FORMATS)),
  /** tbot 14's name for `format`. */
  subtype: z.optional(z.enum(OUTPUT_FORMATS)),
  /** tbot's role subset for this output; see README (Teleport compatibility) for what it means here. */
  roles: z.optional(z.array(nonEmpty())),
  /** tbot's optional output name, used in logs. */
  name: z.optional(nonEmpty()),
  credential_ttl: z.optional(duration('credential_ttl')),
  renewal_interval: z.optional(duration('renewal_interval')),
  /** The key the bot generates for this output's certificate; the bot's own key_algorithm when left out. */
  key_algorithm: z.optional(z.enum(KEY_ALGORITHMS)),
};
const databaseOutput = z.strictObject({ type: z.literal('database'), ...databaseOutputFields });

/** tbot's `database-tunnel` service: a local listener that opens each connection with a fresh certificate. */
const databaseTunnelService = z.strictObject({
  type: z.literal('database-tunnel'),
  listen: z.string().check(
    z.minLength(1),
    z.refine((s) => parseTunnelListen(s) !== undefined, {
      message: 'must be tcp://HOST:PORT or unix:///PATH, as in tbot (e.g. tcp://127.0.0.1:25432)',
    }),
  ),
  roles: z.optional(z.array(nonEmpty())),
  service: nonEmpty(),
  database: nonEmpty(),
  username: nonEmpty(),
});

const serviceSchema = z.discriminatedUnion('type', [databaseOutput, databaseTunnelService]);

const tokenRef = z.string().check(
  z.minLength(1),
  z.refine((s) => !s.startsWith('file://') || s.length > 'file://'.length, {
    message: 'file:// needs a path',
  }),
  z.refine((s) => !s.startsWith('env://') || /^env:\/\/[A-Za-z_][A-Za-z0-9_]*$/.test(s), {
    message: 'env:// needs a variable name',
  }),
);

const caPinSchema = z
  .string()
  .check(z.regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits> as `broker status` prints'));

/** Where tbot keeps its identity when `storage` is left out. */
export const DEFAULT_STORAGE_PATH = '/var/lib/teleport/bot';

const rawBotConfigSchema = z.strictObject({
  version: z.literal('v2'),
  auth_server: nonEmpty(),
  /** The project's spelling; tbot's is onboarding.ca_pins. Both are read. */
  ca_pins: z.optional(z.array(caPinSchema)),
  /** Optional when parsing, as in tbot: a bot with a stored identity needs no token; a join refuses ''. */
  onboarding: z._default(
    z.strictObject({
      join_method: z._default(z.enum(['token', 'iam']), 'token'),
      token: z.optional(tokenRef),
      ca_pins: z.optional(z.array(caPinSchema)),
      /** A PEM file with the authority's CA certificate(s): trusted as if pinned. Empty: unset, as in tbot. */
      ca_path: z.optional(z.string()),
    }),
    { join_method: 'token' },
  ),
  storage: z.optional(
    z.discriminatedUnion('type', [
      z.strictObject({
        type: z.literal('directory'),
        path: nonEmpty(),
        symlinks: z.optional(symlinksMode),
        acls: z.optional(aclsMode),
        readers: z.optional(z.array(aclReader)),
      }),
      z.strictObject({ type: z.literal('memory') }),
      z.strictObject({ type: z.literal('secretsmanager'), name: nonEmpty() }),
    ]),
  ),
  credential_ttl: z.optional(duration('credential_ttl')),
  /** tbot's older name for credential_ttl. */
  certificate_ttl: z.optional(duration('certificate_ttl')),
  renewal_interval: z.optional(duration('renewal_interval')),
  /** The bot identity's key, and every output's unless it names its own (README: Key algorithms). */
  key_algorithm: z.optional(z.enum(KEY_ALGORITHMS)),
  oneshot: z._default(z.boolean(), false),
  /** tbot's debug logging. */
  debug: z._default(z.boolean(), false),
  /** Where tbot serves /livez, /readyz and /metrics. */
  diag_addr: z.optional(nonEmpty()),
  /** Only `false` gets this far: config-tbot.ts refuses `true` with the reason. */
  fips: z.optional(z.literal(false)),
  insecure: z.optional(z.literal(false)),
  outputs: z.nullish(z.array(databaseOutput)),
  services: z.nullish(z.array(serviceSchema)),
});

type RawBotConfig = z.output<typeof rawBotConfigSchema>;
type RawOutput = z.output<typeof databaseOutput>;
type RawDestination = z.output<typeof destinationSchema>;

import type {
  BotConfig,
  DatabaseOutputConfig,
  DatabaseTunnelConfig,
  DestinationConfig,
} from './config-types.js';

export type {
  BotConfig,
  DatabaseOutputConfig,
  DatabaseTunnelConfig,
  DestinationConfig,
} from './config-types.js';

/** `tcp://HOST:PORT` or `unix:///PATH` (tbot's listen URLs). */
export function parseTunnelListen(
  listen: string,
): { host: string; port: number } | { unixPath: string } | undefined {
  let url: URL;
  try {
    url = new URL(listen);
  } catch {
    return undefined;
  }
  if (url.protocol === 'unix:') return url.pathname ? { unixPath: url.pathname } : undefined;
  if (url.protocol !== 'tcp:' || !url.hostname || !url.port || url.pathname.replace('/', ''))
    return undefined;
  const port = Number(url.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

function toDestination(d: RawDestination): DestinationConfig {
  if (d.type !== 'directory') return d;
  const { readers, ...rest } = d;
  return Array.isArray(readers)
    ? { ...rest, readers: 'owner', aclReaders: readers }
    : { ...rest, readers, aclReaders: [] };
}

function toOutput(o: RawOutput, origin: string): DatabaseOutputConfig {
  const { subtype, format, destination, username, ...rest } = o;
  return {
    ...rest,
    username: username ?? '',
    destination: toDestination(destination),
    format: format ?? subtype ?? '',
    origin,
  };
}

/** The shape of the file, as tbot spells it (validateDocument lists its fields in messages). */
export const botConfigSchema = rawBotConfigSchema;

/** tbot's aliases and defaults resolved, and the rules across fields checked (refusals by path). */
function resolveBotConfig(raw: RawBotConfig): { cfg: BotConfig; issues: ConfigIssue[] } {
  const outputs = (raw.outputs ?? []).map((o, i) => toOutput(o, `outputs.${i}`));
  const tunnels: DatabaseTunnelConfig[] = [];
  (raw.services ?? []).forEach((s, i) => {
    if (s.type === 'database') outputs.push(toOutput(s, `services.${i}`));
    else {
      const { type: _type, ...tunnel } = s;
      tunnels.push({ ...tunnel, origin: `services.${i}` });
    }
  });
  const cfg: BotConfig = {
    version: 'v2',
    auth_server: raw.auth_server,
    ca_pins: [...(raw.ca_pins ?? []), ...(raw.onboarding.ca_pins ?? [])],
    ca_path: raw.onboarding.ca_path || undefined,
    onboarding: { join_method: raw.onboarding.join_method, token: raw.onboarding.token ?? '' },
    storage: raw.storage ?? { type: 'directory', path: DEFAULT_STORAGE_PATH },
    credential_ttl: raw.credential_ttl ?? raw.certificate_ttl ?? 3_600_000,
    renewal_interval: raw.renewal_interval ?? 20 * 60_000,
    key_algorithm: raw.key_algorithm,
    oneshot: raw.oneshot,
    debug: raw.debug,
    diag_addr: raw.diag_addr,
    outputs,
    tunnels,
    warnings: [],
  };
  const { issues, warnings } = crossCheck(cfg, raw);
  cfg.warnings = warnings;
  return { cfg, issues: [...issues, ...secretWriteIssues(cfg)] };
}

/** The refusals before the schema (or of the v1 migration) as one message, like validateDocument's. */
function issuesError(
  file: string,
  doc: SourceDocument,
  issues: readonly ConfigIssue[],
  note = '',
): ConfigError {
  const problems = issues.slice(0, 5).map((issue) => {
    const where = doc.locate(issue.path);
    return `${issue.path.join('.') || '(document)'}: ${issue.message}${where ? ` at ${where}` : ''}`;
  });
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return new ConfigError(`${file}: document ${doc.index} (bot config${note}): ${problems.join('; ')}${more}`);
}

const isSecretPath = (p: readonly PropertyKey[]) =>
  p.length === 0 || p.includes('token') || p[0] === 'onboarding';

/**
 * A bot configuration from its parsed documents (exactly one), as tbot reads it: v2, or v1 migrated in
 * memory. Errors name the file, path, value and what is allowed; features that need a Teleport cluster are
 * refused by name. parseBotConfig reads YAML text into documents; the bot Lambda reads the stack's JSON.
 */
export function botConfigFromDocuments(
  docs: readonly SourceDocument[],
  file: string,
  options: { overrides?: (raw: Record<string, unknown>) => void } = {},
): BotConfig {
  if (docs.length !== 1)
    throw new ConfigError(`${file}: a bot configuration is exactly one YAML document (found ${docs.length})`);
  let doc = docs[0]!;
  const value = doc.value;
  const warnings: string[] = [];
  let note = '';
  if (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    ((value as { version?: unknown }).version === undefined ||
      (value as { version?: unknown }).version === 'v1')
  ) {
    const migrated = migrateV1(value as Record<string, unknown>);
    if (migrated.issues.length) throw issuesError(file, doc, migrated.issues, ', version v1');
    const original = doc;
    // Positions of the v1 file do not match v2 paths; errors name the v2 path and say it was migrated.
    doc = { index: original.index, value: migrated.value, locate: () => undefined };
    note =
      ', version v1 migrated to v2 as tbot does: destinations.N became outputs.N, certificate_ttl credential_ttl';
    warnings.push(
      'version v1 configuration: migrated to v2 in memory, as tbot does; `broker migrate -c FILE` prints the v2 file to keep',
      ...migrated.warnings,
    );
  }
  if (options.overrides) {
    // Command-line flags win over the file, as in tbot; positions stay those of the file.
    const raw = doc.value === null || doc.value === undefined ? {} : doc.value;
    if (typeof raw === 'object' && !Array.isArray(raw)) options.overrides(raw as Record<string, unknown>);
    doc = { ...doc, value: raw };
  }
  const refusals = tbotRefusals(doc.value);
  if (refusals.length) throw issuesError(file, doc, refusals, note);
  // The token may sit elsewhere than onboarding.token by mistake (`onboarding: <token>`, a token pasted as
  // a key under onboarding, or the token file given as the configuration): nothing at those paths is
  // ever printed, values or key names.
  const raw = validateDocument(rawBotConfigSchema, doc, { file, label: `bot config${note}`, isSecretPath });
  const { cfg, issues } = resolveBotConfig(raw);
  if (issues.length) throw issuesError(file, doc, issues, note);
  cfg.warnings.unshift(...warnings);
  return cfg;
}

/**
 * Resolves an onboarding token given inline, as `file://PATH`, as `env://VAR`, or, as tbot reads it, as an
 * absolute path to a file that holds it. Errors name the file or variable, never the token.
 */
export async function resolveToken(ref: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (ref === '')
    throw new ConfigError(
      'onboarding.token: not set, and the bot has no stored identity, so it must join: give the token in the file, with --token or in TELEPORT_BOT_TOKEN',
    );
  if (ref.startsWith('env://')) {
    const name = ref.slice('env://'.length);
    const v = env[name]?.trim();
    if (!v) throw new ConfigError(`onboarding.token names environment variable ${name}, which is not set`);
    return v;
  }
  const file = ref.startsWith('file://')
    ? ref.slice('file://'.length)
    : path.isAbsolute(ref)
      ? ref
      : undefined;
  if (file === undefined) return ref;
  try {
    const v = (await fs.readFile(file, 'utf8')).trim();
    if (!v) throw new Error('the file is empty');
    return v;
  } catch (err) {
    throw new ConfigError(
      `onboarding.token: cannot read the token file ${file}: ${(err as Error).message}${ref === file ? ' (an absolute path is read as a file, as tbot does)' : ''}`,
    );
  }
}
