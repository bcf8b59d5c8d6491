/**
 * PacketReader and relay on real loopback TCP pairs, as the proxy has them: paused accepted sockets,
 * half-close, resets and back-pressure behave on sockets in ways an in-memory stream does not show.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/proxy/errors.js';
import { outcomeOf } from '../../../src/proxy/outcome.js';
import { PacketReader } from '../../../src/proxy/packet-reader.js';
import { PROTOCOL_3_0, serializeStartup, takeStartupPacket } from '../../../src/proxy/protocols/postgres.js';
import { relay } from '../../../src/proxy/relay.js';

const startup = serializeStartup(PROTOCOL_3_0, new Map([['user', 'alice']]));
const PG = 'PostgreSQL startup message';

// ---- real loopback sockets ----------------------------------------------------------------------------

const opened: net.Socket[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/**
 * A connected TCP pair on 127.0.0.1, both ends half-open capable as in the proxy (its listener and dialer
 * use allowHalfOpen); the accepted end starts paused, as the proxy's listener hands it over.
 */
async function socketPair(): Promise<{ connecting: net.Socket; accepted: net.Socket }> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const acceptedP = once(server, 'connection') as Promise<[net.Socket]>;
  const connecting = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  opened.push(connecting);
  const [[accepted]] = await Promise.all([acceptedP, once(connecting, 'connect')]);
  opened.push(accepted);
  return { connecting, accepted };
}

/** Collects everything a socket receives, and whether it saw its peer's end. */
function collect(socket: net.Socket) {
  const state = { data: Buffer.alloc(0), ended: false, closed: false };
  socket.on('data', (c: Buffer) => {
    state.data = Buffer.concat([state.data, c]);
  });
  socket.on('end', () => {
    state.ended = true;
  });
  socket.on('close', () => {
    state.closed = true;
  });
  socket.on('error', () => {});
  return state;
}

