/**
 * A throwaway FerretDB for tests: a real MongoDB-wire server (OP_MSG, the `mongodb` driver's handshake,
 * TLS) backed by a throwaway PostgreSQL. FerretDB v1 is built from the Go module proxy by `.ci/ferretdb.sh`
 * (pinned to FERRETDB_VERSION); no MongoDB server can be installed from Debian.
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
 * FerretDB reads its TLS files once, at start: it has no reload (no SIGHUP handler, no `rotateCertificates`
 * command). `reconfigure()` therefore writes the new files and restarts it on the same port, handing over as
 * closely as FerretDB allows: the old process is sent SIGTERM, which closes its listeners at once, and the
 * new one is started as soon as they are closed. Connections open on the old process keep working for
 * FerretDB's fixed grace of 3 seconds and are then closed by it; a client that reconnects (the `mongodb`
 * driver does, for retryable reads and writes) gets the new process. The PostgreSQL data stays.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
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

export const FERRETDB_INSTALL_HINT =
  `FerretDB ${FERRETDB_VERSION} was not found (looked at $FERRETDB_BIN, ${FERRETDB_CACHE_DIR}/${FERRETDB_VERSION}/ferretdb ` +
  'and `ferretdb` in PATH); build it with `bash .ci/ferretdb.sh` (needs Go 1.24 or later and the Go module proxy). ' +
  'This integration test needs a real MongoDB-wire server.';

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
  /** How many FerretDB processes have served this instance (1 + restarts). */
  readonly generation: number;
  /**
   * Replaces any of the TLS files (written before FerretDB is restarted) and restarts FerretDB on the same
   * port: FerretDB cannot reload them. Resolves once the new process accepts connections.
   */
  reconfigure(tls: Partial<FerretdbTls>): Promise<void>;
  /** Stops FerretDB (and waits for it) and PostgreSQL. Removes no files. Safe to call twice. */
  stop(): Promise<void>;
}

/** The FerretDB binary and its version, or undefined when none is found. Throws on a wrong version. */
export async function findFerretdb(): Promise<{ bin: string; version: string } | undefined> {
  const cacheDir = process.env.BROKER_FERRETDB_CACHE || FERRETDB_CACHE_DIR;
  const candidates = [
    process.env.FERRETDB_BIN,
    path.join(cacheDir, FERRETDB_VERSION, 'ferretdb'),
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
  /** Resolves once its listeners are closed (after SIGTERM) or it has exited. */
  listenersClosed: Promise<void>;
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
    if (outcome === 'ready') {
      const listenersClosed = new Promise<void>((resolve) => {
        void proc.exited.then(resolve);
        // Printed once SIGTERM has closed the listeners; open connections are then given the grace period.
        void tail.waitFor(/Waiting for all connections to stop/).then(resolve);
      });
      return { proc, tail, forget, listenersClosed };
    }
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

  /** Starts a process on `port` (a new free one when not fixed and `port` is 0), retrying a lost port. */
  const boot = async (retryBindMs: number): Promise<Instance> => {
    const deadline = Date.now() + retryBindMs;
    for (let attempt = 1; ; attempt++) {
      const p = port || (await freePort());
      try {
        const instance = await launch(p);
        port = p;
        return instance;
      } catch (err) {
        const lost = err instanceof LaunchError && /address already in use/i.test(err.tail);
        const retry = lost && (port === 0 ? attempt < 3 : Date.now() < deadline);
        if (!retry) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };

  let current: Instance;
  try {
    current = await boot(0);
    await adminPing(adminUri);
  } catch (err) {
    logStream.end();
    await postgres.stop();
    throw err;
  }
  let generation = 1;
  const draining = new Set<Promise<void>>();

  /** SIGTERM, then SIGKILL if it outlives the grace period by far; resolves once it has exited. */
  const terminate = (instance: Instance): Promise<void> => {
    const done = (async () => {
      instance.proc.child.kill('SIGTERM');
      if (!(await settles(instance.proc.exited, FERRETDB_SHUTDOWN_GRACE_MS + 10_000))) {
        instance.proc.child.kill('SIGKILL');
        await settles(instance.proc.exited, 5_000);
      }
      instance.forget();
      instance.tail.flush();
    })();
    draining.add(done);
    void done.finally(() => draining.delete(done));
    return done;
  };

  let busy: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;

  const reconfigure = (change: Partial<FerretdbTls>): Promise<void> => {
    const step = busy.then(async () => {
      if (stopping) throw new Error('FerretDB has been stopped; start a new one');
      tls = { ...tls, ...change };
      // Written beside and renamed into place: a process starting now reads whole files.
      for (const [file, pem] of [
        [certFile, tls.serverCertPem],
        [keyFile, tls.serverKeyPem],
        [caFile, tls.clientCaPem],
      ] as const) {
        await fs.writeFile(`${file}.new`, pem, { mode: 0o600 });
        await fs.rename(`${file}.new`, file);
      }
      const old = current;
      void terminate(old);
      await old.listenersClosed;
      current = await boot(10_000);
      generation++;
      await adminPing(adminUri);
    });
    busy = step.catch(() => undefined);
    return step;
  };

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await busy;
      await terminate(current);
      await Promise.all([...draining]);
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
    get generation() {
      return generation;
    },
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
