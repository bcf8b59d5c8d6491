/**
 * tbot configurations from Teleport's own tests, testdata and guides (test/support/tbot/, each naming its
 * source), read as tbot reads them: accepted with tbot's meaning and defaults, or refused naming the key.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type BotConfig, DEFAULT_STORAGE_PATH, parseBotConfig } from '../../src/bot/config.js';
import { authorityAddress, trustedPins } from '../../src/bot/runtime.js';
import { ConfigError } from '../../src/config/errors.js';
import { caPin } from '../../src/pki/parse.js';
import { REPO_ROOT, testCa } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const DIR = path.join(REPO_ROOT, 'test/support/tbot');
const FIXTURES = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));

function expectation(text: string): { ok: true } | { ok: false; refused: string } {
  const line = text.split('\n').find((l) => l.startsWith('# expect: '));
  if (!line) throw new Error('fixture without an `# expect:` line');
  const what = line.slice('# expect: '.length);
  return what === 'ok' ? { ok: true } : { ok: false, refused: what.replace(/^refused: /, '') };
}

const read = (name: string): BotConfig => parseBotConfig(readFileSync(path.join(DIR, name), 'utf8'), name);

describe('tbot configurations from Teleport', () => {
  it('has fixtures, each naming its source', () => {
    expect(FIXTURES.length).toBeGreaterThanOrEqual(20);
    for (const f of FIXTURES)
      expect(readFileSync(path.join(DIR, f), 'utf8')).toMatch(
        /^# Source: (gravitational\/teleport |the Machine ID)/,
      );
  });

  it.each(FIXTURES)('%s is read as its # expect: line says', (name) => {
    const text = readFileSync(path.join(DIR, name), 'utf8');
    const want = expectation(text);
    if (want.ok) {
      expect(() => parseBotConfig(text, name)).not.toThrow();
      return;
    }
    let err: unknown;
    try {
      parseBotConfig(text, name);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(name);
    expect((err as Error).message).toContain(want.refused);
    // Tokens never appear in messages.
    expect((err as Error).message).not.toMatch(/my-token|abcd123-insecure|1234abcd5678efgh9/);
  });
});

describe('what the accepted ones mean', () => {
  it('database output (full golden): roles, tls format, names as given', () => {
    const cfg = read('database-output-full.yaml');
    expect(cfg.outputs).toEqual([
      expect.objectContaining({
        destination: { type: 'memory' },
        roles: ['access'],
        format: 'tls',
        service: 'my-database-service',
        database: 'my-database',
        username: 'my-username',
      }),
    ]);
  });

  it("database output (minimal golden): tbot's defaults (storage, lifetimes, format)", () => {
    const cfg = read('database-output-minimal.yaml');
    expect(cfg.storage).toEqual({ type: 'directory', path: DEFAULT_STORAGE_PATH });
    expect(DEFAULT_STORAGE_PATH).toBe('/var/lib/teleport/bot');
    expect(cfg.credential_ttl).toBe(3_600_000);
    expect(cfg.renewal_interval).toBe(1_200_000);
    expect(cfg.outputs[0]).toMatchObject({ format: '', username: '', service: 'my-database-service' });
    expect(cfg.outputs[0]?.database).toBeUndefined();
  });

  it('database-tunnel service (full golden): a tunnel with its listen URL and route', () => {
    const cfg = read('database-tunnel-full.yaml');
    expect(cfg.outputs).toEqual([]);
    expect(cfg.tunnels).toEqual([
      {
        listen: 'tcp://0.0.0.0:3621',
        roles: ['role1', 'role2'],
        service: 'service',
        database: 'database',
        username: 'username',
        origin: 'services.0',
      },
    ]);
  });

  it('ACL readers with acls: try: kept apart, and warned about as tbot does where it cannot set ACLs', () => {
    const cfg = read('destination-acl-readers-try.yaml');
    expect(cfg.outputs[0]?.destination).toMatchObject({
      type: 'directory',
      readers: 'owner',
      aclReaders: [{ user: 'foo' }, { group: '123' }],
    });
    expect(cfg.warnings).toEqual([expect.stringContaining('outputs.0.destination.readers: ACL readers')]);
  });

  it("standard config's settings: certificate_ttl is credential_ttl, debug and diag_addr are kept", () => {
    const cfg = read('bot-config-standard-database.yaml');
    expect(cfg).toMatchObject({
      credential_ttl: 60_000,
      renewal_interval: 30_000,
      oneshot: true,
      debug: true,
      diag_addr: '127.0.0.1:1337',
      storage: { type: 'directory', path: '/bot/storage', symlinks: 'secure', acls: 'try' },
    });
    expect(cfg.outputs[0]?.roles).toEqual(['editor']);
    expect(cfg.warnings).toEqual([]); // oneshot: the 30s interval against a 1m TTL is no concern
  });

  it('v1 guide configurations migrate to v2 outputs with the format their configs imply', () => {
    const formats = ['', 'mongo', 'cockroach', 'tls'].map((f) => {
      const cfg = read(`v1-guide-databases${f ? `-${f}` : ''}-pin.yaml`);
      expect(cfg.storage).toEqual({ type: 'directory', path: '/var/lib/teleport/bot' });
      expect(cfg.outputs).toHaveLength(1);
      expect(cfg.outputs[0]).toMatchObject({
        destination: { type: 'directory', path: '/opt/machine-id' },
        service: 'example-server',
        database: 'example',
        username: 'alice',
      });
      expect(cfg.warnings[0]).toMatch(/version v1 configuration: migrated to v2 in memory/);
      return cfg.outputs[0]?.format;
    });
    expect(formats).toEqual(['', 'mongo', 'cockroach', 'tls']);
  });

  it('v1 "very full" database destinations: certificate_ttl, formats in order, storage settings', () => {
    const cfg = read('v1-very-full-databases.yaml');
    expect(cfg.credential_ttl).toBe(30 * 60_000);
    expect(cfg.renewal_interval).toBe(10 * 60_000);
    expect(cfg.outputs.map((o) => o.format)).toEqual(['', 'mongo', 'tls', 'cockroach']);
    expect(cfg.storage).toEqual({
      type: 'directory',
      path: '/path/storage',
      acls: 'try',
      symlinks: 'secure',
    });
  });

  it("the guide's output with an absolute token path: the path is kept, to be read as a file", () => {
    expect(read('guide-database-output.yaml').onboarding.token).toBe('/var/lib/teleport/bot-token');
  });
});

describe('trusting the authority as tbot configures it', () => {
  it('auth_server HOST:PORT is https://HOST:PORT; URLs stay as they are', () => {
    expect(authorityAddress('auth.example.com:3025')).toBe('https://auth.example.com:3025');
    expect(authorityAddress('unix:///run/broker/authority.sock')).toBe('unix:///run/broker/authority.sock');
    expect(authorityAddress('https://127.0.0.1:3025')).toBe('https://127.0.0.1:3025');
  });

  it('onboarding.ca_path: each certificate in the file is pinned; a bad file is refused naming the key', async () => {
    const [a, b] = [await testCa('ca path one'), await testCa('ca path two')];
    const dir = await makeTempDir();
    const file = path.join(dir, 'ca.pem');
    await writeFile(file, `${a.certificatePem}\n${b.certificatePem}`);
    const cfg = parseBotConfig(
      `version: v2\nauth_server: auth.example.com:3025\nonboarding: { token: t, ca_path: ${file} }\n`,
      'bot.yaml',
    );
    expect(trustedPins(cfg)).toEqual([caPin(a.certificatePem), caPin(b.certificatePem)]);
    await writeFile(file, 'not a certificate');
    expect(() => trustedPins(cfg)).toThrow(
      /^onboarding\.ca_path: .*ca\.pem is not the authority's CA certificate/,
    );
    const both = `version: v2\nauth_server: a:1\nonboarding: { token: t, ca_path: ${file}, ca_pins: [sha256:${'0'.repeat(64)}] }\n`;
    expect(() => parseBotConfig(both, 'bot.yaml')).toThrow(
      /onboarding\.ca_path: onboarding\.ca_pins and onboarding\.ca_path are mutually exclusive/,
    );
  });
});
