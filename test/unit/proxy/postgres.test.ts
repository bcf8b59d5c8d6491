import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CANCEL_REQUEST_CODE,
  errorResponse,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET,
  PostgresProtocolError,
  PROTOCOL_3_0,
  parseStartupPacket,
  SSL_REQUEST_CODE,
  type StartupPacket,
  serializeCancel,
  serializeStartup,
  sslRequest,
  sslRequestAccepted,
  startupParams,
  takeStartupPacket,
} from '../../../src/proxy/protocols/postgres.js';
import { byteByByte, cut, everyDoubleCut, everySingleCut, feed } from '../../support/split.js';

/** An 8-byte request packet: length 8 and a request code. */
function request(code: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(code, 4);
  return b;
}

/** Length header then code then body, with the length field set to `len` (default: the real length). */
function packetWith(code: number, body: Buffer, len = 8 + body.length): Buffer {
  const head = Buffer.alloc(8);
  head.writeInt32BE(len, 0);
  head.writeInt32BE(code, 4);
  return Buffer.concat([head, body]);
}

/** The startup parameters psql 16 sends, plus a non-ASCII value to check byte (not character) lengths. */
const PSQL_PARAMS = new Map([
  ['user', 'alice'],
  ['database', 'example'],
  ['application_name', 'psql'],
  ['client_encoding', 'UTF8'],
  ['options', '-c search_path=münchen'],
]);

// What follows each packet on a real connection: a TLS ClientHello after SSLRequest, a GSSAPI token after
// GSSENCRequest, nothing meaningful after CancelRequest (extra bytes here only check they are left alone),
// and a PasswordMessage after StartupMessage.
const CLIENT_HELLO = Buffer.from('16030100c4010000c00303', 'hex');
const GSS_TOKEN = Buffer.from('000000256082', 'hex');
const PASSWORD_MESSAGE = Buffer.concat([Buffer.from('p\0\0\0\x0b', 'latin1'), Buffer.from('secret\0')]);

const CASES: { name: string; bytes: Buffer; extra: Buffer; expected: StartupPacket }[] = [
  { name: 'SSLRequest', bytes: sslRequest(), extra: CLIENT_HELLO, expected: { kind: 'ssl' } },
  {
    name: 'GSSENCRequest',
    bytes: request(GSSENC_REQUEST_CODE),
    extra: GSS_TOKEN,
    expected: { kind: 'gssenc' },
  },
  {
    name: 'CancelRequest',
    bytes: serializeCancel(4242, Buffer.from('0badf00d', 'hex')),
    extra: Buffer.from('trailing'),
    expected: { kind: 'cancel', processId: 4242, secretKey: Buffer.from('0badf00d', 'hex') },
  },
  {
    name: 'StartupMessage with several parameters',
    bytes: serializeStartup(PROTOCOL_3_0, PSQL_PARAMS),
    extra: PASSWORD_MESSAGE,
    expected: { kind: 'startup', protocol: PROTOCOL_3_0, params: PSQL_PARAMS },
  },
];

/** Feeds `bytes` (a packet then extra bytes) in `chunks` and takes the first packet, as the tunnel does. */
function firstPacket(chunks: Buffer[]): { packet: StartupPacket; rest: Buffer } {
  const { packets, rest } = feed(takeStartupPacket, chunks, 1);
  expect(packets).toHaveLength(1);
  return { packet: parseStartupPacket(packets[0] as Buffer), rest };
}

