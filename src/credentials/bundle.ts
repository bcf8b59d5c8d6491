/**
 * The JSON credential bundle of DESIGN.md §4: one document holding a database output's metadata and every
 * artifact file, as the `secretsmanager` destination stores it and the proxy and the Lambda client read it.
 *
 * Parsing never trusts the document: the schema is checked, then the certificate must parse, the key must
 * match it and the serial must be the certificate's. Error messages name the path and the problem, never a
 * secret value (the key, certificate bodies and JSON text are never quoted).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as z from '../config/zod.js';
import { BrokerError } from '../errors.js';
import { OUTPUT_FORMATS, type OutputFormat } from './formats.js';
import { DB_PROTOCOLS, type DbProtocol, HOST_PORT_HINT, HOST_PORT_PATTERN, parseHostPort } from './route.js';

/** What a database output holds besides its files: where the database is and what the certificate is for. */
export interface BundleMeta {
  kind: 'database-credentials';
  version: 1;
  service: string;
  protocol: DbProtocol;
  endpoint: string;
  serverName: string;
  database: string;
  username: string;
  format: OutputFormat;
  serial: string;
  issuedAt: string;
  expiresAt: string;
}

/** A credential bundle: metadata plus the artifact files by name (DESIGN.md §4). */
export interface CredentialBundle extends BundleMeta {
  files: Record<string, string>;
}

/** The bundle is unusable: not JSON, not the schema, or key and certificate do not belong together. */
export class BundleError extends BrokerError {
  override name = 'BundleError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('bad_bundle', message, options);
  }
}

/** The same host:port rule as a `db` resource's `uri` (DESIGN.md §3). */
const endpoint = z.string().check(z.regex(HOST_PORT_PATTERN, HOST_PORT_HINT));

const pem = (what: string) =>
  z.string().check(z.refine((s) => s.includes('-----BEGIN '), { message: `must be a PEM ${what}` }));

/**
 * Artifact names are relative paths such as `tlscert` or `cockroach/node.crt`: a consumer that writes them
 * to disk must never be steered outside its directory.
 */
const fileName = z
  .string()
  .check(
    z.regex(
      /^(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/,
      'must be a relative path of letters, digits, ".", "_", "-" and "/", without "." or ".." segments',
    ),
  );

/**
 * Version 1 of the bundle. Unknown top-level fields are ignored (dropped) so that additive changes do not
 * break older readers; an incompatible change bumps `version`, which older readers refuse.
 */
export const credentialBundleSchema = z.object({
  kind: z.literal('database-credentials'),
  version: z.literal(1),
  service: z.string().check(z.minLength(1)),
  protocol: z.enum(DB_PROTOCOLS),
  endpoint,
  serverName: z.string().check(z.minLength(1)),
  database: z.string(),
  username: z.string().check(z.minLength(1)),
  format: z.enum(OUTPUT_FORMATS),
  serial: z.string().check(z.regex(/^[0-9a-fA-F]{1,64}$/, 'must be the certificate serial in hex')),
  issuedAt: z.iso.datetime({ offset: true }),
  expiresAt: z.iso.datetime({ offset: true }),
  files: z
    .catchall(
      z.object({
        tlscert: pem('certificate'),
        key: pem('private key'),
        'teleport-host-ca.crt': pem('CA bundle'),
        'teleport-database-ca.crt': pem('CA bundle'),
      }),
      z.string(),
    )
    .check(
      z.superRefine((files, ctx) => {
        for (const name of Object.keys(files)) {
          const result = fileName.safeParse(name);
          if (!result.success)
            ctx.addIssue({
              code: 'custom',
              path: [name],
              message: `bad artifact name: ${result.error.issues[0]?.message}`,
            });
        }
      }),
    ),
});

const META_KEYS = [
  'kind',
  'version',
  'service',
  'protocol',
  'endpoint',
  'serverName',
  'database',
  'username',
  'format',
  'serial',
  'issuedAt',
  'expiresAt',
] as const;

/**
 * Paths under `files` hold key and certificate material: their values are never quoted, and neither is
 * PEM text found elsewhere (a key pasted into the wrong field of a hand-edited bundle).
 */
function describeValue(path: readonly PropertyKey[], value: unknown): string {
  if (path[0] === 'files') return '';
  if (value === undefined) return ' (missing)';
  const text = JSON.stringify(value);
  if (text.includes('-----BEGIN')) return ' (got PEM text, not shown)';
  return ` (got ${text.length > 60 ? `${text.slice(0, 57)}...` : text})`;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let cur = value;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

/** Validates the shape only (no cryptography); throws BundleError naming each bad path. */
export function validateBundleShape(value: unknown, source = 'the bundle'): CredentialBundle {
  const result = credentialBundleSchema.safeParse(value);
  if (result.success) return result.data as CredentialBundle;
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    const path = issue.path as PropertyKey[];
    const where = path.length ? path.map(String).join('.') : '(document)';
    return `${where}: ${issue.message}${describeValue(path, valueAt(value, path))}`;
  });
  const more = result.error.issues.length > 5 ? ` (and ${result.error.issues.length - 5} more)` : '';
  throw new BundleError(
    `${source} is not a version 1 database-credentials bundle: ${problems.join('; ')}${more}`,
  );
}

