import { describe, expect, it } from 'vitest';
import {
  type AccessDecision,
  checkDatabaseAccess,
  labelsMatch,
  MAX_TTL_MS,
  matchPattern,
} from '../../src/authority/rbac.js';
import { type Db, dbSchema, type Role, roleSchema } from '../../src/authority/resources.js';
import type { DatabaseRoute } from '../../src/credentials/route.js';
import { EXAMPLE_ROUTE, exampleResources, INTERNAL_DB_URI } from '../support/fixtures.js';

const H = 3_600_000;
const READ_LIST = [{ resources: ['db_server', 'db'], verbs: ['read', 'list'] }];

type Conditions = Record<string, unknown>;

/** A role, validated by the real schema so fixtures cannot drift from what users can write. */
function role(name: string, allow?: Conditions, deny?: Conditions, maxSessionTtl?: string): Role {
  return roleSchema.parse({
    kind: 'role',
    version: 'v6',
    metadata: { name },
    spec: {
      ...(allow ? { allow } : {}),
      ...(deny ? { deny } : {}),
      ...(maxSessionTtl ? { options: { max_session_ttl: maxSessionTtl } } : {}),
    },
  });
}

function db(name: string, labels?: Record<string, string>): Db {
  return dbSchema.parse({
    kind: 'db',
    version: 'v3',
    metadata: { name, ...(labels ? { labels } : {}) },
    spec: { protocol: 'postgres', uri: 'db.internal:5432' },
  });
}

/** The reference guide's example role (without its session cap) and database service, as shipped. */
const [exampleRole, devDb] = exampleResources({
  role: { maxSessionTtl: null },
  db: { uri: INTERNAL_DB_URI },
  bots: [],
}) as [Role, Db];
const route: DatabaseRoute = EXAMPLE_ROUTE;

/** `target: null` asks about a service that does not exist. */
function decide(roles: Role[], target: Db | null = devDb, r: DatabaseRoute = route): AccessDecision {
  return checkDatabaseAccess({ bot: 'example', roles, db: target ?? undefined, route: r });
}

function expectDenied(decision: AccessDecision, ...mentions: string[]): void {
  expect(decision.allowed).toBe(false);
  if (decision.allowed) return;
  expect(decision.reason.trim()).not.toBe('');
  for (const m of mentions) expect(decision.reason).toContain(m);
}

function expectAllowed(decision: AccessDecision): Extract<AccessDecision, { allowed: true }> {
  expect(decision).toMatchObject({ allowed: true });
  if (!decision.allowed) throw new Error(`denied: ${decision.reason}`);
  return decision;
}

describe('matchPattern', () => {
  it.each<[string, string, boolean]>([
    ['*', 'anything', true],
    ['*', '', true],
    ['dev', 'dev', true],
    ['dev', 'development', false],
    ['dev', 'xdev', false],
    ['dev', 'DEV', false],
    ['env-*', 'env-dev', true],
    ['env-*', 'env-', true],
    ['env-*', 'xenv-dev', false],
    ['env-*', 'env', false],
    ['*-prod', 'eu-prod', true],
    ['*-prod', 'eu-prod-2', false],
    ['a*c', 'abbbc', true],
    ['a*c', 'ab', false],
    ['a*b*c', 'a-b-c', true],
    // Glob text is literal apart from `*`.
    ['a.b', 'a.b', true],
    ['a.b', 'axb', false],
    ['a+b', 'a+b', true],
    ['a+b', 'aab', false],
    ['(x)|y', '(x)|y', true],
    ['(x)|y', 'y', false],
    ['[ab]', 'a', false],
    ['^dev-(eu|us)$', 'dev-eu', true],
    ['^dev-(eu|us)$', 'dev-us', true],
    ['^dev-(eu|us)$', 'dev-asia', false],
    ['^dev-(eu|us)$', 'xdev-eu', false],
    ['^dev-(eu|us)$', 'dev-eux', false],
    ['^[a-z]+[0-9]$', 'db1', true],
    ['^[a-z]+[0-9]$', 'db12', false],
    // An invalid regular expression matches nothing rather than everything.
    ['^(dev$', '(dev', false],
    ['^(dev$', 'dev', false],
    ['^[$', '[', false],
    // Teleport's answer (Go RE2): `^*` repeats the empty-width `^`, which Go accepts, and MatchString searches.
    ['^*$', '*', true],
  ])('matchPattern(%j, %j) is %s', (pattern, value, want) => {
    expect(matchPattern(pattern, value)).toBe(want);
  });
});

