/**
 * Role versions and their defaults (api/types/role.go RoleV6.CheckAndSetDefaults, ported from
 * lib/services/role_test.go TestRoleParse), the shapes Teleport accepts that the broker refused before
 * (empty label lists, empty label values, namespaces, v3/v7/v8), bot traits, and the create-time refusals.
 */
import { describe, expect, it } from 'vitest';
import { checkDatabaseAccess } from '../../src/authority/rbac.js';
import {
  type Bot,
  dbSchema,
  parseResources,
  type Role,
  roleSchema,
  roleWithDefaults,
} from '../../src/authority/resources.js';
import { createError, roleDoc } from '../support/rbac-world.js';

const role = (version: string, spec: object): Role =>
  roleSchema.parse({ kind: 'role', version, metadata: { name: 'r' }, spec });
const db = dbSchema.parse({
  kind: 'db',
  version: 'v3',
  metadata: { name: 'svc', labels: { env: 'dev' } },
  spec: { protocol: 'postgres', uri: 'h:1' },
});
const allowed = (roles: Role[]) =>
  checkDatabaseAccess({ bot: 'b', roles, db, route: { service: 'svc', database: 'main', username: 'alice' } })
    .allowed;

describe('TestRoleParse: versions and their defaults', () => {
  it.each(['v3', 'v4', 'v5', 'v6', 'v7', 'v8'])('accepts role version %s', (version) => {
    expect(() => role(version, {})).not.toThrow();
  });

  it.each([
    [
      'validation error, no version',
      'kind: role\nmetadata: { name: defrole }\nspec: {}\n',
      'version null is not supported',
    ],
    [
      'validation error, bad version',
      'kind: role\nversion: v2\nmetadata: { name: defrole }\nspec: {}\n',
      'version "v2" is not supported',
    ],
  ])('%s', (_name, text, message) => {
    expect(() => parseResources(text, 'r.yaml')).toThrow(message);
  });

  it('v3 role with no spec gets v3 defaults: db_labels * : *, namespaces [default], max_session_ttl 30h', () => {
    expect(roleWithDefaults(role('v3', {})).spec).toEqual({
      allow: { namespaces: ['default'], db_labels: { '*': '*' } },
      deny: { namespaces: ['default'] },
      options: { max_session_ttl: '30h' },
    });
  });

  it.each(['v4', 'v5', 'v6', 'v7', 'v8'])('%s role gets no default db_labels', (version) => {
    expect(roleWithDefaults(role(version, {})).spec.allow).toEqual({ namespaces: ['default'] });
  });

  it('a v3 role with db_names and db_users but no db_labels reaches every database; v4 and later reach none', () => {
    const spec = { allow: { db_names: ['main'], db_users: ['alice'] } };
    expect(allowed([role('v3', spec)])).toBe(true);
    for (const v of ['v4', 'v5', 'v6', 'v7', 'v8']) expect(allowed([role(v, spec)])).toBe(false);
  });

  it('a v3 role with an explicit empty db_labels reaches nothing (only a missing field gets the default)', () => {
    expect(allowed([role('v3', { allow: { db_labels: {}, db_names: ['main'], db_users: ['alice'] } })])).toBe(
      false,
    );
  });

  it('non-scalar and scalar values of labels are both accepted', () => {
    const r = role('v3', { allow: { db_labels: { a: 'b', key: ['val'], key2: ['val2', 'val3'] } } });
    expect(r.spec.allow?.db_labels).toEqual({ a: 'b', key: ['val'], key2: ['val2', 'val3'] });
  });
});

describe('shapes Teleport accepts', () => {
  it.each<[string, object, boolean]>([
    ['an empty value list (valid; matches nothing)', { db_labels: { env: [] } }, false],
    ['an empty value (matches only an empty label value)', { db_labels: { env: '' } }, false],
    ["'*': '*' beside another key (matches everything)", { db_labels: { '*': '*', env: 'prod' } }, true],
    ['namespaces [default]', { namespaces: ['default'], db_labels: { env: 'dev' } }, true],
    ['namespaces [*]', { namespaces: ['*'], db_labels: { env: 'dev' } }, true],
  ])('%s', (_name, allow, want) => {
    expect(allowed([role('v6', { allow: { ...allow, db_names: ['main'], db_users: ['alice'] } })])).toBe(
      want,
    );
  });

  it("a deny with '*': '*' beside another key denies everything", () => {
    const r = role('v6', {
      allow: { db_labels: { '*': '*' }, db_names: ['*'], db_users: ['*'] },
      deny: { db_labels: { '*': '*', env: 'prod' } },
    });
    expect(allowed([r])).toBe(false);
  });

  it('a bot carries Teleport-shaped traits; entries with the same name merge', () => {
    const [bot] = parseResources(
      'kind: bot\nversion: v1\nmetadata: { name: b }\nspec:\n  roles: []\n  traits:\n    - { name: db_users, values: [a] }\n    - { name: db_users, values: [b] }\n',
      'b.yaml',
    ) as [Bot];
    const r = role('v6', {
      allow: { db_labels: { '*': '*' }, db_names: ['*'], db_users: ['{{internal.db_users}}'] },
    });
    for (const username of ['a', 'b'])
      expect(
        checkDatabaseAccess({
          bot: 'b',
          roles: [r],
          db,
          route: { service: 'svc', database: 'x', username },
          traits: bot.spec.traits,
        }).allowed,
      ).toBe(true);
  });
});

describe('create-time refusals name the path and the reason', () => {
  it.each<[string, Record<string, unknown>, string]>([
    [
      'an empty namespaces list',
      { namespaces: [] },
      'spec.allow.namespaces: an empty namespaces list matches no namespace',
    ],
    ['another namespace', { namespaces: ['prod'] }, 'spec.allow.namespaces.0'],
    [
      'an empty db_users entry',
      { db_users: [''] },
      'spec.allow.db_users.0: an empty entry in db_users matches nothing',
    ],
    [
      'a regex in db_users',
      { db_users: ['^adm.*$'] },
      'spec.allow.db_users.0: Teleport matches db_users literally',
    ],
    [
      'a half-anchored label regex',
      { db_labels: { env: '^dev' } },
      'spec.allow.db_labels.env: a regular expression must start with ^ and end with $',
    ],
    ['an empty label key', { db_labels: { '': 'x' } }, 'an empty label key matches no database'],
    [
      'an unknown verb',
      { rules: [{ resources: ['db_server'], verbs: ['reed'] }] },
      'spec.allow.rules.0.verbs.0',
    ],
    [
      'a regexp.replace with an invalid regex',
      { db_users: ['{{regexp.replace(external.a, "(()", "x")}}'] },
      'missing closing )',
    ],
    [
      'an expression regexp.match with an invalid regex',
      { db_labels_expression: 'regexp.match(labels.env, "^(x$")' },
      'invalid regular expression',
    ],
  ])('%s', (_name, allow, message) => {
    expect(createError([roleDoc('r', { allow })])).toContain(message);
    expect(createError([roleDoc('r', { deny: allow })])).toContain(
      message.replace('spec.allow', 'spec.deny'),
    );
  });

  it('accepts every Teleport verb and a label value with * inside a template', () => {
    expect(
      createError([
        roleDoc('r', {
          allow: {
            rules: [
              {
                resources: ['*'],
                verbs: ['list', 'create', 'read', 'readnosecrets', 'update', 'delete', 'rotate', 'use', '*'],
              },
            ],
            db_users: ['{{regexp.replace(external.email, "^(.*)@.*$", "$1")}}'],
          },
        }),
      ]),
    ).toBeUndefined();
  });
});
