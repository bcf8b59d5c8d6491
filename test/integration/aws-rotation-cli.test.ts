/**
 * The AWS mode of the operator commands, in process, through the real `@aws-sdk/client-lambda` against the
 * Lambda double on loopback (AWS_ENDPOINT_URL_LAMBDA, as any SDK honours it), whose functions are the
 * stack's rotation and server certificate actions on dynalite and the KMS double:
 *
 * - `broker auth rotate --function` walks the db-server CA and a service's client CA through their phases
 *   (and a rollback), printing each CA moved with its keys and the next steps in AWS-mode words;
 * - `broker auth sign --format=db --function` sends a certificate request signed by the key it made, never
 *   a public key alone or a private key, and writes a certificate for that key;
 * - each way an Invoke fails says what to do: a function error (200 with X-Amz-Function-Error), a refusal
 *   in the answer, a function that does not exist (404), access denied (403), no credentials at all.
 */
import { createPrivateKey, type KeyObject, randomUUID, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuthorityHandler } from '../../functions/authority.js';
import { createRotationHandler } from '../../functions/authority-rotate.js';
import { createSignServerHandler } from '../../functions/authority-sign.js';
import { buildProgram } from '../../src/cli/main.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import { createStateTable } from '../../src/state/dynamodb-store.js';
import { type LocalDynamoDb, startDynalite } from '../support/aws/dynalite.js';
import { TEST_REGION } from '../support/aws/http-double.js';
import { KmsDouble } from '../support/aws/kms.js';
import { LambdaDouble } from '../support/aws/lambda.js';
import { EXAMPLE, exampleResourcesYaml } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const TABLE = 'broker-rotate-cli';
const FN = { authority: 'broker-authority', rotate: 'broker-rotate', sign: 'broker-sign' } as const;
const SERVICE = EXAMPLE.service;

let dynamo: LocalDynamoDb;
let lambda: LambdaDouble;
let kms: KMSClient;
let dir: string;
const keys: Record<string, string> = {};
const auditLines: string[] = [];

/** `broker ARGS...` in process: the lines it printed, or the error it failed with. */
async function broker(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = buildProgram((l) => lines.push(l));
  program.exitOverride();
  for (const cmd of program.commands) cmd.exitOverride();
  await program.parseAsync(args, { from: 'user' });
  return lines;
}
const rotate = (...args: string[]) =>
  broker('auth', 'rotate', '--function', FN.rotate, '--region', TEST_REGION, ...args);

async function caBundles(): Promise<{ dbClient: string; dbServer: string }> {
  const out = (await createAuthorityHandler(deps())({
    v: 1,
    type: 'ca-bundles',
    requestId: randomUUID(),
    params: { service: SERVICE },
  })) as { ok: boolean; result: { dbClient: string; dbServer: string } };
  if (!out.ok) throw new Error('ca-bundles failed');
  return out.result;
}

function deps() {
  return {
    env: {
      BROKER_TABLE_NAME: TABLE,
      BROKER_CA_KEY_BOT: keys.bot as string,
      BROKER_CA_KEY_DB_CLIENT: keys['db-client'] as string,
      BROKER_CA_KEY_DB_SERVER: keys['db-server'] as string,
      BROKER_DB_CLIENT_CA_KEYS: JSON.stringify({ [SERVICE]: keys.service }),
      BROKER_CA_NEXT_KEYS: JSON.stringify({
        'db-server': keys['next-db-server'],
        [`db-client/${SERVICE}`]: keys['next-service'],
      }),
      BROKER_RESOURCES: `base64:${Buffer.from(exampleResourcesYaml()).toString('base64')}`,
    },
    dynamodb: dynamo.client,
    kms,
    writeLine: (line: string) => auditLines.push(line),
  };
}

