/**
 * `broker proxy db --tunnel --workers N` against a real PostgreSQL server, run as the built sidecar bundle
 * (dist/proxy-container/proxy.mjs with its proxy-loop.mjs worker entry) in a child process: connections
 * served by every event loop, one --max-connections across loops, a rotated bundle reaching the workers,
 * SIGTERM draining every loop, /metrics summing them, and a bad --workers value refused.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { CLI, spawnCli } from '../support/cli-process.js';
import { EXAMPLE, exampleResourcesYaml, issueBundle, REPO_ROOT } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

const PROXY = path.join(REPO_ROOT, 'dist/proxy-container/proxy.mjs');
const SERVICE = EXAMPLE.service;

interface ProxyProcess {
  child: ChildProcessWithoutNullStreams;
  stderr(): string;
  /** The JSON log lines so far. */
  lines(): Record<string, unknown>[];
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; at: number }>;
}

/** `node dist/proxy-container/proxy.mjs ARGS`, its output collected. */
function spawnProxy(args: readonly string[], env: NodeJS.ProcessEnv = {}): ProxyProcess {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) base[k] = v;
  const child = spawn(process.execPath, [PROXY, ...args], {
    env: { ...base, BROKER_LOG_LEVEL: 'info', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString('utf8');
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
    output += d.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.on('close', (code) => resolve({ code, at: Date.now() })),
  );
  const waitFor = async (pattern: RegExp, timeoutMs = 20_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = output.match(pattern);
      if (m) return m;
      if (child.exitCode !== null || Date.now() > until)
        throw new Error(`no ${pattern} from the proxy; its output:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const lines = () =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { child, stderr: () => stderr, lines, waitFor, exited };
}

/** The event loops that logged `msg` (0 is the main thread's), in the log lines from index `since` on. */
function loopsThat(proxy: ProxyProcess, msg: string, since = 0): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of proxy.lines().slice(since))
    if (line.msg === msg) counts.set(Number(line.loop), (counts.get(Number(line.loop)) ?? 0) + 1);
  return counts;
}

/** Waits until `n` connections have logged their close. */
async function closedCount(proxy: ProxyProcess, n: number): Promise<void> {
  const count = () => [...loopsThat(proxy, 'connection closed').values()].reduce((a, b) => a + b, 0);
  for (let i = 0; i < 200 && count() < n; i++) await new Promise((r) => setTimeout(r, 50));
  expect(count()).toBe(n);
}

describe('broker proxy db --workers with a real PostgreSQL server', () => {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  let server: StartedPostgres | undefined;
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let outputs = 0;
  let cleanups: (() => Promise<unknown> | unknown)[] = [];

  beforeAll(async () => {
    await requirePostgres();
    await promisify(execFile)(
      process.execPath,
      ['scripts/build.mjs', '--target', 'proxy-container', '--quiet'],
      { cwd: REPO_ROOT },
    );
    work = await tempDir('proxy-workers');
    await authority.initialize();
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['alice'],
      databases: ['example'],
    });
    await authority.createResources(
      parseResources(exampleResourcesYaml({ db: { uri: `localhost:${server.port}` } }), 'resources.yaml'),
    );
  }, 120_000);

  afterEach(async () => {
    const pending = cleanups.reverse();
    cleanups = [];
    for (const undo of pending) await undo();
  });

  afterAll(async () => {
    await server?.stop();
    await work?.cleanup();
  });

  const fresh = async (): Promise<CredentialBundle> =>
    issueBundle(authority, { keys: await generateRsaKeyPair() });

  /** A directory output holding a fresh bundle, and `proxy.mjs db --tunnel ARGS` over it. */
  async function startProxy(
    args: readonly string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{
    proxy: ProxyProcess;
    port: number;
    diag: string;
    bundle: CredentialBundle;
    write(b: CredentialBundle): Promise<void>;
  }> {
    const dir = path.join(work?.dir ?? '', `out-${++outputs}`);
    const dest = new DirectoryDestination(dir);
    const bundle = await fresh();
    await dest.write(bundle);
    const diag = `127.0.0.1:${await freePort()}`;
    const proxy = spawnProxy(
      ['db', '--tunnel', '--port', '0', '--destination-dir', dir, '--diag-addr', diag, ...args, SERVICE],
      env,
    );
    cleanups.push(async () => {
      if (proxy.child.exitCode === null && proxy.child.signalCode === null) {
        proxy.child.kill('SIGKILL');
        await proxy.exited;
      }
    });
    const m = await proxy.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
    return { proxy, port: Number(m[1]), diag, bundle, write: (b) => dest.write(b) };
  }

  /** Connects alice through the proxy; ended after the test unless the test ends it. */
  async function connect(port: number): Promise<pg.Client> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'alice',
      database: 'example',
      ssl: false,
      connectionTimeoutMillis: 10_000,
    });
    client.on('error', () => undefined);
    await client.connect();
    cleanups.push(() =>
      Promise.race([client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]),
    );
    return client;
  }

  /**
   * At least `min` connections, more in batches until both loops have set up a tunnel (the kernel decides
   * which loop accepts each; needs the proxy's debug log).
   */
  async function connectOnBothLoops(proxy: ProxyProcess, port: number, min: number): Promise<pg.Client[]> {
    const since = proxy.lines().length;
    const loops = () => [...loopsThat(proxy, 'tunnel established', since).keys()].sort();
    const clients = await Promise.all(Array.from({ length: min }, () => connect(port)));
    while (loops().length < 2 && clients.length < 96)
      clients.push(...(await Promise.all(Array.from({ length: 8 }, () => connect(port)))));
    expect(loops()).toEqual([0, 1]);
    return clients;
  }

  /** The client certificate serial PostgreSQL saw on this connection, as hex like the bundle's. */
  async function serialSeen(client: pg.Client): Promise<string> {
    const r = await client.query<{ serial: string }>(
      'SELECT client_serial::text AS serial FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return BigInt(r.rows[0]?.serial ?? '-1').toString(16);
  }

  const serialHex = (b: CredentialBundle) => BigInt(`0x${b.serial}`).toString(16);

  const metrics = async (diag: string) => (await fetch(`http://${diag}/metrics`)).text();
  const metric = (text: string, name: string) =>
    Number(text.match(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm'))?.[1] ?? Number.NaN);

  it('serves 40 concurrent connections on both loops, and /metrics sums every loop', async () => {
    const { proxy, port, diag } = await startProxy(['--workers', '2'], { BROKER_LOG_LEVEL: 'debug' });
    await proxy.waitFor(/"msg":"proxy started"/);
    const clients = await connectOnBothLoops(proxy, port, 40);
    const n = clients.length; // 40, or a few more when the kernel gave the first 40 to one loop
    const rows = await Promise.all(
      clients.map(async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u),
    );
    expect(rows).toEqual(Array(n).fill('alice'));
    const open = await metrics(diag);
    expect(metric(open, 'broker_proxy_open_connections')).toBe(n);
    const ready = (await (await fetch(`http://${diag}/readyz`)).json()) as { openConnections: number };
    expect(ready.openConnections).toBe(n);
    await Promise.all(clients.map((c) => c.end()));
    await closedCount(proxy, n);
    const served = loopsThat(proxy, 'connection closed');
    expect([...served.keys()].sort()).toEqual([0, 1]);
    const text = await metrics(diag);
    // Each loop's counts are its own; the scrape adds them up.
    expect(metric(text, 'broker_proxy_connections_total{outcome="ok"}')).toBe(n);
    expect(metric(text, 'broker_proxy_upstream_dial_seconds_count')).toBe(n);
    expect(metric(text, 'broker_proxy_open_connections')).toBe(0);
    expect(metric(text, 'broker_proxy_bytes_total{direction="client_to_server"}')).toBeGreaterThan(n * 30);
  }, 60_000);

  it('enforces one --max-connections across the loops', async () => {
    const { proxy, port, diag } = await startProxy(['--workers', '3', '--max-connections', '4']);
    const held = await Promise.all(Array.from({ length: 4 }, () => connect(port)));
    for (const c of held) await c.query('SELECT 1');
    const refused = await Promise.allSettled(Array.from({ length: 8 }, () => connect(port)));
    expect(refused.every((r) => r.status === 'rejected')).toBe(true);
    const text = await metrics(diag);
    expect(metric(text, 'broker_proxy_connections_total{outcome="max_connections"}')).toBe(8);
    expect(metric(text, 'broker_proxy_open_connections')).toBe(4);
    expect(proxy.stderr()).toMatch(/--max-connections 4 reached/);
    await held[0]?.end();
    for (let i = 0; i < 100 && metric(await metrics(diag), 'broker_proxy_open_connections') > 3; i++)
      await new Promise((r) => setTimeout(r, 50));
    const again = await connect(port);
    expect((await again.query('SELECT 1 AS one')).rows[0]?.one).toBe(1);
  }, 60_000);

  it('gives new connections on every loop the rotated certificate; open ones keep theirs', async () => {
    const { proxy, port, bundle, write } = await startProxy(['--workers', '2'], {
      BROKER_LOG_LEVEL: 'debug',
    });
    const old = await connect(port);
    const first = serialHex(bundle);
    expect(await serialSeen(old)).toBe(first);
    const next = await fresh();
    await write(next);
    proxy.child.kill('SIGHUP');
    await proxy.waitFor(new RegExp(`"serial":"${next.serial}"`));
    // The workers load the posted bundle in the moment after; a connection a little later must have it.
    await new Promise((r) => setTimeout(r, 300));
    const clients = await connectOnBothLoops(proxy, port, 24);
    const serials = await Promise.all(clients.map(serialSeen));
    expect(new Set(serials)).toEqual(new Set([serialHex(next)]));
    expect(await serialSeen(old)).toBe(first);
  }, 60_000);

  it('starts without a bundle; once the bot writes one, every loop serves with it', async () => {
    const dir = path.join(work?.dir ?? '', `out-${++outputs}`);
    const proxy = spawnProxy(
      ['db', '--tunnel', '--port', '0', '--destination-dir', dir, '--workers', '2', SERVICE],
      { BROKER_LOG_LEVEL: 'debug' },
    );
    cleanups.push(async () => {
      if (proxy.child.exitCode === null && proxy.child.signalCode === null) {
        proxy.child.kill('SIGKILL');
        await proxy.exited;
      }
    });
    const port = Number((await proxy.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    await proxy.waitFor(/Waiting for credentials/);
    const bundle = await fresh();
    await new DirectoryDestination(dir).write(bundle);
    proxy.child.kill('SIGHUP');
    await proxy.waitFor(new RegExp(`"serial":"${bundle.serial}"`));
    await new Promise((r) => setTimeout(r, 300));
    const clients = await connectOnBothLoops(proxy, port, 24);
    expect(new Set(await Promise.all(clients.map(serialSeen)))).toEqual(new Set([serialHex(bundle)]));
  }, 60_000);

  it('drains every loop on SIGTERM and exits 0 once the last connection closes', async () => {
    const { proxy, port } = await startProxy(['--workers', '2', '--max-sigterm-delay', '20s'], {
      BROKER_LOG_LEVEL: 'debug',
    });
    const clients = await connectOnBothLoops(proxy, port, 16);
    for (const c of clients) await c.query('SELECT 1');
    proxy.child.kill('SIGTERM');
    await proxy.waitFor(/SIGTERM: draining/);
    await new Promise((r) => setTimeout(r, 500));
    const refused = await connect(port).catch((err: NodeJS.ErrnoException) => err);
    expect(refused).toBeInstanceOf(Error);
    expect(proxy.child.exitCode).toBe(null); // every client still connected
    // Still serving the open connections on both loops.
    expect((await Promise.all(clients.map((c) => c.query('SELECT 2 AS two')))).length).toBe(clients.length);
    const closedAt = Date.now();
    await Promise.all(clients.map((c) => c.end()));
    const exit = await proxy.exited;
    expect(exit.code, proxy.stderr()).toBe(0);
    expect(exit.at - closedAt).toBeLessThan(3000);
    expect(proxy.stderr()).toMatch(/all connections finished/);
    expect([...loopsThat(proxy, 'connection closed').keys()].sort()).toEqual([0, 1]);
  }, 60_000);

  it('runs from the full broker CLI bundle too (its proxy-loop.mjs beside broker.mjs)', async () => {
    expect(existsSync(CLI), `${CLI} is missing; run npm run build`).toBe(true);
    const dir = path.join(work?.dir ?? '', `out-${++outputs}`);
    await new DirectoryDestination(dir).write(await fresh());
    const cli = spawnCli(
      ['proxy', 'db', '--tunnel', '--port', '0', '--destination-dir', dir, '--workers', '2', SERVICE],
      { BROKER_LOG_LEVEL: 'debug' },
    );
    cleanups.push(() => {
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
    });
    const port = Number((await cli.waitFor('stdout', /listening on 127\.0\.0\.1:(\d+)/))[1]);
    await cli.waitFor('stderr', /"workers":2,"msg":"proxy started"/);
    // Connections until the worker loop has served one (the kernel decides which loop accepts each).
    const clients: pg.Client[] = [];
    while (!/"loop":1,[^\n]*"msg":"tunnel established"/.test(cli.stderr()) && clients.length < 64)
      clients.push(...(await Promise.all(Array.from({ length: 8 }, () => connect(port)))));
    for (const c of clients) expect((await c.query('SELECT current_user AS u')).rows[0]?.u).toBe('alice');
    expect(cli.stderr()).toMatch(/"loop":1,[^\n]*"msg":"tunnel established"/);
    await Promise.all(clients.map((c) => c.end()));
    cli.child.kill('SIGTERM');
    expect((await cli.exited).code, cli.stderr()).toBe(0);
    expect(cli.stderr()).toMatch(/"loop":1,[^\n]*"msg":"connection closed"/);
  }, 60_000);

  it.each(['0', '65', 'two', '1.5', ''])('refuses --workers %j with a clear message', async (value) => {
    const proxy = spawnProxy([
      'db',
      '--tunnel',
      '--destination-dir',
      work?.dir ?? '',
      '--workers',
      value,
      SERVICE,
    ]);
    const exit = await proxy.exited;
    expect(exit.code).toBe(2);
    expect(proxy.stderr()).toContain(`--workers ${JSON.stringify(value)} is not a number of event loops`);
    expect(proxy.stderr()).toContain('from 1 to 64');
  });
});
