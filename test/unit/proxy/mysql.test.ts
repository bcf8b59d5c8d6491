import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  authPacketKind,
  CLIENT_COMPRESS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_LOCAL_FILES,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  errPayload,
  type HandshakeResponse,
  MAX_HANDSHAKE_PACKET,
  type MysqlPacket,
  MysqlProtocolError,
  parseHandshakeResponse,
  parseServerGreeting,
  serializeMysqlPacket,
  sslRequestPayload,
  takeMysqlPacket,
  withClientCapabilities,
  withoutCapabilities,
  withSslCapability,
} from '../../../src/proxy/protocols/mysql.js';
import { byteByByte, cut, everyDoubleCut, everySingleCut, feed } from '../../support/split.js';

const CLIENT_LONG_PASSWORD = 0x00000001;
const UTF8MB4_GENERAL_CI = 45;

const VERSION = '5.5.5-10.11.6-MariaDB-0+deb12u1';
const SCRAMBLE_1 = Buffer.from('4c2a3b5d6e7f2021', 'hex');
const SCRAMBLE_2 = Buffer.from('3a4b5c6d7e6f60515243', 'hex');
const SCRAMBLE_2_TAIL = Buffer.from('5455', 'hex');
// MariaDB 10.11 sends 0xfffe (CLIENT_SSL is 0x0800 in it) and 0x81ff (CLIENT_PLUGIN_AUTH is 0x0008 of it).
const CAPS_LOWER = 0xfffe;
const CAPS_UPPER = 0x81ff;

/** A MariaDB 10.11 HandshakeV10 payload as the server sends it (MariaDB "Connection": Initial Handshake Packet). */
function mariadbGreeting(): Buffer {
  const u16 = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  return Buffer.concat([
    Buffer.from([10]), // protocol version
    Buffer.from(`${VERSION}\0`, 'latin1'),
    u32(417), // connection id
    SCRAMBLE_1, // scramble, first 8 bytes
    Buffer.from([0]), // filler
    u16(CAPS_LOWER),
    Buffer.from([UTF8MB4_GENERAL_CI]), // default collation
    u16(0x0002), // status: SERVER_STATUS_AUTOCOMMIT
    u16(CAPS_UPPER),
    Buffer.from([21]), // auth plugin data length
    Buffer.alloc(6), // filler
    u32(0x0000001d), // MariaDB extended capabilities (the last 4 of the 10 reserved bytes)
    Buffer.concat([SCRAMBLE_2, SCRAMBLE_2_TAIL, Buffer.from([0])]), // 12 scramble bytes + NUL
    Buffer.from('mysql_native_password\0', 'latin1'),
  ]);
}

const CLIENT_CAPS =
  CLIENT_LONG_PASSWORD |
  CLIENT_CONNECT_WITH_DB |
  CLIENT_PROTOCOL_41 |
  CLIENT_SECURE_CONNECTION |
  CLIENT_PLUGIN_AUTH |
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

/** The fixed 32-byte head of a HandshakeResponse41 (and the whole of an SSLRequest). */
function responseHead(caps: number): Buffer {
  const b = Buffer.alloc(32); // the 23 bytes after the charset are the zero filler
  b.writeUInt32LE(caps >>> 0, 0);
  b.writeUInt32LE(16 * 1024 * 1024, 4);
  b[8] = UTF8MB4_GENERAL_CI;
  return b;
}

/** A HandshakeResponse41 for alice with no password, database `example`, the native password plugin. */
function handshakeResponse(caps = CLIENT_CAPS, user = 'alice'): Buffer {
  return Buffer.concat([
    responseHead(caps),
    Buffer.from(`${user}\0`, 'utf8'),
    Buffer.from([0]), // auth response length 0 (length-encoded)
    Buffer.from('example\0'),
    Buffer.from('mysql_native_password\0'),
  ]);
}

