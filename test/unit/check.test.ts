/**
 * `broker check` and the function behind it (src/cli/check.ts): every output of a bot configuration is
 * decided by the authority's own access rules against a resources file, so an output the authority would
 * refuse is named, with bot, output, deciding role, rule and reason, before anything runs. The commands run
 * in-process; the shipped examples/aws files must pass.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseResources } from '../../src/authority/resources.js';
import { parseBotConfig } from '../../src/bot/config.js';
import { checkBotOutputs, describeRefusal } from '../../src/cli/check.js';
import { buildProgram } from '../../src/cli/main.js';
import { BrokerError } from '../../src/errors.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const RESOURCES = `kind: role
version: v6
metadata: { name: orders-app }
spec:
  allow:
    db_labels: { team: orders }
    db_names: [orders]
    db_users: [orders_app]
---
kind: db
version: v3
metadata: { name: orders-postgres, labels: { team: orders } }
spec: { protocol: postgres, uri: "orders.internal:5432" }
---
kind: db
version: v3
metadata: { name: billing-postgres, labels: { team: billing } }
spec: { protocol: postgres, uri: "billing.internal:5432" }
---
kind: bot
version: v1
metadata: { name: orders }
spec: { roles: [orders-app] }
`;

/** A local-mode bot configuration with one directory output per entry. */
function config(outputs: { service: string; username: string; database?: string }[]): string {
  const lines = outputs.flatMap((o, i) => [
    '  - type: database',
    `    destination: { type: directory, path: ./out${i} }`,
    `    service: ${o.service}`,
    `    username: ${o.username}`,
    ...(o.database === undefined ? [] : [`    database: ${o.database}`]),
  ]);
  return [
    'version: v2',
    'auth_server: localhost:3025',
    'onboarding: { join_method: token, token: env://BROKER_TOKEN }',
    'storage: { type: directory, path: ./state }',
    'outputs:',
    ...lines,
    '',
  ].join('\n');
}

const check = (outputs: Parameters<typeof config>[0], botName = 'orders') =>
  checkBotOutputs({
    resources: parseResources(RESOURCES, 'resources.yaml'),
    config: parseBotConfig(config(outputs), 'orders.yaml'),
    botName,
  });

describe('checkBotOutputs', () => {
  it('allows an output the roles allow, naming the roles', () => {
    const result = check([{ service: 'orders-postgres', database: 'orders', username: 'orders_app' }]);
    expect(result.ok).toBe(true);
    expect(result.outputs).toEqual([
      expect.objectContaining({
        bot: 'orders',
        index: 0,
        output: 'orders_app@orders-postgres/orders',
        allowed: true,
        roles: ['orders-app'],
      }),
    ]);
  });

  it('refuses a user the roles do not allow, with role, rule, value and reason', () => {
    const result = check([
      { service: 'orders-postgres', database: 'orders', username: 'orders_app' },
      { service: 'orders-postgres', database: 'orders', username: 'postgres' },
    ]);
    expect(result.ok).toBe(false);
    expect(result.outputs[0]?.allowed).toBe(true);
    const refused = result.outputs[1];
    expect(refused).toMatchObject({
      index: 1,
      output: 'postgres@orders-postgres/orders',
      allowed: false,
      roles: ['orders-app'],
      rule: 'allow.db_users',
      value: '["orders_app"]',
    });
    expect(refused?.reason).toContain('database user "postgres" is not in allow.db_users');
    expect(describeRefusal(refused as NonNullable<typeof refused>)).toBe(
      `bot "orders" outputs[1] (postgres@orders-postgres/orders) would be refused: role "orders-app", rule allow.db_users (["orders_app"]): ${refused?.reason}`,
    );
  });

  it('checks database-tunnel services too, naming where they sit', () => {
    const text = `${config([{ service: 'orders-postgres', database: 'orders', username: 'orders_app' }])}services:
  - type: database-tunnel
    listen: tcp://127.0.0.1:25432
    service: orders-postgres
    database: orders
    username: postgres
`;
    const result = checkBotOutputs({
      resources: parseResources(RESOURCES, 'resources.yaml'),
      config: parseBotConfig(text, 'orders.yaml'),
      botName: 'orders',
    });
    expect(result.ok).toBe(false);
    const tunnel = result.outputs[1]!;
    expect(tunnel).toMatchObject({ where: 'services.0', allowed: false, rule: 'allow.db_users' });
    expect(describeRefusal(tunnel)).toMatch(
      /^bot "orders" services\.0 \(postgres@orders-postgres\/orders\) would be refused/,
    );
  });

  it("evaluates an output's roles alone: a role left out does not allow, a role the bot lacks is named", () => {
    const resources = parseResources(
      `${RESOURCES}---\nkind: role\nversion: v6\nmetadata: { name: reader }\nspec: { allow: { db_labels: { team: orders }, db_names: [orders], db_users: [reader] } }\n---\nkind: bot\nversion: v1\nmetadata: { name: both }\nspec: { roles: [orders-app, reader] }\n`,
      'resources.yaml',
    );
    const withRoles = (roles: string) =>
      parseBotConfig(
        config([{ service: 'orders-postgres', database: 'orders', username: 'orders_app' }]).replace(
          '    username: orders_app',
          `    username: orders_app\n    roles: [${roles}]`,
        ),
        'both.yaml',
      );
    expect(checkBotOutputs({ resources, config: withRoles('orders-app'), botName: 'both' }).ok).toBe(true);
    const narrowed = checkBotOutputs({ resources, config: withRoles('reader'), botName: 'both' });
    expect(narrowed.outputs[0]).toMatchObject({ allowed: false, roles: ['reader'], rule: 'allow.db_users' });
    const unknown = checkBotOutputs({ resources, config: withRoles('admin'), botName: 'both' });
    expect(unknown.outputs[0]).toMatchObject({
      allowed: false,
      roles: ['admin'],
      rule: 'outputs.0.roles',
      reason: expect.stringContaining('role "admin" was requested, but bot "both" does not have it'),
    });
  });

  it('refuses a service whose labels no role matches', () => {
    const [out] = check([
      { service: 'billing-postgres', database: 'orders', username: 'orders_app' },
    ]).outputs;
    expect(out).toMatchObject({ allowed: false, roles: ['orders-app'], rule: 'allow.db_labels' });
    expect(out?.value).toContain('team');
    expect(out?.reason).toContain('no role of bot "orders" (orders-app) has allow.db_labels');
    expect(out?.reason).toContain('database service "billing-postgres" (team=billing)');
  });

  it('refuses an output without database for postgres, which checks db_names (the empty name is not "orders")', () => {
    const [out] = check([{ service: 'orders-postgres', username: 'orders_app' }]).outputs;
    expect(out).toMatchObject({
      output: 'orders_app@orders-postgres/',
      route: { service: 'orders-postgres', database: '', username: 'orders_app' },
      allowed: false,
      rule: 'allow.db_names',
      value: '["orders"]',
    });
    expect(out?.reason).toContain('database name "" is not in allow.db_names');
  });

  it('refuses every output of a bot the resources do not define, and of a service they do not define', () => {
    const [noBot] = check(
      [{ service: 'orders-postgres', database: 'orders', username: 'orders_app' }],
      'ghost',
    ).outputs;
    expect(noBot).toMatchObject({ allowed: false, rule: 'kind: bot', value: 'ghost' });
    const [noDb] = check([{ service: 'nowhere', database: 'orders', username: 'orders_app' }]).outputs;
    expect(noDb).toMatchObject({ allowed: false, rule: 'service', value: 'nowhere' });
    expect(noDb?.reason).toBe('database service "nowhere" does not exist');
  });
});

