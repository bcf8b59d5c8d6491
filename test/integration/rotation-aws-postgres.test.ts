/**
 * CA rotation in AWS mode, end to end, with a real PostgreSQL server trusting the broker's CAs: the state in
 * DynamoDB, the CA keys in KMS (the stack's next keys included), the bot's bundle in Secrets Manager. The
 * authority, the bot, the rotation action and the server certificate action run as their Lambda handlers
 * behind the Lambda double; the operator's steps are exactly docs/aws.md's: `aws lambda invoke` of the
 * rotation action per phase, the service's client CA from the authority's `ca-bundles`, and
 * `broker auth sign --format=db --function` (the CLI, in process, through the real Lambda client) for the
 * server certificate, whose key is made on the operator's side. The tunnel proxy reads the bundle from
 * Secrets Manager. While the db-client CA and then the db-server CA go through every phase (and a rollback),
 * a client opens a new connection every 100 ms and keeps one long-lived connection, through the tunnel and
 * directly with verify-full (test/support/rotation-proof.ts): none fails, none drops, and the key that left
 * is PendingDeletion in KMS afterwards. The bot CA goes through every phase (and a rollback) with the bot's
 * scheduled runs renewing its identity between phases and a connection through the proxy after each.
 *
 * The same proof runs twice: on this project's doubles (dynalite, the Secrets Manager double, the KMS
 * double), and on moto's server for DynamoDB and Secrets Manager with the KMS double for KMS: moto 5.2.5's
 * KMS hashes a `MessageType: DIGEST` message again (a departure from the API Reference pinned in
 * moto-aws.test.ts), so no KMS-signed certificate it makes verifies.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateKeyCommand, DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorityHandler } from '../../functions/authority.js';
import { createRotationHandler, type RotateEvent } from '../../functions/authority-rotate.js';
import { createSignServerHandler } from '../../functions/authority-sign.js';
import { type BotRunSummary, createBotHandler } from '../../functions/bot.js';
import { verifyIamJoin } from '../../src/authority/iam-join.js';
import { buildProgram } from '../../src/cli/main.js';
import { systemClock } from '../../src/clock.js';
import { type CredentialBundle, parseBundle } from '../../src/credentials/bundle.js';
import { freePort } from '../../src/devdb/postgres.js';
import type { RotationPhase } from '../../src/pki/ca-rotation.js';
import { SecretsManagerBundleSource } from '../../src/proxy/sources/secretsmanager.js';
import { createStateTable } from '../../src/state/dynamodb-store.js';
import { type LocalDynamoDb, startDynalite } from '../support/aws/dynalite.js';
import {
  botLambdaEnv,
  EXAMPLE_BOT_PRINCIPAL,
  iamExampleResources,
  secretsManagerBotConfig,
} from '../support/aws/example-bot.js';
import { TEST_CREDENTIALS, TEST_REGION } from '../support/aws/http-double.js';
import { KmsDouble } from '../support/aws/kms.js';
import { LambdaDouble } from '../support/aws/lambda.js';
import { type MotoServer, requirePythonTool, startMoto } from '../support/aws/moto.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { StsDouble } from '../support/aws/sts.js';
import { requirePostgres } from '../support/postgres.js';
import { PostgresEngine } from '../support/rotation-postgres.js';
import {
  type ConnectionLoad,
  type DatabaseTls,
  expectNoDisruption,
  FULL_ROTATION,
  PHASE_MS,
  ROLLED_BACK,
  RotationWorld,
  signers,
  underLoad,
} from '../support/rotation-proof.js';
import { tempDir } from '../support/temp.js';

const SERVICE = 'example-server';
const FN = { authority: 'broker-authority', rotate: 'broker-rotate', sign: 'broker-sign' } as const;

/** Where the state and the bundles live: the project's doubles, or moto. KMS is always the KMS double. */
interface Backend {
  dynamodb: DynamoDBClient;
  secretsManager: SecretsManagerClient;
}

