/**
 * The Machine ID with Database Access guide (shared/reference/machine-id-database-access.txt), typed as a
 * Teleport user would, against the local authority and a real PostgreSQL: `tctl create -f ./role.yaml`,
 * `tctl bots update example --add-roles example-role`, the guide's database output in a tbot.yaml, a storage
 * directory made with `mkdir -p` (0755), the systemd units' ExecStart lines (paths aside: the binary, the
 * config, /opt/machine-id and the port), ExecReload's SIGHUP, the authenticated tunnel (--tunnel) and a
 * `database-tunnel` service; then the guide's Step 4 connection (verify-full with the output's files).
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { CLI, type CliProcess, spawnCli } from '../support/cli-process.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

/**
 * The guide's lines, as printed there; `start` is the ExecStart of the unit `tbot install systemd` writes
 * (gravitational/teleport lib/tbot/config/systemd/systemd.tmpl), which the guide's proxy unit `Requires=`.
 */
const GUIDE = {
  create: 'tctl create -f ./role.yaml',
  update: 'tctl bots update example --add-roles example-role',
  proxyExecStart:
    'ExecStart=/usr/local/bin/tbot -c /etc/tbot.yaml proxy --destination-dir=/opt/machine-id db --port=12345 example-server',
  start: 'ExecStart=/usr/local/bin/tbot start -c /etc/tbot.yaml',
};

let work: Awaited<ReturnType<typeof tempDir>>;
let postgres: StartedPostgres;
let authorityServer: CliProcess;
const children: CliProcess[] = [];
const dir = (...p: string[]) => path.join(work.dir, ...p);

/** A guide line as argv for the broker: the program and the guide's paths replaced, nothing else. */
function argvOf(line: string, paths: Record<string, string>): string[] {
  let text = line.replace(/^ExecStart=/, '').replace(/^\/usr\/local\/bin\/tbot |^tctl /, '');
  for (const [from, to] of Object.entries(paths)) text = text.split(from).join(to);
  return text.split(' ');
}

const broker = (args: string[], cwd = work.dir) =>
  run(process.execPath, [CLI, '--state-dir', dir('authority'), ...args], { cwd, timeoutMs: 60_000 });

function connect(port: number, ssl?: pg.ClientConfig['ssl']): Promise<pg.Client> {
  const client = new pg.Client({
    host: 'localhost',
    port,
    database: 'example',
    user: 'alice',
    connectionTimeoutMillis: 10_000,
    ...(ssl ? { ssl } : {}),
  });
  client.on('error', () => undefined);
  return client.connect().then(() => client);
}

async function currentUser(client: pg.Client): Promise<string> {
  try {
    const { rows } = await client.query<{ u: string }>('SELECT current_user AS u');
    return rows[0]!.u;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await requirePostgres();
  work = await tempDir('teleport-guide');
  await mkdir(dir('authority'), { mode: 0o700 });
  expect((await broker(['init'])).code).toBe(0);
  // The database trusts the authority: `auth sign --format=db` as `tctl auth sign --format=db`.
  const signed = await broker([
    'auth',
    'sign',
    '--format=db',
    '--service=example-server',
    '--host=localhost',
    `--out=${dir('server')}`,
  ]);
  expect(signed.code, signed.stderr).toBe(0);
  postgres = await startPostgres({
    baseDir: dir('pg'),
    tls: {
      serverCertPem: await readFile(dir('server.crt'), 'utf8'),
      serverKeyPem: await readFile(dir('server.key'), 'utf8'),
      clientCaPem: await readFile(dir('server.cas'), 'utf8'),
    },
    users: ['alice'],
    databases: ['example'],
  });
  authorityServer = spawnCli([
    '--state-dir',
    dir('authority'),
    'authority',
    'serve',
    '--socket',
    dir('authority.sock'),
  ]);
  await authorityServer.waitFor('stdout', /Authority listening/, 30_000);
}, 180_000);

afterAll(async () => {
  for (const c of [...children, authorityServer]) {
    if (c && c.child.exitCode === null) c.child.kill('SIGTERM');
    await c?.exited;
  }
  await postgres?.stop();
  await work?.cleanup();
});

