import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Refusal } from '../../../src/proxy/protocols/framing.js';
import {
  CLIENT_PLUGIN_AUTH,
  CLIENT_PROTOCOL_41,
  serializeMysqlPacket,
} from '../../../src/proxy/protocols/mysql.js';
import {
  COM_CHANGE_USER,
  COM_INIT_DB,
  COM_RESET_CONNECTION,
  MAX_INSPECTED_COMMAND,
  MysqlCommandFramer,
  type MysqlSessionPolicy,
  parseChangeUser,
  resetConnectionPacket,
} from '../../../src/proxy/protocols/mysql-commands.js';
import { byteByByte, cut, everyDoubleCut, everySingleCut } from '../../support/split.js';

const CLIENT_SECURE_CONNECTION = 0x8000;
const POLICY: MysqlSessionPolicy = {
  user: 'alice',
  database: 'example',
  capabilities: CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH,
};

const COM_QUERY = 0x03;
const COM_PING = 0x0e;
const command = (code: number, body: Buffer | string = Buffer.alloc(0), seq = 0) =>
  serializeMysqlPacket(seq, Buffer.concat([Buffer.from([code]), Buffer.from(body)]));
const query = (sql: string) => command(COM_QUERY, sql);
const initDb = (name: string) => command(COM_INIT_DB, name);

/** A COM_CHANGE_USER as mysql2 and libmariadb send it: user, 20-byte auth data, schema, charset, plugin. */
function changeUser(user: string, schema = '', auth = Buffer.alloc(20, 7)): Buffer {
  return command(
    COM_CHANGE_USER,
    Buffer.concat([
      Buffer.from(`${user}\0`),
      Buffer.from([auth.length]),
      auth,
      Buffer.from(`${schema}\0`),
      Buffer.from([45, 0]),
      Buffer.from('mysql_native_password\0'),
    ]),
  );
}

/** Every chunk through one framer: the bytes relayed, how many buffers that took, and any refusal. */
function run(
  chunks: readonly Buffer[],
  policy = POLICY,
): { out: Buffer; buffers: number; refusal?: Refusal } {
  const framer = new MysqlCommandFramer(policy);
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    const step = framer.push(chunk);
    out.push(...step.forward);
    if (step.refusal) return { out: Buffer.concat(out), buffers: out.length, refusal: step.refusal };
  }
  return { out: Buffer.concat(out), buffers: out.length };
}

/** The error code and message of an ERR reply. */
function errOf(refusal: Refusal | undefined): { seq: number; errno: number; message: string } {
  if (!refusal) throw new Error('expected a refusal');
  const r = refusal.reply;
  expect(r[4]).toBe(0xff);
  return { seq: r[3] as number, errno: r.readUInt16LE(5), message: r.toString('utf8', 13) };
}

describe('MysqlCommandFramer: relayed commands', () => {
  it('hands back the very chunk it was given when it holds only relayed commands', () => {
    const chunk = Buffer.concat([query('SELECT 1'), command(COM_PING), query('SELECT 2')]);
    const step = new MysqlCommandFramer(POLICY).push(chunk);
    expect(step.forward).toHaveLength(1);
    expect(step.forward[0]).toBe(chunk);
  });

  it('passes a 16 MiB multi-packet command through, never taking its continuation for a command', () => {
    const first = Buffer.concat([Buffer.from([COM_QUERY]), Buffer.alloc(0xffffff - 1, 0x11)]);
    // The continuation starts with 0x11 (COM_CHANGE_USER) and has sequence id 1: it is data.
    const stream = [
      serializeMysqlPacket(0, first),
      serializeMysqlPacket(1, Buffer.from([COM_CHANGE_USER, 0x61, 0])),
      query('SELECT 3'),
    ];
    const { out, refusal } = run(stream);
    expect(refusal).toBeUndefined();
    expect(out.equals(Buffer.concat(stream))).toBe(true);
  });

  it('relays COM_INIT_DB to the output database, and to any database when the output names none', () => {
    const same = run([initDb('example')]);
    expect(same.refusal).toBeUndefined();
    expect(same.out.equals(initDb('example'))).toBe(true);
    expect(run([initDb('secretdb')], { ...POLICY, database: '' }).out.equals(initDb('secretdb'))).toBe(true);
  });

  it('sends COM_CHANGE_USER to the certificate user as COM_RESET_CONNECTION', () => {
    for (const packet of [changeUser('alice'), changeUser('alice', 'example')]) {
      const { out, refusal } = run([packet]);
      expect(refusal).toBeUndefined();
      expect(out.equals(resetConnectionPacket())).toBe(true);
    }
    expect(resetConnectionPacket().equals(Buffer.from([1, 0, 0, 0, COM_RESET_CONNECTION]))).toBe(true);
  });
});

