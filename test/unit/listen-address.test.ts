/**
 * Issue 13, finding 8: every listener (proxy, proxy diagnostics, authority HTTPS) resolves its host and
 * accepts it only when every address is loopback (127.0.0.0/8, ::1, ::ffff:127.x), unless the operator
 * passed --unsafe-listen. The resolver is injected: these tests look nothing up and open no socket, so an
 * address that is wrongly accepted fails here on the unit guard's refusal to listen.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startAuthorityServer } from '../../src/api/server.js';
import type { Authority } from '../../src/authority/authority.js';
import { runCli } from '../../src/cli/main.js';
import { ConfigError } from '../../src/config/errors.js';
import { type HostResolver, isLoopbackIp, loopbackListenHost } from '../../src/net-address.js';
import { CredentialCache } from '../../src/proxy/credential-cache.js';
import { startDiagServer } from '../../src/proxy/diag.js';
import { DatabaseProxy } from '../../src/proxy/proxy.js';
import { testAuthority } from '../support/authority.js';
import { nowSeconds } from '../support/fixtures.js';
import { FakeSource, memoryLogger } from '../support/proxy.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

/** A DNS double: names map to addresses; anything else is ENOTFOUND. Records every lookup. */
function resolver(table: Record<string, string[]>): HostResolver & { asked: string[] } {
  const asked: string[] = [];
  const fn = async (host: string) => {
    asked.push(host);
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(fn, { asked });
}

const DNS = resolver({
  localhost: ['127.0.0.1', '::1'],
  'db-proxy.internal': ['127.0.0.53'],
  '127.0.0.1.evil.example': ['203.0.113.9'],
  'half.evil.example': ['127.0.0.1', '203.0.113.9'],
  'mapped.example': ['::ffff:127.0.0.1'],
  'lan.example': ['::ffff:10.0.0.1'],
});

describe('isLoopbackIp', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '127.255.255.254',
    '::1',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
  ])('%s is loopback', (a) => {
    expect(isLoopbackIp(a)).toBe(true);
  });

  it.each([
    '0.0.0.0',
    '::',
    '10.0.0.1',
    '128.0.0.1',
    '::ffff:10.0.0.1',
    '1.127.0.0.1',
    'localhost',
    'localhost.example.com',
    '127.1',
    '127.0.0.1.evil.example',
    '127.0.0.1 ',
    '',
  ])('%j is not', (a) => {
    expect(isLoopbackIp(a)).toBe(false);
  });
});

describe('loopbackListenHost', () => {
  const check = { flag: '--address', resolve: DNS };

  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['127.9.9.9', '127.9.9.9'],
    ['::1', '::1'],
    ['::ffff:127.0.0.1', '::ffff:127.0.0.1'],
    // A name is resolved and the listener binds the address it was checked as, not the name again.
    ['localhost', '127.0.0.1'],
    ['db-proxy.internal', '127.0.0.53'],
    ['mapped.example', '::ffff:127.0.0.1'],
  ])('accepts %s, binding %s', async (host, bind) => {
    expect(await loopbackListenHost(host, check)).toBe(bind);
  });

  it.each([
    [
      '0.0.0.0',
      /refusing to listen on 0\.0\.0\.0 \(--address\): not a loopback address; pass --unsafe-listen/,
    ],
    ['::', /refusing to listen on :: \(--address\): not a loopback address/],
    ['10.0.0.1', /not a loopback address/],
    ['127.0.0.1.evil.example', /127\.0\.0\.1\.evil\.example \(--address, resolves to 203\.0\.113\.9\)/],
    ['half.evil.example', /resolves to 127\.0\.0\.1, 203\.0\.113\.9/],
    ['lan.example', /resolves to ::ffff:10\.0\.0\.1/],
    ['nowhere.example', /cannot be resolved: getaddrinfo ENOTFOUND/],
    // Text that getaddrinfo would read as an IPv4 shorthand, or that is no host name at all.
    ['127.1', /"127\.1" \(--address, not an IP address or a host name\)/],
    ['2130706433', /not an IP address or a host name/],
    ['0x7f.1', /not an IP address or a host name/],
    ['127.0.0.1 ', /not an IP address or a host name/],
    ['', /not an IP address or a host name/],
  ])('refuses %j without --unsafe-listen', async (host, message) => {
    const err = await loopbackListenHost(host, check).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('--unsafe-listen');
  });

  it('takes any host as given with the unsafe flag, looking nothing up', async () => {
    const dns = resolver({});
    for (const host of ['0.0.0.0', '::', '127.0.0.1.evil.example', '127.1'])
      expect(await loopbackListenHost(host, { ...check, unsafe: true, resolve: dns })).toBe(host);
    expect(dns.asked).toEqual([]);
  });

  it('looks up names only, never IP literals', async () => {
    const dns = resolver({ localhost: ['127.0.0.1'] });
    await loopbackListenHost('127.0.0.1', { ...check, resolve: dns });
    await loopbackListenHost('::1', { ...check, resolve: dns });
    expect(dns.asked).toEqual([]);
    await loopbackListenHost('localhost', { ...check, resolve: dns });
    expect(dns.asked).toEqual(['localhost']);
  });
});

