/**
 * MongoDB paths against a real MongoDB-wire server: FerretDB (built by .ci/ferretdb.sh) on a throwaway
 * PostgreSQL, configured as the README says — it presents the server certificate from
 * `auth sign --format=db` and trusts only that service's client CA (`--listen-tls-ca-file`). Clients are
 * the real `mongodb` driver:
 *
 * - the `mongo` output format: `tlsCertificateKeyFile=mongo.crt`, `tlsCAFile=mongo.cas`, straight to the
 *   server and through the proxy's byte relay (non-tunnel), inserting and finding documents;
 * - `broker proxy db --tunnel`: the driver connects without TLS, the proxy opens mutual TLS upstream;
 * - refusals by the server: no certificate, an expired one, one from another service's client CA, one from
 *   another authority; and a client CA changed with `rotateCertificates`, without a restart (the command
 *   `.ci/ferretdb-tls-reload.patch` adds to FerretDB, as mongod has it).
 *
 * What FerretDB v1 does not check is who the certificate names: it has no MONGODB-X509 authentication (a
 * test pins that), so any certificate from the service's client CA works as the backend's user.
 *
 * FerretDB is Go, and Go's crypto/x509 refuses certificates with an OID arc over 31 bits: these tests are also
 * the proof that the broker's certificates (private extensions under a GUID arc, every arc below 2^28) load
 * in a Go server, as CockroachDB is one too.
 *
 * Fails (never skips) with a build hint when the FerretDB binary is missing.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { MongoClient, type MongoClientOptions } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { ManualClock } from '../../src/clock.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { CredentialCache } from '../../src/proxy/credential-cache.js';
import { DatabaseProxy } from '../../src/proxy/proxy.js';
import { DirectoryBundleSource } from '../../src/proxy/sources/directory.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { type StartedFerretdb, startFerretdb } from '../support/devdb/ferretdb.js';
import { botYaml, exampleDbYaml, exampleRoleYaml, HOUR, issueBundle } from '../support/fixtures.js';
import { type RunningProxy, setupOnce, startTunnelProxy, testLogger, within } from '../support/proxy.js';
import { tempDir } from '../support/temp.js';

const SERVICE = 'docs';
const OTHER = 'other-docs';

/** An authority whose clock the test can move (to issue a certificate that has already expired). */
async function clockedAuthority(clock: ManualClock, cluster: string): Promise<Authority> {
  const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog(), clock });
  await authority.initialize(cluster);
  await authority.createResources(parseResources(`${exampleRoleYaml()}---\n${botYaml()}`, 'roles.yaml'));
  return authority;
}

async function addMongo(authority: Authority, name: string, uri: string): Promise<void> {
  await authority.createResources(
    parseResources(
      exampleDbYaml({ name, protocol: 'mongodb', uri, serverName: 'localhost' }),
      `${name}.yaml`,
    ),
  );
}

/** A `mongo` output for alice on `service`, written to `dir` as the bot writes it. */
async function writeMongoOutput(
  authority: Authority,
  dir: string,
  service: string,
): Promise<{ crt: string; cas: string; serial: string }> {
  const keys = await generateRsaKeyPair();
  const bundle = await issueBundle(authority, { route: { service }, format: 'mongo', keys });
  await new DirectoryDestination(dir).write(bundle);
  return { crt: path.join(dir, 'mongo.crt'), cas: path.join(dir, 'mongo.cas'), serial: bundle.serial };
}

/** Opens a client, runs `use` with it, closes it; a hang becomes a failure naming `what`. */
async function withClient<T>(
  uri: string,
  options: MongoClientOptions,
  what: string,
  use: (client: MongoClient) => Promise<T>,
): Promise<T> {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 8_000,
    connectTimeoutMS: 5_000,
    directConnection: true,
    retryReads: false,
    retryWrites: false,
    ...options,
  });
  try {
    return await within(20_000, what, (async () => use(await client.connect()))());
  } finally {
    await client.close(true);
  }
}

/**
 * What the server answers a client with these TLS options: the error the driver reports, whose text is the
 * TLS alert the server sent. Throws if the connection works.
 */
async function refusal(uri: string, options: MongoClientOptions, what: string): Promise<string> {
  try {
    await withClient(uri, { serverSelectionTimeoutMS: 3_000, ...options }, what, (c) =>
      c.db('admin').command({ ping: 1 }),
    );
  } catch (err) {
    return String((err as Error).message);
  }
  throw new Error(`${what}: the server accepted it`);
}

/** TLS options as a user of the `mongo` format writes them: the two files, nothing else. */
const mongoFiles = (out: { crt: string; cas: string }): MongoClientOptions => ({
  tls: true,
  tlsCertificateKeyFile: out.crt,
  tlsCAFile: out.cas,
});