describe('parseServerGreeting', () => {
  it('reads the version and both capability halves of a MariaDB 10.11 greeting', () => {
    const payload = mariadbGreeting();
    const g = parseServerGreeting(payload);
    expect(g.serverVersion).toBe(VERSION);
    expect(g.capabilities).toBe(((CAPS_UPPER << 16) | CAPS_LOWER) >>> 0);
    expect(g.capabilities & CLIENT_SSL).toBe(CLIENT_SSL);
    expect(g.capabilities & CLIENT_PLUGIN_AUTH).toBe(CLIENT_PLUGIN_AUTH);
    expect(g.capabilities & CLIENT_PROTOCOL_41).toBe(CLIENT_PROTOCOL_41);
    // 1 (protocol) + version + NUL + 4 (conn id) + 8 (scramble) + 1 (filler)
    expect(g.lowerCapsOffset).toBe(1 + VERSION.length + 1 + 4 + 8 + 1);
    expect(g.upperCapsOffset).toBe(g.lowerCapsOffset + 2 + 1 + 2);
    expect(payload.readUInt16LE(g.upperCapsOffset as number)).toBe(CAPS_UPPER);
  });

  it('reads an old greeting that stops after the lower capabilities', () => {
    const payload = mariadbGreeting();
    const short = payload.subarray(0, 1 + VERSION.length + 1 + 4 + 8 + 1 + 2);
    const g = parseServerGreeting(short);
    expect(g.capabilities).toBe(CAPS_LOWER);
    expect(g.upperCapsOffset).toBeUndefined();
  });

  it.each([
    ['another protocol version', Buffer.from([9, 0x35, 0])],
    ['an ERR packet', errPayload(1040, '08004', 'Too many connections')],
    ['a missing version terminator', Buffer.from([10, 0x35, 0x2e, 0x35])],
    [
      'a greeting cut before the capabilities',
      mariadbGreeting().subarray(0, 1 + VERSION.length + 1 + 4 + 8 + 1),
    ],
    ['an empty payload', Buffer.alloc(0)],
  ])('refuses %s with MysqlProtocolError', (_what, payload) => {
    expect(() => parseServerGreeting(payload)).toThrow(MysqlProtocolError);
  });
});

describe('withoutCapabilities', () => {
  it('clears CLIENT_SSL and changes no other byte', () => {
    const payload = mariadbGreeting();
    const g = parseServerGreeting(payload);
    const out = withoutCapabilities(payload, g, CLIENT_SSL);
    expect(parseServerGreeting(out).capabilities).toBe((g.capabilities & ~CLIENT_SSL) >>> 0);
    const changed = [...out.keys()].filter((i) => out[i] !== payload[i]);
    expect(changed).toEqual([g.lowerCapsOffset + 1]); // 0x0800 is in the high byte of the lower half
    expect(out[g.lowerCapsOffset + 1]).toBe(0xf7);
    expect(payload.equals(mariadbGreeting())).toBe(true); // the input is left alone
  });

  it('clears bits of the upper half too', () => {
    const payload = mariadbGreeting();
    const g = parseServerGreeting(payload);
    const out = withoutCapabilities(payload, g, CLIENT_SSL | CLIENT_PLUGIN_AUTH);
    expect(parseServerGreeting(out).capabilities).toBe(
      (g.capabilities & ~(CLIENT_SSL | CLIENT_PLUGIN_AUTH)) >>> 0,
    );
    expect(out.readUInt16LE(g.upperCapsOffset as number)).toBe(CAPS_UPPER & ~0x0008);
  });

  it('property: clears exactly the requested bits and nothing else', () => {
    const payload = mariadbGreeting();
    const g = parseServerGreeting(payload);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (clear) => {
        const out = withoutCapabilities(payload, g, clear);
        expect(parseServerGreeting(out).capabilities).toBe((g.capabilities & ~clear) >>> 0);
        expect(out.length).toBe(payload.length);
      }),
    );
  });
});