describe("the guide's steps, typed as written", () => {
  const opt = () => dir('opt-machine-id');
  const tbotYaml = () => dir('etc-tbot.yaml');
  let bot: CliProcess;
  let proxyPort = 0;
  let tunnelPort = 0;

  it('Step 1: tctl create -f ./role.yaml, then bots update --add-roles', async () => {
    await writeFile(dir('role.yaml'), await readFile(path.join(REPO_ROOT, 'examples/role.yaml'), 'utf8'));
    const create = await broker(argvOf(GUIDE.create, {}));
    expect(create.code, create.stderr).toBe(0);
    expect(create.stdout).toContain('role "example-role" has been written');
    const db = (await readFile(path.join(REPO_ROOT, 'examples/db.yaml'), 'utf8')).replace(
      'localhost:5432',
      `localhost:${postgres.port}`,
    );
    await writeFile(dir('db.yaml'), db);
    expect((await broker(['create', './db.yaml'])).code).toBe(0);
    // The deployment guide made the bot without roles; this guide adds the role.
    const add = await broker(['bots', 'add', 'example', '--format', 'json']);
    expect(add.code, add.stderr).toBe(0);
    const token = JSON.parse(add.stdout).token_id as string;
    await writeFile(dir('bot-token'), token, { mode: 0o600 });
    const update = await broker(argvOf(GUIDE.update, {}));
    expect(update.code, update.stderr).toBe(0);
    expect(update.stdout).toContain('roles: example-role');
  });

  it("Step 2: the guide's database output in tbot.yaml; mkdir -p storage; tbot start -c", async () => {
    // `mkdir -p /var/lib/teleport/bot` leaves 0755: the bot tightens it itself instead of burning the token.
    await mkdir(dir('var-lib-teleport-bot'), { recursive: true });
    await chmod(dir('var-lib-teleport-bot'), 0o755);
    tunnelPort = await freePort();
    await writeFile(
      tbotYaml(),
      `version: v2
auth_server: unix://${dir('authority.sock')}
onboarding:
  join_method: token
  token: ${dir('bot-token')}
storage:
  type: directory
  path: ${dir('var-lib-teleport-bot')}
diag_addr: 127.0.0.1:${await freePort()}
outputs:
- type: database
  destination:
    type: directory
    path: ${opt()}
  # Specify the details of the database you wish to connect to.
  service: example-server
  database: example
  username: alice
  # Specify a format to use for the output credentials. For most databases,
  # this configuration field can be omitted.
  # format: mongo
services:
- type: database-tunnel
  listen: tcp://127.0.0.1:${tunnelPort}
  service: example-server
  database: example
  username: alice
`,
    );
    bot = spawnCli(argvOf(GUIDE.start, { '/etc/tbot.yaml': tbotYaml() }));
    children.push(bot);
    // The directory output's line: outputs render concurrently, and the tunnel's in-memory one may come first.
    await bot.waitFor(
      'stderr',
      /-> directory [^"]*opt-machine-id","route[^\n]*"msg":"rendered database output"/,
      60_000,
    );
    expect((await stat(dir('var-lib-teleport-bot'))).mode & 0o777).toBe(0o700);
    for (const f of ['tlscert', 'key', 'teleport-host-ca.crt', 'teleport-database-ca.crt'])
      await expect(stat(path.join(opt(), f))).resolves.toBeTruthy();
    const diag = /diag_addr: (\S+)/.exec(await readFile(tbotYaml(), 'utf8'))![1]!;
    const wait = await broker(['wait', '--diag-addr', diag, '--timeout', '30s']);
    expect(wait.code, wait.stderr).toBe(0);
  }, 90_000);

  it("Step 3 and 4: the proxy unit's ExecStart, and the client with the output's files (verify-full)", async () => {
    proxyPort = await freePort();
    const proxy = spawnCli(
      argvOf(GUIDE.proxyExecStart, {
        '/etc/tbot.yaml': tbotYaml(),
        '/opt/machine-id': opt(),
        '12345': String(proxyPort),
      }),
    );
    children.push(proxy);
    await proxy.waitFor('stdout', /listening on/, 30_000);
    const client = await connect(proxyPort, {
      ca: await readFile(path.join(opt(), 'teleport-host-ca.crt'), 'utf8'),
      key: await readFile(path.join(opt(), 'key'), 'utf8'),
      cert: await readFile(path.join(opt(), 'tlscert'), 'utf8'),
      rejectUnauthorized: true,
      servername: 'localhost',
    });
    expect(await currentUser(client)).toBe('alice');
    // ExecReload=/bin/kill -HUP $MAINPID: the proxy re-reads the credentials and keeps serving.
    proxy.child.kill('SIGHUP');
    await proxy.waitFor('stderr', /SIGHUP/, 10_000);
    const again = await connect(proxyPort, {
      ca: await readFile(path.join(opt(), 'teleport-host-ca.crt'), 'utf8'),
      key: await readFile(path.join(opt(), 'key'), 'utf8'),
      cert: await readFile(path.join(opt(), 'tlscert'), 'utf8'),
      rejectUnauthorized: true,
      servername: 'localhost',
    });
    expect(await currentUser(again)).toBe('alice');
    proxy.child.kill('SIGTERM');
    expect((await proxy.exited).code).toBe(0);
  }, 60_000);

  it('Authenticated tunnel: --tunnel added to the ExecStart; the client brings no TLS and no password', async () => {
    const port = await freePort();
    const argv = argvOf(GUIDE.proxyExecStart, {
      '/etc/tbot.yaml': tbotYaml(),
      '/opt/machine-id': opt(),
      '12345': String(port),
    });
    argv.splice(argv.indexOf('db') + 1, 0, '--tunnel');
    const proxy = spawnCli(argv);
    children.push(proxy);
    await proxy.waitFor('stdout', /listening on .*tunnel/, 30_000);
    expect(await currentUser(await connect(port))).toBe('alice');
    proxy.child.kill('SIGTERM');
    await proxy.exited;
  }, 60_000);

  it('a database-tunnel service in tbot.yaml: the bot itself serves the tunnel, with no files', async () => {
    await bot.waitFor(
      'stdout',
      new RegExp(`Tunnel services\\.0 .* listening on 127\\.0\\.0\\.1:${tunnelPort}`),
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        expect(await currentUser(await connect(tunnelPort))).toBe('alice');
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err; // the first certificate arrives with the bot's first cycle
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }, 60_000);

  it('the join token was used once, and a restarted bot renews from the tightened storage', async () => {
    bot.child.kill('SIGTERM');
    expect((await bot.exited).code).toBe(0);
    const tokens = await broker(['tokens', 'ls']);
    expect(tokens.stdout).not.toContain('example');
    const restarted = spawnCli(['-c', tbotYaml(), 'start', '--oneshot']);
    children.push(restarted);
    const { code } = await restarted.exited;
    expect(code, restarted.stderr()).toBe(0);
    expect(restarted.stderr()).toMatch(/renewed the bot identity/);
    expect(restarted.stderr()).not.toMatch(/joined the authority/);
  }, 60_000);
});
