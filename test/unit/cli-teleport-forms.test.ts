/**
 * tctl's and tbot's command-line forms, in process: `create FILE` with -f as --force, KIND/NAME, bots
 * update --set-roles, bots instances add, --format json, `migrate`, `configure database`, global -c/-d, and
 * start's flags over a file (TELEPORT_BOT_TOKEN, --data-dir, onboarding flags replacing the section).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseBotConfig } from '../../src/bot/config.js';
import { databaseOutputOverride, startOverrides, tunnelServiceOverride } from '../../src/cli/bot-flags.js';
import { startConfig } from '../../src/cli/bot-run.js';
import { buildProgram, splitGlobalFlags } from '../../src/cli/main.js';
import { EXAMPLE_ROLE_FILE } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let dir: string;
const PIN = `sha256:${'ab'.repeat(32)}`;

async function broker(args: string[], context = {}): Promise<string[]> {
  const lines: string[] = [];
  await buildProgram((l) => lines.push(l), context).parseAsync(
    ['--state-dir', path.join(dir, 'state'), ...args],
    { from: 'user' },
  );
  return lines;
}

beforeAll(async () => {
  dir = await makeTempDir();
  await broker(['init']);
});
afterAll(removeTempDirs);

describe('tctl forms', () => {
  it('create FILE (positional) refuses to overwrite; create -f FILE (force) overwrites', async () => {
    expect(await broker(['create', EXAMPLE_ROLE_FILE])).toEqual(['role "example-role" has been created']);
    await expect(broker(['create', EXAMPLE_ROLE_FILE])).rejects.toThrow(/already exists; use --force/);
    expect(await broker(['create', '-f', EXAMPLE_ROLE_FILE])).toEqual([
      'role "example-role" has been written',
    ]);
    expect(await broker(['create', '--file', EXAMPLE_ROLE_FILE, '--force'])).toEqual([
      'role "example-role" has been written',
    ]);
  });

  it("bots add --format json prints tctl's keys; bots ls --format json lists the bot", async () => {
    const [json] = await broker(['bots', 'add', 'example', '--roles', 'example-role', '--format', 'json']);
    const added = JSON.parse(json!);
    expect(added).toMatchObject({ user_name: 'bot-example', role_name: 'bot-example' });
    expect(added.token_id).toMatch(/^[0-9a-f]{32}$/);
    expect(added.token_ttl).toBe(60 * 60 * 1e9); // the default token TTL, 1h, in nanoseconds
    const listed = JSON.parse((await broker(['bots', 'ls', '--format', 'json'])).join('\n'));
    expect(listed.map((b: { metadata: { name: string } }) => b.metadata.name)).toEqual(['example']);
  });

  it('bots update --set-roles replaces the roles, and refuses to be mixed with --add-roles', async () => {
    await writeFile(
      path.join(dir, 'other.yaml'),
      (await readFile(EXAMPLE_ROLE_FILE, 'utf8')).replace('name: example-role', 'name: other-role'),
    );
    await broker(['create', path.join(dir, 'other.yaml')]);
    expect(await broker(['bots', 'update', 'example', '--set-roles', 'other-role'])).toEqual([
      'bot "example" has been updated; roles: other-role',
    ]);
    expect(await broker(['bots', 'update', 'example', '--set-roles', 'example-role,other-role'])).toEqual([
      'bot "example" has been updated; roles: other-role, example-role',
    ]);
    await expect(
      broker(['bots', 'update', 'example', '--set-roles', 'a', '--add-roles', 'b']),
    ).rejects.toThrow(/--set-roles replaces the roles/);
  });

  it('bots instances add gives a new one-time token for an existing bot', async () => {
    const lines = await broker(['bots', 'instances', 'add', 'example']);
    expect(lines[0]).toMatch(/^The bot token: [0-9a-f]{32}$/);
    await expect(broker(['bots', 'instances', 'add', 'nobody'])).rejects.toThrow(/nobody/);
  });

  it('get KIND/NAME and rm KIND/NAME, as tctl spells them', async () => {
    expect((await broker(['get', 'role/other-role'])).join('\n')).toContain('name: other-role');
    await broker(['bots', 'update', 'example', '--set-roles', 'example-role']);
    expect(await broker(['rm', 'role/other-role'])).toEqual(['role "other-role" has been deleted']);
    await expect(broker(['get', 'role/other-role'])).rejects.toThrow(/not found/);
  });
});

describe('tbot forms', () => {
  it('takes -c/--config and -d before the command (tbot globals), leaving --state-dir and the rest', () => {
    expect(
      splitGlobalFlags(['-c', '/etc/tbot.yaml', 'proxy', '--destination-dir=/opt/machine-id', 'db', 'x']),
    ).toEqual({
      argv: ['proxy', '--destination-dir=/opt/machine-id', 'db', 'x'],
      context: { globalConfig: '/etc/tbot.yaml' },
    });
    expect(splitGlobalFlags(['--state-dir', 's', '--config=t.yaml', '-d', 'start'])).toEqual({
      argv: ['--state-dir', 's', 'start'],
      context: { globalConfig: 't.yaml', debug: true },
    });
    // After the command, -c belongs to it (broker check -c a.yaml -c b.yaml).
    expect(splitGlobalFlags(['check', '-c', 'a.yaml']).argv).toEqual(['check', '-c', 'a.yaml']);
  });

  it('start flags win over the file; onboarding flags replace the section; TELEPORT_BOT_TOKEN is --token', async () => {
    const file = path.join(dir, 'tbot.yaml');
    await writeFile(
      file,
      `version: v2
auth_server: unix:///old.sock
onboarding: { join_method: token, token: old-token, ca_pins: [${PIN}] }
storage: { type: memory }
outputs: []
`,
    );
    const cfg = await startConfig(
      {
        certificateTtl: '2h',
        renewalInterval: '30m',
        dataDir: '/var/lib/teleport/bot',
        authServer: '127.0.0.1:3025',
      },
      { globalConfig: file, env: { TELEPORT_BOT_TOKEN: 'env-token' } },
    );
    expect(cfg).toMatchObject({
      auth_server: '127.0.0.1:3025',
      credential_ttl: 7_200_000,
      renewal_interval: 1_800_000,
      storage: { type: 'directory', path: '/var/lib/teleport/bot' },
      onboarding: { join_method: 'token', token: 'env-token' },
      ca_pins: [], // tbot: any onboarding flag replaces the whole section
    });
    const fromFlagsOnly = await startConfig(
      { token: '/run/token', authServer: 'unix:///a.sock', caPin: [PIN], dataDir: 'memory://' },
      { env: {} },
    );
    expect(fromFlagsOnly).toMatchObject({ storage: { type: 'memory' }, ca_pins: [PIN], outputs: [] });
  });

  it('start database and start database-tunnel add an output and a tunnel from their flags', async () => {
    const flags = { authServer: 'unix:///a.sock', token: 't', dataDir: 'memory://' };
    const db = await startConfig(flags, {
      env: {},
      extra: [
        databaseOutputOverride({
          destination: '/opt/machine-id',
          service: 'example-server',
          username: 'alice',
          database: 'example',
          format: 'tls',
        }),
      ],
    });
    expect(db.outputs).toEqual([
      expect.objectContaining({
        destination: expect.objectContaining({ type: 'directory', path: '/opt/machine-id' }),
        service: 'example-server',
        username: 'alice',
        database: 'example',
        format: 'tls',
      }),
    ]);
    const tunnel = await startConfig(flags, {
      env: {},
      extra: [
        tunnelServiceOverride({
          listen: 'tcp://127.0.0.1:25432',
          service: 'example-server',
          username: 'alice',
          database: 'example',
        }),
      ],
    });
    expect(tunnel.tunnels).toEqual([
      expect.objectContaining({
        listen: 'tcp://127.0.0.1:25432',
        service: 'example-server',
        origin: 'services.0',
      }),
    ]);
    expect(() => tunnelServiceOverride({ service: 'x' })).toThrow(/give --listen/);
  });

  it('TBOT_CONFIG_PATH names the file and TBOT_CONFIG holds the YAML (or base64 of it)', async () => {
    const yaml =
      'version: v2\nauth_server: unix:///x.sock\nonboarding: { token: t }\nstorage: { type: memory }\n';
    const file = path.join(dir, 'env.yaml');
    await writeFile(file, yaml);
    expect((await startConfig({}, { env: { TBOT_CONFIG_PATH: file } })).auth_server).toBe('unix:///x.sock');
    expect((await startConfig({}, { env: { TBOT_CONFIG: yaml } })).auth_server).toBe('unix:///x.sock');
    const b64 = Buffer.from(yaml).toString('base64');
    expect((await startConfig({}, { env: { TBOT_CONFIG: b64 } })).auth_server).toBe('unix:///x.sock');
  });

  it('--insecure and --proxy-server are refused naming the key, before anything runs', () => {
    const text = 'version: v2\nauth_server: unix:///x.sock\n';
    expect(() => parseBotConfig(text, 'f', { overrides: startOverrides({ insecure: true }, {}) })).toThrow(
      /insecure: true would trust whatever answers/,
    );
    expect(() =>
      parseBotConfig(text, 'f', { overrides: startOverrides({ proxyServer: 'x.teleport.sh:443' }, {}) }),
    ).toThrow(/proxy_server: a Teleport Proxy Service address needs a Teleport cluster/);
  });

  it('plain start --destination-dir (a tbot identity output) is refused with the database form to use', async () => {
    await expect(broker(['start', '--destination-dir', '/opt/machine-id', '--oneshot'])).rejects.toThrow(
      /identity \(tsh\/SSH\) output, which needs a Teleport cluster; for database credentials use: broker start database/,
    );
  });

  it('migrate prints a v1 file as v2; a v2 file has nothing to migrate', async () => {
    const v1 = path.join(dir, 'v1.yaml');
    await writeFile(
      v1,
      `auth_server: "teleport.example.com:443"
onboarding: { join_method: token, token: abcd }
storage:
  directory: /var/lib/teleport/bot
destinations:
  - directory: /opt/machine-id
    database: { service: example-server, username: alice, database: example }
    configs: [mongo]
`,
    );
    const migrated = parse((await broker(['migrate', '-c', v1])).join('\n'));
    expect(migrated).toEqual({
      version: 'v2',
      onboarding: { join_method: 'token', token: 'abcd' },
      auth_server: 'teleport.example.com:443',
      storage: { type: 'directory', path: '/var/lib/teleport/bot' },
      outputs: [
        {
          type: 'database',
          destination: { type: 'directory', path: '/opt/machine-id' },
          format: 'mongo',
          service: 'example-server',
          database: 'example',
          username: 'alice',
        },
      ],
    });
    await expect(broker(['migrate'], { globalConfig: path.join(dir, 'tbot.yaml') })).rejects.toThrow(
      /already the latest version \(v2\); nothing to migrate/,
    );
  });

  it('configure database prints the v2 file the flags describe, which start reads back the same', async () => {
    const out = await broker([
      'configure',
      '--auth-server=127.0.0.1:3025',
      `--ca-pin=${PIN}`,
      '--data-dir=/var/lib/teleport/bot',
      'database',
      '--destination=/opt/machine-id',
      '--service=example-server',
      '--username=alice',
      '--database=example',
    ]);
    const text = out.join('\n');
    expect(parse(text)).toMatchObject({
      version: 'v2',
      auth_server: '127.0.0.1:3025',
      onboarding: { join_method: 'token', ca_pins: [PIN] },
      outputs: [{ type: 'database', service: 'example-server', username: 'alice', database: 'example' }],
    });
    expect(parseBotConfig(text, 'configured.yaml').outputs[0]?.destination).toMatchObject({
      type: 'directory',
      path: '/opt/machine-id',
    });
  });
});