/** The AWS services every world shares: KMS, STS and Lambda doubles (Lambda over loopback, for the CLI). */
interface Shared {
  kms: KmsDouble;
  sts: StsDouble;
  lambda: LambdaDouble;
  lambdaClient: LambdaClient;
  auditLines: string[];
}

/**
 * The proof's world in AWS mode: what the operator, the bot's schedule and the proxy see is the same as in
 * RotationWorld (ConnectionLoad drives it unchanged), but every step goes through the Lambda handlers.
 */
class AwsRotationWorld extends RotationWorld {
  readonly table = `broker-${randomUUID().slice(0, 8)}`;
  readonly secret = `broker/rotation/${randomUUID().slice(0, 8)}`;
  readonly keys: Record<string, string> = {};
  private runBot: (() => Promise<BotRunSummary>) | undefined;
  protected override readonly proxyLoadMs = 10_000;
  readonly pg: PostgresEngine;

  constructor(
    readonly shared: Shared,
    readonly backend: Backend,
    workDir: string,
    pgPort: number,
  ) {
    const engine = new PostgresEngine(pgPort);
    super(engine, workDir);
    this.pg = engine;
    this.port = pgPort;
  }

  private get kms(): KMSClient {
    return this.shared.kms.client();
  }

  override async start(): Promise<void> {
    const { backend, shared } = this;
    await createStateTable(backend.dynamodb, this.table);
    for (const name of [
      'bot',
      'db-client',
      'db-server',
      'service',
      'next-db-server',
      'next-service',
      'next-bot',
    ])
      this.keys[name] = (
        await this.kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }))
      ).KeyMetadata?.KeyId as string;
    // The environment the stack gives the authority and its two operator actions (nextCaKeys: db-server, the
    // service's client CA and the bot CA).
    const env = {
      BROKER_TABLE_NAME: this.table,
      BROKER_CA_KEY_BOT: this.keys.bot as string,
      BROKER_CA_KEY_DB_CLIENT: this.keys['db-client'] as string,
      BROKER_CA_KEY_DB_SERVER: this.keys['db-server'] as string,
      BROKER_DB_CLIENT_CA_KEYS: JSON.stringify({ [SERVICE]: this.keys.service }),
      BROKER_CA_NEXT_KEYS: JSON.stringify({
        'db-server': this.keys['next-db-server'],
        [`db-client/${SERVICE}`]: this.keys['next-service'],
        bot: this.keys['next-bot'],
      }),
      BROKER_RESOURCES: `base64:${Buffer.from(iamExampleResources(this.port)).toString('base64')}`,
      BROKER_STACK_NAME: 'Broker',
    };
    const deps = {
      env,
      dynamodb: backend.dynamodb,
      kms: this.kms,
      writeLine: (line: string) => shared.auditLines.push(line),
    };
    const sts = shared.sts;
    const authority = createAuthorityHandler({
      ...deps,
      iamVerifier: (req, challenge) => verifyIamJoin(req, challenge, { fetch: sts.fetch }),
    });
    const rotate = createRotationHandler(deps);
    const sign = createSignServerHandler({
      ...deps,
      env: { BROKER_TABLE_NAME: this.table, BROKER_STACK_NAME: 'Broker' },
    });
    shared.lambda.register(FN.authority, (event) => authority(event));
    shared.lambda.register(FN.rotate, (event) => rotate(event));
    shared.lambda.register(FN.sign, (event, context) => sign(event, context));
    await backend.secretsManager.send(new CreateSecretCommand({ Name: this.secret }));
    this.runBot = createBotHandler({
      env: botLambdaEnv({
        config: secretsManagerBotConfig(FN.authority, this.secret),
        authorityFunction: FN.authority,
        principal: EXAMPLE_BOT_PRINCIPAL,
        region: TEST_REGION,
      }),
      lambda: shared.lambdaClient,
      secretsManager: backend.secretsManager,
      writeLine: () => undefined,
    });

    // The authority's first start makes the CA certificates; then the database gets its server certificate
    // from the KMS-held db-server CA, as an operator does it.
    await this.invoke(FN.authority, { v: 1, type: 'ca-bundles', requestId: randomUUID(), params: {} });
    this.tls = await this.signServer();
    await this.pg.start(path.join(this.workDir, 'db'), this.tls);
    await this.renew();
    await this.startTunnelProxyOn(
      new SecretsManagerBundleSource({ client: backend.secretsManager, secretId: this.secret }),
    );
  }

  /** `aws lambda invoke`: the function's answer, or the function error as a thrown error. */
  async invoke<T = Record<string, unknown>>(fn: string, payload: unknown): Promise<T> {
    const out = await this.shared.lambdaClient.send(
      new InvokeCommand({ FunctionName: fn, Payload: Buffer.from(JSON.stringify(payload)) }),
    );
    const text = Buffer.from(out.Payload ?? new Uint8Array()).toString('utf8');
    if (out.FunctionError) throw new Error(`${fn} failed: ${text}`);
    return JSON.parse(text) as T;
  }

  /** The rotation action, one phase. */
  async rotate(event: RotateEvent): Promise<void> {
    const res = await this.invoke<{ ok: boolean; error?: { message: string } }>(FN.rotate, event);
    if (!res.ok) throw new Error(`rotation refused: ${res.error?.message}`);
  }

  /** The authority's `ca-bundles` for the service: its client CA (what the database trusts) and the server CA. */
  async caBundles(): Promise<{ dbClient: string; dbServer: string }> {
    const res = await this.invoke<{ ok: boolean; result: { dbClient: string; dbServer: string } }>(
      FN.authority,
      { v: 1, type: 'ca-bundles', requestId: randomUUID(), params: { service: SERVICE } },
    );
    if (!res.ok) throw new Error('ca-bundles failed');
    return res.result;
  }

  /** `broker auth sign --format=db --function`, in process: the files it wrote. */
  async signServer(): Promise<DatabaseTls> {
    const prefix = path.join(this.workDir, 'server');
    const lines: string[] = [];
    const program = buildProgram((l) => lines.push(l));
    for (const cmd of program.commands) cmd.exitOverride();
    await program.parseAsync(
      ['auth', 'sign', '--format=db', '--service', SERVICE, '--host', 'localhost', '--out', prefix].concat([
        '--overwrite',
        '--function',
        FN.sign,
        '--region',
        TEST_REGION,
      ]),
      { from: 'user' },
    );
    expect(lines[0]).toMatch(new RegExp(`Database server credentials for service "${SERVICE}" written`));
    return {
      serverCertPem: await readFile(`${prefix}.crt`, 'utf8'),
      serverKeyPem: await readFile(`${prefix}.key`, 'utf8'),
      clientCaPem: await readFile(`${prefix}.cas`, 'utf8'),
    };
  }

  /** The bot's schedule: one run of the bot Lambda; returns the output's serial. */
  override async renew(): Promise<string> {
    const summary = await (this.runBot as () => Promise<BotRunSummary>)();
    const [result] = summary.outputs;
    if (!result?.ok) throw new Error(`the bot's run failed: ${result?.error}`);
    return result.serial as string;
  }

  override async output(): Promise<CredentialBundle> {
    // AWSCURRENT by name, as the client module reads it: moto 5.2.5 answered a GetSecretValue without a stage
    // with an older version than AWSCURRENT here (the bot promotes with UpdateSecretVersionStage), where the
    // API Reference says it defaults to AWSCURRENT (the Secrets Manager double follows the reference).
    const got = await this.backend.secretsManager.send(
      new GetSecretValueCommand({ SecretId: this.secret, VersionStage: 'AWSCURRENT' }),
    );
    return parseBundle(got.SecretString ?? '', this.secret);
  }

  async keyState(name: string): Promise<string | undefined> {
    return (await this.kms.send(new DescribeKeyCommand({ KeyId: this.keys[name] }))).KeyMetadata?.KeyState;
  }
}

