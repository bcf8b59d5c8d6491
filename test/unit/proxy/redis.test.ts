import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Refusal } from '../../../src/proxy/protocols/framing.js';
import { RedisRequestFramer, type RedisSessionPolicy } from '../../../src/proxy/protocols/redis.js';
import { commandName, inspectRequest, requestedUsers } from '../../../src/proxy/protocols/redis-auth.js';
import { splitInline } from '../../../src/proxy/protocols/redis-inline.js';
import { byteByByte, cut, everyDoubleCut, everySingleCut } from '../../support/split.js';

const POLICY: RedisSessionPolicy = { user: 'alice' };

/** A request as clients send it: an array of bulk strings. */
const req = (...args: (string | Buffer)[]) =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => [
      Buffer.from(`$${Buffer.byteLength(a)}\r\n`),
      Buffer.from(a),
      Buffer.from('\r\n'),
    ]),
  ]);

function run(chunks: readonly Buffer[], policy = POLICY): { out: Buffer; refusal?: Refusal } {
  const framer = new RedisRequestFramer(policy);
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    const step = framer.push(chunk);
    out.push(...step.forward);
    if (step.refusal) return { out: Buffer.concat(out), refusal: step.refusal };
  }
  return { out: Buffer.concat(out) };
}

const relays = (bytes: Buffer, policy = POLICY) => {
  const { out, refusal } = run([bytes], policy);
  expect(refusal?.message).toBeUndefined();
  expect(out.equals(bytes)).toBe(true);
};
const refuses = (bytes: Buffer, code: Refusal['code'] = 'USER_MISMATCH') => {
  const { refusal } = run([bytes]);
  expect(refusal?.code).toBe(code);
  return refusal as Refusal;
};

describe('RedisRequestFramer: relayed requests', () => {
  it('hands back the very chunk it was given for ordinary requests', () => {
    const chunk = Buffer.concat([req('SET', 'k', 'v'.repeat(1000)), req('GET', 'k'), req('PING')]);
    const step = new RedisRequestFramer(POLICY).push(chunk);
    expect(step.forward).toEqual([chunk]);
    expect(step.forward[0]).toBe(chunk);
  });

  it.each([
    ['AUTH as the certificate user', req('AUTH', 'alice', 'pw')],
    ['HELLO without AUTH', req('HELLO', '3')],
    [
      'HELLO AUTH as the certificate user, with SETNAME',
      req('HELLO', '3', 'AUTH', 'alice', 'pw', 'SETNAME', 'x'),
    ],
    ['AUTH without arguments (an arity error)', req('AUTH')],
    ['AUTH with four arguments (a syntax error)', req('AUTH', 'other', 'pw', 'x')],
    ['a longer name that starts like one', req('AUTHX', 'other', 'pw')],
    ['an empty multibulk', Buffer.from('*0\r\n*-1\r\n')],
    ['an inline PING and an empty line', Buffer.from('PING\r\n\r\n')],
    ['an inline AUTH as the certificate user', Buffer.from('auth alice pw\n')],
    ['a zero-length argument', req('SET', '', '')],
  ])('relays %s', (_what, bytes) => relays(bytes));

  it('relays RESET and AUTH <password> when the certificate user is default', () => {
    relays(req('RESET'), { user: 'default' });
    relays(req('AUTH', 'pw'), { user: 'default' });
  });
});

