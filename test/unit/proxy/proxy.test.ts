import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { ConfigError } from '../../../src/config/errors.js';
import type { CredentialBundle } from '../../../src/credentials/bundle.js';
import { CredentialCache } from '../../../src/proxy/credentials.js';
import { parseHostPort, readiness } from '../../../src/proxy/diag.js';
import { DatabaseProxy, isLoopbackAddress, type ProxyOptions } from '../../../src/proxy/proxy.js';
import { bundleFactory, FakeSource, H, memoryLogger } from './fixtures.js';

let bundle: CredentialBundle;
let start: Date;
let dir: string;

beforeAll(async () => {
  const factory = await bundleFactory();
  start = factory.clock.now();
  bundle = await factory.issue(H);
  dir = await mkdtemp(path.join(tmpdir(), 'broker-proxy-unit-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const proxies: DatabaseProxy[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.stop(0)));
});

function proxyWith(options: Partial<ProxyOptions> & Pick<ProxyOptions, 'listen'>) {
  const source = new FakeSource();
  const clock = new ManualClock(start);
  const { log } = memoryLogger();
  const creds = new CredentialCache(source, { log, clock });
  const proxy = new DatabaseProxy({ creds, log, tunnel: false, ...options });
  proxies.push(proxy);
  return { proxy, creds, source, clock };
}

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:9090', '127.0.0.1', 9090],
    ['localhost:0', 'localhost', 0],
    ['[::1]:9090', '::1', 9090],
    ['0.0.0.0:65535', '0.0.0.0', 65535],
  ])('reads %j', (text, host, port) => {
    expect(parseHostPort(text, '--diag-addr')).toEqual({ host, port });
  });

  it.each(['9090', ':9090', '127.0.0.1:65536', '127.0.0.1:-1', '127.0.0.1:abc', '127.0.0.1:90.5', '[::1]'])(
    'refuses %j naming the flag and the value',
    (text) => {
      expect(() => parseHostPort(text, '--diag-addr')).toThrow(ConfigError);
      expect(() => parseHostPort(text, '--diag-addr')).toThrow(
        `--diag-addr ${JSON.stringify(text)}: expected host:port, e.g. 127.0.0.1:9090`,
      );
    },
  );
});

describe('readiness', () => {
  const listen = { address: '127.0.0.1', port: 0 };

  it('503 before a bundle is loaded, 200 once it is, 503 after it expires', async () => {
    const { proxy, creds, source, clock } = proxyWith({ listen });
    expect(readiness(creds, proxy)).toEqual({
      status: 503,
      body: { ready: false, reason: 'no credentials loaded yet' },
    });

    source.next = bundle;
    await creds.refresh();
    const identity = { serial: bundle.serial, expiresAt: bundle.expiresAt, service: 'example-server' };
    expect(readiness(creds, proxy)).toEqual({
      status: 200,
      body: { ready: true, openConnections: 0, ...identity },
    });

    clock.set(bundle.expiresAt);
    expect(readiness(creds, proxy)).toEqual({
      status: 503,
      body: { ready: false, reason: 'certificate expired', ...identity },
    });
  });

  it('503 while draining, even with a valid bundle', async () => {
    const { proxy, creds, source } = proxyWith({ listen });
    source.next = bundle;
    await creds.refresh();
    expect(readiness(creds, proxy).status).toBe(200);
    expect(await proxy.stop(0)).toBe(true); // never started, nothing open: drained at once
    expect(proxy.isDraining).toBe(true);
    expect(readiness(creds, proxy)).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'draining' },
    });
  });

  it('reports open connections from the proxy', async () => {
    const { creds, source } = proxyWith({ listen });
    source.next = bundle;
    await creds.refresh();
    const busy = { isDraining: false, openConnections: 3 } as unknown as DatabaseProxy;
    expect(readiness(creds, busy)).toMatchObject({ status: 200, body: { openConnections: 3 } });
  });
});

describe('isLoopbackAddress', () => {
  it.each(['127.0.0.1', '127.1.2.3', '127.255.255.254', '::1', 'localhost'])('%s is loopback', (a) => {
    expect(isLoopbackAddress(a)).toBe(true);
  });

  it.each([
    '0.0.0.0',
    '::',
    '10.0.0.1',
    '128.0.0.1',
    '1.127.0.0.1',
    '127.0.0.1.example.com',
    '127.0.0.1 ',
    'localhost.example.com',
    '',
  ])('%j is not', (a) => {
    expect(isLoopbackAddress(a)).toBe(false);
  });
});

describe('DatabaseProxy.start', () => {
  it.each(['0.0.0.0', '::', '10.0.0.1'])(
    'refuses %s without unsafeListen, pointing at --unsafe-listen',
    async (address) => {
      const { proxy } = proxyWith({ listen: { address, port: 0 } });
      const err = await proxy.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(`refusing to listen on ${address}`);
      expect((err as Error).message).toContain('--unsafe-listen');
    },
  );

  it('listens on 127.0.0.1 port 0 and reports the bound address', async () => {
    const { proxy } = proxyWith({ listen: { address: '127.0.0.1', port: 0 } });
    const address = await proxy.start();
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Number(address.split(':')[1])).toBeGreaterThan(0);
  });

  it('creates its unix socket with mode 0600, replacing a stale file, and restores the umask', async () => {
    const socketPath = path.join(dir, 'db.sock');
    await writeFile(socketPath, 'stale');
    const umask = process.umask();
    const { proxy } = proxyWith({ listen: { unixPath: socketPath } });
    expect(await proxy.start()).toBe(socketPath);
    const st = await stat(socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(process.umask()).toBe(umask);

    // It accepts connections there; without a bundle a non-tunnel connection is closed at once.
    const client = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => {
      client.on('close', () => resolve());
      client.on('error', reject);
      client.resume();
    });
    await proxy.stop(0);
    expect(existsSync(socketPath)).toBe(false);
  });
});
