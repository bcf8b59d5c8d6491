/**
 * Properties of the decision that hold for every role set: deny only ever takes access away, allow only
 * ever adds it, and patterns follow RE2's (Go's) semantics rather than JavaScript's.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { globToRegexp, quoteMeta } from '../../src/authority/rbac/regex.js';
import { checkDatabaseAccess, matchPattern } from '../../src/authority/rbac.js';
import { type Db, dbSchema, type Role, roleSchema } from '../../src/authority/resources.js';
import { type DatabaseRoute, DB_PROTOCOLS } from '../../src/credentials/route.js';

const word = fc.constantFrom('dev', 'prod', 'alice', 'bob', 'Alice', 'main', 'x');
const labelKey = fc.constantFrom('env', 'team', 'tier');
const labelValue = fc.oneof(word, fc.constantFrom('*', 'd*', '^(dev|prod)$', '^a.*$'));
const selector = fc.oneof(
  fc.constant({ '*': '*' }),
  fc.dictionary(labelKey, fc.oneof(labelValue, fc.array(labelValue, { maxLength: 2 })), { maxKeys: 2 }),
);
const names = fc.array(fc.oneof(word, fc.constant('*')), { maxLength: 3 });
const expression = fc.constantFrom(
  'labels["env"] == "dev"',
  'contains(user.spec.traits["teams"], labels["team"])',
  '!regexp.match(labels["tier"], "^p.*$")',
);
const conditions = fc.record(
  {
    db_labels: selector,
    db_labels_expression: expression,
    db_names: names,
    db_users: names,
    rules: fc.constant([{ resources: ['db_server'], verbs: ['list'] }]),
  },
  { requiredKeys: [] },
);
const roleArb = (name: string) =>
  fc
    .record({ version: fc.constantFrom('v3', 'v6', 'v8'), allow: conditions, deny: conditions })
    .map(({ version, allow, deny }): Role => {
      // Deny rules on db_server refuse everything; keep them rare so allows stay reachable.
      const { rules: _ignored, ...denyWithoutRules } = deny;
      return roleSchema.parse({
        kind: 'role',
        version,
        metadata: { name },
        spec: { allow, deny: denyWithoutRules },
      });
    });
const dbArb = fc
  .record({
    protocol: fc.constantFrom(...DB_PROTOCOLS),
    labels: fc.dictionary(labelKey, word, { maxKeys: 3 }),
  })
  .map(
    ({ protocol, labels }): Db =>
      dbSchema.parse({
        kind: 'db',
        version: 'v3',
        metadata: { name: 'svc', labels },
        spec: { protocol, uri: 'h:1' },
      }),
  );
const routeArb = fc.record({ service: fc.constant('svc'), database: word, username: word });
const traitsArb = fc.constantFrom<{ name: string; values: string[] }[]>(
  [],
  [{ name: 'teams', values: ['dev', 'x'] }],
);

function decide(roles: Role[], db: Db, route: DatabaseRoute, traits: { name: string; values: string[] }[]) {
  return checkDatabaseAccess({ bot: 'b', roles, db, route, traits }).allowed;
}

type Conditions = NonNullable<Role['spec']['deny']>;

/**
 * Adds deny conditions to a role's deny block without taking any away: name and user lists grow, and a
 * label selector or expression is set only where the role has none. Replacing one would not be "adding":
 * a selector with one more key matches fewer databases (Teleport's MatchLabels needs every key), so it
 * can narrow a deny.
 */
function addDeny(existing: Conditions, added: Conditions): Conditions {
  const out: Conditions = { ...existing };
  for (const key of ['db_names', 'db_users'] as const) {
    const more = added[key];
    if (more) out[key] = [...(existing[key] ?? []), ...more];
  }
  if (existing.db_labels === undefined && added.db_labels !== undefined) out.db_labels = added.db_labels;
  if (existing.db_labels_expression === undefined && added.db_labels_expression !== undefined)
    out.db_labels_expression = added.db_labels_expression;
  return out;
}

