/**
 * Known limit, pinned: Go's crypto/x509 refuses the broker's leaf certificates. Their private extensions sit
 * under `2.25.<128-bit UUID>`, and Go reads at most 31 bits per OID arc ("x509: malformed extension OID
 * field"; RFC 5280 only asks implementations to handle arcs up to 2^28 - 1). FerretDB is Go, so it will not
 * load a server certificate from `auth sign --format=db`, and it refuses every client certificate the
 * broker issues even behind a server certificate it can read. CockroachDB is Go as well.
 *
 * These tests hold today's behaviour so that it cannot go unnoticed; once the arc is one Go reads, they fail
 * and give way to mongodb-ferretdb.test.ts without its arc override. Fails (never skips) without FerretDB.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import type { Authority } from '../../src/authority/authority.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { BROKER_ARC } from '../../src/pki/oids.js';
import { requireFerretdb, type StartedFerretdb, startFerretdb } from '../support/devdb/ferretdb.js';
import { issueBundle } from '../support/fixtures.js';
import { openssl } from '../support/openssl.js';
import { addDatabase, newAuthority, setupOnce, within } from '../support/proxy.js';
import { tempDir } from '../support/temp.js';

describe("FerretDB and the broker's private-extension arc (a known limit)", () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let authority: Authority;
  let server: StartedFerretdb | undefined;

  setupOnce(async () => {
    await requireFerretdb();
    work = await tempDir('ferretdb-oid');
    authority = await newAuthority();
  });

  afterAll(async () => {
    await server?.stop();
    await work?.cleanup();
  });

  it('the shipped arc has an arc over 31 bits', () => {
    const arcs = BROKER_ARC.split('.').map(BigInt);
    expect(arcs.some((arc) => arc > 2n ** 31n - 1n)).toBe(true);
  });

  it('FerretDB will not start with the server certificate from auth sign --format=db', async () => {
    const signed = await authority.signDatabaseServer(['localhost'], { service: 'docs' });
    await expect(
      startFerretdb({
        baseDir: path.join(work.dir, 'refuses-server-cert'),
        tls: {
          serverCertPem: signed.certificatePem,
          serverKeyPem: signed.privateKeyPem,
          clientCaPem: signed.clientCaPem,
        },
      }),
    ).rejects.toThrow(/TLS file pair: x509: malformed extension OID field/);
  });

  it('FerretDB refuses a client certificate the broker issued, behind a server certificate Go can read', async () => {
    // A server CA and certificate made by openssl (no private extensions); the client CA is the service's.
    const dir = path.join(work.dir, 'openssl');
    await mkdir(dir, { recursive: true });
    for (const args of [
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt'],
      ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr'],
    ]) {
      const subject = args.includes('-x509') ? '/CN=openssl server CA' : '/CN=localhost';
      const extra = args.includes('-x509')
        ? [
            '-days',
            '1',
            '-addext',
            'basicConstraints=critical,CA:TRUE',
            '-addext',
            'keyUsage=critical,keyCertSign',
          ]
        : [];
      const made = await openssl([...args, '-subj', subject, ...extra], dir);
      expect(made.code, made.stderr).toBe(0);
    }
    await writeFile(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    const signedServer = await openssl(
      [
        'x509',
        '-req',
        '-in',
        'server.csr',
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        'server.ext',
        '-out',
        'server.crt',
      ],
      dir,
    );
    expect(signedServer.code, signedServer.stderr).toBe(0);
    const read = (name: string) => readFile(path.join(dir, name), 'utf8');
    const { clientCaPem } = await authority.signDatabaseServer(['localhost'], { service: 'docs' });
    server = await startFerretdb({
      baseDir: path.join(work.dir, 'refuses-client-cert'),
      tls: { serverCertPem: await read('server.crt'), serverKeyPem: await read('server.key'), clientCaPem },
    });
    await addDatabase(authority, 'docs', 'mongodb', `localhost:${server.port}`);
    const bundle = await issueBundle(authority, {
      route: { service: 'docs' },
      format: 'mongo',
      keys: await generateRsaKeyPair(),
    });
    const crt = path.join(dir, 'mongo.crt');
    await writeFile(crt, bundle.files['mongo.crt']!, { mode: 0o600 });
    const client = new MongoClient(`mongodb://localhost:${server.port}/`, {
      tls: true,
      tlsCertificateKeyFile: crt,
      tlsCAFile: path.join(dir, 'ca.crt'),
      directConnection: true,
      serverSelectionTimeoutMS: 3_000,
    });
    try {
      await expect(
        within(
          15_000,
          'the refused connection',
          client.connect().then((c) => c.db('admin').command({ ping: 1 })),
        ),
      ).rejects.toThrow(/alert decode error/);
      // Go's TLS server sends decode_error when it cannot parse the client certificate; FerretDB logs why.
      await server.stop();
      expect(await readFile(server.logFile, 'utf8')).toContain(
        'failed to parse client certificate: x509: malformed extension OID field',
      );
    } finally {
      await client.close(true);
    }
  });
});
