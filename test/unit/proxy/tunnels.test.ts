/**
 * The PostgreSQL and direct-TLS tunnel starts on in-memory streams: what the client is answered, what goes
 * upstream, and the error in the client's protocol for every way the start can fail. The dialer is a fake
 * that hands out an in-memory upstream; the SSLRequest exchange runs on an in-memory TCP stand-in.
 */
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CredentialsUnavailableError } from '../../../src/proxy/credential-cache.js';
import type { Dialer } from '../../../src/proxy/dialer.js';
import { ProxyError } from '../../../src/proxy/errors.js';
import type { LoadedCredentials } from '../../../src/proxy/loaded-credentials.js';
import { PacketReader } from '../../../src/proxy/packet-reader.js';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  PROTOCOL_3_0,
  SSL_REQUEST_CODE,
  serializeCancel,
  serializeStartup,
  sslRequest,
} from '../../../src/proxy/protocols/postgres.js';
import { directTlsTunnel } from '../../../src/proxy/tunnels/direct-tls.js';
import { FramedUpstream } from '../../../src/proxy/tunnels/framed-upstream.js';
import { postgresTunnel } from '../../../src/proxy/tunnels/postgres.js';
import type { TunnelContext } from '../../../src/proxy/tunnels/tunnel.js';
import { memoryLogger } from '../../support/proxy.js';

/** A socket stand-in: records what is written to it and whether it was ended; `push` is what it receives. */
class FakeSocket extends Duplex {
  written: Buffer[] = [];
  ended = false;
  override _read(): void {}
  override _write(chunk: Buffer | string, _e: BufferEncoding, callback: () => void): void {
    this.written.push(Buffer.from(chunk));
    callback();
  }
  override _final(callback: () => void): void {
    this.ended = true;
    callback();
  }
  text(): string {
    return Buffer.concat(this.written).toString('latin1');
  }
}

const CREDS = {
  bundle: { username: 'alice', database: 'example', service: 'example-server', endpoint: 'db.internal:5432' },
} as unknown as LoadedCredentials;

interface FakeDialer extends Dialer {
  upstreams: FakeSocket[];
  /** The in-memory TCP connections the SSLRequest was sent on. */
  raw: FakeSocket[];
}

/** A dialer whose TCP peer answers the SSLRequest with `answer` (or nothing), or that fails with `fail`. */
function fakeDialer(
  options: {
    answer?: string | 'end' | 'error' | 'none';
    fail?: Error;
    current?: () => LoadedCredentials;
  } = {},
): FakeDialer {
  const upstreams: FakeSocket[] = [];
  const raw: FakeSocket[] = [];
  return {
    upstreams,
    raw,
    current: options.current ?? (() => CREDS),
    dialTcp: async () => {
      throw new Error('not used');
    },
    upgrade: async () => {
      throw new Error('not used');
    },
    dialTls: (async (_creds: LoadedCredentials, afterTcp?: (socket: net.Socket) => Promise<void>) => {
      if (options.fail) throw options.fail;
      if (afterTcp) {
        const socket = new FakeSocket();
        raw.push(socket);
        const answer = options.answer ?? 'S';
        setImmediate(() => {
          if (answer === 'end') socket.push(null);
          else if (answer === 'error') socket.emit('error', new Error('ECONNRESET: reset by peer'));
          else if (answer !== 'none') socket.push(Buffer.from(answer, 'latin1'));
        });
        await afterTcp(socket as unknown as net.Socket);
      }
      const upstream = new FakeSocket();
      upstreams.push(upstream);
      return upstream;
    }) as Dialer['dialTls'],
  } as FakeDialer;
}

function context(dialer: Dialer, ...packets: Buffer[]): { ctx: TunnelContext; client: FakeSocket } {
  const client = new FakeSocket();
  const ctx: TunnelContext = {
    client: client as unknown as net.Socket,
    reader: new PacketReader(client),
    dialer,
    log: memoryLogger().log,
    startupTimeoutMs: 2_000,
    dialTimeoutMs: 200,
  };
  for (const p of packets) client.push(p);
  return { ctx, client };
}

function request(code: number, length = 8): Buffer {
  const b = Buffer.alloc(length);
  b.writeInt32BE(length, 0);
  b.writeInt32BE(code, 4);
  return b;
}

const startup = (params: Record<string, string>) =>
  serializeStartup(PROTOCOL_3_0, new Map(Object.entries(params)));