describe('parseHandshakeResponse', () => {
  it('reads a HandshakeResponse41: capabilities, max packet size, charset and user name', () => {
    const r = parseHandshakeResponse(handshakeResponse());
    expect(r).toMatchObject({
      capabilities: CLIENT_CAPS,
      maxPacketSize: 16 * 1024 * 1024,
      charset: UTF8MB4_GENERAL_CI,
      username: 'alice',
      isSslRequest: false,
    } satisfies Partial<HandshakeResponse>);
  });

  it('reads a UTF-8 user name', () => {
    expect(parseHandshakeResponse(handshakeResponse(CLIENT_CAPS, 'jürgen')).username).toBe('jürgen');
  });

  describe('the database, read past the auth data as the server reads it', () => {
    const auth = Buffer.from('0123456789abcdefghij'); // a 20-byte scramble answer
    const withDb = (caps: number, authPart: Buffer, db = 'example\0') =>
      Buffer.concat([
        responseHead(caps),
        Buffer.from('alice\0'),
        authPart,
        Buffer.from(db),
        Buffer.from('x\0'),
      ]);
    const base = CLIENT_CAPS & ~(CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_SECURE_CONNECTION);

    it.each([
      ['length-encoded auth data', CLIENT_CAPS, Buffer.concat([Buffer.from([20]), auth])],
      [
        'length-encoded auth data with a 2-byte length',
        CLIENT_CAPS,
        Buffer.concat([Buffer.from([0xfc, 20, 0]), auth]),
      ],
      ['one-byte length', base | CLIENT_SECURE_CONNECTION, Buffer.concat([Buffer.from([20]), auth])],
      ['NUL-terminated auth data', base, Buffer.concat([auth, Buffer.from([0])])],
    ])('%s', (_what, caps, authPart) => {
      expect(parseHandshakeResponse(withDb(caps, authPart)).database).toBe('example');
    });

    it('is undefined without CLIENT_CONNECT_WITH_DB, when empty, or when the response ends after the user', () => {
      const lenenc = Buffer.concat([Buffer.from([20]), auth]);
      expect(
        parseHandshakeResponse(withDb(CLIENT_CAPS & ~CLIENT_CONNECT_WITH_DB, lenenc)).database,
      ).toBeUndefined();
      expect(parseHandshakeResponse(withDb(CLIENT_CAPS, lenenc, '\0')).database).toBeUndefined();
      expect(
        parseHandshakeResponse(Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice\0')])).database,
      ).toBeUndefined();
    });

    it('runs to the end of the payload without a terminator', () => {
      const payload = Buffer.concat([
        responseHead(CLIENT_CAPS),
        Buffer.from('alice\0'),
        Buffer.from([0]),
        Buffer.from('secretdb'),
      ]);
      expect(parseHandshakeResponse(payload).database).toBe('secretdb');
    });

    it.each([
      ['auth data longer than the payload', Buffer.concat([Buffer.from([200]), auth])],
      ['an 8-byte auth length', Buffer.concat([Buffer.from([0xfe]), Buffer.alloc(8, 0xff)])],
      ['a NULL length', Buffer.from([0xfb])],
    ])('refuses %s with MysqlProtocolError', (_what, authPart) => {
      const payload = Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice\0'), authPart]);
      expect(() => parseHandshakeResponse(payload)).toThrow(MysqlProtocolError);
    });
  });

  it('reads a 32-byte SSLRequest as one, with no user name', () => {
    const r = parseHandshakeResponse(responseHead(CLIENT_CAPS | CLIENT_SSL));
    expect(r.isSslRequest).toBe(true);
    expect(r.username).toBeUndefined();
    expect(r.capabilities).toBe(CLIENT_CAPS | CLIENT_SSL);
  });

  it('a full response that has CLIENT_SSL set is not an SSLRequest', () => {
    expect(parseHandshakeResponse(handshakeResponse(CLIENT_CAPS | CLIENT_SSL)).isSslRequest).toBe(false);
  });

  it.each([
    ['a payload shorter than 32 bytes', responseHead(CLIENT_CAPS).subarray(0, 31)],
    ['a pre-4.1 client', handshakeResponse(CLIENT_CAPS & ~CLIENT_PROTOCOL_41)],
    ['an unterminated user name', Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice')])],
  ])('refuses %s with MysqlProtocolError', (_what, payload) => {
    expect(() => parseHandshakeResponse(payload)).toThrow(MysqlProtocolError);
  });
});

describe('sslRequestPayload and withSslCapability', () => {
  it('sslRequestPayload is the 32-byte head with CLIENT_SSL added and the rest kept', () => {
    const response = parseHandshakeResponse(handshakeResponse());
    const ssl = sslRequestPayload(response);
    expect(ssl).toHaveLength(32);
    expect(ssl.equals(responseHead(CLIENT_CAPS | CLIENT_SSL))).toBe(true);
    expect(parseHandshakeResponse(ssl)).toEqual({
      ...response,
      capabilities: CLIENT_CAPS | CLIENT_SSL,
      username: undefined,
      database: undefined,
      isSslRequest: true,
    });
  });

  it('sslRequestPayload keeps the top capability bit (capabilities are unsigned)', () => {
    const response = parseHandshakeResponse(handshakeResponse((CLIENT_CAPS | 0x80000000) >>> 0));
    expect(sslRequestPayload(response).readUInt32LE(0)).toBe((CLIENT_CAPS | 0x80000000 | CLIENT_SSL) >>> 0);
  });

  it('withClientCapabilities sets and clears bits and leaves every other byte alone', () => {
    const payload = handshakeResponse(CLIENT_CAPS | CLIENT_LOCAL_FILES);
    const out = withClientCapabilities(payload, {
      set: CLIENT_SSL,
      clear: CLIENT_LOCAL_FILES | CLIENT_COMPRESS,
    });
    expect(out.readUInt32LE(0)).toBe(CLIENT_CAPS | CLIENT_SSL);
    expect(out.subarray(4).equals(payload.subarray(4))).toBe(true);
    expect(payload.readUInt32LE(0)).toBe(CLIENT_CAPS | CLIENT_LOCAL_FILES);
  });

  it('withSslCapability sets CLIENT_SSL and leaves every other byte, and its input, alone', () => {
    const payload = handshakeResponse();
    const out = withSslCapability(payload);
    expect(out.readUInt32LE(0)).toBe(CLIENT_CAPS | CLIENT_SSL);
    expect(out.subarray(4).equals(payload.subarray(4))).toBe(true);
    expect(payload.equals(handshakeResponse())).toBe(true);
    expect(parseHandshakeResponse(out).username).toBe('alice');
  });
});

describe('errPayload', () => {
  it('is 0xff, the code little-endian, #, the 5-character SQLSTATE and the message', () => {
    const b = errPayload(1045, '28000', 'Access denied');
    expect(b[0]).toBe(0xff);
    expect(b.readUInt16LE(1)).toBe(1045);
    expect(b.toString('latin1', 3, 4)).toBe('#');
    expect(b.toString('latin1', 4, 9)).toBe('28000');
    expect(b.toString('utf8', 9)).toBe('Access denied');
    expect(authPacketKind(b)).toBe('err');
  });

  it('pads a short SQLSTATE with zeros and cuts a long one to 5 characters', () => {
    expect(errPayload(2003, 'HY', 'x').toString('latin1', 3, 9)).toBe('#HY000');
    expect(errPayload(2003, '08S01XX', 'x').toString('latin1', 3, 10)).toBe('#08S01x');
  });
});

describe('authPacketKind', () => {
  it.each([
    ['OK', [0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00], 'ok'],
    ['ERR', [0xff, 0x15, 0x04, 0x23], 'err'],
    ['caching_sha2 fast auth success (AuthMoreData 0x03)', [0x01, 0x03], 'fast-auth-ok'],
    ['caching_sha2 perform full authentication (AuthMoreData 0x04)', [0x01, 0x04], 'needs-client'],
    ['AuthMoreData 0x03 with more bytes', [0x01, 0x03, 0x00], 'needs-client'],
    ['AuthMoreData with a public key', [0x01, 0x2d, 0x2d, 0x2d], 'needs-client'],
    ['AuthSwitchRequest', [0xfe, ...Buffer.from('mysql_native_password\0')], 'needs-client'],
    ['an empty payload', [], 'needs-client'],
  ] as const)('%s is %s', (_what, bytes, kind) => {
    expect(authPacketKind(Buffer.from(bytes))).toBe(kind);
  });
});

// A server's side of a caching_sha2_password login: greeting (seq 0), fast-auth success (seq 2), OK (seq 3).
const STREAM: MysqlPacket[] = [
  { seq: 0, payload: mariadbGreeting() },
  { seq: 2, payload: Buffer.from([0x01, 0x03]) },
  { seq: 3, payload: Buffer.from([0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]) },
];

describe('takeMysqlPacket split at every offset', () => {
  const bytes = Buffer.concat(STREAM.map((p) => serializeMysqlPacket(p.seq, p.payload)));

  it('every two-chunk split of three packets gives the same three packets', () => {
    for (const offsets of everySingleCut(bytes.length)) {
      const { packets, rest } = feed(takeMysqlPacket, cut(bytes, offsets));
      expect(packets, `cut at ${offsets}`).toEqual(STREAM);
      expect(rest).toHaveLength(0);
    }
  });

  it('every three-chunk split and byte-by-byte give the same three packets', () => {
    const wrong: number[][] = [];
    for (const offsets of [...everyDoubleCut(bytes.length), byteByByte(bytes.length)]) {
      const { packets, rest } = feed(takeMysqlPacket, cut(bytes, offsets));
      if (!isDeepStrictEqual(packets, STREAM) || rest.length !== 0) wrong.push(offsets);
    }
    expect(wrong).toEqual([]);
  });

  it('stops after the first packet and leaves the rest untouched', () => {
    for (const offsets of everySingleCut(bytes.length)) {
      const { packets, rest } = feed(takeMysqlPacket, cut(bytes, offsets), 1);
      expect(packets).toEqual(STREAM.slice(0, 1));
      expect(rest.equals(bytes.subarray(4 + mariadbGreeting().length))).toBe(true);
    }
  });

  it('copies the payload out, so reusing the read buffer cannot change a packet', () => {
    const buf = serializeMysqlPacket(1, Buffer.from('abc'));
    const got = takeMysqlPacket(buf);
    buf.fill(0);
    expect(got?.packet.payload.toString()).toBe('abc');
  });

  it('takes an empty payload', () => {
    expect(takeMysqlPacket(Buffer.from([0, 0, 0, 7]))).toEqual({
      packet: { seq: 7, payload: Buffer.alloc(0) },
      rest: Buffer.alloc(0),
    });
  });
});

describe('takeMysqlPacket limits', () => {
  it('accepts a packet of exactly MAX_HANDSHAKE_PACKET bytes', () => {
    const payload = Buffer.alloc(MAX_HANDSHAKE_PACKET, 1);
    expect(takeMysqlPacket(serializeMysqlPacket(0, payload))?.packet.payload).toHaveLength(
      MAX_HANDSHAKE_PACKET,
    );
  });

  it('property: a length over MAX_HANDSHAKE_PACKET is refused from the 4-byte header alone', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_HANDSHAKE_PACKET + 1, max: 0xffffff }), fc.nat(255), (len, seq) => {
        const head = Buffer.alloc(4);
        head.writeUIntLE(len, 0, 3);
        head[3] = seq;
        expect(() => takeMysqlPacket(head)).toThrow(MysqlProtocolError);
        expect(() => takeMysqlPacket(head)).toThrow(`handshake packet of ${len} bytes`);
      }),
    );
  });
});

