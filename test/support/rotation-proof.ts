/**
 * The CA rotation proof, shared by one test file per engine: a real database trusting the authority, a real
 * bot (in-process API) writing a directory output, a tunnel proxy reading it, and a client that opens a new
 * connection every 100 ms and keeps one long-lived connection open, through the tunnel and directly (mutual
 * TLS with the output's files), while a CA rotation runs phase by phase and the database is reconfigured the
 * way the README's "Rotating a CA" says. Every failed or dropped connection is recorded with the phase it
 * happened in.
 *
 * `rotationSuite` is the proof's two tests (a full rotation, and one rolled back); an engine's test file
 * declares only what differs between engines (its `Engine`: server start, reload, client connections).
 */
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { Bot } from '../../src/bot/bot.js';
import { parseBotConfig } from '../../src/bot/config.js';
import { MemoryIdentityStore } from '../../src/bot/identity-store.js';
import { systemClock } from '../../src/clock.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import type { OutputFormat } from '../../src/credentials/formats.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import type { DbProtocol } from '../../src/credentials/route.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import type { RotationPhase } from '../../src/pki/ca-rotation.js';
import { CredentialCache } from '../../src/proxy/credential-cache.js';
import { DatabaseProxy, type ProxyOptions } from '../../src/proxy/proxy.js';
import type { BundleSource } from '../../src/proxy/sources/bundle-source.js';
import { DirectoryBundleSource } from '../../src/proxy/sources/directory.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { testKeyPair } from './fixtures.js';
import { opensslVerify } from './openssl.js';
import { testLogger } from './proxy.js';
import { tempDir } from './temp.js';

export const SERVICE = 'rotation-db';
export const USER = 'alice';
export const DATABASE = 'example';
/** The client's cadence: a new connection on each path every 100 ms, and a query on each long-lived one. */
export const CADENCE_MS = 100;
/** How long each phase lasts: a dozen cadences and more, and the proxy's re-read of the output. */
export const PHASE_MS = 1_000;

/** The TLS files a database is given: its server certificate and key, and the client CA it trusts. */
export interface DatabaseTls {
  serverCertPem: string;
  serverKeyPem: string;
  clientCaPem: string;
}

/** One open connection of the engine's real driver. */
export interface Connection {
  /** A round trip (a query or PING); rejects when the connection is gone. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** What the proof needs from one engine. */
export interface Engine {
  protocol: DbProtocol;
  /** The bot output's `format` (the default format when absent). */
  format?: OutputFormat;
  /** Tunnel handlers the proxy needs beyond its defaults. */
  handlers?: ProxyOptions['handlers'];
  /** Starts the database under `baseDir` with `tls`; returns its port on 127.0.0.1. */
  start(baseDir: string, tls: DatabaseTls): Promise<number>;
  /** Installs new TLS files in place and reloads them as the README says, without a restart. */
  install(tls: DatabaseTls): Promise<void>;
  /** A direct mutual-TLS connection with the output's files (verify-full against server name localhost). */
  direct(bundle: CredentialBundle, port: number): Promise<Connection>;
  /** A connection to the tunnel proxy on `port`: no TLS, no password. */
  tunnel(port: number): Promise<Connection>;
  stop(): Promise<void>;
}

const ROLE = `kind: role
version: v6
metadata: { name: rotation-role }
spec:
  allow:
    db_labels: { '*': '*' }
    db_names: [${DATABASE}]
    db_users: [${USER}]
`;

/** The world the proof runs in: authority, database, bot, proxy. */
export class RotationWorld {
  readonly audit = new MemoryAuditLog();
  readonly authority = new Authority({ store: new MemoryStateStore(), audit: this.audit });
  port = 0;
  proxyPort = 0;
  tls: DatabaseTls | undefined;
  private bot: Bot | undefined;
  private keySlot = 0;
  /** How long `proxyHas` waits for the proxy's own re-read of the output. */
  protected readonly proxyLoadMs: number = 5_000;
  private creds: CredentialCache | undefined;
  private proxy: DatabaseProxy | undefined;
  private readonly outDir: string;
  private readonly source: DirectoryBundleSource;

  constructor(
    readonly engine: Engine,
    readonly workDir: string,
  ) {
    this.outDir = path.join(workDir, 'out');
    this.source = new DirectoryBundleSource(this.outDir);
  }

