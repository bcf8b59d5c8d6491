/**
 * Every database name and user a bot's roles allow: Teleport's RoleSet.CheckDatabaseNamesAndUsers
 * (lib/services/role.go), ported case by case from TestCheckDatabaseNamesAndUsers in
 * gravitational/teleport lib/services/role_test.go. Roles are written as YAML and go through parseResources,
 * what `broker create -f` does, so each version's defaults apply; Teleport's test roles set every field this
 * function reads, so each case runs once per role version and gives Teleport's answer in all of them.
 * Then the rules of that function the table does not reach, and `broker rbac allowed` in process.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowedDatabaseNamesAndUsers } from '../../src/authority/rbac.js';
import { type Bot, parseResources, ROLE_VERSIONS, type Role } from '../../src/authority/resources.js';
import { buildProgram } from '../../src/cli/main.js';
import { allowedLines } from '../../src/cli/rbac-commands.js';
import { botDoc, roleDoc, yamlOf } from '../support/rbac-world.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const HOUR = 3_600_000;

/** Role documents through `broker create -f` parsing. */
function roles(docs: object[]): Role[] {
  return parseResources(yamlOf(docs), 'names-users.yaml').filter((r): r is Role => r.kind === 'role');
}

const sorted = (values: readonly string[]) => [...values].sort();

describe('TestCheckDatabaseNamesAndUsers (lib/services/role_test.go)', () => {
  // The three roles of the Teleport test; roleEmpty is named "roleA" there too.
  const roleEmpty = (v: string) =>
    roleDoc('roleA', { options: { max_session_ttl: '1h' }, allow: { namespaces: ['default'] } }, v);
  const roleA = (v: string) =>
    roleDoc(
      'roleA',
      {
        options: { max_session_ttl: '2h' },
        allow: { namespaces: ['default'], db_names: ['postgres', 'main'], db_users: ['postgres', 'alice'] },
      },
      v,
    );
  const roleB = (v: string) =>
    roleDoc(
      'roleB',
      {
        options: { max_session_ttl: '1h' },
        allow: { namespaces: ['default'], db_names: ['metrics'], db_users: ['bob'] },
        deny: { namespaces: ['default'], db_names: ['postgres'], db_users: ['postgres'] },
      },
      v,
    );

  type Case = {
    name: string;
    roles: (v: string) => object[];
    ttlMs: number;
    overrideTtl?: boolean;
    expected: { names: string[]; users: string[] } | { refusal: 'access-denied' | 'not-found' };
  };
  const cases: Case[] = [
    {
      name: 'single role',
      roles: (v) => [roleA(v)],
      ttlMs: HOUR,
      expected: { names: ['postgres', 'main'], users: ['postgres', 'alice'] },
    },
    {
      name: 'combined roles',
      roles: (v) => [roleA(v), roleB(v)],
      ttlMs: HOUR,
      expected: { names: ['main', 'metrics'], users: ['alice', 'bob'] },
    },
    // Teleport: trace.IsAccessDenied(err).
    {
      name: "ttl doesn't match",
      roles: (v) => [roleA(v)],
      ttlMs: 5 * HOUR,
      expected: { refusal: 'access-denied' },
    },
    // Teleport: trace.IsNotFound(err).
    { name: 'empty role', roles: (v) => [roleEmpty(v)], ttlMs: HOUR, expected: { refusal: 'not-found' } },
  ];

  for (const c of cases) {
    it.each(ROLE_VERSIONS)(`TestCheckDatabaseNamesAndUsers/${c.name} (role %s)`, (version) => {
      const result = allowedDatabaseNamesAndUsers({
        roles: roles(c.roles(version)),
        ttlMs: c.ttlMs,
        overrideTtl: c.overrideTtl ?? false,
      });
      if ('refusal' in c.expected) {
        expect(result).toMatchObject({ allowed: false, refusal: c.expected.refusal });
        return;
      }
      if (!result.allowed) throw new Error(result.reason);
      // require.ElementsMatch: Teleport returns the sets in map order.
      expect(sorted(result.names)).toEqual(sorted(c.expected.names));
      expect(sorted(result.users)).toEqual(sorted(c.expected.users));
    });
  }
});