describe('properties', () => {
  it('property: serializeMysqlPacket then takeMysqlPacket round-trips any payload and sequence id', () => {
    fc.assert(
      fc.property(
        fc.nat(255),
        fc.uint8Array({ maxLength: 3000 }),
        fc.uint8Array({ maxLength: 8 }),
        (seq, payload, extra) => {
          const bytes = serializeMysqlPacket(seq, Buffer.from(payload));
          expect(bytes.readUIntLE(0, 3)).toBe(payload.length);
          const got = takeMysqlPacket(Buffer.concat([bytes, extra]));
          expect(got?.packet).toEqual({ seq, payload: Buffer.from(payload) });
          expect(got?.rest.equals(Buffer.from(extra))).toBe(true);
        },
      ),
    );
  });

  it('property: sequence ids wrap modulo 256', () => {
    fc.assert(
      fc.property(fc.integer({ min: -512, max: 512 }), (seq) => {
        expect(takeMysqlPacket(serializeMysqlPacket(seq, Buffer.alloc(1)))?.packet.seq).toBe(
          ((seq % 256) + 256) % 256,
        );
      }),
    );
  });

  /** Everything the tunnel does with connection-phase packets, on arbitrary bytes. */
  const drain = (bytes: Buffer): void => {
    let buf = bytes;
    for (let n = 0; ; n++) {
      // Each packet consumes at least its 4-byte header, so this ends; the bound turns a hang into a failure.
      if (n > bytes.length / 4 + 1) throw new Error('takeMysqlPacket did not consume its input');
      const got = takeMysqlPacket(buf);
      if (!got) return;
      const { payload } = got.packet;
      authPacketKind(payload);
      try {
        const g = parseServerGreeting(payload);
        parseServerGreeting(withoutCapabilities(payload, g, CLIENT_SSL));
      } catch (err) {
        if (!(err instanceof MysqlProtocolError)) throw err;
      }
      const r = parseHandshakeResponse(payload);
      parseHandshakeResponse(sslRequestPayload(r));
      withSslCapability(payload);
      buf = got.rest;
    }
  };
  const onlyProtocolErrors = (bytes: Buffer) => {
    try {
      drain(bytes);
    } catch (err) {
      expect(err).toBeInstanceOf(MysqlProtocolError);
    }
  };

  it('property: random bytes fail only with MysqlProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => onlyProtocolErrors(Buffer.from(bytes))),
      { numRuns: 2000 },
    );
  });

  it('property: framed random payloads that look like greetings or responses fail only with MysqlProtocolError', () => {
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.concat([Buffer.from([10]), b])),
      fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.concat([responseHead(CLIENT_CAPS), b])),
      fc
        .tuple(fc.nat(mariadbGreeting().length), fc.uint8Array({ maxLength: 8 }))
        .map(([n, b]) => Buffer.concat([mariadbGreeting().subarray(0, n), b])),
      fc.nat(40).map((n) => responseHead(CLIENT_CAPS | CLIENT_SSL).subarray(0, n)),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(255), payload), { minLength: 1, maxLength: 3 }), (packets) =>
        onlyProtocolErrors(Buffer.concat(packets.map(([seq, p]) => serializeMysqlPacket(seq, p)))),
      ),
      { numRuns: 2000 },
    );
  });
});