/**
 * Moves `type`'s CA through `phases` doing docs/aws.md's operator steps at each, the bot's schedule running
 * and the proxy re-reading the bundle by itself, then holds the phase for PHASE_MS under load.
 */
async function rotateUnderLoad(
  world: AwsRotationWorld,
  load: ConnectionLoad,
  type: 'db-client' | 'db-server',
  phases: readonly RotationPhase[],
): Promise<void> {
  let serverSignedByNewKey = false;
  for (const phase of phases) {
    await world.rotate({ type, ...(type === 'db-client' ? { service: SERVICE } : {}), phase, manual: true });
    load.phase = `${type} ${phase}`;
    const tls = world.tls as DatabaseTls;
    if (type === 'db-client' && (phase === 'init' || phase === 'standby')) {
      tls.clientCaPem = (await world.caBundles()).dbClient;
      await world.engine.install(tls);
    }
    await world.proxyHas(await world.renew());
    if (
      type === 'db-server' &&
      (phase === 'update_servers' || (phase === 'rollback' && serverSignedByNewKey))
    ) {
      const signed = await world.signServer();
      tls.serverCertPem = signed.serverCertPem;
      tls.serverKeyPem = signed.serverKeyPem;
      await world.engine.install(tls);
      serverSignedByNewKey = phase === 'update_servers';
    }
    await sleep(PHASE_MS);
  }
}

