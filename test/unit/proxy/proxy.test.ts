import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { ConfigError } from '../../../src/config/errors.js';
import type { CredentialBundle } from '../../../src/credentials/bundle.js';
import { CredentialCache } from '../../../src/proxy/credential-cache.js';
import { parseHostPort, readiness } from '../../../src/proxy/diag.js';
import { DatabaseProxy, type ProxyOptions } from '../../../src/proxy/proxy.js';
import { nowSeconds, testBundle } from '../../support/fixtures.js';
import { FakeSource, memoryLogger } from '../../support/proxy.js';

let bundle: CredentialBundle;
let start: Date;

beforeAll(async () => {
  start = nowSeconds();
  bundle = await testBundle({ issuedAt: start });
});

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
});