  async start(): Promise<void> {
    await this.authority.initialize('rotation');
    const signed = await this.authority.signDatabaseServer(['localhost'], { service: SERVICE });
    this.tls = {
      serverCertPem: signed.certificatePem,
      serverKeyPem: signed.privateKeyPem,
      clientCaPem: signed.clientCaPem,
    };
    this.port = await this.engine.start(path.join(this.workDir, 'db'), this.tls);
    const db = `kind: db
version: v3
metadata: { name: ${SERVICE}, labels: { env: test } }
spec: { protocol: ${this.engine.protocol}, uri: "localhost:${this.port}", tls: { server_name: localhost } }
`;
    await this.authority.createResources(parseResources(`${ROLE}---\n${db}`, 'resources.yaml'));
    const { token } = await this.authority.addBot('rotation-bot', ['rotation-role']);
    const config = parseBotConfig(
      `version: v2
auth_server: unix:///unused/in-process.sock
onboarding: { join_method: token, token: unused }
storage: { type: memory }
credential_ttl: 1h
renewal_interval: 20m
outputs:
  - type: database
    destination: { type: directory, path: ${JSON.stringify(this.outDir)} }
    service: ${SERVICE}
    database: ${DATABASE}
    username: ${USER}
${this.engine.format ? `    format: ${this.engine.format}\n` : ''}`,
      'bot.yaml',
    );
    const destination = new DirectoryDestination(this.outDir);
    this.bot = new Bot({
      config,
      client: new AuthorityClient(new InProcessTransport(this.authority), systemClock),
      identityStore: new MemoryIdentityStore(),
      destinationFor: () => destination,
      joinToken: async () => token,
      clock: systemClock,
      log: testLogger(),
      // Keys from the run's pool: an RSA key per renewal would cost more than the rest of a phase.
      generateKeyPair: () => testKeyPair(this.keySlot++ % 4),
    });
    await this.renew();
    await this.startTunnelProxyOn(this.source);
  }

  /**
   * Starts the tunnel proxy on the bundles `source` holds (the output); sets `proxyPort`. The proxy re-reads
   * the source on its own schedule: a rotation needs no signal to it.
   */
  protected async startTunnelProxyOn(source: BundleSource): Promise<void> {
    const log = testLogger();
    this.creds = new CredentialCache(source, { log, pollMs: 250 });
    await this.creds.start();
    this.proxy = new DatabaseProxy({
      creds: this.creds,
      log,
      tunnel: true,
      listen: { address: '127.0.0.1', port: 0 },
      ...(this.engine.handlers ? { handlers: this.engine.handlers } : {}),
      startupTimeoutMs: 5_000,
      dialTimeoutMs: 5_000,
    });
    const address = await this.proxy.start();
    this.proxyPort = Number(address.slice(address.lastIndexOf(':') + 1));
  }

  /** One renewal of the bot (what its schedule does every renewal_interval); returns the output's serial. */
  async renew(): Promise<string> {
    const results = await (this.bot as Bot).runCycle(true);
    const failed = results.find((r) => !r.ok);
    if (failed) throw new Error(`the bot's renewal failed: ${failed.error}`);
    return results[0]?.serial as string;
  }

  /** Waits until the proxy has loaded the output with `serial` by itself (its periodic re-read). */
  async proxyHas(serial: string): Promise<void> {
    const deadline = Date.now() + this.proxyLoadMs;
    while (this.creds?.loaded?.serial !== serial) {
      if (Date.now() > deadline)
        throw new Error(`the proxy did not load serial ${serial} within ${this.proxyLoadMs / 1000} s`);
      await sleep(50);
    }
  }

  /** The output as the bot last wrote it, read consistently (one version of every file). */
  async output(): Promise<CredentialBundle> {
    const bundle = await this.source.load();
    if (!bundle) throw new Error(`no output in ${this.outDir}`);
    return bundle;
  }

  /** The proxy's current bundle. */
  proxyBundle(): CredentialBundle {
    const loaded = this.creds?.loaded;
    if (!loaded) throw new Error('the proxy holds no bundle');
    return loaded.bundle;
  }