describe('labelsMatch', () => {
  it.each<[string, Record<string, string | string[]> | undefined, Record<string, string>, boolean]>([
    ['a missing selector matches nothing', undefined, { env: 'dev' }, false],
    ['an empty selector matches nothing', {}, { env: 'dev' }, false],
    ['an empty selector matches nothing, not even an unlabelled db', {}, {}, false],
    ["'*': '*' matches every resource", { '*': '*' }, { env: 'prod', team: 'x' }, true],
    ["'*': '*' matches a resource without labels", { '*': '*' }, {}, true],
    ["'*': ['*'] matches every resource", { '*': ['*'] }, {}, true],
    ["'*' with another value matches nothing", { '*': 'dev' }, { env: 'dev' }, false],
    ['an exact value matches', { env: 'dev' }, { env: 'dev' }, true],
    ['another value does not match', { env: 'dev' }, { env: 'prod' }, false],
    ['a missing label does not match', { env: 'dev' }, { team: 'dev' }, false],
    ['a label value of * matches any value of that label', { env: '*' }, { env: 'prod' }, true],
    ['a label value of * needs the label', { env: '*' }, {}, false],
    ['a glob value matches', { env: 'dev-*' }, { env: 'dev-eu' }, true],
    ['a glob value does not match others', { env: 'dev-*' }, { env: 'prod-eu' }, false],
    ['a regex value matches', { env: '^(dev|staging)$' }, { env: 'staging' }, true],
    ['a regex value does not match others', { env: '^(dev|staging)$' }, { env: 'prod' }, false],
    ['a list value matches any of its entries', { env: ['staging', 'dev'] }, { env: 'dev' }, true],
    ['a list value matches none else', { env: ['staging', 'dev'] }, { env: 'prod' }, false],
    ['every key must match (both do)', { env: 'dev', team: 'db' }, { env: 'dev', team: 'db', x: 'y' }, true],
    ['every key must match (one does not)', { env: 'dev', team: 'db' }, { env: 'dev', team: 'web' }, false],
    ['every key must match (one is missing)', { env: 'dev', team: 'db' }, { env: 'dev' }, false],
    // Teleport's answer (MatchLabelGetter): `'*': '*'` matches everything, whatever other keys say.
    ["'*': '*' beside another key matches everything", { '*': '*', env: 'prod' }, { env: 'dev' }, true],
  ])('%s', (_name, selector, labels, want) => {
    expect(labelsMatch(selector, labels)).toBe(want);
  });

  it('an invalid regex is an error, not a silent non-match (Teleport returns an error, which denies)', () => {
    expect(() => labelsMatch({ env: '^(dev$' }, { env: 'dev' })).toThrow(/invalid regular expression/);
  });
});

describe('checkDatabaseAccess: allow', () => {
  it('allows the seed example: role example-role, db_names [example], db_users [alice]', () => {
    const decision = expectAllowed(decide([exampleRole]));
    expect(decision.roles).toEqual(['example-role']);
    expect(decision.maxTtlMs).toBe(MAX_TTL_MS);
  });

  it('allows a database without labels when db_labels is {"*": "*"}', () => {
    expectAllowed(decide([exampleRole], db('example-server')));
  });

  it('lists every role that allows the route', () => {
    const second = role('second', {
      db_labels: { env: 'dev' },
      db_names: ['*'],
      db_users: ['*'],
      rules: READ_LIST,
    });
    const unrelated = role('unrelated', { db_labels: { env: 'prod' }, db_names: ['*'], db_users: ['*'] });
    expect(expectAllowed(decide([exampleRole, unrelated, second])).roles).toEqual(['example-role', 'second']);
  });

  it.each<[string, Conditions, DatabaseRoute, Db]>([
    [
      'db_names and db_users of * match any name and user',
      { db_labels: { '*': '*' }, db_names: ['*'], db_users: ['*'] },
      { service: 'example-server', database: 'anything', username: 'anyone' },
      devDb,
    ],
    [
      'a db_labels glob',
      { db_labels: { env: 'env-*' }, db_names: ['example'], db_users: ['alice'] },
      route,
      db('example-server', { env: 'env-dev' }),
    ],
    [
      'a db_labels regex',
      { db_labels: { env: '^(dev|staging)$' }, db_names: ['example'], db_users: ['alice'] },
      route,
      db('example-server', { env: 'staging' }),
    ],
    [
      'a db_labels list',
      { db_labels: { env: ['prod', 'dev'] }, db_names: ['example'], db_users: ['alice'] },
      route,
      devDb,
    ],
  ])('allows by %s', (_name, allow, r, target) => {
    expectAllowed(decide([role('r', { ...allow, rules: READ_LIST })], target, r));
  });

  it.each([['app_*'], ['^app_(a|b)$']])(
    'refuses %j in db_names and db_users when the role is created: Teleport matches them literally (they were a glob and a regex here)',
    (entry) => {
      expect(() => role('r', { db_labels: { '*': '*' }, db_names: [entry], db_users: ['alice'] })).toThrow(
        /literally/,
      );
      expect(() => role('r', { db_labels: { '*': '*' }, db_names: ['x'], db_users: [entry] })).toThrow(
        /literally/,
      );
    },
  );

  it('accepts read and list granted by two different roles', () => {
    const reader = role('reader', {
      db_labels: { '*': '*' },
      db_names: ['example'],
      db_users: ['alice'],
      rules: [{ resources: ['db'], verbs: ['read'] }],
    });
    const lister = role('lister', { rules: [{ resources: ['db'], verbs: ['list'] }] });
    expectAllowed(decide([reader, lister]));
  });

  it('accepts rules with the * resource and * verb', () => {
    expectAllowed(
      decide([
        role('star', {
          db_labels: { '*': '*' },
          db_names: ['example'],
          db_users: ['alice'],
          rules: [{ resources: ['*'], verbs: ['*'] }],
        }),
      ]),
    );
  });
});