describe('RedisRequestFramer: refusals', () => {
  it('refuses AUTH as another user with a RESP error naming both', () => {
    const r = refuses(req('AUTH', 'other', 'pw'));
    expect(r.reply.toString()).toBe(
      '-ERR broker proxy: the client asked to authenticate as user "other" but the certificate is for user "alice"\r\n',
    );
  });

  it.each([
    ['AUTH <password> (the default user)', req('AUTH', 'pw'), /user "default"/],
    ['RESET (back to the default user)', req('RESET'), /reset the connection to user "default"/],
    ['HELLO 3 AUTH other', req('HELLO', '3', 'AUTH', 'other', 'pw'), /user "other"/],
    [
      'HELLO with a second AUTH naming another',
      req('HELLO', '3', 'AUTH', 'alice', 'a', 'AUTH', 'other', 'b'),
      /"other"/,
    ],
    ['a lower-case name', req('auth', 'other', 'pw'), /"other"/],
    ['a mixed-case name', req('hElLo', '2', 'aUtH', 'other', 'pw'), /"other"/],
    ['a name cut by a NUL byte, as the server compares it', req('AUTH\0junk', 'other', 'pw'), /"other"/],
    ['a user that differs in case', req('AUTH', 'Alice', 'pw'), /"Alice"/],
    ['an inline AUTH', Buffer.from('AUTH other pw\r\n'), /"other"/],
    ['an inline AUTH quoted in pieces', Buffer.from('a"uth" "oth\\x65r" pw\r\n'), /"other"/],
    ["an inline AUTH in 'single quotes'", Buffer.from("'AUTH' 'other' pw\n"), /"other"/],
  ])('refuses %s', (_what, bytes, message) => {
    expect(refuses(bytes).message).toMatch(message);
  });

  it.each([
    ['a count that is not a number', Buffer.from('*x\r\n')],
    ['a count with a leading zero', Buffer.from('*01\r\n')],
    ['an argument that does not start with $', Buffer.from('*1\r\n:4\r\nPING\r\n')],
    ['a negative argument length', Buffer.from('*1\r\n$-1\r\n')],
    ['a NUL in a count', Buffer.from('*1\0\r\n')],
    ['a NUL in an inline request', Buffer.from('AUTH\0 other pw\r\n')],
    ['unbalanced quotes', Buffer.from('"AUTH other pw\r\n')],
    ['a closing quote followed by a letter', Buffer.from('"AUTH"x other pw\r\n')],
  ])('refuses %s as the server would (a protocol error)', (_what, bytes) => {
    const { out, refusal } = run([bytes]);
    expect(refusal?.code).toBe('COMMAND_REFUSED');
    // Nothing the server could run was relayed.
    expect(out.length).toBeLessThan(bytes.length);
  });

  it('relays of a refused request only its start, which the server never runs', () => {
    const { out } = run([Buffer.concat([req('PING'), req('AUTH', 'other', 'pw'), req('PING')])]);
    expect(out.toString()).toBe('*1\r\n$4\r\nPING\r\n*3\r\n$4\r\nAUTH');
  });

  it('refuses an inline line that never ends, and an AUTH larger than it inspects', () => {
    const framer = new RedisRequestFramer(POLICY);
    expect(framer.push(Buffer.alloc(40_000, 0x61)).refusal).toBeUndefined();
    expect(framer.push(Buffer.alloc(40_000, 0x61)).refusal?.message).toMatch(/without an end of line/);
    const big = new RedisRequestFramer(POLICY);
    expect(
      big.push(Buffer.from(`*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$100000\r\n${'x'.repeat(70_000)}`)).refusal
        ?.message,
    ).toMatch(/this large/);
  });
});

describe('what the server would read', () => {
  it('reads counts and lengths as string2ll does: "0", or an optional minus and no leading zero, at most 20 characters', () => {
    for (const good of ['*0\r\n', '*-5\r\n', '*1\r\n$0\r\n\r\n', '*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n'])
      relays(Buffer.from(good));
    for (const bad of [
      '*\r\n',
      '*-\r\n',
      '*-0\r\n',
      '*01\r\n',
      '*+1\r\n',
      '*1 \r\n',
      '*1x\r\n',
      `*${'1'.repeat(21)}\r\n`,
    ])
      expect(run([Buffer.from(bad)]).refusal?.code, JSON.stringify(bad)).toBe('COMMAND_REFUSED');
    expect(run([Buffer.from('*2147483648\r\n')]).refusal?.code).toBe('COMMAND_REFUSED'); // over INT_MAX
    expect(run([Buffer.from('*1\r\n$4294967296\r\n')]).refusal?.code).toBe('COMMAND_REFUSED'); // over MAX_ARGUMENT
  });

  it('commandName cuts at NUL and lower-cases ASCII only', () => {
    expect(commandName(Buffer.from('AuTh\0x'))).toBe('auth');
    expect(commandName(Buffer.from('HÉLLO', 'latin1'))).toBe('h\xc9llo');
  });

  it('splitInline splits as sdssplitargs does', () => {
    const split = (s: string) => splitInline(Buffer.from(s, 'latin1'))?.map((b) => b.toString('latin1'));
    expect(split("  set  k \"a b\\x41\\n\"  'it\\'s'\r")).toEqual(['set', 'k', 'a bA\n', "it's"]);
    expect(split('a"b c"d')).toBeUndefined(); // a closing quote must be followed by a blank
    expect(split('a"b c" d')).toEqual(['ab c', 'd']);
    expect(split('\x0bAUTH\x0bx')).toEqual(['AUTH\x0bx']); // vertical tab: skipped between, kept within
    expect(split('"unterminated')).toBeUndefined();
    expect(split('')).toEqual([]);
  });

  it('requestedUsers follows HELLO option parsing and counts every AUTH', () => {
    const users = (...a: string[]) => requestedUsers(a.map((s) => Buffer.from(s))).map(String);
    expect(users('HELLO', '3', 'SETNAME', 'n', 'AUTH', 'u', 'p')).toEqual(['u']);
    expect(users('HELLO', '3', 'BOGUS', 'AUTH', 'u', 'p')).toEqual([]); // the server stops at BOGUS
    expect(users('HELLO', '3', 'AUTH', 'u')).toEqual([]); // AUTH without both arguments is an error
    expect(users('AUTH', 'p')).toEqual(['default']);
    expect(inspectRequest([Buffer.from('hello'), Buffer.from('3')], POLICY)).toBeUndefined();
  });
});