  async stop(): Promise<void> {
    await this.proxy?.stop(2_000);
    this.creds?.stop();
    await this.engine.stop();
  }
}

/** The client of the proof: new connections on a cadence and one long-lived connection, on both paths. */
export class ConnectionLoad {
  phase = 'setup';
  opened = 0;
  longLivedPings = 0;
  readonly failed: string[] = [];
  readonly dropped: string[] = [];
  private running = false;
  private readonly inflight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private longLived: { path: string; conn: Connection; busy: boolean }[] = [];

  constructor(private readonly world: RotationWorld) {}

  private paths(): { name: string; open: () => Promise<Connection> }[] {
    const { engine } = this.world;
    return [
      { name: 'direct', open: async () => engine.direct(await this.world.output(), this.world.port) },
      { name: 'tunnel', open: () => engine.tunnel(this.world.proxyPort) },
    ];
  }

  async start(): Promise<void> {
    for (const p of this.paths()) {
      const conn = await p.open();
      await conn.ping();
      this.longLived.push({ path: p.name, conn, busy: false });
    }
    this.running = true;
    this.timer = setInterval(() => this.tick(), CADENCE_MS);
  }

  private tick(): void {
    for (const p of this.paths()) {
      const attempt = (async () => {
        const phase = this.phase;
        try {
          const conn = await p.open();
          try {
            await conn.ping();
          } finally {
            await conn.close();
          }
          this.opened++;
        } catch (err) {
          this.failed.push(`${phase} ${p.name}: ${(err as Error).message}`);
        }
      })();
      this.track(attempt);
    }
    for (const l of this.longLived) {
      // One query at a time on a connection: a slow round trip skips a beat rather than queueing.
      if (l.busy) continue;
      const phase = this.phase;
      l.busy = true;
      this.track(
        l.conn
          .ping()
          .then(
            () => void this.longLivedPings++,
            (err: Error) => void this.dropped.push(`${phase} long-lived ${l.path}: ${err.message}`),
          )
          .finally(() => {
            l.busy = false;
          }),
      );
    }
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Stops the cadence, waits for what is in flight, checks the long-lived connections once more and closes them. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.timer);
    await Promise.allSettled([...this.inflight]);
    for (const l of this.longLived) {
      try {
        await l.conn.ping();
      } catch (err) {
        this.dropped.push(`end long-lived ${l.path}: ${(err as Error).message}`);
      }
      await l.conn.close().catch(() => undefined);
    }
    this.longLived = [];
  }
}

/**
 * Moves `type`'s CA through `phases`, doing at each what the README's "Rotating a CA" tells the operator to
 * do (and letting the bot renew, as its schedule would), then holding the phase for PHASE_MS under load.
 */
export async function rotateUnderLoad(
  world: RotationWorld,
  load: ConnectionLoad,
  type: 'db-client' | 'db-server',
  phases: readonly RotationPhase[],
): Promise<void> {
  const { authority, engine } = world;
  for (const phase of phases) {
    const started = Date.now();
    await authority.rotateCa({
      type,
      ...(type === 'db-client' ? { service: SERVICE } : {}),
      phase,
      mode: 'manual',
    });
    load.phase = `${type} ${phase}`;
    const tls = world.tls as DatabaseTls;
    if (type === 'db-client' && (phase === 'init' || phase === 'standby')) {
      // The database's client CA file, refreshed: both keys at init, only the remaining one at standby.
      tls.clientCaPem = await authority.dbClientCaBundle(SERVICE);
      await engine.install(tls);
    }
    // Every bot renews on its schedule; the proxy re-reads the output by itself.
    await world.proxyHas(await world.renew());
    if (
      type === 'db-server' &&
      (phase === 'update_servers' || (phase === 'rollback' && signedByLatest(world)))
    ) {
      const signed = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
      tls.serverCertPem = signed.certificatePem;
      tls.serverKeyPem = signed.privateKeyPem;
      await engine.install(tls);
    }
    if (process.env.BROKER_TEST_LOG) console.error(`${type} ${phase}: steps took ${Date.now() - started} ms`);
    await sleep(PHASE_MS);
  }
}

