/**
 * Nothing secret is ever logged (DESIGN.md §2), checked on the real processes: the built `broker` CLI is
 * run through its success and failure paths — authority commands, the authority server, the bot (good
 * runs, a renewal, an unknown token, a denied user, bad configurations, an unreachable authority, an
 * expired token, a locked bot, a corrupt identity), the proxy (tunnel and relay, a user mismatch, garbage,
 * no bundle, an expired bundle, a mismatched key, the wrong service, Secrets Manager with and without the
 * secret), `demo --once`, and the bot Lambda's iam join against the STS double — and everything each
 * process writes to stdout and stderr is captured and scanned.
 *
 * The scan looks for: private-key PEM headers anywhere; any line of the body of any private key or
 * certificate that exists on disk after the run (outputs, identities, CA state, server keys); every join
 * token created (only the commands that print a token once by design may show it); the AWS secret keys and
 * session tokens the processes were given, and SigV4 signatures; and, in JSON log lines, secret-named fields
 * that are not censored and 32-hex values in fields named like a token.
 *
 * Pino writes to file descriptors directly, so only child processes show what really reaches the logs.
 * Needs `npm run build` (the CLI bundle) and the PostgreSQL server binaries.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { ManualClock } from '../../src/clock.js';
import type { CredentialBundle } from '../../src/credentials/bundle.js';
import { serializeBundle } from '../../src/credentials/bundle.js';
import { DirectoryDestination, readDirectoryOutput } from '../../src/destinations/directory.js';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { SECRET_FIELDS } from '../../src/log.js';
import { generateRsaKeyPair } from '../../src/pki/keys.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { SecretsManagerDouble } from '../support/aws/secretsmanager.js';
import { CLI, type CliProcess, spawnCli } from '../support/cli-process.js';
import {
  botYaml as botResourceYaml,
  exampleResourcesYaml,
  issueBundle,
  REPO_ROOT,
} from '../support/fixtures.js';
import { RawSocket } from '../support/pg-wire.js';
import { requirePostgres } from '../support/postgres.js';
import { run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

const SERVICE = 'example-server';

/** One process's complete output, and what its design allows it to print. */
interface Captured {
  name: string;
  code: number | null;
  stdout: string;
  stderr: string;
  /** `bots add` and `tokens add` print the new token once: that is their job. */
  tokenOnStdout?: boolean;
  /** `auth export` prints CA certificates: that is its job. */
  certificatesOnStdout?: boolean;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** AWS credentials handed to the processes: distinctive, so any leak is found by plain search. */
const AWS = {
  proxySecretKey: `proxySecret${hex(12)}`,
  proxySessionToken: `proxySession${hex(12)}`,
  botSecretKey: `botSecret${hex(12)}`,
  botSessionToken: `botSession${hex(12)}`,
  otherSecretKey: `otherSecret${hex(12)}`,
  wrongSecretKey: `wrongSecret${hex(12)}`,
};

/**
 * The bot Lambda in its own process: the real handler (functions/bot.ts) joins with iam through the Lambda
 * and STS doubles to an in-process authority whose API handler and audit log also write to stdout, as in
 * AWS. Runs: a good join, a role the iam token does not allow, a wrong secret key, expired credentials,
 * and a second good run. Prints nothing itself but one line per run; writes the final bundle to a file.
 */
const AWS_FLOW = `
import { createRequire } from 'node:module';
import { writeFile } from 'node:fs/promises';
const root = ${JSON.stringify(REPO_ROOT)};
const require = createRequire(root + '/package.json');
const { CreateSecretCommand, GetSecretValueCommand } = require('@aws-sdk/client-secrets-manager');
const { createBotHandler } = await import(root + '/functions/bot.ts');
const { handleApiRequest } = await import(root + '/src/api/handler.ts');
const { Authority } = await import(root + '/src/authority/authority.ts');
const { verifyIamJoin } = await import(root + '/src/authority/iam-join.ts');
const { parseResources } = await import(root + '/src/authority/resources.ts');
const { StdoutAuditLog } = await import(root + '/src/authority/aws-bootstrap.ts');
const { systemClock } = await import(root + '/src/clock.ts');
const { createLogger } = await import(root + '/src/log.ts');
const { MemoryStateStore } = await import(root + '/src/state/memory-store.ts');
const { LambdaDouble } = await import(root + '/test/support/aws/lambda.ts');
const { SecretsManagerDouble } = await import(root + '/test/support/aws/secretsmanager.ts');
const { StsDouble } = await import(root + '/test/support/aws/sts.ts');

const env = process.env;
const bot = { accessKeyId: 'ASIALOGSCANBOT000001', secretAccessKey: env.BOT_SECRET, sessionToken: env.BOT_SESSION,
  account: '111111111111', arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/s', userId: 'AROALOGSCANBOT:s' };
const other = { accessKeyId: 'ASIALOGSCANOTHER0001', secretAccessKey: env.OTHER_SECRET,
  account: '111111111111', arn: 'arn:aws:sts::111111111111:assumed-role/other/s', userId: 'AROALOGSCANOTHER:s' };
const expired = { ...bot, accessKeyId: 'ASIALOGSCANEXPIRED01', expired: true };
const sts = await StsDouble.start({ clock: systemClock, principals: [bot, other, expired] });
const lambda = await LambdaDouble.start();
const sm = await SecretsManagerDouble.start();
const authority = new Authority({ store: new MemoryStateStore(), audit: new StdoutAuditLog(),
  iamVerifier: (req, challenge) => verifyIamJoin(req, challenge, { fetch: sts.fetch }) });
await authority.initialize('logscan');
await authority.createResources(parseResources(env.RESOURCES, 'resources.yaml'));
const log = createLogger({ base: { component: 'authority' }, destination: 1 });
lambda.register('broker-authority', (event) => handleApiRequest(authority, event, log));
const smClient = sm.client();
await smClient.send(new CreateSecretCommand({ Name: 'broker/example' }));
const config = [
  'version: v2', 'auth_server: lambda://broker-authority',
  'onboarding: { join_method: iam, token: example-bot-iam }', 'storage: { type: memory }', 'outputs:',
  '  - type: database', '    destination: { type: secretsmanager, name: broker/example }',
  '    service: ${SERVICE}', '    database: example', '    username: alice', ''].join('\\n');
const runs = [['good', bot], ['other role', other], ['wrong secret', { ...bot, secretAccessKey: env.WRONG_SECRET }],
  ['expired', expired], ['good again', bot]];
for (const [name, p] of runs) {
  const handler = createBotHandler({
    env: { BROKER_BOT_CONFIG: config, BROKER_AUTHORITY_FUNCTION: 'broker-authority', BROKER_STACK_NAME: 'Broker',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: p.accessKeyId, AWS_SECRET_ACCESS_KEY: p.secretAccessKey,
      ...(p.sessionToken ? { AWS_SESSION_TOKEN: p.sessionToken } : {}) },
    lambda: lambda.client({ maxAttempts: 2 }), secretsManager: sm.client() });
  try {
    const summary = await handler();
    console.error('run ' + name + ': ' + (summary.outputs.every((o) => o.ok) ? 'ok' : 'failed'));
  } catch (err) {
    console.error('run ' + name + ': error: ' + err.message);
  }
}
const current = await smClient.send(new GetSecretValueCommand({ SecretId: 'broker/example' }));
await writeFile(process.argv[2], current.SecretString ?? '', { mode: 0o600 });
await Promise.all([sts.close(), lambda.close(), sm.close()]);
process.exit(0);
`;

describe('log scan: the CLI and the handlers never print secrets, on success or failure', () => {
  const captured: Captured[] = [];
  const tokens: string[] = [];
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let postgres: StartedPostgres | undefined;
  let sm: SecretsManagerDouble | undefined;
  const running: CliProcess[] = [];
  const dir = (...parts: string[]) => path.join(work?.dir as string, ...parts);

  const env = (): NodeJS.ProcessEnv => ({ BROKER_STATE_DIR: dir('authority'), BROKER_LOG_LEVEL: 'debug' });

  /** Runs the CLI to completion and keeps its output. */
  async function cli(
    name: string,
    args: readonly string[],
    options: Partial<Pick<Captured, 'tokenOnStdout' | 'certificatesOnStdout'>> & {
      env?: NodeJS.ProcessEnv;
    } = {},
  ): Promise<Captured> {
    const result = await run(process.execPath, [CLI, ...args], { env: { ...env(), ...options.env } });
    const entry: Captured = { name, ...result, ...options };
    captured.push(entry);
    return entry;
  }

  /** Starts a long-running CLI command; `finish` stops it (SIGTERM) and keeps its output. */
  function daemon(name: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}) {
    const proc = spawnCli(args, { ...env(), ...extraEnv });
    running.push(proc);
    return {
      proc,
      async finish(): Promise<Captured> {
        if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
        const exit = await Promise.race([proc.exited, sleep(15_000).then(() => undefined)]);
        if (!exit) proc.child.kill('SIGKILL');
        const entry: Captured = {
          name,
          code: exit?.code ?? null,
          stdout: proc.stdout(),
          stderr: proc.stderr(),
        };
        captured.push(entry);
        return entry;
      },
    };
  }

  /** The token a `bots add` / `tokens add` printed; remembered for the scan. */
  function tokenFrom(result: Captured): string {
    const token = /The bot token: ([0-9a-f]{32})/.exec(result.stdout)?.[1];
    if (!token) throw new Error(`${result.name} printed no token:\n${result.stdout}\n${result.stderr}`);
    tokens.push(token);
    return token;
  }

  function botYaml(o: {
    token: string;
    storage: string;
    out: string;
    username?: string;
    authServer?: string;
    caPins?: string[];
  }): string {
    return `version: v2
auth_server: ${o.authServer ?? `unix://${dir('authority.sock')}`}
${o.caPins ? `ca_pins: [${o.caPins.join(', ')}]\n` : ''}onboarding: { join_method: token, token: ${JSON.stringify(o.token)} }
storage: { type: directory, path: ${JSON.stringify(o.storage)} }
outputs:
  - type: database
    destination: { type: directory, path: ${JSON.stringify(o.out)} }
    service: ${SERVICE}
    database: example
    username: ${o.username ?? 'alice'}
`;
  }

  async function config(name: string, text: string): Promise<string> {
    const file = dir('configs', name);
    await writeFile(file, text, { mode: 0o600 });
    return file;
  }

  /** A pg client through a proxy port; resolves to the error, or undefined after a successful query. */
  async function tryPg(port: number, options: Partial<pg.ClientConfig> = {}): Promise<Error | undefined> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'alice',
      database: 'example',
      ssl: false,
      connectionTimeoutMillis: 5000,
      ...options,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      return err as Error;
    }
    try {
      await client.query('SELECT 1');
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      await Promise.race([client.end().catch(() => undefined), sleep(2000)]);
    }
  }

  const proxyPort = async (p: CliProcess) =>
    Number((await p.waitFor('stdout', /listening on 127\.0\.0\.1:(\d+)/))[1]);

  beforeAll(async () => {
    await requirePostgres();
    await access(CLI).catch(() => {
      throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run test:integration does)`);
    });
    work = await tempDir('log-scan');
    await mkdir(dir('configs'));

    // ---- operator commands ----
    await cli('init', ['init']);
    await cli('auth sign', [
      'auth',
      'sign',
      '--format',
      'db',
      '--service',
      SERVICE,
      '--host',
      'localhost',
      '-o',
      dir('pgtls', 'server'),
    ]);
    await cli('auth export', ['auth', 'export', '--type', 'db-client', '--service', SERVICE], {
      certificatesOnStdout: true,
    });
    postgres = await startPostgres({
      baseDir: dir('pg'),
      tls: {
        serverCertPem: await readFile(dir('pgtls', 'server.crt'), 'utf8'),
        serverKeyPem: await readFile(dir('pgtls', 'server.key'), 'utf8'),
        clientCaPem: await readFile(dir('pgtls', 'server.cas'), 'utf8'),
      },
      users: ['alice', 'bob'],
      databases: ['example'],
    });
    await writeFile(
      dir('resources.yaml'),
      exampleResourcesYaml({
        role: { maxSessionTtl: null },
        db: { name: SERVICE, uri: `localhost:${postgres.port}` },
        bots: [],
      }),
    );
    await cli('create', ['create', '-f', dir('resources.yaml')]);
    const resourceSecret = hex(16);
    tokens.push(resourceSecret);
    await writeFile(
      dir('bad-token.yaml'),
      `kind: token\nversion: v2\nmetadata: { name: ${resourceSecret}, labels: { a: 1 } }\nspec: { join_method: token, bot_name: example, roles: [Admin] }\n`,
    );
    await cli('create a bad token resource', ['create', '-f', dir('bad-token.yaml')]);
    const t1 = tokenFrom(
      await cli('bots add', ['bots', 'add', 'example', '--roles', 'example-role'], { tokenOnStdout: true }),
    );
    const more: string[] = [];
    for (let i = 0; i < 4; i++)
      more.push(
        tokenFrom(
          await cli(`tokens add ${i}`, ['tokens', 'add', '--type', 'bot', '--bot', 'example'], {
            tokenOnStdout: true,
          }),
        ),
      );
    const [t2, t3, t4, t5] = more as [string, string, string, string];
    const shortLived = tokenFrom(
      await cli(
        'tokens add --ttl 1s',
        ['tokens', 'add', '--type', 'bot', '--bot', 'example', '--ttl', '1s'],
        {
          tokenOnStdout: true,
        },
      ),
    );
    await cli('tokens ls', ['tokens', 'ls']);
    await cli('bots ls', ['bots', 'ls']);
    const status = await cli('status', ['status']);
    const botPin = /bot\s+\d+\s+\S+\s+(sha256:[0-9a-f]{64})/.exec(status.stdout)?.[1];

    // ---- the authority server and the bot ----
    const server = daemon('authority serve', ['authority', 'serve', '--socket', dir('authority.sock')]);
    await server.proc.waitFor('stdout', /Authority listening on/);
    await writeFile(dir('t1'), `${t1}\n`, { mode: 0o600 });
    const good = await config(
      'good.yaml',
      botYaml({ token: `file://${dir('t1')}`, storage: dir('bot1'), out: dir('out1') }),
    );
    await cli('start: join', ['start', '-c', good, '--oneshot']);
    await cli('start: renew', ['start', '-c', good, '--oneshot']);
    const unknown = hex(16);
    tokens.push(unknown);
    await cli('start: unknown token', [
      'start',
      '-c',
      await config('unknown.yaml', botYaml({ token: unknown, storage: dir('bot-u'), out: dir('out-u') })),
      '--oneshot',
    ]);
    await cli('start: denied user', [
      'start',
      '-c',
      await config(
        'bob.yaml',
        botYaml({ token: t2, storage: dir('bot2'), out: dir('out2'), username: 'bob' }),
      ),
      '--oneshot',
    ]);
    const base = botYaml({ token: t3, storage: dir('bot3'), out: dir('out3') });
    const wrong: Record<string, string> = {
      'token pasted as a key': base.replace(`token: "${t3}" }`, `"${t3}" }`),
      'token directly under onboarding': base.replace(/onboarding: .*/, `onboarding: ${t3}`),
      'unterminated quote on the token line': base.replace(`token: "${t3}" }`, `token: "${t3} }`),
      'unknown field beside the token': base.replace(`token: "${t3}" }`, `token: "${t3}", secret: "${t3}" }`),
    };
    for (const [what, text] of Object.entries(wrong))
      await cli(`start: wrong config (${what})`, [
        'start',
        '-c',
        await config(`${what}.yaml`, text),
        '--oneshot',
      ]);
    await writeFile(dir('t3'), `${t3}\n`, { mode: 0o600 });
    await cli('start: the token file as the config', ['start', '-c', dir('t3'), '--oneshot']);
    await cli('start: unreachable unix socket', [
      'start',
      '-c',
      await config(
        'unreachable.yaml',
        botYaml({
          token: t4,
          storage: dir('bot4'),
          out: dir('out4'),
          authServer: `unix://${dir('nope.sock')}`,
        }),
      ),
      '--oneshot',
    ]);
    await cli('start: unreachable https', [
      'start',
      '-c',
      await config(
        'unreachable-https.yaml',
        botYaml({
          token: t4,
          storage: dir('bot4'),
          out: dir('out4'),
          authServer: `https://127.0.0.1:${await freePort()}`,
          caPins: [botPin ?? `sha256:${'0'.repeat(64)}`],
        }),
      ),
      '--oneshot',
    ]);
    await sleep(1200); // the 1 s token is now expired
    await cli('start: expired token', [
      'start',
      '-c',
      await config('expired.yaml', botYaml({ token: shortLived, storage: dir('bot6'), out: dir('out6') })),
      '--oneshot',
    ]);
    await cli('locks add', ['locks', 'add', '--bot', 'example', '--reason', 'log scan']);
    await cli('start: locked bot', ['start', '-c', good, '--oneshot']);
    await cli('locks rm', ['locks', 'rm', '--bot', 'example']);
    await mkdir(dir('bot5'), { recursive: true, mode: 0o700 });
    await writeFile(dir('bot5', 'identity.json'), `{"certificatePem": "${t5}", "privateKeyPem": 42}\n`, {
      mode: 0o600,
    });
    await cli('start: corrupt identity', [
      'start',
      '-c',
      await config('corrupt.yaml', botYaml({ token: t5, storage: dir('bot5'), out: dir('out5') })),
      '--oneshot',
    ]);
    await cli('audit', ['audit', '-n', '500']);

    // ---- the proxy ----
    const diag = `127.0.0.1:${await freePort()}`;
    const tunnel = daemon('proxy: tunnel', [
      'proxy',
      'db',
      '--tunnel',
      '--destination-dir',
      dir('out1'),
      '--diag-addr',
      diag,
      SERVICE,
    ]);
    const tunnelPort = await proxyPort(tunnel.proc);
    expect(await tryPg(tunnelPort)).toBeUndefined();
    expect(await tryPg(tunnelPort, { user: 'bob' })).toBeInstanceOf(Error);
    const garbage = await RawSocket.connect(tunnelPort);
    garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await garbage.closeWithin(5000);
    const early = await RawSocket.connect(tunnelPort);
    early.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])); // SSLRequest, then hang up
    await sleep(100);
    early.destroy();
    await cli('proxy healthcheck', ['proxy', 'healthcheck', '--diag-addr', diag]);
    tunnel.proc.child.kill('SIGHUP');
    await sleep(300);
    await tunnel.finish();

    const relay = daemon('proxy: relay', ['proxy', 'db', '--destination-dir', dir('out1'), SERVICE]);
    const relayPort = await proxyPort(relay.proc);
    const files = await readDirectoryOutput(dir('out1'));
    expect(
      await tryPg(relayPort, {
        ssl: {
          ca: files?.files['teleport-host-ca.crt'],
          cert: files?.files.tlscert,
          key: files?.files.key,
          servername: 'localhost',
          rejectUnauthorized: true,
        },
      }),
    ).toBeUndefined();
    await relay.finish();

    await cli('proxy: wrong service', [
      'proxy',
      'db',
      '--tunnel',
      '--destination-dir',
      dir('out1'),
      'other-server',
    ]);
    await cli('proxy healthcheck: nothing there', [
      'proxy',
      'healthcheck',
      '--diag-addr',
      `127.0.0.1:${await freePort()}`,
    ]);

    // A bundle that expired an hour ago, and one whose key does not belong to its certificate.
    const past = new ManualClock(new Date(Date.now() - 3 * 3_600_000));
    const old = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog(), clock: past });
    await old.initialize('old');
    await old.createResources(
      parseResources(await readFile(dir('resources.yaml'), 'utf8'), 'resources.yaml'),
    );
    await old.createResources(parseResources(botResourceYaml(), 'b.yaml'));
    const keys = await generateRsaKeyPair();
    const expiredBundle = await issueBundle(old, { route: { service: SERVICE }, keys });
    await new DirectoryDestination(dir('out-expired')).write(expiredBundle);
    await new DirectoryDestination(dir('out-mismatch')).write({
      ...(files as CredentialBundle),
      files: { ...(files as CredentialBundle).files, key: keys.privateKeyPem },
    });
    await mkdir(dir('out-empty'), { mode: 0o700 });
    for (const which of ['out-expired', 'out-mismatch', 'out-empty']) {
      const p = daemon(`proxy: ${which}`, [
        'proxy',
        'db',
        '--tunnel',
        '--destination-dir',
        dir(which),
        SERVICE,
      ]);
      const port = await proxyPort(p.proc);
      expect(await tryPg(port), which).toBeInstanceOf(Error);
      await p.finish();
    }

    // Secrets Manager as the bundle source, with AWS credentials in the environment.
    sm = await SecretsManagerDouble.start();
    const client = sm.client();
    await client.send(new CreateSecretCommand({ Name: 'broker/example' }));
    await client.send(
      new PutSecretValueCommand({
        SecretId: 'broker/example',
        SecretString: serializeBundle(files as CredentialBundle),
      }),
    );
    client.destroy();
    const awsEnv = {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'ASIALOGSCANPROXY0001',
      AWS_SECRET_ACCESS_KEY: AWS.proxySecretKey,
      AWS_SESSION_TOKEN: AWS.proxySessionToken,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint,
    };
    for (const secret of ['broker/example', 'broker/missing']) {
      const p = daemon(
        `proxy: secret ${secret}`,
        ['proxy', 'db', '--tunnel', '--secret-id', secret, SERVICE],
        awsEnv,
      );
      const port = await proxyPort(p.proc);
      const err = await tryPg(port);
      if (secret === 'broker/example') expect(err).toBeUndefined();
      else expect(err).toBeInstanceOf(Error);
      await p.finish();
    }
    await server.finish();

    // ---- the quick start, and the bot Lambda's iam join ----
    await cli('demo --once', ['demo', '--once', '--dir', dir('demo')]);
    const script = dir('aws-flow.mts');
    await writeFile(script, AWS_FLOW);
    const aws = await run(process.execPath, ['--import', 'tsx', script, dir('aws-bundle.json')], {
      env: {
        BROKER_LOG_LEVEL: 'debug',
        BOT_SECRET: AWS.botSecretKey,
        BOT_SESSION: AWS.botSessionToken,
        OTHER_SECRET: AWS.otherSecretKey,
        WRONG_SECRET: AWS.wrongSecretKey,
        RESOURCES: `${await readFile(dir('resources.yaml'), 'utf8')}---
${botResourceYaml()}---
kind: token
version: v2
metadata: { name: example-bot-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: '111111111111', aws_arn: 'arn:aws:sts::111111111111:assumed-role/example-bot/*' }]
`,
      },
    });
    captured.push({ name: 'bot Lambda (iam join)', ...aws });
  }, 240_000);

  afterAll(async () => {
    for (const p of running)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await sm?.close();
    await postgres?.stop();
    await work?.cleanup();
  });

  const find = (name: string) => {
    const entry = captured.find((c) => c.name === name);
    if (!entry) throw new Error(`no captured run named ${name}`);
    return entry;
  };

  it('ran every path as intended (so that the scan covers successes and failures alike)', () => {
    const expectations: Record<string, number> = {
      init: 0,
      'auth sign': 0,
      'auth export': 0,
      create: 0,
      'create a bad token resource': 1,
      'bots add': 0,
      'start: join': 0,
      'start: renew': 0,
      'start: unknown token': 1,
      'start: denied user': 1,
      'start: wrong config (token pasted as a key)': 1,
      'start: wrong config (token directly under onboarding)': 1,
      'start: wrong config (unterminated quote on the token line)': 1,
      'start: wrong config (unknown field beside the token)': 1,
      'start: the token file as the config': 1,
      'start: unreachable unix socket': 1,
      'start: unreachable https': 1,
      'start: expired token': 1,
      'start: locked bot': 1,
      'start: corrupt identity': 1,
      audit: 0,
      'proxy healthcheck': 0,
      'proxy: tunnel': 0,
      'proxy: relay': 0,
      'proxy: wrong service': 1,
      'proxy healthcheck: nothing there': 1,
      'authority serve': 0,
      'demo --once': 0,
      'bot Lambda (iam join)': 0,
    };
    for (const [name, code] of Object.entries(expectations)) {
      const run = find(name);
      expect(run.code, `${name}\n${run.stdout}\n${run.stderr}`).toBe(code);
    }
    expect(find('start: unknown token').stderr).toMatch(/join refused/);
    expect(find('start: denied user').stdout).toMatch(/not in allow\.db_users/);
    expect(find('start: expired token').stderr).toMatch(/expired/);
    expect(find('start: locked bot').stderr).toMatch(/locked/);
    expect(find('start: corrupt identity').stderr).toMatch(/identity\.json/);
    expect(find('proxy: wrong service').stderr).toMatch(/not "other-server"/);
    expect(find('proxy: out-expired').stderr).toMatch(/expired/);
    expect(find('proxy: out-mismatch').stderr).toMatch(/does not match/);
    expect(find('proxy: secret broker/missing').stderr).toMatch(/ResourceNotFound|not found|no bundle/i);
    const lambda = find('bot Lambda (iam join)').stderr;
    expect(lambda).toMatch(/run good: ok/);
    expect(lambda).toMatch(/run other role: error: .*matches no allow rule/);
    expect(lambda).toMatch(/run wrong secret: error: .*SignatureDoesNotMatch/);
    expect(lambda).toMatch(/run expired: error: .*ExpiredToken/);
    expect(lambda).toMatch(/run good again: ok/);
    expect(captured.length).toBeGreaterThan(40);
  });

  /** Every PEM block in the files a run leaves behind (JSON-escaped ones included), by kind. */
  async function pemsOnDisk(): Promise<{ keys: string[]; certificates: string[] }> {
    const keys = new Set<string>();
    const certificates = new Set<string>();
    const walk = async (at: string): Promise<void> => {
      for (const entry of await readdir(at, { withFileTypes: true })) {
        const p = path.join(at, entry.name);
        if (entry.isDirectory()) {
          if (p !== dir('pg')) await walk(p); // the database cluster itself holds no broker secrets
        } else if (entry.isFile() && (await stat(p)).size < 1_000_000) {
          const text = (await readFile(p, 'utf8')).replace(/\\n/g, '\n');
          for (const m of text.matchAll(/-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/g))
            (m[1]?.includes('PRIVATE KEY') ? keys : certificates).add(m[2] as string);
        }
      }
    };
    await walk(work?.dir as string);
    return { keys: [...keys], certificates: [...certificates] };
  }

  /** The full base64 lines of a PEM body: any one of them in a log means the body leaked. */
  const bodyLines = (body: string) => body.split(/\s+/).filter((l) => l.length >= 40);

  it('no process printed a private-key PEM header or any line of a private key that exists on disk', async () => {
    const { keys } = await pemsOnDisk();
    expect(keys.length).toBeGreaterThan(10); // CA keys, identities, outputs, server keys, the Lambda's bundle
    for (const run of captured) {
      const text = run.stdout + run.stderr;
      expect(text, run.name).not.toMatch(/PRIVATE KEY-----/);
      for (const key of keys)
        for (const line of bodyLines(key)) expect(text.includes(line), run.name).toBe(false);
    }
  });

  it('no process printed a certificate, except `auth export` printing the CA bundle it was asked for', async () => {
    const { certificates } = await pemsOnDisk();
    expect(certificates.length).toBeGreaterThan(10);
    for (const run of captured) {
      const text = run.certificatesOnStdout ? run.stderr : run.stdout + run.stderr;
      expect(text, run.name).not.toMatch(/-----BEGIN CERTIFICATE-----/);
      for (const cert of certificates)
        for (const line of bodyLines(cert)) expect(text.includes(line), run.name).toBe(false);
    }
    expect(find('auth export').stdout).toMatch(/-----BEGIN CERTIFICATE-----/);
  });

  it('no join token appears anywhere but in the one line that hands it out', () => {
    expect(tokens.length).toBeGreaterThanOrEqual(8);
    for (const run of captured) {
      const text = run.tokenOnStdout ? run.stderr : run.stdout + run.stderr;
      for (const token of tokens)
        expect(text.includes(token), `${run.name} printed a join token`).toBe(false);
      if (run.tokenOnStdout) {
        const own = tokens.filter((t) => run.stdout.includes(t));
        expect(own, run.name).toHaveLength(1);
      }
    }
  });

  it('no AWS secret key, session token or SigV4 signature appears in any output', () => {
    for (const run of captured) {
      const text = run.stdout + run.stderr;
      for (const [what, secret] of Object.entries(AWS))
        expect(text.includes(secret), `${run.name}: ${what}`).toBe(false);
      expect(text, run.name).not.toMatch(/Signature=[0-9a-f]{64}/);
      expect(text, run.name).not.toMatch(/X-Amz-Security-Token/i);
    }
  });

  it('JSON log lines censor every secret-named field and hold no token-shaped value in a token field', () => {
    let lines = 0;
    const check = (value: unknown, where: string): void => {
      if (value === null || typeof value !== 'object') return;
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (SECRET_FIELDS.includes(k) && typeof v === 'string')
          expect(v, `${where}: ${k}`).toBe('[REDACTED]');
        if (/token/i.test(k) && typeof v === 'string')
          expect(v, `${where}: ${k}`).not.toMatch(/[0-9a-f]{32}/);
        check(v, where);
      }
    };
    for (const run of captured)
      for (const line of `${run.stdout}\n${run.stderr}`.split('\n')) {
        if (!line.startsWith('{')) continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          continue;
        }
        lines++;
        check(parsed, `${run.name}: ${line.slice(0, 200)}`);
      }
    expect(lines).toBeGreaterThan(100);
  });
});