describe('CheckDatabaseNamesAndUsers rules the Teleport table does not reach', () => {
  const role = (name: string, spec: object, version = 'v7') => roleDoc(name, spec, version);

  it('overrideTTL counts every role whatever its max_session_ttl', () => {
    const rs = roles([role('short', { options: { max_session_ttl: '2h' }, allow: { db_names: ['main'] } })]);
    expect(allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: 5 * HOUR, overrideTtl: true })).toMatchObject({
      allowed: true,
      names: ['main'],
      users: [],
    });
  });

  it('a role left out by its TTL gives no names, but its deny lists still apply; the refusal says why', () => {
    const rs = roles([
      role('long', { options: { max_session_ttl: '8h' }, allow: { db_names: ['a', 'b'], db_users: ['u'] } }),
      role('short', {
        options: { max_session_ttl: '1h' },
        allow: { db_names: ['c'] },
        deny: { db_names: ['a'] },
      }),
    ]);
    const result = allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: 2 * HOUR, bot: 'b1' });
    expect(result).toMatchObject({
      allowed: true,
      names: ['b'],
      users: ['u'],
      counted: ['long'],
      ignored: [{ role: 'short', maxSessionTtlMs: HOUR }],
    });
    const refused = allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: 9 * HOUR, bot: 'b1' });
    expect(refused).toMatchObject({ allowed: false, refusal: 'access-denied' });
    expect(!refused.allowed && refused.reason).toBe(
      `bot "b1" cannot request database access for 9h0m0s: every role's max_session_ttl is shorter (long: 8h0m0s, short: 1h0m0s)`,
    );
  });

  it('deny entries are taken out by exact string: "*" removes only "*", a name never removes "*"', () => {
    const rs = roles([
      role('wide', { allow: { db_names: ['*', 'main'], db_users: ['*'] }, deny: { db_users: ['root'] } }),
      role('no-star', { deny: { db_names: ['*'] } }),
    ]);
    expect(allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: HOUR })).toMatchObject({
      allowed: true,
      names: ['main'],
      users: ['*'],
      denied: { names: ['*'], users: ['root'] },
    });
  });

  it('one empty list alone is not a refusal; both empty after deny is NotFound', () => {
    const only = roles([role('u', { allow: { db_users: ['alice'] } })]);
    expect(allowedDatabaseNamesAndUsers({ roles: only, ttlMs: HOUR })).toMatchObject({
      allowed: true,
      names: [],
      users: ['alice'],
    });
    const cancelled = roles([role('u', { allow: { db_users: ['alice'] }, deny: { db_users: ['alice'] } })]);
    const result = allowedDatabaseNamesAndUsers({ roles: cancelled, ttlMs: HOUR, bot: 'b2' });
    expect(result).toMatchObject({ allowed: false, refusal: 'not-found' });
    expect(!result.allowed && result.reason).toMatch(
      /^bot "b2" is not allowed to access any databases: roles u/,
    );
  });

  it('templates expand with the bot traits first (ApplyTraits); values that do not expand are dropped', () => {
    const rs = roles([
      role('t', { allow: { db_names: ['{{internal.db_names}}'], db_users: ['{{external.x}}', 'ro'] } }),
    ]);
    expect(
      allowedDatabaseNamesAndUsers({
        roles: rs,
        ttlMs: HOUR,
        traits: [{ name: 'db_names', values: ['orders', 'ledger'] }],
      }),
    ).toMatchObject({ allowed: true, names: ['orders', 'ledger'], users: ['ro'] });
  });

  it.each(ROLE_VERSIONS)('an unset or 0 max_session_ttl is 30h after defaults (role %s)', (version) => {
    const rs = roles([
      role('unset', { allow: { db_names: ['a'] } }, version),
      role('zero', { options: { max_session_ttl: '0' }, allow: { db_names: ['b'] } }, version),
    ]);
    expect(allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: 30 * HOUR })).toMatchObject({
      names: ['a', 'b'],
    });
    expect(allowedDatabaseNamesAndUsers({ roles: rs, ttlMs: 31 * HOUR })).toMatchObject({
      refusal: 'access-denied',
    });
  });

  it('no roles: AccessDenied, even with overrideTTL, as an empty RoleSet gives in Teleport', () => {
    const result = allowedDatabaseNamesAndUsers({ roles: [], ttlMs: 0, overrideTtl: true, bot: 'lonely' });
    expect(result).toMatchObject({
      allowed: false,
      refusal: 'access-denied',
      reason: 'bot "lonely" has no roles, so it cannot request database access',
    });
  });
});