describe('takeStartupPacket split at every offset', () => {
  for (const c of CASES) {
    it(`${c.name}: every two-chunk split gives the same packet and leaves the extra bytes`, () => {
      const stream = Buffer.concat([c.bytes, c.extra]);
      for (const offsets of everySingleCut(stream.length)) {
        const { packet, rest } = firstPacket(cut(stream, offsets));
        expect(packet, `cut at ${offsets}`).toEqual(c.expected);
        expect(rest.equals(c.extra), `rest after cut at ${offsets}`).toBe(true);
      }
    });

    it(`${c.name}: every three-chunk split and byte-by-byte give the same packet`, () => {
      const stream = Buffer.concat([c.bytes, c.extra]);
      // Thousands of cuts: compare cheaply and report the offsets that differ.
      const wrong: number[][] = [];
      for (const offsets of [...everyDoubleCut(stream.length), byteByByte(stream.length)]) {
        const { packets, rest } = feed(takeStartupPacket, cut(stream, offsets), 1);
        const ok =
          packets.length === 1 &&
          isDeepStrictEqual(parseStartupPacket(packets[0] as Buffer), c.expected) &&
          rest.equals(c.extra);
        if (!ok) wrong.push(offsets);
      }
      expect(wrong).toEqual([]);
    });

    it(`${c.name}: yields nothing until the last byte of the packet arrives`, () => {
      for (let n = 0; n < c.bytes.length; n++)
        expect(takeStartupPacket(c.bytes.subarray(0, n))).toBeUndefined();
      const whole = takeStartupPacket(c.bytes);
      expect(whole?.packet.equals(c.bytes)).toBe(true);
      expect(whole?.rest).toHaveLength(0);
    });
  }

  it('a stream of SSLRequest, GSSENCRequest, CancelRequest and StartupMessage splits the same at every offset', () => {
    const stream = Buffer.concat(CASES.map((c) => c.bytes));
    for (const offsets of [...everySingleCut(stream.length), byteByByte(stream.length)]) {
      const { packets, rest } = feed(takeStartupPacket, cut(stream, offsets));
      expect(
        packets.map((p) => parseStartupPacket(p)),
        `cut at ${offsets}`,
      ).toEqual(CASES.map((c) => c.expected));
      expect(rest).toHaveLength(0);
    }
  });
});

