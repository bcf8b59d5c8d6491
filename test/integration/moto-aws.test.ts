/**
 * KMS, DynamoDB and STS code paths against moto in server mode (test/support/aws/moto.ts), besides the
 * doubles: KMS `Sign` with `MessageType: DIGEST` (which moto does not implement: named below), the
 * StateStore contract on moto's DynamoDB (conditional writes), and the IAM join's verifier forwarding a
 * signed GetCallerIdentity to moto's STS with SigV4 checking on. Where moto and a double disagree, the test
 * names which one follows AWS's documentation.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import http from 'node:http';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetPublicKeyCommand, KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IamJoinRefusedError, verifyIamJoin } from '../../src/authority/iam-join.js';
import { signedGetCallerIdentity } from '../../src/bot/iam.js';
import { KMS_SIGNING_ALGORITHM, KmsSigner, KmsSignerError } from '../../src/pki/kms-signer.js';
import { createStateTable, DynamoDbStateStore } from '../../src/state/dynamodb-store.js';
import { casIncrement, stateStoreContract } from '../contracts/state-store.js';
import { createKmsKey, kmsTestAuthority } from '../support/authority.js';
import { KmsDouble } from '../support/aws/kms.js';
import { type MotoServer, requirePythonTool, startMoto } from '../support/aws/moto.js';
import { exampleResourcesYaml, INTERNAL_DB_URI } from '../support/fixtures.js';
import { removeTempDirs } from '../support/temp.js';

const motoServer = requirePythonTool('moto_server');
let moto: MotoServer;

beforeAll(async () => {
  if (motoServer) moto = await startMoto(motoServer);
});
afterAll(async () => {
  await moto?.close();
  await removeTempDirs();
});

/**
 * The KmsSigner asks KMS to sign a SHA-256 digest it computed (`MessageType: DIGEST`), for which the API
 * Reference says KMS "skips the hashing step". moto 5.2.5 does not implement DIGEST (its KMS backend says
 * so): it signs the 32 bytes as a message, hashing them again. The KMS double (test/support/aws/kms.ts)
 * follows AWS. The signer checks every signature against the CA's public key, so a KMS that hashed twice
 * never yields a certificate: on moto it refuses, naming the failed check.
 */
