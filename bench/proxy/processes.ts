/**
 * The two proxies as separate processes, so their CPU time and memory are read from /proc the same way:
 * `broker proxy db --tunnel` (the sidecar's entry point, which loads only the proxy) and stunnel4 in client mode with
 * `protocol = pgsql`. Each writes its own log to a file in the work directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/devdb/postgres.js';
import {
  processCpuSeconds,
  processCpuSplit,
  processMemory,
  processRunQueueWaitSeconds,
} from '../lib/procfs.js';
import type { OutputFiles } from './setup.js';

export interface ProxyProcess {
  name: string;
  pid: number;
  port: number;
  /** CPU seconds used so far (all threads). */
  cpuSeconds(): number;
  /** The same, split into user space and the kernel. */
  cpuSplit(): { user: number; system: number };
  /** Seconds its live threads have been runnable but waiting for a core (see processRunQueueWaitSeconds). */
  runQueueWaitSeconds(): number;
  memory(): { rss: number; peak: number; anon: number; file: number };
  /** SIGTERM, then SIGKILL if it has not exited within 10 s. Safe to call twice. */
  stop(): Promise<void>;
}

/** Children started here and not yet stopped: killed if the benchmark exits without stopping them. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** The environment without PG* variables, which would redirect libpq and the tools. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, ...extra };
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function handle(name: string, child: ChildProcess, port: number): ProxyProcess {
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name} did not start`);
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid,
    port,
    cpuSeconds: () => processCpuSeconds(pid),
    cpuSplit: () => processCpuSplit(pid),
    runQueueWaitSeconds: () => processRunQueueWaitSeconds(pid),
    memory: () => processMemory(pid),
    stop: () => {
      stopping ??= (async () => {
        child.kill('SIGTERM');
        if (!(await waitExit(child, 10_000))) {
          child.kill('SIGKILL');
          await waitExit(child, 5_000);
        }
        children.delete(child);
      })();
      return stopping;
    },
  };
}

/**
 * Waits until `check()` returns a value or the child exits, polling every 20 ms for at most `ms`.
 * Throws with the child's log on exit or timeout.
 */
async function until<T>(
  child: ChildProcess,
  what: string,
  logFile: string,
  check: () => T | undefined,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = check();
    if (got !== undefined) return got;
    const gone = child.exitCode !== null || child.signalCode !== null;
    if (gone || Date.now() > deadline) {
      let log = '';
      try {
        log = readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
      } catch {
        // no log yet
      }
      throw new Error(
        `${what} ${gone ? `exited (${child.exitCode ?? child.signalCode})` : `not ready within ${ms} ms`}; its log:\n${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The proxy's own entry point (dist/proxy-container/proxy.mjs, the sidecar's bundle, which loads only the
 * proxy) run as `node FLAGS proxy.mjs db --tunnel --port 0 --destination-dir DIR SERVICE` with its default
 * log level (info: one line per connection), stderr to a file. `nodeFlags` are the sidecar's V8 flags
 * (proxy-container/node-flags.ts), plus `--cpu-prof` for a profile. Resolves once it prints its address.
 */
export async function startBrokerTunnel(options: {
  entry: string;
  nodeFlags: readonly string[];
  output: OutputFiles;
  service: string;
  logDir: string;
  tag: string;
  /** More `broker proxy db` flags, e.g. `--workers 2`. */
  args?: readonly string[];
}): Promise<ProxyProcess> {
  const logFile = path.join(options.logDir, `broker-${options.tag}.log`);
  const fd = openSync(logFile, 'a', 0o600);
  const child = spawn(
    process.execPath,
    [
      ...options.nodeFlags,
      options.entry,
      'db',
      '--tunnel',
      '--port',
      '0',
      '--max-sigterm-delay',
      '2s',
      '--destination-dir',
      options.output.dir,
      ...(options.args ?? []),
      options.service,
    ],
    { env: cleanEnv(), stdio: ['ignore', 'pipe', fd] },
  );
  closeSync(fd);
  children.add(child);
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  try {
    const port = await until(child, 'broker proxy db', logFile, () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(stdout);
      return m ? Number(m[1]) : undefined;
    });
    return handle('broker tunnel', child, port);
  } catch (err) {
    child.kill('SIGKILL');
    children.delete(child);
    throw err;
  }
}

/**
 * stunnel4 in client mode: plaintext PostgreSQL from the client, `protocol = pgsql` (SSLRequest to the
 * server, then TLS) with the output's certificate and key, the server verified against the output's CA
 * (verifyChain) and its name (checkHost localhost). Default log level (notice: a few lines per connection).
 */
export async function startStunnel(options: {
  output: OutputFiles;
  pgPort: number;
  workDir: string;
  tag: string;
}): Promise<ProxyProcess> {
  const port = await freePort();
  const conf = path.join(options.workDir, `stunnel-${options.tag}.conf`);
  const logFile = path.join(options.workDir, `stunnel-${options.tag}.log`);
  writeFileSync(
    conf,
    [
      'foreground = yes',
      'pid =',
      `output = ${logFile}`,
      '[pg]',
      'client = yes',
      `accept = 127.0.0.1:${port}`,
      `connect = localhost:${options.pgPort}`,
      'protocol = pgsql',
      `cert = ${options.output.cert}`,
      `key = ${options.output.key}`,
      `CAfile = ${options.output.ca}`,
      'verifyChain = yes',
      'checkHost = localhost',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const child = spawn('stunnel4', [conf], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'ignore'] });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  children.add(child);
  try {
    await Promise.race([
      until(child, 'stunnel4', logFile, () => (isListening(port) ? true : undefined)),
      spawnError.then((err) => {
        throw new Error(`could not run stunnel4 (apt-get install stunnel4): ${err.message}`);
      }),
    ]);
    return handle('stunnel', child, port);
  } catch (err) {
    child.kill('SIGKILL');
    children.delete(child);
    throw err;
  }
}

/** Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, without connecting to it). */
function isListening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  try {
    return readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((line) => {
        const f = line.trim().split(/\s+/);
        return f[1] === local && f[3] === '0A';
      });
  } catch {
    return false;
  }
}