const SESSION = Buffer.concat([
  req('SET', 'k', 'v\r\n*1\r\n$5\r\nRESET'),
  req('AUTH', 'alice', 'pw'),
  Buffer.from('PING\r\n'),
  req('HELLO', '3'),
  req('GET', 'k'),
]);
const ATTACK = Buffer.concat([req('SET', 'k', 'v'), req('AUTH', 'other', 'pw'), req('GET', 'k')]);
const ATTACK_PREFIX = Buffer.concat([req('SET', 'k', 'v'), Buffer.from('*3\r\n$4\r\nAUTH')]);

describe('RedisRequestFramer split at every offset', () => {
  it('every two- and three-chunk split and byte-by-byte relay a session unchanged', () => {
    const wrong: number[][] = [];
    for (const offsets of [
      ...everySingleCut(SESSION.length),
      ...everyDoubleCut(SESSION.length),
      byteByByte(SESSION.length),
    ]) {
      const { out, refusal } = run(cut(SESSION, offsets));
      if (refusal || !out.equals(SESSION)) wrong.push(offsets);
    }
    expect(wrong).toEqual([]);
  });

  it('every split of an attack relays the same prefix and refuses', () => {
    const wrong: number[][] = [];
    for (const offsets of [...everyDoubleCut(ATTACK.length), byteByByte(ATTACK.length)]) {
      const { out, refusal } = run(cut(ATTACK, offsets));
      if (refusal?.code !== 'USER_MISMATCH' || !out.equals(ATTACK_PREFIX)) wrong.push(offsets);
    }
    expect(wrong).toEqual([]);
  });
});

describe('RedisRequestFramer properties', () => {
  const arg = fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b));
  const name = fc.constantFrom(
    'GET',
    'SET',
    'set',
    'INCR',
    'MULTI',
    'EXEC',
    'CLIENT',
    'auth2',
    'HELLOX',
    'ACL',
  );
  const request = fc.tuple(name, fc.array(arg, { maxLength: 5 })).map(([n, a]) => req(n, ...a));
  const cuts = (length: number) =>
    fc
      .uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 12 })
      .map((a) => a.sort((x, y) => x - y));

  it('property: requests that change no user are relayed unchanged in any split', () => {
    fc.assert(
      fc.property(
        fc.array(request, { maxLength: 10 }).chain((rs) => {
          const bytes = Buffer.concat(rs);
          return fc.tuple(fc.constant(bytes), cuts(bytes.length));
        }),
        ([bytes, offsets]) => {
          const { out, refusal } = run(cut(bytes, offsets));
          expect(refusal).toBeUndefined();
          expect(out.equals(bytes)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: AUTH as any other user is refused in any split, after the requests before it', () => {
    fc.assert(
      fc.property(
        fc.array(request, { maxLength: 4 }),
        arg.filter((u) => !u.equals(Buffer.from('alice'))),
        fc.nat(),
        (before, user, seed) => {
          const head = Buffer.concat(before);
          const bytes = Buffer.concat([head, req('AUTH', user, 'pw'), req('GET', 'k')]);
          const offsets = [...new Set([seed % (bytes.length + 1), (seed >> 8) % (bytes.length + 1)])].sort(
            (a, b) => a - b,
          );
          const { out, refusal } = run(cut(bytes, offsets));
          expect(refusal?.code).toBe('USER_MISMATCH');
          expect(out.equals(Buffer.concat([head, Buffer.from('*3\r\n$4\r\nAUTH')]))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: any bytes in any split relay a prefix of them and never throw', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }).chain((b) => fc.tuple(fc.constant(Buffer.from(b)), cuts(b.length))),
        ([bytes, offsets]) => {
          const { out } = run(cut(bytes, offsets));
          expect(bytes.subarray(0, out.length).equals(out)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
