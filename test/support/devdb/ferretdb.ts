/**
 * A throwaway FerretDB for tests: a real MongoDB-wire server (OP_MSG, the `mongodb` driver's handshake,
 * TLS) backed by a throwaway PostgreSQL. FerretDB v1 is built from the Go module proxy by `.ci/ferretdb.sh`
 * (pinned to FERRETDB_VERSION, with `.ci/ferretdb-tls-reload.patch`); no MongoDB server can be installed
 * from Debian.
 *
 * It listens on 127.0.0.1 with TLS only, presenting the given server certificate and requiring a client
 * certificate that chains to the given client CA (`--listen-tls-ca-file`: Go's
 * `tls.RequireAndVerifyClientCert`, which checks the chain, the validity period and the clientAuth key
 * usage). An admin listener on a unix socket in the base directory (no TLS) serves setup and checks. The
 * backend is PostgreSQL's database `ferretdb`, reached over PostgreSQL's unix socket as its superuser.
 *
 * What FerretDB v1 does NOT check: who the certificate names. It has no MONGODB-X509 mechanism (no
 * `authenticate` command) and maps no certificate subject to a user; a client that does not authenticate
 * works as the backend's PostgreSQL user. The client CA is the whole gate, as with Redis 7.0 — which is why
 * `auth sign --format=db` gives each database service its own client CA.
 *
 * Released FerretDB reads its TLS files once, at start, and a restart closes every open connection (after
 * a grace of 3 seconds). The patch `.ci/ferretdb.sh` applies adds mongod's `rotateCertificates` command:
 * the listener re-reads its certificate, key and CA files for new handshakes while open connections keep
 * going, and files that do not load leave the previous ones in use. `reconfigure()` does what an operator
 * does on mongod: replaces the files, then runs `db.adminCommand({ rotateCertificates: 1 })` (here over
 * the admin socket). The harness refuses a binary built without that patch, or with another version of it.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { type StartedPostgres, startPostgres } from '../../../src/devdb/postgres.js';
import {
  checkSocketPath,
  findProgram,
  freePort,
  killAtExit,
  LogTail,
  run,
  type ServerProcess,
  settles,
  spawnServer,
  startOutcome,
  writeTlsFiles,
} from '../../../src/devdb/process.js';

/** The FerretDB release `.ci/ferretdb.sh` builds and this harness accepts. */
export const FERRETDB_VERSION = 'v1.24.2';
/** Where `.ci/ferretdb.sh` keeps the binary (BROKER_FERRETDB_CACHE overrides the directory). */
export const FERRETDB_CACHE_DIR = '/opt/broker-ci/ferretdb';
/** FerretDB closes connections this long after SIGTERM (ctxutil.WithDelay in its source). */
export const FERRETDB_SHUTDOWN_GRACE_MS = 3_000;
/** The patch that adds `rotateCertificates`; `.ci/ferretdb.sh` applies it and names the build after it. */
export const FERRETDB_PATCH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../.ci/ferretdb-tls-reload.patch',
);

/**
 * What `ferretdb --version` prints as `package:` for a build with the current patch, and the cache
 * directory's name: `.ci/ferretdb.sh` derives both from the patch's SHA-256 the same way.
 */
export async function ferretdbBuild(): Promise<{ package: string; dir: string }> {
  const hash = createHash('sha256')
    .update(await fs.readFile(FERRETDB_PATCH))
    .digest('hex')
    .slice(0, 12);
  return { package: `source+tls-reload-${hash}`, dir: `${FERRETDB_VERSION}-tls-reload-${hash}` };
}

export const FERRETDB_INSTALL_HINT =
  `FerretDB ${FERRETDB_VERSION} with .ci/ferretdb-tls-reload.patch was not found (looked at $FERRETDB_BIN, ` +
  `${FERRETDB_CACHE_DIR}/${FERRETDB_VERSION}-tls-reload-<hash>/ferretdb and \`ferretdb\` in PATH); build it with ` +
  '`bash .ci/ferretdb.sh` (needs Go 1.24 or later and the Go module proxy). This integration test needs a real ' +
  'MongoDB-wire server.';