describe('every listener refuses a non-loopback address before it listens', () => {
  const START = nowSeconds();
  let authority: Authority;

  beforeAll(async () => {
    ({ authority } = await testAuthority({ start: START, clusterName: 'listen' }));
  });

  function proxy(address: string) {
    const { log } = memoryLogger();
    const creds = new CredentialCache(new FakeSource(), { log });
    return {
      creds,
      proxy: new DatabaseProxy({ creds, log, tunnel: true, listen: { address, port: 0 }, resolve: DNS }),
    };
  }

  it.each(['0.0.0.0', '::', '10.0.0.1', '127.0.0.1.evil.example', '127.1'])(
    'proxy diagnostics: --diag-addr %s:9090',
    async (host) => {
      const { creds, proxy: p } = proxy('127.0.0.1');
      const diag = startDiagServer(`${host.includes(':') ? `[${host}]` : host}:9090`, creds, p, {
        resolve: DNS,
      });
      const err = await diag.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/--diag-addr.*not a loopback address; pass --unsafe-listen/);
    },
  );

  it.each(['localhost', '127.0.0.1.evil.example', 'half.evil.example'])(
    'proxy: --address %s that resolves elsewhere',
    async (host) => {
      const dns = resolver({ localhost: ['192.0.2.7'], ...{ '127.0.0.1.evil.example': ['203.0.113.9'] } });
      const { log } = memoryLogger();
      const creds = new CredentialCache(new FakeSource(), { log });
      const p = new DatabaseProxy({
        creds,
        log,
        tunnel: true,
        listen: { address: host, port: 0 },
        resolve: host === 'half.evil.example' ? DNS : dns,
      });
      const err = await p.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/refusing to listen on .*not a loopback address/);
    },
  );

  it.each(['127.0.0.1.evil.example:3025', '127.1:3025', '127.0.0.1x:3025', '[::]:3025', 'localhost:3025'])(
    'authority HTTPS: --listen %s',
    async (listen) => {
      const dns = resolver({ localhost: ['192.0.2.7'], '127.0.0.1.evil.example': ['203.0.113.9'] });
      const err = await startAuthorityServer({ authority, listen, resolve: dns }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/not a loopback address; pass --unsafe-listen/);
    },
  );
});

describe('broker proxy db checks both addresses before anything starts', () => {
  let stderr: string[];

  afterEach(async () => {
    vi.restoreAllMocks();
    await removeTempDirs();
  });

  async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
    stderr = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    const code = await runCli(args);
    vi.restoreAllMocks();
    return { code, stderr: stderr.join('') };
  }

  it.each([
    [['--diag-addr', '0.0.0.0:9090'], /--diag-addr.*not a loopback address; pass --unsafe-listen/],
    [['--diag-addr', '127.1:9090'], /--diag-addr.*not an IP address or a host name/],
    [['--address', '0.0.0.0'], /--address.*not a loopback address; pass --unsafe-listen/],
    [['--address', '127.1'], /--address.*not an IP address or a host name/],
  ])('refuses %j', async (flags, message) => {
    const dir = await makeTempDir();
    const r = await cli(['proxy', 'db', '--destination-dir', dir, ...flags, 'example-server']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });
});
