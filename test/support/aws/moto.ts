/**
 * moto in server mode for integration tests: an implementation of AWS's API semantics written outside this
 * project (https://github.com/getmoto/moto), so the AWS code paths are checked against someone else's reading
 * of AWS's documentation as well as against the doubles beside this file. `startMoto()` runs `moto_server`
 * on 127.0.0.1 and a free port; the real SDK reaches it through `endpoint`.
 *
 * moto and cfn-lint come from the Python package index, pinned, in the virtual environment
 * `.ci/python-tools.sh` makes (/opt/broker-ci/python-tools, or $BROKER_PYTHON_TOOLS). In CI a missing tool
 * fails the test that needs it; on a developer machine the test is skipped with a message saying what to run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TEST_CREDENTIALS, TEST_REGION } from './http-double.js';

export const PYTHON_TOOLS = process.env.BROKER_PYTHON_TOOLS ?? '/opt/broker-ci/python-tools';
const INSTALL_HINT = 'run `bash .ci/python-tools.sh` (it installs the pinned moto and cfn-lint)';

/** Where one of the Python tools is: its path, or why it cannot be used (and what to run). */
export function pythonTool(name: 'moto_server' | 'cfn-lint'): { file: string } | { missing: string } {
  const file = path.join(PYTHON_TOOLS, 'bin', name);
  if (existsSync(file)) return { file };
  return { missing: `${name} is not installed at ${file}: ${INSTALL_HINT}` };
}

/**
 * The tool's path; in CI (CI=true) a missing tool throws, so the run fails instead of passing without the
 * check. Elsewhere it returns undefined after saying so; the caller skips.
 */
export function requirePythonTool(name: 'moto_server' | 'cfn-lint'): string | undefined {
  const found = pythonTool(name);
  if ('file' in found) return found.file;
  if (process.env.CI === 'true') throw new Error(`${found.missing}. CI must run this check.`);
  console.warn(`SKIPPED: ${found.missing}`);
  return undefined;
}

/** A running moto server. */
export interface MotoServer {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** Client options for any AWS SDK v3 client: the endpoint, the test region and credentials. */
  clientOptions(): {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** Forgets every resource (moto's `/moto-api/reset`). */
  reset(): Promise<void>;
  /** What moto printed (its request log), for failure messages. */
  output(): string;
  close(): Promise<void>;
}

export interface StartMotoOptions {
  /**
   * Checks requests' SigV4 signatures and IAM policies against moto's own IAM users, after the first
   * `unauthenticatedActions` requests (moto's INITIAL_NO_AUTH_ACTION_COUNT; those create the users).
   */
  authAfter?: number;
  /**
   * Serves one request at a time. moto's threaded server checks a DynamoDB condition and then writes without
   * a lock, so two concurrent conditional writes on one item can both succeed (lost compare-and-swap
   * updates); AWS documents conditional writes as atomic. Serialised requests give each write that
   * atomicity, while read-modify-write cycles of concurrent clients still interleave and conflict.
   */
  oneRequestAtATime?: boolean;
}

/** `moto_server` as its own main() runs it, without threads. */
const SERIAL_SERVER = [
  'from werkzeug.serving import run_simple',
  'from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app',
  'run_simple("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False, request_handler=MotoRequestHandler)',
].join('\n');

/** Starts `moto_server` on 127.0.0.1 and a free port (moto picks it for port 0 and prints it). */
export async function startMoto(file: string, options: StartMotoOptions = {}): Promise<MotoServer> {
  const env: NodeJS.ProcessEnv = {};
  // A developer's AWS profile must not leak in; moto needs none.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_')) env[k] = v;
  if (options.authAfter !== undefined) env.INITIAL_NO_AUTH_ACTION_COUNT = String(options.authAfter);
  const [program, args] = options.oneRequestAtATime
    ? [path.join(path.dirname(file), 'python'), ['-c', SERIAL_SERVER]]
    : [file, ['-H', '127.0.0.1', '-p', '0']];
  const child: ChildProcess = spawn(program, args, {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const collect = (d: Buffer) => {
    // The request log grows with every call; the start and the last part are what a failure needs.
    text = (text + d.toString('utf8')).slice(-64 * 1024);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`moto_server did not start within 60 s; its output:\n${text}`));
    }, 60_000);
    const check = () => {
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
      if (!m) return;
      clearTimeout(timer);
      resolve(Number(m[1]));
    };
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`moto_server exited (${code}) before serving; its output:\n${text}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    clientOptions: () => ({ endpoint, region: TEST_REGION, credentials: { ...TEST_CREDENTIALS } }),
    async reset() {
      const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      if (!response.ok) throw new Error(`moto reset answered ${response.status}`);
    },
    output: () => text,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
