/**
 * Teleport's tables for traits, templates and label expressions, ported case by case. Decisions go through
 * `broker create -f` parsing, createResources and issueDatabaseCertificate (test/support/rbac-world.ts); the
 * parser tables also run through the template functions themselves. Sources (gravitational/teleport):
 * lib/services/label_expressions_test.go (TestLabelExpressions), lib/services/role_test.go (TestApplyTraits,
 * TestValidateRole), lib/utils/parse/parse_test.go (TestVariable, TestInterpolate, TestVarValidation).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { applyValueTraits } from '../../src/authority/rbac/templates.js';
import { botDoc, createError, dbDoc, type RbacWorld, rbacWorld, roleDoc } from '../support/rbac-world.js';

const ANY = { db_names: ['*'], db_users: ['*'] };

describe('TestLabelExpressions', () => {
  type Case = [
    desc: string,
    expr: string,
    labels: Record<string, string>,
    traits: Record<string, string[]>,
    want: boolean | 'parse error' | 'evaluate error',
  ];
  const cases: Case[] = [
    ['label equality', 'labels["env"] == "staging"', { env: 'staging' }, {}, true],
    ['label inequality', 'labels["env"] != "production"', { env: 'production' }, {}, false],
    ['wrong type', 'user.spec.traits["allow-env"] == "staging"', {}, {}, 'parse error'],
    [
      'contains match',
      'contains(user.spec.traits["allow-env"], labels["env"])',
      { env: 'staging' },
      { 'allow-env': ['dev', 'staging'] },
      true,
    ],
    [
      'contains not match',
      'contains(user.spec.traits["allow-env"], labels["env"])',
      { env: 'production' },
      { 'allow-env': ['dev', 'staging'] },
      false,
    ],
    ['contains wrong type', 'contains(labels, "env")', { env: 'staging' }, {}, 'parse error'],
    [
      'boolean logic',
      `contains(user.spec.traits["allow-env"], labels["env"]) &&
       contains(user.spec.traits["groups"], labels["group"]) ||
       contains(user.spec.traits["groups"], "super-admin")`,
      { env: 'staging', group: 'devs' },
      { 'allow-env': ['dev', 'staging', 'production'], groups: ['devs', 'security'] },
      true,
    ],
    [
      'regexp.match',
      `regexp.match(labels["owner"], "dev-*") &&
                  !regexp.match(labels["env"], "^prod.*$")`,
      { owner: 'dev-123', env: 'staging' },
      {},
      true,
    ],
    [
      'regexp.replace',
      `
      contains(
          // call with list
        regexp.replace(user.spec.traits["groups"], "^team-(.*)$", "$1"),
        labels["team"]) &&
      contains(
          // call with single string
        regexp.replace(labels["env"], "^(.*)$", "env-$1"),
        "env-staging")`,
      { team: 'security', env: 'staging' },
      { groups: ['team-security'] },
      true,
    ],
    [
      'email.local',
      `contains(email.local(user.spec.traits["email"]), labels["owner"]) &&
       contains(email.local(user.spec.traits["full email"]), labels["owner"])`,
      { owner: 'test' },
      { email: ['test@example.com'], 'full email': ['Test <test@example.com>'] },
      true,
    ],
    [
      'email.local error',
      'contains(email.local(user.spec.traits["email"]), labels["owner"])',
      { owner: 'test' },
      { email: ['test'] },
      'evaluate error',
    ],
    [
      'string helpers',
      `contains(strings.lower(user.spec.traits["logins"]), "name") &&
       contains(strings.upper(labels["env"]), "STAGING")`,
      { env: 'staging' },
      { logins: ['test', 'Name'] },
      true,
    ],
    [
      'labels_matching name',
      'contains(labels_matching("^project-(name|label)$"), "skunkworks")',
      { 'project-name': 'skunkworks', 'project-label': 'secret' },
      {},
      true,
    ],
    [
      'labels_matching label',
      'contains(labels_matching("^project-(name|label)$"), "skunkworks")',
      { 'project-name': 'secret', 'project-label': 'skunkworks' },
      {},
      true,
    ],
    [
      'labels_matching glob',
      'contains(labels_matching("project-*"), "skunkworks")',
      { 'project-name': 'skunkworks', 'project-label': 'secret' },
      {},
      true,
    ],
    [
      'labels_matching no match',
      'contains(labels_matching("project-*"), "skunkworks")',
      { project: 'skunkworks' },
      {},
      false,
    ],
    ...(
      [
        ['contains_any match', { projects: ['parser', 'skunkworks', 'algorithms'] }, true],
        ['contains_any no match', { projects: ['parser', 'algorithms'] }, false],
        ['contains_any empty first arg', {}, false],
      ] as const
    ).map(
      ([desc, traits, want]): Case => [
        desc,
        'contains_any(user.spec.traits["projects"], labels_matching("project-*"))',
        { 'project-name': 'skunkworks', 'project-label': 'secret' },
        traits as Record<string, string[]>,
        want,
      ],
    ),
    [
      'contains_any empty second arg',
      'contains_any(user.spec.traits["projects"], labels_matching("project-*"))',
      { team: 'security' },
      { projects: ['parser', 'algorithms'] },
      false,
    ],
    [
      'contains_all match',
      'contains_all(user.spec.traits["projects"], labels_matching("project-*"))',
      { 'project-primary': 'parser', 'project-secondary': 'algorithms' },
      { projects: ['parser', 'skunkworks', 'algorithms'] },
      true,
    ],
    ...(
      [
        ['contains_all no match', { projects: ['parser', 'skunkworks', 'algorithms'] }],
        ['contains_all empty first arg', {}],
      ] as const
    ).map(
      ([desc, traits]): Case => [
        desc,
        'contains_all(user.spec.traits["projects"], labels_matching("project-*"))',
        { 'project-primary': 'parser', 'project-secondary': 'algorithms', 'project-label': 'secret' },
        traits as Record<string, string[]>,
        false,
      ],
    ),
    [
      'contains_all empty second arg',
      'contains_all(user.spec.traits["projects"], labels_matching("project-*"))',
      { team: 'security' },
      { projects: ['parser', 'skunkworks', 'algorithms'] },
      false,
    ],
  ];

  it.each(cases)('%s', async (_desc, expr, labels, traits, want) => {
    const docs = [
      roleDoc('expr', { allow: { db_labels_expression: expr, ...ANY } }),
      dbDoc('target', labels),
      botDoc('bot', ['expr'], traits),
    ];
    if (want === 'parse error') {
      expect(createError(docs)).toMatch(/spec\.allow\.db_labels_expression: parsing label expression/);
      return;
    }
    const outcome = await (await rbacWorld(docs)).decide('bot', {
      service: 'target',
      database: 'd',
      username: 'u',
    });
    if (want === 'evaluate error') {
      expect(outcome).toMatchObject({ allowed: false, reason: expect.stringContaining('failed') });
      return;
    }
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ allowed: want });
  });
});

describe('TestApplyTraits (database fields)', () => {
  let world: RbacWorld;
  beforeAll(async () => {
    world = await rbacWorld([
      dbDoc('any'),
      dbDoc('labelled', { bar: 'there' }),
      dbDoc('labelled-denied', { bar: 'there', there: 'bar' }),
      dbDoc('first-key', { bar: 'value' }),
      dbDoc('second-key', { baz: 'value' }),
      dbDoc('key-baz', { key: 'baz' }),
      dbDoc('key-qux', { key: 'qux' }),
      dbDoc('missing', { bar: 'value', missing: 'othervalue' }),
      roleDoc('external-allow', {
        allow: {
          db_labels: { '*': '*' },
          db_names: ['{{external.foo}}', '{{external.baz}}', 'postgres'],
          db_users: ['{{external.foo}}', '{{external.baz}}', 'postgres'],
        },
      }),
      roleDoc('external-deny', {
        allow: { db_labels: { '*': '*' }, ...ANY },
        deny: {
          db_names: ['{{external.foo}}', '{{external.baz}}', 'postgres'],
          db_users: ['{{external.foo}}', '{{external.baz}}', 'postgres'],
        },
      }),
      roleDoc('internal-allow', {
        allow: {
          db_labels: { '*': '*' },
          db_names: ['{{internal.db_names}}', 'postgres'],
          db_users: ['{{internal.db_users}}', 'postgres'],
        },
      }),
      roleDoc('internal-deny', {
        allow: { db_labels: { '*': '*' }, ...ANY },
        deny: {
          db_names: ['{{internal.db_names}}', 'postgres'],
          db_users: ['{{internal.db_users}}', 'postgres'],
        },
      }),
      roleDoc('labels', {
        allow: { db_labels: { '{{external.foo}}': '{{external.hello}}' }, ...ANY },
        deny: { db_labels: { '{{external.hello}}': '{{external.foo}}' } },
      }),
      roleDoc('missing-vars', {
        allow: {
          db_labels: {
            '{{external.foo}}': ['value'],
            '{{external.missing}}': ['missing'],
            missing: ['{{external.missing}}', 'othervalue'],
          },
          ...ANY,
        },
      }),
      roleDoc('key-first', { allow: { db_labels: { '{{external.foo}}': 'value' }, ...ANY } }),
      roleDoc('values-all', { allow: { db_labels: { key: '{{external.foo}}' }, ...ANY } }),
      roleDoc('functions', {
        allow: {
          db_labels: { '*': '*' },
          db_names: ['*'],
          db_users: [
            '{{email.local(external.name)}}',
            '{{regexp.replace(external.dashed, "^bar-(.*)$", "$1")}}',
            '{{regexp.replace(external.email, "_", "")}}',
            '{{email.local(external.email)}}',
            '{{regexp.replace(email.local(external.email), "_", "")}}',
            '{{regexp.replace(external.email, "d", "e")}}',
            '{{email.local(regexp.replace(external.email, "d", "e"))}}',
            '{{regexp.replace(regexp.replace(email.local(regexp.replace(external.email, "cd", "z")), "ab", "xy"), "_", "")}}',
            '{{regexp.replace("vitor@gravitational.com", "gravitational", "goteleport")}}',
            '{{email.local("vitor@goteleport.com")}}',
            '{{email.local(regexp.replace("vitor.enes@gravitational.com", "gravitational", "goteleport"))}}',
            '{{regexp.replace(external.devs, "^dev-([a-zA-Z]+)$", "$1-admin")}}',
            '{{external.bar}}',
            '{{internal.logins}}',
            'IAM#{{external.foo}};',
            'root',
          ],
        },
      }),
      botDoc('foo-bar', ['external-allow'], { foo: ['bar'] }),
      botDoc('foo-bar-denied', ['external-deny'], { foo: ['bar'] }),
      botDoc('internal', ['internal-allow'], { db_names: ['db1', 'db2'], db_users: ['alice'] }),
      botDoc('internal-denied', ['internal-deny'], { db_names: ['db1', 'db2'], db_users: ['alice'] }),
      botDoc('labels', ['labels'], { foo: ['bar'], hello: ['there'] }),
      botDoc('missing', ['missing-vars'], { foo: ['bar'] }),
      botDoc('key-first', ['key-first'], { foo: ['bar', 'baz'] }),
      botDoc('values-all', ['values-all'], { foo: ['bar', 'baz'] }),
      botDoc('functions', ['functions'], {
        name: ['Bar <bar@example.com>'],
        dashed: ['bar-baz'],
        email: ['ab_cd@example.com'],
        devs: ['dev-alice', 'dev-bob', 'prod-charlie'],
        logins: ['lbar', 'lbaz'],
        foo: ['bar'],
      }),
    ]);
  });

  type Row = [
    comment: string,
    bot: string,
    service: string,
    database: string,
    user: string,
    allowed: boolean,
  ];
  it.each<Row>([
    ['database name/user external vars in allow rule', 'foo-bar', 'any', 'bar', 'bar', true],
    ['database name/user external vars in allow rule', 'foo-bar', 'any', 'postgres', 'postgres', true],
    [
      'database name/user external vars in allow rule (missing trait dropped)',
      'foo-bar',
      'any',
      'baz',
      'baz',
      false,
    ],
    ['database name/user external vars in deny rule', 'foo-bar-denied', 'any', 'x', 'bar', false],
    ['database name/user external vars in deny rule', 'foo-bar-denied', 'any', 'postgres', 'x', false],
    [
      'database name/user external vars in deny rule (missing trait dropped)',
      'foo-bar-denied',
      'any',
      'baz',
      'baz',
      true,
    ],
    ['database name/user internal vars in allow rule', 'internal', 'any', 'db1', 'alice', true],
    ['database name/user internal vars in allow rule', 'internal', 'any', 'db2', 'postgres', true],
    ['database name/user internal vars in allow rule', 'internal', 'any', 'db3', 'alice', false],
    ['database name/user internal vars in deny rule', 'internal-denied', 'any', 'db2', 'x', false],
    ['database name/user internal vars in deny rule', 'internal-denied', 'any', 'x', 'alice', false],
    ['database name/user internal vars in deny rule', 'internal-denied', 'any', 'x', 'y', true],
    ['label substitute in allow and deny rule', 'labels', 'labelled', 'd', 'u', true],
    ['label substitute in allow and deny rule', 'labels', 'labelled-denied', 'd', 'u', false],
    ['missing node variables are set to empty during substitution', 'missing', 'missing', 'd', 'u', false],
    ['the first variable value is picked for label keys', 'key-first', 'first-key', 'd', 'u', true],
    ['the first variable value is picked for label keys', 'key-first', 'second-key', 'd', 'u', false],
    ['all values are expanded for label values', 'values-all', 'key-baz', 'd', 'u', true],
    ['all values are expanded for label values', 'values-all', 'key-qux', 'd', 'u', false],
    ['logins substitute in allow rule with function', 'functions', 'any', 'd', 'bar', true],
    ['logins substitute in allow rule with regexp', 'functions', 'any', 'd', 'baz', true],
    ...['abcd@example.com', 'ab_cd', 'abcd', 'ab_ce@example.com', 'ab_ce', 'xyz'].map(
      (user): Row => [
        'logins substitute in allow rule with multiple functions and regexps',
        'functions',
        'any',
        'd',
        user,
        true,
      ],
    ),
    ...['vitor@goteleport.com', 'vitor', 'vitor.enes'].map(
      (user): Row => [
        'logins substitute in allow rule can have constant expressions',
        'functions',
        'any',
        'd',
        user,
        true,
      ],
    ),
    ['logins which to not match regexp get filtered out', 'functions', 'any', 'd', 'alice-admin', true],
    ['logins which to not match regexp get filtered out', 'functions', 'any', 'd', 'bob-admin', true],
    ['logins which to not match regexp get filtered out', 'functions', 'any', 'd', 'charlie-admin', false],
    [
      'variable in logins, none in traits (external.bar dropped, root kept)',
      'functions',
      'any',
      'd',
      'root',
      true,
    ],
    ['multiple variables in traits', 'functions', 'any', 'd', 'lbar', true],
    ['multiple variables in traits', 'functions', 'any', 'd', 'lbaz', true],
    ['kube user interpolation in allow rule (prefix and suffix)', 'functions', 'any', 'd', 'IAM#bar;', true],
    [
      'kube user interpolation in allow rule (the bare value is not allowed)',
      'functions',
      'any',
      'd',
      'IAM#',
      false,
    ],
  ])('%s: bot %s on %s, %j as %j → %s', async (_c, bot, service, database, username, allowed) => {
    const outcome = await world.decide(bot, { service, database, username });
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ allowed });
  });
});

describe('TestVariable, TestInterpolate, TestVarValidation (lib/utils/parse)', () => {
  const traits = { foo: ['foovalue'], bar: ['barvalue'], email: ['user@example.com'] };
  // Interpolate with no variable validation, as these tests call it.
  const interpolate = (v: string, t: Record<string, string[]> = traits) =>
    applyValueTraits(v, t, { checkInternal: false });

  it.each<[string, string, string | undefined]>([
    ['no curly bracket prefix', 'external.foo}}', undefined],
    ['invalid syntax', '{{external.foo("bar")', undefined],
    ['invalid variable syntax', '{{internal.}}', undefined],
    ['invalid dot syntax', '{{external..foo}}', undefined],
    ['empty variable', '{{}}', undefined],
    ['string variable', '{{"asdf"}}', 'asdf'],
    ['invalid int variable', '{{123}}', undefined],
    ['incomplete variables are not allowed', '{{internal}}', undefined],
    ['no curly bracket suffix', '{{internal.foo', undefined],
    ['too many levels of nesting in the variable', '{{internal.foo.bar}}', undefined],
    ['too many levels of nesting in the variable with property', '{{internal.foo["bar"]}}', undefined],
    ['regexp function call not allowed', '{{regexp.match(".*")}}', undefined],
    ['valid with brackets', '{{internal["foo"]}}', 'foovalue'],
    ['string literal', 'foo', 'foo'],
    ['external with no brackets', '{{external.foo}}', 'foovalue'],
    ['invalid namespaces are allowed', '{{foo.bar}}', 'barvalue'],
    ['internal with no brackets', '{{internal.bar}}', 'barvalue'],
    ['internal with spaces removed', '  {{  internal.bar  }}  ', 'barvalue'],
    [
      'variable with prefix and suffix',
      '  hello,  {{  internal.bar  }}  there! ',
      'hello,  barvalue  there!',
    ],
    ['variable with local function', '{{email.local(internal.email)}}', 'user'],
    ['regexp replace', '{{regexp.replace(internal.foo, "^(.*)value$", "$1")}}', 'foo'],
    [
      'regexp replace with variable expression',
      '{{regexp.replace(internal.foo, internal.bar, "baz")}}',
      undefined,
    ],
    [
      'regexp replace with variable replacement',
      '{{regexp.replace(internal.foo, "bar", internal.baz)}}',
      undefined,
    ],
    ['regexp replace constant expression', '{{regexp.replace("abc", "c", "z")}}', 'abz'],
    ['non existing function', '{{regexp.replac("abc", "c", "z")}}', undefined],
    ['missing args', '{{regexp.replace("abc", "c")}}', undefined],
    ['no args', '{{regexp.replace()}}', undefined],
    ['extra args', '{{regexp.replace("abc", "c", "x", "z")}}', undefined],
    ['invalid arg type', '{{regexp.replace(regexp.match("a"), "c", "x")}}', undefined],
  ])('TestVariable: %s', (_title, input, out) => {
    const r = interpolate(input);
    if (out === undefined) expect(r).toHaveProperty('error');
    else expect(r).toEqual({ values: [out] });
    // The same value in a role's db_users: refused at create when Teleport cannot parse it.
    const refused = createError([roleDoc('r', { allow: { db_users: [input] } })]);
    if (out === undefined) expect(refused).toContain('spec.allow.db_users.0');
  });

  it.each<[string, string, Record<string, string[]>, string[] | 'not found' | 'bad parameter']>([
    ['mapped traits', '{{external.foo}}', { foo: ['a', 'b'], bar: ['c'] }, ['a', 'b']],
    [
      'mapped traits with email.local',
      '{{email.local(external.foo)}}',
      { foo: ['Alice <alice@example.com>', 'bob@example.com'], bar: ['c'] },
      ['alice', 'bob'],
    ],
    ['missed traits', '{{external.baz}}', { foo: ['a', 'b'], bar: ['c'] }, 'not found'],
    [
      'traits with prefix and suffix',
      'IAM#{{external.foo}};',
      { foo: ['a', 'b'], bar: ['c'] },
      ['IAM#a;', 'IAM#b;'],
    ],
    ['error in mapping traits', '{{email.local(external.foo)}}', { foo: ['Alice <alice'] }, 'bad parameter'],
    ['literal expression', 'foo', { foo: ['a', 'b'], bar: ['c'] }, ['foo']],
    [
      'regexp replacement with numeric match',
      '{{regexp.replace(internal.foo, "bar-(.*)", "$1")}}',
      { foo: ['bar-baz'] },
      ['baz'],
    ],
    [
      'regexp replacement with named match',
      '{{regexp.replace(internal.foo, "bar-(?P<suffix>.*)", "$suffix")}}',
      { foo: ['bar-baz'] },
      ['baz'],
    ],
    [
      'regexp replacement with multiple matches',
      '{{regexp.replace(internal.foo, "foo-(.*)-(.*)", "$1.$2")}}',
      { foo: ['foo-bar-baz'] },
      ['bar.baz'],
    ],
    [
      'regexp replacement with no match',
      '{{regexp.replace(internal.foo, "^bar-(.*)$", "$1-matched")}}',
      { foo: ['foo-test1', 'bar-test2'] },
      ['test2-matched'],
    ],
  ])('TestInterpolate: %s', (_title, input, t, want) => {
    const r = interpolate(input, t);
    if (want === 'not found') expect(r).toMatchObject({ error: expect.stringContaining('not found') });
    else if (want === 'bad parameter')
      expect(r).toMatchObject({ error: expect.stringContaining('email.local') });
    else expect(r).toEqual({ values: want });
  });

  it.each<[string, string, boolean]>([
    ['no validation', '{{external.foo}}', true],
    ['validate namespace ok', '{{external.foo}}', true],
    ['variable not found', '{{external.baz}}', false],
    // ApplyValueTraits' own validation: internal names outside Teleport's list are refused.
    ['validate namespace error (internal.foo is not an internal trait)', '{{internal.foo}}', false],
    ['variable found (internal.db_users)', '{{internal.db_users}}', true],
  ])('TestVarValidation: %s', (_title, input, ok) => {
    const r = applyValueTraits(input, { foo: ['bar'], db_users: ['alice'] });
    expect('values' in r).toBe(ok);
  });
});

describe('TestValidateRole: what Teleport warns about is refused when the role is created', () => {
  it.each<[string, Record<string, unknown>, string]>([
    [
      'valid syntax',
      {
        db_users: [
          '{{external["http://schemas.microsoft.com/ws/2008/06/identity/claims/windowsaccountname"]}}',
        ],
      },
      '',
    ],
    ['invalid role condition syntax', { db_users: ['{{foo'] }, 'spec.allow.db_users.0'],
    [
      'unsupported function in labels',
      { db_labels: { owner: '{{email.localz(external.email)}}' } },
      'unsupported function: email.localz',
    ],
    [
      'unsupported function in labels expression',
      { db_labels_expression: 'containz(labels["env"], "staging")' },
      'unsupported function: containz',
    ],
    [
      'unsupported function in slice fields (db_names)',
      { db_names: ['{{email.localz(external.email)}}'] },
      'spec.allow.db_names.0',
    ],
    [
      'unsupported function in slice fields (db_users)',
      { db_users: ['{{email.localz(external.email)}}'] },
      'spec.allow.db_users.0',
    ],
    [
      'a bad expression (TestCheckDatabaseRoles roleD)',
      { db_labels_expression: 'a bad expression' },
      'db_labels_expression',
    ],
  ])('%s', (_name, allow, error) => {
    for (const side of ['allow', 'deny'] as const) {
      const message = createError([roleDoc('r', { [side]: allow })]);
      if (error === '') expect(message).toBeUndefined();
      else expect(message).toContain(error.replace('spec.allow', `spec.${side}`));
    }
  });
});