describe('MysqlCommandFramer: refusals', () => {
  it('refuses COM_CHANGE_USER to another user, relaying nothing of it or after it', () => {
    const before = query('SELECT 1');
    const { out, refusal } = run([Buffer.concat([before, changeUser('carol'), query('SELECT 2')])]);
    expect(out.equals(before)).toBe(true);
    expect(refusal?.code).toBe('USER_MISMATCH');
    expect(errOf(refusal)).toEqual({
      seq: 1,
      errno: 1045,
      message:
        'broker proxy: the client asked to change to user "carol" but the certificate is for user "alice"',
    });
  });

  it('refuses COM_CHANGE_USER and COM_INIT_DB naming another database', () => {
    for (const packet of [changeUser('alice', 'secretdb'), initDb('secretdb'), initDb('example\0junk')]) {
      const { out, refusal } = run([packet]);
      expect(out).toHaveLength(0);
      expect(refusal?.code).toBe('DATABASE_MISMATCH');
      expect(errOf(refusal).errno).toBe(1044);
    }
    expect(errOf(run([initDb('secretdb')]).refusal).message).toBe(
      'broker proxy: the client asked for database "secretdb" but the output is for database "example"',
    );
  });

  it.each([
    ['a command with sequence id 3', command(COM_QUERY, 'SELECT 1', 3), 1156, /sequence id 3/],
    ['an empty packet', serializeMysqlPacket(0, Buffer.alloc(0)), 1047, /empty command/],
    ['COM_SLEEP', command(0x00), 1047, /command 0x00 is not relayed/],
    ["MariaDB's COM_MULTI", command(0xfe, changeUser('carol').subarray(4)), 1047, /command 0xfe/],
    ["MySQL's COM_CLONE", command(0x20), 1047, /command 0x20/],
    ['a COM_CHANGE_USER without a user terminator', command(COM_CHANGE_USER, 'carol'), 1047, /terminated/],
  ])('refuses %s', (_what, packet, errno, message) => {
    const { out, refusal } = run([packet]);
    expect(out).toHaveLength(0);
    expect(refusal?.code).toBe('COMMAND_REFUSED');
    expect(errOf(refusal).errno).toBe(errno);
    expect(errOf(refusal).message).toMatch(message);
  });

  it('refuses an oversized COM_CHANGE_USER from its header alone', () => {
    const head = Buffer.from([0, 0, 0, 0, COM_CHANGE_USER]);
    head.writeUIntLE(MAX_INSPECTED_COMMAND + 1, 0, 3);
    expect(errOf(run([head]).refusal).message).toMatch(/65537-byte COM_CHANGE_USER/);
  });

  it('relays nothing once it has refused', () => {
    const framer = new MysqlCommandFramer(POLICY);
    expect(framer.push(changeUser('carol')).refusal).toBeDefined();
    expect(framer.push(query('SELECT 1'))).toEqual({ forward: [] });
  });
});

describe('parseChangeUser', () => {
  it('reads user and schema past a one-byte-length or a NUL-terminated auth field', () => {
    const payload = changeUser('alice', 'example').subarray(4);
    expect(parseChangeUser(payload, CLIENT_SECURE_CONNECTION)).toEqual({
      user: 'alice',
      database: 'example',
    });
    const old = Buffer.concat([Buffer.from([COM_CHANGE_USER]), Buffer.from('bob\0scramble\0secretdb\0')]);
    expect(parseChangeUser(old, 0)).toEqual({ user: 'bob', database: 'secretdb' });
  });

  it('gives an empty schema when the packet ends early, and undefined without a user terminator', () => {
    expect(parseChangeUser(Buffer.from([COM_CHANGE_USER, 0x61, 0]), CLIENT_SECURE_CONNECTION)).toEqual({
      user: 'a',
      database: '',
    });
    expect(parseChangeUser(Buffer.from([COM_CHANGE_USER, 0x61]), CLIENT_SECURE_CONNECTION)).toBeUndefined();
  });
});

// A session: relayed commands, an allowed change of user (replaced), COM_INIT_DB, more commands.
const SESSION = [
  query('SELECT 1'),
  changeUser('alice', 'example'),
  command(COM_PING),
  initDb('example'),
  query('SELECT 2'),
];
const SESSION_BYTES = Buffer.concat(SESSION);
const SESSION_OUT = Buffer.concat(SESSION.map((p, i) => (i === 1 ? resetConnectionPacket() : p)));
// An attack: the refused change of user comes after a relayed query; nothing from it on is relayed.
const ATTACK = Buffer.concat([query('SELECT 1'), changeUser('carol'), query('SELECT 2')]);