describe.skipIf(!motoServer)('KMS on moto: Sign with MessageType DIGEST', () => {
  let client: KMSClient;
  let double: KmsDouble;
  beforeAll(() => {
    client = new KMSClient({ ...moto.clientOptions(), maxAttempts: 1 });
    double = new KmsDouble();
  });
  afterAll(() => client?.destroy());

  /** Signs sha256(message) with MessageType DIGEST on `kms`; says over what the signature verifies. */
  async function signDigest(kms: KMSClient, message: Buffer) {
    const keyId = await createKmsKey(kms);
    const der = (await kms.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey as Uint8Array;
    const publicKey = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
    const digest = createHash('sha256').update(message).digest();
    const out = await kms.send(
      new SignCommand({
        KeyId: keyId,
        Message: digest,
        MessageType: 'DIGEST',
        SigningAlgorithm: KMS_SIGNING_ALGORITHM,
      }),
    );
    const signature = Buffer.from(out.Signature as Uint8Array);
    return {
      signsMessage: verify('sha256', message, publicKey, signature),
      signsDigestAgain: verify('sha256', digest, publicKey, signature),
    };
  }

  it('the double signs the digest as given (AWS documents this); moto hashes it again', async () => {
    const message = Buffer.from('tbsCertificate bytes');
    const doubleClient = double.client();
    try {
      expect(await signDigest(doubleClient, message)).toEqual({
        signsMessage: true,
        signsDigestAgain: false,
      });
    } finally {
      doubleClient.destroy();
    }
    expect(await signDigest(client, message)).toEqual({ signsMessage: false, signsDigestAgain: true });
  });

  it('an authority whose CA is a moto KMS key refuses to build a certificate from the wrong signature', async () => {
    const resources = exampleResourcesYaml({ db: { uri: INTERNAL_DB_URI }, bots: [] });
    const refused = await kmsTestAuthority({ client, resources }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KmsSignerError);
    expect((refused as Error).message).toMatch(/does not verify with the CA certificate's public key/);
  });

  it("moto's GetPublicKey and Sign (RAW) agree with the key: the KMS plumbing around DIGEST is sound", async () => {
    const keyId = await createKmsKey(client);
    const signer = await KmsSigner.create(client, keyId);
    const der = (await client.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey as Uint8Array;
    const fromKms = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
    expect(createPublicKey(signer.publicKeyPem).export({ format: 'der', type: 'spki' })).toEqual(
      fromKms.export({ format: 'der', type: 'spki' }),
    );
    const message = Buffer.from('raw message');
    const out = await client.send(
      new SignCommand({
        KeyId: keyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: KMS_SIGNING_ALGORITHM,
      }),
    );
    expect(verify('sha256', message, fromKms, Buffer.from(out.Signature as Uint8Array))).toBe(true);
  });
});

/**
 * moto serving one request at a time (see StartMotoOptions.oneRequestAtATime): threaded, moto lets two
 * concurrent conditional writes on one item both succeed (20 parallel increments landed as 18), where AWS
 * documents conditional writes as atomic and dynalite serialises them per item (state-dynamodb.test.ts).
 */
describe.skipIf(!motoServer)('DynamoDB on moto', () => {
  let serial: MotoServer;
  let client: DynamoDBClient;
  let tables = 0;
  beforeAll(async () => {
    serial = await startMoto(motoServer as string, { oneRequestAtATime: true });
    client = new DynamoDBClient(serial.clientOptions());
  });
  afterAll(async () => {
    client?.destroy();
    await serial?.close();
  });

  const openStore = async (): Promise<DynamoDbStateStore> => {
    const table = `moto-state-${++tables}`;
    const { timeToLiveEnabled } = await createStateTable(client, table);
    // moto has UpdateTimeToLive, which dynalite lacks: the table is made as the stack makes it.
    expect(timeToLiveEnabled).toBe(true);
    return new DynamoDbStateStore(client, table, {});
  };

  stateStoreContract('DynamoDbStateStore on moto', openStore);

  it('lands 20 parallel compare-and-swap increments exactly once each', async () => {
    const store = await openStore();
    await Promise.all(Array.from({ length: 20 }, () => casIncrement(store, 'counters/n')));
    expect(await store.get('counters/n')).toEqual({ key: 'counters/n', value: 20, version: 20 });
  });
});

/** One IAM Query API call to moto (no IAM client in this project's dependencies), signed with test keys. */
async function iamQuery(server: MotoServer, body: string): Promise<string> {
  const url = new URL(server.endpoint);
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body,
  });
  const signer = new SignatureV4({
    service: 'iam',
    region: 'us-east-1',
    credentials: server.clientOptions().credentials,
    sha256: Hash.bind(null, 'sha256'),
  });
  const signed = await signer.sign(request);
  const response = await fetch(`${server.endpoint}/`, {
    method: 'POST',
    headers: signed.headers,
    body,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`IAM ${body} answered ${response.status}: ${text}`);
  return text;
}

/**
 * moto's STS checks SigV4 once IAM authentication is on (INITIAL_NO_AUTH_ACTION_COUNT: the first two calls,
 * which create the IAM user and its access key, go unchecked). The signed request names the real STS host,
 * which the verifier checks; this fetch delivers it to moto with that Host header, as the network would.
 */
describe.skipIf(!motoServer)('STS GetCallerIdentity on moto (the iam join)', () => {
  let authMoto: MotoServer;
  let credentials: { accessKeyId: string; secretAccessKey: string };
  beforeAll(async () => {
    authMoto = await startMoto(motoServer as string, { authAfter: 2 });
    await iamQuery(authMoto, 'Action=CreateUser&UserName=example-bot&Version=2010-05-08');
    const key = await iamQuery(authMoto, 'Action=CreateAccessKey&UserName=example-bot&Version=2010-05-08');
    credentials = {
      accessKeyId: /<AccessKeyId>([^<]+)</.exec(key)?.[1] as string,
      secretAccessKey: /<SecretAccessKey>([^<]+)</.exec(key)?.[1] as string,
    };
    expect(credentials.accessKeyId).toMatch(/^AKIA/);
  });
  afterAll(() => authMoto?.close());

  /** A fetch that sends https://sts.<region>.amazonaws.com/ to moto with the original Host header. */
  const toMoto: typeof globalThis.fetch = async (input, init) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const target = new URL(authMoto.endpoint);
    const headers: Record<string, string> = { host: url.host };
    for (const [k, v] of new Headers(init?.headers)) headers[k] = v;
    const body = String(init?.body ?? '');
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          method: init?.method ?? 'GET',
          path: url.pathname,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 500 })),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };

  const clock = { now: () => new Date() };

  it('STS answers who signed: the IAM user behind the access key', async () => {
    const challenge = 'c'.repeat(43);
    const request = await signedGetCallerIdentity({ region: 'us-east-1', credentials, challenge, clock });
    const identity = await verifyIamJoin(request, challenge, { fetch: toMoto });
    expect(identity).toEqual({
      account: '123456789012',
      arn: 'arn:aws:iam::123456789012:user/example-bot',
      userId: expect.stringMatching(/\S/),
    });
  });

  it('a request signed with the wrong secret key is refused by STS (SignatureDoesNotMatch)', async () => {
    const challenge = 'd'.repeat(43);
    const request = await signedGetCallerIdentity({
      region: 'us-east-1',
      credentials: { ...credentials, secretAccessKey: `${credentials.secretAccessKey}x` },
      challenge,
      clock,
    });
    const refused = await verifyIamJoin(request, challenge, { fetch: toMoto }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(IamJoinRefusedError);
    expect(String((refused as Error).message)).toMatch(/SignatureDoesNotMatch/);
  });

  it('a signed challenge header changed after signing is refused by STS', async () => {
    const challenge = 'e'.repeat(43);
    const request = await signedGetCallerIdentity({ region: 'us-east-1', credentials, challenge, clock });
    const other = 'f'.repeat(43);
    const tampered = { ...request, headers: { ...request.headers, 'x-broker-challenge': other } };
    const refused = await verifyIamJoin(tampered, other, { fetch: toMoto }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(IamJoinRefusedError);
  });
});