describe('checkDatabaseAccess: deny', () => {
  it('denies a bot without roles, naming the bot', () => {
    expectDenied(decide([]), '"example"', 'no roles');
  });

  it('denies a database service that does not exist, naming it', () => {
    expectDenied(decide([exampleRole], null), '"example-server"', 'does not exist');
  });

  // Teleport's answer (DefaultImplicitRules): every role set may list and read db_server and db, so a role
  // needs no rules; these three were denied here before.
  it('allows a role without rules: the implicit role grants list and read', () => {
    const noRules = role('no-rules', { db_labels: { '*': '*' }, db_names: ['example'], db_users: ['alice'] });
    expectAllowed(decide([noRules]));
  });

  it('allows when the rules grant read but not list: the implicit role grants list', () => {
    const readOnly = role('read-only', {
      db_labels: { '*': '*' },
      db_names: ['example'],
      db_users: ['alice'],
      rules: [{ resources: ['db'], verbs: ['read'] }],
    });
    expectAllowed(decide([readOnly]));
  });

  it('allows when the rules are on db_server only, not db', () => {
    const serverOnly = role('server-only', {
      db_labels: { '*': '*' },
      db_names: ['example'],
      db_users: ['alice'],
      rules: [{ resources: ['db_server'], verbs: ['read', 'list'] }],
    });
    expectAllowed(decide([serverOnly]));
  });

  it.each<[string, Conditions, string[]]>([
    // Teleport's tbot finds its database by listing db_server, so deny rules on db_server are what refuse.
    ['a deny rule on read', { rules: [{ resources: ['db_server'], verbs: ['read'] }] }, ['blocker', 'read']],
    ['a deny rule on list', { rules: [{ resources: ['db_server'], verbs: ['list'] }] }, ['blocker', 'list']],
    ['a deny rule on * verbs of * resources', { rules: [{ resources: ['*'], verbs: ['*'] }] }, ['blocker']],
    [
      'deny.db_labels matching the service',
      { db_labels: { env: 'dev' } },
      ['blocker', 'example-server', 'env=dev', 'deny.db_labels'],
    ],
    ["deny.db_labels '*': '*'", { db_labels: { '*': '*' } }, ['blocker', 'example-server', 'deny.db_labels']],
    ['deny.db_labels by glob', { db_labels: { env: 'd*' } }, ['blocker', 'deny.db_labels']],
    ['deny.db_names', { db_names: ['example'] }, ['blocker', '"example"', 'deny.db_names']],
    ['deny.db_names *', { db_names: ['*'] }, ['blocker', '"example"', 'deny.db_names']],
    ['deny.db_users', { db_users: ['alice'] }, ['blocker', '"alice"', 'deny.db_users']],
    ['deny.db_users *', { db_users: ['*'] }, ['blocker', '"alice"', 'deny.db_users']],
  ])('deny wins: %s in another role denies an allowed route', (_name, deny, mentions) => {
    expectAllowed(decide([exampleRole]));
    const blocker = role('blocker', undefined, deny);
    expectDenied(decide([exampleRole, blocker]), ...mentions);
    expectDenied(decide([blocker, exampleRole]), ...mentions);
  });

  it('deny wins inside the allowing role itself', () => {
    const selfDenying = role(
      'self-denying',
      { db_labels: { '*': '*' }, db_names: ['*'], db_users: ['*'], rules: READ_LIST },
      { db_users: ['postgres'] },
    );
    expectAllowed(decide([selfDenying]));
    expectDenied(
      decide([selfDenying], devDb, { ...route, username: 'postgres' }),
      'self-denying',
      '"postgres"',
    );
  });

  it.each<[string, Conditions]>([
    ['deny.db_labels for another label value', { db_labels: { env: 'prod' } }],
    ['an empty deny.db_labels', { db_labels: {} }],
    ['deny.db_names for another name', { db_names: ['other'] }],
    ['deny.db_users for another user', { db_users: ['bob', 'admin'] }],
    ['a deny rule on other verbs', { rules: [{ resources: ['db_server'], verbs: ['create', 'delete'] }] }],
    // Teleport's answer: tbot never reads the db kind to connect, so a deny on db alone does not refuse
    // (it denied here before; deny rules on db_server now refuse, see above).
    ['a deny rule on db, not db_server', { rules: [{ resources: ['db'], verbs: ['read', 'list'] }] }],
  ])('does not deny by %s', (_name, deny) => {
    expectAllowed(decide([exampleRole, role('other', undefined, deny)]));
  });

  it.each<[string, Conditions, string[]]>([
    [
      'a missing allow.db_labels',
      { db_names: ['example'], db_users: ['alice'] },
      ['example-server', 'env=dev'],
    ],
    [
      'an empty allow.db_labels',
      { db_labels: {}, db_names: ['example'], db_users: ['alice'] },
      ['example-server'],
    ],
    [
      'allow.db_labels for another value',
      { db_labels: { env: 'prod' }, db_names: ['example'], db_users: ['alice'] },
      ['example-server', 'env=dev', 'db_labels'],
    ],
    [
      'allow.db_labels missing one of its keys on the db',
      { db_labels: { env: 'dev', team: 'db' }, db_names: ['example'], db_users: ['alice'] },
      ['example-server', 'db_labels'],
    ],
    [
      'a database name not in db_names',
      { db_labels: { '*': '*' }, db_names: ['other'], db_users: ['alice'] },
      ['"example"', 'db_names', 'other'],
    ],
    ['a missing db_names', { db_labels: { '*': '*' }, db_users: ['alice'] }, ['"example"', 'db_names']],
    [
      'a user not in db_users',
      { db_labels: { '*': '*' }, db_names: ['example'], db_users: ['bob'] },
      ['"alice"', 'db_users', 'bob'],
    ],
    ['a missing db_users', { db_labels: { '*': '*' }, db_names: ['example'] }, ['"alice"', 'db_users']],
    [
      'a db_users glob that does not match',
      { db_labels: { '*': '*' }, db_names: ['example'], db_users: ['ali'] },
      ['"alice"'],
    ],
  ])('denies %s', (_name, allow, mentions) => {
    expectDenied(decide([role('r', { ...allow, rules: READ_LIST })]), ...mentions);
  });

  it('needs one role to match labels, names and users together: two half-matching roles do not combine', () => {
    // A matches labels and names but not the user; B matches labels and the user but not the name.
    const a = role('a', {
      db_labels: { env: 'dev' },
      db_names: ['example'],
      db_users: ['bob'],
      rules: READ_LIST,
    });
    const b = role('b', {
      db_labels: { env: 'dev' },
      db_names: ['other'],
      db_users: ['alice'],
      rules: READ_LIST,
    });
    expectDenied(decide([a, b]));
    // C matches names and user but not the labels; A matches the labels.
    const c = role('c', {
      db_labels: { env: 'prod' },
      db_names: ['example'],
      db_users: ['alice'],
      rules: READ_LIST,
    });
    expectDenied(decide([a, c]));
    expectDenied(decide([c, b]));
  });
});

