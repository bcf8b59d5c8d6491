/**
 * CA rotation in AWS mode: the rotation action (functions/authority-rotate.ts) moves a KMS-held CA to the
 * next KMS key the stack created, on the DynamoDB state (dynalite) the authority Lambda reads; during the
 * overlap the authority API's `ca-bundles` carries both keys' certificates, signing moves to the new key at
 * update_clients, and only at standby is the key that left scheduled for deletion (the new one after a
 * rollback). The KMS double signs for real and models key deletion as KMS documents it: the retired key is
 * PendingDeletion and refuses to sign.
 */
import { createPublicKey, randomUUID, X509Certificate } from 'node:crypto';
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorityHandler } from '../../functions/authority.js';
import {
  createRotationHandler,
  type RotateEvent,
  type RotateResponse,
} from '../../functions/authority-rotate.js';
import { createSignServerHandler } from '../../functions/authority-sign.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { bootstrapAuthority } from '../../src/authority/aws-bootstrap.js';
import { systemClock } from '../../src/clock.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import { createCsr } from '../../src/pki/csr.js';
import { createStateTable, DynamoDbStateStore } from '../../src/state/dynamodb-store.js';
import { type LocalDynamoDb, startDynalite } from '../support/aws/dynalite.js';
import { KmsDouble } from '../support/aws/kms.js';
import { EXAMPLE, EXAMPLE_ROUTE, exampleResourcesYaml, testKeyPair } from '../support/fixtures.js';

const TABLE = 'broker-rotation';
const SERVICE_CA = `db-client/${EXAMPLE.service}`;

