/**
 * The credential bundle's shape check (src/credentials/bundle-shape.ts), which replaced a zod schema so that
 * the proxy sidecar loads no schema library. Two things are pinned here:
 *
 * - the exact message of every kind of bad bundle a reader can meet (each field missing, of the wrong type,
 *   with a bad value; files missing, not text, badly named; not an object; not JSON), as users see them;
 * - that the messages are those the former schema gave: `FORMER_SCHEMA` below is that schema, and the check
 *   must report the same problems in the same order, and return the same bundle, on the table and on
 *   arbitrary JSON and arbitrary replacements of each field.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as z from '../../src/config/zod.js';
import { BundleError, parseBundle, validateBundleShape } from '../../src/credentials/bundle.js';
import { checkBundleShape } from '../../src/credentials/bundle-shape.js';
import { OUTPUT_FORMATS } from '../../src/credentials/formats.js';
import { DB_PROTOCOLS, HOST_PORT_HINT, HOST_PORT_PATTERN } from '../../src/credentials/route.js';

const pem = (what: string) =>
  z.string().check(z.refine((s) => s.includes('-----BEGIN '), { message: `must be a PEM ${what}` }));
const fileName = z
  .string()
  .check(
    z.regex(
      /^(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/,
      'must be a relative path of letters, digits, ".", "_", "-" and "/", without "." or ".." segments',
    ),
  );
/** The bundle's schema as it was written with zod/mini, kept as the reference for the messages. */
const FORMER_SCHEMA = z.object({
  kind: z.literal('database-credentials'),
  version: z.literal(1),
  service: z.string().check(z.minLength(1)),
  protocol: z.enum(DB_PROTOCOLS),
  endpoint: z.string().check(z.regex(HOST_PORT_PATTERN, HOST_PORT_HINT)),
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

/** Shape only: the PEM texts need not be real (parseBundle's key-pair check is tested elsewhere). */
const GOOD = {
  kind: 'database-credentials',
  version: 1,
  service: 'orders-db',
  protocol: 'postgres',
  endpoint: 'orders.internal:5432',
  serverName: 'orders.internal',
  database: 'orders',
  username: 'alice',
  format: '',
  serial: '0a1b2c',
  issuedAt: '2026-01-01T00:00:00Z',
  expiresAt: '2026-01-01T08:00:00.000+01:00',
  files: {
    tlscert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    key: '-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n',
    'teleport-host-ca.crt': '-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n',
    'teleport-database-ca.crt': '-----BEGIN CERTIFICATE-----\nDDDD\n-----END CERTIFICATE-----\n',
  },
};
const FILES = GOOD.files;
const PREFIX = 'the bundle is not a version 1 database-credentials bundle: ';
const PROTOCOLS = 'Invalid option: expected one of "postgres"|"cockroachdb"|"mysql"|"mongodb"|"redis"';
const FORMATS = 'Invalid option: expected one of ""|"tls"|"mongo"|"cockroach"';
const BAD_NAME =
  'bad artifact name: must be a relative path of letters, digits, ".", "_", "-" and "/", without "." or ".." segments';

function without(key: string): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...GOOD };
  delete copy[key];
  return copy;
}
function withoutFile(name: string): Record<string, unknown> {
  const files: Record<string, unknown> = { ...FILES };
  delete files[name];
  return { ...GOOD, files };
}