/** Whether the database's server certificate was signed after the switch (so a rollback must re-sign it). */
function signedByLatest(world: RotationWorld): boolean {
  const bundle = world.proxyBundle();
  const cas = splitPemBundle(bundle.files['teleport-database-ca.crt'] as string);
  const cert = new X509Certificate((world.tls as DatabaseTls).serverCertPem);
  // During a rollback the old key signs again and is first in the bundle.
  const first = cas[0] ? new X509Certificate(cas[0]) : undefined;
  return !(first && cert.checkIssued(first) && cert.verify(first.publicKey));
}

/** Whether `leafPem` is signed by exactly the CA certificates of `bundlePem` that it names (by key). */
export function signers(leafPem: string, bundlePem: string): number[] {
  const leaf = new X509Certificate(leafPem);
  return splitPemBundle(bundlePem).flatMap((caPem, i) => {
    const ca = new X509Certificate(caPem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey) ? [i] : [];
  });
}

/** The phases of a full rotation, and of one rolled back from its last phase before standby. */
export const FULL_ROTATION: readonly RotationPhase[] = [
  'init',
  'update_clients',
  'update_servers',
  'standby',
];
export const ROLLED_BACK: readonly RotationPhase[] = [
  'init',
  'update_clients',
  'update_servers',
  'rollback',
  'standby',
];

/** What the client load saw. */
export interface LoadReport {
  opened: number;
  longLivedPings: number;
  failed: string[];
  dropped: string[];
}

/** What the proof saw, for its assertions and its failure messages. */
export interface ProofReport extends LoadReport {
  /** The single key each CA holds before and after (PEM). */
  clientCa: { before: string; after: string };
  serverCa: { before: string; after: string };
  /** The output (client certificate and the CA files it carries) and the database's server certificate at the end. */
  finalOutput: CredentialBundle;
  finalServerCertPem: string;
  /** The output from before the rotation: its client certificate was signed by the key that left. */
  firstOutput: CredentialBundle;
}

/**
 * Runs the client load on `world` while `rotate` moves its CAs, a phase of PHASE_MS before and after;
 * `label` names the run in the BROKER_TEST_LOG line. What the load saw.
 */
export async function underLoad(
  world: RotationWorld,
  label: string,
  rotate: (load: ConnectionLoad) => Promise<void>,
): Promise<LoadReport> {
  const load = new ConnectionLoad(world);
  await load.start();
  try {
    await sleep(PHASE_MS);
    await rotate(load);
    load.phase = 'after';
    await sleep(PHASE_MS);
  } finally {
    await load.stop();
  }
  if (process.env.BROKER_TEST_LOG)
    console.error(
      `${label}: ${load.opened} new connections, ${load.longLivedPings} long-lived round trips, ${load.failed.length} failed, ${load.dropped.length} dropped`,
    );
  return {
    opened: load.opened,
    longLivedPings: load.longLivedPings,
    failed: load.failed,
    dropped: load.dropped,
  };
}

/** Runs the client load while the db-client CA and then the db-server CA go through `phases`. */
export async function runProof(world: RotationWorld, phases: readonly RotationPhase[]): Promise<ProofReport> {
  const { authority } = world;
  const clientCaBefore = await authority.dbClientCaBundle(SERVICE);
  const serverCaBefore = await authority.caBundle('db-server');
  const firstOutput = await world.output();
  const load = await underLoad(world, `${world.engine.protocol} ${phases.join(',')}`, async (l) => {
    await rotateUnderLoad(world, l, 'db-client', phases);
    await rotateUnderLoad(world, l, 'db-server', phases);
  });
  return {
    ...load,
    clientCa: { before: clientCaBefore, after: await authority.dbClientCaBundle(SERVICE) },
    serverCa: { before: serverCaBefore, after: await authority.caBundle('db-server') },
    finalOutput: await world.output(),
    finalServerCertPem: (world.tls as DatabaseTls).serverCertPem,
    firstOutput,
  };
}

/** No new connection failed, no long-lived one dropped, and the load was real. */
export function expectNoDisruption(report: LoadReport): void {
  expect(report.failed, 'failed new connections').toEqual([]);
  expect(report.dropped, 'dropped long-lived connections').toEqual([]);
  // Two paths, a new connection every 100 ms, over at least eight phases of a second.
  expect(report.opened).toBeGreaterThan(100);
  expect(report.longLivedPings).toBeGreaterThan(100);
}