describe('CA rotation of KMS-held CAs through the rotation action', () => {
  let dynamo: LocalDynamoDb;
  let kms: KMSClient;
  let double: KmsDouble;
  /** ScheduleKeyDeletion requests the double received, as `{ KeyId, PendingWindowInDays }`. */
  const deletions = () => double.requestsOf('ScheduleKeyDeletion').map((r) => r.body);
  const keyState = async (keyId: string) =>
    (await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyState;
  const keys: Record<string, string> = {};
  let rotate: (event: RotateEvent) => Promise<RotateResponse>;
  let sign: ReturnType<typeof createSignServerHandler>;
  const signAudit: Record<string, unknown>[] = [];
  let bundles: () => Promise<{ dbClient: string; dbServer: string }>;

  const newKey = async () =>
    (await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata
      ?.KeyId as string;
  const publicKeyOf = async (keyId: string) =>
    createPublicKey({
      key: Buffer.from((await kms.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey as Uint8Array),
      format: 'der',
      type: 'spki',
    }).export({ type: 'spki', format: 'pem' });
  const certKey = (pem: string) => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'pem' });

  beforeAll(async () => {
    dynamo = await startDynalite();
    double = new KmsDouble();
    kms = double.client();
    await createStateTable(dynamo.client, TABLE);
    for (const name of ['bot', 'db-client', 'db-server', 'service', 'next-db-server', 'next-service'])
      keys[name] = await newKey();
    const env = {
      BROKER_TABLE_NAME: TABLE,
      BROKER_CA_KEY_BOT: keys.bot as string,
      BROKER_CA_KEY_DB_CLIENT: keys['db-client'] as string,
      BROKER_CA_KEY_DB_SERVER: keys['db-server'] as string,
      BROKER_DB_CLIENT_CA_KEYS: JSON.stringify({ [EXAMPLE.service]: keys.service }),
      // What the stack sets for the CAs it created a next key for (nextCaKeys).
      BROKER_CA_NEXT_KEYS: JSON.stringify({
        'db-server': keys['next-db-server'],
        [SERVICE_CA]: keys['next-service'],
      }),
      BROKER_RESOURCES: `base64:${Buffer.from(exampleResourcesYaml()).toString('base64')}`,
    };
    const deps = { env, dynamodb: dynamo.client, kms, writeLine: () => undefined };
    sign = createSignServerHandler({
      env: { BROKER_TABLE_NAME: TABLE, BROKER_STACK_NAME: 'Broker' },
      dynamodb: dynamo.client,
      kms,
      writeLine: (line) => signAudit.push(JSON.parse(line) as Record<string, unknown>),
    });
    const api = createAuthorityHandler(deps);
    rotate = createRotationHandler(deps);
    bundles = async () => {
      const res = await api({
        v: 1,
        type: 'ca-bundles',
        requestId: randomUUID(),
        params: { service: EXAMPLE.service },
      });
      if (!res.ok) throw new Error(res.error.message);
      return res.result as { dbClient: string; dbServer: string };
    };
  });

  /** An authority bootstrapped on the same table and keys, as the authority Lambda is. */
  const authority = () =>
    bootstrapAuthority({
      store: new DynamoDbStateStore(dynamo.client, TABLE),
      kms,
      caKeyIds: {
        bot: keys.bot as string,
        'db-client': keys['db-client'] as string,
        'db-server': keys['db-server'] as string,
      },
      dbClientCaKeyIds: { [EXAMPLE.service]: keys.service as string },
      resourcesYaml: exampleResourcesYaml(),
      clusterName: 'broker',
      audit: new MemoryAuditLog(),
      clock: systemClock,
    });

  afterAll(async () => {
    await dynamo?.close();
  });

  const ok = async (event: RotateEvent) => {
    const res = await rotate(event);
    if (!res.ok) throw new Error(`${res.error.code}: ${res.error.message}`);
    return res.outcomes;
  };

  it('rotates the db-server CA to the stack-made key; the old key is scheduled for deletion only at standby', async () => {
    const before = splitPemBundle((await bundles()).dbServer);
    expect(before).toHaveLength(1);
    expect(certKey(before[0] as string)).toBe(await publicKeyOf(keys['db-server'] as string));

    const [init] = await ok({ type: 'db-server', phase: 'init', manual: true });
    expect(init?.keys.map((k) => k.kmsKeyId)).toEqual([keys['db-server'], keys['next-db-server']]);
    const overlap = splitPemBundle((await bundles()).dbServer);
    expect(overlap).toHaveLength(2);
    expect(certKey(overlap[1] as string)).toBe(await publicKeyOf(keys['next-db-server'] as string));

    const [switched] = await ok({ type: 'db-server', phase: 'update_clients', manual: true });
    expect(switched?.keys.map((k) => k.kmsKeyId)).toEqual([keys['next-db-server'], keys['db-server']]);
    await ok({ type: 'db-server', phase: 'update_servers', manual: true });
    expect(deletions()).toEqual([]);

    const [done] = await ok({ type: 'db-server', phase: 'standby', manual: true });
    expect(done?.retired).toMatch(new RegExp(`KMS key ${keys['db-server']} scheduled for deletion on `));
    expect(deletions()).toEqual([{ KeyId: keys['db-server'], PendingWindowInDays: 30 }]);
    expect(await keyState(keys['db-server'] as string)).toBe('PendingDeletion');
    expect(await keyState(keys['next-db-server'] as string)).toBe('Enabled');
    const after = splitPemBundle((await bundles()).dbServer);
    expect(after).toHaveLength(1);
    expect(certKey(after[0] as string)).toBe(await publicKeyOf(keys['next-db-server'] as string));
  });

  it('a rotation rolled back discards the new key: it is the one scheduled for deletion', async () => {
    double.requests.length = 0;
    await ok({ type: 'db-client', service: EXAMPLE.service, phase: 'init', manual: true });
    expect(splitPemBundle((await bundles()).dbClient)).toHaveLength(2);
    await ok({ type: 'db-client', service: EXAMPLE.service, phase: 'update_clients', manual: true });
    // The authority (another process on the same table) now signs the service's certificates with the new key.
    const { publicKeyPem } = await testKeyPair(1);
    const issued = await (await authority()).issueDatabaseCertificate(
      EXAMPLE.bot,
      EXAMPLE_ROUTE,
      publicKeyPem,
    );
    expect(
      new X509Certificate(issued.certificatePem).verify(
        createPublicKey(await publicKeyOf(keys['next-service'] as string)),
      ),
    ).toBe(true);
    await ok({ type: 'db-client', service: EXAMPLE.service, phase: 'rollback', manual: true });
    const rolledBack = await (await authority()).issueDatabaseCertificate(
      EXAMPLE.bot,
      EXAMPLE_ROUTE,
      publicKeyPem,
    );
    expect(
      new X509Certificate(rolledBack.certificatePem).verify(
        createPublicKey(await publicKeyOf(keys.service as string)),
      ),
    ).toBe(true);
    expect(deletions()).toEqual([]);
    await ok({ type: 'db-client', service: EXAMPLE.service, phase: 'standby', manual: true });
    expect(deletions()).toEqual([{ KeyId: keys['next-service'], PendingWindowInDays: 30 }]);
    expect(await keyState(keys['next-service'] as string)).toBe('PendingDeletion');
    expect(await keyState(keys.service as string)).toBe('Enabled');
    const after = splitPemBundle((await bundles()).dbClient);
    expect(certKey(after[0] as string)).toBe(await publicKeyOf(keys.service as string));
  });

  it('the server certificate action signs the public key of a certificate request, audited; it refuses a forged request, a bare public key, a private key or an unknown service', async () => {
    const { publicKeyPem, privateKeyPem } = await testKeyPair(2);
    const csrPem = createCsr(privateKeyPem, 'db.internal');
    const ok = await sign(
      { service: EXAMPLE.service, hosts: ['db.internal'], csrPem, ttl: '720h' },
      { awsRequestId: 'req-1' },
    );
    if (!ok.ok) throw new Error(ok.error.message);
    const cert = new X509Certificate(ok.certificatePem);
    // The db-server CA's signing key (after the first test's rotation: the stack's next key) signed it.
    expect(cert.verify(createPublicKey(await publicKeyOf(keys['next-db-server'] as string)))).toBe(true);
    expect(cert.subjectAltName).toBe('DNS:db.internal, DNS:localhost, IP Address:127.0.0.1');
    expect(certKey(ok.certificatePem)).toBe(
      createPublicKey(publicKeyPem).export({ type: 'spki', format: 'pem' }),
    );
    expect(ok.clientCaPem).toBe((await bundles()).dbClient);
    expect(JSON.stringify(ok)).not.toMatch(/PRIVATE KEY/);
    expect(signAudit.at(-1)).toMatchObject({
      event: 'server_cert.issue',
      outcome: 'success',
      kind: 'db-server',
      serial: ok.serial,
      requestId: 'req-1',
      stack: 'Broker',
    });

    // A request whose public key is another's than the key that signed it proves nothing: refused, audited.
    const other = await testKeyPair(3);
    const body = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const theirs = Buffer.from(other.publicKeyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const mine = Buffer.from(publicKeyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    theirs.copy(body, body.indexOf(mine));
    const swapped = await sign(
      {
        service: EXAMPLE.service,
        hosts: ['db.internal'],
        csrPem: `-----BEGIN CERTIFICATE REQUEST-----\n${body.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
      },
      { awsRequestId: 'req-swap' },
    );
    expect(swapped).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(!swapped.ok && swapped.error.message).toMatch(/no proof of possession/);
    expect(signAudit.at(-1)).toMatchObject({ outcome: 'denied', requestId: 'req-swap', stack: 'Broker' });

    const garbage = await sign({
      service: EXAMPLE.service,
      hosts: ['db.internal'],
      csrPem: '\u0000\u00ff junk',
    });
    expect(!garbage.ok && garbage.error.message).toMatch(/is not a PEM certificate request/);

    // What an older CLI sends: a bare public key, refused with what to send instead.
    const bare = await sign({ service: EXAMPLE.service, hosts: ['db.internal'], publicKeyPem } as never, {
      awsRequestId: 'req-bare',
    });
    expect(!bare.ok && bare.error.message).toMatch(
      /publicKeyPem: a bare public key is no longer taken: send csrPem, a PKCS#10 certificate request/,
    );
    expect(signAudit.at(-1)).toMatchObject({ outcome: 'denied', requestId: 'req-bare', kind: 'db-server' });

    const leaked = await sign({ service: EXAMPLE.service, hosts: ['db.internal'], csrPem: privateKeyPem });
    expect(leaked).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(!leaked.ok && leaked.error.message).toMatch(
      /csrPem: is a private key: send a certificate request signed by it/,
    );
    expect(JSON.stringify(leaked)).not.toContain(privateKeyPem.split('\n')[1] as string);
    expect(signAudit.map((l) => JSON.stringify(l)).join('\n')).not.toMatch(/PRIVATE KEY|MII/);

    const unknown = await sign({ service: 'nope', hosts: ['db.internal'], csrPem });
    expect(!unknown.ok && unknown.error.message).toMatch(
      /database service "nope" has no client CA in the authority's state/,
    );
    expect(signAudit.at(-1)).toMatchObject({
      event: 'server_cert.issue',
      outcome: 'denied',
      name: 'nope:db.internal',
    });
    const badHost = await sign({ service: EXAMPLE.service, hosts: ['db internal'], csrPem });
    expect(!badHost.ok && badHost.error.message).toMatch(
      /--host: "db internal" is not a host name or IP address/,
    );
  });

  it('refuses what would break trust, with the reason, and changes nothing', async () => {
    // The next key of db-server is now its current key: a new rotation needs a new key from the stack.
    const again = await rotate({ type: 'db-server', phase: 'init', manual: true });
    expect(again).toMatchObject({ ok: false, error: { code: 'rotation_phase' } });
    expect(!again.ok && again.error.message).toMatch(
      /the key it already has.*the stack must create a new one/,
    );
    const noKey = await rotate({ type: 'bot', phase: 'init', manual: true });
    expect(!noKey.ok && noKey.error.message).toMatch(
      /no next KMS key for the bot CA; deploy the stack with nextCaKeys: \['bot'\]/,
    );
    const auto = await rotate({ type: 'db-server' });
    expect(!auto.ok && auto.error.message).toMatch(/only the bot CA rotates automatically/);
    const bad = await rotate({ type: 'db-server', phase: 'sideways' } as unknown as RotateEvent);
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(splitPemBundle((await bundles()).dbServer)).toHaveLength(1);
  });
});
