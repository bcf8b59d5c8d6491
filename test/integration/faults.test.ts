/**
 * Fault injection with real parts: the database restarting under the proxy, the bot SIGKILLed in the middle
 * of writing an output, a full disk under the directory destination (a 256 KiB tmpfs), and two bots racing
 * for one destination.
 *
 * The single-process cases of the directory destination (failed writes, the lock against a live holder,
 * writers in several processes ending in one whole bundle) are in test/unit/directory-destination.test.ts;
 * the proxy's behaviour with an upstream that was never there is in proxy-postgres.test.ts. Here the
 * faults happen in the middle of real work.
 *
 * Needs the PostgreSQL server binaries (fails with an install hint without them) and, for the full disk,
 * permission to mount a tmpfs (root or CAP_SYS_ADMIN; fails with a clear message otherwise).
 */
import { execFile, spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import type { OutputFormat } from '../../src/credentials/formats.js';
import {
  DestinationError,
  DirectoryDestination,
  readDirectoryOutput,
} from '../../src/destinations/directory.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { createLogger } from '../../src/log.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { CredentialCache } from '../../src/proxy/credential-cache.js';
import { DatabaseProxy } from '../../src/proxy/proxy.js';
import { DirectoryBundleSource } from '../../src/proxy/sources/directory.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { exampleResourcesYaml, issueBundle as issueTestBundle, REPO_ROOT } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

const execFileAsync = promisify(execFile);
const SERVICE = 'example-server';
const ROUTE = { service: SERVICE, database: 'example', username: 'alice' };
const log = createLogger({ level: process.env.FAULTS_TEST_LOG_LEVEL ?? 'silent' });

/** The example (its role without a session cap) on the given port. */
const resources = (port: number) =>
  exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: `localhost:${port}` } });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects when `promise` has not settled within `ms`: a hang becomes a failure that says what hung. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (a hang)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Issues a real bundle (fresh RSA key, certificate from `authority`) rendered in `format`. */
async function issueBundle(authority: Authority, format: OutputFormat = ''): Promise<CredentialBundle> {
  return issueTestBundle(authority, { route: ROUTE, format, keys: await generateRsaKeyPair() });
}

async function newAuthority(dbPort = 5432): Promise<Authority> {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
  await authority.initialize('faults');
  await authority.createResources(parseResources(resources(dbPort), 'resources.yaml'));
  return authority;
}

/**
 * Checks an output the way a client sees it: `readDirectoryOutput` gives one whole issuance (key matches
 * certificate, serial is the certificate's, the files are exactly one of `known`), and every artifact name
 * in the directory resolves to that issuance's content. Returns the bundle.
 */
async function expectWholeOutput(dir: string, known: readonly CredentialBundle[]): Promise<CredentialBundle> {
  const current = await readDirectoryOutput(dir);
  if (!current) throw new Error(`${dir} holds no output`);
  const cert = new X509Certificate(current.files.tlscert as string);
  expect(cert.checkPrivateKey(createPrivateKey(current.files.key as string))).toBe(true);
  expect(BigInt(`0x${cert.serialNumber}`)).toBe(BigInt(`0x${current.serial}`));
  const source = known.find((b) => b.serial === current.serial);
  expect(source, `serial ${current.serial} is none of the bundles written`).toBeDefined();
  expect(current.files).toEqual(source?.files);
  for (const [name, content] of Object.entries(current.files))
    expect(await readFile(path.join(dir, name), 'utf8'), `${dir}/${name}`).toBe(content);
  return current;
}

/** What a finished write leaves: `.current`, `.versions` (current + one previous), and the artifact links. */
async function expectTidy(dir: string, bundle: CredentialBundle): Promise<void> {
  const top = new Set(Object.keys(bundle.files).map((f) => f.split('/')[0] as string));
  expect((await readdir(dir)).sort()).toEqual(['.current', '.versions', ...top].sort());
  const versions = await readdir(path.join(dir, '.versions'));
  expect(versions.filter((v) => v.endsWith('.tmp'))).toEqual([]);
  expect(versions.length).toBeLessThanOrEqual(2);
}

