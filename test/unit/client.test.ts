/**
 * The Lambda client module: per-environment caching of the bundle (driven by a manual clock, against the
 * Secrets Manager double) and the driver option helpers (shapes, and assignability to the drivers' own
 * option types). Real connections are in test/integration/client-postgres.test.ts.
 */
import type { PeerCertificate } from 'node:tls';
import { CreateSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { RedisOptions } from 'ioredis';
import type { ConnectionOptions as Mysql2ConnectionOptions } from 'mysql2';
import type { ClientConfig as PgClientConfig } from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type CredentialBundle,
  CredentialClientError,
  clearCredentialCache,
  createCredentialClient,
  ioredisOptions,
  mongodbOptions,
  mysql2Options,
  pgOptions,
} from '../../src/client/index.js';
import { ManualClock } from '../../src/clock.js';
import { SecretsManagerDestination } from '../../src/destinations/secretsmanager.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { testBundle } from '../support/fixtures.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

let double: SecretsManagerDouble;
let sm: SecretsManagerClient;
let secretId: string;
let seq = 0;

beforeAll(async () => {
  double = new SecretsManagerDouble();
  sm = double.client();
});
afterAll(async () => {
  sm.destroy();
  await double.close();
});
beforeEach(async () => {
  clearCredentialCache();
  secretId = `broker/client/out-${++seq}`;
  await sm.send(new CreateSecretCommand({ Name: secretId }));
});

/** The client's reads (AWSCURRENT); the destination's read-backs go by version id. */
const gets = () =>
  double
    .requestsOf('GetSecretValue')
    .filter((r) => r.body.SecretId === secretId && r.body.VersionStage === 'AWSCURRENT').length;
const write = (b: CredentialBundle) =>
  new SecretsManagerDestination({ client: sm, secretId, retry: { sleep: async () => undefined } }).write(b);

describe('createCredentialClient: caching per execution environment', () => {
  it('reads the secret once for many getBundle calls, across client objects', async () => {
    const b = await testBundle({ slot: 0 });
    await write(b);
    const clock = new ManualClock(b.issuedAt);
    const creds = createCredentialClient({ secretId, client: sm, clock });
    expect(await creds.getBundle()).toEqual(b);
    for (let i = 0; i < 5; i++) await creds.getBundle();
    // A client created inside the handler on a warm invocation shares the module-level cache.
    expect(await createCredentialClient({ secretId, client: sm, clock }).getBundle()).toEqual(b);
    expect(gets()).toBe(1);
  });

  it('re-reads once the clock is within the refresh margin of expiry, and picks up the renewal', async () => {
    const first = await testBundle({ slot: 0 });
    await write(first);
    const clock = new ManualClock(first.issuedAt);
    const creds = createCredentialClient({ secretId, client: sm, clock, refreshMarginMs: 5 * MINUTE });
    await creds.getBundle();
    clock.advance(HOUR - 5 * MINUTE - 1_000); // just outside the margin: still cached
    expect(await creds.getBundle()).toEqual(first);
    expect(gets()).toBe(1);
    const second = await testBundle({ slot: 1 });
    await write(second);
    clock.advance(2_000); // inside the margin
    expect(await creds.getBundle()).toEqual(second);
    expect(gets()).toBe(2);
    expect(await creds.getBundle()).toEqual(second); // fresh again: cached
    expect(gets()).toBe(2);
  });

  it('inside the margin without a renewal, re-reads at most every 10 seconds and keeps the valid bundle', async () => {
    const b = await testBundle({ slot: 0 });
    await write(b);
    const clock = new ManualClock(b.issuedAt);
    const creds = createCredentialClient({ secretId, client: sm, clock });
    await creds.getBundle();
    clock.advance(HOUR - 2 * MINUTE);
    await creds.getBundle();
    await creds.getBundle();
    expect(gets()).toBe(2);
    clock.advance(10_000);
    double.fail('GetSecretValue', { type: 'InternalServiceError' });
    expect(await creds.getBundle()).toEqual(b); // the refresh failed; the bundle is still valid
    expect(gets()).toBe(3);
  });

  it('shares one in-flight read between concurrent callers', async () => {
    const b = await testBundle({ slot: 0 });
    await write(b);
    const creds = createCredentialClient({ secretId, client: sm, clock: new ManualClock(b.issuedAt) });
    const all = await Promise.all(Array.from({ length: 20 }, () => creds.getBundle()));
    expect(new Set(all).size).toBe(1);
    expect(all[0]).toEqual(b);
    expect(gets()).toBe(1);
  });

  it('says what is wrong: no bundle yet, an expired bundle, a bad bundle', async () => {
    const clock = new ManualClock();
    const creds = createCredentialClient({ secretId, client: sm, clock });
    await expect(creds.getBundle()).rejects.toThrow(
      new CredentialClientError(
        `secret ${secretId} holds no credential bundle yet (no AWSCURRENT version); is the bot running?`,
      ),
    );
    const b = await testBundle({ slot: 0 });
    await write(b);
    clock.set(new Date(Date.parse(b.expiresAt) + 1_000));
    await expect(creds.getBundle()).rejects.toThrow(
      `the bundle in secret ${secretId} (serial ${b.serial}) expired at ${b.expiresAt}; check the bot that renews it`,
    );
    const other = `${secretId}-bad`;
    await sm.send(new CreateSecretCommand({ Name: other, SecretString: '{"kind":"database-credentials"}' }));
    await expect(
      createCredentialClient({ secretId: other, client: sm, clock }).getBundle(),
    ).rejects.toMatchObject({
      code: 'bad_bundle',
    });
  });
});

