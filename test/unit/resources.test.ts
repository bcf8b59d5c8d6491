import { describe, expect, it } from 'vitest';
import { hostOf, parseKind, parseResources, type Resource } from '../../src/authority/resources.js';
import { ConfigError } from '../../src/config/errors.js';
import { botYaml, exampleResourcesYaml } from '../support/fixtures.js';

const FILE = 'resources/example.yaml';

/** The reference guide's example as shipped (examples/role.yaml, examples/db.yaml), its bot and an iam token. */
const SEED = exampleResourcesYaml({
  extra: `kind: token
version: v2
metadata: { name: example-bot-iam }
spec:
  join_method: iam                    # or token
  bot_name: example
  allow: [{ aws_account: "111111111111", aws_arn: "arn:aws:sts::111111111111:assumed-role/example-bot/*" }]
`,
});

const TOKEN_SECRET = 'c0ffee5ecret0123456789abcdef';

function parseError(text: string, file = FILE): ConfigError {
  try {
    parseResources(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('bad_config');
    return err as ConfigError;
  }
  throw new Error('expected parseResources to throw');
}

const bot = (name: string) => botYaml(name);

describe('parseResources: valid files', () => {
  it('parses the shipped example: role v6, db v3, bot v1 and an iam token v2', () => {
    const resources = parseResources(SEED, FILE);
    expect(resources.map((r) => `${r.kind}/${r.metadata.name}`)).toEqual([
      'role/example-role',
      'db/example-server',
      'bot/example',
      'token/example-bot-iam',
    ]);
    const [role, db, botResource, token] = resources as [
      Extract<Resource, { kind: 'role' }>,
      Extract<Resource, { kind: 'db' }>,
      Extract<Resource, { kind: 'bot' }>,
      Extract<Resource, { kind: 'token' }>,
    ];
    expect(role).toEqual({
      kind: 'role',
      version: 'v6',
      metadata: { name: 'example-role' },
      spec: {
        allow: {
          db_labels: { '*': '*' },
          db_names: ['example'],
          db_users: ['alice'],
          rules: [{ resources: ['db_server', 'db'], verbs: ['read', 'list'] }],
        },
        deny: {},
        options: { max_session_ttl: '8h' },
      },
    });
    expect(db.metadata.labels).toEqual({ env: 'dev' });
    expect(db.spec).toEqual({
      protocol: 'postgres',
      uri: 'localhost:5432',
      tls: { server_name: 'localhost' },
    });
    expect(botResource.spec.roles).toEqual(['example-role']);
    expect(token.spec).toEqual({
      join_method: 'iam',
      bot_name: 'example',
      allow: [
        { aws_account: '111111111111', aws_arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/*' },
      ],
    });
  });

  it('parses a token-method token', () => {
    const [token] = parseResources(
      `kind: token\nversion: v2\nmetadata: { name: ${TOKEN_SECRET}, expires: "2026-02-01T00:00:00Z" }\nspec: { join_method: token, bot_name: example, roles: [Bot] }\n`,
      FILE,
    );
    expect(token).toMatchObject({
      kind: 'token',
      metadata: { name: TOKEN_SECRET, expires: '2026-02-01T00:00:00Z' },
      spec: { join_method: 'token', bot_name: 'example' },
    });
  });

  it.each(['postgres', 'cockroachdb', 'mysql', 'mongodb', 'redis'])('accepts protocol %s', (protocol) => {
    const [db] = parseResources(
      `kind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: ${protocol}, uri: "h:1" }\n`,
      FILE,
    );
    expect(db).toMatchObject({ spec: { protocol } });
  });

  it.each(['db.internal:5432', '10.0.0.1:3306', '[::1]:5432', 'localhost:27017'])('accepts uri %s', (uri) => {
    expect(() =>
      parseResources(
        `kind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: postgres, uri: "${uri}" }\n`,
        FILE,
      ),
    ).not.toThrow();
  });

  it('gives a bot without roles an empty role list', () => {
    const [b] = parseResources('kind: bot\nversion: v1\nmetadata: { name: lonely }\nspec: {}\n', FILE);
    expect(b).toMatchObject({ spec: { roles: [] } });
  });

  it('accepts a leading --- and comments', () => {
    expect(parseResources(`# resources\n---\n${bot('a')}`, FILE)).toHaveLength(1);
  });

  it('ignores empty documents such as a trailing ---', () => {
    expect(parseResources(`${bot('a')}---\n`, FILE)).toHaveLength(1);
    expect(parseResources(`${bot('a')}---\n---\n${bot('b')}`, FILE)).toHaveLength(2);
  });

  it('allows the same name for resources of different kinds', () => {
    const text = `${bot('example')}---\nkind: role\nversion: v6\nmetadata: { name: example }\nspec: {}\n`;
    expect(parseResources(text, FILE)).toHaveLength(2);
  });
});

describe('parseResources: bad files', () => {
  it('names file, document, line and column of malformed YAML', () => {
    const err = parseError(`${bot('a')}---\nkind: role\nversion: v6\nmetadata: { name: x\nspec: {}\n`);
    expect(err.message).toMatch(
      /^resources\/example\.yaml: document 2: invalid YAML at line \d+, column \d+/,
    );
    const line = Number(/line (\d+)/.exec(err.message)?.[1]);
    expect(line).toBeGreaterThanOrEqual(8);
  });

  it('refuses duplicate keys in a mapping', () => {
    expect(
      parseError('kind: bot\nkind: bot\nversion: v1\nmetadata: { name: a }\nspec: {}\n').message,
    ).toMatch(/document 1: invalid YAML at line 2/);
  });

  it('names the path of an unknown field, its line, and the allowed fields', () => {
    const text =
      'kind: role\nversion: v6\nmetadata: { name: r }\nspec:\n  allow:\n    db_lables: { env: dev }\n';
    const err = parseError(text);
    expect(err.message).toContain(`${FILE}: document 1 (role "r")`);
    expect(err.message).toContain('spec.allow.db_lables: unknown field');
    expect(err.message).toContain(
      'allowed fields here: namespaces, db_labels, db_labels_expression, db_names, db_users, rules',
    );
    expect(err.message).toContain('line 6');
  });

  it('names an unknown top-level field', () => {
    const err = parseError('kind: bot\nversion: v1\nmetadata: { name: b }\nspec: {}\nstatus: {}\n');
    expect(err.message).toMatch(/status: unknown field; allowed fields here: kind, version, metadata, spec/);
  });

  it('refuses an unknown kind and lists the supported ones', () => {
    const err = parseError(`${bot('a')}---\nkind: user\nversion: v2\nmetadata: { name: u }\nspec: {}\n`);
    expect(err.message).toContain(`${FILE}: document 2`);
    expect(err.message).toContain('"user"');
    expect(err.message).toContain('role, db, bot, token');
  });

  it('refuses a document without a kind', () => {
    expect(parseError('version: v1\nmetadata: { name: a }\nspec: {}\n').message).toMatch(
      /document 1: kind null is not supported/,
    );
  });

  it.each([
    ['role', 'v9', 'v3, v4, v5, v6, v7, v8'],
    ['db', 'v2', 'v3'],
    ['bot', 'v2', 'v1'],
    ['token', 'v1', 'v2'],
  ])('refuses %s version %s and names the supported one', (kind, bad, good) => {
    const err = parseError(`kind: ${kind}\nversion: ${bad}\nmetadata: { name: n }\nspec: {}\n`);
    expect(err.message).toContain(`${FILE}: document 1`);
    expect(err.message).toContain(`"${bad}"`);
    expect(err.message).toContain(good);
  });

  it('refuses an unknown protocol and lists the allowed ones', () => {
    const err = parseError(
      'kind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: oracle, uri: "h:1" }\n',
    );
    expect(err.message).toContain(`${FILE}: document 1 (db "d")`);
    expect(err.message).toContain('spec.protocol');
    expect(err.message).toContain('"oracle"');
    for (const p of ['postgres', 'cockroachdb', 'mysql', 'mongodb', 'redis'])
      expect(err.message).toContain(p);
  });

  it.each(['postgres://db.internal:5432', 'db.internal', 'db.internal:port', ':5432', 'db internal:5432'])(
    'refuses uri %j, naming the value and the expected shape',
    (uri) => {
      const err = parseError(
        `kind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: postgres, uri: "${uri}" }\n`,
      );
      expect(err.message).toContain('spec.uri');
      expect(err.message).toContain(JSON.stringify(uri));
      expect(err.message).toContain('host:port');
    },
  );

  it('refuses a tls.ca_cert without PEM certificates', () => {
    const err = parseError(
      'kind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: postgres, uri: "h:1", tls: { ca_cert: "nope" } }\n',
    );
    expect(err.message).toContain('spec.tls.ca_cert');
  });

  it('refuses a bad max_session_ttl', () => {
    const err = parseError(
      'kind: role\nversion: v6\nmetadata: { name: r }\nspec: { options: { max_session_ttl: 1d } }\n',
    );
    expect(err.message).toContain('spec.options.max_session_ttl');
    expect(err.message).toContain('"1d"');
  });

  it('refuses a bad verb', () => {
    const err = parseError(
      'kind: role\nversion: v6\nmetadata: { name: r }\nspec: { allow: { rules: [{ resources: [db], verbs: [readd] }] } }\n',
    );
    expect(err.message).toContain('spec.allow.rules.0.verbs.0');
  });

  it.each(['../etc', 'a/b', '-lead', 'has space', 'x'.repeat(64)])('refuses the resource name %j', (name) => {
    const err = parseError(`kind: role\nversion: v6\nmetadata: { name: "${name}" }\nspec: {}\n`);
    expect(err.message).toContain('metadata.name');
  });

  it('refuses duplicate names in one file, naming the resource and the document', () => {
    const err = parseError(`${bot('a')}---\n${bot('b')}---\n${bot('a')}`);
    expect(err.message).toContain(`${FILE}: document 3`);
    expect(err.message).toContain('bot/a');
    expect(err.message).toContain('twice');
  });

  it.each([
    ['an empty file', ''],
    ['a file of comments', '# nothing here\n'],
  ])('refuses %s, naming the file', (_name, text) => {
    expect(parseError(text).message).toContain(`${FILE}: no resources found`);
  });

  it.each([
    ['a scalar', 'hello\n'],
    ['a list', '- kind: bot\n'],
  ])('refuses a document that is %s', (_name, text) => {
    expect(parseError(text).message).toContain(`${FILE}: document 1: expected a mapping`);
  });

  it('refuses an iam token without allow rules', () => {
    const err = parseError(
      'kind: token\nversion: v2\nmetadata: { name: iam-token }\nspec: { join_method: iam, bot_name: example }\n',
    );
    expect(err.message).toContain(`${FILE}: document 1`);
    expect(err.message).toContain('spec.allow');
    expect(err.message).toContain('aws_account');
  });

  it('refuses an iam allow rule with a bad account id', () => {
    const err = parseError(
      'kind: token\nversion: v2\nmetadata: { name: t }\nspec: { join_method: iam, bot_name: b, allow: [{ aws_account: "123" }] }\n',
    );
    expect(err.message).toContain('spec.allow.0.aws_account');
    expect(err.message).toContain('12-digit');
  });

  it('names the document of the first bad one and validates every document before returning', () => {
    const text = `${bot('a')}---\n${bot('b')}---\nkind: db\nversion: v3\nmetadata: { name: d }\nspec: { protocol: oracle, uri: "h:1" }\n`;
    expect(parseError(text).message).toContain('document 3');
  });

  it('turns a YAML alias bomb into a ConfigError that names the file', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    ].join('\n');
    expect(parseError(bomb).message).toContain(`${FILE}: document 1`);
  });

  it('turns an unresolved YAML alias into a ConfigError that names the file', () => {
    expect(parseError('kind: role\nversion: v6\nmetadata: { name: *nope }\nspec: {}\n').message).toContain(
      `${FILE}: document 1`,
    );
  });
});

describe('parseResources: token secrets stay out of errors', () => {
  // A token-method token's metadata.name is its secret.
  const tokenDoc = (metadata: string, spec = '{ join_method: token, bot_name: example }') =>
    `kind: token\nversion: v2\nmetadata: ${metadata}\nspec: ${spec}\n`;

  it.each([
    ['a name that is not a valid name', tokenDoc(`{ name: "${TOKEN_SECRET}/x" }`)],
    ['a name that is too long', tokenDoc(`{ name: "${TOKEN_SECRET}${'x'.repeat(60)}" }`)],
    ['a numeric name', tokenDoc('{ name: 123456789012345 }')],
    ['an unknown metadata field', tokenDoc(`{ name: ${TOKEN_SECRET}, bogus: 1 }`)],
    [
      'an unknown spec field',
      tokenDoc(`{ name: ${TOKEN_SECRET} }`, '{ join_method: token, bot_name: example, x: 1 }'),
    ],
    ['a bad bot name', tokenDoc(`{ name: ${TOKEN_SECRET} }`, '{ join_method: token, bot_name: "bad name" }')],
    ['a bad join method', tokenDoc(`{ name: ${TOKEN_SECRET} }`, '{ join_method: magic, bot_name: example }')],
    ['a bad expiry', tokenDoc(`{ name: ${TOKEN_SECRET}, expires: tomorrow }`)],
    ['a missing spec', `kind: token\nversion: v2\nmetadata: { name: ${TOKEN_SECRET} }\n`],
    ['a wrong version', `kind: token\nversion: v3\nmetadata: { name: ${TOKEN_SECRET} }\nspec: {}\n`],
    ['a YAML error on the same line', tokenDoc(`{ name: ${TOKEN_SECRET}, name: ${TOKEN_SECRET} }`)],
    [
      'the same token twice',
      `${tokenDoc(`{ name: ${TOKEN_SECRET} }`)}---\n${tokenDoc(`{ name: ${TOKEN_SECRET} }`)}`,
    ],
  ])('%s', (_name, text) => {
    const err = parseError(text);
    expect(err.message).toContain(FILE);
    expect(err.message).not.toContain(TOKEN_SECRET);
    expect(err.message).not.toContain('123456789012345');
  });

  it('still names the path whose value was hidden', () => {
    const err = parseError(tokenDoc(`{ name: "${TOKEN_SECRET}/x" }`));
    expect(err.message).toContain('metadata.name');
    expect(err.message).toContain('[redacted]');
  });
});

describe('parseKind and hostOf', () => {
  it.each([
    ['role', 'role'],
    ['roles', 'role'],
    ['db', 'db'],
    ['dbs', 'db'],
    ['bots', 'bot'],
    ['tokens', 'token'],
    ['users', undefined],
    ['', undefined],
  ])('parseKind(%j) is %j', (text, kind) => {
    expect(parseKind(text)).toBe(kind);
  });

  it.each([
    ['db.internal:5432', 'db.internal'],
    ['10.0.0.1:3306', '10.0.0.1'],
    ['[::1]:5432', '::1'],
  ])('hostOf(%j) is %j', (uri, host) => {
    expect(hostOf(uri)).toBe(host);
  });
});
