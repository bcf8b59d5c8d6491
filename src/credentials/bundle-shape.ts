/**
 * The shape of a version 1 credential bundle (DESIGN.md §4), checked by hand rather than with a schema
 * library: the proxy sidecar reads bundles and nothing else that needs one, and the library's code was about
 * 1 MB of an idle sidecar's memory. The problems found are those the bundle's former zod schema reported,
 * word for word and in the same order (test/unit/bundle-shape.test.ts compares the two on a table of bundles
 * and on arbitrary JSON), so error messages and the documentation of them did not change.
 *
 * Unknown top-level fields are ignored (dropped) so that additive changes do not break older readers; an
 * incompatible change bumps `version`, which older readers refuse. Unknown files are kept.
 */
import { OUTPUT_FORMATS } from './formats.js';
import { DB_PROTOCOLS, HOST_PORT_HINT, HOST_PORT_PATTERN } from './route.js';

/** One problem: where (field names from the document's root) and what. */
export interface ShapeProblem {
  path: string[];
  message: string;
}

/** The fields a bundle's document has besides `files`, in the canonical order (serializeBundle). */
export const BUNDLE_META_KEYS = [
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

/** RFC 3339 date-time with seconds and `Z` or a numeric offset; the date must exist (leap years counted). */
const ISO_DATETIME =
  /^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|(?:02)-(?:0[1-9]|1\d|2[0-8])))T(?:(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|([+-](?:[01]\d|2[0-3]):[0-5]\d)))$/;

/**
 * Artifact names are relative paths such as `tlscert` or `cockroach/node.crt`: a consumer that writes them
 * to disk must never be steered outside its directory.
 */
const FILE_NAME = /^(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const FILE_NAME_HINT =
  'must be a relative path of letters, digits, ".", "_", "-" and "/", without "." or ".." segments';

/** The files every bundle has, and what each must hold. */
const REQUIRED_FILES = {
  tlscert: 'certificate',
  key: 'private key',
  'teleport-host-ca.crt': 'CA bundle',
  'teleport-database-ca.crt': 'CA bundle',
} as const;

/** The name of a value's type in "received …": a class instance by its constructor's name. */
function typeName(value: unknown): string {
  if (typeof value === 'number')
    return Number.isNaN(value) ? 'NaN' : Number.isFinite(value) ? 'number' : String(value);
  if (typeof value !== 'object') return typeof value;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Object.getPrototypeOf(value) !== Object.prototype && 'constructor' in value && value.constructor)
    return (value.constructor as { name: string }).name;
  return 'object';
}

const quoted = (values: readonly (string | number)[]) =>
  values.map((v) => (typeof v === 'string' ? `"${v}"` : String(v))).join('|');

/** Collects the problems of one document, field by field. */
class Checker {
  readonly problems: ShapeProblem[] = [];
  /** Problems that stop the check of artifact names (a value of the wrong type). */
  typeProblems = 0;

  add(path: string[], message: string): void {
    this.problems.push({ path, message });
  }

  /** A string, or a problem naming what it got; false when it is not a string. */
  string(path: string[], value: unknown): value is string {
    if (typeof value === 'string') return true;
    this.add(path, `Invalid input: expected string, received ${typeName(value)}`);
    this.typeProblems++;
    return false;
  }

  /** A non-empty string. Like a length check, an array or other object with a `length` is measured too. */
  nonEmpty(path: string[], value: unknown): void {
    const isString = this.string(path, value);
    if (value === null || value === undefined) return;
    const length = (value as { length?: unknown }).length;
    if (length === undefined || (length as number) >= 1) return;
    if (isString) this.add(path, 'Too small: expected string to have >=1 characters');
    else if (Array.isArray(value)) this.add(path, 'Too small: expected array to have >=1 items');
    else this.add(path, 'Too small: expected unknown to be >=1');
  }

  matching(path: string[], value: unknown, pattern: RegExp, message: string): void {
    if (this.string(path, value) && !pattern.test(value)) this.add(path, message);
  }

  oneOf(path: string[], value: unknown, allowed: readonly (string | number)[]): void {
    if (allowed.includes(value as string | number)) return;
    this.add(
      path,
      allowed.length === 1
        ? `Invalid input: expected ${quoted(allowed)}`
        : `Invalid option: expected one of ${quoted(allowed)}`,
    );
  }
}

/** True for what a field check treats as an object: not null, not an array. */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkFiles(c: Checker, value: unknown): Record<string, string> {
  const files: Record<string, string> = {};
  if (!isObject(value)) {
    c.add(['files'], `Invalid input: expected object, received ${typeName(value)}`);
    return files;
  }
  const before = c.typeProblems;
  for (const [name, what] of Object.entries(REQUIRED_FILES)) {
    const text = value[name];
    if (c.string(['files', name], text)) {
      if (!text.includes('-----BEGIN ')) c.add(['files', name], `must be a PEM ${what}`);
      files[name] = text;
    }
  }
  for (const name of Object.keys(value)) {
    if (Object.hasOwn(REQUIRED_FILES, name)) continue;
    const text = value[name];
    if (c.string(['files', name], text)) files[name] = text;
  }
  // Names are judged only once every value is text, as the schema did.
  if (c.typeProblems === before)
    for (const name of Object.keys(files))
      if (!FILE_NAME.test(name)) c.add(['files', name], `bad artifact name: ${FILE_NAME_HINT}`);
  return files;
}

/**
 * The problems of a would-be bundle document, in document order, and the bundle (known fields only, files
 * as given) when there are none.
 */
export function checkBundleShape(value: unknown): {
  problems: ShapeProblem[];
  bundle?: Record<string, unknown>;
} {
  const c = new Checker();
  if (!isObject(value)) {
    c.add([], `Invalid input: expected object, received ${typeName(value)}`);
    return { problems: c.problems };
  }
  c.oneOf(['kind'], value.kind, ['database-credentials']);
  c.oneOf(['version'], value.version, [1]);
  c.nonEmpty(['service'], value.service);
  c.oneOf(['protocol'], value.protocol, DB_PROTOCOLS);
  c.matching(['endpoint'], value.endpoint, HOST_PORT_PATTERN, HOST_PORT_HINT);
  c.nonEmpty(['serverName'], value.serverName);
  c.string(['database'], value.database);
  c.nonEmpty(['username'], value.username);
  c.oneOf(['format'], value.format, OUTPUT_FORMATS);
  c.matching(['serial'], value.serial, /^[0-9a-fA-F]{1,64}$/, 'must be the certificate serial in hex');
  c.matching(['issuedAt'], value.issuedAt, ISO_DATETIME, 'Invalid ISO datetime');
  c.matching(['expiresAt'], value.expiresAt, ISO_DATETIME, 'Invalid ISO datetime');
  const files = checkFiles(c, value.files);
  if (c.problems.length > 0) return { problems: c.problems };
  const bundle: Record<string, unknown> = {};
  for (const key of BUNDLE_META_KEYS) bundle[key] = value[key];
  bundle.files = files;
  return { problems: [], bundle };
}
