import { writeSync } from 'node:fs';
import { isoTime } from './iso-time.js';
import { redact, SECRET_FIELDS } from './redact.js';

/**
 * A small structured JSON-lines logger with the same lines and the same redaction as `createLogger` (log.ts,
 * pino), for the proxy: it writes a few lines per connection, and pino with its worker-thread and stream
 * helpers costs a long-running sidecar more memory than all of its logging does.
 *
 * A line is `{"level":"info","time":"<ISO>",<base and child fields>,<the object's fields>,"msg":"…"}`.
 * Secret fields (SECRET_FIELDS, down to four levels) are censored, messages are scrubbed with `redact`, and
 * `err` is written as `{type, message, code}` with the message scrubbed.
 */

/**
 * One log method: `log.info({ conn: 1 }, 'closed')`, `log.info('started')`, `log.error(err)`, with printf
 * arguments as in pino (`%s`, `%d`, `%j`, `%o`).
 */
export type LogFn = (objOrMsg: unknown, msg?: string, ...args: unknown[]) => void;

/** What the proxy needs of a logger; a pino Logger (log.ts `createLogger`) has the same shape. */
export interface JsonLogger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): JsonLogger;
}

const LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};
type LevelName = keyof typeof LEVELS;

const CENSOR = '[REDACTED]';
const SECRET = new Set(SECRET_FIELDS);
/** As pino's paths `f`, `*.f`, `*.*.f` and `*.*.*.f`: a secret field is censored down to this depth. */
const REDACT_DEPTH = 4;

/** `value` with secret fields censored down to `depth` levels; objects are copied only where one is. */
function censor(value: unknown, depth: number): unknown {
  if (depth === 0 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item, i) => {
      const c = censor(item, depth - 1);
      if (c === item) return;
      out ??= [...value];
      out[i] = c;
    });
    return out ?? value;
  }
  if (value instanceof Error || value instanceof Date || Buffer.isBuffer(value)) return value;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const c = SECRET.has(k) ? CENSOR : censor(v, depth - 1);
    if (c === v) continue;
    out ??= { ...(value as Record<string, unknown>) };
    out[k] = c;
  }
  return out ?? value;
}

function serializeError(err: unknown): unknown {
  if (err === null || typeof err !== 'object') return err;
  const e = err as { name?: unknown; message?: unknown; code?: unknown };
  return {
    type: e.name,
    message: typeof e.message === 'string' ? redact(e.message) : e.message,
    code: e.code,
  };
}

/** JSON text of a value; cycles become "[Circular]" and bigints their decimal text, as in pino. */
function stringify(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(value, (_k, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (v !== null && typeof v === 'object') {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    });
  }
}

/** `,"key":value` for each field that has a JSON value (undefined and functions are left out). */
function fields(obj: Record<string, unknown>): string {
  let text = '';
  for (const key of Object.keys(obj)) {
    let value = obj[key];
    if (key === 'err') value = serializeError(value);
    if (typeof value === 'number' && !Number.isFinite(value)) value = null;
    const json =
      typeof value === 'function' ? undefined : typeof value === 'bigint' ? String(value) : stringify(value);
    if (json !== undefined) text += `,${JSON.stringify(key)}:${json}`;
  }
  return text;
}

/** `%s`, `%d`, `%i`, `%f`, `%j`, `%o`, `%O` and `%%` in `text`, filled from `args` in order. */
function format(text: string, args: readonly unknown[]): string {
  if (args.length === 0) return text;
  let next = 0;
  return text.replace(/%[sdifjoO%]/g, (spec) => {
    if (spec === '%%') return '%';
    if (next >= args.length) return spec;
    const arg = args[next++];
    if (spec === '%d' || spec === '%i' || spec === '%f') {
      const n = Number(arg);
      return String(spec === '%i' ? Math.trunc(n) : n);
    }
    if (spec === '%s') return typeof arg === 'string' ? arg : (stringify(arg) ?? String(arg));
    return stringify(arg) ?? String(arg);
  });
}

/** Writes all of `line` to `fd`, waiting briefly and retrying while a non-blocking pipe is full. */
function writeAll(fd: number, line: string): void {
  let buf = Buffer.from(line);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

/** Creates the logger; the level is `options.level`, else BROKER_LOG_LEVEL, else info. */
export function createJsonLogger(
  options: {
    level?: string;
    /** File descriptor the lines are written to, synchronously (default 2, stderr). */
    destination?: number;
    /** Where the lines go instead of a file descriptor. */
    stream?: { write(line: string): unknown };
    base?: Record<string, unknown>;
  } = {},
): JsonLogger {
  const levelName = options.level ?? process.env.BROKER_LOG_LEVEL ?? 'info';
  if (!Object.hasOwn(LEVELS, levelName)) throw new Error(`unknown level ${levelName}`);
  const threshold = LEVELS[levelName as LevelName];
  const fd = options.destination ?? 2;
  const stream = options.stream;
  const write = stream ? (line: string) => void stream.write(line) : (line: string) => writeAll(fd, line);

  const make = (bindings: string): JsonLogger => {
    const method = (name: Exclude<LevelName, 'silent'>): LogFn => {
      if (LEVELS[name] < threshold) return () => {};
      const head = `{"level":"${name}","time":"`;
      return (objOrMsg, msg, ...rest) => {
        let obj: Record<string, unknown> = {};
        let message: string | undefined = msg;
        let args = rest.map((a) => (typeof a === 'string' ? redact(a) : a));
        if (typeof objOrMsg === 'string') {
          message = objOrMsg;
          args = msg === undefined ? args : [typeof msg === 'string' ? redact(msg) : msg, ...args];
        } else if (objOrMsg instanceof Error) {
          obj = { err: objOrMsg };
          message ??= objOrMsg.message;
        } else if (objOrMsg !== null && typeof objOrMsg === 'object') {
          obj = censor(objOrMsg, REDACT_DEPTH) as Record<string, unknown>;
          const err = obj.err as { message?: unknown } | undefined;
          if (message === undefined && obj.msg === undefined && err && typeof err.message === 'string')
            message = err.message;
        }
        const msgText =
          message === undefined ? '' : `,"msg":${JSON.stringify(format(redact(String(message)), args))}`;
        write(`${head}${isoTime(Date.now())}"${bindings}${fields(obj)}${msgText}}\n`);
      };
    };
    return {
      trace: method('trace'),
      debug: method('debug'),
      info: method('info'),
      warn: method('warn'),
      error: method('error'),
      fatal: method('fatal'),
      child: (more) => make(bindings + fields(censor(more, REDACT_DEPTH) as Record<string, unknown>)),
    };
  };
  return make(fields(censor(options.base ?? {}, REDACT_DEPTH) as Record<string, unknown>));
}
