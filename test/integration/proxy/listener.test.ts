/** The proxy's listener on real sockets: a TCP port on loopback and a unix socket with mode 0600. */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CredentialCache } from '../../../src/proxy/credential-cache.js';
import { DatabaseProxy, type ProxyOptions } from '../../../src/proxy/proxy.js';
import { FakeSource, memoryLogger } from '../../support/proxy.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'broker-proxy-listener-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const proxies: DatabaseProxy[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.stop(0)));
});

/** A proxy with no bundle loaded: enough to bind, accept and refuse. */
function proxyWith(options: Pick<ProxyOptions, 'listen'>) {
  const { log } = memoryLogger();
  const creds = new CredentialCache(new FakeSource(), { log });
  const proxy = new DatabaseProxy({ creds, log, tunnel: false, ...options });
  proxies.push(proxy);
  return { proxy };
}

describe('DatabaseProxy.start', () => {
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