/** After a full rotation every certificate chains only to the new keys, and the CA files hold only them. */
export async function expectOnlyNewKeys(w: RotationWorld, report: ProofReport): Promise<void> {
  const { clientCa, serverCa, finalOutput } = report;
  expect(clientCa.after).not.toBe(clientCa.before);
  expect(serverCa.after).not.toBe(serverCa.before);
  const cert = finalOutput.files.tlscert as string;
  // The client certificate chains to the new client key only; the server's to the new server key only.
  expect(signers(cert, clientCa.after)).toEqual([0]);
  expect(signers(cert, clientCa.before)).toEqual([]);
  expect(signers(report.finalServerCertPem, serverCa.after)).toEqual([0]);
  expect(signers(report.finalServerCertPem, serverCa.before)).toEqual([]);
  // The CA files the bot and the proxy hand to clients hold only the new server key.
  expect(finalOutput.files['teleport-database-ca.crt']).toBe(serverCa.after);
  expect(w.proxyBundle().files['teleport-database-ca.crt']).toBe(serverCa.after);
  // openssl agrees.
  expect((await opensslVerify(w.workDir, clientCa.after, cert)).code).toBe(0);
  expect((await opensslVerify(w.workDir, clientCa.before, cert)).code).not.toBe(0);
  expect((await opensslVerify(w.workDir, serverCa.after, report.finalServerCertPem)).code).toBe(0);
}

/** After a rollback only the original keys remain, and the first output (signed by the old key) still works. */
export async function expectOnlyOriginalKeys(w: RotationWorld, report: ProofReport): Promise<void> {
  expect(report.clientCa.after).toBe(report.clientCa.before);
  expect(report.serverCa.after).toBe(report.serverCa.before);
  expect(signers(report.finalOutput.files.tlscert as string, report.clientCa.before)).toEqual([0]);
  expect(signers(report.finalServerCertPem, report.serverCa.before)).toEqual([0]);
  expect(report.finalOutput.files['teleport-database-ca.crt']).toBe(report.serverCa.before);
  const again = await w.engine.direct(report.firstOutput, w.port);
  await again.ping();
  await again.close();
}

/** The database refuses a client with `bundle`'s certificate (in the handshake or at its first round trip). */
export async function expectRefused(w: RotationWorld, bundle: CredentialBundle): Promise<void> {
  const attempt = async () => {
    const conn = await w.engine.direct(bundle, w.port);
    try {
      await conn.ping();
    } finally {
      await conn.close().catch(() => undefined);
    }
  };
  await expect(attempt()).rejects.toThrow();
}

/**
 * The proof for one engine: a full rotation of the client CA and then of the server CA, and a rotation rolled
 * back from update_servers, each with the client load running throughout. `server` names the database in the
 * suite's title ("a real PostgreSQL server"); `makeEngine` gives each test a fresh engine.
 */
export function rotationSuite(server: string, makeEngine: () => Engine): void {
  describe(`CA rotation against ${server}, under load`, () => {
    let cleanup: (() => Promise<void>) | undefined;
    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    async function world(): Promise<RotationWorld> {
      const engine = makeEngine();
      const work = await tempDir(`rotation-${engine.protocol}`);
      const w = new RotationWorld(engine, work.dir);
      cleanup = async () => {
        await w.stop();
        await work.cleanup();
      };
      await w.start();
      return w;
    }

    it('a full rotation of the client CA, then of the server CA: nothing fails, nothing drops, the old keys are gone', async () => {
      const w = await world();
      const report = await runProof(w, FULL_ROTATION);
      expectNoDisruption(report);
      await expectOnlyNewKeys(w, report);
      // The database no longer trusts the client key that left: the first output's certificate is refused.
      await expectRefused(w, report.firstOutput);
      expect(
        w.audit.events.filter((e) => e.event === 'ca.rotate' && e.outcome === 'success').map((e) => e.name),
      ).toEqual([
        ...FULL_ROTATION.map(() => `db-client/${SERVICE}`),
        ...FULL_ROTATION.map(() => 'db-server'),
      ]);
    }, 240_000);

    it('a rotation rolled back from update_servers: nothing fails, nothing drops, only the original keys remain', async () => {
      const w = await world();
      const report = await runProof(w, ROLLED_BACK);
      expectNoDisruption(report);
      await expectOnlyOriginalKeys(w, report);
    }, 240_000);
  });
}
