/**
 * The JSON credential bundle of DESIGN.md §4: one document holding a database output's metadata and every
 * artifact file, as the `secretsmanager` destination stores it and the proxy and the Lambda client read it.
 *
 * Parsing never trusts the document: the schema is checked, then the certificate must parse, the key must
 * match it and the serial must be the certificate's. Error messages name the path and the problem, never a
 * secret value (the key, certificate bodies and JSON text are never quoted).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { BrokerError } from '../errors.js';
import { BUNDLE_META_KEYS, checkBundleShape } from './bundle-shape.js';
import type { OutputFormat } from './formats.js';
import { type DbProtocol, parseHostPort } from './route.js';

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
  const result = checkBundleShape(value);
  if (result.bundle) return result.bundle as unknown as CredentialBundle;
  const problems = result.problems.slice(0, 5).map(({ path, message }) => {
    const where = path.length ? path.join('.') : '(document)';
    return `${where}: ${message}${describeValue(path, valueAt(value, path))}`;
  });
  const more = result.problems.length > 5 ? ` (and ${result.problems.length - 5} more)` : '';
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
  for (const key of BUNDLE_META_KEYS) out[key] = valid[key];
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
