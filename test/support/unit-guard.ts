/**
 * Setup file of the unit project (vitest.config.ts): a unit test opens no socket and starts no process, so
 * the unit suite stays fast, runs anywhere and never waits on a port or a program. Any `net` listen or
 * connect (which every HTTP, TLS and database client and server goes through) and any `child_process`
 * spawn, exec or fork throws, naming what was attempted. Such a test belongs in test/integration; AWS calls
 * use the in-process doubles of test/support/aws instead.
 */
import { ChildProcess } from 'node:child_process';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import net from 'node:net';

const require = createRequire(import.meta.url);
const childProcess = require('node:child_process') as Record<string, unknown>;

class UnitTestBoundaryError extends Error {
  override name = 'UnitTestBoundaryError';
}

function refuse(what: string): never {
  throw new UnitTestBoundaryError(`unit tests must not ${what}; move this test to test/integration`);
}

/** The address a listen or connect call names, for the message. */
function addressOf(args: unknown[]): string {
  const [first, second] = args;
  if (typeof first === 'object' && first !== null) {
    const o = first as { path?: unknown; host?: unknown; port?: unknown };
    if (o.path !== undefined) return String(o.path);
    return `${String(o.host ?? 'localhost')}:${String(o.port ?? 0)}`;
  }
  if (typeof first === 'string' && !/^\d+$/.test(first)) return first;
  return `${typeof second === 'string' ? second : 'localhost'}:${String(first ?? 0)}`;
}

net.Server.prototype.listen = function listen(this: net.Server, ...args: unknown[]) {
  return refuse(`listen on a socket (${addressOf(args)})`);
} as typeof net.Server.prototype.listen;

net.Socket.prototype.connect = function connect(this: net.Socket, ...args: unknown[]) {
  return refuse(`connect to ${addressOf(args)}`);
} as typeof net.Socket.prototype.connect;

for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
  childProcess[name] = (file: unknown) => refuse(`start a child process (${name} ${String(file)})`);
}
// The method every asynchronous spawn, exec and fork ends in (not in the type declarations).
(ChildProcess.prototype as unknown as { spawn: (options: { file?: unknown }) => never }).spawn = (options) =>
  refuse(`start a child process (${String(options?.file)})`);
// `import { spawn } from 'node:child_process'` reads the ES module's exports, kept apart from the CommonJS
// object until synchronised.
syncBuiltinESMExports();