describe('checkDatabaseAccess: TTL', () => {
  const allowAll = (name: string, ttl?: string) =>
    role(
      name,
      { db_labels: { '*': '*' }, db_names: ['*'], db_users: ['*'], rules: READ_LIST },
      undefined,
      ttl,
    );

  it('caps at 24h when no role sets max_session_ttl', () => {
    expect(MAX_TTL_MS).toBe(24 * H);
    expect(expectAllowed(decide([allowAll('a')])).maxTtlMs).toBe(24 * H);
  });

  it('uses max_session_ttl of the role', () => {
    expect(expectAllowed(decide([allowAll('a', '8h')])).maxTtlMs).toBe(8 * H);
    expect(expectAllowed(decide([allowAll('a', '1h30m')])).maxTtlMs).toBe(90 * 60_000);
  });

  it('takes the shortest max_session_ttl across all roles, including roles that do not allow the route', () => {
    const shortUnrelated = role('short', { rules: READ_LIST }, undefined, '20m');
    expect(expectAllowed(decide([allowAll('a', '8h'), allowAll('b', '2h')])).maxTtlMs).toBe(2 * H);
    expect(expectAllowed(decide([allowAll('a', '8h'), shortUnrelated])).maxTtlMs).toBe(20 * 60_000);
  });

  it('never exceeds 24h even when a role allows more', () => {
    expect(expectAllowed(decide([allowAll('a', '48h')])).maxTtlMs).toBe(24 * H);
    expect(expectAllowed(decide([allowAll('a', '8760h'), allowAll('b')])).maxTtlMs).toBe(24 * H);
  });
});