interface AwsProof {
  before: { dbClient: string; dbServer: string };
  after: { dbClient: string; dbServer: string };
  finalOutput: CredentialBundle;
  finalServerCertPem: string;
}

async function runAwsProof(world: AwsRotationWorld, phases: readonly RotationPhase[]): Promise<AwsProof> {
  const before = await world.caBundles();
  const load = await underLoad(world, `aws ${phases.join(',')}`, async (l) => {
    await rotateUnderLoad(world, l, 'db-client', phases);
    await rotateUnderLoad(world, l, 'db-server', phases);
  });
  expectNoDisruption(load);
  return {
    before,
    after: await world.caBundles(),
    finalOutput: await world.output(),
    finalServerCertPem: (world.tls as DatabaseTls).serverCertPem,
  };
}

/** The server certificate action saw public keys only, and audited each certificate it signed. */
function expectNoPrivateKeyThroughLambda(shared: Shared): void {
  const signs = shared.lambda.invocations.filter((i) => i.functionName === FN.sign);
  expect(signs.length).toBeGreaterThanOrEqual(2);
  for (const s of signs) {
    expect(s.outcome).toBe('Success');
    expect(s.payload).toContain('BEGIN CERTIFICATE REQUEST');
    expect(s.payload).not.toMatch(/PRIVATE KEY/);
  }
  const issued = shared.auditLines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.event === 'server_cert.issue');
  expect(issued.length).toBeGreaterThanOrEqual(signs.length);
  for (const e of issued) expect(e).toMatchObject({ outcome: 'success', kind: 'db-server', stack: 'Broker' });
  expect(shared.auditLines.join('\n')).not.toMatch(/PRIVATE KEY/);
}