/** Inserts one document into example.notes and finds it again; returns what was found. */
async function insertAndFind(client: MongoClient, note: string): Promise<string | undefined> {
  const notes = client.db('example').collection<{ note: string; at: Date }>('notes');
  const inserted = await notes.insertOne({ note, at: new Date() });
  const found = await notes.findOne({ _id: inserted.insertedId });
  return found?.note;
}

describe('MongoDB on FerretDB: the mongo format, the proxy in both modes, and what the server refuses', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let clock: ManualClock;
  let authority: Authority;
  let server: StartedFerretdb | undefined;
  let alice: { crt: string; cas: string; serial: string };
  let tunnel: RunningProxy | undefined;
  let relay: { port: number; stop(): Promise<void> } | undefined;

  const db = (): StartedFerretdb => {
    if (!server) throw new Error('FerretDB did not start (see the first failure)');
    return server;
  };
  const direct = () => `mongodb://localhost:${db().port}/`;
  const out = (name: string) => path.join(work.dir, name);

  setupOnce(async () => {
    work = await tempDir('ferretdb');
    clock = new ManualClock(new Date());
    authority = await clockedAuthority(clock, 'mongo-test');
    // As the README says: `broker auth sign --format=db --service docs --host localhost` -> crt, key, cas.
    const signed = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
    server = await startFerretdb({
      baseDir: path.join(work.dir, 'ferretdb'),
      tls: {
        serverCertPem: signed.certificatePem,
        serverKeyPem: signed.privateKeyPem,
        clientCaPem: signed.clientCaPem,
      },
    });
    await addMongo(authority, SERVICE, `localhost:${server.port}`);
    alice = await writeMongoOutput(authority, out('alice'), SERVICE);
    tunnel = await startTunnelProxy(out('alice'));
    relay = await startRelayProxy(out('alice'));
  });

  afterAll(async () => {
    await tunnel?.stop();
    await relay?.stop();
    await server?.stop();
    await work?.cleanup();
  });

  it('the mongo format: tlsCertificateKeyFile=mongo.crt and tlsCAFile=mongo.cas insert and find on FerretDB', async () => {
    const result = await withClient(
      direct(),
      mongoFiles(alice),
      'the direct mongo-format client',
      async (c) => ({
        note: await insertAndFind(c, 'direct'),
        build: await c.db('admin').command({ buildInfo: 1 }),
      }),
    );
    expect(result.note).toBe('direct');
    // It is FerretDB answering, and the document is in its store (read back over the admin socket).
    expect(result.build.ferretdbVersion ?? result.build.ferretdb?.version).toBe(db().version);
    const stored = await withClient(db().adminUri, {}, 'the admin read', (c) =>
      c.db('example').collection('notes').countDocuments({ note: 'direct' }),
    );
    expect(stored).toBe(1);
  });

  it('through the proxy without --tunnel: the driver does TLS itself with mongo.crt and mongo.cas', async () => {
    // The server certificate names localhost, so verification against the local port succeeds.
    const note = await withClient(
      `mongodb://localhost:${relay!.port}/`,
      mongoFiles(alice),
      'the mongo-format client through the relay',
      (c) => insertAndFind(c, 'relayed'),
    );
    expect(note).toBe('relayed');
  });

  it('through the proxy with --tunnel: the driver connects without TLS, the proxy brings the certificate', async () => {
    const note = await withClient(
      `mongodb://127.0.0.1:${tunnel!.port}/`,
      {},
      'the plain client through the tunnel',
      (c) => insertAndFind(c, 'tunnelled'),
    );
    // The server accepts no connection without a client certificate from its CA (below): the proxy's it was.
    expect(note).toBe('tunnelled');
  });

  it('refuses a client that presents no certificate', async () => {
    const why = await refusal(
      direct(),
      { tls: true, tlsCAFile: alice.cas },
      'a client without a certificate',
    );
    expect(why).toMatch(/certificate required/);
  });

  it('refuses an expired certificate from the right client CA', async () => {
    clock.set(new Date(Date.now() - 3 * HOUR));
    let expired: { crt: string; cas: string; serial: string };
    try {
      expired = await writeMongoOutput(authority, out('expired'), SERVICE);
    } finally {
      clock.set(new Date());
    }
    const notAfter = new Date(new X509Certificate(await readPemCert(expired.crt)).validTo);
    expect(notAfter.getTime()).toBeLessThan(Date.now());
    const why = await refusal(direct(), mongoFiles(expired), 'a client with an expired certificate');
    expect(why).toMatch(/certificate expired/);
  });

  it("refuses a certificate from another service's client CA, and one from another authority", async () => {
    await addMongo(authority, OTHER, `localhost:${db().port}`);
    const otherService = await writeMongoOutput(authority, out('other-service'), OTHER);
    const stranger = await clockedAuthority(new ManualClock(new Date()), 'stranger');
    await addMongo(stranger, SERVICE, `localhost:${db().port}`);
    // The stranger's certificate, with the real server CA file so that only the client side is wrong.
    const strangerOut = { ...(await writeMongoOutput(stranger, out('stranger'), SERVICE)), cas: alice.cas };
    for (const [what, files] of [
      ['another service', otherService],
      ['another authority', strangerOut],
    ] as const)
      expect(await refusal(direct(), mongoFiles(files), `a certificate from ${what}`), what).toMatch(
        /alert unknown ca/,
      );
  });

  it('does not map the certificate to a user: MONGODB-X509 is refused, and the session has no user', async () => {
    // FerretDB v1 has no `authenticate` command, so the driver's X.509 login fails...
    await expect(
      withClient(
        direct(),
        { ...mongoFiles(alice), authMechanism: 'MONGODB-X509' },
        'the MONGODB-X509 login',
        (c) => c.db('admin').command({ ping: 1 }),
      ),
    ).rejects.toThrow(/authenticate|not (implemented|supported)|no such command|unsupported/i);
    // ...and without it the connection works with no authenticated user: the client CA is the whole gate.
    const status = await withClient(direct(), mongoFiles(alice), 'connectionStatus', (c) =>
      c.db('admin').command({ connectionStatus: 1 }),
    );
    expect(status.authInfo.authenticatedUsers).toEqual([]);
  });

  it('a changed client CA takes effect with rotateCertificates, without a restart: open connections stay', async () => {
    const open = new MongoClient(direct(), {
      ...mongoFiles(alice),
      directConnection: true,
      serverSelectionTimeoutMS: 8_000,
      retryReads: false,
      retryWrites: false,
    });
    try {
      await open.db('admin').command({ ping: 1 });
      const other = await writeMongoOutput(authority, out('other-again'), OTHER);
      await db().reconfigure({ clientCaPem: await authority.dbClientCaBundle(OTHER) });
      const note = await withClient(direct(), mongoFiles(other), 'the client of the newly trusted CA', (c) =>
        insertAndFind(c, 'after reload'),
      );
      expect(note).toBe('after reload');
      expect(await refusal(direct(), mongoFiles(alice), 'the client of the no longer trusted CA')).toMatch(
        /alert unknown ca/,
      );
      // The connection opened before the reload is the same process's and still answers.
      const kept = await within(
        10_000,
        'the connection opened before the reload',
        open.db('example').collection('notes').countDocuments({ note: 'direct' }),
      );
      expect(kept).toBe(1);
    } finally {
      await open.close(true);
    }
  });

  it('files that do not load are refused by rotateCertificates and the previous ones stay in use', async () => {
    const other = await writeMongoOutput(authority, out('other-refused'), OTHER);
    // A key that is not the certificate's: FerretDB answers OperationFailed and keeps what it had.
    const { privateKeyPem } = await generateRsaKeyPair();
    await expect(db().reconfigure({ serverKeyPem: privateKeyPem })).rejects.toThrow(
      /rotateCertificates.*previous TLS files stay in use/,
    );
    const note = await withClient(direct(), mongoFiles(other), 'a client after the refused reload', (c) =>
      insertAndFind(c, 'after refused reload'),
    );
    expect(note).toBe('after refused reload');
    // A matching pair then loads: the next handshake presents the new server certificate.
    const signed = await authority.signDatabaseServer(['localhost'], { service: OTHER });
    await db().reconfigure({ serverCertPem: signed.certificatePem, serverKeyPem: signed.privateKeyPem });
    const presented = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: db().port,
        servername: 'localhost',
        rejectUnauthorized: false,
      });
      socket.once('secureConnect', () => {
        resolve(socket.getPeerX509Certificate()?.serialNumber ?? '');
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(presented).toBe(new X509Certificate(signed.certificatePem).serialNumber);
  });
});

/** `broker proxy db` without --tunnel on 127.0.0.1 (a free port), reading the directory output `dir`. */
async function startRelayProxy(dir: string): Promise<{ port: number; stop(): Promise<void> }> {
  const log = testLogger();
  const creds = new CredentialCache(new DirectoryBundleSource(dir), { log });
  await creds.start();
  const proxy = new DatabaseProxy({
    creds,
    log,
    tunnel: false,
    listen: { address: '127.0.0.1', port: 0 },
    dialTimeoutMs: 5_000,
  });
  const address = await proxy.start();
  return {
    port: Number(address.slice(address.lastIndexOf(':') + 1)),
    stop: async () => {
      await proxy.stop(2_000);
      creds.stop();
    },
  };
}

/** The first certificate in a PEM file (mongo.crt holds the certificate, then the key). */
async function readPemCert(file: string): Promise<string> {
  const text = await readFile(file, 'utf8');
  const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
  if (!match) throw new Error(`${file} holds no certificate`);
  return match[0];
}
