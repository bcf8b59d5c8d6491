import { type SourceDocument, validateDocument } from '../config/documents.js';
import { ConfigError } from '../config/errors.js';
import * as z from '../config/zod.js';
import { splitPemBundle } from '../credentials/pem.js';
import { DB_PROTOCOLS, HOST_PORT_HINT, HOST_PORT_PATTERN } from '../credentials/route.js';
import { parseDuration } from '../duration.js';
import { arnPatternAccount, arnPatternProblem } from './arn.js';
import { rolePatternIssues, unsupportedRoleFields } from './rbac/validate.js';

/** Names of resources: what Teleport accepts for role, bot and database names, minus path separators. */
export const resourceName = z
  .string()
  .check(
    z.regex(
      /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$/,
      'must be 1-63 letters, digits, ".", "_", "@" or "-", starting with a letter or digit',
    ),
  );

const duration = z.string().check(
  z.refine((s) => parseDuration(s) !== undefined, {
    message: 'must be a duration such as "30m", "1h" or "8h30m"',
  }),
);
const nonEmpty = () => z.string().check(z.minLength(1));

/** The verbs of Teleport's rules (api/types/constants.go), and `*`. A typo would silently never match. */
export const RULE_VERBS = [
  'list',
  'create',
  'read',
  'readnosecrets',
  'update',
  'delete',
  'rotate',
  'create_enroll_token',
  'enroll',
  'use',
  '*',
] as const;

/** Role versions Teleport accepts (RoleV6.CheckAndSetDefaults); they differ in their defaults only. */
export const ROLE_VERSIONS = ['v3', 'v4', 'v5', 'v6', 'v7', 'v8'] as const;

const labelValue = z.union([z.string(), z.array(z.string())]);
/** `db_labels`: label name → glob, `^regex$`, template, or a list of them (an empty list matches nothing). */
export const labelSelector = z.record(z.string(), labelValue);

const rule = z.strictObject({
  resources: z.array(nonEmpty()).check(z.minLength(1)),
  verbs: z.array(z.enum(RULE_VERBS)).check(z.minLength(1)),
});

const conditions = z.strictObject({
  namespaces: z.optional(
    z
      .array(z.enum(['default', '*']))
      .check(
        z.minLength(
          1,
          'an empty namespaces list matches no namespace, so this side of the role would never apply',
        ),
      ),
  ),
  db_labels: z.optional(labelSelector),
  db_labels_expression: z.optional(nonEmpty()),
  db_names: z.optional(z.array(z.string())),
  db_users: z.optional(z.array(z.string())),
  rules: z.optional(z.array(rule)),
});

const metadata = z.strictObject({
  name: resourceName,
  description: z.optional(z.string()),
  labels: z.optional(z.record(nonEmpty(), z.string())),
  expires: z.optional(z.iso.datetime({ offset: true })),
});

export const roleSchema = z
  .strictObject({
    kind: z.literal('role'),
    version: z.enum(ROLE_VERSIONS),
    metadata,
    spec: z.strictObject({
      allow: z.optional(conditions),
      deny: z.optional(conditions),
      options: z.optional(z.strictObject({ max_session_ttl: z.optional(duration) })),
    }),
  })
  .check(
    z.superRefine((role, ctx) => {
      for (const issue of rolePatternIssues(role.spec)) ctx.addIssue({ code: 'custom', ...issue });
    }),
  );

/** Teleport's MaxCertDuration, the max_session_ttl of a role that sets none. */
const DEFAULT_MAX_SESSION_TTL = '30h';

/**
 * The defaults RoleV6.CheckAndSetDefaults (api/types/role.go) gives the fields database access reads: a v3
 * role without allow.db_labels may reach every database (`'*': '*'`); v4 and later get no labels, so they
 * reach none until db_labels or db_labels_expression says which; namespaces default to [default] and
 * max_session_ttl to 30h in every version.
 */
export function roleWithDefaults(role: Role): Role {
  const namespaces: ('default' | '*')[] = ['default'];
  const allow = { ...role.spec.allow, namespaces: role.spec.allow?.namespaces ?? namespaces };
  if (role.version === 'v3' && allow.db_labels === undefined) allow.db_labels = { '*': '*' };
  const deny = { ...role.spec.deny, namespaces: role.spec.deny?.namespaces ?? namespaces };
  const ttl = role.spec.options?.max_session_ttl ?? DEFAULT_MAX_SESSION_TTL;
  return {
    ...role,
    spec: { ...role.spec, allow, deny, options: { ...role.spec.options, max_session_ttl: ttl } },
  };
}

const hostPort = z.string().check(z.regex(HOST_PORT_PATTERN, HOST_PORT_HINT));

export const dbSchema = z.strictObject({
  kind: z.literal('db'),
  version: z.literal('v3'),
  metadata,
  spec: z.strictObject({
    protocol: z.enum(DB_PROTOCOLS),
    uri: hostPort,
    tls: z.optional(
      z.strictObject({
        server_name: z.optional(nonEmpty()),
        ca_cert: z.optional(
          z
            .string()
            .check(z.refine((s) => splitPemBundle(s).length > 0, { message: 'must hold PEM certificates' })),
        ),
      }),
    ),
  }),
});

export const botSchema = z.strictObject({
  kind: z.literal('bot'),
  version: z.literal('v1'),
  metadata,
  spec: z.strictObject({
    roles: z._default(z.array(resourceName), []),
    /** Teleport's bot traits (machineid/v1 BotSpec): entries with the same name are merged. */
    traits: z.optional(z.array(z.strictObject({ name: nonEmpty(), values: z.array(z.string()) }))),
  }),
});

