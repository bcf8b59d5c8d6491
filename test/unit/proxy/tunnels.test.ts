/**
 * The PostgreSQL and direct-TLS tunnel starts on in-memory streams: what the client is answered, what goes
 * upstream, and the error in the client's protocol for every way the start can fail. The dialer is a fake
 * that hands out an in-memory upstream; the SSLRequest exchange runs on an in-memory TCP stand-in.
 */
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { CredentialsUnavailableError } from '../../../src/proxy/credential-cache.js';
import type { Dialer } from '../../../src/proxy/dialer.js';
import { ProxyError } from '../../../src/proxy/errors.js';
import type { LoadedCredentials } from '../../../src/proxy/loaded-credentials.js';
import { PacketReader } from '../../../src/proxy/packet-reader.js';
import {
  CLIENT_COMPRESS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_LOCAL_FILES,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  errPayload,
  type MysqlPacket,
  MysqlProtocolError,
  parseServerGreeting,
  serializeMysqlPacket,
  takeMysqlPacket,
} from '../../../src/proxy/protocols/mysql.js';
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
import { mysqlTunnel } from '../../../src/proxy/tunnels/mysql.js';
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
    }) as unknown as Dialer['dialTls'],
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

const CAPS_LOWER = 0xfffe; // CLIENT_SSL (0x0800), CLIENT_LOCAL_FILES (0x0080), CLIENT_COMPRESS (0x0020) among them
const CAPS_UPPER = 0x81ff;

/** A MariaDB-style HandshakeV10 payload with the given capability halves. */
function greeting(lower = CAPS_LOWER, upper = CAPS_UPPER): Buffer {
  const u16 = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  return Buffer.concat([
    Buffer.from([10]),
    Buffer.from('10.11.6-MariaDB\0', 'latin1'),
    Buffer.from([1, 0, 0, 0]),
    Buffer.alloc(8, 0x41),
    Buffer.from([0]),
    u16(lower),
    Buffer.from([45]),
    u16(2),
    u16(upper),
    Buffer.from([21]),
    Buffer.alloc(10),
    Buffer.alloc(12, 0x42),
    Buffer.from([0]),
    Buffer.from('mysql_native_password\0', 'latin1'),
  ]);
}

const MYSQL_CAPS =
  CLIENT_PROTOCOL_41 |
  CLIENT_CONNECT_WITH_DB |
  CLIENT_SECURE_CONNECTION |
  CLIENT_PLUGIN_AUTH |
  CLIENT_LOCAL_FILES;

function handshake(options: { caps?: number; user?: string; database?: string } = {}): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE((options.caps ?? MYSQL_CAPS) >>> 0, 0);
  head.writeUInt32LE(16 * 1024 * 1024, 4);
  head[8] = 45;
  return Buffer.concat([
    head,
    Buffer.from(`${options.user ?? 'alice'}\0`),
    Buffer.from([0]),
    Buffer.from(`${options.database ?? 'example'}\0`),
    Buffer.from('mysql_native_password\0'),
  ]);
}

/** Splits what was written into MySQL packets. */
function packets(written: Buffer[]): MysqlPacket[] {
  let buf: Buffer = Buffer.concat(written);
  const out: MysqlPacket[] = [];
  for (let got = takeMysqlPacket(buf); got; got = takeMysqlPacket(buf)) {
    out.push(got.packet);
    buf = got.rest;
  }
  return out;
}

/** The errno, SQLSTATE and message of an ERR packet payload. */
function err(payload: Buffer | undefined) {
  expect(payload?.[0]).toBe(0xff);
  const p = payload as Buffer;
  return { errno: p.readUInt16LE(1), state: p.toString('latin1', 4, 9), message: p.toString('utf8', 9) };
}

