/**
 * `broker start --oneshot` whose storage breaks after the checks that run before the join: the one-time
 * token is spent, so the identity the authority issued must not die with the process. Real file-system
 * failures, timed by a relay in front of the authority that breaks the storage when it sees the join: the
 * storage directory turned read-only (bind-mounted over itself read-only), and the storage volume full (a small
 * tmpfs). Each run fails with an error naming the storage and the problem and leaves the identity in a 0600
 * file beside the storage; once the storage is fixed, the same command runs again with no token left.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, type CliProcess, spawnCli } from '../support/cli-process.js';
import { exampleResourcesYaml, INTERNAL_DB_URI } from '../support/fixtures.js';
import { type RunResult, run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

const asRoot = process.getuid?.() === 0;

let work: Awaited<ReturnType<typeof tempDir>>;
let authority: CliProcess;
let relay: http.Server;
/** What the relay does when a join passes through it, before it forwards the join. */
let onJoin: () => Promise<void> = async () => undefined;
const dir = (...p: string[]) => path.join(work.dir, ...p);
const broker = (args: string[]) =>
  run(process.execPath, [CLI, '--state-dir', dir('authority'), ...args], { timeoutMs: 60_000 });

/** `broker start --oneshot -c FILE`. */
function startOneshot(config: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'start', '--oneshot', '-c', config], {
      cwd: '/',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', BROKER_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** Relays the bot's requests to the authority's socket; runs `onJoin` when a join goes through. */
async function startRelay(socket: string, upstream: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      if ((JSON.parse(body.toString('utf8')) as { type?: string }).type === 'join') await onJoin();
      const forward = http.request(
        { socketPath: upstream, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  await chmod(socket, 0o666);
  return server;
}

async function newToken(): Promise<string> {
  const add = await broker(['tokens', 'add', '--type=bot', '--bot', 'example']);
  expect(add.code, add.stderr).toBe(0);
  return /The bot token: (\S+)/.exec(add.stdout)![1]!;
}

async function tokenCount(): Promise<number> {
  const ls = await broker(['tokens', 'ls']);
  expect(ls.code, ls.stderr).toBe(0);
  return ls.stdout.split('\n').filter((line) => / token +example /.test(line)).length;
}

/** A bot config in `home`: storage `home/storage`, one directory output `home/out`. */
async function botConfig(home: string, token: string): Promise<string> {
  const file = path.join(home, 'tbot.yaml');
  await writeFile(path.join(home, 'token'), token, { mode: 0o600 });
  await writeFile(
    file,
    `version: v2
auth_server: unix://${dir('relay.sock')}
onboarding: { join_method: token, token: ${path.join(home, 'token')} }
storage: { type: directory, path: ${path.join(home, 'storage')} }
outputs:
  - type: database
    destination: { type: directory, path: ${path.join(home, 'out')} }
    service: example-server
    database: example
    username: alice
`,
  );
  return file;
}

const generationIn = async (storage: string) =>
  (JSON.parse(await readFile(path.join(storage, 'identity.json'), 'utf8')) as { generation: number })
    .generation;

beforeAll(async () => {
  work = await tempDir('oneshot-storage');
  await mkdir(dir('authority'), { mode: 0o700 });
  expect((await broker(['init'])).code).toBe(0);
  await writeFile(
    dir('resources.yaml'),
    exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } }),
  );
  const created = await broker(['create', '-f', dir('resources.yaml')]);
  expect(created.code, created.stderr).toBe(0);
  authority = spawnCli(['--state-dir', dir('authority'), 'authority', 'serve', '--socket', dir('auth.sock')]);
  await authority.waitFor('stdout', /Authority listening/, 30_000);
  relay = await startRelay(dir('relay.sock'), dir('auth.sock'));
}, 120_000);

afterAll(async () => {
  relay?.close();
  if (authority && authority.child.exitCode === null) authority.child.kill('SIGTERM');
  await authority?.exited;
  await work?.cleanup();
});

