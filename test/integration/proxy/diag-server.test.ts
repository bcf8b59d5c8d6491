/**
 * The diagnostics server (src/proxy/diag.ts) answers HTTP/1.1 on its own socket code, without node:http:
 * real clients (fetch, node:http, `broker proxy healthcheck`'s checkHealth, a raw socket) on loopback must get
 * what an HTTP server gives them, and bad or slow requests must not hold it up. The answers with a real
 * bundle and proxy are in postgres.test.ts.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CredentialCache } from '../../../src/proxy/credential-cache.js';
import { checkHealth, startDiagServer } from '../../../src/proxy/diag.js';
import type { ProxyStatus } from '../../../src/proxy/proxy.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Credentials and a proxy as readiness and /metrics see them; `ready` switches readiness. */
function world(options: { ready: boolean; metrics?: () => Promise<string> }) {
  const creds = {
    ready: options.ready,
    loaded: options.ready
      ? { serial: 'ab12', expiresAt: new Date(Date.UTC(2030, 0, 1)), bundle: { service: 'orders-db' } }
      : undefined,
    stats: { successes: 1, failures: 0 },
  } as unknown as CredentialCache;
  const proxy: ProxyStatus = {
    isDraining: false,
    openConnections: 3,
    renderMetrics: options.metrics ?? (async () => 'broker_proxy_open_connections 3\n'),
  };
  return { creds, proxy };
}

async function start(options: { ready: boolean; metrics?: () => Promise<string> }) {
  const { creds, proxy } = world(options);
  const diag = await startDiagServer('127.0.0.1:0', creds, proxy);
  closers.push(() => diag.close());
  return diag;
}

/** Sends `text` on a raw connection and returns everything the server wrote before closing it. */
function raw(address: string, text: string | Buffer): Promise<string> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port: Number(port) }, () => socket.write(text));
    let got = '';
    socket.on('data', (d) => {
      got += d.toString('latin1');
    });
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
  });
}

describe('diagnostics server', () => {
  it('answers fetch on /livez, /readyz and /metrics with status, type, length and body', async () => {
    const diag = await start({ ready: true });
    const live = await fetch(`http://${diag.address}/livez`);
    expect(live.status).toBe(200);
    expect(live.headers.get('content-type')).toBe('application/json');
    expect(await live.json()).toEqual({ live: true });
    const ready = await fetch(`http://${diag.address}/readyz?verbose=1`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ready: true,
      openConnections: 3,
      serial: 'ab12',
      expiresAt: '2030-01-01T00:00:00.000Z',
      service: 'orders-db',
    });
    const metrics = await fetch(`http://${diag.address}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await metrics.text()).toBe('broker_proxy_open_connections 3\n');
  });

  it('answers not ready with 503, unknown paths with 404 and other methods with 405', async () => {
    const diag = await start({ ready: false });
    const notReady = await fetch(`http://${diag.address}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ ready: false, reason: 'no credentials loaded yet' });
    const missing = await fetch(`http://${diag.address}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'not found; try /livez, /readyz, /metrics' });
    const post = await fetch(`http://${diag.address}/livez`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(await post.json()).toEqual({ error: 'GET only' });
    const head = await raw(diag.address, 'HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
  });

  it('serves node:http clients and checkHealth, one request per connection', async () => {
    const diag = await start({ ready: true });
    const [host, port] = diag.address.split(':') as [string, string];
    const agent = new http.Agent({ keepAlive: true });
    for (let i = 0; i < 3; i++) {
      const { status, body, connection } = await new Promise<{
        status: number | undefined;
        body: string;
        connection: string | undefined;
      }>((resolve, reject) => {
        http
          .get({ host, port: Number(port), path: '/livez', agent }, (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode, body, connection: res.headers.connection }),
            );
          })
          .on('error', reject);
      });
      expect([status, body, connection]).toEqual([200, '{"live":true}\n', 'close']);
    }
    agent.destroy();
    expect(await checkHealth(diag.address)).toEqual({
      ok: true,
      body: expect.stringContaining('"ready":true'),
    });
  });

  it('a request head split into single bytes is still read', async () => {
    const diag = await start({ ready: true });
    const [host, port] = diag.address.split(':') as [string, string];
    const got = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host, port: Number(port) }, async () => {
        for (const byte of Buffer.from('GET /livez HTTP/1.1\r\nHost: x\r\n\r\n')) {
          socket.write(Buffer.from([byte]));
          await new Promise((r) => setImmediate(r));
        }
      });
      let text = '';
      socket.on('data', (d) => {
        text += d.toString('latin1');
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(got).toMatch(/\r\ncontent-length: 14\r\n/);
    expect(got.endsWith('\r\n\r\n{"live":true}\n')).toBe(true);
  });

  it('refuses what is not an HTTP/1.x request, and a head that never ends, and stays up', async () => {
    const diag = await start({ ready: true });
    expect(await raw(diag.address, 'hello\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(await raw(diag.address, 'GET /livez HTTP/2.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(diag.address, `GET /livez HTTP/1.1\r\nX: ${'a'.repeat(10_000)}`)).toMatch(
      /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/,
    );
    expect((await fetch(`http://${diag.address}/livez`)).status).toBe(200);
  });

  it('a failing /metrics answers 500; close() ends idle connections at once', async () => {
    const diag = await start({
      ready: true,
      metrics: async () => {
        throw new Error('a loop did not answer');
      },
    });
    expect((await fetch(`http://${diag.address}/metrics`)).status).toBe(500);
    const [host, port] = diag.address.split(':') as [string, string];
    const idle = net.connect({ host, port: Number(port) });
    await new Promise((r) => idle.once('connect', r));
    const closed = new Promise((r) => idle.once('close', r));
    const t = Date.now();
    await closers.pop()?.();
    await closed;
    expect(Date.now() - t).toBeLessThan(2000);
  });
});
