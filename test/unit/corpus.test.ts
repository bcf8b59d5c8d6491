/**
 * Bad input, at scale: property-based and fixed-corpus tests of the parsers that take text or JSON from
 * outside — resource files, bot configurations, credential bundles and authority API requests.
 *
 * What must hold for every input: the parser returns a value or fails with its own error type (never a
 * TypeError, RangeError or a crashed process), within a bounded time, with a bounded message that names
 * where the input came from and never quotes secret material. The API handler always answers with a
 * well-formed response and never calls malformed input an internal error.
 *
 * The single-case checks of each parser live beside it (resources, bot-config, secretsmanager and
 * api-handler tests); this file adds arbitrary and hostile inputs.
 */
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { handleApiRequest } from '../../src/api/handler.js';
import { type ApiResponse, responseSchema } from '../../src/api/protocol.js';
import type { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { parseBotConfig } from '../../src/bot/config.js';
import type { ManualClock } from '../../src/clock.js';
import { ConfigError } from '../../src/config/errors.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { BundleError, parseBundle, serializeBundle } from '../../src/credentials/bundle.js';
import { BrokerError } from '../../src/errors.js';
import { CA_TYPES } from '../../src/pki/ca.js';
import type { KeyPairPem } from '../../src/pki/keys.js';
import { createProof } from '../../src/pki/proof.js';
import { testAuthority } from '../support/authority.js';
import {
  EXAMPLE_ROUTE,
  exampleResourcesYaml,
  INTERNAL_DB_URI,
  issueBundle,
  nowSeconds,
  testKeyPair,
} from '../support/fixtures.js';

const FILE = 'corpus/input.yaml';
const TOKEN = '9d4e2b7a1c0f3e5d8b6a4c2e0f1d3b5a';
/** Generous: the parsers take a few milliseconds per input; a hang or a blow-up takes far longer. */
const MAX_MS = 2_000;
/** A message that quotes a whole hostile input would be megabytes; errors quote at most a short excerpt. */
const MAX_MESSAGE = 4_000;

type YamlParser = (text: string, file: string) => unknown;
const YAML_PARSERS: [string, YamlParser][] = [
  ['parseResources', parseResources],
  ['parseBotConfig', parseBotConfig],
];

/** Runs one parser on one input: a value or a ConfigError naming the file, fast, with a bounded message. */
function checkYaml(parse: YamlParser, text: string, maxMs = MAX_MS): ConfigError | undefined {
  const started = performance.now();
  let error: unknown;
  try {
    parse(text, FILE);
  } catch (err) {
    error = err;
  }
  const ms = performance.now() - started;
  expect(ms, `took ${Math.round(ms)} ms`).toBeLessThan(maxMs);
  if (error === undefined) return undefined;
  if (!(error instanceof ConfigError)) throw error;
  expect(error.message.startsWith(`${FILE}: `), error.message.slice(0, 200)).toBe(true);
  expect(error.message.length).toBeLessThan(MAX_MESSAGE);
  return error;
}

/** A valid value most of the time, anything JSON otherwise: gets inputs past the first checks. */
const mostly = <T>(valid: T) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(valid) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );

const resourceDocument = fc.oneof(
  fc.record({
    kind: mostly('role'),
    version: mostly('v6'),
    metadata: fc.record({ name: mostly('example-role'), labels: mostly({ env: 'dev' }) }),
    spec: fc.record({
      allow: fc.record({
        db_labels: mostly({ '*': '*' }),
        db_names: mostly(['example']),
        db_users: mostly(['alice']),
        rules: mostly([{ resources: ['db'], verbs: ['read', 'list'] }]),
      }),
      options: mostly({ max_session_ttl: '8h' }),
    }),
  }),
  fc.record({
    kind: mostly('db'),
    version: mostly('v3'),
    metadata: fc.record({ name: mostly('example-server') }),
    spec: fc.record({
      protocol: mostly('postgres'),
      uri: mostly('db.internal:5432'),
      tls: mostly({ server_name: 'db.internal' }),
    }),
  }),
  fc.record({
    kind: mostly('token'),
    version: mostly('v2'),
    metadata: fc.record({ name: mostly(TOKEN) }),
    spec: fc.record({ join_method: mostly('token'), bot_name: mostly('example') }),
  }),
);