/** Each bad bundle and the whole message validateBundleShape gives for it (after PREFIX). */
const BAD: [string, unknown, string][] = [
  ['null document', null, '(document): Invalid input: expected object, received null (got null)'],
  [
    'array document',
    [GOOD],
    '(document): Invalid input: expected object, received array (got PEM text, not shown)',
  ],
  ['string document', 'bundle', '(document): Invalid input: expected object, received string (got "bundle")'],
  ['number document', 7, '(document): Invalid input: expected object, received number (got 7)'],
  [
    'empty object',
    {},
    'kind: Invalid input: expected "database-credentials" (missing); version: Invalid input: expected 1 (missing); service: Invalid input: expected string, received undefined (missing); protocol: ' +
      `${PROTOCOLS} (missing); endpoint: Invalid input: expected string, received undefined (missing) (and 8 more)`,
  ],
  ['kind missing', without('kind'), 'kind: Invalid input: expected "database-credentials" (missing)'],
  [
    'kind wrong',
    { ...GOOD, kind: 'role' },
    'kind: Invalid input: expected "database-credentials" (got "role")',
  ],
  ['version missing', without('version'), 'version: Invalid input: expected 1 (missing)'],
  ['version 2', { ...GOOD, version: 2 }, 'version: Invalid input: expected 1 (got 2)'],
  ['version as text', { ...GOOD, version: '1' }, 'version: Invalid input: expected 1 (got "1")'],
  [
    'service missing',
    without('service'),
    'service: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'service empty',
    { ...GOOD, service: '' },
    'service: Too small: expected string to have >=1 characters (got "")',
  ],
  [
    'service number',
    { ...GOOD, service: 5 },
    'service: Invalid input: expected string, received number (got 5)',
  ],
  [
    'service empty array',
    { ...GOOD, service: [] },
    'service: Invalid input: expected string, received array (got []); service: Too small: expected array to have >=1 items (got [])',
  ],
  ['protocol missing', without('protocol'), `protocol: ${PROTOCOLS} (missing)`],
  ['protocol unknown', { ...GOOD, protocol: 'oracle' }, `protocol: ${PROTOCOLS} (got "oracle")`],
  ['protocol number', { ...GOOD, protocol: 1 }, `protocol: ${PROTOCOLS} (got 1)`],
  [
    'endpoint missing',
    without('endpoint'),
    'endpoint: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'endpoint no port',
    { ...GOOD, endpoint: 'orders.internal' },
    `endpoint: ${HOST_PORT_HINT} (got "orders.internal")`,
  ],
  [
    'endpoint object',
    { ...GOOD, endpoint: {} },
    'endpoint: Invalid input: expected string, received object (got {})',
  ],
  [
    'serverName missing',
    without('serverName'),
    'serverName: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'serverName empty',
    { ...GOOD, serverName: '' },
    'serverName: Too small: expected string to have >=1 characters (got "")',
  ],
  [
    'serverName true',
    { ...GOOD, serverName: true },
    'serverName: Invalid input: expected string, received boolean (got true)',
  ],
  [
    'database missing',
    without('database'),
    'database: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'database null',
    { ...GOOD, database: null },
    'database: Invalid input: expected string, received null (got null)',
  ],
  [
    'username missing',
    without('username'),
    'username: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'username empty',
    { ...GOOD, username: '' },
    'username: Too small: expected string to have >=1 characters (got "")',
  ],
  [
    'username object with length 0',
    { ...GOOD, username: { length: 0 } },
    'username: Invalid input: expected string, received object (got {"length":0}); username: Too small: expected unknown to be >=1 (got {"length":0})',
  ],
  ['format missing', without('format'), `format: ${FORMATS} (missing)`],
  ['format unknown', { ...GOOD, format: 'pkcs12' }, `format: ${FORMATS} (got "pkcs12")`],
  [
    'serial missing',
    without('serial'),
    'serial: Invalid input: expected string, received undefined (missing)',
  ],
  ['serial not hex', { ...GOOD, serial: 'xyz' }, 'serial: must be the certificate serial in hex (got "xyz")'],
  [
    'serial too long',
    { ...GOOD, serial: 'a'.repeat(65) },
    `serial: must be the certificate serial in hex (got "${'a'.repeat(56)}...)`,
  ],
  [
    'serial number',
    { ...GOOD, serial: 10 },
    'serial: Invalid input: expected string, received number (got 10)',
  ],
  [
    'issuedAt missing',
    without('issuedAt'),
    'issuedAt: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'issuedAt date only',
    { ...GOOD, issuedAt: '2026-01-01' },
    'issuedAt: Invalid ISO datetime (got "2026-01-01")',
  ],
  [
    'issuedAt no seconds',
    { ...GOOD, issuedAt: '2026-01-01T00:00Z' },
    'issuedAt: Invalid ISO datetime (got "2026-01-01T00:00Z")',
  ],
  [
    'issuedAt 30 February',
    { ...GOOD, issuedAt: '2026-02-30T00:00:00Z' },
    'issuedAt: Invalid ISO datetime (got "2026-02-30T00:00:00Z")',
  ],
  [
    'expiresAt missing',
    without('expiresAt'),
    'expiresAt: Invalid input: expected string, received undefined (missing)',
  ],
  [
    'expiresAt epoch number',
    { ...GOOD, expiresAt: 1767225600 },
    'expiresAt: Invalid input: expected string, received number (got 1767225600)',
  ],
  [
    'expiresAt no zone',
    { ...GOOD, expiresAt: '2026-01-01T08:00:00' },
    'expiresAt: Invalid ISO datetime (got "2026-01-01T08:00:00")',
  ],
  ['files missing', without('files'), 'files: Invalid input: expected object, received undefined'],
  ['files array', { ...GOOD, files: [] }, 'files: Invalid input: expected object, received array'],
  ['files null', { ...GOOD, files: null }, 'files: Invalid input: expected object, received null'],
  // A name that is also a property of every object is an unknown file like any other, not a required one.
  [
    'files.toString an array',
    { ...GOOD, files: { ...GOOD.files, toString: [] } },
    'files.toString: Invalid input: expected string, received array',
  ],
  [
    'files.tlscert missing',
    withoutFile('tlscert'),
    'files.tlscert: Invalid input: expected string, received undefined',
  ],
  ['files.key missing', withoutFile('key'), 'files.key: Invalid input: expected string, received undefined'],
  [
    'files.teleport-host-ca.crt missing',
    withoutFile('teleport-host-ca.crt'),
    'files.teleport-host-ca.crt: Invalid input: expected string, received undefined',
  ],
  [
    'files.teleport-database-ca.crt missing',
    withoutFile('teleport-database-ca.crt'),
    'files.teleport-database-ca.crt: Invalid input: expected string, received undefined',
  ],
  [
    'files.tlscert not PEM',
    { ...GOOD, files: { ...FILES, tlscert: 'MIIB' } },
    'files.tlscert: must be a PEM certificate',
  ],
  [
    'files.key not PEM',
    { ...GOOD, files: { ...FILES, key: 'secret' } },
    'files.key: must be a PEM private key',
  ],
  [
    'files.teleport-host-ca.crt not PEM',
    { ...GOOD, files: { ...FILES, 'teleport-host-ca.crt': '' } },
    'files.teleport-host-ca.crt: must be a PEM CA bundle',
  ],
  [
    'files.key a number',
    { ...GOOD, files: { ...FILES, key: 1 } },
    'files.key: Invalid input: expected string, received number',
  ],
  [
    'extra file not text',
    { ...GOOD, files: { ...FILES, 'extra.pem': {} } },
    'files.extra.pem: Invalid input: expected string, received object',
  ],
  ['file name escapes', { ...GOOD, files: { ...FILES, '../escape': 'x' } }, `files.../escape: ${BAD_NAME}`],
  [
    'file name absolute',
    { ...GOOD, files: { ...FILES, '/etc/passwd': 'x' } },
    `files./etc/passwd: ${BAD_NAME}`,
  ],
  ['file name dot segment', { ...GOOD, files: { ...FILES, 'a/./b': 'x' } }, `files.a/./b: ${BAD_NAME}`],
  [
    'bad PEM and bad name: both',
    { ...GOOD, files: { ...FILES, tlscert: 'x', 'a b': 'x' } },
    `files.tlscert: must be a PEM certificate; files.a b: ${BAD_NAME}`,
  ],
  [
    'a file that is not text hides bad names',
    { ...GOOD, files: { ...FILES, key: 1, 'a b': 'x' } },
    'files.key: Invalid input: expected string, received number',
  ],
  [
    'PEM text in a field that is not a file is not shown',
    { ...GOOD, serial: FILES.key },
    'serial: must be the certificate serial in hex (got PEM text, not shown)',
  ],
];

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