describe('broker rbac allowed', () => {
  const RESOURCES = [
    roleDoc('reader', {
      options: { max_session_ttl: '8h' },
      allow: { db_names: ['{{internal.db_names}}', 'metrics'], db_users: ['reader'] },
    }),
    roleDoc('ops', {
      options: { max_session_ttl: '1h' },
      allow: { db_names: ['*'], db_users: ['*'] },
      deny: { db_users: ['root'], db_names: ['metrics'] },
    }),
    botDoc('reports', ['reader', 'ops'], { db_names: ['orders'] }),
  ];
  const parsed = parseResources(yamlOf(RESOURCES), 'allowed.yaml');
  const bot = parsed.find((r): r is Bot => r.kind === 'bot') as Bot;
  const rs = parsed.filter((r): r is Role => r.kind === 'role');

  it('prints names and users for any TTL, then only the roles that cover --ttl, and what deny took out', () => {
    expect(allowedLines({ bot, roles: rs, missing: [], format: 'text' })).toEqual([
      'bot "reports" (roles: reader, ops), any TTL',
      'database names: orders, *',
      'database users: reader, *',
      'deny lists (taken out of the lists above): names metrics; users root',
    ]);
    expect(allowedLines({ bot, roles: rs, missing: ['gone'], ttlMs: 2 * HOUR, format: 'text' })).toEqual([
      'bot "reports" (roles: reader, ops), TTL 2h0m0s',
      'roles that no longer exist (ignored): gone',
      'database names: orders',
      'database users: reader',
      'roles left out, max_session_ttl shorter than 2h0m0s: ops (1h0m0s)',
      'deny lists (taken out of the lists above): names metrics; users root',
    ]);
  });

  it('prints the refusal, and JSON with the whole result', () => {
    expect(allowedLines({ bot, roles: rs, missing: [], ttlMs: 9 * HOUR, format: 'text' })[1]).toBe(
      `NOT ALLOWED: bot "reports" cannot request database access for 9h0m0s: every role's max_session_ttl is shorter (reader: 8h0m0s, ops: 1h0m0s)`,
    );
    const json = JSON.parse(
      allowedLines({ bot, roles: rs, missing: [], ttlMs: HOUR, format: 'json' }).join('\n'),
    );
    expect(json).toMatchObject({
      bot: 'reports',
      ttl: '1h0m0s',
      missingRoles: [],
      result: { allowed: true, names: ['orders', '*'], users: ['reader', '*'], counted: ['reader', 'ops'] },
    });
  });

  it('warns that a denied "*" takes out only an allowed "*" here', () => {
    const closed = roles([roleDoc('closed', { allow: { db_users: ['alice'] }, deny: { db_users: ['*'] } })]);
    const lines = allowedLines({ bot, roles: closed, missing: [], format: 'text' });
    expect(lines).toContain('database users: alice');
    expect(lines.at(-1)).toMatch(
      /^a deny list holds "\*": as in Teleport it takes out only an allowed "\*" here/,
    );
  });

  describe('through the command line, from a state directory', () => {
    let dir: string;
    const broker = async (...args: string[]) => {
      const lines: string[] = [];
      await buildProgram((l) => lines.push(l)).parseAsync(['--state-dir', path.join(dir, 'state'), ...args], {
        from: 'user',
      });
      return lines;
    };
    beforeAll(async () => {
      dir = await makeTempDir('broker-rbac-allowed-');
      await broker('init', '--cluster-name', 'allowed');
      const { writeFile } = await import('node:fs/promises');
      await writeFile(path.join(dir, 'r.yaml'), yamlOf(RESOURCES));
      await broker('create', '-f', path.join(dir, 'r.yaml'));
    });
    afterAll(removeTempDirs);

    it('lists what the stored bot and roles allow, and refuses a bad --ttl as usage', async () => {
      expect(await broker('rbac', 'allowed', 'reports', '--ttl', '2h')).toContain('database names: orders');
      const json = JSON.parse((await broker('rbac', 'allowed', 'reports', '--format', 'json')).join('\n'));
      expect(json.result.users).toEqual(['reader', '*']);
      await expect(broker('rbac', 'allowed', 'reports', '--ttl', 'soon')).rejects.toThrow(
        /--ttl must be a duration/,
      );
      await expect(broker('rbac', 'allowed', 'nobody')).rejects.toThrow(/bot "nobody" not found/);
    });
  });
});
