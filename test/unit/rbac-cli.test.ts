/**
 * The operator's path end to end, in process: `broker init`, `broker create -f` with templated roles and a
 * db_labels_expression, bots with traits from `broker bots add/update` flags (as `tctl bots` sets logins),
 * `broker rbac explain`, and issuance from the same state directory. A role with a bad pattern is refused
 * with file, document, path, value and reason, and nothing of its file is stored.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAuthority } from '../../src/cli/authority-commands.js';
import { buildProgram } from '../../src/cli/main.js';
import { AccessDeniedError } from '../../src/errors.js';
import { EXAMPLE_ROLE_FILE, REPO_ROOT, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let dir: string;

async function broker(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  await buildProgram((l) => lines.push(l)).parseAsync(['--state-dir', path.join(dir, 'state'), ...args], {
    from: 'user',
  });
  return lines;
}

async function file(name: string, text: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, text);
  return p;
}

const RESOURCES = `kind: role
version: v7
metadata: { name: per-bot-user }
spec:
  allow:
    db_labels: { env: '{{external.env}}' }
    db_names: ['{{internal.db_names}}']
    db_users: ['{{internal.db_users}}']
---
kind: role
version: v8
metadata: { name: team-expression }
spec:
  allow:
    db_labels_expression: contains(user.spec.traits["teams"], labels["team"]) && labels.env != "prod"
    db_names: ['*']
    db_users: [reporter]
  deny:
    db_users: [root]
---
kind: db
version: v3
metadata: { name: orders, labels: { env: dev, team: payments } }
spec: { protocol: postgres, uri: "orders.internal:5432" }
---
kind: db
version: v3
metadata: { name: ledger, labels: { env: prod, team: payments } }
spec: { protocol: cockroachdb, uri: "ledger.internal:26257" }
`;

beforeAll(async () => {
  dir = await makeTempDir('broker-rbac-cli-');
  await broker('init', '--cluster-name', 'rbac');
  await broker('create', '-f', await file('resources.yaml', RESOURCES));
  await broker('create', '-f', path.join(REPO_ROOT, EXAMPLE_ROLE_FILE));
});
afterAll(removeTempDirs);

describe('traits from bots add/update flags feed templates and expressions', () => {
  it('bots add --db-users/--db-names/--trait sets traits; one templated role then serves each bot', async () => {
    await broker(
      'bots',
      'add',
      'orders-bot',
      '--roles',
      'per-bot-user',
      '--db-users',
      'orders_rw',
      '--db-names',
      'orders',
      '--trait',
      'env=dev',
    );
    await broker(
      'bots',
      'add',
      'audit-bot',
      '--roles',
      'per-bot-user',
      '--db-users',
      'auditor',
      '--db-names',
      'orders',
      '--trait',
      'env=dev',
    );
    const [bot] = await (await openAuthority(path.join(dir, 'state'))).getResources('bot', 'orders-bot');
    expect(bot?.spec.traits).toEqual([
      { name: 'db_users', values: ['orders_rw'] },
      { name: 'db_names', values: ['orders'] },
      { name: 'env', values: ['dev'] },
    ]);
    expect((await broker('rbac', 'explain', 'orders-bot', 'orders', 'orders', 'orders_rw'))[1]).toMatch(
      /^ALLOWED by role\(s\) per-bot-user/,
    );
    expect((await broker('rbac', 'explain', 'audit-bot', 'orders', 'orders', 'auditor'))[1]).toMatch(
      /^ALLOWED/,
    );
    // The same role gives each bot only its own user.
    const denied = await broker('rbac', 'explain', 'audit-bot', 'orders', 'orders', 'orders_rw');
    expect(denied[1]).toMatch(/^DENIED: database user "orders_rw" is not in allow.db_users/);
    expect(denied.join('\n')).toMatch(/per-bot-user\s+allow\.db_users\s+no match\s+\["auditor"\]/);
  });

  it('bots update --add-db-users/--set-trait/--remove-trait change traits and the decision follows', async () => {
    await broker('bots', 'add', 'reporter', '--roles', 'team-expression', '--trait', 'teams=payments,search');
    expect((await broker('rbac', 'explain', 'reporter', 'orders', 'orders', 'reporter'))[1]).toMatch(
      /^ALLOWED/,
    );
    // The expression refuses prod; CockroachDB ignores db_names.
    expect((await broker('rbac', 'explain', 'reporter', 'ledger', 'x', 'reporter'))[1]).toMatch(
      /^DENIED: no role/,
    );
    const updated = await broker('bots', 'update', 'reporter', '--set-trait', 'teams=search');
    expect(updated[0]).toContain('traits: teams=search');
    expect((await broker('rbac', 'explain', 'reporter', 'orders', 'orders', 'reporter'))[1]).toMatch(
      /^DENIED/,
    );
    await broker('bots', 'update', 'reporter', '--add-trait', 'teams=payments', '--add-logins', 'ops');
    expect((await broker('rbac', 'explain', 'reporter', 'orders', 'orders', 'reporter'))[1]).toMatch(
      /^ALLOWED/,
    );
    const removed = await broker('bots', 'update', 'reporter', '--remove-trait', 'teams');
    expect(removed[0]).toContain('traits: logins=ops');
  });

  it('explains a deny by the role, field and value that decided it, as text and JSON', async () => {
    await broker('bots', 'add', 'rooted', '--roles', 'team-expression', '--trait', 'teams=payments');
    const text = await broker('rbac', 'explain', 'rooted', 'orders', 'orders', 'root');
    expect(text[1]).toBe(
      'DENIED: role "team-expression" denies database user "root" by deny.db_users entry "root"',
    );
    const json = JSON.parse(
      (await broker('rbac', 'explain', 'rooted', 'orders', 'orders', 'root', '--format', 'json')).join('\n'),
    );
    expect(json.decision.allowed).toBe(false);
    expect(json.steps).toContainEqual({
      role: 'team-expression',
      field: 'deny.db_users',
      outcome: 'matched',
      detail: '"root"',
    });
  });

  it('issues from the same state: allowed routes get certificates, denied ones AccessDeniedError', async () => {
    const authority = await openAuthority(path.join(dir, 'state'));
    const { publicKeyPem } = await testKeyPair(0);
    await expect(
      authority.issueDatabaseCertificate(
        'orders-bot',
        { service: 'orders', database: 'orders', username: 'orders_rw' },
        publicKeyPem,
      ),
    ).resolves.toMatchObject({ db: { service: 'orders' } });
    await expect(
      authority.issueDatabaseCertificate(
        'orders-bot',
        { service: 'orders', database: 'other', username: 'orders_rw' },
        publicKeyPem,
      ),
    ).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it("the reference guide's example role still works unchanged", async () => {
    await broker(
      'create',
      '-f',
      await file(
        'example-db.yaml',
        'kind: db\nversion: v3\nmetadata: { name: example-server }\nspec: { protocol: postgres, uri: "db.internal:5432" }\n',
      ),
    );
    await broker('bots', 'add', 'example', '--roles', 'example-role');
    const lines = await broker('rbac', 'explain', 'example', 'example-server', 'example', 'alice');
    expect(lines[1]).toBe('ALLOWED by role(s) example-role; certificates last at most 8h0m0s');
  });
});

describe('create-time validation', () => {
  it.each<[string, string, string]>([
    [
      'an RE2 syntax error in a label regex',
      "db_labels: { env: '^(dev$' }",
      'spec.allow.db_labels.env: invalid regular expression "^(dev$"',
    ],
    [
      'a regex JavaScript has but RE2 lacks',
      "db_labels: { env: '^(?=dev)$' }",
      'spec.allow.db_labels.env: invalid regular expression',
    ],
    [
      'a template that does not parse',
      "db_users: ['{{external.name']",
      'spec.allow.db_users.0: "{{external.name" is using template brackets',
    ],
    [
      'an internal trait Teleport does not have',
      "db_users: ['{{internal.team}}']",
      'spec.allow.db_users.0: unsupported variable internal.team',
    ],
    ['a glob in db_names', 'db_names: [dev*]', 'spec.allow.db_names.0: Teleport matches db_names literally'],
    [
      "'*' with another value",
      "db_labels: { '*': dev }",
      'spec.allow.db_labels.*: selector *:<val> is not supported',
    ],
    [
      'an expression that does not type-check',
      'db_labels_expression: labels.env',
      'spec.allow.db_labels_expression: parsing label expression',
    ],
  ])(
    'refuses %s with file, document, path, value and reason, storing nothing',
    async (_name, allow, message) => {
      const p = await file(
        'bad.yaml',
        `kind: role\nversion: v6\nmetadata: { name: fine }\nspec: {}\n---\nkind: role\nversion: v6\nmetadata: { name: bad }\nspec:\n  allow:\n    ${allow}\n`,
      );
      const err = await broker('create', '-f', p).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toContain(`${p}: document 2 (role "bad"): ${message}`);
      expect(err?.message).toMatch(/at line \d+, column \d+/);
      const roles = (await broker('get', 'roles', '--format', 'json')).join('\n');
      expect(roles).not.toContain('"fine"');
    },
  );

  it.each<[string, string, string]>([
    [
      'where in rules',
      'rules: [{ resources: [db], verbs: [read], where: \'contains(user.spec.traits["a"], "b")\' }]',
      'spec.allow.rules.0.where: where is not supported',
    ],
    ['db_roles', 'db_roles: [reader]', 'spec.allow.db_roles: db_roles is not supported'],
    [
      'db_permissions',
      "db_permissions: [{ match: { '*': '*' }, permissions: [SELECT] }]",
      'spec.allow.db_permissions: db_permissions is not supported',
    ],
  ])('refuses %s, naming the field and saying it is not supported', async (_name, allow, message) => {
    const p = await file(
      'unsupported.yaml',
      `kind: role\nversion: v6\nmetadata: { name: bad }\nspec:\n  allow:\n    ${allow}\n`,
    );
    await expect(broker('create', '-f', p)).rejects.toThrow(message);
  });

  it('refuses create_db_user in options', async () => {
    const p = await file(
      'provision.yaml',
      'kind: role\nversion: v6\nmetadata: { name: bad }\nspec:\n  options: { create_db_user: true }\n',
    );
    await expect(broker('create', '-f', p)).rejects.toThrow(
      /spec\.options\.create_db_user: create_db_user is not supported: the broker does not create database users/,
    );
  });
});