describe('deny only takes access away', () => {
  it('adding a role with only deny conditions never turns a deny into an allow', () => {
    fc.assert(
      fc.property(
        fc.array(roleArb('r'), { minLength: 1, maxLength: 3 }),
        conditions,
        dbArb,
        routeArb,
        traitsArb,
        (roles, deny, db, route, traits) => {
          const named = roles.map((r, i) => ({ ...r, metadata: { name: `r${i}` } }));
          const blocker = roleSchema.parse({
            kind: 'role',
            version: 'v6',
            metadata: { name: 'blocker' },
            spec: { deny },
          });
          const before = decide(named, db, route, traits);
          const after = decide([...named, blocker], db, route, traits);
          if (!before) expect(after).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('adding deny conditions to a role of the set never turns a deny into an allow', () => {
    fc.assert(
      fc.property(
        fc.array(roleArb('r'), { minLength: 1, maxLength: 3 }),
        conditions,
        dbArb,
        routeArb,
        traitsArb,
        (roles, deny, db, route, traits) => {
          const named = roles.map((r, i) => ({ ...r, metadata: { name: `r${i}` } }));
          const target = named[0] as Role;
          const merged = roleSchema.parse({
            ...target,
            spec: { ...target.spec, deny: addDeny(target.spec.deny ?? {}, deny as unknown as Conditions) },
          });
          if (!decide(named, db, route, traits))
            expect(decide([merged, ...named.slice(1)], db, route, traits)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('adding a role with only allow conditions never turns an allow into a deny', () => {
    fc.assert(
      fc.property(
        fc.array(roleArb('r'), { minLength: 1, maxLength: 3 }),
        conditions,
        dbArb,
        routeArb,
        traitsArb,
        (roles, allow, db, route, traits) => {
          const named = roles.map((r, i) => ({ ...r, metadata: { name: `r${i}` } }));
          const extra = roleSchema.parse({
            kind: 'role',
            version: 'v6',
            metadata: { name: 'extra' },
            spec: { allow },
          });
          if (decide(named, db, route, traits))
            expect(decide([...named, extra], db, route, traits)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('on CockroachDB a deny of a user denies every spelling of it in another case', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_]{0,10}$/), fc.boolean(), (user, upper) => {
        const asked = upper ? user.toUpperCase() : user.toLowerCase();
        const roles = [
          roleSchema.parse({
            kind: 'role',
            version: 'v6',
            metadata: { name: 'r' },
            spec: { allow: { db_labels: { '*': '*' }, db_users: ['*'] }, deny: { db_users: [user] } },
          }),
        ];
        const db = dbSchema.parse({
          kind: 'db',
          version: 'v3',
          metadata: { name: 's' },
          spec: { protocol: 'cockroachdb', uri: 'h:1' },
        });
        expect(decide(roles, db, { service: 's', database: 'd', username: asked }, [])).toBe(false);
      }),
    );
  });
});

describe('patterns follow RE2 (Go) semantics', () => {
  const text = fc.string({
    unit: fc.constantFrom('a', 'b', '.', '*', '(', ')', '[', '\\', '$', '^', '-', 'é', '😀'),
  });

  it('a glob without * matches exactly itself, special characters included', () => {
    fc.assert(
      fc.property(
        text.filter((s) => !s.includes('*') && !(s.startsWith('^') && s.endsWith('$'))),
        text,
        (glob, other) => {
          expect(matchPattern(glob, glob)).toBe(true);
          expect(matchPattern(glob, other)).toBe(other === glob);
        },
      ),
    );
  });

  it("a glob matches as Teleport's GlobToRegexp: * is any run of characters except a newline", () => {
    const naive = (glob: string, s: string): boolean => {
      const parts = glob.split('*');
      if (parts.length === 1) return glob === s;
      if (
        s.includes('\n') ||
        !s.startsWith(parts[0] as string) ||
        !s.endsWith(parts[parts.length - 1] as string)
      )
        return false;
      let pos = (parts[0] as string).length;
      for (const p of parts.slice(1, -1)) {
        const at = s.indexOf(p, pos);
        if (at < 0) return false;
        pos = at + p.length;
      }
      return pos <= s.length - (parts[parts.length - 1] as string).length;
    };
    fc.assert(
      fc.property(
        text.filter((s) => !(s.startsWith('^') && s.endsWith('$'))),
        fc.string({ unit: fc.constantFrom('a', 'b', '.', '\n', '*') }),
        (glob, s) => {
          expect(matchPattern(glob, s)).toBe(naive(glob, s));
        },
      ),
    );
  });

  it('^quoted$ matches only the quoted text, and globToRegexp agrees with matchPattern', () => {
    fc.assert(
      fc.property(text, text, (s, other) => {
        expect(matchPattern(`^${quoteMeta(s)}$`, s)).toBe(true);
        expect(matchPattern(`^${quoteMeta(s)}$`, other)).toBe(other === s);
        expect(matchPattern(`^${globToRegexp(s)}$`, other)).toBe(
          matchPattern(s.startsWith('^') && s.endsWith('$') ? `^${quoteMeta(s)}$` : s, other),
        );
      }),
    );
  });

  it.each<[string, string, boolean]>([
    // RE2 syntax that JavaScript's RegExp rejects or reads differently
    ['^(?i)admin$', 'ADMIN', true],
    ['^db\\-[0-9]+$', 'db-12', true],
    ['^(?P<env>dev|prod)$', 'prod', true],
    ['^\\pL+$', 'héllo', true],
    ['^\\Qa.b\\E$', 'a.b', true],
    ['^\\Qa.b\\E$', 'axb', false],
    ['^[[:alpha:]]+$', 'abc', true],
    // Go's MatchString searches: the alternation leaves one side unanchored
    ['^us-west-1|eu-central-1$', 'xeu-central-1', true],
    // . does not match a newline, $ is the end of text only
    ['^a.b$', 'a\nb', false],
    ['^a$', 'a\n', false],
    // what RE2 refuses matches nothing (and is refused when a role is created)
    ['^a(?=b)$', 'ab', false],
    ['^(a)\\1$', 'aa', false],
  ])('matchPattern(%j, %j) is %s', (pattern, value, want) => {
    expect(matchPattern(pattern, value)).toBe(want);
  });
});
