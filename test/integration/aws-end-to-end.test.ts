/**
 * AWS mode end to end on this machine (DESIGN.md §6): the real Lambda handlers and the real AWS SDK against
 * local doubles — DynamoDB (dynalite), KMS (CA keys that really sign), STS (SigV4 checked), Secrets Manager
 * (version stages) and Lambda Invoke — plus a real PostgreSQL server whose certificate comes from the
 * KMS-held database server CA.
 *
 *   bot handler ── IAM join (signed sts:GetCallerIdentity → STS double) ──┐
 *               ── Invoke (Lambda double) ──► authority handler ─► DynamoDB + KMS
 *               ── bundle ──► Secrets Manager double (AWSPENDING → AWSCURRENT)
 *   proxy container (node dist/proxy-container/proxy.mjs, a child process) ── tunnel ──► PostgreSQL
 *   Lambda client module (getBundle → pgOptions) ── verify-full ──► PostgreSQL
 *
 * Then the faults: the authority function failing, an AWS identity the iam token does not allow, Secrets
 * Manager throttling, and a hand-written bundle that is not JSON. Fails (does not skip) with an install
 * message when the PostgreSQL server binaries are missing.
 *
 * The second suite deploys examples/aws exactly as shipped (its resources, bot files and the orders stack
 * with the sidecar) from the synthesized template onto the same doubles, so a broken example fails here.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { CreateKeyCommand, GetPublicKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { App } from 'aws-cdk-lib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrdersStack } from '../../examples/aws/orders-stack.js';
import { createAuthorityHandler } from '../../functions/authority.js';
import { type BotRunSummary, createBotHandler } from '../../functions/bot.js';
import { decodeText } from '../../functions/env.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { bootstrapAuthority } from '../../src/authority/aws-bootstrap.js';
import { verifyIamJoin } from '../../src/authority/iam-join.js';
import { clearCredentialCache, createCredentialClient, pgOptions } from '../../src/client/index.js';
import { systemClock } from '../../src/clock.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { parseBundle } from '../../src/credentials/bundle.js';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { createStateTable, DynamoDbStateStore } from '../../src/state/dynamodb-store.js';
import { DEPLOY_REGION, DeployedTemplate, type Template } from '../support/aws/deploy.js';
import { type LocalDynamoDb, startDynalite } from '../support/aws/dynalite.js';
import {
  botLambdaEnv,
  EXAMPLE_BOT_IAM_TOKEN,
  EXAMPLE_BOT_PRINCIPAL,
  iamExampleResources,
  secretsManagerBotConfig,
} from '../support/aws/example-bot.js';
import { KmsDouble } from '../support/aws/kms.js';
import { LambdaDouble } from '../support/aws/lambda.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { StsDouble, type StsTestPrincipal } from '../support/aws/sts.js';
import { ensureFunctionBundles } from '../support/bundles.js';
import { cdkJsonContext } from '../support/cdk.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

const PROXY = path.join(REPO_ROOT, 'dist/proxy-container/proxy.mjs');

const TABLE = 'broker-state';
const AUTHORITY_FUNCTION = 'broker-authority';
const SECRET = 'broker/example/postgres';
const SERVICE = 'example-server';
const REGION = 'us-east-1';

/** Another role in the same account: the iam token's ARN pattern does not cover it. */
const OTHER_PRINCIPAL: StsTestPrincipal = {
  accessKeyId: 'ASIAOTHERROLE0000001',
  secretAccessKey: 'other-role-secret-access-key-do-not-log',
  sessionToken: 'other-role-session-token-do-not-log',
  account: '111111111111',
  arn: 'arn:aws:sts::111111111111:assumed-role/other-role/session',
  userId: 'AROAOTHERROLE0000001:session',
};

const BOT_CONFIG = secretsManagerBotConfig(AUTHORITY_FUNCTION, SECRET);

