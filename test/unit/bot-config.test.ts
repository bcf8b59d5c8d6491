import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type BotConfig, loadBotConfig, parseBotConfig, resolveToken } from '../../src/bot/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const TOKEN = '5f0c1e9a7b3d4c2e8f6a1b0d9c7e5f3a';

/** A minimal valid configuration; `extra` lines are appended to the top level, `outputExtra` to the output. */
function config(options: { top?: string; output?: string; token?: string } = {}): string {
  return `version: v2
auth_server: unix:///run/broker/authority.sock
onboarding:
  join_method: token
  token: ${options.token ?? TOKEN}
storage: { type: memory }
${options.top ?? ''}
outputs:
  - type: database
    destination: { type: directory, path: /var/lib/broker/out }
    service: example-server
    database: example
    username: alice
${options.output ?? ''}
`;
}

function configError(text: string, file = 'bot.yaml'): ConfigError {
  try {
    parseBotConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('the configuration should have been refused');
}

describe('parseBotConfig: the example and the defaults', () => {
  it('parses examples/bot.yaml as written', async () => {
    const file = path.join(REPO_ROOT, 'examples/bot.yaml');
    const cfg = await loadBotConfig(file);
    expect(cfg).toMatchObject({
      version: 'v2',
      onboarding: { join_method: 'token', token: 'file://var/bot/join-token' },
      storage: { type: 'directory', path: 'var/bot/storage' },
      credential_ttl: 3_600_000,
      renewal_interval: 20 * 60_000,
      oneshot: false,
    });
    expect(cfg.outputs).toEqual([
      {
        type: 'database',
        destination: { type: 'directory', path: 'var/out/example', readers: 'owner', aclReaders: [] },
        service: 'example-server',
        database: 'example',
        username: 'alice',
        format: '',
        origin: 'outputs.0',
      },
    ]);
  });

  it('defaults to credential_ttl 1h, renewal_interval 20m, no ca_pins, default format, owner-only files', () => {
    const cfg: BotConfig = parseBotConfig(config(), 'bot.yaml');
    expect(cfg.credential_ttl).toBe(3_600_000);
    expect(cfg.renewal_interval).toBe(1_200_000);
    expect(cfg.ca_pins).toEqual([]);
    expect(cfg.oneshot).toBe(false);
    expect(cfg.outputs[0]).toMatchObject({ format: '' });
    expect(cfg.outputs[0]?.destination).toEqual({
      type: 'directory',
      path: '/var/lib/broker/out',
      readers: 'owner',
      aclReaders: [],
    });
    expect(cfg.outputs[0]?.credential_ttl).toBeUndefined();
    expect(cfg.outputs[0]?.renewal_interval).toBeUndefined();
  });

  it('reads durations and per-output overrides in milliseconds', () => {
    const cfg = parseBotConfig(
      config({
        top: 'credential_ttl: 2h\nrenewal_interval: 30m',
        output: '    credential_ttl: 10m\n    renewal_interval: 90s\n    format: tls',
      }),
      'bot.yaml',
    );
    expect(cfg.credential_ttl).toBe(2 * 3_600_000);
    expect(cfg.renewal_interval).toBe(30 * 60_000);
    expect(cfg.outputs[0]).toMatchObject({
      credential_ttl: 600_000,
      renewal_interval: 90_000,
      format: 'tls',
    });
  });

  it('refuses a file that cannot be read, naming it', async () => {
    const missing = path.join(await makeTempDir(), 'nope.yaml');
    await expect(loadBotConfig(missing)).rejects.toThrow(ConfigError);
    await expect(loadBotConfig(missing)).rejects.toThrow(missing);
  });
});

describe('parseBotConfig: renewal after expiry is warned about, as tbot does', () => {
  it('warns (does not refuse) about renewal_interval equal to credential_ttl, naming both values', () => {
    const cfg = parseBotConfig(config({ top: 'credential_ttl: 1h\nrenewal_interval: 1h' }), 'bot.yaml');
    expect(cfg.warnings.join('\n')).toMatch(
      /renewal_interval: renewal_interval \(1h0m0s\) is not shorter than credential_ttl \(1h0m0s\)/,
    );
  });

  it('refuses it in AWS mode (iam join or Secrets Manager storage), where no one reads a warning', () => {
    const err = configError(
      config({ top: 'renewal_interval: 2h' }).replace('join_method: token', 'join_method: iam'),
    );
    expect(err.message).toMatch(
      /renewal_interval: renewal_interval \(2h0m0s\) must be shorter than credential_ttl \(1h0m0s\)/,
    );
  });

  it('says nothing in oneshot mode, where nothing is renewed', () => {
    const cfg = parseBotConfig(config({ top: 'renewal_interval: 2h\noneshot: true' }), 'bot.yaml');
    expect(cfg.warnings).toEqual([]);
  });

  it('warns about a per-output pair, naming the output path', () => {
    const cfg = parseBotConfig(
      config({ output: '    credential_ttl: 15m\n    renewal_interval: 30m' }),
      'bot.yaml',
    );
    expect(cfg.warnings).toEqual([
      expect.stringContaining(
        'outputs.0.renewal_interval: renewal_interval (30m0s) is not shorter than credential_ttl (15m0s)',
      ),
    ]);
  });

  it('refuses an output that sets credential_ttl without renewal_interval (or the reverse), as tbot does', () => {
    const err = configError(config({ output: '    credential_ttl: 10m' }));
    expect(err.message).toContain(
      'outputs.0.credential_ttl: an output sets credential_ttl and renewal_interval together or neither',
    );
    expect(configError(config({ output: '    renewal_interval: 10m' })).message).toContain(
      'outputs.0.renewal_interval: an output sets credential_ttl and renewal_interval together or neither',
    );
  });

  it('accepts an output whose own interval fits its own TTL', () => {
    const cfg = parseBotConfig(
      config({ output: '    credential_ttl: 10m\n    renewal_interval: 5m' }),
      'bot.yaml',
    );
    expect(cfg.outputs[0]).toMatchObject({ credential_ttl: 600_000, renewal_interval: 300_000 });
  });

  it('refuses something that is not a duration, saying what one looks like', () => {
    const err = configError(config({ top: 'credential_ttl: soon' }));
    expect(err.message).toContain('credential_ttl');
    expect(err.message).toContain('"20m" or "1h"');
    expect(err.message).toContain('"soon"');
    expect(configError(config({ top: 'renewal_interval: 0s' })).message).toContain('renewal_interval');
  });
});

describe('parseBotConfig: the Secrets Manager version quota', () => {
  const RULE =
    'Secrets Manager keeps every version of a secret younger than 24 hours and advises at most one write per secret per 10 minutes';
  const toSecret = (text: string) =>
    text.replace(
      'destination: { type: directory, path: /var/lib/broker/out }',
      'destination: { type: secretsmanager, name: broker/out }',
    );

  it('refuses a secretsmanager output renewed more often than every 10 minutes, naming path, value and rule', () => {
    const top = configError(toSecret(config({ top: 'renewal_interval: 9m' })));
    expect(top.message).toContain(
      `renewal_interval: renewal_interval (9m0s) writes secret "broker/out" more often than every 10m0s: ${RULE}; use at least 10m, or a directory destination`,
    );
    const own = configError(toSecret(config({ output: '    renewal_interval: 5m' })));
    expect(own.message).toContain(
      'outputs.0.renewal_interval: renewal_interval (5m0s) writes secret "broker/out"',
    );
    expect(own.message).toContain(RULE);
  });

  it('refuses a secretsmanager storage when any cycle comes sooner than 10 minutes', () => {
    const storage = (extra: { top?: string; output?: string }) =>
      config(extra).replace(
        'storage: { type: memory }',
        'storage: { type: secretsmanager, name: broker/id }',
      );
    expect(configError(storage({ top: 'renewal_interval: 5m' })).message).toContain(
      `renewal_interval: renewal_interval (5m0s) writes the identity to storage secret "broker/id" (once per cycle) more often than every 10m0s: ${RULE}`,
    );
    // A directory output's own short interval sets the cycle, and every cycle saves the identity.
    expect(configError(storage({ output: '    renewal_interval: 2m' })).message).toContain(
      'outputs.0.renewal_interval: renewal_interval (2m0s) writes the identity to storage secret "broker/id"',
    );
  });

  it('accepts 10 minutes for secrets, and keeps short intervals for directory destinations', () => {
    expect(
      parseBotConfig(toSecret(config({ top: 'renewal_interval: 10m' })), 'bot.yaml').renewal_interval,
    ).toBe(600_000);
    expect(parseBotConfig(config({ top: 'renewal_interval: 1m' }), 'bot.yaml').renewal_interval).toBe(60_000);
    // A secretsmanager output on its own 20m beside a directory output renewed every minute.
    const mixed = toSecret(config({ top: 'renewal_interval: 20m' })).replace(
      'outputs:\n',
      'outputs:\n  - type: database\n    destination: { type: directory, path: /var/lib/broker/fast }\n    service: example-server\n    database: example\n    username: bob\n    credential_ttl: 1h\n    renewal_interval: 1m\n',
    );
    expect(parseBotConfig(mixed, 'bot.yaml').outputs.map((o) => o.renewal_interval)).toEqual([
      60_000,
      undefined,
    ]);
  });
});

describe('parseBotConfig: bad fields and values', () => {
  it('names an unknown top-level field and lists the allowed ones', () => {
    const err = configError(config({ top: 'renewl_interval: 10m' }));
    expect(err.message).toContain('renewl_interval: unknown field');
    expect(err.message).toContain(
      'allowed fields here: version, auth_server, ca_pins, onboarding, storage, credential_ttl, certificate_ttl, renewal_interval, key_algorithm, oneshot, debug, diag_addr, fips, insecure, outputs, services',
    );
  });

  it('names an unknown output field with its path and lists the output fields', () => {
    const err = configError(config({ output: '    formt: tls' }));
    expect(err.message).toContain('outputs.0.formt: unknown field');
    expect(err.message).toContain(
      'allowed fields here: type, destination, service, database, username, format, subtype, roles, name',
    );
    expect(err.message).toMatch(
      /outputs\.0\.formt: unknown field; allowed fields here: [^;]* at line 14, column 5/,
    );
  });

  it('names an unknown destination field', () => {
    const err = configError(
      config().replace(
        '{ type: directory, path: /var/lib/broker/out }',
        '{ type: directory, path: /out, mode: "0644" }',
      ),
    );
    expect(err.message).toContain('outputs.0.destination.mode: unknown field');
  });

  // These fields were once read and then ignored: a setting that does nothing must be refused, not kept.
  it.each([
    ['outputs.0.destination.region', '{ type: secretsmanager, name: broker/out, region: eu-west-1 }'],
    [
      'outputs.0.destination.test_connection',
      '{ type: secretsmanager, name: broker/out, test_connection: true }',
    ],
  ])('refuses %s, which the bot would not act on', (at, destination) => {
    const err = configError(config().replace('{ type: directory, path: /var/lib/broker/out }', destination));
    expect(err.message).toContain(`${at}: unknown field`);
  });

  it('refuses storage.region, which the bot would not act on', () => {
    const err = configError(
      config().replace(
        'storage: { type: memory }',
        'storage: { type: secretsmanager, name: bot/id, region: eu-west-1 }',
      ),
    );
    expect(err.message).toContain('storage.region: unknown field');
  });

  it('refuses a format outside the enum and lists the allowed ones', () => {
    const err = configError(config({ output: '    format: pkcs12' }));
    expect(err.message).toContain('outputs.0.format');
    expect(err.message).toContain('"pkcs12"');
    expect(err.message).toContain('""|"tls"|"mongo"|"cockroach"');
  });

  it('refuses a bad readers value, a bad join method, a missing output list and a wrong version', () => {
    expect(
      configError(config().replace('path: /var/lib/broker/out', 'path: /out, readers: world')).message,
    ).toContain('outputs.0.destination.readers');
    expect(configError(config().replace('join_method: token', 'join_method: oidc')).message).toContain(
      'onboarding.join_method',
    );
    expect(configError(config().replace('version: v2', 'version: v3')).message).toMatch(/version: .*"v3"/);
    // A v1 file is migrated, but v1 never had `outputs`: tbot refuses that mix, and so does the broker.
    expect(configError(config().replace('version: v2', 'version: v1')).message).toContain(
      'outputs: config has been detected as potentially v1',
    );
  });

  it('refuses ca_pins that are not sha256 pins', () => {
    const err = configError(config({ top: 'ca_pins: [sha256:abcd]' }));
    expect(err.message).toContain('ca_pins.0');
    expect(err.message).toContain('sha256:<64 hex digits>');
  });

  it('warns (as tbot logs) about two outputs writing one directory', () => {
    const second = `  - type: database
    destination: { type: directory, path: /var/lib/broker/out/ }
    service: other
    database: example
    username: alice
`;
    const cfg = parseBotConfig(`${config()}${second}`, 'bot.yaml');
    expect(cfg.warnings).toEqual([
      expect.stringContaining('outputs.1.destination: outputs.0 uses the same directory'),
    ]);
    const secret = (name: string) => `  - type: database
    destination: { type: secretsmanager, name: ${name} }
    service: other
    username: alice
    credential_ttl: 1h
    renewal_interval: 20m
`;
    expect(configError(`${config()}${secret('a')}${secret('a')}`).message).toContain(
      'outputs.2.destination: two outputs write to the same destination (also outputs.1)',
    );
  });

  it('refuses more than one YAML document and malformed YAML, naming the file', () => {
    expect(configError(`${config()}---\n${config()}`, 'two.yaml').message).toMatch(
      /^two\.yaml: .*exactly one YAML document \(found 2\)/,
    );
    expect(configError('version: v2\n  bad: [', 'broken.yaml').message).toMatch(
      /^broken\.yaml: document 1: invalid YAML at line \d+, column \d+/,
    );
  });

  it('refuses env:// and file:// references without a name', () => {
    expect(configError(config({ token: 'env://' })).message).toContain('onboarding.token');
    expect(configError(config({ token: 'env://1BAD' })).message).toContain('env:// needs a variable name');
    expect(configError(config({ token: 'file://' })).message).toContain('file:// needs a path');
  });
});

describe('parseBotConfig: the token never appears in an error', () => {
  const cases: Record<string, string> = {
    'a bad token type (a list)': config({ token: `[${TOKEN}]` }),
    'a number-like token': config({ token: '123456789012345678901234567890123' }),
    'a token given directly under onboarding': config().replace(
      `onboarding:\n  join_method: token\n  token: ${TOKEN}`,
      `onboarding: ${TOKEN}`,
    ),
    'a bad env:// reference holding the token': config({ token: `env://${TOKEN}-x` }),
    'the join-token file given as the bot configuration': `${TOKEN}\n`,
    'a token given as a list document': `- ${TOKEN}\n`,
  };
  for (const [what, text] of Object.entries(cases)) {
    it(`with ${what}`, () => {
      const err = configError(text);
      const secret = what === 'a number-like token' ? '123456789012345678901234567890123' : TOKEN;
      expect(err.message).not.toContain(secret);
      expect(err.message).toContain('bot.yaml');
    });
  }
});

describe('resolveToken', () => {
  it('returns an inline token as it is', async () => {
    expect(await resolveToken(TOKEN, {})).toBe(TOKEN);
  });

  it('reads env://VAR from the given environment, trimmed', async () => {
    expect(await resolveToken('env://BOT_TOKEN', { BOT_TOKEN: ` ${TOKEN}\n` })).toBe(TOKEN);
  });

  it('refuses a missing or blank environment variable, naming it', async () => {
    await expect(resolveToken('env://BOT_TOKEN', {})).rejects.toThrow(ConfigError);
    await expect(resolveToken('env://BOT_TOKEN', {})).rejects.toThrow(/BOT_TOKEN.*not set/);
    await expect(resolveToken('env://BOT_TOKEN', { BOT_TOKEN: '  \n' })).rejects.toThrow(ConfigError);
  });

  it('reads file://PATH, trimmed', async () => {
    const file = path.join(await makeTempDir(), 'join-token');
    await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
    expect(await resolveToken(`file://${file}`, {})).toBe(TOKEN);
  });

  it('refuses an empty token file and a missing one, naming the file', async () => {
    const dir = await makeTempDir();
    const empty = path.join(dir, 'empty-token');
    await writeFile(empty, '\n  \n');
    const emptyErr = await resolveToken(`file://${empty}`, {}).catch((e: unknown) => e as Error);
    expect(emptyErr).toBeInstanceOf(ConfigError);
    expect((emptyErr as Error).message).toContain(empty);
    expect((emptyErr as Error).message).toContain('empty');
    const missing = path.join(dir, 'missing-token');
    const missingErr = await resolveToken(`file://${missing}`, {}).catch((e: unknown) => e as Error);
    expect(missingErr).toBeInstanceOf(ConfigError);
    expect((missingErr as Error).message).toContain(missing);
  });
});