function formerProblems(value: unknown) {
  const r = FORMER_SCHEMA.safeParse(value);
  return r.success
    ? { problems: [], bundle: r.data }
    : { problems: r.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) };
}

describe('credential bundle shape', () => {
  it.each(BAD)('%s: the message names the field and the problem', (_, value, message) => {
    const err = thrown(() => validateBundleShape(value));
    expect(err).toBeInstanceOf(BundleError);
    expect(err.message).toBe(PREFIX + message);
    expect(checkBundleShape(value)).toEqual(formerProblems(value));
  });

  it('accepts a good bundle, drops unknown top-level fields and keeps unknown files', () => {
    const value = { ...GOOD, comment: 'hand-made', files: { ...FILES, 'cockroach/node.crt': 'x' } };
    const bundle = validateBundleShape(value);
    expect(bundle).toEqual({ ...GOOD, files: { ...FILES, 'cockroach/node.crt': 'x' } });
    expect(bundle).not.toHaveProperty('comment');
    expect(checkBundleShape(value)).toEqual(formerProblems(value));
    for (const format of OUTPUT_FORMATS)
      for (const protocol of DB_PROTOCOLS)
        expect(validateBundleShape({ ...GOOD, format, protocol })).toMatchObject({ format, protocol });
  });

  it('a JSON "__proto__" key is an ordinary unknown field or file', () => {
    const text = JSON.stringify({ ...GOOD, files: { ...FILES, x: 'y' } })
      .replace('{', '{"__proto__":{"polluted":1},')
      .replace('"x":"y"', '"__proto__":"y"');
    const value = JSON.parse(text) as unknown;
    expect(validateBundleShape(value)).toEqual(GOOD);
    expect(checkBundleShape(value)).toEqual(formerProblems(value));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('text that is not JSON is refused without quoting it', () => {
    for (const text of ['', '{', '{"kind": "database-credentials",', 'not json', `{"key": "${FILES.key}`]) {
      const err = thrown(() => parseBundle(text, 'secret orders'));
      expect(err).toBeInstanceOf(BundleError);
      expect(err.message).toMatch(
        /^secret orders is not JSON \((syntax error at character \d+ of \d+|\d+ characters)\)$/,
      );
    }
    expect(() => parseBundle('', 'secret orders')).toThrow('secret orders is not JSON (0 characters)');
  });

  it('property: the same problems as the former schema for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), (value) => {
        expect(checkBundleShape(value)).toEqual(formerProblems(value));
      }),
      { numRuns: 500 },
    );
  });

  it('property: the same problems as the former schema with any field or file replaced or added', () => {
    const fields = [...Object.keys(GOOD), 'extra'];
    const files = [...Object.keys(FILES), 'cockroach/node.crt', '../x', 'a//b', ''];
    const anyValue = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom(
        '',
        '-----BEGIN ',
        'x:1',
        '[::1]:5432',
        'ab',
        '2024-02-29T00:00:00Z',
        '2023-02-29T00:00:00Z',
      ),
      fc.constantFrom(...DB_PROTOCOLS, ...OUTPUT_FORMATS, 1, 'database-credentials'),
      fc.constant(undefined),
      fc.constantFrom(new Date(0), new Map(), Number.NaN, Object.create(null) as object),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...fields), anyValue), { maxLength: 3 }),
        fc.array(fc.tuple(fc.oneof(fc.constantFrom(...files), fc.string()), anyValue), { maxLength: 3 }),
        (top, inFiles) => {
          const value: Record<string, unknown> = { ...GOOD, files: { ...FILES } };
          for (const [k, v] of inFiles) (value.files as Record<string, unknown>)[k] = v;
          for (const [k, v] of top) value[k] = v;
          expect(checkBundleShape(value)).toEqual(formerProblems(value));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
