/**
 * Issue 13, finding 9: a secret typed into the wrong argument must not come back in an error line. Every
 * error the CLI prints (its own `ERROR:` lines, commander's usage errors, the BROKER_DEBUG stack), the proxy
 * container's entry (the same CLI) and the Lambda entry points' thrown errors go through `redact`.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { handler as botHandler } from '../../functions/bot.js';
import { argvFromEnv } from '../../proxy-container/main.js';
import { runCli } from '../../src/cli/main.js';
import { testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

/** A join token as `broker bots add` prints it: 32 hex characters. */
const TOKEN = '5f2b9c0e7a4d4e1f8c3b6a9d2e7f1c04';
let PEM: string;
let PEM_BODY: string;

beforeAll(async () => {
  PEM = (await testKeyPair(0)).privateKeyPem;
  PEM_BODY = PEM.split('\n')[1] as string;
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await removeTempDirs();
});

/** Runs the CLI in-process; returns its exit code and everything it wrote to stderr. */
async function cli(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  const chunks: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    return { code: await runCli(args), stderr: chunks.join('') };
  } finally {
    vi.restoreAllMocks();
  }
}

function expectScrubbed(stderr: string, secret: string): void {
  expect(stderr).not.toBe('');
  expect(stderr).not.toContain(secret);
  expect(stderr).toContain('[REDACTED');
}

describe('CLI errors never echo a join token', () => {
  it.each([
    ['--port', ['proxy', 'db', '--destination-dir', '/nonexistent', '--port', TOKEN, 'svc']],
    ['a kind', ['--state-dir', '/nonexistent', 'get', TOKEN]],
    ['--state-dir', ['--state-dir', `/nonexistent/${TOKEN}`, 'tokens', 'ls']],
    [
      '--diag-addr',
      ['proxy', 'db', '--destination-dir', '/nonexistent', '--diag-addr', `${TOKEN}:9090`, 'svc'],
    ],
  ])('a token given as %s', async (_where, args) => {
    const r = await cli(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^ERROR: /);
    expectScrubbed(r.stderr, TOKEN);
  });

  it.each([
    ['an unknown option', ['proxy', 'db', `--${TOKEN}`]],
    ['an unknown command', [TOKEN]],
    ['an unknown subcommand', ['tokens', TOKEN]],
  ])("in commander's usage error for %s", async (_what, args) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: /);
    expectScrubbed(r.stderr, TOKEN);
  });

  it('in the BROKER_DEBUG stack trace', async () => {
    vi.stubEnv('BROKER_DEBUG', '1');
    const dir = await makeTempDir();
    const r = await cli(['--state-dir', `${dir}/${TOKEN}`, 'status']);
    expect(r.code).toBe(1);
    expectScrubbed(r.stderr, TOKEN);
  });

  it("in the proxy container's errors (BROKER_* variables become arguments)", async () => {
    const argv = argvFromEnv(
      { BROKER_BUNDLE_SECRET_ID: 'broker/example', BROKER_SERVICE: 'svc', BROKER_PROXY_PORT: TOKEN },
      [],
    );
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expectScrubbed(r.stderr, TOKEN);
  });
});

describe('CLI errors never echo a private key', () => {
  it.each([
    [
      '--max-sigterm-delay',
      () => ['proxy', 'db', '--destination-dir', '/x', '--max-sigterm-delay', PEM, 'svc'],
    ],
    ['--idle-timeout', () => ['proxy', 'db', '--destination-dir', '/x', '--idle-timeout', PEM, 'svc']],
    ['an unknown option', () => ['proxy', 'db', PEM]],
    ['a kind', () => ['--state-dir', '/nonexistent', 'get', PEM]],
  ])('a PEM key given as %s', async (_where, args) => {
    const r = await cli(args());
    expect(r.code).not.toBe(0);
    expectScrubbed(r.stderr, PEM_BODY);
    expect(r.stderr).not.toContain('BEGIN PRIVATE KEY');
  });
});

describe('Lambda entry points throw scrubbed errors', () => {
  it('the bot function: a token pasted into the bot config', async () => {
    vi.stubEnv('BROKER_AUTHORITY_FUNCTION', 'broker-authority');
    vi.stubEnv('BROKER_STACK_NAME', 'Broker');
    vi.stubEnv('AWS_REGION', 'eu-west-1');
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'ASIATESTREDACTION001');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test-secret-access-key');
    vi.stubEnv(
      'BROKER_BOT_CONFIG',
      `version: v2\nauth_server: unix:///x\nonboarding: { join_method: iam, token: example-bot-iam }\nstorage: { type: memory }\noutputs: [{ type: "${TOKEN}" }]\n`,
    );
    const err = await Promise.resolve()
      .then(() => botHandler())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/outputs\.0\.type/);
    expectScrubbed(`${(err as Error).message}\n${(err as Error).stack}`, TOKEN);
  });
});
