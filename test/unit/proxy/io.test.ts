import { once } from 'node:events';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../../src/errors.js';
import { CredentialsUnavailableError } from '../../../src/proxy/credentials.js';
import { outcomeOf, PacketReader, ProxyError, relay } from '../../../src/proxy/io.js';
import {
  PostgresProtocolError,
  PROTOCOL_3_0,
  serializeStartup,
  sslRequest,
  takeStartupPacket,
} from '../../../src/proxy/protocols/postgres.js';

const errno = (code: string) => Object.assign(new Error(code), { code });

describe('outcomeOf', () => {
  it.each([
    [undefined, 'ok'],
    [null, 'ok'],
    [new Error('plain'), 'error'],
    [errno('ECONNREFUSED'), 'upstream_refused'],
    [errno('ETIMEDOUT'), 'upstream_timeout'],
    [new ProxyError('dial', 'DIAL_TIMEOUT'), 'upstream_timeout'],
    [errno('ENOTFOUND'), 'upstream_dns'],
    [errno('EAI_AGAIN'), 'upstream_dns'],
    [errno('ECONNRESET'), 'reset'],
    [errno('EPIPE'), 'reset'],
    [new ProxyError('startup', 'STARTUP_TIMEOUT'), 'client_timeout'],
    [new ProxyError('user', 'USER_MISMATCH'), 'user_mismatch'],
    [new ProxyError('tls', 'TLS_REFUSED'), 'upstream_tls_refused'],
    [new ProxyError('protocol', 'PROTOCOL'), 'protocol_error'],
    [new ProxyError('idle', 'IDLE_TIMEOUT'), 'idle_timeout'],
    [new ProxyError('err', 'UPSTREAM_ERR'), 'upstream_refused'],
    [new CredentialsUnavailableError('none'), 'no_credentials'],
    [errno('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'upstream_cert_invalid'],
    [errno('SELF_SIGNED_CERT_IN_CHAIN'), 'upstream_cert_invalid'],
    [errno('DEPTH_ZERO_SELF_SIGNED_CERT'), 'upstream_cert_invalid'],
    [errno('ERR_TLS_CERT_ALTNAME_INVALID'), 'upstream_cert_invalid'],
    [errno('CERT_HAS_EXPIRED'), 'upstream_cert_invalid'],
    [errno('ERR_SSL_WRONG_VERSION_NUMBER'), 'tls_error'],
    [errno('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), 'tls_error'],
    [errno('ERR_TLS_HANDSHAKE_TIMEOUT'), 'tls_error'],
    [errno('EHOSTUNREACH'), 'error'],
    [new BrokerError('bad_bundle', 'x'), 'error'],
    // Parse errors carry no code: they are plain errors unless a handler maps them.
    [new PostgresProtocolError('bad'), 'error'],
  ])('%s → %s', (err, outcome) => {
    expect(outcomeOf(err)).toBe(outcome);
  });
});

const startup = serializeStartup(PROTOCOL_3_0, new Map([['user', 'alice']]));
const PG = 'PostgreSQL startup message';

/** Lets pending I/O callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('PacketReader on an in-memory stream', () => {
  it('assembles a packet written in pieces and keeps bytes past it for detach()', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    let done = false;
    const next = reader.next(takeStartupPacket, 5000, PG).then((p) => {
      done = true;
      return p;
    });
    const bytes = Buffer.concat([startup, Buffer.from('after')]);
    for (const piece of [bytes.subarray(0, 3), bytes.subarray(3, 9), bytes.subarray(9, startup.length - 1)]) {
      stream.write(piece);
      await tick();
      expect(done).toBe(false);
    }
    stream.write(bytes.subarray(startup.length - 1));
    expect((await next).equals(startup)).toBe(true);
    expect(reader.detach().toString()).toBe('after');
  });

  it('returns packets already buffered without waiting, in order', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(Buffer.concat([sslRequest(), startup]));
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(sslRequest())).toBe(true);
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(startup)).toBe(true);
    expect(reader.detach()).toHaveLength(0);
  });

  it('gives up with STARTUP_TIMEOUT when no packet completes in time', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(startup.subarray(0, 5));
    const started = Date.now();
    const err = await reader.next(takeStartupPacket, 30, PG).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'STARTUP_TIMEOUT', message: `no ${PG} within 0.03s` });
    expect(outcomeOf(err)).toBe('client_timeout');
  });

  it('keeps the deadline across partial writes: trickling bytes do not extend it', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const trickle = setInterval(() => stream.write(Buffer.from([0])), 5);
    try {
      // Every byte wakes the reader, but no packet ever completes.
      const started = Date.now();
      const err = await reader.next(() => undefined, 60, PG).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STARTUP_TIMEOUT' });
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      clearInterval(trickle);
    }
  });

  it('fails with ECONNRESET when the peer ends before a packet completes', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const next = reader.next(takeStartupPacket, 5000, PG);
    stream.end(startup.subarray(0, 6));
    const err = await next.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'ECONNRESET', message: `connection closed while waiting for ${PG}` });
    expect(outcomeOf(err)).toBe('reset');
  });

  it('still returns a packet that completed just before the end', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.end(startup);
    await tick();
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(startup)).toBe(true);
    await expect(reader.next(takeStartupPacket, 5000, PG)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('rejects with the stream error', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const next = reader.next(takeStartupPacket, 5000, PG);
    stream.destroy(errno('ECONNRESET'));
    await expect(next).rejects.toMatchObject({ code: 'ECONNRESET', message: 'ECONNRESET' });
  });

  it('passes on what the framing function throws', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(Buffer.from('GET / HTTP/1.1\r\n'));
    await expect(reader.next(takeStartupPacket, 5000, PG)).rejects.toBeInstanceOf(PostgresProtocolError);
  });

  it('detach() stops reading: later bytes stay in the stream for the next reader', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(startup);
    await reader.next(takeStartupPacket, 5000, PG);
    reader.detach();
    expect(stream.listenerCount('data')).toBe(0);
    stream.write(Buffer.from('later'));
    await tick();
    expect(stream.read()?.toString()).toBe('later');
  });
});

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