const OK = Buffer.from([0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);

/**
 * A dialer for the MySQL tunnel: TCP gives a socket that has sent `greet`; upgrade gives a TLS stand-in on
 * which the server answers each client packet with the next of `auth`.
 */
function mysqlDialer(
  options: {
    greet?: Buffer;
    auth?: Buffer[][];
    tcpFail?: Error;
    upgradeFail?: Error;
    current?: () => LoadedCredentials;
  } = {},
) {
  const tcp: FakeSocket[] = [];
  const tls: FakeSocket[] = [];
  const dialer = {
    current: options.current ?? (() => CREDS),
    dialTcp: async () => {
      if (options.tcpFail) throw options.tcpFail;
      const socket = new FakeSocket();
      tcp.push(socket);
      socket.push(options.greet ?? serializeMysqlPacket(0, greeting()));
      return socket as unknown as net.Socket;
    },
    upgrade: async () => {
      if (options.upgradeFail) throw options.upgradeFail;
      const socket = new FakeSocket();
      tls.push(socket);
      const answers = [...(options.auth ?? [[serializeMysqlPacket(3, OK)]])];
      const write = socket._write.bind(socket);
      socket._write = (chunk, encoding, callback) => {
        write(chunk, encoding, callback);
        for (const answer of answers.shift() ?? []) socket.push(answer);
      };
      return socket as unknown as tls.TLSSocket;
    },
    dialTls: async () => {
      throw new Error('not used');
    },
  } satisfies Dialer;
  return { dialer, tcp, tls };
}

describe('mysqlTunnel', () => {
  it('hides TLS, LOCAL INFILE and compression from the client, upgrades upstream and shifts sequence ids', async () => {
    const { dialer, tcp, tls } = mysqlDialer();
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    const setup = await mysqlTunnel(ctx);
    const [shown, ok] = packets(client.written);
    expect(shown?.seq).toBe(0);
    const caps = parseServerGreeting(shown?.payload as Buffer).capabilities;
    expect(caps & (CLIENT_SSL | CLIENT_LOCAL_FILES | CLIENT_COMPRESS)).toBe(0);
    expect(caps & CLIENT_PROTOCOL_41).toBe(CLIENT_PROTOCOL_41);
    expect(ok).toEqual({ seq: 2, payload: OK });
    // Upstream: an SSLRequest at sequence 1 without LOCAL_FILES, then the response at sequence 2 with CLIENT_SSL.
    const [sslReq] = packets(tcp[0]?.written ?? []);
    expect(sslReq?.seq).toBe(1);
    expect(sslReq?.payload).toHaveLength(32);
    const sslCaps = sslReq?.payload.readUInt32LE(0) as number;
    expect(sslCaps & CLIENT_SSL).toBe(CLIENT_SSL);
    expect(sslCaps & CLIENT_LOCAL_FILES).toBe(0);
    const [response] = packets(tls[0]?.written ?? []);
    expect(response?.seq).toBe(2);
    const responseCaps = response?.payload.readUInt32LE(0) as number;
    expect(responseCaps & CLIENT_SSL).toBe(CLIENT_SSL);
    expect(responseCaps & CLIENT_LOCAL_FILES).toBe(0);
    expect(response?.payload.subarray(4)).toEqual(handshake().subarray(4));
    expect(setup?.upstream).toBeInstanceOf(FramedUpstream);
  });

  it('relays an authentication switch both ways and a fast-auth success before the OK', async () => {
    const switchRequest = Buffer.concat([
      Buffer.from([0xfe]),
      Buffer.from('caching_sha2_password\0'),
      Buffer.alloc(20, 1),
    ]);
    const { dialer, tls } = mysqlDialer({
      auth: [
        [serializeMysqlPacket(3, switchRequest)],
        [serializeMysqlPacket(5, Buffer.from([0x01, 0x03])), serializeMysqlPacket(6, OK)],
      ],
    });
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    const reply = serializeMysqlPacket(3, Buffer.alloc(32, 7));
    setTimeout(() => client.push(reply), 20);
    const setup = await mysqlTunnel(ctx);
    expect(setup).toBeDefined();
    const toClient = packets(client.written).slice(1);
    expect(toClient.map((p) => p.seq)).toEqual([2, 4, 5]);
    expect(toClient[0]?.payload).toEqual(switchRequest);
    expect(toClient[2]?.payload).toEqual(OK);
    expect(packets(tls[0]?.written ?? [])[1]).toEqual({ seq: 4, payload: Buffer.alloc(32, 7) });
  });

  it('an ERR from the server ends both sides after showing it to the client', async () => {
    const denied = errPayload(1045, '28000', "Access denied for user 'alice'");
    const { dialer, tls } = mysqlDialer({ auth: [[serializeMysqlPacket(3, denied)]] });
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    expect(await mysqlTunnel(ctx)).toBeUndefined();
    expect(packets(client.written)[1]).toEqual({ seq: 2, payload: denied });
    await tick();
    expect(client.ended).toBe(true);
    expect(tls[0]?.ended).toBe(true);
  });

  it.each([
    [
      'another user',
      { user: 'mallory' },
      1045,
      '28000',
      'the client asked for user "mallory" but the certificate is for user "alice"',
      'USER_MISMATCH',
    ],
    [
      'another database',
      { database: 'other' },
      1044,
      '42000',
      'the client asked for database "other" but the output is for database "example"',
      'DATABASE_MISMATCH',
    ],
    [
      'compression',
      { caps: MYSQL_CAPS | CLIENT_COMPRESS },
      1043,
      '08S01',
      'the tunnel does not relay compressed connections; connect without compression',
      'PROTOCOL',
    ],
  ])(
    'a handshake for %s is refused with a MySQL error after the client’s packet',
    async (_what, change, errno, state, message, code) => {
      const { dialer, tls } = mysqlDialer();
      const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake(change)));
      const e = await mysqlTunnel(ctx).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ProxyError);
      expect((e as ProxyError).code).toBe(code);
      const refusal = packets(client.written)[1];
      expect(refusal?.seq).toBe(2);
      expect(err(refusal?.payload)).toEqual({ errno, state, message: `broker proxy: ${message}` });
      expect(tls).toHaveLength(0);
    },
  );

  it('a handshake without a database takes the output’s', async () => {
    const noDb = Buffer.concat([handshake().subarray(0, 32), Buffer.from('alice\0'), Buffer.from([0])]);
    const { dialer } = mysqlDialer();
    const { ctx } = context(dialer as Dialer, serializeMysqlPacket(1, noDb));
    await expect(mysqlTunnel(ctx)).resolves.toBeDefined();
  });

  it('a client asking the tunnel for TLS is told to connect without it', async () => {
    const sslOnly = handshake({ caps: MYSQL_CAPS | CLIENT_SSL }).subarray(0, 32);
    const { dialer } = mysqlDialer();
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, sslOnly));
    await expect(mysqlTunnel(ctx)).rejects.toMatchObject({ code: 'PROTOCOL' });
    const refusal = packets(client.written)[1];
    expect(refusal?.seq).toBe(2);
    expect(err(refusal?.payload).message).toBe(
      'broker proxy: the tunnel does the TLS; connect to it without TLS (e.g. --ssl=0 / ssl: false)',
    );
  });

  it('a server without TLS is refused before the client says anything', async () => {
    const { dialer } = mysqlDialer({ greet: serializeMysqlPacket(0, greeting(CAPS_LOWER & ~CLIENT_SSL)) });
    const { ctx, client } = context(dialer as Dialer);
    await expect(mysqlTunnel(ctx)).rejects.toMatchObject({ code: 'TLS_REFUSED' });
    const [refusal] = packets(client.written);
    expect(refusal?.seq).toBe(0);
    expect(err(refusal?.payload)).toEqual({
      errno: 1043,
      state: '08S01',
      message: 'broker proxy: the database at db.internal:5432 does not support TLS',
    });
  });

  it('a server ERR instead of a greeting is shown to the client as it is', async () => {
    const tooMany = errPayload(1040, '08004', 'Too many connections');
    const { dialer } = mysqlDialer({ greet: serializeMysqlPacket(0, tooMany) });
    const { ctx, client } = context(dialer as Dialer);
    await expect(mysqlTunnel(ctx)).rejects.toMatchObject({ code: 'UPSTREAM_ERR' });
    expect(packets(client.written)).toEqual([{ seq: 0, payload: tooMany }]);
  });

  it('a server that sends data before the TLS upgrade is cut off with a protocol error', async () => {
    const { dialer, tcp } = mysqlDialer({
      greet: Buffer.concat([serializeMysqlPacket(0, greeting()), Buffer.from('smuggled')]),
    });
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    await expect(mysqlTunnel(ctx)).rejects.toBeInstanceOf(MysqlProtocolError);
    const refusal = packets(client.written)[1];
    expect(err(refusal?.payload)).toEqual({
      errno: 1043,
      state: '08S01',
      message: 'broker proxy: the server sent data before the TLS upgrade',
    });
    expect(tcp[0]?.destroyed).toBe(true);
  });

  it('an authentication exchange that never ends is cut off after 16 rounds', async () => {
    const fast = serializeMysqlPacket(3, Buffer.from([0x01, 0x03]));
    const { dialer } = mysqlDialer({ auth: [Array.from({ length: 16 }, () => fast)] });
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    await expect(mysqlTunnel(ctx)).rejects.toThrow('the authentication exchange did not finish');
    expect(packets(client.written)).toHaveLength(1 + 16 + 1);
  });

  it.each([
    [
      'credentials are unavailable',
      {
        current: () => {
          throw new CredentialsUnavailableError('no valid certificate');
        },
      },
      'broker proxy: no valid certificate',
    ],
    [
      'the database cannot be reached',
      { tcpFail: new Error('connect ETIMEDOUT') },
      'broker proxy: could not reach example-server at db.internal:5432: connect ETIMEDOUT',
    ],
    [
      'the TLS handshake fails',
      { upgradeFail: new Error('certificate verify failed') },
      'broker proxy: could not open the TLS connection to db.internal:5432: certificate verify failed',
    ],
  ])('when %s the client gets error 2003 naming why', async (_what, options, message) => {
    const { dialer } = mysqlDialer(options as Parameters<typeof mysqlDialer>[0]);
    const { ctx, client } = context(dialer as Dialer, serializeMysqlPacket(1, handshake()));
    await expect(mysqlTunnel(ctx)).rejects.toThrow();
    const last = packets(client.written).at(-1);
    expect(last?.seq).toBe(0);
    expect(err(last?.payload)).toEqual({ errno: 2003, state: 'HY000', message });
  });
});