describe('parseStartupPacket', () => {
  it('recognises the request codes only in 8-byte packets', () => {
    expect(parseStartupPacket(request(SSL_REQUEST_CODE))).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(request(GSSENC_REQUEST_CODE))).toEqual({ kind: 'gssenc' });
    // An SSLRequest code with a body is no SSLRequest (and 1234.5679 is no protocol version either).
    expect(() => parseStartupPacket(packetWith(SSL_REQUEST_CODE, Buffer.alloc(4)))).toThrow(
      PostgresProtocolError,
    );
  });

  it.each([
    ['SSLRequest', SSL_REQUEST_CODE],
    ['GSSENCRequest', GSSENC_REQUEST_CODE],
  ])('refuses a %s of any other length than 8, naming it', (name, code) => {
    for (const extra of [1, 4, 8, 100]) {
      const packet = packetWith(code, Buffer.alloc(extra));
      expect(() => parseStartupPacket(packet)).toThrow(PostgresProtocolError);
      expect(() => parseStartupPacket(packet)).toThrow(
        `${name} of length ${8 + extra}; it is always 8 bytes`,
      );
    }
  });

  it('refuses a StartupMessage whose parameters are not NUL-terminated, by name', () => {
    const unterminated = packetWith(PROTOCOL_3_0, Buffer.from('user\0alice\0database', 'utf8'));
    const err = (() => {
      try {
        parseStartupPacket(unterminated);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(PostgresProtocolError);
    expect(err?.name).toBe('PostgresProtocolError');
    expect(err?.message).toBe('StartupMessage is not NUL-terminated');
  });

  it('reads a CancelRequest, including the longer secret keys of protocol 3.2', () => {
    const key = Buffer.alloc(32, 7);
    expect(parseStartupPacket(serializeCancel(-5, key))).toEqual({
      kind: 'cancel',
      processId: -5,
      secretKey: key,
    });
    expect(() => parseStartupPacket(packetWith(CANCEL_REQUEST_CODE, Buffer.alloc(7)))).toThrow(
      'truncated CancelRequest',
    );
  });

  it('copies the cancel key out of the packet, so reusing the read buffer cannot change it', () => {
    const bytes = serializeCancel(1, Buffer.from('01020304', 'hex'));
    const packet = parseStartupPacket(bytes);
    bytes.fill(0);
    expect(packet).toMatchObject({ secretKey: Buffer.from('01020304', 'hex') });
  });

  it('accepts an empty parameter list and empty values', () => {
    expect(parseStartupPacket(serializeStartup(PROTOCOL_3_0, new Map()))).toEqual({
      kind: 'startup',
      protocol: PROTOCOL_3_0,
      params: new Map(),
    });
    expect(parseStartupPacket(serializeStartup(PROTOCOL_3_0, new Map([['user', '']])))).toMatchObject({
      params: new Map([['user', '']]),
    });
  });

  it('accepts protocol 3.x minor versions and refuses 2.0 and 4.0 naming the version', () => {
    expect(parseStartupPacket(serializeStartup((3 << 16) | 2, new Map()))).toMatchObject({
      protocol: 0x30002,
    });
    expect(() => parseStartupPacket(serializeStartup(2 << 16, new Map()))).toThrow(
      /unsupported frontend protocol 2\.0/,
    );
    expect(() => parseStartupPacket(serializeStartup(4 << 16, new Map()))).toThrow(PostgresProtocolError);
  });

  it.each([
    ['no terminator at all', Buffer.from('user\0alice\0')],
    ['a name without a value', Buffer.from('user\0alice\0database\0')],
    ['a name without its NUL', Buffer.from('user')],
    ['bytes after the terminator', Buffer.from('user\0alice\0\0x')],
    ['an empty body', Buffer.alloc(0)],
  ])('refuses a StartupMessage with %s', (_what, body) => {
    expect(() => parseStartupPacket(packetWith(PROTOCOL_3_0, body))).toThrow(PostgresProtocolError);
  });

  it('names the parameter that has no value', () => {
    expect(() =>
      parseStartupPacket(packetWith(PROTOCOL_3_0, Buffer.from('user\0alice\0database\0'))),
    ).toThrow('StartupMessage parameter "database" has no value');
  });
});

describe('takeStartupPacket lengths', () => {
  it('accepts the bounds 8 and MAX_STARTUP_PACKET', () => {
    expect(takeStartupPacket(request(SSL_REQUEST_CODE))?.packet).toHaveLength(8);
    const biggest = packetWith(PROTOCOL_3_0, Buffer.alloc(MAX_STARTUP_PACKET - 8, 0x61));
    expect(takeStartupPacket(biggest)?.packet).toHaveLength(MAX_STARTUP_PACKET);
    // Incomplete but plausible: waits for more.
    expect(takeStartupPacket(biggest.subarray(0, 100))).toBeUndefined();
  });

  it('property: a length below 8 or above the server limit is refused from the 4-byte header alone', () => {
    const bad = fc.oneof(
      fc.integer({ min: -(2 ** 31), max: 7 }),
      fc.integer({ min: MAX_STARTUP_PACKET + 1, max: 2 ** 31 - 1 }),
    );
    fc.assert(
      fc.property(bad, fc.uint8Array({ maxLength: 16 }), (len, tail) => {
        const head = Buffer.alloc(4);
        head.writeInt32BE(len, 0);
        expect(() => takeStartupPacket(Buffer.concat([head, tail]))).toThrow(PostgresProtocolError);
        expect(() => takeStartupPacket(Buffer.concat([head, tail]))).toThrow(
          `invalid startup packet length ${len}`,
        );
      }),
    );
  });

  it('property: a length within bounds waits for the rest and never throws on a short buffer', () => {
    fc.assert(
      fc.property(fc.integer({ min: 8, max: MAX_STARTUP_PACKET }), (len) => {
        const head = Buffer.alloc(8);
        head.writeInt32BE(len, 0);
        const got = takeStartupPacket(head);
        if (len === 8) expect(got?.packet).toHaveLength(8);
        else expect(got).toBeUndefined();
      }),
    );
  });
});

// Parameter names and values are C strings: any Unicode text without NUL. Names are non-empty, as an
// empty name is the list terminator.
const cString = (minLength: number) =>
  fc.string({ unit: 'binary', minLength, maxLength: 40 }).filter((s) => !s.includes('\0'));
const paramMaps = fc
  .array(fc.tuple(cString(1), cString(0)), { maxLength: 12 })
  .map((pairs) => new Map(pairs));
const protocol3 = fc.integer({ min: 0, max: 0xffff }).map((minor) => (3 << 16) | minor);

describe('StartupMessage properties', () => {
  it('property: serializeStartup then take and parse round-trips any parameter map, in order', () => {
    fc.assert(
      fc.property(protocol3, paramMaps, fc.uint8Array({ maxLength: 8 }), (protocol, params, extra) => {
        const bytes = serializeStartup(protocol, params);
        expect(bytes.readInt32BE(0)).toBe(bytes.length);
        const got = takeStartupPacket(Buffer.concat([bytes, extra]));
        expect(got?.rest.equals(Buffer.from(extra))).toBe(true);
        const packet = parseStartupPacket(got?.packet as Buffer);
        expect(packet).toEqual({ kind: 'startup', protocol, params });
        expect([...(packet as { params: Map<string, string> }).params.keys()]).toEqual([...params.keys()]);
      }),
    );
  });

  it('property: any truncation of a StartupMessage (length field adjusted) is refused', () => {
    fc.assert(
      fc.property(
        paramMaps.filter((m) => m.size > 0),
        fc.nat(),
        (params, at) => {
          const full = serializeStartup(PROTOCOL_3_0, params);
          // Keep the header and any strict prefix of the body (which ends in the terminator NUL).
          const keep = 8 + (at % (full.length - 8));
          const truncated = Buffer.from(full.subarray(0, keep));
          truncated.writeInt32BE(keep, 0);
          expect(() => parseStartupPacket(truncated)).toThrow(PostgresProtocolError);
        },
      ),
    );
  });

  it('property: a CancelRequest round-trips any process id and key', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        fc.uint8Array({ minLength: 4, maxLength: 256 }),
        (processId, key) => {
          const secretKey = Buffer.from(key);
          const got = takeStartupPacket(serializeCancel(processId, secretKey));
          expect(parseStartupPacket(got?.packet as Buffer)).toEqual({ kind: 'cancel', processId, secretKey });
        },
      ),
    );
  });
});