/** The proof's two runs on one backend. */
function awsRotationSuite(backendOf: () => Backend, options: { cliRefusals?: boolean } = {}): void {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let shared: Shared;
  const worlds: AwsRotationWorld[] = [];
  const savedEnv: Record<string, string | undefined> = {};
  // The CLI's Lambda client reads its endpoint, region and credentials as the AWS SDK does: from the environment.
  const cliEnv = () => ({
    AWS_ENDPOINT_URL_LAMBDA: shared.lambda.endpoint,
    AWS_REGION: TEST_REGION,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
  });

  beforeAll(async () => {
    await requirePostgres();
    work = await tempDir('rotation-aws-pg');
    const [sts, lambda] = await Promise.all([
      StsDouble.start({ clock: systemClock, principals: [EXAMPLE_BOT_PRINCIPAL] }),
      LambdaDouble.start(),
    ]);
    shared = {
      kms: new KmsDouble(),
      sts,
      lambda,
      lambdaClient: lambda.client({ maxAttempts: 2 }),
      auditLines: [],
    };
    for (const [k, v] of Object.entries(cliEnv())) {
      savedEnv[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }, 60_000);

  afterAll(async () => {
    for (const w of worlds) await w.stop().catch(() => undefined);
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    shared?.lambdaClient.destroy();
    await Promise.all([shared?.sts.close(), shared?.lambda.close()]);
    await work?.cleanup();
  });

  const startWorld = async (name: string) => {
    const world = new AwsRotationWorld(shared, backendOf(), path.join(work.dir, name), await freePort());
    worlds.push(world);
    await world.start();
    return world;
  };

  it('a full rotation of the db-client and db-server CAs: no connection fails or drops, only the new keys remain', async () => {
    const world = await startWorld('full');
    const first = await world.output();
    const report = await runAwsProof(world, FULL_ROTATION);
    const { before, after, finalOutput, finalServerCertPem } = report;
    expect(after.dbClient).not.toBe(before.dbClient);
    expect(after.dbServer).not.toBe(before.dbServer);
    const cert = finalOutput.files.tlscert as string;
    expect(signers(cert, after.dbClient)).toEqual([0]);
    expect(signers(cert, before.dbClient)).toEqual([]);
    expect(signers(finalServerCertPem, after.dbServer)).toEqual([0]);
    expect(signers(finalServerCertPem, before.dbServer)).toEqual([]);
    expect(finalOutput.files['teleport-database-ca.crt']).toBe(after.dbServer);
    expect(world.proxyBundle().files['teleport-database-ca.crt']).toBe(after.dbServer);
    // The first bundle's certificate, signed by the key that left, opens nothing any more.
    await expect(world.engine.direct(first, world.port)).rejects.toThrow();
    // The keys that left are pending deletion in KMS; the CAs now sign with the stack's next keys.
    expect(await world.keyState('service')).toBe('PendingDeletion');
    expect(await world.keyState('db-server')).toBe('PendingDeletion');
    expect(await world.keyState('next-service')).toBe('Enabled');
    expect(await world.keyState('next-db-server')).toBe('Enabled');
    expectNoPrivateKeyThroughLambda(shared);
  }, 300_000);

  /**
   * The bot CA through `phases` (docs/aws.md: nothing to do on the databases), the bot's schedule running
   * between phases: each run renews the bot's identity (from update_clients on, with the new key) and its
   * output, the proxy picks the output up, and a connection through it works. Returns the audit lines of
   * the bot CA's phases.
   */
  async function walkBotCa(world: AwsRotationWorld, phases: readonly RotationPhase[]): Promise<unknown[]> {
    const before = await world.output();
    const auditFrom = shared.auditLines.length;
    for (const phase of phases) {
      await world.rotate({ type: 'bot', phase, manual: true });
      const serial = await world.renew();
      await world.proxyHas(serial);
      const conn = await world.engine.tunnel(world.proxyPort);
      await conn.ping();
      await conn.close();
    }
    // One more scheduled run after the last phase: the bot's identity is trusted by the CA as it ends.
    expect(await world.renew()).not.toBe(before.serial);
    return shared.auditLines
      .slice(auditFrom)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e.event === 'ca.rotate' && e.name === 'bot' && e.outcome === 'success');
  }

  it("a rotation of the bot CA: the bot's scheduled runs renew through every phase, its old key ends pending deletion, and connections keep working", async () => {
    const world = await startWorld('bot-ca');
    const phases = ['init', 'update_clients', 'update_servers', 'standby'] as const;
    expect(await walkBotCa(world, phases)).toHaveLength(phases.length);
    expect(await world.keyState('bot')).toBe('PendingDeletion');
    expect(await world.keyState('next-bot')).toBe('Enabled');
  }, 300_000);

  it('a rotation of the bot CA rolled back from update_servers: the bot keeps renewing, the next key ends pending deletion', async () => {
    const world = await startWorld('bot-ca-rollback');
    const phases = ['init', 'update_clients', 'update_servers', 'rollback', 'standby'] as const;
    expect(await walkBotCa(world, phases)).toHaveLength(phases.length);
    expect(await world.keyState('next-bot')).toBe('PendingDeletion');
    expect(await world.keyState('bot')).toBe('Enabled');
  }, 300_000);

  // Once: the refusals do not depend on where the state lives.
  if (options.cliRefusals)
    it('broker auth sign --function says what to do when the action is missing, and writes nothing', async () => {
      const prefix = path.join(work.dir, 'missing');
      const program = buildProgram(() => undefined);
      for (const cmd of program.commands) cmd.exitOverride();
      const run = (...extra: string[]) =>
        program.parseAsync(
          [
            'auth',
            'sign',
            '--format=db',
            '--service',
            SERVICE,
            '--host',
            'localhost',
            '--out',
            prefix,
            ...extra,
          ],
          { from: 'user' },
        );
      await expect(run('--function', 'broker-sign-missing')).rejects.toThrow(
        /cannot invoke the server certificate function broker-sign-missing: ResourceNotFoundException: .*deploy the stack with -c dbServerCertificates=true/,
      );
      await expect(readFile(`${prefix}.key`, 'utf8')).rejects.toThrow(/ENOENT/);
      await expect(run('--region', TEST_REGION)).rejects.toThrow(/--region goes with --function/);
    });

  it('a rotation rolled back from update_servers: no connection fails or drops, only the original keys remain', async () => {
    const world = await startWorld('rollback');
    const first = await world.output();
    const { before, after, finalOutput, finalServerCertPem } = await runAwsProof(world, ROLLED_BACK);
    expect(after).toEqual(before);
    expect(signers(finalOutput.files.tlscert as string, before.dbClient)).toEqual([0]);
    expect(signers(finalServerCertPem, before.dbServer)).toEqual([0]);
    // The output from before the rotation (the original key signed it) still opens the database.
    const conn = await world.engine.direct(first, world.port);
    await conn.ping();
    await conn.close();
    // The next keys the rollback discarded are the ones pending deletion.
    expect(await world.keyState('next-service')).toBe('PendingDeletion');
    expect(await world.keyState('next-db-server')).toBe('PendingDeletion');
    expect(await world.keyState('service')).toBe('Enabled');
    expect(await world.keyState('db-server')).toBe('Enabled');
  }, 300_000);
}

describe('CA rotation in AWS mode on the doubles (dynalite, Secrets Manager double, KMS double) with PostgreSQL', () => {
  let dynamo: LocalDynamoDb | undefined;
  const sm = new SecretsManagerDouble();
  beforeAll(async () => {
    dynamo = await startDynalite();
  }, 60_000);
  afterAll(async () => {
    await dynamo?.close();
  });
  awsRotationSuite(() => ({ dynamodb: (dynamo as LocalDynamoDb).client, secretsManager: sm.client() }), {
    cliRefusals: true,
  });
});

const motoServer = requirePythonTool('moto_server');

describe.skipIf(!motoServer)(
  "CA rotation in AWS mode on moto's DynamoDB and Secrets Manager (KMS: the KMS double) with PostgreSQL",
  () => {
    let moto: MotoServer | undefined;
    beforeAll(async () => {
      // One request at a time: moto's threaded server does not make conditional writes atomic (moto.ts).
      moto = await startMoto(motoServer as string, { oneRequestAtATime: true });
    }, 60_000);
    afterAll(async () => {
      await moto?.close();
    });
    awsRotationSuite(() => {
      const options = { ...(moto as MotoServer).clientOptions(), maxAttempts: 3 };
      return { dynamodb: new DynamoDBClient(options), secretsManager: new SecretsManagerClient(options) };
    });
  },
);