/**
 * The writer run as a separate process (`node --import tsx`): it writes the bundles of a JSON file to a
 * directory destination, round robin, `count` times or forever, and prints one JSON line per write. Each
 * write gets its own issuedAt, so every write is identifiable as `serial@issuedAt`. With a barrier
 * directory, it waits until `parties` writers are ready. In `race` mode it reads the output back after
 * each successful write.
 */
const WRITER = `
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { DirectoryDestination, readDirectoryOutput } from ${JSON.stringify(path.join(REPO_ROOT, 'src/destinations/directory.ts'))};

const [dir, bundlesFile, countText, mode, barrier, parties] = process.argv.slice(2);
const bundles = JSON.parse(await readFile(bundlesFile, 'utf8'));
if (barrier) {
  await writeFile(barrier + '/' + process.pid, '');
  while ((await readdir(barrier)).length < Number(parties)) await new Promise((r) => setTimeout(r, 5));
}
const dest = new DirectoryDestination(dir);
const count = countText === 'forever' ? Infinity : Number(countText);
const base = Date.parse('2030-01-01T00:00:00.000Z');
for (let i = 0; i < count; i++) {
  const bundle = { ...bundles[i % bundles.length], issuedAt: new Date(base + i).toISOString() };
  const id = bundle.serial + '@' + bundle.issuedAt;
  const startedAt = Date.now();
  try {
    await dest.write(bundle);
    const doneAt = Date.now();
    if (mode !== 'race') {
      console.log(JSON.stringify({ i, id, ok: true }));
      continue;
    }
    const back = await readDirectoryOutput(dir);
    const cert = new X509Certificate(back.files.tlscert);
    const consistent =
      cert.checkPrivateKey(createPrivateKey(back.files.key)) && BigInt('0x' + cert.serialNumber) === BigInt('0x' + back.serial);
    console.log(JSON.stringify({ i, id, ok: true, startedAt, doneAt, readBack: back.serial + '@' + back.issuedAt, consistent }));
  } catch (err) {
    console.log(JSON.stringify({ i, id, ok: false, startedAt, name: err.name, error: err.message }));
  }
}
`;

interface WriteRecord {
  i: number;
  id: string;
  ok: boolean;
  startedAt?: number;
  doneAt?: number;
  readBack?: string;
  consistent?: boolean;
  name?: string;
  error?: string;
}

