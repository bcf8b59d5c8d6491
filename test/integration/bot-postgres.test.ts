/**
 * The bot end to end: a real PostgreSQL server that trusts the authority, the authority served over a real
 * unix socket (and loopback HTTPS), and the bot's rendered files used by the `pg` driver with verify-full,
 * checked with `openssl`, read by a concurrent reader process during renewals, and driven through the CLI.
 * Fails with an install message when the PostgreSQL server binaries are missing.
 */
import { spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { access, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { AuthorityUnavailableError } from '../../src/api/errors.js';
import { type RunningAuthorityServer, startAuthorityServer } from '../../src/api/server.js';
import { HttpTransport } from '../../src/api/transports.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import { DirectoryIdentityStore } from '../../src/bot/identity-store.js';
import { createBot } from '../../src/bot/runtime.js';
import { systemClock } from '../../src/clock.js';
import { ConfigError } from '../../src/config/errors.js';
import { DirectoryDestination } from '../../src/destinations/directory.js';
import { type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { caPin } from '../../src/pki/parse.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { exampleResourcesYaml, REPO_ROOT } from '../support/fixtures.js';
import { requirePostgres } from '../support/postgres.js';
import { run } from '../support/run.js';
import { tempDir } from '../support/temp.js';

const CLI = path.join(REPO_ROOT, 'dist/broker.mjs');

const BOTS = ['example', 'example-formats', 'example-https', 'example-cli'];

/** The example (its role without a session cap) on the test server, with one bot per scenario. */
const RESOURCES = (port: number) =>
  exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: `localhost:${port}` }, bots: BOTS });

interface OutputSpec {
  dir: string;
  format?: '' | 'tls' | 'mongo' | 'cockroach';
  username?: string;
}

/** A bot configuration as a user writes it (YAML), parsed by the real parser. */
function botYaml(opts: {
  authServer: string;
  token: string;
  storage: string;
  outputs: OutputSpec[];
  caPins?: string[];
}): string {
  return `version: v2
auth_server: ${opts.authServer}
${opts.caPins ? `ca_pins: [${opts.caPins.join(', ')}]\n` : ''}onboarding: { join_method: token, token: ${JSON.stringify(opts.token)} }
storage: ${opts.storage}
credential_ttl: 1h
renewal_interval: 20m
outputs:
${opts.outputs
  .map(
    (o) => `  - type: database
    destination: { type: directory, path: ${JSON.stringify(o.dir)} }
    service: example-server
    database: example
    username: ${o.username ?? 'alice'}
    format: "${o.format ?? ''}"`,
  )
  .join('\n')}
`;
}

/** A logger that keeps the bot's JSON lines in memory (and off the test output). */
function memoryLog() {
  const lines: string[] = [];
  return { log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }), lines };
}