beforeAll(async () => {
  dir = await makeTempDir('broker-aws-rotate-cli-');
  dynamo = await startDynalite();
  const kmsDouble = new KmsDouble();
  kms = kmsDouble.client();
  await createStateTable(dynamo.client, TABLE);
  for (const name of ['bot', 'db-client', 'db-server', 'service', 'next-db-server', 'next-service'])
    keys[name] = (await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' })))
      .KeyMetadata?.KeyId as string;
  lambda = await LambdaDouble.start();
  const authority = createAuthorityHandler(deps());
  const rotation = createRotationHandler(deps());
  const sign = createSignServerHandler({
    ...deps(),
    env: { BROKER_TABLE_NAME: TABLE, BROKER_STACK_NAME: 'Broker' },
  });
  lambda.register(FN.authority, (event) => authority(event));
  lambda.register(FN.rotate, (event) => rotation(event));
  lambda.register(FN.sign, (event, context) => sign(event, context));
  // The authority's first start creates the CA records the two actions read.
  await caBundles();
  vi.stubEnv('AWS_ENDPOINT_URL_LAMBDA', lambda.endpoint);
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
  vi.stubEnv('AWS_SESSION_TOKEN', undefined);
  vi.stubEnv('AWS_PROFILE', undefined);
}, 60_000);

afterAll(async () => {
  vi.unstubAllEnvs();
  await lambda?.close();
  await dynamo?.close();
  await removeTempDirs();
});

describe('broker auth rotate --function (AWS mode)', () => {
  it('walks the db-server CA through its phases, printing the keys of each and the AWS-mode steps', async () => {
    const before = splitPemBundle((await caBundles()).dbServer);
    expect(before).toHaveLength(1);

    const init = await rotate('--type', 'db-server', '--manual');
    expect(init[0]).toMatch(
      new RegExp(
        `^db-server CA: standby -> init; keys: sha256:[0-9a-f]{64} \\(KMS key ${keys['db-server']}\\), sha256:[0-9a-f]{64} \\(KMS key ${keys['next-db-server']}\\)$`,
      ),
    );
    expect(init.join('\n')).toMatch(/teleport-database-ca\.crt.*gain the new key/);
    expect(init.join('\n')).toMatch(/aws lambda invoke --function-name "\$BOT" --invocation-type Event/);
    expect(init.at(-1)).toBe(
      `Then: broker auth rotate --function ${FN.rotate} --region ${TEST_REGION} --type db-server --manual --phase update_clients`,
    );
    // The invocation carried exactly the rotation action's event.
    expect(JSON.parse(lambda.invocationsOf(FN.rotate).at(-1)?.payload as string)).toEqual({
      type: 'db-server',
      phase: 'init',
      manual: true,
    });
    expect(splitPemBundle((await caBundles()).dbServer)).toHaveLength(2);

    await rotate('--type', 'db-server', '--manual', '--phase', 'update_clients');
    const servers = (await rotate('--type', 'db-server', '--manual', '--phase', 'update_servers')).join('\n');
    expect(servers).toMatch(
      /broker auth sign --format=db --function "\$SIGN" --service SERVICE --host HOST --out PREFIX --overwrite/,
    );
    // Re-sign the database as the step says: the certificate comes from the new key.
    const prefix = path.join(dir, 'server');
    const signed = await broker(
      'auth',
      'sign',
      '--format=db',
      '--service',
      SERVICE,
      '--host',
      'db.internal',
      '--out',
      prefix,
      '--function',
      FN.sign,
      '--region',
      TEST_REGION,
    );
    expect(signed[0]).toMatch(new RegExp(`Database server credentials for service "${SERVICE}" written`));
    const cert = new X509Certificate(await readFile(`${prefix}.crt`, 'utf8'));
    const [oldCa, newCa] = [
      before[0],
      splitPemBundle((await caBundles()).dbServer).find((c) => c !== before[0]),
    ].map((pem) => new X509Certificate(pem as string));
    expect(cert.verify(newCa?.publicKey as KeyObject)).toBe(true);
    expect(cert.verify(oldCa?.publicKey as KeyObject)).toBe(false);
    expect(cert.checkPrivateKey(createPrivateKey(await readFile(`${prefix}.key`, 'utf8')))).toBe(true);
    const payload = lambda.invocationsOf(FN.sign).at(-1)?.payload as string;
    expect(Object.keys(JSON.parse(payload)).sort()).toEqual(['csrPem', 'hosts', 'service', 'ttl']);
    expect(payload).toContain('BEGIN CERTIFICATE REQUEST');
    expect(payload).not.toMatch(/PUBLIC KEY|PRIVATE KEY/);

    const standby = await rotate('--type', 'db-server', '--manual', '--phase', 'standby');
    expect(standby[0]).toMatch(
      /^db-server CA: update_servers -> standby; the key that left it: .+; keys: sha256:/,
    );
    expect(standby.join('\n')).toMatch(/KMS key that left is scheduled for deletion/);
    expect(splitPemBundle((await caBundles()).dbServer)).toHaveLength(1);
    // Again: the action refuses, and the CLI says why.
    await expect(rotate('--type', 'db-server', '--manual', '--phase', 'standby')).rejects.toThrow(
      `${FN.rotate} refused: the db-server CA is not being rotated, so it cannot move to standby; start one with --phase init`,
    );
  });

  it("rolls a service's client CA back from update_clients, with the service in every next step", async () => {
    const before = (await caBundles()).dbClient;
    const init = await rotate('--type', 'db-client', '--service', SERVICE, '--manual', '--phase', 'init');
    expect(init[0]).toMatch(new RegExp(`^db-client/${SERVICE} CA: standby -> init; keys: `));
    expect(init.join('\n')).toMatch(
      new RegExp(
        `"params":\\{"service":"${SERVICE}"\\}.*jq -r \\.result\\.dbClient ca\\.json > ${SERVICE}-client-ca\\.pem`,
      ),
    );
    expect(init.join('\n')).toContain(
      `(or: broker auth sign --format=db --function "$SIGN" --service ${SERVICE} --host HOST --out PREFIX --overwrite, PREFIX.cas)`,
    );
    expect(init.at(-1)).toBe(
      `Then: broker auth rotate --function ${FN.rotate} --region ${TEST_REGION} --type db-client --service ${SERVICE} --manual --phase update_clients`,
    );
    await rotate('--type', 'db-client', '--service', SERVICE, '--manual', '--phase', 'update_clients');
    const back = await rotate('--type', 'db-client', '--service', SERVICE, '--manual', '--phase', 'rollback');
    expect(back[0]).toMatch(new RegExp(`^db-client/${SERVICE} CA: update_clients -> rollback; keys: `));
    await rotate('--type', 'db-client', '--service', SERVICE, '--manual', '--phase', 'standby');
    expect((await caBundles()).dbClient).toBe(before);
  });

  it("prints the action's refusal with its reason, and bad flags before any call", async () => {
    const calls = lambda.invocationsOf(FN.rotate).length;
    await expect(rotate('--type', 'db-server')).rejects.toThrow(
      new RegExp(`^${FN.rotate} refused: only the bot CA rotates automatically`),
    );
    await expect(rotate('--type', 'bot', '--manual')).rejects.toThrow(
      /refused: there is no next KMS key for the bot CA; deploy the stack with nextCaKeys: \['bot'\]/,
    );
    expect(lambda.invocationsOf(FN.rotate).length).toBe(calls + 2);
    await expect(rotate('--type', 'db-server', '--manual', '--phase', 'sideways')).rejects.toThrow(
      /--phase must be one of standby, init, update_clients, update_servers, rollback/,
    );
    await expect(broker('auth', 'rotate', '--type', 'db-server', '--region', TEST_REGION)).rejects.toThrow(
      /--region goes with --function \(AWS mode\) only/,
    );
    expect(lambda.invocationsOf(FN.rotate).length).toBe(calls + 2);
  });

  it('says what to do for a function error, a missing function, access denied and no credentials', async () => {
    // The handler threw (KMS refused it, say): Lambda answers 200 with X-Amz-Function-Error.
    lambda.fail(FN.rotate, {
      errorType: 'KMSInvalidStateException',
      errorMessage: 'arn:aws:kms:us-east-1:123456789012:key/k is pending deletion.',
    });
    await expect(rotate('--type', 'db-server', '--manual')).rejects.toThrow(
      `the rotation function ${FN.rotate} failed (Unhandled): KMSInvalidStateException: arn:aws:kms:us-east-1:123456789012:key/k is pending deletion.; see its CloudWatch logs (log group /aws/lambda/${FN.rotate})`,
    );
    vi.stubEnv('AWS_REGION', undefined);
    vi.stubEnv('AWS_DEFAULT_REGION', undefined);
    await expect(
      broker('auth', 'rotate', '--function', FN.rotate, '--type', 'db-server', '--manual'),
    ).rejects.toThrow(
      /^cannot invoke the rotation function broker-rotate: Error: Region is missing; pass --region or set AWS_REGION$/,
    );
    await expect(
      rotate('--function', 'broker-rotate-missing', '--type', 'db-server', '--manual'),
    ).rejects.toThrow(
      /^cannot invoke the rotation function broker-rotate-missing: ResourceNotFoundException: Function not found: .*; deploy the stack with -c nextCaKeys=/,
    );
    lambda.fail(FN.rotate, {
      kind: 'service',
      type: 'AccessDeniedException',
      status: 403,
      message: `User: arn:aws:sts::123456789012:assumed-role/dev/x is not authorized to perform: lambda:InvokeFunction on resource: ${FN.rotate}`,
    });
    await expect(rotate('--type', 'db-server', '--manual')).rejects.toThrow(
      /AccessDeniedException: User: .* is not authorized to perform: lambda:InvokeFunction .*; your role needs lambda:InvokeFunction on it \(CaRotation\.grantRotate\)/,
    );
    // No credentials anywhere the SDK looks (environment, files, container or instance metadata).
    vi.stubEnv('AWS_ACCESS_KEY_ID', undefined);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', undefined);
    vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', path.join(dir, 'no-credentials'));
    vi.stubEnv('AWS_CONFIG_FILE', path.join(dir, 'no-config'));
    vi.stubEnv('AWS_EC2_METADATA_DISABLED', 'true');
    vi.stubEnv('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', undefined);
    vi.stubEnv('AWS_CONTAINER_CREDENTIALS_FULL_URI', undefined);
    vi.stubEnv('AWS_WEB_IDENTITY_TOKEN_FILE', undefined);
    try {
      const calls = lambda.invocations.length;
      await expect(rotate('--type', 'db-server', '--manual')).rejects.toThrow(
        /cannot invoke the rotation function broker-rotate: CredentialsProviderError: .*the AWS SDK found no credentials: set AWS_PROFILE/,
      );
      expect(lambda.invocations.length).toBe(calls);
    } finally {
      vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
    }
    // The CA is where the first test left it: no failed call moved it.
    expect(splitPemBundle((await caBundles()).dbServer)).toHaveLength(1);
  });
});
