/**
 * Teleport's own database-access tables, ported case by case and run through `broker create -f` parsing,
 * createResources and issueDatabaseCertificate (test/support/rbac-world.ts). Each case names the Teleport
 * test it comes from (gravitational/teleport lib/services/role_test.go, lib/srv/db/common/role/role_test.go).
 * Teleport's databases with protocol "protocol" are postgres here (both check db_names, case-sensitively),
 * or mysql where the Teleport test passes only the user matcher (mysql checks db_users alone). Rows that
 * need features the broker refuses (per-session MFA, device trust, AWS IAM role users, namespaces other than
 * default, automatic user provisioning) are left out.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { botDoc, dbDoc, type RbacWorld, rbacWorld, roleDoc } from '../support/rbac-world.js';

type Row = [bot: string, service: string, database: string, user: string, allowed: boolean];

function table(title: string, docs: () => object[], rows: Row[]): void {
  describe(title, () => {
    let world: RbacWorld;
    beforeAll(async () => {
      world = await rbacWorld(docs());
    });
    it.each(rows)(
      'bot %s on %s: database %j as %j → allowed %s',
      async (bot, service, database, username, allowed) => {
        const outcome = await world.decide(bot, { service, database, username });
        expect(outcome, JSON.stringify(outcome)).toMatchObject({ allowed });
        // A denial must come from the rules, not from a mistyped bot or service in the table.
        if (!outcome.allowed) expect(outcome.reason).not.toMatch(/does not exist/);
      },
    );
  });
}

// TestCheckAccessToDatabase: v3 roles; dev-prod sets only db_labels_expression, so its v3 default '*': '*'
// labels and the expression must both match; the deny role's labels come from the v3 defaults.
table(
  'TestCheckAccessToDatabase',
  () => [
    roleDoc(
      'dev-stage',
      {
        allow: { namespaces: ['default'], db_labels: { env: 'stage' }, db_names: ['*'], db_users: ['*'] },
        deny: { namespaces: ['default'], db_names: ['supersecret'] },
      },
      'v3',
    ),
    roleDoc(
      'dev-prod',
      { allow: { db_labels_expression: 'labels["env"] == "prod"', db_names: ['test'], db_users: ['dev'] } },
      'v3',
    ),
    roleDoc(
      'deny',
      {
        allow: { db_names: ['*'], db_users: ['*'] },
        deny: { db_names: ['postgres'], db_users: ['postgres'] },
      },
      'v3',
    ),
    dbDoc('stage', { env: 'stage' }),
    dbDoc('prod', { env: 'prod' }),
    botDoc('developer', ['dev-stage', 'dev-prod']),
    botDoc('denied', ['deny']),
  ],
  [
    // developer allowed any username/database in stage database except one database
    ['developer', 'stage', 'superdb', 'superuser', true],
    ['developer', 'stage', 'test', 'dev', true],
    ['developer', 'stage', 'supersecret', 'dev', false],
    // developer allowed only specific username/database in prod database
    ['developer', 'prod', 'superdb', 'superuser', false],
    ['developer', 'prod', 'test', 'dev', true],
    ['developer', 'prod', 'superdb', 'dev', false],
    ['developer', 'prod', 'test', 'superuser', false],
    // deny role denies access to specific database and user
    ['denied', 'prod', 'test', 'test', true],
    ['denied', 'prod', 'postgres', 'test', false],
    ['denied', 'prod', 'test', 'postgres', false],
  ],
);

// TestCheckAccessToDatabaseUser: only the user matcher (mysql here); CockroachDB folds user case.
table(
  'TestCheckAccessToDatabaseUser',
  () => [
    roleDoc('dev-stage', {
      allow: { db_labels: { env: 'stage' }, db_users: ['*'] },
      deny: { db_users: ['superuser'] },
    }),
    roleDoc('dev-prod', { allow: { db_labels_expression: 'labels["env"] == "prod"', db_users: ['dev'] } }),
    dbDoc('stage', { env: 'stage' }, 'mysql'),
    dbDoc('prod', { env: 'prod' }, 'mysql'),
    dbDoc('cockroach-stage', { env: 'stage' }, 'cockroachdb'),
    dbDoc('cockroach-prod', { env: 'prod' }, 'cockroachdb'),
    botDoc('developer', ['dev-stage', 'dev-prod']),
  ],
  [
    // developer allowed any username in stage database except superuser (case-sensitive database)
    ['developer', 'stage', 'any', 'superuser', false],
    ['developer', 'stage', 'any', 'dev', true],
    ['developer', 'stage', 'any', 'test', true],
    ['developer', 'stage', 'any', 'SUPERUSER', true],
    // developer allowed only specific username/database in prod database
    ['developer', 'prod', 'any', 'superuser', false],
    ['developer', 'prod', 'any', 'dev', true],
    // (case-insensitive db) developer allowed any username in stage except superuser
    ['developer', 'cockroach-stage', 'any', 'dev', true],
    ['developer', 'cockroach-stage', 'any', 'DEV', true],
    ['developer', 'cockroach-stage', 'any', 'test', true],
    ['developer', 'cockroach-stage', 'any', 'superuser', false],
    ['developer', 'cockroach-stage', 'any', 'SUPERUSER', false],
    // (case-insensitive db) developer allowed only specific username/database in prod database
    ['developer', 'cockroach-prod', 'any', 'dev', true],
    ['developer', 'cockroach-prod', 'any', 'DEV', true],
    ['developer', 'cockroach-prod', 'any', 'superuser', false],
    ['developer', 'cockroach-prod', 'any', 'Superuser', false],
  ],
);

// TestCheckAccessToDatabaseService: labels and expressions alone decide (the test passes no matchers, so
// the roles here allow every name and user); the bot's traits feed the expression.
const ANY = { db_names: ['*'], db_users: ['*'] };
table(
  'TestCheckAccessToDatabaseService',
  () => [
    roleDoc('admin', { allow: { db_labels: { '*': '*' }, ...ANY } }),
    roleDoc('dev', {
      allow: { db_labels_expression: 'contains(user.spec.traits["allow-env"], labels["env"])', ...ANY },
      deny: { db_labels: { arch: 'amd64' } },
    }),
    roleDoc('intern', { allow: { ...ANY } }),
    dbDoc('test'),
    dbDoc('stage', { env: 'stage', arch: 'x86' }),
    dbDoc('stage2', { env: 'stage', arch: 'amd64' }),
    dbDoc('prod', { env: 'prod' }),
    botDoc('nobody', [], { 'allow-env': ['stage'] }),
    botDoc('intern', ['intern'], { 'allow-env': ['stage'] }),
    botDoc('developer', ['dev'], { 'allow-env': ['stage'] }),
    botDoc('admin', ['admin'], { 'allow-env': ['stage'] }),
  ],
  [
    // empty role doesn't have access to any databases
    ['nobody', 'test', 'db', 'u', false],
    ['nobody', 'stage', 'db', 'u', false],
    ['nobody', 'stage2', 'db', 'u', false],
    ['nobody', 'prod', 'db', 'u', false],
    // intern doesn't have access to any databases
    ['intern', 'test', 'db', 'u', false],
    ['intern', 'stage', 'db', 'u', false],
    ['intern', 'stage2', 'db', 'u', false],
    ['intern', 'prod', 'db', 'u', false],
    // developer only has access to one of stage database
    ['developer', 'test', 'db', 'u', false],
    ['developer', 'stage', 'db', 'u', true],
    ['developer', 'stage2', 'db', 'u', false],
    ['developer', 'prod', 'db', 'u', false],
    // admin has access to all databases
    ['admin', 'test', 'db', 'u', true],
    ['admin', 'stage', 'db', 'u', true],
    ['admin', 'stage2', 'db', 'u', true],
    ['admin', 'prod', 'db', 'u', true],
  ],
);

// TestCheckAccessToServer, its label cases: node_labels become db_labels and the SSH login the database
// user (newRole's defaults: labels '*': '*', namespaces '*'). Servers a, b, c, c2 are databases here.
const server = (labels: Record<string, string>) => labels;
const SERVERS = {
  a: server({}),
  b: server({ role: 'worker', status: 'follower' }),
  c: server({ role: 'db', status: 'follower' }),
  c2: server({ role: 'db01', status: 'follower01' }),
};
function serverRole(name: string, allow: Record<string, unknown>): object {
  return roleDoc(name, {
    allow: { namespaces: ['*'], db_labels: { '*': '*' }, db_names: ['*'], ...allow },
    options: { max_session_ttl: '20h' },
  });
}
const checks = (bot: string, rows: [string, string, boolean][]): Row[] =>
  rows.map(([srv, login, ok]) => [bot, srv, 'db', login, ok]);
table(
  'TestCheckAccessToServer (label cases)',
  () => [
    ...Object.entries(SERVERS).map(([n, labels]) => dbDoc(n, labels)),
    serverRole('worker-admin', { db_users: ['admin'], db_labels: { role: 'worker' } }),
    serverRole('worker2-or-worker', { db_users: ['admin'], db_labels: { role: ['worker2', 'worker'] } }),
    serverRole('empty-list', { db_users: ['admin'], db_labels: { role: [] } }),
    serverRole('default-worker', {
      namespaces: ['default'],
      db_users: ['admin'],
      db_labels: { role: 'worker' },
    }),
    serverRole('root-admin', { db_users: ['root', 'admin'] }),
    serverRole('db-suffix', { db_users: ['admin'], db_labels: { role: '^db(.*)$', status: 'follow*' } }),
    serverRole('no-logins', {}),
    roleDoc('expression', {
      allow: {
        namespaces: ['*'],
        db_labels_expression: 'labels.role == "worker" && labels.status == "follower"',
        db_names: ['*'],
        db_users: ['root'],
      },
    }),
    botDoc('empty', []),
    botDoc('labels', ['worker-admin']),
    botDoc('any-of', ['worker2-or-worker']),
    botDoc('empty-list', ['empty-list']),
    botDoc('permissive', ['default-worker', 'root-admin']),
    botDoc('suffix', ['db-suffix']),
    botDoc('no-logins', ['no-logins']),
    botDoc('expression', ['expression']),
  ],
  [
    // empty role set has access to nothing
    ...checks('empty', [
      ['a', 'root', false],
      ['b', 'root', false],
      ['c', 'root', false],
    ]),
    // role is limited to labels in default namespace
    ...checks('labels', [
      ['a', 'root', false],
      ['a', 'admin', false],
      ['b', 'root', false],
      ['b', 'admin', true],
      ['c', 'root', false],
      ['c', 'admin', false],
    ]),
    // role matches any label out of multiple labels
    ...checks('any-of', [
      ['a', 'root', false],
      ['a', 'admin', false],
      ['b', 'root', false],
      ['b', 'admin', true],
      ['c', 'root', false],
      ['c', 'admin', false],
    ]),
    // node_labels with empty list value matches nothing
    ...checks('empty-list', [
      ['a', 'root', false],
      ['a', 'admin', false],
      ['b', 'root', false],
      ['b', 'admin', false],
      ['c', 'root', false],
      ['c', 'admin', false],
    ]),
    // one role is more permissive than another
    ...checks('permissive', [
      ['a', 'root', true],
      ['a', 'admin', true],
      ['b', 'root', true],
      ['b', 'admin', true],
      ['c', 'root', true],
      ['c', 'admin', true],
    ]),
    // one role needs to access servers sharing the partially same label value
    ...checks('suffix', [
      ['a', 'root', false],
      ['a', 'admin', false],
      ['b', 'root', false],
      ['b', 'admin', false],
      ['c', 'root', false],
      ['c', 'admin', true],
      ['c2', 'root', false],
      ['c2', 'admin', true],
    ]),
    // no logins means no access
    ...checks('no-logins', [
      ['a', 'root', false],
      ['a', 'admin', false],
      ['b', 'root', false],
      ['b', 'admin', false],
      ['c', 'root', false],
      ['c', 'admin', false],
    ]),
    // label expressions
    ...checks('expression', [
      ['a', 'root', false],
      ['b', 'root', true],
      ['c', 'root', false],
    ]),
  ],
);

// TestGetDatabaseRoleMatchers and databaseNameMatcher (lib/srv/db/common/role): db_names are checked for
// postgres and mongodb ("database name matcher required") and not for mysql, cockroachdb and redis ("database
// name matcher not required").
table(
  'TestGetDatabaseRoleMatchers (per protocol)',
  () => [
    roleDoc('db1-only', { allow: { db_labels: { '*': '*' }, db_names: ['db1'], db_users: ['alice'] } }),
    ...(['postgres', 'mongodb', 'mysql', 'cockroachdb', 'redis'] as const).map((p) => dbDoc(p, {}, p)),
    botDoc('alice', ['db1-only']),
  ],
  [
    ['alice', 'postgres', 'db1', 'alice', true],
    ['alice', 'postgres', 'db2', 'alice', false],
    ['alice', 'mongodb', 'db1', 'alice', true],
    ['alice', 'mongodb', 'db2', 'alice', false],
    ['alice', 'mysql', 'db1', 'alice', true],
    ['alice', 'mysql', 'db2', 'alice', true],
    ['alice', 'cockroachdb', 'db2', 'alice', true],
    ['alice', 'redis', 'db2', 'alice', true],
    ['alice', 'redis', 'db1', 'bob', false],
    ['alice', 'mysql', 'db1', 'ALICE', false],
  ],
);

// TestRoleSetEnumerateDatabaseUsersAndNames, its roles asked as decisions: a deny of the same user and
// name as the allow wins ("deny overrides allow"); a deny of '*' denies every user and name ("there may be
// users disallowed from all users").
table(
  'TestRoleSetEnumerateDatabaseUsersAndNames (as decisions)',
  () => [
    roleDoc('dev-stage', {
      allow: { db_labels: { env: 'stage' }, db_users: ['*'], db_names: ['*'] },
      deny: { db_users: ['root'], db_names: ['root'] },
    }),
    roleDoc('dev-prod', { allow: { db_labels: { env: 'prod' }, db_users: ['dev'], db_names: ['dev'] } }),
    roleDoc('no-db-access', { deny: { db_users: ['*'], db_names: ['*'] } }),
    roleDoc('allow-deny-same', {
      allow: { db_labels: { '*': '*' }, db_users: ['root'], db_names: ['root'] },
      deny: { db_users: ['root'], db_names: ['root'] },
    }),
    dbDoc('stage', { env: 'stage' }),
    dbDoc('prod', { env: 'prod' }),
    botDoc('same', ['allow-deny-same']),
    botDoc('developer', ['dev-stage', 'dev-prod']),
    botDoc('blocked', ['dev-stage', 'dev-prod', 'no-db-access']),
  ],
  [
    ['same', 'stage', 'root', 'root', false],
    ['developer', 'stage', 'dev', 'dev', true],
    ['developer', 'stage', 'anything', 'anyone', true],
    ['developer', 'stage', 'root', 'dev', false],
    ['developer', 'stage', 'dev', 'root', false],
    ['developer', 'prod', 'dev', 'dev', true],
    ['developer', 'prod', 'other', 'dev', false],
    ['blocked', 'prod', 'dev', 'dev', false],
    ['blocked', 'stage', 'dev', 'dev', false],
  ],
);