/**
 * Drives bytes through take and parse the way the tunnel does, until take needs more bytes. Returns how
 * many packets came out; throws whatever they throw.
 */
function drain(bytes: Buffer): number {
  let buf = bytes;
  let count = 0;
  for (;;) {
    // Each packet consumes at least 8 bytes, so this ends; the bound makes a hang a test failure.
    if (count > bytes.length / 8 + 1) throw new Error('takeStartupPacket did not consume its input');
    const got = takeStartupPacket(buf);
    if (!got) return count;
    expect(got.packet.length).toBeGreaterThanOrEqual(8);
    parseStartupPacket(got.packet);
    buf = got.rest;
    count++;
  }
}

/** Garbage that often gets past the length check: a plausible length and code, then random bytes. */
const framedGarbage = fc
  .tuple(
    fc.constantFrom(SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, PROTOCOL_3_0, 0x30002, 0),
    fc.uint8Array({ maxLength: 64 }),
    fc.integer({ min: -4, max: 4 }),
  )
  .map(([code, body, skew]) => packetWith(code, Buffer.from(body), 8 + body.length + skew));

describe('garbage', () => {
  const onlyProtocolErrors = (bytes: Buffer) => {
    try {
      drain(bytes);
    } catch (err) {
      expect(err).toBeInstanceOf(PostgresProtocolError);
    }
  };

  it('property: random bytes end in packets, a wait for more, or PostgresProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => onlyProtocolErrors(Buffer.from(bytes))),
      { numRuns: 2000 },
    );
  });

  it('property: plausibly framed random packets fail only with PostgresProtocolError', () => {
    fc.assert(
      fc.property(fc.array(framedGarbage, { minLength: 1, maxLength: 4 }), (packets) =>
        onlyProtocolErrors(Buffer.concat(packets)),
      ),
      { numRuns: 2000 },
    );
  });

  it('property: NUL-free noise in a StartupMessage body fails only with PostgresProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (body) => {
        const noisy = Buffer.concat([Buffer.from('user\0'), Buffer.from(body), Buffer.from([0])]);
        onlyProtocolErrors(packetWith(PROTOCOL_3_0, noisy));
      }),
    );
  });
});

/** Parses an ErrorResponse: type byte, Int32 length, then (field code, C string) pairs and a final NUL. */
function parseErrorResponse(b: Buffer): { type: string; length: number; fields: [string, string][] } {
  const type = String.fromCharCode(b[0] as number);
  const length = b.readInt32BE(1);
  const fields: [string, string][] = [];
  let i = 5;
  while (b[i] !== 0) {
    const end = b.indexOf(0, i + 1);
    if (end < 0) throw new Error('unterminated ErrorResponse field');
    fields.push([String.fromCharCode(b[i] as number), b.toString('utf8', i + 1, end)]);
    i = end + 1;
  }
  if (i !== b.length - 1) throw new Error('bytes after the ErrorResponse terminator');
  return { type, length, fields };
}

