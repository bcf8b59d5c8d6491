/**
 * The authority's server under unauthenticated pressure: idle and slow connections are closed after the
 * configured times, connections and bodies are bounded, unauthenticated calls are rate limited, short-lived
 * state is pruned while it runs, and a request that fails on a broken state store gets an error response
 * while the server keeps serving (it used to reject inside an event handler and end the process).
 */
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { AuthorityUnavailableError } from '../../src/api/errors.js';
import type { ApiResponse } from '../../src/api/protocol.js';
import { type RunningAuthorityServer, startAuthorityServer } from '../../src/api/server.js';
import { HttpTransport } from '../../src/api/transports.js';
import { Authority } from '../../src/authority/authority.js';
import { shortLivedPrefixes } from '../../src/authority/state-keys.js';
import { systemClock } from '../../src/clock.js';
import type { Expect, StateStore, Versioned } from '../../src/state/store.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, INTERNAL_DB_URI, nowSeconds, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const RESOURCES = exampleResourcesYaml({ db: { uri: INTERNAL_DB_URI } });
const servers: RunningAuthorityServer[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(removeTempDirs);

/** A state store that can be made to fail reads or writes under a prefix. */
class BrokenStore implements StateStore {
  failPut: string | undefined;
  failGet: string | undefined;
  constructor(private readonly inner: StateStore) {}
  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    if (this.failGet && key.startsWith(this.failGet)) throw new Error('EIO: i/o error');
    return this.inner.get<T>(key);
  }
  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    if (this.failPut && key.startsWith(this.failPut)) throw new Error('ENOSPC: no space left on device');
    return this.inner.put(key, value, expect);
  }
  delete(key: string, expect?: Expect): Promise<boolean> {
    return this.inner.delete(key, expect);
  }
  list<T>(prefix: string): Promise<Versioned<T>[]> {
    return this.inner.list<T>(prefix);
  }
}

async function setup() {
  const ctx = await testAuthority({ start: nowSeconds(), resources: RESOURCES });
  const broken = new BrokenStore(ctx.store);
  const authority = new Authority({ store: broken, audit: ctx.audit, clock: ctx.clock });
  return { ...ctx, broken, authority };
}

type Options = Omit<Parameters<typeof startAuthorityServer>[0], 'authority' | 'socketPath' | 'listen'>;

async function onSocket(authority: Authority, options: Options = {}) {
  const socketPath = path.join(await makeTempDir(), 'authority.sock');
  const server = await startAuthorityServer({ authority, socketPath, ...options });
  servers.push(server);
  return { server, socketPath };
}

async function onHttps(authority: Authority, options: Options = {}) {
  const server = await startAuthorityServer({ authority, listen: '127.0.0.1:0', ...options });
  servers.push(server);
  const url = new URL(server.address);
  return { server, port: Number(url.port) };
}

let n = 0;
const challenge = () => ({ v: 1, type: 'challenge', requestId: `server-${++n}-0000`, params: {} });

/** POSTs `body` to the API over the unix socket; resolves with the status and parsed response. */
function post(socketPath: string, body: unknown): Promise<{ status: number; response: ApiResponse }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, path: '/v1/rpc', method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, response: JSON.parse(Buffer.concat(chunks).toString()) });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Resolves with how long the connection stayed open, or rejects after `withinMs`. */
function closedWithin(socket: net.Socket, withinMs: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

function connectUnix(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath, () => resolve(s));
    s.once('error', reject);
    sockets.push(s);
  });
}

const SHORT = {
  idleTimeoutMs: 300,
  headersTimeoutMs: 400,
  requestTimeoutMs: 800,
  keepAliveTimeoutMs: 200,
  handshakeTimeoutMs: 300,
};