describe('broker start --oneshot when storage fails after the join', () => {
  it.runIf(asRoot)(
    'a storage directory that turns read-only: the identity waits beside it; back to read-write and the same command renews without a token',
    async (ctx) => {
      const home = dir('readonly');
      await mkdir(home, { mode: 0o700 });
      const config = await botConfig(home, await newToken());
      const storage = path.join(home, 'storage');
      const before = await tokenCount();
      let mounted = false;
      // After the preflight made and probed it, before the identity lands: the directory is bind-mounted
      // over itself read-only, which refuses even root (a uid switch would need the repository readable by
      // that user, which a CI checkout need not be).
      onJoin = async () => {
        const bound = await run('mount', ['--bind', storage, storage]);
        if (bound.code !== 0) return;
        mounted = true;
        const ro = await run('mount', ['-o', 'remount,bind,ro', storage]);
        if (ro.code !== 0) throw new Error(`remounting read-only failed: ${ro.stderr}`);
      };
      try {
        const first = await startOneshot(config);
        onJoin = async () => undefined;
        if (!mounted) ctx.skip('cannot bind-mount here');
        expect(first.code).not.toBe(0);
        const rescue = path.join(home, '.storage.identity-rescue.json');
        expect(first.stderr).toContain(
          `joined the authority, but could not save the identity to directory ${storage} (3 attempts): EROFS: read-only file system`,
        );
        expect(first.stderr).toContain(`It was written to ${rescue} (mode 0600) instead`);
        expect(first.stderr).toMatch(/retrying in 250 ms/);
        expect(first.stderr).not.toMatch(/PRIVATE KEY/);
        expect((await stat(rescue)).mode & 0o777).toBe(0o600);
        expect(await tokenCount()).toBe(before - 1); // the token is spent

        // Still read-only: the next run says where the identity waits, and spends nothing.
        const still = await startOneshot(config);
        expect(still.code).not.toBe(0);
        expect(still.stderr).toContain(`The bot's newest identity waits in ${rescue}`);

        await run('umount', [storage]); // the fix; no new token
        mounted = false;
        const second = await startOneshot(config);
        expect(second.code, second.stderr).toBe(0);
        expect(second.stderr).toContain(`moved the identity kept in ${rescue} (generation 1)`);
        expect(second.stdout).toMatch(/^ok {6}alice@example-server\/example/m);
        expect(await generationIn(storage)).toBe(2);
        await expect(stat(rescue)).rejects.toThrow(/ENOENT/);
        await expect(stat(path.join(home, 'out', 'tlscert'))).resolves.toBeTruthy();
      } finally {
        if (mounted) await run('umount', [storage]);
      }
    },
    120_000,
  );

  it.runIf(asRoot)(
    'a full storage volume: the identity waits beside it; free space and the same command renews without a token',
    async (ctx) => {
      const home = dir('full');
      const storage = path.join(home, 'storage');
      await mkdir(storage, { recursive: true, mode: 0o700 });
      const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', storage]);
      if (mounted.code !== 0) ctx.skip(`cannot mount a small tmpfs here: ${mounted.stderr.trim()}`);
      try {
        const config = await botConfig(home, await newToken());
        const filler = path.join(storage, 'filler');
        onJoin = async () => {
          // Fill the volume after the preflight's write probe, as another writer on a shared disk would.
          await writeFile(filler, Buffer.alloc(64 * 1024)).catch(() => undefined);
        };
        const first = await startOneshot(config);
        onJoin = async () => undefined;
        expect(first.code).not.toBe(0);
        expect(first.stderr).toContain(
          `could not save the identity to directory ${storage} (3 attempts): ENOSPC`,
        );
        const rescue = path.join(home, '.storage.identity-rescue.json');
        expect(first.stderr).toContain(`It was written to ${rescue} (mode 0600) instead`);

        await rm(filler);
        const second = await startOneshot(config);
        expect(second.code, second.stderr).toBe(0);
        expect(await generationIn(storage)).toBe(2);
        await expect(stat(rescue)).rejects.toThrow(/ENOENT/);
      } finally {
        await run('umount', [storage]);
      }
    },
    120_000,
  );
});