describe('errorResponse', () => {
  it('is an E message whose length counts itself and the body, with S, V, C, M and H fields and a terminator', () => {
    const b = errorResponse({
      code: '28000',
      message: 'broker proxy: the client asked for user "bob" but the certificate is for user "alice"',
      hint: 'connect as alice',
    });
    const parsed = parseErrorResponse(b);
    expect(parsed.type).toBe('E');
    expect(parsed.length).toBe(b.length - 1);
    expect(parsed.fields).toEqual([
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28000'],
      ['M', 'broker proxy: the client asked for user "bob" but the certificate is for user "alice"'],
      ['H', 'connect as alice'],
    ]);
    expect(b.at(-1)).toBe(0);
  });

  it('leaves out H without a hint and keeps a given severity', () => {
    const parsed = parseErrorResponse(errorResponse({ severity: 'ERROR', code: '08006', message: 'down' }));
    expect(parsed.fields).toEqual([
      ['S', 'ERROR'],
      ['V', 'ERROR'],
      ['C', '08006'],
      ['M', 'down'],
    ]);
  });

  it('property: the length is in bytes, so any NUL-free UTF-8 message and hint parse back', () => {
    fc.assert(
      fc.property(cString(0), fc.option(cString(1), { nil: undefined }), (message, hint) => {
        const b = errorResponse({ code: '08P01', message, ...(hint ? { hint } : {}) });
        const parsed = parseErrorResponse(b);
        expect(parsed.length).toBe(b.length - 1);
        expect(parsed.fields.find(([k]) => k === 'M')?.[1]).toBe(message);
        expect(parsed.fields.find(([k]) => k === 'H')?.[1]).toBe(hint);
      }),
    );
  });
});

describe('sslRequest and serializeCancel', () => {
  it('sslRequest is length 8 and code 80877103', () => {
    expect(sslRequest().toString('hex')).toBe('0000000804d2162f');
  });

  it('serializeCancel is length 16 for a 4-byte key: length, 80877102, process id, key', () => {
    expect(serializeCancel(0x01020304, Buffer.from('aabbccdd', 'hex')).toString('hex')).toBe(
      '0000001004d2162e01020304aabbccdd',
    );
  });
});

describe('sslRequestAccepted', () => {
  it("accepts exactly one 'S'", () => {
    expect(sslRequestAccepted(Buffer.from('S'))).toBe(true);
  });

  it.each([
    ['N', 'a refusal'],
    ['E', 'an ErrorResponse from a server too old for SSLRequest'],
    ['', 'nothing'],
    ['SX', "bytes after the 'S', which would arrive outside the TLS session"],
    ['s', 'a lower-case s'],
  ])('refuses %j (%s)', (answer) => {
    expect(sslRequestAccepted(Buffer.from(answer, 'latin1'))).toBe(false);
  });
});

describe('startupParams: the user and database a startup may ask for', () => {
  const policy = { user: 'alice', database: 'example' };
  const params = (entries: Record<string, string>) => new Map(Object.entries(entries));

  it('fills in the certificate user and a missing database, keeping every other parameter', () => {
    expect(startupParams(params({ application_name: 'psql' }), policy)).toEqual({
      params: params({ application_name: 'psql', user: 'alice', database: 'example' }),
    });
    expect(startupParams(params({ user: 'alice', database: 'example' }), policy)).toEqual({
      params: params({ user: 'alice', database: 'example' }),
    });
  });

  it('refuses another user, then another database, naming both', () => {
    expect(startupParams(params({ user: 'bob', database: 'secretdb' }), policy)).toEqual({
      refusal: {
        code: 'USER_MISMATCH',
        sqlState: '28000',
        message: 'broker proxy: the client asked for user "bob" but the certificate is for user "alice"',
        hint: 'connect as alice',
      },
    });
    expect(startupParams(params({ user: 'alice', database: 'secretdb' }), policy)).toEqual({
      refusal: {
        code: 'DATABASE_MISMATCH',
        sqlState: '28000',
        message:
          'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
        hint: 'connect to database example',
      },
    });
  });

  it('leaves the database to the client when the output names none', () => {
    expect(startupParams(params({ database: 'secretdb' }), { user: 'alice', database: '' })).toEqual({
      params: params({ database: 'secretdb', user: 'alice' }),
    });
    expect(startupParams(params({}), { user: 'alice', database: '' })).toEqual({
      params: params({ user: 'alice' }),
    });
  });

  it('property: what is sent names the certificate user, and the output database when it names one', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom('user', 'database', 'options', 'application_name'), fc.string()),
        fc.constantFrom('', 'example'),
        (entries, database) => {
          const decided = startupParams(params(entries), { user: 'alice', database });
          if ('refusal' in decided) {
            expect(
              entries.user !== undefined && entries.user !== 'alice' ? 'USER_MISMATCH' : 'DATABASE_MISMATCH',
            ).toBe(decided.refusal.code);
            return;
          }
          expect(decided.params.get('user')).toBe('alice');
          if (database) expect(decided.params.get('database')).toBe('example');
          else expect(decided.params.get('database')).toBe(entries.database);
        },
      ),
    );
  });
});
