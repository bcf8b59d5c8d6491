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
import { systemClock } from '../../src/clock.js';
import { KMS_SIGNING_ALGORITHM, KmsSigner, KmsSignerError } from '../../src/pki/kms-signer.js';
import { createStateTable, DynamoDbStateStore } from '../../src/state/dynamodb-store.js';
import { casIncrement, stateStoreContract } from '../contracts/state-store.js';
import { createKmsKey } from '../support/authority.js';
import { KmsDouble } from '../support/aws/kms.js';
import { type MotoServer, requirePythonTool, startMoto } from '../support/aws/moto.js';
import { StsDouble } from '../support/aws/sts.js';

const motoServer = requirePythonTool('moto_server');
let moto: MotoServer;

beforeAll(async () => {
  if (motoServer) moto = await startMoto(motoServer);
});
afterAll(async () => {
  await moto?.close();
});

/**
 * The KmsSigner asks KMS to sign a SHA-256 digest it computed (`MessageType: DIGEST`), for which the API
 * Reference says KMS "skips the hashing step". moto 5.2.5 does not implement DIGEST (its KMS backend says
 * so): it signs the 32 bytes as a message, hashing them again. The KMS double (test/support/aws/kms.ts)
 * follows AWS. The signer checks every signature against the CA's public key, so a KMS that hashed twice
 * never yields a certificate: on moto it refuses, naming the failed check. (So an authority cannot run on
 * moto's KMS; its KMS paths run on the double, test/integration/kms-signer-openssl.test.ts.)
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

  it("GetPublicKey: the API Reference returns KeySpec (CustomerMasterKeySpec is deprecated in its favour); the double does, moto 5.2.5 only the deprecated field, so the signer refuses moto's key", async () => {
    const answer = async (kms: KMSClient) => {
      const out = await kms.send(new GetPublicKeyCommand({ KeyId: await createKmsKey(kms) }));
      return { KeySpec: out.KeySpec, CustomerMasterKeySpec: out.CustomerMasterKeySpec };
    };
    const doubleClient = double.client();
    try {
      expect((await answer(doubleClient)).KeySpec).toBe('RSA_2048');
    } finally {
      doubleClient.destroy();
    }
    expect(await answer(client)).toEqual({ KeySpec: undefined, CustomerMasterKeySpec: 'RSA_2048' });
    const refused = await KmsSigner.create(client, await createKmsKey(client)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KmsSignerError);
    expect((refused as Error).message).toMatch(/KeySpec unknown/);
  });

  it('signing through moto with the public key known (from the CA certificate, as the authority does): the signer refuses the twice-hashed signature', async () => {
    const keyId = await createKmsKey(client);
    const der = (await client.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey as Uint8Array;
    const publicKeyPem = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' })
      .export({ format: 'pem', type: 'spki' })
      .toString();
    const signer = KmsSigner.withPublicKey(client, keyId, publicKeyPem);
    const refused = await signer.sign(Buffer.from('tbsCertificate bytes')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KmsSignerError);
    expect((refused as Error).message).toMatch(/does not verify with the CA certificate's public key/);
  });

  it("moto's Sign with MessageType RAW verifies with the key GetPublicKey returns: only DIGEST is missing", async () => {
    const keyId = await createKmsKey(client);
    const der = (await client.send(new GetPublicKeyCommand({ KeyId: keyId }))).PublicKey as Uint8Array;
    const publicKey = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
    const message = Buffer.from('raw message');
    const out = await client.send(
      new SignCommand({
        KeyId: keyId,
        Message: message,
        MessageType: 'RAW',
        SigningAlgorithm: KMS_SIGNING_ALGORITHM,
      }),
    );
    expect(verify('sha256', message, publicKey, Buffer.from(out.Signature as Uint8Array))).toBe(true);
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

  /**
   * The same signed requests to moto and to the STS double (registered with the same key). AWS's Signature
   * Version 4 documentation says a signed request must reach AWS within 15 minutes of its X-Amz-Date, else
   * it is refused (SignatureDoesNotMatch, "Signature expired"): the double follows it; moto 5.2.5 accepts a
   * 20-minute-old signature. (The authority does not lean on this limit alone: its challenges expire
   * after 5 minutes.)
   */
  it('moto and the STS double: the same answers to good and bad signatures; only the double refuses a stale one', async () => {
    const double = new StsDouble({
      clock: systemClock,
      principals: [
        {
          ...credentials,
          account: '123456789012',
          arn: 'arn:aws:iam::123456789012:user/example-bot',
          userId: 'AIDAEXAMPLEBOT',
        },
      ],
    });
    const outcome = async (
      fetch: typeof globalThis.fetch,
      input: { secretAccessKey: string; signedAt: Date },
    ): Promise<string> => {
      const challenge = 'g'.repeat(43);
      const request = await signedGetCallerIdentity({
        region: 'eu-west-1',
        credentials: { ...credentials, secretAccessKey: input.secretAccessKey },
        challenge,
        clock: { now: () => input.signedAt },
      });
      return verifyIamJoin(request, challenge, { fetch }).then(
        (identity) => identity.arn,
        (err: Error) =>
          /Signature expired/.test(err.message)
            ? 'SignatureDoesNotMatch: Signature expired'
            : (/SignatureDoesNotMatch/.exec(err.message)?.[0] ?? err.message),
      );
    };
    const cases = {
      good: { secretAccessKey: credentials.secretAccessKey, signedAt: new Date() },
      wrongKey: { secretAccessKey: `${credentials.secretAccessKey}x`, signedAt: new Date() },
      stale: { secretAccessKey: credentials.secretAccessKey, signedAt: new Date(Date.now() - 20 * 60_000) },
    };
    const answers: Record<string, { moto: string; double: string }> = {};
    for (const [name, input] of Object.entries(cases))
      answers[name] = { moto: await outcome(toMoto, input), double: await outcome(double.fetch, input) };
    expect(answers).toEqual({
      good: {
        moto: 'arn:aws:iam::123456789012:user/example-bot',
        double: 'arn:aws:iam::123456789012:user/example-bot',
      },
      wrongKey: { moto: 'SignatureDoesNotMatch', double: 'SignatureDoesNotMatch' },
      stale: {
        moto: 'arn:aws:iam::123456789012:user/example-bot',
        double: expect.stringMatching(/expired/i),
      },
    });
  });
});
