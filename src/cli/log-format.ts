import { Writable } from 'node:stream';

const LEVELS = new Set(['level', 'time', 'msg']);

/** One JSON log line as text: `TIME LEVEL msg key=value ...` (tbot's --log-format text). */
export function textLogLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const fields = Object.entries(rec)
    .filter(([k]) => !LEVELS.has(k))
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`,
    );
  return [rec.time, String(rec.level ?? '').toUpperCase(), rec.msg, ...fields]
    .filter((x) => x !== undefined && x !== '')
    .join(' ');
}

/** A pino destination that writes text lines to stderr instead of JSON. */
export function textLogStream(write: (line: string) => void = (l) => process.stderr.write(l)): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) write(`${textLogLine(line)}\n`);
      done();
    },
  });
}