/**
 * Checks what the schema cannot: the certificate parses, the private key parses and matches it, and the
 * bundle's serial is the certificate's. Throws BundleError.
 */
export function checkBundleKeyPair(bundle: CredentialBundle, source = 'the bundle'): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(bundle.files.tlscert ?? '');
  } catch {
    throw new BundleError(`${source}: files.tlscert does not parse as an X.509 certificate`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(bundle.files.key ?? ''));
  } catch {
    throw new BundleError(`${source}: files.key does not parse as a private key`);
  }
  if (!matches)
    throw new BundleError(
      `${source}: files.key does not match the certificate in files.tlscert (serial ${cert.serialNumber.toLowerCase()}); the bundle mixes two issuances`,
    );
  if (BigInt(`0x${cert.serialNumber}`) !== BigInt(`0x${bundle.serial}`))
    throw new BundleError(
      `${source}: serial ${bundle.serial} does not match the certificate's serial ${cert.serialNumber.toLowerCase()}`,
    );
}

/**
 * The canonical JSON text of a bundle: fields in schema order and files sorted by name, so the same
 * issuance always serializes to the same bytes (a retried write must send an identical value).
 * Throws BundleError when the bundle does not fit the schema.
 */
export function serializeBundle(bundle: CredentialBundle): string {
  const valid = validateBundleShape(bundle);
  const out: Record<string, unknown> = {};
  for (const key of META_KEYS) out[key] = valid[key];
  out.files = Object.fromEntries(
    Object.entries(valid.files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  return JSON.stringify(out);
}

/**
 * Parses and checks a bundle's JSON text: it must be JSON, fit the version 1 schema, and carry a key that
 * matches its certificate. `source` names where the text came from, for the error message.
 */
export function parseBundle(text: string, source = 'the bundle'): CredentialBundle {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // JSON.parse quotes the input around the error: only the position is safe to repeat.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new BundleError(
      `${source} is not JSON${at ? ` (syntax error at character ${at} of ${text.length})` : ` (${text.length} characters)`}`,
    );
  }
  const bundle = validateBundleShape(value, source);
  checkBundleKeyPair(bundle, source);
  return bundle;
}

/** Splits a bundle endpoint into host (IPv6 without brackets) and port. */
export function splitEndpoint(endpointText: string): { host: string; port: number } {
  const parsed = parseHostPort(endpointText);
  if (!parsed) throw new BundleError(`the bundle endpoint ${JSON.stringify(endpointText)} is not host:port`);
  return parsed;
}
