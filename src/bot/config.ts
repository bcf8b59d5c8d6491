import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config/errors.js';
import { parseYamlDocuments, validateDocument } from '../config/yaml.js';
import { OUTPUT_FORMATS } from '../credentials/formats.js';
import { formatDuration, parseDuration } from '../duration.js';

/** The shortest renewal interval for a bot that writes a Secrets Manager secret (an output or its storage). */
export const SECRET_WRITE_MIN_INTERVAL_MS = 10 * 60_000;

/** Why: versions pile up faster than AWS removes them, until PutSecretValue fails on the version quota. */
export const SECRET_WRITE_GUIDANCE =
  'Secrets Manager keeps every version of a secret younger than 24 hours and advises at most one write per secret per 10 minutes';

const duration = (what: string) =>
  z
    .string()
    .refine((s) => (parseDuration(s) ?? 0) > 0, {
      message: `${what} must be a duration such as "20m" or "1h"`,
    })
    .transform((s) => parseDuration(s) as number);

const directoryDestination = z.strictObject({
  type: z.literal('directory'),
  path: z.string().min(1),
  /** Widen file modes for a reader in the group (0640 files, 0750 directories). */
  readers: z.enum(['owner', 'group']).default('owner'),
});
const secretsManagerDestination = z.strictObject({
  type: z.literal('secretsmanager'),
  name: z.string().min(1).max(512),
});
const memoryDestination = z.strictObject({ type: z.literal('memory') });

export const destinationSchema = z.discriminatedUnion('type', [
  directoryDestination,
  secretsManagerDestination,
  memoryDestination,
]);

const databaseOutput = z.strictObject({
  type: z.literal('database'),
  destination: destinationSchema,
  service: z.string().min(1),
  /**
   * Optional, as in tbot: MySQL, CockroachDB and Redis certificates are not bound to a database name
   * (Teleport's databaseNameMatcher checks db_names only for PostgreSQL and MongoDB), so those outputs may
   * leave it out; for the others the roles decide (only a `'*'` in db_names allows an output without one).
   */
  database: z.string().min(1).optional(),
  username: z.string().min(1),
  format: z.enum(OUTPUT_FORMATS).default(''),
  credential_ttl: duration('credential_ttl').optional(),
  renewal_interval: duration('renewal_interval').optional(),
});

type DatabaseOutput = z.output<typeof databaseOutput>;

const tokenRef = z
  .string()
  .min(1)
  .refine((s) => !s.startsWith('file://') || s.length > 'file://'.length, { message: 'file:// needs a path' })
  .refine((s) => !s.startsWith('env://') || /^env:\/\/[A-Za-z_][A-Za-z0-9_]*$/.test(s), {
    message: 'env:// needs a variable name',
  });