/** An iam allow rule: the account, and optionally an ARN glob matched segment by segment (./arn.ts). */
const iamAllow = z
  .strictObject({
    aws_account: z.string().check(z.regex(/^\d{12}$/, 'must be a 12-digit AWS account id')),
    aws_arn: z.optional(
      z.string().check(
        z.minLength(1),
        z.superRefine((arn, ctx) => {
          const problem = arnPatternProblem(arn);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
      ),
    ),
  })
  .check(
    z.superRefine((rule, ctx) => {
      const account = rule.aws_arn === undefined ? undefined : arnPatternAccount(rule.aws_arn);
      if (account !== undefined && account !== rule.aws_account)
        ctx.addIssue({
          code: 'custom',
          path: ['aws_arn'],
          message: `names account ${account} but aws_account ${rule.aws_account} is required: the rule matches nothing`,
        });
    }),
  );

export const tokenSchema = z
  .strictObject({
    kind: z.literal('token'),
    version: z.literal('v2'),
    metadata,
    spec: z.strictObject({
      join_method: z.enum(['token', 'iam']),
      bot_name: resourceName,
      roles: z.optional(z.array(z.literal('Bot'))),
      allow: z.optional(z.array(iamAllow)),
    }),
  })
  .check(
    z.refine((t) => t.spec.join_method !== 'iam' || (t.spec.allow?.length ?? 0) > 0, {
      message: 'an iam token needs at least one allow rule (aws_account, optional aws_arn)',
      path: ['spec', 'allow'],
    }),
  );

export type Role = z.output<typeof roleSchema>;
export type RoleConditions = z.output<typeof conditions>;
export type Db = z.output<typeof dbSchema>;
export type Bot = z.output<typeof botSchema>;
export type TokenResource = z.output<typeof tokenSchema>;
export type Resource = Role | Db | Bot | TokenResource;
export type ResourceKind = Resource['kind'];

export const RESOURCE_KINDS: Record<ResourceKind, { versions: readonly string[]; schema: z.ZodMiniType }> = {
  role: { versions: ROLE_VERSIONS, schema: roleSchema },
  db: { versions: ['v3'], schema: dbSchema },
  bot: { versions: ['v1'], schema: botSchema },
  token: { versions: ['v2'], schema: tokenSchema },
};

/** Accepts `role`, `roles`, `db`, `dbs`, `bot`, `bots`, `token`, `tokens` as a kind on the command line. */
export function parseKind(text: string): ResourceKind | undefined {
  const k = text.replace(/s$/, '');
  return k in RESOURCE_KINDS ? (k as ResourceKind) : undefined;
}

/**
 * Teleport-shaped resources from the parsed documents of one file. Every document is validated before
 * anything is returned, so a bad file changes nothing. Duplicate kind/name pairs inside one file are refused.
 * parseResources reads YAML text into documents; the authority Lambda reads the stack's JSON.
 */
export function resourcesFromDocuments(docs: readonly SourceDocument[], file: string): Resource[] {
  const out: Resource[] = [];
  const seen = new Set<string>();
  for (const doc of docs) {
    const v = doc.value as { kind?: unknown; version?: unknown; metadata?: { name?: unknown } } | null;
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new ConfigError(
        `${file}: document ${doc.index}: expected a mapping with kind, version, metadata and spec`,
      );
    const kind = typeof v.kind === 'string' ? v.kind : undefined;
    const spec = kind ? RESOURCE_KINDS[kind as ResourceKind] : undefined;
    if (!kind || !spec)
      throw new ConfigError(
        `${file}: document ${doc.index}: kind ${excerpt(v.kind ?? null)} is not supported; use one of ${Object.keys(RESOURCE_KINDS).join(', ')}`,
      );
    if (!spec.versions.includes(v.version as string))
      throw new ConfigError(
        `${file}: document ${doc.index} (${kind}): version ${excerpt(v.version ?? null)} is not supported; ${kind} resources are version ${spec.versions.join(', ')}`,
      );
    const isToken = kind === 'token';
    const label = `${kind} ${isToken ? '' : excerpt(v.metadata?.name ?? '')}`.trim();
    if (kind === 'role') refuseUnsupported(doc, { file, label });
    const resource = validateDocument(spec.schema, doc, {
      file,
      label,
      isSecretPath: (path) => isToken && path.join('.') === 'metadata.name',
    }) as Resource;
    const id = `${resource.kind}/${resource.metadata.name}`;
    if (seen.has(id))
      throw new ConfigError(
        `${file}: document ${doc.index}: ${isToken ? 'a token' : id} is defined twice in this file`,
      );
    seen.add(id);
    out.push(resource);
  }
  if (out.length === 0)
    throw new ConfigError(
      `${file}: no resources found (expected YAML documents with kind: role, db, bot or token)`,
    );
  return out;
}

/** Teleport role fields the broker does not support, refused with the field and the reason. */
function refuseUnsupported(doc: SourceDocument, where: { file: string; label: string }): void {
  const issues = unsupportedRoleFields(doc.value);
  if (issues.length === 0) return;
  const problems = issues.map(({ path, message }) => {
    const at = doc.locate(path);
    return `${path.join('.')}: ${message}${at ? ` at ${at}` : ''}`;
  });
  throw new ConfigError(`${where.file}: document ${doc.index} (${where.label}): ${problems.join('; ')}`);
}

/** A value as JSON, cut short: a hostile file must not turn into a megabyte error message. */
function excerpt(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Host part of a `host:port` uri (the one definition lives with the route vocabulary). */
export { hostOf } from '../credentials/route.js';