describe('MysqlCommandFramer split at every offset', () => {
  it('every two-chunk split relays the same bytes', () => {
    for (const offsets of everySingleCut(SESSION_BYTES.length)) {
      const { out, refusal } = run(cut(SESSION_BYTES, offsets));
      expect(refusal, `cut at ${offsets}`).toBeUndefined();
      expect(out.equals(SESSION_OUT), `cut at ${offsets}`).toBe(true);
    }
  });

  it('every three-chunk split and byte-by-byte relay the same bytes', () => {
    const wrong: number[][] = [];
    for (const offsets of [...everyDoubleCut(SESSION_BYTES.length), byteByByte(SESSION_BYTES.length)]) {
      const { out, refusal } = run(cut(SESSION_BYTES, offsets));
      if (refusal || !out.equals(SESSION_OUT)) wrong.push(offsets);
    }
    expect(wrong).toEqual([]);
  });

  it('every split of an attack relays exactly the query before it, and refuses', () => {
    const before = query('SELECT 1');
    const wrong: number[][] = [];
    for (const offsets of [...everyDoubleCut(ATTACK.length), byteByByte(ATTACK.length)]) {
      const { out, refusal } = run(cut(ATTACK, offsets));
      if (refusal?.code !== 'USER_MISMATCH' || !out.equals(before)) wrong.push(offsets);
    }
    expect(wrong).toEqual([]);
  });
});

describe('MysqlCommandFramer properties', () => {
  /** A relayed command with a random body, or one that is checked and allowed. */
  const allowed = fc.oneof(
    fc
      .tuple(
        fc.constantFrom(0x01, 0x03, 0x04, 0x0e, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1f, 0xfa),
        fc.uint8Array({ maxLength: 300 }),
      )
      .map(([code, body]) => ({
        bytes: command(code, Buffer.from(body)),
        out: command(code, Buffer.from(body)),
      })),
    fc.constant({ bytes: initDb('example'), out: initDb('example') }),
    fc.constant({ bytes: changeUser('alice'), out: resetConnectionPacket() }),
  );
  const refused = fc.oneof(
    fc
      .string({ minLength: 1, maxLength: 20 })
      .filter((u) => u !== 'alice' && !u.includes('\0'))
      .map((u) => changeUser(u)),
    fc
      .string({ minLength: 1, maxLength: 20 })
      .filter((d) => d !== 'example')
      .map((d) => initDb(d)),
    fc.integer({ min: 1, max: 255 }).map((seq) => command(COM_QUERY, 'SELECT 1', seq)),
  );
  /** Cut points for a stream of `length` bytes. */
  const cuts = (length: number) =>
    fc
      .uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 12 })
      .map((a) => a.sort((x, y) => x - y));

  it('property: allowed commands in any split relay exactly their bytes (a change of user as a reset)', () => {
    fc.assert(
      fc.property(
        fc.array(allowed, { maxLength: 12 }).chain((cmds) => {
          const bytes = Buffer.concat(cmds.map((c) => c.bytes));
          return fc.tuple(fc.constant(cmds), cuts(bytes.length));
        }),
        ([cmds, offsets]) => {
          const bytes = Buffer.concat(cmds.map((c) => c.bytes));
          const { out, refusal } = run(cut(bytes, offsets));
          expect(refusal).toBeUndefined();
          expect(out.equals(Buffer.concat(cmds.map((c) => c.out)))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: a refused command relays exactly the commands before it, in any split', () => {
    fc.assert(
      fc.property(
        fc.array(allowed, { maxLength: 6 }),
        refused,
        fc.array(allowed, { maxLength: 6 }),
        fc.nat(),
        (head, bad, tail, seed) => {
          const bytes = Buffer.concat([...head.map((c) => c.bytes), bad, ...tail.map((c) => c.bytes)]);
          const offsets = [...new Set([seed % (bytes.length + 1), (seed >> 8) % (bytes.length + 1)])].sort(
            (a, b) => a - b,
          );
          const { out, refusal } = run(cut(bytes, offsets));
          expect(refusal).toBeDefined();
          expect(out.equals(Buffer.concat(head.map((c) => c.out)))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: any bytes in any split give relayed bytes and at most one refusal, never an exception', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }).chain((b) => fc.tuple(fc.constant(Buffer.from(b)), cuts(b.length))),
        ([bytes, offsets]) => {
          const { out } = run(cut(bytes, offsets));
          // Whatever it relays is the input, or the input with changes of user replaced.
          expect(out.length).toBeLessThanOrEqual(bytes.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