describe('timeouts', () => {
  it('closes a unix-socket connection that never sends a request', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority, { limits: SHORT });
    const socket = await connectUnix(socketPath);
    expect(await closedWithin(socket, 3000)).toBeLessThan(2500);
  });

  it('closes a connection whose headers trickle in, and one whose body never completes', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority, { limits: { ...SHORT, idleTimeoutMs: 10_000 } });
    const slowHeaders = await connectUnix(socketPath);
    const trickle = setInterval(() => slowHeaders.write('X-Slow: 1\r\n'), 100);
    slowHeaders.write('POST /v1/rpc HTTP/1.1\r\nHost: x\r\n');
    const slowBody = await connectUnix(socketPath);
    slowBody.write('POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{');
    const feed = setInterval(() => slowBody.write(' '), 100);
    try {
      expect(await closedWithin(slowHeaders, 4000)).toBeLessThan(3500);
      expect(await closedWithin(slowBody, 4000)).toBeLessThan(3500);
    } finally {
      clearInterval(trickle);
      clearInterval(feed);
    }
  });

  it('closes an HTTPS connection idle before the TLS handshake and one idle after it', async () => {
    const { authority } = await setup();
    const { port } = await onHttps(authority, { limits: SHORT });
    const raw = net.connect(port, '127.0.0.1');
    sockets.push(raw);
    const secured = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    sockets.push(secured);
    await new Promise<void>((resolve, reject) =>
      secured.once('secureConnect', resolve).once('error', reject),
    );
    const [a, b] = await Promise.all([closedWithin(raw, 3000), closedWithin(secured, 3000)]);
    expect(Math.max(a, b)).toBeLessThan(2500);
  });

  it('has sane defaults: every timeout set, none left unlimited', async () => {
    const { authority } = await setup();
    const { server } = await onSocket(authority);
    expect(server.limits).toMatchObject({
      headersTimeoutMs: expect.any(Number),
      requestTimeoutMs: expect.any(Number),
      keepAliveTimeoutMs: expect.any(Number),
      idleTimeoutMs: expect.any(Number),
      handshakeTimeoutMs: expect.any(Number),
      maxConnections: expect.any(Number),
      maxBodyBytes: expect.any(Number),
    });
    for (const value of Object.values(server.limits)) {
      expect(value).toBeGreaterThan(0);
      expect(value).toBeLessThanOrEqual(300_000);
    }
  });
});

describe('bounds', () => {
  it('refuses connections past maxConnections, and serves again once one closes', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority, {
      limits: { maxConnections: 3, idleTimeoutMs: 10_000 },
    });
    const held = await Promise.all([1, 2, 3].map(() => connectUnix(socketPath)));
    const extra = await connectUnix(socketPath);
    expect(await closedWithin(extra, 2000)).toBeLessThan(1500);
    held[0]?.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
  });

  it('answers an oversized body with 413 and keeps serving', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority, { limits: { maxBodyBytes: 1024 } });
    const big = await new Promise<number>((resolve) => {
      const req = http.request({ socketPath, path: '/v1/rpc', method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1));
      req.end('x'.repeat(64 * 1024));
    });
    expect([413, -1]).toContain(big);
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
  });

  it('rate limits unauthenticated calls per caller', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority, { rateLimit: { perSecond: 0.1, burst: 2 } });
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
    const limited = await post(socketPath, challenge());
    expect(limited.status).toBe(429);
    expect(limited.response).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    // The bot's client takes it as a passing unavailability, to retry later.
    const client = new AuthorityClient(new HttpTransport(`unix://${socketPath}`), systemClock);
    await expect(client.caBundles()).rejects.toBeInstanceOf(AuthorityUnavailableError);
  });

  it('prunes expired short-lived state while it runs', async () => {
    const ctx = await setup();
    const { socketPath } = await onSocket(ctx.authority, { pruneIntervalMs: 50 });
    const { token } = await ctx.authority.addToken('example');
    const join = {
      v: 1,
      type: 'join',
      requestId: `server-${++n}-0000`,
      params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(0)).publicKeyPem },
    };
    expect((await post(socketPath, join)).response).toMatchObject({ ok: true });
    const count = async () => {
      let total = 0;
      for (const p of shortLivedPrefixes) total += (await ctx.store.list(p)).length;
      return total;
    };
    expect(await count()).toBe(1);
    ctx.clock.advance(16 * 60_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await count()).toBe(0);
  });
});

describe('one failing request never ends the server', () => {
  it('a failing de-duplication write: the join is answered, and the server keeps serving', async () => {
    const ctx = await setup();
    ctx.broken.failPut = 'requests/';
    const { socketPath } = await onSocket(ctx.authority);
    const { token } = await ctx.authority.addToken('example');
    const join = {
      v: 1,
      type: 'join',
      requestId: `server-${++n}-0000`,
      params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(0)).publicKeyPem },
    };
    expect((await post(socketPath, join)).response).toMatchObject({ ok: true });
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
  });

  it('a failing de-duplication read: an error response, and the server keeps serving', async () => {
    const ctx = await setup();
    ctx.broken.failGet = 'requests/';
    const { socketPath } = await onSocket(ctx.authority);
    const { token } = await ctx.authority.addToken('example');
    const join = {
      v: 1,
      type: 'join',
      requestId: `server-${++n}-0000`,
      params: { joinMethod: 'token', token, publicKeyPem: (await testKeyPair(0)).publicKeyPem },
    };
    const failed = await post(socketPath, join);
    expect(failed.response).toMatchObject({ ok: false, error: { code: 'internal' } });
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
  });

  it('a client that goes away in the middle of its body', async () => {
    const { authority } = await setup();
    const { socketPath } = await onSocket(authority);
    const quitter = await connectUnix(socketPath);
    quitter.write('POST /v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"v":1');
    await new Promise((r) => setTimeout(r, 50));
    quitter.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect((await post(socketPath, challenge())).response).toMatchObject({ ok: true });
  });
});