describe('faults without a database', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let authority: Authority;
  let writer: string;
  let outputs = 0;
  const newOutput = async () => path.join(await realpath(work.dir), `out-${++outputs}`);

  beforeAll(async () => {
    work = await tempDir('faults');
    authority = await newAuthority();
    writer = path.join(work.dir, 'writer.mts');
    await writeFile(writer, WRITER);
  });
  afterAll(async () => {
    await work?.cleanup();
  });

  async function bundlesFile(name: string, bundles: readonly CredentialBundle[]): Promise<string> {
    const file = path.join(work.dir, `${name}.json`);
    await writeFile(file, JSON.stringify(bundles), { mode: 0o600 });
    return file;
  }

  function startWriter(args: readonly string[]) {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const lineWaiters: (() => void)[] = [];
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
      for (const w of lineWaiters.splice(0)) w();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal })),
    );
    return {
      child,
      exited,
      records: (): WriteRecord[] =>
        stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as WriteRecord),
      stderr: () => stderr,
      /** Resolves once the writer has printed its first line (its first write finished). */
      async firstWrite(): Promise<void> {
        const deadline = Date.now() + 30_000;
        while (!stdout.includes('\n')) {
          if (child.exitCode !== null || Date.now() > deadline)
            throw new Error(`the writer never finished a write; stderr:\n${stderr}`);
          await new Promise<void>((resolve) => {
            lineWaiters.push(resolve);
            setTimeout(resolve, 100);
          });
        }
      },
    };
  }

  describe('SIGKILL of the bot in the middle of writing an output', () => {
    it('20 kills at random moments: the output is always whole, and the next write succeeds and tidies up', async () => {
      const dir = await newOutput();
      const formats: OutputFormat[] = ['', 'tls', 'cockroach', 'mongo', '', 'tls'];
      const bundles = await Promise.all(formats.map((f) => issueBundle(authority, f)));
      const file = await bundlesFile('kill', bundles);
      const recovery = await Promise.all([issueBundle(authority, 'tls'), issueBundle(authority, '')]);
      const known = [...bundles, ...recovery];
      const debris = { lock: 0, staging: 0 };

      for (let round = 0; round < 20; round++) {
        const w = startWriter([dir, file, 'forever', 'loop']);
        await w.firstWrite();
        await sleep(Math.random() * 40);
        w.child.kill('SIGKILL');
        // Waiting for the exit also reaps the process: a zombie's pid would still look alive to the lock.
        expect((await w.exited).signal, w.stderr()).toBe('SIGKILL');

        // What the crash left behind (counted, to show the kills landed mid-write).
        const top = await readdir(dir);
        if (top.includes('.lock')) debris.lock++;
        if ((await readdir(path.join(dir, '.versions'))).some((v) => v.endsWith('.tmp'))) debris.staging++;

        // A reader right after the crash sees one whole issuance under every name.
        await expectWholeOutput(dir, known);

        // The next bot run writes at once: the dead writer's lock is broken, its leftovers removed.
        const next = recovery[round % 2] as CredentialBundle;
        const started = Date.now();
        await new DirectoryDestination(dir).write(next);
        expect(Date.now() - started, 'the next write waited for a dead writer').toBeLessThan(2_000);
        expect((await expectWholeOutput(dir, known)).serial).toBe(next.serial);
        await expectTidy(dir, next);
      }
      // Nearly every kill lands while the lock is held (a write is almost all of the loop).
      expect(debris.lock, JSON.stringify(debris)).toBeGreaterThan(0);
    }, 180_000);

    it('recovers from each state a crash can leave: an empty lock, a staging directory, stray link files', async () => {
      const dir = await newOutput();
      const dest = new DirectoryDestination(dir);
      const [first, second, third] = await Promise.all([
        issueBundle(authority, 'tls'),
        issueBundle(authority),
        issueBundle(authority, 'cockroach'),
      ]);
      await dest.write(first as CredentialBundle);
      // Killed between creating the lock file and writing its pid into it.
      await writeFile(path.join(dir, '.lock'), '', { mode: 0o600 });
      // Killed while filling a staging directory.
      await mkdir(path.join(dir, '.versions', '.dead0001-abcdef.tmp', 'cockroach'), { recursive: true });
      await writeFile(path.join(dir, '.versions', '.dead0001-abcdef.tmp', 'tlscert'), 'partial');
      // Killed between creating a link under a temporary name and renaming it into place.
      await symlink('.versions/dead0001-abcdef', path.join(dir, '.current.0a1b2c3d.tmp'));
      await symlink('.current/tlscert', path.join(dir, 'tlscert.0a1b2c3d.tmp'));

      const started = Date.now();
      await dest.write(second as CredentialBundle);
      expect(Date.now() - started, 'an empty lock file left by a crash wedged the destination').toBeLessThan(
        2_000,
      );
      await expectWholeOutput(dir, [second as CredentialBundle]);
      await expectTidy(dir, second as CredentialBundle);
      await dest.write(third as CredentialBundle);
      await expectTidy(dir, third as CredentialBundle);
    }, 30_000);

    it('a write that fails at the last step (a directory in the way of a new link) leaves the previous output current', async () => {
      const dir = await newOutput();
      const dest = new DirectoryDestination(dir);
      const [first, second] = await Promise.all([issueBundle(authority), issueBundle(authority, 'tls')]);
      await dest.write(first as CredentialBundle);
      await mkdir(path.join(dir, 'tls.key')); // the user's directory, where the tls format needs a link
      const err = await dest.write(second as CredentialBundle).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationError);
      expect((err as Error).message).toContain(path.join(dir, 'tls.key'));
      // Destination.write is all-or-nothing: the failed write changed nothing a reader sees.
      expect((await expectWholeOutput(dir, [first as CredentialBundle])).serial).toBe(first?.serial);
      // (Links made for the new names may dangle until the next write; opening them fails as before.)
      await expect(readFile(path.join(dir, 'tls.crt'))).rejects.toThrow(/ENOENT/);
      expect((await lstat(path.join(dir, 'tls.key'))).isDirectory()).toBe(true);
    });
  });

  describe('two bots racing for one destination', () => {
    it('every write either lands (and is read back whole) or fails with the lock error; none is lost silently', async () => {
      const dir = await newOutput();
      const barrier = path.join(work.dir, 'race-barrier');
      await mkdir(barrier);
      const perBot = 25;
      const sets = await Promise.all(
        [0, 1].map(async (n) =>
          bundlesFile(`race-${n}`, [await issueBundle(authority), await issueBundle(authority, 'tls')]),
        ),
      );
      const bots = sets.map((file) => startWriter([dir, file, String(perBot), 'race', barrier, '2']));
      const exits = await Promise.all(bots.map((b) => within(b.exited, 120_000, 'a racing writer')));
      for (const [n, e] of exits.entries()) expect(e.code, bots[n]?.stderr()).toBe(0);

      const records = bots.map((b) => b.records());
      for (const r of records) expect(r).toHaveLength(perBot);
      const all = records.flat();
      const landed = new Map(all.filter((r) => r.ok).map((r) => [r.id, r]));
      for (const [n, mine] of records.entries()) {
        const theirs = records[1 - n] as WriteRecord[];
        for (const r of mine) {
          if (!r.ok) {
            // The only acceptable failure: the other bot held the lock for the whole wait.
            expect(r.name).toBe('DestinationError');
            expect(r.error).toMatch(
              /is being written by another bot \(pid \d+\); two bots must not share one destination/,
            );
            continue;
          }
          expect(r.consistent, `read-back after ${r.id}`).toBe(true);
          if (r.readBack === r.id) continue;
          // Overwritten already: then by a write of the other bot that landed after this one started.
          const over = landed.get(r.readBack as string);
          expect(over, `${r.id} read back ${r.readBack}, which no write landed`).toBeDefined();
          expect(theirs.includes(over as WriteRecord), `${r.id} read back an older write of its own`).toBe(
            true,
          );
          expect(
            (over?.doneAt as number) >= (r.startedAt as number),
            `${r.id} was lost to an older write`,
          ).toBe(true);
        }
      }
      // The final output is the write that finished last, whole under every name.
      const final = await readDirectoryOutput(dir);
      const last = [...landed.values()].sort((a, b) => (b.doneAt as number) - (a.doneAt as number))[0];
      expect(`${final?.serial}@${final?.issuedAt}`).toBe(last?.id);
      const allBundles = (
        await Promise.all(sets.map(async (f) => JSON.parse(await readFile(f, 'utf8'))))
      ).flat();
      await expectWholeOutput(dir, allBundles as CredentialBundle[]);
      expect(await readdir(dir)).not.toContain('.lock');
      expect((await readdir(path.join(dir, '.versions'))).filter((v) => v.endsWith('.tmp'))).toEqual([]);
    }, 180_000);
  });

  describe('a full disk under the directory destination', () => {
    let mount = '';
    let mounted = false;

    beforeAll(async () => {
      mount = path.join(await realpath(work.dir), 'tmpfs');
      await mkdir(mount);
      try {
        await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mount]);
        mounted = true;
      } catch (err) {
        throw new Error(
          `this test needs a small tmpfs to fill up: \`mount -t tmpfs -o size=256k tmpfs ${mount}\` failed (${(err as Error).message.trim()}); run it as root or with CAP_SYS_ADMIN`,
        );
      }
    });
    afterAll(async () => {
      if (mounted) await execFileAsync('umount', [mount]);
    });

    /** Fills the file system with `filler`, then frees `spare` bytes of it again. */
    async function fill(filler: string, spare: number): Promise<void> {
      const handle = await open(filler, 'w');
      const chunk = Buffer.alloc(4096, 0x61);
      try {
        for (;;) await handle.write(chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        await handle.close();
      }
      const size = (await stat(filler)).size;
      await truncate(filler, Math.max(0, size - spare));
    }

    it('a write that runs out of space fails naming the destination, keeps the old output, and works once space is back', async () => {
      const dir = path.join(mount, 'out');
      const filler = path.join(mount, 'filler');
      const dest = new DirectoryDestination(dir);
      const bundles = await Promise.all(
        ['', 'tls', '', 'cockroach'].map((f) => issueBundle(authority, f as OutputFormat)),
      );
      let current = bundles[0] as CredentialBundle;
      await dest.write(current);
      await expectWholeOutput(dir, [current]);
      const failures: string[] = [];

      // From no space at all to enough for a whole version: the write runs out at every step in turn.
      for (let spare = 0; spare <= 48 * 1024; spare += 4096) {
        await fill(filler, spare);
        const next = bundles[1 + ((spare / 4096) % 3)] as CredentialBundle;
        const err = await within(
          dest.write(next).then(
            () => undefined,
            (e: unknown) => e,
          ),
          10_000,
          'a write to a full disk',
        );
        if (err === undefined) {
          current = next;
        } else {
          expect(err, String(err)).toBeInstanceOf(DestinationError);
          const message = (err as Error).message;
          expect(message).toContain(dir);
          expect(message).toContain('ENOSPC');
          expect(message).toContain('the previous credentials are unchanged');
          failures.push(message);
        }
        // Whether or not it fit: one whole issuance under every name, and no lock left to wedge the next run.
        expect((await expectWholeOutput(dir, bundles)).serial).toBe(current.serial);
        expect(await readdir(dir)).not.toContain('.lock');

        await rm(filler);
        const after = bundles[(spare / 4096) % 4] as CredentialBundle;
        await dest.write(after);
        current = after;
        expect((await expectWholeOutput(dir, bundles)).serial).toBe(after.serial);
        await expectTidy(dir, after);
      }
      // The disk was really full for the first attempts.
      expect(failures.length).toBeGreaterThanOrEqual(3);
    }, 60_000);
  });
});