const botConfigDocument = fc.record({
  version: mostly('v2'),
  auth_server: mostly('unix:///run/broker/authority.sock'),
  onboarding: fc.record({ join_method: mostly('token'), token: fc.constant(TOKEN) }),
  storage: mostly({ type: 'memory' }),
  credential_ttl: mostly('1h'),
  renewal_interval: mostly('20m'),
  outputs: fc.array(
    fc.record({
      type: mostly('database'),
      destination: mostly({ type: 'directory', path: '/var/lib/broker/out' }),
      service: mostly('example-server'),
      database: mostly('example'),
      username: mostly('alice'),
      format: mostly(''),
    }),
    { maxLength: 3 },
  ),
});

/** Hostile YAML that fast-check would rarely produce. Each entry is parsed by both parsers. */
function nastyYaml(): Record<string, string> {
  const deep = (n: number, open: string, close: string, inner = '1') =>
    open.repeat(n) + inner + close.repeat(n);
  const laughs = [
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ...Array.from({ length: 9 }, (_, i) => {
      const prev = String.fromCharCode(97 + i);
      const name = String.fromCharCode(98 + i);
      return `${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`;
    }),
  ].join('\n');
  const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)).toString(
    'latin1',
  );
  return {
    empty: '',
    whitespace: ' \n\t\n   \r\n',
    'only a document marker': '---\n',
    'only an end marker': '...\n',
    null: '~',
    'a number': '1e999',
    '.inf': '.inf',
    'flow sequence nested 100 deep': deep(100, '[', ']'),
    'flow sequence nested 1000 deep': deep(1000, '[', ']'),
    'flow sequence nested 20000 deep': deep(20_000, '[', ']'),
    'flow mapping nested 1000 deep': deep(1000, '{a: ', '}'),
    'block mapping nested 1000 deep': `${Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n')} 1`,
    'block sequence nested 1000 deep': `${Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i * 2)}-`).join('\n')} 1`,
    'compact sequence nested 5000 deep': `${'- '.repeat(5000)}1`,
    'deep nesting inside a valid role': `kind: role\nversion: v6\nmetadata: { name: r }\nspec:\n  allow:\n    db_names: ${deep(2000, '[', ']', 'x')}\n`,
    'a 5 MB scalar as the kind': `kind: ${'x'.repeat(5_000_000)}\n`,
    'a 5 MB version': `kind: role\nversion: "${'v'.repeat(5_000_000)}"\n`,
    'a 1 MB key': `${'k'.repeat(1_000_000)}: 1\n`,
    'a 1 MB role name': `kind: role\nversion: v6\nmetadata: { name: ${'n'.repeat(1_000_000)} }\nspec: {}\n`,
    'a 1 MB line of spaces': `kind: role${' '.repeat(1_000_000)}\n`,
    'billion laughs (9^10 references)': `${laughs}\nkind: role\n`,
    'billion laughs used as the spec': `${laughs}\nkind: role\nversion: v6\nmetadata: { name: r }\nspec: { allow: { db_names: *j } }\n`,
    'merge-key bomb':
      'a: &a {x: 1, y: 2}\nb: &b {<<: [*a, *a, *a, *a]}\nc: &c {<<: [*b, *b, *b, *b]}\nkind: role\n',
    'an unresolved alias': 'kind: *nope\n',
    'an anchor on a key and an alias as a key': 'kind: role\n&k version: v6\n*k : v7\n',
    'a complex key': '? [a, b]\n: 1\nkind: role\n',
    'tabs as indentation': 'kind: role\nmetadata:\n\tname: r\n',
    'tabs inside values': 'kind:\trole\nversion:\tv6\n',
    'a byte order mark': '\uFEFFkind: role\nversion: v6\nmetadata: { name: r }\nspec: {}\n',
    'a byte order mark per document': '\uFEFFkind: role\n---\n\uFEFFkind: db\n',
    'binary bytes': binary,
    'NUL bytes': 'kind: ro\0le\nversion: \0\n',
    'invalid UTF-8 decoded with replacement characters': Buffer.from([
      0x6b, 0x3a, 0x20, 0xff, 0xfe, 0xc3, 0x28,
    ]).toString('utf8'),
    'a lone surrogate': 'kind: "\ud800"\n',
    'CRLF line endings': 'kind: role\r\nversion: v6\r\nmetadata: { name: r }\r\nspec: {}\r\n',
    'CR-only line endings': 'kind: role\rversion: v6\r',
    'duplicate keys': 'kind: role\nkind: db\n',
    'duplicate keys in a flow mapping': '{kind: role, kind: role}\n',
    '!!binary': 'kind: !!binary cm9sZQ==\nversion: v6\n',
    '!!binary as the whole document': '!!binary aGVsbG8=\n',
    'an unknown tag': 'kind: !foo role\n',
    'a js tag': 'kind: !!js/function "function(){}"\n',
    '!!set and !!omap': 'a: !!set {x, y}\nb: !!omap [c: 1]\nkind: role\n',
    'a %YAML directive': '%YAML 1.1\n---\nkind: role\n',
    'a bad %YAML directive': '%YAML 9.9\n---\nkind: role\n',
    'a %TAG directive': '%TAG !e! tag:example.com,2000:\n---\nkind: !e!role role\n',
    'YAML 1.1 booleans and octals': 'kind: yes\nversion: 0o777\nmetadata: { name: 010 }\n',
    '10000 empty documents': '---\n'.repeat(10_000),
    '2000 small documents': 'kind: bot\nversion: v1\nmetadata: { name: b }\nspec: {}\n---\n'.repeat(2000),
    'a document that is a list': '- kind: role\n- kind: db\n',
    'a block scalar with a bad indentation indicator': 'kind: |9\n  role\n',
    'an unterminated quote': 'kind: "role\n',
    'an unterminated flow mapping': 'kind: { name: r\n',
    'a stray closing bracket': 'kind: role]\n',
    'a key with a very long implicit key': `${'a'.repeat(2000)}: 1\n`,
    'a token inside broken YAML': `onboarding: { token: ${TOKEN}\n`,
  };
}

describe('parseResources and parseBotConfig on arbitrary and hostile text', () => {
  it('property: arbitrary strings give a value or a ConfigError naming the file', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (text) => {
        for (const [, parse] of YAML_PARSERS) checkYaml(parse, text);
      }),
      { numRuns: 500 },
    );
  });

  it('property: arbitrary JSON values rendered as YAML give a value or a ConfigError naming the file', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 6 }), fc.object({ maxDepth: 4 })), (value) => {
        const text = stringify(value);
        for (const [, parse] of YAML_PARSERS) checkYaml(parse, text);
      }),
      { numRuns: 400 },
    );
  });

  it('property: documents that are mostly valid resources give resources or a ConfigError naming the document', () => {
    fc.assert(
      fc.property(fc.array(resourceDocument, { minLength: 1, maxLength: 3 }), (docs) => {
        const text = docs.map((d) => stringify(d)).join('---\n');
        const err = checkYaml(parseResources, text);
        if (err) {
          expect(err.message).toMatch(/: document \d+/);
          // A token-method token's name is its secret: never in an error, wherever the file breaks.
          expect(err.message).not.toContain(TOKEN);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('property: bot configurations that are mostly valid parse or fail without quoting the token', () => {
    fc.assert(
      fc.property(botConfigDocument, (doc) => {
        const err = checkYaml(parseBotConfig, stringify(doc));
        if (err) expect(err.message).not.toContain(TOKEN);
      }),
      { numRuns: 400 },
    );
  });

  it('property: the onboarding token is never quoted, wherever under onboarding it is misplaced', () => {
    const misplaced = fc.oneof(
      fc.constant<unknown>(TOKEN),
      fc.constant<unknown>([TOKEN]),
      fc.constant<unknown>({ [TOKEN]: null }),
      fc.constant<unknown>({ join_method: TOKEN }),
      fc.constant<unknown>({ join_method: 'token', token: { value: TOKEN } }),
      fc.constant<unknown>({ join_method: 'token', [TOKEN]: 'token' }),
      fc.constant<unknown>({ join_method: 'token', token: TOKEN, [TOKEN]: null }),
      fc.record({ join_method: fc.constantFrom('token', 'iam', 'Token', 1), token: fc.constant(TOKEN) }),
    );
    fc.assert(
      fc.property(misplaced, (onboarding) => {
        const text = stringify({
          version: 'v2',
          auth_server: 'unix:///run/broker/authority.sock',
          onboarding,
          storage: { type: 'memory' },
          outputs: [
            {
              type: 'database',
              destination: { type: 'memory' },
              service: 'example-server',
              database: 'example',
              username: 'alice',
            },
          ],
        });
        const err = checkYaml(parseBotConfig, text);
        if (err) {
          expect(err.message).not.toContain(TOKEN);
          expect(err.message).toContain('onboarding');
        }
      }),
      { numRuns: 100 },
    );
  });

  const corpus = nastyYaml();
  for (const [what, text] of Object.entries(corpus)) {
    it(`corpus: ${what}`, () => {
      // Megabyte inputs get more time: parsing them is linear, but linear in megabytes.
      const maxMs = text.length > 500_000 ? 10_000 : MAX_MS;
      for (const [, parse] of YAML_PARSERS) {
        const err = checkYaml(parse, text, maxMs);
        if (err) expect(err.message).not.toContain(TOKEN);
      }
    });
  }

  it('refuses collections nested more than 100 levels deep, naming the file, line and column', () => {
    const err = checkYaml(parseResources, `kind: role\nspec: ${'['.repeat(150)}${']'.repeat(150)}\n`);
    expect(err?.message).toBe(
      `${FILE}: collections are nested more than 100 levels deep (at line 2, column 107); a configuration file needs far fewer`,
    );
    expect(checkYaml(parseResources, `${'['.repeat(90)}${']'.repeat(90)}`)?.message).not.toMatch(/nested/);
  });
});

// ---- credential bundles ------------------------------------------------------------------------------

/** True when `text` holds any 16-character run of the base64 body of `pem` (key or certificate material). */
function quotesPemBody(text: string, pem: string): boolean {
  const body = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  for (let i = 0; i + 16 <= body.length; i += 8) if (text.includes(body.slice(i, i + 16))) return true;
  return false;
}

describe('parseBundle on arbitrary JSON and corrupted real bundles', () => {
  let bundles: CredentialBundle[];
  let texts: string[];

  beforeAll(async () => {
    const { authority } = await testAuthority({ start: START, clusterName: 'corpus', resources: RESOURCES });
    bundles = [];
    for (const slot of [0, 1])
      bundles.push(await issueBundle(authority, { route: ROUTE, slot, format: slot === 0 ? '' : 'tls' }));
    texts = bundles.map(serializeBundle);
  });

  /** parseBundle either returns a bundle whose key matches its certificate or throws a BundleError that quotes no PEM. */
  function checkBundle(text: string): void {
    let result: CredentialBundle | undefined;
    try {
      result = parseBundle(text, 'secret broker/example');
    } catch (err) {
      expect(err).toBeInstanceOf(BundleError);
      const message = (err as Error).message;
      expect(message).toContain('secret broker/example');
      expect(message).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
      for (const b of bundles) {
        expect(quotesPemBody(message, b.files.key as string), message).toBe(false);
        expect(quotesPemBody(message, b.files.tlscert as string), message).toBe(false);
      }
      expect(message.length).toBeLessThan(MAX_MESSAGE);
      return;
    }
    const cert = new X509Certificate(result.files.tlscert as string);
    expect(BigInt(`0x${cert.serialNumber}`)).toBe(BigInt(`0x${result.serial}`));
  }

  it('parses the real bundles (the corpus starts from valid input)', () => {
    for (const text of texts) expect(parseBundle(text).serial).toMatch(/^[0-9a-f]+$/);
  });

  it('property: arbitrary text fails with a BundleError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        expect(() => parseBundle(text, 'secret broker/example')).toThrow(BundleError);
      }),
      { numRuns: 300 },
    );
  });

  it('property: arbitrary JSON values fail with a BundleError', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (value) => {
        expect(() => parseBundle(JSON.stringify(value) ?? 'null', 'secret broker/example')).toThrow(
          BundleError,
        );
      }),
      { numRuns: 300 },
    );
  });

  it('property: a real bundle with any field replaced by any JSON value parses consistently or fails cleanly', () => {
    const fields = [
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
      'files',
    ];
    fc.assert(
      fc.property(
        fc.nat(1),
        fc.constantFrom(...fields),
        fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined)),
        (which, field, value) => {
          const doc = JSON.parse(texts[which] as string) as Record<string, unknown>;
          doc[field] = value;
          checkBundle(JSON.stringify(doc));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: artifact files replaced, renamed, moved into other fields or swapped never leak into errors', () => {
    fc.assert(
      fc.property(
        fc.nat(1),
        fc.constantFrom('tlscert', 'key', 'teleport-host-ca.crt', 'teleport-database-ca.crt', 'tls.key'),
        fc.constantFrom(
          'endpoint',
          'serverName',
          'serial',
          'service',
          'issuedAt',
          'protocol',
          'format',
          'kind',
        ),
        fc.constantFrom('move-to-field', 'swap-key', 'rename', 'truncate', 'drop', 'number'),
        (which, file, field, how) => {
          const doc = JSON.parse(texts[which] as string) as Record<string, unknown> & {
            files: Record<string, unknown>;
          };
          const other = JSON.parse(texts[1 - which] as string) as { files: Record<string, string> };
          const content = doc.files[file] ?? doc.files.key;
          if (how === 'move-to-field') doc[field] = content;
          if (how === 'swap-key') doc.files.key = other.files.key;
          if (how === 'rename') {
            doc.files[`../${file}`] = content;
            delete doc.files[file];
          }
          if (how === 'truncate') doc.files[file] = String(content).slice(0, 200);
          if (how === 'drop') delete doc.files[file];
          if (how === 'number') doc.files[file] = 42;
          checkBundle(JSON.stringify(doc));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: a real bundle with bytes flipped, cut short or spliced fails cleanly or stays consistent', () => {
    fc.assert(
      fc.property(
        fc.nat(1),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat(), { nil: undefined }),
        (which, flips, cut) => {
          const bytes = Buffer.from(texts[which] as string, 'utf8');
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          const text = bytes.toString('utf8');
          checkBundle(cut === undefined ? text : text.slice(0, cut % text.length));
        },
      ),
      { numRuns: 400 },
    );
  });
});

// ---- the authority API --------------------------------------------------------------------------------

/** The example, a second bot that renews in the API tests, and an iam token for the example bot. */
const RESOURCES = exampleResourcesYaml({
  role: { maxSessionTtl: null },
  db: { uri: INTERNAL_DB_URI },
  bots: ['example', 'renewer'],
  extra: `kind: token
version: v2
metadata: { name: example-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: '111111111111' }]
`,
});
const ROUTE = EXAMPLE_ROUTE;
/** One initialisation (three RSA CA keys) serves every authority of this file. */
const START = nowSeconds();

/** The codes a refusal of malformed or unauthorised input may carry; `internal` is never one of them. */
const REFUSALS = ['bad_request', 'access_denied', 'generation_mismatch'];

type Json = Record<string, unknown>;

describe('handleApiRequest on arbitrary values and mutated valid requests', () => {
  let authority: Authority;
  let clock: ManualClock;
  let keys: KeyPairPem;
  let identityPem: string;
  /** Another bot's identity for the renewals: one that renews (or gets locked) leaves `example` alone. */
  let renewerPem: string;
  let freshKey: KeyPairPem;

  beforeAll(async () => {
    ({ authority, clock } = await testAuthority({
      start: START,
      clusterName: 'corpus',
      with: {
        // Never the network: STS answers every forwarded request with the error a bad signature gets.
        iamVerifier: async () => {
          throw new BrokerError('access_denied', 'AWS STS rejected the signed GetCallerIdentity request');
        },
      },
    }));
    for (const type of CA_TYPES) expect(await authority.caBundle(type)).toContain('BEGIN CERTIFICATE');
    await authority.createResources(parseResources(RESOURCES, 'resources.yaml'));
    keys = await testKeyPair(0);
    freshKey = await testKeyPair(1);
    const { token } = await authority.addToken('example');
    identityPem = (await authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem })).certificatePem;
    const renewer = await authority.addToken('renewer');
    renewerPem = (await authority.joinWithToken({ token: renewer.token, publicKeyPem: keys.publicKeyPem }))
      .certificatePem;
  });

  /** A response that fits the protocol; a refusal carries a known code. */
  function checkResponse(response: ApiResponse, request: unknown): void {
    const shown = JSON.stringify(request)?.slice(0, 300);
    expect(responseSchema.safeParse(response).success, shown).toBe(true);
    if (!response.ok) {
      expect(response.error.code, `${response.error.message} for ${shown}`).not.toBe('internal');
      expect(REFUSALS, `${response.error.code}: ${response.error.message} for ${shown}`).toContain(
        response.error.code,
      );
    }
  }

  let sequence = 0;
  const requestId = () => `corpus-${(++sequence).toString().padStart(8, '0')}`;

  /** Valid requests of every type; the join uses a token that does not exist, so it never spends one. */
  function validRequests(): Json[] {
    const renewParams = { publicKeyPem: freshKey.publicKeyPem };
    const issueParams = { route: ROUTE, publicKeyPem: freshKey.publicKeyPem, ttlMs: 600_000 };
    return [
      {
        v: 1,
        type: 'join',
        requestId: requestId(),
        params: { joinMethod: 'token', token: TOKEN, publicKeyPem: freshKey.publicKeyPem },
      },
      {
        v: 1,
        type: 'join',
        requestId: requestId(),
        params: {
          joinMethod: 'iam',
          token: 'example-iam',
          publicKeyPem: freshKey.publicKeyPem,
          challengeId: '0'.repeat(32),
          stsRequest: {
            method: 'POST',
            url: 'https://sts.us-east-1.amazonaws.com/',
            headers: { host: 'sts.us-east-1.amazonaws.com' },
            body: 'Action=GetCallerIdentity&Version=2011-06-15',
          },
        },
      },
      { v: 1, type: 'challenge', requestId: requestId(), params: {} },
      { v: 1, type: 'ca-bundles', requestId: requestId(), params: {} },
      {
        v: 1,
        type: 'renew',
        requestId: requestId(),
        identityPem: renewerPem,
        proof: createProof('bot.renew', renewParams, keys.privateKeyPem, clock.now()),
        params: renewParams,
      },
      {
        v: 1,
        type: 'issue-db-cert',
        requestId: requestId(),
        identityPem,
        proof: createProof('db_cert.issue', issueParams, keys.privateKeyPem, clock.now()),
        params: issueParams,
      },
    ];
  }

  /** Every path to a value in a JSON document, e.g. ['params', 'route', 'service']. */
  function paths(value: unknown, prefix: string[] = []): string[][] {
    if (value === null || typeof value !== 'object') return [prefix];
    const children = Object.entries(value as Json).flatMap(([k, v]) => paths(v, [...prefix, k]));
    return [prefix, ...children];
  }

  function setAt(doc: Json, path: string[], value: unknown): void {
    if (path.length === 0) return;
    let cur: Json = doc;
    for (const key of path.slice(0, -1)) cur = cur[key] as Json;
    const last = path[path.length - 1] as string;
    if (value === undefined) delete cur[last];
    else cur[last] = value;
  }

  /** Strings that have broken parsers before: path tricks, prototype keys, PEM fragments, control bytes. */
  const hostileString = fc.constantFrom(
    '',
    '../../etc/passwd',
    'a/b',
    '..',
    '-leading-dash',
    '__proto__',
    'constructor',
    'a'.repeat(300),
    'x'.repeat(70_000),
    '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
    '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    'not-a-date',
    '9999-99-99T99:99:99Z',
    '\u0000',
    '\ud800',
    'Alice',
    'ALICE',
    'alice\n',
  );
  const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 2 }), hostileString, fc.constant(undefined));

  it('property: arbitrary JSON values are refused as bad_request', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.anything({ maxDepth: 3 })), async (raw) => {
        const response = await handleApiRequest(authority, raw);
        checkResponse(response, raw);
        expect(response.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('property: valid requests with one value replaced or removed get a protocol answer, never internal', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(5), fc.nat(), anyValue, async (which, pick, value) => {
        const request = validRequests()[which] as Json;
        const all = paths(request);
        setAt(request, all[pick % all.length] as string[], value);
        checkResponse(await handleApiRequest(authority, request), request);
      }),
      { numRuns: 400 },
    );
  });

  it('property: request ids of the allowed shape never break the handler', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(5), fc.stringMatching(/^[A-Za-z0-9-]{8,64}$/), async (which, id) => {
        const request = { ...(validRequests()[which] as Json), requestId: id };
        checkResponse(await handleApiRequest(authority, request), request);
      }),
      { numRuns: 200 },
    );
  });

  it('property: params a bot signs with its real identity, however odd, are refused or served, never internal', async () => {
    // A bot that holds a valid identity may still send nonsense (a bug, or a compromised bot): the proof
    // is valid, so these requests reach the authority's own checks.
    const route = fc.record({
      service: fc.oneof(
        fc.constant('example-server'),
        hostileString,
        fc.string({ minLength: 1, maxLength: 20 }),
      ),
      database: fc.oneof(fc.constant('example'), hostileString),
      username: fc.oneof(fc.constant('alice'), hostileString),
    });
    await fc.assert(
      fc.asyncProperty(
        route,
        fc.option(fc.integer({ min: 1, max: 7 * 24 * 3_600_000 }), { nil: undefined }),
        fc.constantFrom('fresh', 'identity-key', 'ec-key-pem', 'garbage'),
        async (r, ttlMs, keyKind) => {
          const publicKeyPem =
            keyKind === 'fresh'
              ? freshKey.publicKeyPem
              : keyKind === 'identity-key'
                ? keys.publicKeyPem
                : keyKind === 'ec-key-pem'
                  ? '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n'
                  : 'garbage';
          const params = { route: r, publicKeyPem, ...(ttlMs ? { ttlMs } : {}) };
          const request = {
            v: 1,
            type: 'issue-db-cert',
            requestId: requestId(),
            identityPem,
            proof: createProof('db_cert.issue', params, keys.privateKeyPem, clock.now()),
            params,
          };
          checkResponse(await handleApiRequest(authority, request), request);
        },
      ),
      { numRuns: 200 },
    );
  });
});