/** What the server presents and whom it trusts: PEM strings. */
export interface FerretdbTls {
  serverCertPem: string;
  serverKeyPem: string;
  /** CA bundle that signs client certificates (a database service's client CA from the broker). */
  clientCaPem: string;
}

export interface StartFerretdbOptions {
  /**
   * Directory for PostgreSQL, the TLS files, the socket, state and logs; created if missing and given mode 0711
   * (FerretDB's own files are in 0700 directories or 0600). The caller removes it.
   */
  baseDir: string;
  tls: FerretdbTls;
  /** TLS port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Receives each line FerretDB prints. */
  log?: (line: string) => void;
  /** How long to wait for FerretDB to accept connections; default 60 s. */
  startTimeoutMs?: number;
}

export interface StartedFerretdb {
  host: '127.0.0.1';
  /** The TLS port (there is no plain TCP port). */
  port: number;
  /** The admin listener: a unix socket without TLS (mode 0700 directory). */
  socketPath: string;
  /** A `mongodb://` URI for the admin socket. */
  adminUri: string;
  /** FerretDB's own output. */
  logFile: string;
  /** FerretDB's version, e.g. "v1.24.2". */
  version: string;
  /** The backend; stopped by stop(). */
  postgres: StartedPostgres;
  /**
   * Replaces any of the TLS files (each renamed into place) and runs `rotateCertificates`, as an operator
   * does on mongod: new connections get the new files, open ones stay. Rejects with FerretDB's answer when
   * the files do not load (the previous ones then stay in use).
   */
  reconfigure(tls: Partial<FerretdbTls>): Promise<void>;
  /** Stops FerretDB (and waits for it) and PostgreSQL. Removes no files. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The FerretDB binary and its version, or undefined when none is found. Throws on a wrong version or a
 * binary built without the current `.ci/ferretdb-tls-reload.patch`.
 */
export async function findFerretdb(): Promise<{ bin: string; version: string } | undefined> {
  const cacheDir = process.env.BROKER_FERRETDB_CACHE || FERRETDB_CACHE_DIR;
  const build = await ferretdbBuild();
  const candidates = [
    process.env.FERRETDB_BIN,
    path.join(cacheDir, build.dir, 'ferretdb'),
    await findProgram('ferretdb', []),
  ].filter((c): c is string => Boolean(c));
  for (const bin of candidates) {
    try {
      if (!(await fs.stat(bin)).isFile()) continue;
    } catch {
      continue;
    }
    const out = await run(bin, ['--version'], { input: null });
    const version = /^version: (\S+)$/m.exec(out.stdout)?.[1];
    if (out.code !== 0 || !version)
      throw new Error(
        `${bin} --version failed (exit ${out.code ?? out.signal}): ${(out.stderr || out.stdout).trim().split('\n')[0]}; rebuild it with \`bash .ci/ferretdb.sh\``,
      );
    if (version !== FERRETDB_VERSION)
      throw new Error(
        `${bin} is FerretDB ${version}, but the tests are pinned to ${FERRETDB_VERSION}; run \`bash .ci/ferretdb.sh\` (or point FERRETDB_BIN at a ${FERRETDB_VERSION} binary)`,
      );
    const pkg = /^package: (\S+)$/m.exec(out.stdout)?.[1];
    if (pkg !== build.package)
      throw new Error(
        `${bin} is FerretDB ${version} built as package "${pkg ?? '(none)'}", not with the current .ci/ferretdb-tls-reload.patch ` +
          `("${build.package}"), so it has no rotateCertificates command; run \`bash .ci/ferretdb.sh\``,
      );
    return { bin, version };
  }
  return undefined;
}

/** The FerretDB binary, or an Error saying how to build it: the tests fail, never skip, without it. */
export async function requireFerretdb(): Promise<{ bin: string; version: string }> {
  const found = await findFerretdb();
  if (!found) throw new Error(FERRETDB_INSTALL_HINT);
  return found;
}

/** One FerretDB process. */
interface Instance {
  proc: ServerProcess;
  tail: LogTail;
  forget: () => void;
}

/**
 * Starts PostgreSQL (database `ferretdb`), then FerretDB on 127.0.0.1 with TLS and client-certificate
 * verification, and waits until a command over the admin socket succeeds (the backend answers).
 */
export async function startFerretdb(opts: StartFerretdbOptions): Promise<StartedFerretdb> {
  const { bin, version } = await requireFerretdb();
  const baseDir = path.resolve(opts.baseDir);
  const tlsDir = path.join(baseDir, 'tls');
  const stateDir = path.join(baseDir, 'state');
  const socketPath = path.join(baseDir, 'ferretdb.sock');
  const logFile = path.join(baseDir, 'ferretdb.log');
  checkSocketPath(socketPath);
  // 0711: PostgreSQL runs as its own OS user when we are root and must traverse into pg/.
  await fs.mkdir(baseDir, { recursive: true });
  await fs.chmod(baseDir, 0o711);
  await fs.mkdir(tlsDir, { recursive: true, mode: 0o700 });
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  let tls = { ...opts.tls };
  const { certFile, keyFile, caFile } = await writeTlsFiles(tlsDir, tls);

  // PostgreSQL's own TLS is not used (FerretDB comes over the unix socket), but its harness wants files.
  const postgres = await startPostgres({ baseDir: path.join(baseDir, 'pg'), tls, databases: ['ferretdb'] });
  const pgUrl =
    `postgres://${postgres.superuser}@/ferretdb?host=${encodeURIComponent(postgres.socketDir)}` +
    `&port=${postgres.port}`;
  const adminUri = `mongodb://${encodeURIComponent(socketPath)}/?directConnection=true`;

  const logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const fixedPort = opts.port !== undefined && opts.port !== 0;
  let port = fixedPort ? (opts.port as number) : 0;

  const argsFor = (p: number): string[] => [
    '--handler=postgresql',
    `--postgresql-url=${pgUrl}`,
    '--listen-addr=',
    `--listen-unix=${socketPath}`,
    `--listen-tls=127.0.0.1:${p}`,
    `--listen-tls-cert-file=${certFile}`,
    `--listen-tls-key-file=${keyFile}`,
    `--listen-tls-ca-file=${caFile}`,
    `--state-dir=${stateDir}`,
    '--debug-addr=-',
    '--telemetry=disable',
    '--log-format=text',
    '--log-level=INFO',
  ];

  const launch = async (p: number): Promise<Instance> => {
    await fs.rm(socketPath, { force: true });
    const tail = new LogTail(logStream, opts.log);
    const ready = tail.waitFor(/Listening on TLS /);
    const proc = spawnServer(
      bin,
      argsFor(p),
      { cwd: baseDir, env: { ...process.env, DO_NOT_TRACK: '1' } },
      (d) => tail.push(d),
    );
    const forget = killAtExit(() => proc.child.kill('SIGKILL'));
    const outcome = await startOutcome(ready, proc.exited, timeoutMs);
    if (outcome === 'ready') return { proc, tail, forget };
    if (outcome === 'timeout') {
      proc.child.kill('SIGKILL');
      await settles(proc.exited, 5_000);
    }
    forget();
    tail.flush();
    const failed = proc.spawnError();
    // Go's crypto/x509 reads at most 31 bits per OID arc; say so rather than leave "malformed" unexplained.
    const oidHint = /malformed extension OID field/.test(tail.text())
      ? ' (Go, which FerretDB is written in, refuses a certificate with an OID arc over 31 bits)'
      : '';
    const why = failed
      ? `could not run ${bin}: ${failed.message}`
      : outcome === 'timeout'
        ? `FerretDB did not listen within ${timeoutMs} ms on 127.0.0.1:${p}`
        : `FerretDB exited during startup (${proc.child.exitCode !== null ? `exit ${proc.child.exitCode}` : proc.child.signalCode}) on 127.0.0.1:${p}`;
    throw new LaunchError(
      `${why}${oidHint}; last lines of its log:\n${tail.text() || '(it printed nothing)'}`,
      tail.text(),
    );
  };

  /** Starts the process on `port`, or on a free one (retrying a port another process took first). */
  const boot = async (): Promise<Instance> => {
    for (let attempt = 1; ; attempt++) {
      const p = port || (await freePort());
      try {
        const instance = await launch(p);
        port = p;
        return instance;
      } catch (err) {
        const lost = err instanceof LaunchError && /address already in use/i.test(err.tail);
        if (!(lost && !fixedPort && attempt < 3)) throw err;
      }
    }
  };

  let current: Instance;
  try {
    current = await boot();
    await adminPing(adminUri);
  } catch (err) {
    logStream.end();
    await postgres.stop();
    throw err;
  }

  let busy: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;

  const reconfigure = (change: Partial<FerretdbTls>): Promise<void> => {
    const step = busy.then(async () => {
      if (stopping) throw new Error('FerretDB has been stopped; start a new one');
      tls = { ...tls, ...change };
      // Written beside and renamed into place, as an operator's tooling should: never a half-written file.
      for (const [file, pem] of [
        [certFile, tls.serverCertPem],
        [keyFile, tls.serverKeyPem],
        [caFile, tls.clientCaPem],
      ] as const) {
        await fs.writeFile(`${file}.new`, pem, { mode: 0o600 });
        await fs.rename(`${file}.new`, file);
      }
      await rotateCertificates(adminUri);
    });
    busy = step.catch(() => undefined);
    return step;
  };

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await busy;
      current.proc.child.kill('SIGTERM');
      // FerretDB gives open connections its grace period; SIGKILL only if it outlives that by far.
      if (!(await settles(current.proc.exited, FERRETDB_SHUTDOWN_GRACE_MS + 10_000))) {
        current.proc.child.kill('SIGKILL');
        await settles(current.proc.exited, 5_000);
      }
      current.forget();
      current.tail.flush();
      await new Promise<void>((resolve) => logStream.end(resolve));
      await postgres.stop();
    })();
    return stopping;
  };

  return {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    socketPath,
    adminUri,
    logFile,
    version,
    postgres,
    reconfigure,
    stop,
  };
}

/** A failed launch; carries FerretDB's last lines so that a lost port can be told from other failures. */
class LaunchError extends Error {
  constructor(
    message: string,
    readonly tail: string,
  ) {
    super(message);
  }
}

/** Runs `ping` and a listing over the admin socket: FerretDB answers and its PostgreSQL backend too. */
async function adminPing(uri: string): Promise<void> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 15_000, connectTimeoutMS: 10_000 });
  try {
    await client.db('admin').command({ ping: 1 });
    await client.db('admin').admin().listDatabases();
  } catch (err) {
    throw new Error(`FerretDB started but did not answer over its admin socket: ${(err as Error).message}`);
  } finally {
    await client.close();
  }
}

/** `db.adminCommand({ rotateCertificates: 1 })` over the admin socket; rejects with FerretDB's answer. */
async function rotateCertificates(uri: string): Promise<void> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 15_000, connectTimeoutMS: 10_000 });
  try {
    await client.db('admin').command({ rotateCertificates: 1 });
  } catch (err) {
    throw new Error(`FerretDB did not reload its TLS files (rotateCertificates): ${(err as Error).message}`);
  } finally {
    await client.close();
  }
}