export const botConfigSchema = z
  .strictObject({
    version: z.literal('v2'),
    auth_server: z.string().min(1),
    ca_pins: z
      .array(
        z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits> as `broker status` prints'),
      )
      .default([]),
    onboarding: z.strictObject({ join_method: z.enum(['token', 'iam']), token: tokenRef }),
    storage: z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('directory'), path: z.string().min(1) }),
      z.strictObject({ type: z.literal('memory') }),
      z.strictObject({
        type: z.literal('secretsmanager'),
        name: z.string().min(1),
      }),
    ]),
    credential_ttl: duration('credential_ttl').default(3_600_000),
    renewal_interval: duration('renewal_interval').default(20 * 60_000),
    oneshot: z.boolean().default(false),
    outputs: z.array(databaseOutput).min(1, 'configure at least one output'),
  })
  .superRefine((cfg, ctx) => {
    const check = (ttl: number, interval: number, at: (string | number)[]) => {
      if (interval >= ttl)
        ctx.addIssue({
          code: 'custom',
          path: at,
          message: `renewal_interval (${formatDuration(interval)}) must be shorter than credential_ttl (${formatDuration(ttl)}), or certificates expire before they are renewed`,
        });
    };
    check(cfg.credential_ttl, cfg.renewal_interval, ['renewal_interval']);
    cfg.outputs.forEach((o, i) => {
      check(o.credential_ttl ?? cfg.credential_ttl, o.renewal_interval ?? cfg.renewal_interval, [
        'outputs',
        i,
        'renewal_interval',
      ]);
    });
    // Secrets Manager's version quota: each secretsmanager output is written once per its own interval;
    // a secretsmanager storage once per cycle, and a cycle comes every shortest interval.
    const flagged = new Set<string>();
    const tooOften = (interval: number, at: (string | number)[], what: string) => {
      if (interval >= SECRET_WRITE_MIN_INTERVAL_MS || flagged.has(at.join('.'))) return;
      flagged.add(at.join('.'));
      ctx.addIssue({
        code: 'custom',
        path: at,
        message: `renewal_interval (${formatDuration(interval)}) writes ${what} more often than every 10m0s: ${SECRET_WRITE_GUIDANCE}; use at least 10m, or a directory destination`,
      });
    };
    const ownPath = (o: DatabaseOutput, i: number) =>
      o.renewal_interval === undefined ? ['renewal_interval'] : ['outputs', i, 'renewal_interval'];
    cfg.outputs.forEach((o, i) => {
      if (o.destination.type === 'secretsmanager')
        tooOften(
          o.renewal_interval ?? cfg.renewal_interval,
          ownPath(o, i),
          `secret ${JSON.stringify(o.destination.name)}`,
        );
    });
    if (cfg.storage.type === 'secretsmanager') {
      const storage = `the identity to storage secret ${JSON.stringify(cfg.storage.name)} (once per cycle)`;
      tooOften(cfg.renewal_interval, ['renewal_interval'], storage);
      cfg.outputs.forEach((o, i) => {
        if (o.renewal_interval !== undefined) tooOften(o.renewal_interval, ownPath(o, i), storage);
      });
    }
    const seen = new Set<string>();
    cfg.outputs.forEach((o, i) => {
      const id =
        o.destination.type === 'directory'
          ? `dir:${path.resolve(o.destination.path)}`
          : o.destination.type === 'secretsmanager'
            ? `sm:${o.destination.name}`
            : `mem:${i}`;
      if (seen.has(id))
        ctx.addIssue({
          code: 'custom',
          path: ['outputs', i, 'destination'],
          message: 'two outputs write to the same destination',
        });
      seen.add(id);
    });
  });

export type BotConfig = z.output<typeof botConfigSchema>;
export type DatabaseOutputConfig = BotConfig['outputs'][number];
export type DestinationConfig = z.output<typeof destinationSchema>;

/** Parses a bot configuration (one YAML document). Errors name the file, path, value and what is allowed. */
export function parseBotConfig(text: string, file: string): BotConfig {
  const docs = parseYamlDocuments(text, file);
  if (docs.length !== 1)
    throw new ConfigError(`${file}: a bot configuration is exactly one YAML document (found ${docs.length})`);
  // The token may sit elsewhere than onboarding.token by mistake (`onboarding: <token>`, a token pasted as
  // a key under onboarding, or the token file given as the configuration): nothing at those paths is
  // ever printed, values or key names.
  return validateDocument(botConfigSchema, docs[0]!, {
    file,
    label: 'bot config',
    isSecretPath: (p) => p.length === 0 || p.includes('token') || p[0] === 'onboarding',
  });
}

export async function loadBotConfig(file: string): Promise<BotConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read bot configuration ${file}: ${(err as Error).message}`);
  }
  return parseBotConfig(text, file);
}

/** Resolves an onboarding token given inline, as `file://PATH` or as `env://VAR`. */
export async function resolveToken(ref: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (ref.startsWith('env://')) {
    const name = ref.slice('env://'.length);
    const v = env[name]?.trim();
    if (!v) throw new ConfigError(`onboarding.token names environment variable ${name}, which is not set`);
    return v;
  }
  if (ref.startsWith('file://')) {
    const file = ref.slice('file://'.length);
    try {
      const v = (await fs.readFile(file, 'utf8')).trim();
      if (!v) throw new Error('the file is empty');
      return v;
    } catch (err) {
      throw new ConfigError(`onboarding.token: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  return ref;
}