describe('the database restarts while the proxy holds connections', () => {
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let server: StartedPostgres | undefined;
  let proxy: DatabaseProxy | undefined;
  let proxyPort = 0;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    await requirePostgres();
    work = await tempDir('faults-pg');
    const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
    await authority.initialize('faults');
    const signed = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
    server = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: signed.certificatePem,
        serverKeyPem: signed.privateKeyPem,
        clientCaPem: signed.clientCaPem,
      },
      users: ['alice'],
      databases: ['example'],
    });
    await authority.createResources(parseResources(resources(server.port), 'resources.yaml'));
    const out = path.join(work.dir, 'out');
    await new DirectoryDestination(out).write(await issueBundle(authority));
    const creds = new CredentialCache(new DirectoryBundleSource(out), { log });
    await creds.refresh();
    proxy = new DatabaseProxy({ creds, log, tunnel: true, listen: { address: '127.0.0.1', port: 0 } });
    proxyPort = Number((await proxy.start()).split(':').at(-1));
  });

  afterAll(async () => {
    for (const c of clients) await within(c.end(), 2000, 'client end').catch(() => undefined);
    await proxy?.stop(0);
    await server?.stop();
    await work?.cleanup();
  });

  /** A pg client through the tunnel (no TLS, no password). */
  async function connect(): Promise<{ client: pg.Client; errors: Error[] }> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: proxyPort,
      user: 'alice',
      database: 'example',
      ssl: false,
      connectionTimeoutMillis: 5000,
    });
    const errors: Error[] = [];
    client.on('error', (err) => errors.push(err));
    await client.connect();
    clients.push(client);
    return { client, errors };
  }

  it('open connections fail promptly, new ones are refused clearly while it is down, and work again after', async () => {
    if (!server || !proxy) throw new Error('beforeAll did not run');
    const idle = await connect();
    const busy = await connect();
    expect((await idle.client.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u).toBe('alice');
    const backendPid = (await busy.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]
      ?.pid;
    expect(backendPid).toBeGreaterThan(0);
    const longQuery = busy.client.query('SELECT pg_sleep(60)').then(
      () => undefined,
      (e: Error) => e,
    );
    await sleep(200); // the query is running on the server
    expect(proxy.openConnections).toBe(2);

    const stopping = server.stop();
    // The query in flight fails (PostgreSQL's fast shutdown terminates it), it does not hang for 60 s.
    const queryError = await within(longQuery, 10_000, 'the query in flight during the shutdown');
    expect(queryError).toBeInstanceOf(Error);
    expect(String(queryError)).toMatch(/terminating connection|Connection terminated|administrator command/i);
    await within(stopping, 30_000, 'the PostgreSQL shutdown');

    // The idle connection learns of it too: its next query fails at once.
    const idleError = await within(
      idle.client.query('SELECT 1').then(
        () => undefined,
        (e: Error) => e,
      ),
      5_000,
      'a query on a connection whose server went away',
    );
    expect(idleError).toBeInstanceOf(Error);
    // The proxy closed both halves of both pairs.
    const until = Date.now() + 5_000;
    while (proxy.openConnections > 0 && Date.now() < until) await sleep(50);
    expect(proxy.openConnections).toBe(0);

    // While the database is down, a new client gets the proxy's own error at once, not a hang.
    const started = Date.now();
    const refused = await within(
      connect().then(
        () => undefined,
        (e: Error) => e,
      ),
      10_000,
      'a connection attempt while the database is down',
    );
    expect(refused).toBeInstanceOf(Error);
    expect(String(refused)).toMatch(
      new RegExp(`broker proxy: could not reach ${SERVICE} at localhost:${server.port}`),
    );
    expect(Date.now() - started).toBeLessThan(5_000);

    // The database comes back on the same port and data directory; the same proxy serves new clients.
    await server.start();
    const again = await connect();
    const row = (
      await again.client.query<{ u: string; ssl: boolean }>(
        'SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      )
    ).rows[0];
    expect(row).toEqual({ u: 'alice', ssl: true });
    expect(proxy.isDraining).toBe(false);
    const outcomes = await proxy.metrics.connections.get();
    const byOutcome = Object.fromEntries(outcomes.values.map((v) => [v.labels.outcome, v.value]));
    expect(Object.keys(byOutcome).length, JSON.stringify(byOutcome)).toBeGreaterThan(0);
  }, 90_000);

  it('the restarted database keeps its data: a table written before a second restart is still there', async () => {
    if (!server) throw new Error('beforeAll did not run');
    const { client } = await connect();
    await client.query('CREATE TABLE IF NOT EXISTS survives (n int); INSERT INTO survives VALUES (42)');
    await client.end();
    clients.splice(clients.indexOf(client), 1);
    await server.stop();
    await server.start();
    const again = await connect();
    expect((await again.client.query<{ n: number }>('SELECT n FROM survives')).rows).toEqual([{ n: 42 }]);
  }, 60_000);
});