/** The fields of the one ErrorResponse in `bytes`, by their one-letter tag. */
function errorFields(bytes: Buffer): Record<string, string> {
  const at = bytes.indexOf('E');
  expect(at).toBeGreaterThanOrEqual(0);
  const len = bytes.readInt32BE(at + 1);
  const body = bytes.subarray(at + 5, at + 1 + len).toString('utf8');
  return Object.fromEntries(
    body
      .split('\0')
      .filter((f) => f !== '')
      .map((f) => [f[0], f.slice(1)]),
  );
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('postgresTunnel', () => {
  it("answers SSLRequest and GSSENCRequest with 'N', then replays the startup upstream for the certificate's user and database", async () => {
    const dialer = fakeDialer();
    const extra = Buffer.from('Q-after-startup');
    const { ctx, client } = context(
      dialer,
      sslRequest(),
      request(GSSENC_REQUEST_CODE),
      Buffer.concat([startup({ user: 'alice', application_name: 'psql' }), extra]),
    );
    const setup = await postgresTunnel(ctx);
    expect(client.text()).toBe('NN');
    expect(dialer.raw).toHaveLength(1);
    expect(Buffer.concat(dialer.raw[0]?.written ?? [])).toEqual(sslRequest());
    expect(setup?.upstream).toBe(dialer.upstreams[0]);
    expect(Buffer.concat(dialer.upstreams[0]?.written ?? [])).toEqual(
      startup({ user: 'alice', application_name: 'psql', database: 'example' }),
    );
    expect(setup?.toUpstream).toEqual(extra);
    expect(client.ended).toBe(false);
  });

  it('two negotiation requests then a startup are fine; a third request is refused', async () => {
    const ok = context(fakeDialer(), sslRequest(), sslRequest(), startup({ user: 'alice' }));
    await expect(postgresTunnel(ok.ctx)).resolves.toBeDefined();

    const { ctx, client } = context(
      fakeDialer(),
      sslRequest(),
      sslRequest(),
      sslRequest(),
      startup({ user: 'alice' }),
    );
    const err = await postgresTunnel(ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'PROTOCOL', message: 'too many negotiation requests' });
    expect(client.text().startsWith('NNN')).toBe(true);
    expect(errorFields(Buffer.concat(client.written).subarray(3))).toMatchObject({
      S: 'FATAL',
      C: '08P01',
      M: 'broker proxy: too many SSL/GSS negotiation requests',
    });
    await tick();
    expect(client.ended).toBe(true);
  });

  it('refuses a startup for another user in the client’s protocol, without dialing', async () => {
    const dialer = fakeDialer();
    const { ctx, client } = context(dialer, startup({ user: 'mallory', database: 'example' }));
    const err = await postgresTunnel(ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe('USER_MISMATCH');
    expect(errorFields(Buffer.concat(client.written))).toMatchObject({
      C: '28000',
      M: 'broker proxy: the client asked for user "mallory" but the certificate is for user "alice"',
      H: 'connect as alice',
    });
    expect(dialer.raw).toHaveLength(0);
    expect(dialer.upstreams).toHaveLength(0);
  });

  it('refuses a GSSENCRequest of the wrong length as a protocol violation', async () => {
    const { ctx, client } = context(fakeDialer(), request(GSSENC_REQUEST_CODE, 12));
    const err = await postgresTunnel(ctx).catch((e: unknown) => e);
    expect((err as Error).name).toBe('PostgresProtocolError');
    expect(errorFields(Buffer.concat(client.written))).toMatchObject({
      C: '08P01',
      M: 'broker proxy: GSSENCRequest of length 12; it is always 8 bytes',
    });
  });

  it('a connection that closes before its startup is no protocol error and gets no ErrorResponse', async () => {
    const { ctx, client } = context(fakeDialer());
    client.push(null);
    const err = await postgresTunnel(ctx).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNRESET' });
    expect(client.written).toEqual([]);
  });

  it('forwards a CancelRequest upstream over TLS and closes the client', async () => {
    const dialer = fakeDialer();
    const key = Buffer.from('0123456789abcdef', 'hex');
    const { ctx, client } = context(dialer, serializeCancel(4242, key));
    expect(await postgresTunnel(ctx)).toBeUndefined();
    expect(Buffer.concat(dialer.upstreams[0]?.written ?? [])).toEqual(serializeCancel(4242, key));
    await tick();
    expect(dialer.upstreams[0]?.ended).toBe(true);
    expect(client.ended).toBe(true);
    expect(request(CANCEL_REQUEST_CODE).readInt32BE(4)).toBe(CANCEL_REQUEST_CODE);
  });

  it('without valid credentials the client gets 08006 naming why', async () => {
    const dialer = fakeDialer({
      current: () => {
        throw new CredentialsUnavailableError('the certificate expired at 2026-03-01T12:00:00Z');
      },
    });
    const { ctx, client } = context(dialer, startup({ user: 'alice' }));
    await expect(postgresTunnel(ctx)).rejects.toBeInstanceOf(CredentialsUnavailableError);
    expect(errorFields(Buffer.concat(client.written))).toMatchObject({
      C: '08006',
      M: 'broker proxy: the certificate expired at 2026-03-01T12:00:00Z',
    });
  });

  it('an unreachable database gets 08006 naming the service and endpoint', async () => {
    const dialer = fakeDialer({ fail: new Error('connect ECONNREFUSED 10.0.0.1:5432') });
    const { ctx, client } = context(dialer, startup({ user: 'alice' }));
    await expect(postgresTunnel(ctx)).rejects.toThrow('ECONNREFUSED');
    expect(errorFields(Buffer.concat(client.written))).toMatchObject({
      C: '08006',
      M: 'broker proxy: could not reach example-server at db.internal:5432: connect ECONNREFUSED 10.0.0.1:5432',
    });
  });

  it.each([
    ['N', /refused TLS \(answered "N" to SSLRequest\)/, 'TLS_REFUSED'],
    ['SX', /refused TLS \(answered "S" to SSLRequest\)/, 'TLS_REFUSED'],
    ['end', /closed the connection after the SSLRequest/, 'ECONNRESET'],
    ['none', /did not answer the SSLRequest/, 'DIAL_TIMEOUT'],
  ])('a database answering %j to the SSLRequest is not used', async (answer, message, code) => {
    const { ctx, client } = context(fakeDialer({ answer }), startup({ user: 'alice' }));
    const err = await postgresTunnel(ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
    expect(errorFields(Buffer.concat(client.written)).C).toBe('08006');
  });

  it('a TCP error during the SSLRequest is passed on', async () => {
    const { ctx } = context(fakeDialer({ answer: 'error' }), startup({ user: 'alice' }));
    await expect(postgresTunnel(ctx)).rejects.toThrow('ECONNRESET: reset by peer');
  });

  it('the SSLRequest code is the one PostgreSQL defines', () => {
    expect(sslRequest().readInt32BE(4)).toBe(SSL_REQUEST_CODE);
  });
});

describe('directTlsTunnel', () => {
  it('MongoDB: relays the bytes already read to the mutual-TLS upstream as they are', async () => {
    const dialer = fakeDialer();
    const { ctx } = context(dialer, Buffer.from('hello'));
    await tick();
    const setup = await directTlsTunnel('mongodb')(ctx);
    expect(setup?.upstream).toBe(dialer.upstreams[0]);
    expect(setup?.toUpstream).toEqual(Buffer.from('hello'));
    expect(dialer.raw).toHaveLength(0);
  });

  it('Redis: requests go through the framer for the certificate’s user', async () => {
    const dialer = fakeDialer();
    const { ctx } = context(dialer);
    const setup = await directTlsTunnel('redis')(ctx);
    expect(setup?.upstream).toBeInstanceOf(FramedUpstream);
    expect(setup?.toUpstream).toEqual(Buffer.alloc(0));
  });

  it('Redis: an unreachable upstream is one RESP error line, newlines flattened', async () => {
    const { ctx, client } = context(fakeDialer({ fail: new Error('connect failed\r\nsecond line') }));
    await expect(directTlsTunnel('redis')(ctx)).rejects.toThrow('connect failed');
    await tick();
    expect(client.text()).toBe('-ERR broker proxy: connect failed second line\r\n');
    expect(client.ended).toBe(true);
  });

  it('MongoDB: an unreachable upstream closes nothing itself and writes nothing', async () => {
    const { ctx, client } = context(fakeDialer({ fail: new Error('connect failed') }));
    await expect(directTlsTunnel('mongodb')(ctx)).rejects.toThrow('connect failed');
    expect(client.written).toEqual([]);
    expect(client.ended).toBe(false);
  });
});
