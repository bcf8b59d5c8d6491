/**
 * The CA rotation proof against a real MongoDB-wire server: FerretDB (built by .ci/ferretdb.sh with the patch
 * that adds mongod's `rotateCertificates`), trusting only the service's client CA. The bot writes the `mongo`
 * format; the client is the real `mongodb` driver, directly with `tlsCertificateKeyFile=mongo.crt` and
 * `tlsCAFile=mongo.cas`, and through the tunnel without TLS. While the client CA and then the server CA
 * rotate phase by phase, the server takes new files with `db.adminCommand({ rotateCertificates: 1 })` as the
 * README says, and a client opening a connection every 100 ms and holding one open sees no failure and no
 * drop; afterwards every certificate chains only to the new keys. The rollback does the same. Fails with a
 * build hint when FerretDB is missing.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MongoClient, type MongoClientOptions } from 'mongodb';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { type StartedFerretdb, startFerretdb } from '../support/devdb/ferretdb.js';
import { type Connection, type DatabaseTls, type Engine, rotationSuite } from '../support/rotation-proof.js';

/**
 * One `MongoClient` as one connection of the proof. Retries are off, so an operation on a connection the
 * server closed fails instead of being replayed on a new one; and since the driver reopens connections on
 * its own (its pool and its monitor), any connection it loses or any failed heartbeat also counts as a drop.
 */
async function connect(uri: string, options: MongoClientOptions): Promise<Connection> {
  const client = new MongoClient(uri, {
    directConnection: true,
    retryReads: false,
    retryWrites: false,
    maxPoolSize: 1,
    serverSelectionTimeoutMS: 5_000,
    connectTimeoutMS: 5_000,
    ...options,
  });
  let closing = false;
  let lost: string | undefined;
  client.on('connectionClosed', (e) => {
    if (!closing) lost ??= `the driver's connection ${e.connectionId} closed (${e.reason})`;
  });
  client.on('serverHeartbeatFailed', (e) => {
    if (!closing) lost ??= `the driver's monitor failed: ${e.failure.message}`;
  });
  const check = () => {
    if (lost) throw new Error(lost);
  };
  try {
    await client.connect();
  } catch (err) {
    closing = true;
    await client.close().catch(() => undefined);
    throw err;
  }
  return {
    ping: async () => {
      check();
      await client.db('admin').command({ ping: 1 });
      check();
    },
    close: async () => {
      closing = true;
      await client.close();
    },
  };
}

class MongodbEngine implements Engine {
  readonly protocol = 'mongodb' as const;
  readonly format = 'mongo' as const;
  private server: StartedFerretdb | undefined;
  private clientsDir = '';
  /** The mongo-format files of each output the client has used, by serial: written once, read by the driver. */
  private readonly files = new Map<string, Promise<{ crt: string; cas: string }>>();

  async start(baseDir: string, tls: DatabaseTls): Promise<number> {
    this.clientsDir = path.join(baseDir, 'clients');
    this.server = await startFerretdb({ baseDir: path.join(baseDir, 'ferretdb'), tls });
    return this.server.port;
  }

  /** The README's step for MongoDB: write the files in place, then `rotateCertificates` (no restart). */
  async install(tls: DatabaseTls): Promise<void> {
    await (this.server as StartedFerretdb).reconfigure(tls);
  }

  /** The driver as a user of the `mongo` format configures it: the two files, verified against localhost. */
  async direct(bundle: CredentialBundle, port: number): Promise<Connection> {
    const { crt, cas } = await this.mongoFiles(bundle);
    return connect(`mongodb://localhost:${port}/`, {
      tls: true,
      tlsCertificateKeyFile: crt,
      tlsCAFile: cas,
    });
  }

  tunnel(port: number): Promise<Connection> {
    return connect(`mongodb://127.0.0.1:${port}/`, {});
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }

  private mongoFiles(bundle: CredentialBundle): Promise<{ crt: string; cas: string }> {
    let written = this.files.get(bundle.serial);
    if (!written) {
      written = (async () => {
        const crt = bundle.files['mongo.crt'];
        const cas = bundle.files['mongo.cas'];
        if (!crt || !cas) throw new Error(`output ${bundle.serial} has no mongo.crt and mongo.cas`);
        const dir = path.join(this.clientsDir, bundle.serial);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const files = { crt: path.join(dir, 'mongo.crt'), cas: path.join(dir, 'mongo.cas') };
        await writeFile(files.crt, crt, { mode: 0o600 });
        await writeFile(files.cas, cas, { mode: 0o600 });
        return files;
      })();
      this.files.set(bundle.serial, written);
    }
    return written;
  }
}

rotationSuite('a real MongoDB-wire server (FerretDB)', () => new MongodbEngine());
