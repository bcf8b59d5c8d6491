import pino, { type Logger } from 'pino';
import { redact, SECRET_FIELDS } from './redact.js';

export { createJsonLogger, type JsonLogger } from './json-log.js';
// The scrubbing lives in redact.ts (no logging library), so the proxy's entry point can use it alone.
export { redact, redactedError, SECRET_FIELDS } from './redact.js';
export type { Logger };

/**
 * The process's structured JSON logger. Secret fields are censored by path and messages are scrubbed
 * with `redact`, so a careless `log.info({ token })` or an error quoting a PEM cannot leak.
 */
export function createLogger(
  options: {
    level?: string;
    destination?: number;
    /** Where the JSON lines go instead of a file descriptor (e.g. a formatter for text logs). */
    stream?: pino.DestinationStream;
    base?: Record<string, unknown>;
  } = {},
): Logger {
  const paths = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`]);
  return pino(
    {
      level: options.level ?? process.env.BROKER_LOG_LEVEL ?? 'info',
      base: options.base ?? {},
      redact: { paths, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<
            typeof method
          >;
          // `log.error(err)` or `log.error({ err })` alone: pino would take the message from the error unscrubbed.
          const [first] = args as unknown[];
          const err = first instanceof Error ? first : (first as { err?: unknown } | null)?.err;
          if (scrubbed.length === 1 && err instanceof Error && (first as { msg?: unknown }).msg === undefined)
            (scrubbed as unknown[]).push(redact(err.message));
          method.apply(this, scrubbed);
        },
      },
      serializers: {
        err: (err: Error) => ({
          type: err.name,
          message: redact(err.message),
          code: (err as { code?: string }).code,
        }),
      },
    },
    options.stream ?? pino.destination({ fd: options.destination ?? 2, sync: true }),
  );
}