describe('broker check', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir();
    await writeFile(path.join(dir, 'resources.yaml'), RESOURCES);
  });
  afterAll(removeTempDirs);

  async function broker(...args: string[]): Promise<{ lines: string[]; error?: unknown }> {
    const lines: string[] = [];
    try {
      await buildProgram((l) => lines.push(l)).parseAsync(args, { from: 'user' });
      return { lines };
    } catch (error) {
      return { lines, error };
    }
  }

  async function botFile(name: string, outputs: Parameters<typeof config>[0]): Promise<string> {
    const p = path.join(dir, name);
    await writeFile(p, config(outputs));
    return p;
  }

  it('prints a one-line summary when every output would be issued (the bot named after its file)', async () => {
    const file = await botFile('orders.yaml', [
      { service: 'orders-postgres', database: 'orders', username: 'orders_app' },
    ]);
    const { lines, error } = await broker('check', '-f', path.join(dir, 'resources.yaml'), '-c', file);
    expect(error).toBeUndefined();
    expect(lines).toEqual([
      `ok: all 1 outputs of 1 bot would be issued under ${path.join(dir, 'resources.yaml')}`,
    ]);
  });

  it('prints each refused output and fails (exit 1) when any would be refused; --bot names the bot', async () => {
    const file = await botFile('app.yaml', [
      { service: 'orders-postgres', database: 'orders', username: 'orders_app' },
      { service: 'orders-postgres', database: 'orders', username: 'postgres' },
      { service: 'billing-postgres', database: 'orders', username: 'orders_app' },
    ]);
    const { lines, error } = await broker(
      'check',
      '-f',
      path.join(dir, 'resources.yaml'),
      '-c',
      file,
      '--bot',
      'orders',
    );
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).code).toBe('outputs_refused');
    expect((error as Error).message).toMatch(/^2 of 3 outputs would be refused/);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(
      `${file}: bot "orders" outputs[1] (postgres@orders-postgres/orders) would be refused: role "orders-app", rule allow.db_users`,
    );
    expect(lines[1]).toContain('outputs[2] (orders_app@billing-postgres/orders) would be refused');
    expect(lines[1]).toContain('rule allow.db_labels');
  });

  it('refuses --bot with several configurations, as bad usage', async () => {
    const a = await botFile('a.yaml', [{ service: 'orders-postgres', username: 'orders_app' }]);
    const { error } = await broker(
      'check',
      '-f',
      path.join(dir, 'resources.yaml'),
      '-c',
      a,
      '-c',
      a,
      '--bot',
      'x',
    );
    expect((error as BrokerError).code).toBe('usage');
  });

  it('passes for the shipped examples/aws resources and every bot config, as the stack deploys them', async () => {
    const bots = path.join(REPO_ROOT, 'examples/aws/bots');
    const files = readdirSync(bots)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => path.join(bots, f));
    expect(files.length).toBeGreaterThan(0);
    const resources = path.join(REPO_ROOT, 'examples/aws/resources.yaml');
    const configs = files.flatMap((f) => ['-c', f]);
    const { lines, error } = await broker('check', '-f', resources, ...configs);
    expect(lines.filter((l) => l.includes('refused'))).toEqual([]);
    expect(error).toBeUndefined();
    const outputs = files.reduce((n, f) => n + parseBotConfig(readFileSync(f, 'utf8'), f).outputs.length, 0);
    expect(lines).toEqual([
      `ok: all ${outputs} outputs of ${files.length} bots would be issued under ${resources}`,
    ]);
  });
});