describe('the bot with a real PostgreSQL and the authority over its API', () => {
  const audit = new MemoryAuditLog();
  const authority = new Authority({ store: new MemoryStateStore(), audit });
  let postgres: StartedPostgres | undefined;
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;
  let socketServer: RunningAuthorityServer | undefined;
  let serverCertPem = '';
  const dir = (...parts: string[]) => path.join(work!.dir, ...parts);
  const port = () => {
    if (!postgres) throw new Error('the PostgreSQL server did not start (see beforeAll)');
    return postgres.port;
  };

  /** Connects as `user` with verify-full, reading the credentials from `files` (paths) as a client would. */
  async function connect(
    files: { ca: string; cert: string; key: string },
    user = 'alice',
  ): Promise<pg.Client> {
    const client = new pg.Client({
      host: 'localhost',
      port: port(),
      database: 'example',
      user,
      connectionTimeoutMillis: 10_000,
      ssl: {
        ca: await readFile(files.ca, 'utf8'),
        cert: await readFile(files.cert, 'utf8'),
        key: await readFile(files.key, 'utf8'),
        rejectUnauthorized: true,
        servername: 'localhost',
      },
    });
    client.on('error', () => undefined);
    // No end() after a failed connect: pg can wait forever on a socket the server already refused.
    await client.connect();
    return client;
  }

  /** current_user and the serial of the client certificate the server saw, for the default-format files. */
  async function whoAmI(files: { ca: string; cert: string; key: string }) {
    const client = await connect(files);
    try {
      const { rows } = await client.query<{ user: string; serial: string; ssl: boolean }>(
        'SELECT current_user AS user, s.ssl, s.client_serial::text AS serial FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()',
      );
      return rows[0]!;
    } finally {
      await client.end();
    }
  }

  const defaultFiles = (out: string) => ({
    ca: path.join(out, 'teleport-host-ca.crt'),
    cert: path.join(out, 'tlscert'),
    key: path.join(out, 'key'),
  });

  // RSA-2048 generation takes ~300 ms here; the renewal test draws from keys made while PostgreSQL starts.
  let keyPool: Promise<KeyPairPem[]> = Promise.resolve([]);

  beforeAll(async () => {
    await requirePostgres(); // fails (does not skip) with the install command when the server is missing
    keyPool = Promise.all(Array.from({ length: 8 }, () => generateRsaKeyPair()));
    keyPool.catch(() => undefined);
    work = await tempDir('bot-pg');
    await authority.initialize('integration');
    const signed = await authority.signDatabaseServer(['localhost'], { service: 'example-server' });
    serverCertPem = signed.certificatePem;
    postgres = await startPostgres({
      baseDir: dir('pg'),
      tls: {
        serverCertPem: signed.certificatePem,
        serverKeyPem: signed.privateKeyPem,
        clientCaPem: signed.clientCaPem,
      },
      users: ['alice', 'bob'],
      databases: ['example'],
    });
    await authority.createResources(parseResources(RESOURCES(postgres.port), 'resources.yaml'));
    socketServer = await startAuthorityServer({ authority, socketPath: dir('authority.sock') });
    await writeFile(dir('db-client-ca.crt'), await authority.dbClientCaBundle('example-server'));
    await writeFile(dir('server.crt'), serverCertPem);
  });

  afterAll(async () => {
    await socketServer?.close();
    await postgres?.stop();
    await work?.cleanup();
  });

  describe('the default output over the unix socket', () => {
    let config: BotConfig;
    let bot: ReturnType<typeof createBot>;
    let firstSerial = '';
    let token = '';
    const logs = memoryLog();

    beforeAll(async () => {
      token = (await authority.addToken('example')).token;
      config = parseBotConfig(
        botYaml({
          authServer: socketServer!.address,
          token: 'env://BROKER_TEST_TOKEN',
          storage: `{ type: directory, path: ${JSON.stringify(dir('example-storage'))} }`,
          outputs: [{ dir: dir('out-default') }],
        }),
        'bot.yaml',
      );
      bot = createBot(config, { log: logs.log, env: { BROKER_TEST_TOKEN: token } });
    });

    it('logs alice in with verify-full using tlscert, key and teleport-host-ca.crt', async () => {
      expect(socketServer!.address).toBe(`unix://${dir('authority.sock')}`);
      expect((await stat(dir('authority.sock'))).mode & 0o777).toBe(0o600);
      const [result] = await bot.runCycle();
      expect(result, result?.error).toMatchObject({ ok: true });
      firstSerial = result!.serial!;
      const out = dir('out-default');
      for (const name of ['tlscert', 'key', 'teleport-host-ca.crt', 'teleport-database-ca.crt'])
        expect((await stat(path.join(out, name))).mode & 0o777, name).toBe(0o600);
      const who = await whoAmI(defaultFiles(out));
      expect(who.user).toBe('alice');
      expect(who.ssl).toBe(true);
      expect(BigInt(who.serial)).toBe(BigInt(`0x${firstSerial}`));
      expect(logs.lines.join('')).not.toContain(token);
    });

    it('renews: a reader process never sees a certificate with the wrong key, and PostgreSQL sees the new serial', async () => {
      const out = dir('out-default');
      // A careful client: read tlscert, key, tlscert again; only an unchanged certificate makes a pair.
      const reader = `
        const fs = require('node:fs');
        const crypto = require('node:crypto');
        const path = require('node:path');
        const dir = process.argv[1];
        let accepted = 0, mismatched = 0, retried = 0, errors = 0, stop = false, ready = false;
        const seen = new Set();
        process.stdin.on('end', () => { stop = true; });
        process.stdin.resume();
        function step() {
          for (let i = 0; i < 5 && !stop; i++) {
            try {
              const first = fs.readFileSync(path.join(dir, 'tlscert'), 'utf8');
              const key = fs.readFileSync(path.join(dir, 'key'), 'utf8');
              const again = fs.readFileSync(path.join(dir, 'tlscert'), 'utf8');
              if (first !== again) { retried++; continue; }
              accepted++;
              seen.add(first);
              const ok = new crypto.X509Certificate(first).checkPrivateKey(crypto.createPrivateKey(key));
              if (!ok) mismatched++;
            } catch (err) {
              errors++;
              if (errors < 5) process.stderr.write(String(err) + '\\n');
            }
          }
          if (!ready && accepted > 0) { ready = true; process.stdout.write('ready\\n'); }
          if (stop) {
            process.stdout.write(JSON.stringify({ accepted, mismatched, retried, errors, distinct: seen.size }) + '\\n');
            return;
          }
          // A short pause between bursts leaves the CPU to the bot (key generation) on small machines.
          setTimeout(step, 1);
        }
        step();
      `;
      const child = spawn(process.execPath, ['-e', reader, out], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      // The same bot after a restart (it renews from its stored identity), with keys from the pool: any two
      // consecutive issuances have different keys, so a certificate beside the wrong key would show.
      const keys = await keyPool;
      let next = 0;
      const renewing = new Bot({
        config,
        client: new AuthorityClient(new HttpTransport(config.auth_server), systemClock),
        identityStore: new DirectoryIdentityStore(dir('example-storage')),
        destinationFor: () => new DirectoryDestination(out),
        joinToken: async () => {
          throw new Error('the bot should renew from its stored identity, not join');
        },
        clock: systemClock,
        log: logs.log,
        generateKeyPair: async () => keys[next++ % keys.length]!,
      });
      const serials: string[] = [];
      try {
        const deadline = Date.now() + 10_000;
        while (!stdout.includes('ready') && Date.now() < deadline && child.exitCode === null)
          await new Promise((r) => setTimeout(r, 10));
        expect(stdout, stderr).toContain('ready');
        for (let i = 0; i < 20; i++) {
          const [result] = await renewing.runCycle();
          expect(result, result?.error).toMatchObject({ ok: true });
          serials.push(result!.serial!);
        }
      } finally {
        child.stdin.end();
      }
      expect(await exited, stderr).toBe(0);
      const counts = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, number>;
      expect(counts.mismatched, JSON.stringify(counts)).toBe(0);
      expect(counts.errors, `${JSON.stringify(counts)} ${stderr}`).toBe(0);
      expect(counts.accepted).toBeGreaterThan(0);
      // The reader really overlapped the renewals: it saw many of the 21 issuances.
      expect(counts.distinct, JSON.stringify(counts)).toBeGreaterThanOrEqual(10);

      expect(new Set([firstSerial, ...serials]).size).toBe(21);
      const who = await whoAmI(defaultFiles(out));
      expect(BigInt(who.serial)).toBe(BigInt(`0x${serials.at(-1)}`));
      expect(BigInt(who.serial)).not.toBe(BigInt(`0x${firstSerial}`));
      const state = (await authority.listBots()).find((b) => b.metadata.name === 'example');
      expect(state?.status.generation).toBe(21);
    }, 60_000);
  });

  describe('the tls, mongo and cockroach formats', () => {
    const openssl = (...args: string[]) => run('openssl', args);

    /** The SPKI PEM of a certificate (first one in the file) and of a private key (first one in the file). */
    async function publicKeys(certFile: string, keyFile: string) {
      const fromCert = await openssl('x509', '-noout', '-pubkey', '-in', certFile);
      const fromKey = await openssl('pkey', '-pubout', '-in', keyFile);
      expect(fromCert.code, fromCert.stderr).toBe(0);
      expect(fromKey.code, fromKey.stderr).toBe(0);
      return { fromCert: fromCert.stdout, fromKey: fromKey.stdout };
    }

    async function expectClientCertificate(certFile: string): Promise<void> {
      const subject = await openssl('x509', '-noout', '-subject', '-in', certFile);
      expect(subject.code, subject.stderr).toBe(0);
      expect(subject.stdout).toMatch(/CN ?= ?alice\b/);
      const verify = await openssl(
        'verify',
        '-purpose',
        'sslclient',
        '-CAfile',
        dir('db-client-ca.crt'),
        certFile,
      );
      expect(verify.code, verify.stderr).toBe(0);
      expect(verify.stdout).toContain(': OK');
    }

    async function expectVerifiesServer(caFile: string): Promise<void> {
      const verify = await openssl(
        'verify',
        '-purpose',
        'sslserver',
        '-verify_hostname',
        'localhost',
        '-CAfile',
        caFile,
        dir('server.crt'),
      );
      expect(verify.code, verify.stderr).toBe(0);
    }

    async function expectRsaKey(keyFile: string): Promise<void> {
      const check = await openssl('rsa', '-check', '-noout', '-in', keyFile);
      expect(check.code, check.stderr).toBe(0);
      expect(check.stdout).toContain('RSA key ok');
    }

    beforeAll(async () => {
      const { token } = await authority.addToken('example-formats');
      const config = parseBotConfig(
        botYaml({
          authServer: socketServer!.address,
          token,
          storage: '{ type: memory }',
          outputs: [
            { dir: dir('out-tls'), format: 'tls' },
            { dir: dir('out-mongo'), format: 'mongo' },
            { dir: dir('out-cockroach'), format: 'cockroach' },
          ],
        }),
        'bot.yaml',
      );
      const results = await createBot(config, { log: memoryLog().log }).runCycle();
      expect(results.map((r) => [r.ok, r.error])).toEqual([
        [true, undefined],
        [true, undefined],
        [true, undefined],
      ]);
    });

    const visible = async (d: string) => (await readdir(d)).filter((e) => !e.startsWith('.')).sort();
    const DEFAULTS = ['key', 'teleport-database-ca.crt', 'teleport-host-ca.crt', 'tlscert'];

    it('tls: tls.crt is alice signed by the client CA, tls.key its RSA key, tls.cas verifies the server', async () => {
      const out = dir('out-tls');
      expect(await visible(out)).toEqual([...DEFAULTS, 'tls.cas', 'tls.crt', 'tls.key'].sort());
      await expectClientCertificate(path.join(out, 'tls.crt'));
      await expectRsaKey(path.join(out, 'tls.key'));
      const keys = await publicKeys(path.join(out, 'tls.crt'), path.join(out, 'tls.key'));
      expect(keys.fromKey).toBe(keys.fromCert);
      await expectVerifiesServer(path.join(out, 'tls.cas'));
      // A client configured with the tls names logs in.
      const client = await connect({
        ca: path.join(out, 'tls.cas'),
        cert: path.join(out, 'tls.crt'),
        key: path.join(out, 'tls.key'),
      });
      try {
        const { rows } = await client.query<{ current_user: string }>('SELECT current_user');
        expect(rows[0]?.current_user).toBe('alice');
      } finally {
        await client.end();
      }
    });

    it('mongo: mongo.crt holds the certificate and its key, mongo.cas verifies the server', async () => {
      const out = dir('out-mongo');
      expect(await visible(out)).toEqual([...DEFAULTS, 'mongo.cas', 'mongo.crt'].sort());
      const mongo = path.join(out, 'mongo.crt');
      const text = await readFile(mongo, 'utf8');
      expect(text.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(1);
      expect(text.match(/-----BEGIN PRIVATE KEY-----/g)).toHaveLength(1);
      expect(text.indexOf('BEGIN CERTIFICATE')).toBeLessThan(text.indexOf('BEGIN PRIVATE KEY'));
      await expectClientCertificate(mongo);
      await expectRsaKey(mongo);
      const keys = await publicKeys(mongo, mongo);
      expect(keys.fromKey).toBe(keys.fromCert);
      expect(new X509Certificate(text).checkPrivateKey(createPrivateKey(text))).toBe(true);
      await expectVerifiesServer(path.join(out, 'mongo.cas'));
    });

    it('cockroach: cockroach/node.crt, node.key and ca.crt', async () => {
      const out = dir('out-cockroach');
      expect(await visible(out)).toEqual([...DEFAULTS, 'cockroach'].sort());
      expect((await readdir(path.join(out, 'cockroach'))).sort()).toEqual(['ca.crt', 'node.crt', 'node.key']);
      const crt = path.join(out, 'cockroach/node.crt');
      const key = path.join(out, 'cockroach/node.key');
      await expectClientCertificate(crt);
      await expectRsaKey(key);
      const keys = await publicKeys(crt, key);
      expect(keys.fromKey).toBe(keys.fromCert);
      await expectVerifiesServer(path.join(out, 'cockroach/ca.crt'));
      expect((await stat(key)).mode & 0o777).toBe(0o600);
      expect((await stat(path.join(out, 'cockroach'))).mode & 0o777).toBe(0o700);
    });

    it('every format also has the default artifacts, consistent with its own files', async () => {
      for (const [d, cert] of [
        ['out-tls', 'tls.crt'],
        ['out-mongo', 'mongo.crt'],
        ['out-cockroach', 'cockroach/node.crt'],
      ] as const) {
        const own = new X509Certificate(await readFile(dir(d, cert), 'utf8'));
        const tlscert = new X509Certificate(await readFile(dir(d, 'tlscert'), 'utf8'));
        expect(tlscert.serialNumber, d).toBe(own.serialNumber);
        await expectVerifiesServer(dir(d, 'teleport-host-ca.crt'));
      }
    });
  });

  describe('loopback HTTPS with pinned CAs', () => {
    let https: RunningAuthorityServer | undefined;
    afterAll(async () => {
      await https?.close();
    });

    it('joins with the right pin, and refuses a wrong pin without sending the token', async () => {
      https = await startAuthorityServer({ authority, listen: '127.0.0.1:0' });
      expect(https.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const { token, id } = await authority.addToken('example-https');
      const configWith = (pins: string[], out: string) =>
        parseBotConfig(
          botYaml({
            authServer: https!.address,
            token,
            storage: '{ type: memory }',
            outputs: [{ dir: out }],
            caPins: pins,
          }),
          'bot.yaml',
        );

      const wrongPin = caPin(await authority.caBundle('db-client'));
      const refused = await createBot(configWith([wrongPin], dir('out-https-wrong')), {
        log: memoryLog().log,
      })
        .runCycle()
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AuthorityUnavailableError);
      expect((refused as Error).message).toContain('ca_pins');
      expect((refused as Error).message).toContain(https.address);
      // The token never reached the authority: it is still unspent.
      expect((await authority.listTokens()).map((t) => t.id)).toContain(id);
      await expect(access(dir('out-https-wrong', '.current'))).rejects.toThrow(/ENOENT/);

      const rightPin = caPin(await authority.caBundle('bot'));
      const [result] = await createBot(configWith([wrongPin, rightPin], dir('out-https')), {
        log: memoryLog().log,
      }).runCycle();
      expect(result, result?.error).toMatchObject({ ok: true });
      expect((await authority.listTokens()).map((t) => t.id)).not.toContain(id);
      const who = await whoAmI(defaultFiles(dir('out-https')));
      expect(BigInt(who.serial)).toBe(BigInt(`0x${result!.serial}`));
    });

    it('refuses an https auth_server without ca_pins', () => {
      const config = parseBotConfig(
        botYaml({
          authServer: 'https://127.0.0.1:3025',
          token: 'x',
          storage: '{ type: memory }',
          outputs: [{ dir: dir('unused') }],
        }),
        'bot.yaml',
      );
      expect(() => createBot(config, { log: memoryLog().log })).toThrow(ConfigError);
      expect(() => createBot(config, { log: memoryLog().log })).toThrow(/needs ca_pins/);
    });

    it('refuses to listen on a non-loopback address without unsafeListen', async () => {
      for (const listen of ['0.0.0.0:0', '[::]:0', '192.0.2.10:0']) {
        const attempt = startAuthorityServer({ authority, listen });
        await expect(attempt, listen).rejects.toThrow(ConfigError);
        await expect(startAuthorityServer({ authority, listen }), listen).rejects.toThrow(
          /not a loopback address; pass --unsafe-listen/,
        );
      }
    });
  });

  describe('the broker CLI', () => {
    const cli = (...args: string[]) =>
      run(process.execPath, [CLI, ...args], { env: { BROKER_LOG_LEVEL: 'info' } });
    let token = '';

    beforeAll(async () => {
      await access(CLI).catch(() => {
        throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run test:integration does)`);
      });
      token = (await authority.addToken('example-cli')).token;
      await writeFile(dir('cli-token'), `${token}\n`, { mode: 0o600 });
      const storage = `{ type: directory, path: ${JSON.stringify(dir('cli-storage'))} }`;
      const common = { authServer: socketServer!.address, token: `file://${dir('cli-token')}`, storage };
      await writeFile(dir('cli-bot.yaml'), botYaml({ ...common, outputs: [{ dir: dir('out-cli') }] }));
      await writeFile(
        dir('cli-bob.yaml'),
        botYaml({ ...common, outputs: [{ dir: dir('out-cli-bob'), username: 'bob' }] }),
      );
    });

    it('start --oneshot renders the output, prints its serial and exits 0', async () => {
      const result = await cli('start', '-c', dir('cli-bot.yaml'), '--oneshot');
      expect(result.code, result.stderr).toBe(0);
      const match =
        /^ok\s+alice@example-server\/example -> directory \S+\s+serial ([0-9a-f]+)\s+expires \S+$/m.exec(
          result.stdout,
        );
      expect(match, result.stdout).not.toBeNull();
      const onDisk = new X509Certificate(await readFile(dir('out-cli', 'tlscert'), 'utf8'));
      expect(BigInt(`0x${onDisk.serialNumber}`)).toBe(BigInt(`0x${match![1]}`));
      const who = await whoAmI(defaultFiles(dir('out-cli')));
      expect(who.user).toBe('alice');
      // Logs are JSON on stderr and never hold the token.
      expect(result.stderr).toContain('"msg":"joined the authority"');
      expect(result.stderr + result.stdout).not.toContain(token);
    });

    it('start --oneshot with a user the role does not allow exits 1 with the denial reason', async () => {
      const result = await cli('start', '-c', dir('cli-bob.yaml'), '--oneshot');
      expect(result.code, result.stdout).toBe(1);
      const reason = 'database user "bob" is not in allow.db_users';
      expect(result.stdout).toMatch(
        /^FAILED\s+bob@example-server\/example -> directory \S+: access to bob@/m,
      );
      expect(result.stdout).toContain(reason);
      expect(result.stderr).toMatch(
        /ERROR: 1 of 1 output\(s\) failed; previous credentials were left in place/,
      );
      // The JSON log on stderr carries the reason too.
      const logged = result.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: string; msg: string });
      expect(logged.some((l) => l.level === 'error' && l.msg.includes(reason))).toBe(true);
      await expect(access(dir('out-cli-bob', '.current'))).rejects.toThrow(/ENOENT/);
    });

    it('exits 2 on usage errors and 1 on a missing configuration file', async () => {
      const noConfig = await cli('start');
      expect(noConfig.code).toBe(2);
      expect(noConfig.stderr).toMatch(/no configuration: give -c, --config <file>/);
      const unknownOption = await cli('start', '-c', dir('cli-bot.yaml'), '--oneshto');
      expect(unknownOption.code).toBe(2);
      expect(unknownOption.stderr).toMatch(/unknown option '--oneshto'/);
      const unknownCommand = await cli('strat');
      expect(unknownCommand.code).toBe(2);
      expect(unknownCommand.stderr).toMatch(/unknown command 'strat'/);
      const missing = await cli('start', '-c', dir('nope.yaml'), '--oneshot');
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`cannot read bot configuration ${dir('nope.yaml')}`);
    });

    it('demo --once runs the README quick start and connects as alice', async () => {
      const result = await cli('demo', '--once', '--dir', dir('demo'));
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(
        /Connected to PostgreSQL as alice over TLSv1\.[23] with certificate serial [0-9a-f]{32} \(sslmode=verify-full\)/,
      );
      expect(result.stdout).toMatch(/and as bob\? access to bob@example-server\/example denied/);
    }, 60_000);
  });
});