async function until(what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('PacketReader on a real socket', () => {
  it('resumes a paused accepted socket and assembles a packet split across writes', async () => {
    const { connecting, accepted } = await socketPair();
    expect(accepted.isPaused()).toBe(true);
    const reader = new PacketReader(accepted);
    const next = reader.next(takeStartupPacket, 5000, PG);
    connecting.write(startup.subarray(0, 2));
    await new Promise((r) => setTimeout(r, 10));
    connecting.write(startup.subarray(2));
    expect((await next).equals(startup)).toBe(true);
  });

  it('fails with ECONNRESET when the client closes first', async () => {
    const { connecting, accepted } = await socketPair();
    const reader = new PacketReader(accepted);
    const next = reader.next(takeStartupPacket, 5000, PG);
    connecting.end(startup.subarray(0, 3));
    await expect(next).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});

/**
 * client ⇄ [proxyClient | relay | proxyServer] ⇄ upstream, with two real TCP pairs, as the proxy has them.
 */
async function relayed(idleTimeoutMs = 0) {
  const front = await socketPair();
  const back = await socketPair();
  const counted = { clientToServer: 0, serverToClient: 0 };
  const proxyClient = front.accepted;
  const proxyServer = back.connecting;
  const client = front.connecting;
  const upstream = back.accepted;
  upstream.resume();
  const c = collect(client);
  const u = collect(upstream);
  let settled = false;
  const done = relay(
    proxyClient,
    proxyServer,
    {
      clientToServer: (n) => {
        counted.clientToServer += n;
      },
      serverToClient: (n) => {
        counted.serverToClient += n;
      },
    },
    idleTimeoutMs,
  ).finally(() => {
    settled = true;
  });
  return { client, upstream, proxyClient, proxyServer, c, u, counted, done, settled: () => settled };
}

describe('relay', () => {
  it('carries and counts bytes both ways, including a large transfer under back-pressure', async () => {
    const r = await relayed();
    r.client.write('SELECT 1;');
    await until('the query upstream', () => r.u.data.toString() === 'SELECT 1;');
    const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
    r.upstream.write(big);
    await until('the big answer', () => r.c.data.length === big.length);
    expect(r.c.data.equals(big)).toBe(true);
    expect(r.counted).toEqual({ clientToServer: 9, serverToClient: big.length });
    r.client.end();
    r.upstream.end();
    expect(await r.done).toBeUndefined();
  });

  it('half-close: the client ends, the server sees the end yet can still answer, then both close', async () => {
    const r = await relayed();
    r.client.end('last request');
    await until('the end upstream', () => r.u.ended);
    expect(r.u.data.toString()).toBe('last request');
    // One side ended is not the end of the relay.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.settled()).toBe(false);
    expect(r.c.ended).toBe(false);

    r.upstream.write('answer after FIN');
    await until('the answer at the client', () => r.c.data.toString() === 'answer after FIN');
    r.upstream.end();
    await until('the end at the client', () => r.c.ended);
    expect(await r.done).toBeUndefined();
    expect(r.proxyClient.destroyed && r.proxyServer.destroyed).toBe(true);
    expect(r.counted).toEqual({ clientToServer: 12, serverToClient: 16 });
  });

  it('half-close the other way: the server ends first, the client can still send', async () => {
    const r = await relayed();
    r.upstream.end('bye');
    await until('the end at the client', () => r.c.ended);
    r.client.write('late');
    await until('the late bytes upstream', () => r.u.data.toString() === 'late');
    r.client.end();
    expect(await r.done).toBeUndefined();
  });

  it('an error on the client side destroys the upstream side and resolves with the error', async () => {
    const r = await relayed();
    r.proxyClient.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    const err = await r.done;
    expect(err).toMatchObject({ code: 'ECONNRESET' });
    expect(outcomeOf(err)).toBe('reset');
    expect(r.proxyServer.destroyed).toBe(true);
    // The proxy's destroy() sends a FIN: the (half-open capable) database sees the end of the stream.
    await until('the upstream to see the connection go', () => r.u.ended || r.u.closed);
  });

  it('a reset from the database destroys the client side', async () => {
    const r = await relayed();
    r.upstream.resetAndDestroy();
    const err = await r.done;
    expect(outcomeOf(err)).toBe('reset');
    expect(r.proxyClient.destroyed).toBe(true);
    await until('the client to see the connection go', () => r.c.ended || r.c.closed);
  });

  it('a database that stops reading and then closes ends the relay even while the client is paused', async () => {
    const r = await relayed();
    r.upstream.pause();
    r.client.write(Buffer.alloc(32 * 1024 * 1024));
    await until('back-pressure to pause the client side', () => r.proxyClient.isPaused());
    r.upstream.destroy(); // unread bytes in its receive buffer: the kernel answers with a reset
    const err = await r.done;
    expect(outcomeOf(err)).toBe('reset');
    await until('the client to see the connection go', () => r.c.ended || r.c.closed);
  });

  it('a client side destroyed without an error (as a drain timeout does) ends the relay under back-pressure', async () => {
    const r = await relayed();
    r.client.pause();
    r.upstream.write(Buffer.alloc(32 * 1024 * 1024));
    await until('back-pressure to pause the database side', () => r.proxyServer.isPaused());
    r.proxyClient.destroy();
    expect(await r.done).toBeUndefined();
    expect(r.proxyServer.destroyed).toBe(true);
  });

  it('an idle pair is closed on both sides with IDLE_TIMEOUT', async () => {
    const r = await relayed(40);
    const started = Date.now();
    const err = await r.done;
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'IDLE_TIMEOUT' });
    expect(outcomeOf(err)).toBe('idle_timeout');
    await until('both peers to see the close', () => (r.c.ended || r.c.closed) && (r.u.ended || r.u.closed));
  });

  it('traffic in either direction keeps an idle timeout from firing', async () => {
    const r = await relayed(80);
    for (let i = 0; i < 8; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      (i % 2 ? r.client : r.upstream).write('x');
    }
    expect(r.settled()).toBe(false); // 200 ms in, never 80 ms silent
    const err = await r.done;
    expect(err).toMatchObject({ code: 'IDLE_TIMEOUT' });
  });

  it('resolves only once both sides are closed', async () => {
    const r = await relayed();
    r.client.end();
    await until('the end upstream', () => r.u.ended);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.settled()).toBe(false);
    r.upstream.end();
    await r.done;
    expect(r.proxyClient.destroyed).toBe(true);
    expect(r.proxyServer.destroyed).toBe(true);
  });
});