describe('refusals name the problem', () => {
  const refusal = (f: () => unknown): Error => {
    try {
      f();
    } catch (err) {
      return err as Error;
    }
    throw new Error('accepted');
  };
  const lenencAuth = (authPart: Buffer) =>
    Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice\0'), authPart, Buffer.from('example\0')]);

  it.each([
    [
      'another protocol version',
      Buffer.from([9, 0x35, 0, ...Buffer.alloc(40)]),
      'unexpected handshake protocol version 9',
    ],
    [
      'a missing version terminator',
      Buffer.from([10, 0x35, 0x2e, 0x35]),
      'server greeting has no version terminator',
    ],
    [
      'a greeting cut before the capabilities',
      Buffer.from([10, 0x35, 0, ...Buffer.alloc(14)]),
      'truncated server greeting',
    ],
  ])('a server greeting with %s', (_what, payload, message) => {
    const err = refusal(() => parseServerGreeting(payload));
    expect(err).toBeInstanceOf(MysqlProtocolError);
    expect(err.name).toBe('MysqlProtocolError');
    expect(err.message).toBe(message);
  });

  it('reads the upper capabilities of a greeting that ends right after them', () => {
    const full = mariadbGreeting();
    const g = parseServerGreeting(full);
    const cut = full.subarray(0, (g.upperCapsOffset as number) + 2);
    expect(parseServerGreeting(cut).capabilities).toBe(g.capabilities);
    expect(parseServerGreeting(cut.subarray(0, cut.length - 1)).upperCapsOffset).toBeUndefined();
  });

  it('withoutCapabilities on an old greeting changes only the lower capabilities', () => {
    const full = mariadbGreeting();
    const old = full.subarray(0, 1 + VERSION.length + 1 + 4 + 8 + 1 + 2);
    const g = parseServerGreeting(old);
    const out = withoutCapabilities(old, g, CLIENT_SSL | CLIENT_PLUGIN_AUTH);
    expect(out.length).toBe(old.length);
    expect(out.subarray(0, g.lowerCapsOffset)).toEqual(old.subarray(0, g.lowerCapsOffset));
    expect(out.readUInt16LE(g.lowerCapsOffset)).toBe(CAPS_LOWER & ~CLIENT_SSL & 0xffff);
  });

  it.each([
    ['fewer than 32 bytes', Buffer.alloc(31), 'truncated client handshake response'],
    [
      'no protocol 4.1',
      responseHead(CLIENT_CAPS & ~CLIENT_PROTOCOL_41),
      'the client does not speak protocol 4.1',
    ],
    [
      'no user name terminator',
      Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice')]),
      'client handshake response has no user name terminator',
    ],
  ])('a handshake response with %s', (_what, payload, message) => {
    const err = refusal(() => parseHandshakeResponse(payload));
    expect(err).toBeInstanceOf(MysqlProtocolError);
    expect(err.message).toBe(message);
  });

  it('a 32-byte response without CLIENT_SSL is no SSLRequest, and has no user', () => {
    const r = parseHandshakeResponse(responseHead(CLIENT_CAPS));
    expect(r.isSslRequest).toBe(false);
    expect(r.username).toBeUndefined();
  });

  it.each([
    [
      'a NULL length (0xfb)',
      Buffer.from([0xfb]),
      'client handshake response has a bad length-encoded integer',
    ],
    [
      'an ERR marker (0xff)',
      Buffer.from([0xff]),
      'client handshake response has a bad length-encoded integer',
    ],
    [
      'a 2-byte length cut short',
      Buffer.from([0xfc, 20]),
      'client handshake response has a bad length-encoded integer',
    ],
    [
      'a 3-byte length cut short',
      Buffer.from([0xfd, 1, 0]),
      'client handshake response has a bad length-encoded integer',
    ],
    [
      'an 8-byte length cut short',
      Buffer.from([0xfe, 1, 2, 3]),
      'client handshake response has a bad length-encoded integer',
    ],
    [
      'an 8-byte length',
      Buffer.concat([Buffer.from([0xfe]), Buffer.alloc(8, 0xff)]),
      'client handshake response auth data is truncated',
    ],
    ['a length past the end', Buffer.from([200, 1, 2]), 'client handshake response auth data is truncated'],
  ])('auth data with %s is refused by name', (_what, authPart, message) => {
    const payload = Buffer.concat([responseHead(CLIENT_CAPS), Buffer.from('alice\0'), authPart]);
    const err = refusal(() => parseHandshakeResponse(payload));
    expect(err).toBeInstanceOf(MysqlProtocolError);
    expect(err.message).toBe(message);
  });

  it('reads 2- and 3-byte auth data lengths', () => {
    const auth = Buffer.alloc(300, 0x61);
    const two = Buffer.concat([Buffer.from([0xfc, 0x2c, 0x01]), auth]);
    expect(parseHandshakeResponse(lenencAuth(two)).database).toBe('example');
    const three = Buffer.concat([Buffer.from([0xfd, 0x2c, 0x01, 0x00]), auth]);
    expect(parseHandshakeResponse(lenencAuth(three)).database).toBe('example');
  });

  it('a response that ends exactly after its auth data has no database, and is no error', () => {
    const payload = Buffer.concat([
      responseHead(CLIENT_CAPS),
      Buffer.from('alice\0'),
      Buffer.from([3, 1, 2, 3]),
    ]);
    expect(parseHandshakeResponse(payload).database).toBeUndefined();
  });

  it('NUL-terminated auth data without its terminator runs to the end: no database', () => {
    const base = CLIENT_CAPS & ~(CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_SECURE_CONNECTION);
    const payload = Buffer.concat([responseHead(base), Buffer.from('alice\0'), Buffer.from('authdata')]);
    expect(parseHandshakeResponse(payload).database).toBeUndefined();
  });

  it('AuthMoreData other than fast-auth success needs the client', () => {
    expect(authPacketKind(Buffer.from([0x01, 0x04]))).toBe('needs-client');
    expect(authPacketKind(Buffer.from([0x02, 0x03]))).toBe('needs-client');
    expect(authPacketKind(Buffer.from([0x01, 0x03]))).toBe('fast-auth-ok');
  });
});
