/**
 * The proxy's JSON-lines logger (src/json-log.ts) must write the lines the process logger (log.ts, pino)
 * writes, censor and scrub the same way, and honour levels: every call below goes through both and the
 * parsed lines must be equal, apart from the time.
 */
import { describe, expect, it } from 'vitest';
import { createJsonLogger, type JsonLogger } from '../../src/json-log.js';
import { createLogger } from '../../src/log.js';
import { testKeyPair } from '../support/fixtures.js';

const TOKEN_32 = '9f86d081884c7d659a2feaa0c55ad015';
const SIGV4 = 'fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024';

/** The lines `calls` writes through a logger made by `make`, parsed, with the time checked and removed. */
function lines(
  make: (stream: { write(line: string): void }) => JsonLogger,
  calls: (log: JsonLogger) => void,
): { raw: string; parsed: Record<string, unknown>[] } {
  const chunks: string[] = [];
  calls(make({ write: (line) => void chunks.push(line) }));
  const raw = chunks.join('');
  const parsed = raw
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const o = JSON.parse(l) as Record<string, unknown>;
      expect(new Date(o.time as string).toISOString()).toBe(o.time);
      delete o.time;
      return o;
    });
  return { raw, parsed };
}

function both(level: string, calls: (log: JsonLogger) => void) {
  const base = { component: 'proxy', service: 'svc' };
  const lean = lines((stream) => createJsonLogger({ level, stream, base }), calls);
  const pino = lines((stream) => createLogger({ level, stream, base }), calls);
  return { lean, pino };
}

describe('createJsonLogger writes what the pino logger writes', () => {
  it('the proxy’s own lines, field for field and in the same order', () => {
    const { lean, pino } = both('debug', (log) => {
      log.info(
        { address: '127.0.0.1:5432', tunnel: true, source: 'directory /x', diag: undefined },
        'proxy started',
      );
      log.debug({ conn: 'a1b2c3', upstream: 'db:5432' }, 'relaying');
      log.info({ conn: 'a1b2c3', outcome: 'ok', ms: 12 }, 'connection closed');
      log.info('SIGHUP: re-reading credentials');
      log.warn(
        { failures: 2, source: 'directory /x', err: Object.assign(new Error('gone'), { code: 'ENOENT' }) },
        'refresh failed',
      );
      log.info({ n: Number.NaN, big: 12n, list: [1, 'a'], nested: { a: { b: 1 } } }, 'values');
      log.child({ tunnel: 'conf.yaml:3' }).info({ x: 1 }, 'from a child');
    });
    expect(lean.parsed).toEqual(pino.parsed);
    // Key order too: the same text once the times are taken out.
    const untimed = (s: string) => s.replace(/"time":"[^"]+",/g, '');
    expect(untimed(lean.raw)).toBe(untimed(pino.raw));
  });

  it('censors secret fields down to four levels and scrubs messages, arguments and errors', async () => {
    const { privateKeyPem } = await testKeyPair();
    const { lean, pino } = both('info', (log) => {
      log.info({ token: TOKEN_32, privateKeyPem, key: 'k', serial: TOKEN_32 }, 'top level');
      log.info({ params: { token: 't', key: 'k' }, request: { proof: 'p' } }, 'nested');
      log.info({ a: { b: { c: { password: 'pw', keep: 1 } } }, list: [{ secret: 's' }] }, 'deep');
      log.warn(`joining with ${TOKEN_32}`);
      log.info('key %s and signature %s, %d%%', privateKeyPem, `X-Amz-Signature=${SIGV4}`, 5);
      log.error({ err: new Error(`join refused for token ${TOKEN_32}`) }, 'failed');
      log.error({ err: new Error('only the error') });
    });
    expect(lean.parsed).toEqual(pino.parsed);
    for (const secret of [`"token":"${TOKEN_32}"`, `token ${TOKEN_32}`, SIGV4, 'MII', '"pw"', '"k"', '"s"'])
      expect(lean.raw).not.toContain(secret);
    expect(lean.parsed[2]).toMatchObject({ a: { b: { c: { password: '[REDACTED]', keep: 1 } } } });
  });

  it('scrubs the message taken from an error given alone, in both loggers', () => {
    const err = Object.assign(new Error(`sts said Signature=${SIGV4}`), { code: 'sts_error' });
    const { lean, pino } = both('info', (log) => {
      log.error(err);
      log.error({ err });
    });
    expect(lean.parsed).toEqual(pino.parsed);
    expect(pino.raw).not.toContain(SIGV4);
    expect(lean.raw).not.toContain(SIGV4);
    expect(lean.parsed[0]).toMatchObject({
      msg: 'sts said Signature=[REDACTED]',
      err: { type: 'Error', message: 'sts said Signature=[REDACTED]', code: 'sts_error' },
    });
    expect(lean.raw).not.toContain(SIGV4);
  });

  it('honours the level, and does not change the objects it is given', () => {
    const obj = { token: 'x', inner: { key: 'y' } };
    const { lean, pino } = both('warn', (log) => {
      log.debug('hidden');
      log.info(obj, 'hidden');
      log.warn(obj, 'shown');
    });
    expect(lean.parsed).toEqual(pino.parsed);
    expect(lean.parsed.map((l) => l.msg)).toEqual(['shown']);
    expect(obj).toEqual({ token: 'x', inner: { key: 'y' } });
    expect(() => createJsonLogger({ level: 'loud' })).toThrow(/unknown level/);
  });
});