describe('driver options', () => {
  it('pgOptions: verify-full against the bundle serverName', async () => {
    const b = await testBundle({ slot: 0 });
    const o = pgOptions(b);
    expect(o).toEqual({
      host: 'db.internal',
      port: 5432,
      database: 'example',
      user: 'alice',
      ssl: {
        ca: b.files['teleport-database-ca.crt'],
        cert: b.files.tlscert,
        key: b.files.key,
        servername: 'db.internal',
        rejectUnauthorized: true,
        checkServerIdentity: expect.any(Function),
      },
    });
    const typed: PgClientConfig = o;
    expect(typed.ssl).toBe(o.ssl);
    // pg replaces servername with `host`; the identity check still looks for serverName.
    const ip = pgOptions({ ...b, endpoint: '10.0.0.7:5432' });
    expect(ip.host).toBe('10.0.0.7');
    const cert = (san: string) => ({ subject: { CN: san }, subjectaltname: `DNS:${san}` }) as PeerCertificate;
    expect(ip.ssl.checkServerIdentity('10.0.0.7', cert('db.internal'))).toBeUndefined();
    expect(ip.ssl.checkServerIdentity('10.0.0.7', cert('other.internal'))).toBeInstanceOf(Error);
  });

  it('mysql2Options: chain and host name verification (verifyIdentity)', async () => {
    const b = await testBundle({ protocol: 'mysql', endpoint: 'db.internal:3306' });
    const o = mysql2Options(b);
    expect(o).toEqual({
      host: 'db.internal',
      port: 3306,
      database: 'example',
      user: 'alice',
      ssl: {
        ca: b.files['teleport-database-ca.crt'],
        cert: b.files.tlscert,
        key: b.files.key,
        rejectUnauthorized: true,
        verifyIdentity: true,
      },
    });
    const typed: Mysql2ConnectionOptions = o;
    expect(typed.host).toBe('db.internal');
  });

  it('mongodbOptions: an X.509 URI and a secure context', async () => {
    const b = await testBundle({
      protocol: 'mongodb',
      endpoint: 'db.internal:27017',
      route: { database: 'app db' },
    });
    const o = mongodbOptions(b);
    expect(o.uri).toBe('mongodb://db.internal:27017/app%20db?authMechanism=MONGODB-X509&tls=true');
    expect(o.options.tls).toBe(true);
    expect(o.options.servername).toBe('db.internal');
    expect(o.options.secureContext.context).toBeDefined();
    const v6 = mongodbOptions({ ...b, endpoint: '[fd00::7]:27017', serverName: 'fd00::7' });
    expect(v6.uri).toMatch(/^mongodb:\/\/\[fd00::7\]:27017\//);
    expect(v6.options).not.toHaveProperty('servername'); // SNI never carries an IP address
  });

  it('ioredisOptions: TLS from the first byte with the client certificate', async () => {
    const b = await testBundle({ protocol: 'redis', endpoint: 'db.internal:6379', route: { database: '' } });
    const o = ioredisOptions(b);
    expect(o).toEqual({
      host: 'db.internal',
      port: 6379,
      tls: {
        ca: b.files['teleport-database-ca.crt'],
        cert: b.files.tlscert,
        key: b.files.key,
        servername: 'db.internal',
        rejectUnauthorized: true,
      },
    });
    const typed: RedisOptions = o;
    expect(typed.port).toBe(6379);
  });
});