/** The environment without AWS_* (a developer's profile must not leak in) and PG* variables. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('AWS_') && !k.startsWith('PG')) env[k] = v;
  return env;
}

/** A running proxy container (node dist/proxy-container/proxy.mjs), its output collected. */
interface ProxyContainer {
  child: ChildProcessWithoutNullStreams;
  env: NodeJS.ProcessEnv;
  port: number;
  diag: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the output matches `pattern` (checked every 50 ms). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

async function startProxyContainer(smEndpoint: string, secretId: string): Promise<ProxyContainer> {
  const port = await freePort();
  const diag = `127.0.0.1:${await freePort()}`;
  // What the ECS task definition sets, plus the endpoint override a test needs (AWS SDK v3 reads
  // AWS_ENDPOINT_URL_<SERVICE_ID> itself; nothing in the broker knows about it).
  const env: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    BROKER_BUNDLE_SECRET_ID: secretId,
    BROKER_SERVICE: SERVICE,
    BROKER_PROXY_PORT: String(port),
    BROKER_DIAG_ADDR: diag,
    BROKER_MAX_SIGTERM_DELAY: '5s',
    BROKER_LOG_LEVEL: 'info',
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: smEndpoint,
  };
  const child = spawn(process.execPath, [PROXY], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (d: Buffer) => {
    text += d.toString('utf8');
  });
  child.stderr.on('data', (d: Buffer) => {
    text += d.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    env,
    port,
    diag,
    output: () => text,
    exited,
    async waitForOutput(pattern, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(text)) {
        if (child.exitCode !== null || Date.now() > until)
          throw new Error(`the proxy container did not print ${pattern}; its output:\n${text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

const execFileAsync = promisify(execFile);

let proxyBuild: Promise<unknown> | undefined;
/**
 * The proxy container's bundle from the current sources (about a second), built once for both suites; the
 * Lambda bundles come from the shared fresh-or-rebuild check (test/support/bundles.ts).
 */
function buildProxyContainer(): Promise<unknown> {
  proxyBuild ??= execFileAsync(
    process.execPath,
    ['scripts/build.mjs', '--target', 'proxy-container', '--quiet'],
    {
      cwd: REPO_ROOT,
    },
  );
  return proxyBuild;
}

/** `node proxy.mjs healthcheck` with the container's environment: its exit code. */
async function healthcheck(proxy: ProxyContainer): Promise<number> {
  try {
    await execFileAsync(process.execPath, [PROXY, 'healthcheck'], { env: proxy.env, timeout: 10_000 });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

/** Polls the container's health check until it passes, as ECS does before `dependsOn: HEALTHY`. */
async function waitHealthy(proxy: ProxyContainer, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while ((await healthcheck(proxy)) !== 0) {
    if (proxy.child.exitCode !== null || Date.now() > until)
      throw new Error(`the proxy container never became healthy; its output:\n${proxy.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function readyz(proxy: ProxyContainer): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${proxy.diag}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function stopContainer(proxy: ProxyContainer | undefined): Promise<void> {
  if (proxy && proxy.child.exitCode === null && proxy.child.signalCode === null) {
    proxy.child.kill('SIGKILL');
    await proxy.exited;
  }
}

/** Connects with `options`, runs `sql` and closes. No end() after a failed connect (pg can hang there). */
async function queryRow<T extends pg.QueryResultRow>(options: pg.ClientConfig, sql: string): Promise<T> {
  const client = new pg.Client({ ...options, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const row = (await client.query<T>(sql)).rows[0];
    if (!row) throw new Error(`${sql} returned no row`);
    return row;
  } finally {
    await client.end();
  }
}

const WHO_AM_I =
  'SELECT current_user AS user, s.ssl, s.client_serial::text AS serial FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()';
/** A bundle serial (hex) as PostgreSQL shows the client certificate's serial (decimal). */
const serialNumber = (hex: string) => BigInt(`0x${hex}`).toString();

describe('AWS mode end to end: Lambda handlers, doubles, proxy container, client module, PostgreSQL', () => {
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let dynamo: LocalDynamoDb | undefined;
  let kmsDouble: KmsDouble | undefined;
  let stsDouble: StsDouble | undefined;
  let smDouble: SecretsManagerDouble | undefined;
  let lambdaDouble: LambdaDouble | undefined;
  let postgres: StartedPostgres | undefined;
  let kms: KMSClient;
  let sm: SecretsManagerClient;
  let lambda: LambdaClient;
  const keyIds: Record<'bot' | 'db-client' | 'db-server', string> = {
    bot: '',
    'db-client': '',
    'db-server': '',
  };
  const serviceKeyIds: Record<string, string> = {};
  const publicKeys = new Map<string, KeyObject>();
  const auditLines: string[] = [];
  const botLines: string[] = [];
  const containers: ProxyContainer[] = [];
  const savedLogLevel = process.env.BROKER_LOG_LEVEL;

  const sms = () => smDouble as SecretsManagerDouble;
  const currentVersion = () => sms().holder(SECRET, 'AWSCURRENT')?.versionId;
  const readBundle = async (stage = 'AWSCURRENT'): Promise<CredentialBundle> => {
    const got = await sm.send(new GetSecretValueCommand({ SecretId: SECRET, VersionStage: stage }));
    return parseBundle(got.SecretString ?? '', `${stage} of ${SECRET}`);
  };

  /** A bot Lambda as the stack configures it, running with the given role's credentials. */
  function botHandler(
    principal: StsTestPrincipal = EXAMPLE_BOT_PRINCIPAL,
    authorityFunction = AUTHORITY_FUNCTION,
  ): () => Promise<BotRunSummary> {
    return createBotHandler({
      env: botLambdaEnv({ config: BOT_CONFIG, authorityFunction, principal, region: REGION }),
      lambda,
      // One SDK attempt: throttling is then retried by the destination's own back-off, which is under test.
      secretsManager: sm,
      writeLine: (line) => botLines.push(line),
    });
  }

  beforeAll(async () => {
    await requirePostgres(); // fails (does not skip) with the install command when the server is missing
    process.env.BROKER_LOG_LEVEL = 'warn'; // the handlers' pino logs go to stdout; keep the test output short
    // The proxy container runs from its bundle.
    await buildProxyContainer();
    work = await tempDir('aws-e2e');

    [dynamo, kmsDouble, stsDouble, smDouble, lambdaDouble] = await Promise.all([
      startDynalite(),
      KmsDouble.start(),
      StsDouble.start({ clock: systemClock, principals: [EXAMPLE_BOT_PRINCIPAL, OTHER_PRINCIPAL] }),
      SecretsManagerDouble.start(),
      LambdaDouble.start(),
    ]);
    kms = kmsDouble.client();
    sm = smDouble.client();
    lambda = lambdaDouble.client({ maxAttempts: 2 }); // as functions/bot.ts builds it
    await createStateTable(dynamo.client, TABLE);
    // The three shared CA keys, and the client CA key of the one database service (the stack makes one per
    // db resource): certificates for it are signed with that key only.
    for (const type of ['bot', 'db-client', 'db-server', SERVICE] as const) {
      const created = await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }));
      const keyId = created.KeyMetadata?.KeyId as string;
      if (type === SERVICE) serviceKeyIds[SERVICE] = keyId;
      else keyIds[type] = keyId;
      const { PublicKey } = await kms.send(new GetPublicKeyCommand({ KeyId: keyId }));
      publicKeys.set(
        type,
        createPublicKey({ key: Buffer.from(PublicKey as Uint8Array), format: 'der', type: 'spki' }),
      );
    }
    // The stack creates the output's secret without a value; the bot may only write versions.
    await sm.send(new CreateSecretCommand({ Name: SECRET }));

    // The database's server certificate comes from the AWS authority's KMS-held db-server CA (as
    // `broker auth sign --format=db` does against it). The db resource names the port, so pick it first.
    const pgPort = await freePort();
    const resources = iamExampleResources(pgPort);
    const authority = await bootstrapAuthority({
      store: new DynamoDbStateStore(dynamo.client, TABLE),
      kms,
      caKeyIds: keyIds,
      dbClientCaKeyIds: serviceKeyIds,
      resourcesYaml: resources,
      clusterName: 'broker',
      audit: new MemoryAuditLog(),
      clock: systemClock,
    });
    const serverCert = await authority.signDatabaseServer(['localhost'], { service: SERVICE });
    expect(
      new X509Certificate(serverCert.certificatePem).verify(publicKeys.get('db-server') as KeyObject),
    ).toBe(true);
    postgres = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      port: pgPort,
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['alice', 'bob'],
      databases: ['example'],
    });

    const sts = stsDouble;
    const authorityHandler = createAuthorityHandler({
      env: {
        BROKER_TABLE_NAME: TABLE,
        BROKER_CA_KEY_BOT: keyIds.bot,
        BROKER_CA_KEY_DB_CLIENT: keyIds['db-client'],
        BROKER_CA_KEY_DB_SERVER: keyIds['db-server'],
        BROKER_DB_CLIENT_CA_KEYS: JSON.stringify(serviceKeyIds),
        BROKER_RESOURCES: `base64:${Buffer.from(resources).toString('base64')}`,
      },
      dynamodb: dynamo.client,
      kms,
      iamVerifier: (req, challenge) => verifyIamJoin(req, challenge, { fetch: sts.fetch }),
      writeLine: (line) => auditLines.push(line),
    });
    lambdaDouble.register(AUTHORITY_FUNCTION, (event) => authorityHandler(event));
  });

  afterAll(async () => {
    for (const c of containers) await stopContainer(c);
    await postgres?.stop();
    kms?.destroy();
    sm?.destroy();
    lambda?.destroy();
    await Promise.all([
      dynamo?.close(),
      kmsDouble?.close(),
      stsDouble?.close(),
      smDouble?.close(),
      lambdaDouble?.close(),
    ]);
    await work?.cleanup();
    if (savedLogLevel === undefined) delete process.env.BROKER_LOG_LEVEL;
    else process.env.BROKER_LOG_LEVEL = savedLogLevel;
  });

  let first: CredentialBundle;
  let second: CredentialBundle;

  it('the bot Lambda joins with IAM, invokes the authority and promotes the bundle to AWSCURRENT', async () => {
    const summary = await botHandler()();
    expect(summary.outputs).toHaveLength(1);
    const [result] = summary.outputs;
    expect(result).toMatchObject({
      ok: true,
      route: { service: SERVICE, database: 'example', username: 'alice' },
    });

    first = await readBundle();
    expect(first).toMatchObject({
      kind: 'database-credentials',
      service: SERVICE,
      protocol: 'postgres',
      endpoint: `localhost:${postgres?.port}`,
      serverName: 'localhost',
      database: 'example',
      username: 'alice',
      serial: result?.serial,
      expiresAt: result?.expires,
    });
    expect(Object.keys(first.files).sort()).toEqual([
      'key',
      'teleport-database-ca.crt',
      'teleport-host-ca.crt',
      'tlscert',
    ]);
    // Signed by the KMS key of its service's client CA (not the shared one); the CA files hold the KMS
    // db-server CA.
    const cert = new X509Certificate(first.files.tlscert as string);
    expect(cert.subject).toContain('CN=alice');
    expect(cert.verify(publicKeys.get(SERVICE) as KeyObject)).toBe(true);
    expect(cert.verify(publicKeys.get('db-client') as KeyObject)).toBe(false);
    const serverCa = new X509Certificate(first.files['teleport-host-ca.crt'] as string);
    expect(serverCa.publicKey.export({ type: 'spki', format: 'der' })).toEqual(
      (publicKeys.get('db-server') as KeyObject).export({ type: 'spki', format: 'der' }),
    );
    expect(kmsDouble?.requestsOf('Sign').some((r) => r.body.MessageType === 'DIGEST')).toBe(true);

    // The path it took: STS verified one signed request; the authority was invoked for challenge, join, issue.
    expect(stsDouble?.requests.map((r) => [r.host, r.outcome])).toEqual([
      ['sts.us-east-1.amazonaws.com', 'OK'],
    ]);
    expect(
      lambdaDouble
        ?.invocationsOf(AUTHORITY_FUNCTION)
        .map((i) => [(JSON.parse(i.payload) as { type: string }).type, i.outcome]),
    ).toEqual([
      ['challenge', 'Success'],
      ['join', 'Success'],
      ['issue-db-cert', 'Success'],
    ]);
    const version = sms().holder(SECRET, 'AWSCURRENT');
    expect(version?.stages).toEqual(['AWSCURRENT']); // AWSPENDING was taken off after the promotion

    // The EMF metric line CloudWatch turns into SecondsToExpiry.
    const emf = botLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => '_aws' in l);
    expect(emf).toMatchObject({
      Stack: 'Broker',
      Output: `alice@${SERVICE}/example`,
      RenderFailures: 0,
      _aws: { CloudWatchMetrics: [{ Namespace: 'Broker', Dimensions: [['Stack', 'Output']] }] },
    });
    expect(emf?.SecondsToExpiry).toBeGreaterThan(3500);
    expect(emf?.SecondsToExpiry).toBeLessThanOrEqual(3600);

    // Audited with the AWS identity; nothing secret in the audit or metric lines.
    const audits = auditLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audits).toContainEqual(
      expect.objectContaining({
        audit: true,
        event: 'bot.join',
        outcome: 'success',
        bot: 'example',
        reason: expect.stringContaining(EXAMPLE_BOT_PRINCIPAL.arn),
      }),
    );
    expect(audits).toContainEqual(expect.objectContaining({ event: 'db_cert.issue', outcome: 'success' }));
    for (const line of [...auditLines, ...botLines]) {
      expect(line).not.toContain(EXAMPLE_BOT_PRINCIPAL.secretAccessKey);
      expect(line).not.toContain(EXAMPLE_BOT_PRINCIPAL.sessionToken);
      expect(line).not.toContain('Signature=');
      expect(line).not.toContain('PRIVATE KEY');
    }
  });

  it('a second run writes a new AWSCURRENT and the first bundle stays readable as AWSPREVIOUS', async () => {
    const firstVersion = currentVersion();
    const summary = await botHandler()();
    second = await readBundle();
    expect(second.serial).toBe(summary.outputs[0]?.serial);
    expect(second.serial).not.toBe(first.serial);
    expect(currentVersion()).not.toBe(firstVersion);
    expect(sms().holder(SECRET, 'AWSPREVIOUS')?.versionId).toBe(firstVersion);
    expect(await readBundle('AWSPREVIOUS')).toEqual(first);
    // An IAM bot keeps no identity: it joined again.
    expect(stsDouble?.requests).toHaveLength(2);
  });

  it('the Lambda client module reads the bundle and pg logs alice in directly with verify-full', async () => {
    clearCredentialCache();
    const creds = createCredentialClient({ secretId: SECRET, client: sm });
    const bundle = await creds.getBundle();
    expect(bundle).toEqual(second);
    const options = pgOptions(bundle);
    expect(options).toMatchObject({
      host: 'localhost',
      port: postgres?.port,
      user: 'alice',
      database: 'example',
    });
    const row = await queryRow<{ user: string; ssl: boolean; serial: string }>(options, WHO_AM_I);
    expect(row).toEqual({ user: 'alice', ssl: true, serial: serialNumber(second.serial) });
  });

  it('the proxy container tunnels to PostgreSQL with the bundle, keeps it through a bad write, drains on SIGTERM', async () => {
    const proxy = await startProxyContainer(sms().endpoint, SECRET);
    containers.push(proxy);
    const described = sms().requestsOf('DescribeSecret').length;
    await waitHealthy(proxy);
    // The SDK in the bundle honoured AWS_ENDPOINT_URL_SECRETS_MANAGER: the double saw the proxy's reads.
    expect(sms().requestsOf('DescribeSecret').length).toBeGreaterThan(described);
    expect(await readyz(proxy)).toEqual({
      status: 200,
      body: expect.objectContaining({ ready: true, serial: second.serial, service: SERVICE }),
    });

    // Tunnel: no TLS and no password from the client; the proxy attaches alice's certificate upstream.
    const tunnel = { host: '127.0.0.1', port: proxy.port, user: 'alice', database: 'example', ssl: false };
    expect(await queryRow(tunnel, WHO_AM_I)).toEqual({
      user: 'alice',
      ssl: true,
      serial: serialNumber(second.serial),
    });

    // Someone writes a value that is not JSON by hand: it becomes AWSCURRENT, the proxy's refresh fails
    // and it keeps serving the last good bundle (it is still valid), so readiness and health stay green.
    await sm.send(new PutSecretValueCommand({ SecretId: SECRET, SecretString: 'not a bundle {' }));
    proxy.child.kill('SIGHUP');
    await proxy.waitForOutput(/credential refresh failed; keeping the current bundle/);
    expect(await readyz(proxy)).toEqual({
      status: 200,
      body: expect.objectContaining({ ready: true, serial: second.serial }),
    });
    expect(await healthcheck(proxy)).toBe(0);
    expect(await queryRow(tunnel, WHO_AM_I)).toMatchObject({ serial: serialNumber(second.serial) });
    const metrics = await (await fetch(`http://${proxy.diag}/metrics`)).text();
    expect(metrics).toMatch(/result="failure"\} [1-9]/);

    // The next bot run repairs AWSCURRENT and the proxy picks the new certificate up for new connections.
    const summary = await botHandler()();
    const third = await readBundle();
    expect(third.serial).toBe(summary.outputs[0]?.serial);
    proxy.child.kill('SIGHUP');
    const until = Date.now() + 10_000;
    while ((await readyz(proxy)).body.serial !== third.serial) {
      if (Date.now() > until)
        throw new Error(`the proxy did not load serial ${third.serial}:\n${proxy.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await queryRow(tunnel, WHO_AM_I)).toMatchObject({ serial: serialNumber(third.serial) });

    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).toEqual({ code: 0, signal: null });
    expect(proxy.output()).toContain('all connections finished; exiting');
  });

  it('a proxy container whose secret never held a valid bundle is not ready and fails its health check', async () => {
    const secretId = 'broker/example/garbage';
    await sm.send(new CreateSecretCommand({ Name: secretId, SecretString: '{"kind": "not-a-bundle"' }));
    const proxy = await startProxyContainer(sms().endpoint, secretId);
    containers.push(proxy);
    await proxy.waitForOutput(/Diagnostics on http:\/\//);
    await proxy.waitForOutput(/credential refresh failed/);
    expect(await readyz(proxy)).toEqual({
      status: 503,
      body: { ready: false, reason: 'no credentials loaded yet' },
    });
    expect(await healthcheck(proxy)).toBe(1);
    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).toEqual({ code: 0, signal: null });
  });

  it('an authority function error fails the run, naming the function, and leaves AWSCURRENT alone', async () => {
    const before = currentVersion();
    const versions = sms().versions(SECRET).length;
    // During the join (the first invoke) ...
    lambdaDouble?.fail(AUTHORITY_FUNCTION, { errorType: 'Error', errorMessage: 'boom' });
    await expect(botHandler()()).rejects.toThrow(
      /the authority function broker-authority failed \(Unhandled\); see its CloudWatch logs/,
    );
    // ... and during the issue, after a successful join: the output fails, so the invocation fails.
    lambdaDouble?.fail(AUTHORITY_FUNCTION, {
      errorType: 'Error',
      errorMessage: 'boom',
      when: (event) => (event as { type?: string }).type === 'issue-db-cert',
    });
    await expect(botHandler()()).rejects.toThrow(
      /1 of 1 output\(s\) failed: .*the authority function broker-authority failed \(Unhandled\)/,
    );
    expect(currentVersion()).toBe(before);
    expect(sms().versions(SECRET)).toHaveLength(versions);
    expect(
      lambdaDouble?.invocationsOf(AUTHORITY_FUNCTION).filter((i) => i.outcome === 'Unhandled: Error'),
    ).toHaveLength(2);
    const emf = JSON.parse(botLines.at(-1) as string) as Record<string, unknown>;
    expect(emf).toMatchObject({ RenderFailures: 1 });
  });

  it('an authority function that does not exist fails the run with ResourceNotFoundException', async () => {
    const before = currentVersion();
    await expect(botHandler(EXAMPLE_BOT_PRINCIPAL, 'broker-authority-missing')()).rejects.toThrow(
      /cannot invoke the authority function broker-authority-missing: ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:\d{12}:function:broker-authority-missing/,
    );
    expect(currentVersion()).toBe(before);
  });

  it('an AWS identity the iam token does not allow is refused with its ARN, and AWSCURRENT is unchanged', async () => {
    const before = currentVersion();
    const error = await botHandler(OTHER_PRINCIPAL)().then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error?.name).toBe('AccessDeniedError');
    expect(error?.message).toContain(
      `iam join refused: the AWS identity ${OTHER_PRINCIPAL.arn} (account 111111111111) matches no allow rule of iam token "${EXAMPLE_BOT_IAM_TOKEN}"`,
    );
    expect(currentVersion()).toBe(before);
    expect(stsDouble?.requests.at(-1)?.outcome).toBe('OK'); // STS vouched for the caller; the token refused it
    expect(auditLines.map((l) => JSON.parse(l) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({
        event: 'bot.join',
        outcome: 'denied',
        reason: expect.stringContaining(OTHER_PRINCIPAL.arn),
      }),
    );
    for (const line of auditLines) expect(line).not.toContain(OTHER_PRINCIPAL.secretAccessKey);
  });

  it('Secrets Manager throttling is retried with back-off and the run succeeds', async () => {
    const before = currentVersion();
    const puts = sms().requestsOf('PutSecretValue').length;
    sms().fail('PutSecretValue', {
      type: 'ThrottlingException',
      message: 'Rate exceeded',
      status: 400,
      times: 2,
    });
    sms().fail('UpdateSecretVersionStage', {
      type: 'ThrottlingException',
      message: 'Rate exceeded',
      status: 400,
    });
    const summary = await botHandler()();
    expect(summary.outputs[0]?.ok).toBe(true);
    expect(sms().requestsOf('PutSecretValue').length - puts).toBe(3);
    expect(currentVersion()).not.toBe(before);
    expect(sms().holder(SECRET, 'AWSPREVIOUS')?.versionId).toBe(before);
    expect((await readBundle()).serial).toBe(summary.outputs[0]?.serial);
  });
});

/**
 * examples/aws exactly as shipped (resources.yaml, bots/*.yaml, the orders stack with the sidecar as
 * docs/aws.md documents it), synthesized and "deployed" onto the doubles (test/support/aws/deploy.ts): every
 * handler runs with the environment its function has in the template, the bot runs as its trigger and its
 * schedule invoke it, and the sidecar and the application start with their task definition's environment.
 * What the machine cannot have is replaced below the configuration: the database name
 * `orders-postgres.db.internal:5432` is routed to the local PostgreSQL (test/support/host-map.mjs), and the
 * sidecar's two listening ports, which a task has to itself, are free ports here.
 */
describe('the shipped example (examples/aws), deployed: from its schedule to a PostgreSQL query through the sidecar', () => {
  const STACK = 'Orders';
  const DB_HOST = 'orders-postgres.db.internal';
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let dynamo: LocalDynamoDb | undefined;
  let kmsDouble: KmsDouble | undefined;
  let stsDouble: StsDouble | undefined;
  let smDouble: SecretsManagerDouble | undefined;
  let lambdaDouble: LambdaDouble | undefined;
  let postgres: StartedPostgres | undefined;
  let deployed: DeployedTemplate;
  let sm: SecretsManagerClient;
  let lambda: LambdaClient;
  const processes: ChildProcessWithoutNullStreams[] = [];
  const audit: Record<string, unknown>[] = [];
  const savedLogLevel = process.env.BROKER_LOG_LEVEL;

  const secretArn = (name: string) =>
    deployed.ref(
      deployed
        .ids('AWS::SecretsManager::Secret')
        .find((id) => deployed.resource(id).Properties?.Name === name) as string,
    );
  const readCurrent = async (name: string, stage = 'AWSCURRENT') => {
    const got = await sm.send(new GetSecretValueCommand({ SecretId: secretArn(name), VersionStage: stage }));
    return parseBundle(got.SecretString ?? '', `${stage} of ${name}`);
  };
  const invoke = async (functionArn: string) => {
    const res = await lambda.send(
      new InvokeCommand({ FunctionName: functionArn, InvocationType: 'RequestResponse' }),
    );
    const payload = Buffer.from(res.Payload ?? new Uint8Array()).toString('utf8');
    if (res.FunctionError) throw new Error(`${functionArn} failed: ${payload}`);
    return JSON.parse(payload) as BotRunSummary;
  };

  beforeAll(async () => {
    await requirePostgres();
    process.env.BROKER_LOG_LEVEL = 'warn';
    ensureFunctionBundles();
    await buildProxyContainer();
    work = await tempDir('aws-example');
    const app = new App({ outdir: path.join(work.dir, 'cdk.out'), context: cdkJsonContext() });
    new OrdersStack(app, STACK);
    const template = app.synth().getStackByName(STACK).template as Template;

    [dynamo, kmsDouble, smDouble, lambdaDouble] = await Promise.all([
      startDynalite(),
      KmsDouble.start(),
      SecretsManagerDouble.start(),
      LambdaDouble.start(),
    ]);
    const kms = kmsDouble.client();
    sm = smDouble.client();
    lambda = lambdaDouble.client({ maxAttempts: 2 });
    deployed = await DeployedTemplate.deploy(template, { stackName: STACK, kms, secretsManager: sm, dynamo });
    const functions = deployed.ids('AWS::Lambda::Function');
    const authorityId = functions.find((id) => id.startsWith('BrokerAuthorityFunction')) as string;
    const botIds = functions.filter((id) => 'BROKER_BOT_CONFIG' in deployed.functionEnv(id));
    expect(botIds).toHaveLength(2);
    stsDouble = await StsDouble.start({
      clock: systemClock,
      principals: botIds.map((id) => deployed.principalOf(id)),
    });
    const sts = stsDouble;

    // The database the example names, with a server certificate from the deployed db-server CA (KMS).
    const env = deployed.functionEnv(authorityId);
    const authority = await bootstrapAuthority({
      store: new DynamoDbStateStore(dynamo.client, env.BROKER_TABLE_NAME as string),
      kms,
      caKeyIds: {
        bot: env.BROKER_CA_KEY_BOT as string,
        'db-client': env.BROKER_CA_KEY_DB_CLIENT as string,
        'db-server': env.BROKER_CA_KEY_DB_SERVER as string,
      },
      dbClientCaKeyIds: JSON.parse(env.BROKER_DB_CLIENT_CA_KEYS as string) as Record<string, string>,
      resourcesYaml: decodeText(env.BROKER_RESOURCES as string),
      clusterName: env.BROKER_CLUSTER_NAME as string,
      audit: new MemoryAuditLog(),
      clock: systemClock,
    });
    const serverCert = await authority.signDatabaseServer([DB_HOST], { service: 'orders-postgres' });
    postgres = await startPostgres({
      baseDir: path.join(work.dir, 'pg'),
      tls: {
        serverCertPem: serverCert.certificatePem,
        serverKeyPem: serverCert.privateKeyPem,
        clientCaPem: serverCert.clientCaPem,
      },
      users: ['orders_app', 'reports_ro'],
      databases: ['orders'],
    });

    const authorityHandler = createAuthorityHandler({
      env,
      dynamodb: dynamo.client,
      kms,
      iamVerifier: (req, challenge) => verifyIamJoin(req, challenge, { fetch: sts.fetch }),
      writeLine: (line) => audit.push(JSON.parse(line) as Record<string, unknown>),
    });
    lambdaDouble.register(deployed.ref(authorityId), (event) => authorityHandler(event));
    for (const id of botIds) {
      const principal = deployed.principalOf(id);
      const handler = createBotHandler({
        env: {
          ...deployed.functionEnv(id),
          AWS_REGION: DEPLOY_REGION,
          AWS_ACCESS_KEY_ID: principal.accessKeyId,
          AWS_SECRET_ACCESS_KEY: principal.secretAccessKey,
          AWS_SESSION_TOKEN: principal.sessionToken as string,
        },
        lambda,
        secretsManager: sm,
        writeLine: () => undefined,
      });
      lambdaDouble.register(deployed.ref(id), () => handler());
    }
  }, 300_000);

  afterAll(async () => {
    for (const child of processes)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await postgres?.stop();
    sm?.destroy();
    lambda?.destroy();
    await Promise.all([
      dynamo?.close(),
      kmsDouble?.close(),
      stsDouble?.close(),
      smDouble?.close(),
      lambdaDouble?.close(),
    ]);
    await work?.cleanup();
    if (savedLogLevel === undefined) delete process.env.BROKER_LOG_LEVEL;
    else process.env.BROKER_LOG_LEVEL = savedLogLevel;
  });

  it('cdk deploy: each bot runs once through its trigger and writes every output before the consumers exist', async () => {
    const triggers = deployed.ids('Custom::Trigger');
    expect(triggers).toHaveLength(2);
    for (const id of triggers) {
      const summary = await invoke(deployed.resolve(deployed.resource(id).Properties?.HandlerArn));
      expect(summary.outputs.every((o) => o.ok)).toBe(true);
    }
    const orders = await readCurrent('broker/orders/orders-postgres');
    expect(orders).toMatchObject({
      service: 'orders-postgres',
      endpoint: `${DB_HOST}:5432`,
      serverName: DB_HOST,
      database: 'orders',
      username: 'orders_app',
    });
    expect(await readCurrent('broker/reports/orders-postgres')).toMatchObject({ username: 'reports_ro' });
    expect(Object.keys((await readCurrent('broker/reports/orders-mariadb')).files)).toContain('tls.crt');
    // Every iam join was a session of the bot's own role, checked by STS.
    expect(stsDouble?.requests.map((r) => r.outcome)).toEqual(['OK', 'OK']);
    // Audited with the stack's name, the Stack dimension of the AuthorityDenials metric filter.
    const issued = audit.filter((a) => a.event === 'db_cert.issue');
    expect(issued.map((a) => [a.outcome, a.stack])).toEqual([
      ['success', STACK],
      ['success', STACK],
      ['success', STACK],
    ]);
  });

  it("the schedule invokes the bot: a new AWSCURRENT, the deploy's bundle stays as AWSPREVIOUS", async () => {
    const schedule = deployed.ids('AWS::Scheduler::Schedule', 'BrokerBotordersSchedule')[0] as string;
    const target = deployed.resource(schedule).Properties?.Target as { Arn: unknown };
    const first = await readCurrent('broker/orders/orders-postgres');
    const summary = await invoke(deployed.resolve(target.Arn));
    const second = await readCurrent('broker/orders/orders-postgres');
    expect(second.serial).toBe(summary.outputs[0]?.serial);
    expect(second.serial).not.toBe(first.serial);
    expect(await readCurrent('broker/orders/orders-postgres', 'AWSPREVIOUS')).toEqual(first);
  });

  it("the sidecar from the task definition becomes healthy and the api container's query reaches PostgreSQL as orders_app", async () => {
    const task = deployed.ids('AWS::ECS::TaskDefinition', 'OrdersApi')[0] as string;
    const proxy = deployed.container(task, 'broker-proxy');
    const api = deployed.container(task, 'api');
    const port = await freePort();
    const diag = `127.0.0.1:${await freePort()}`;
    const env: NodeJS.ProcessEnv = {
      ...cleanEnv(),
      ...proxy.environment,
      BROKER_PROXY_PORT: String(port),
      BROKER_DIAG_ADDR: diag,
      AWS_REGION: DEPLOY_REGION,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: smDouble?.endpoint,
      NODE_OPTIONS: `--import=${pathToFileURL(path.join(REPO_ROOT, 'test/support/host-map.mjs')).href}`,
      BROKER_TEST_HOST_MAP: `${DB_HOST}:5432=127.0.0.1:${postgres?.port}`,
    };
    expect(proxy.environment).toMatchObject({
      BROKER_BUNDLE_SECRET_ID: secretArn('broker/orders/orders-postgres'),
      BROKER_SERVICE: 'orders-postgres',
      BROKER_PROXY_PORT: api.environment.PGPORT,
      BROKER_PROXY_TUNNEL: 'true',
    });
    const child = spawn(process.execPath, [PROXY], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    processes.push(child);
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));

    // The task definition's health check, with the image's /app/ being proxy-container/ here.
    const [cmd, ...args] = (proxy.healthCheck?.Command ?? []).slice(1);
    expect([cmd, ...args]).toEqual(['node', '/app/healthcheck.mjs']);
    const script = path.join(REPO_ROOT, 'proxy-container', path.basename(args[0] as string));
    const healthy = async () =>
      execFileAsync(process.execPath, [script], { env, timeout: 10_000 }).then(
        () => true,
        () => false,
      );
    const until = Date.now() + 20_000;
    while (!(await healthy())) {
      if (child.exitCode !== null || Date.now() > until)
        throw new Error(`the sidecar never became healthy; its output:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    // The api container, as configured: plain PostgreSQL to the sidecar on loopback, no password, no TLS.
    const row = await queryRow<{ user: string; ssl: boolean; serial: string }>(
      {
        host: api.environment.PGHOST,
        port,
        database: api.environment.PGDATABASE,
        user: api.environment.PGUSER,
        ssl: api.environment.PGSSLMODE === 'disable' ? false : undefined,
      },
      WHO_AM_I,
    );
    const current = await readCurrent('broker/orders/orders-postgres');
    expect(row).toEqual({ user: 'orders_app', ssl: true, serial: serialNumber(current.serial) });

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
