import type * as core from 'zod/v4/core';
import { ConfigError } from '../src/config/errors.js';
import * as z from '../src/config/zod.js';
import { redactedError } from '../src/redact.js';

/** Validates a Lambda's environment once at cold start; a bad one fails every invocation with the reason. */
export function parseEnv<S extends core.$ZodType>(
  schema: S,
  env: NodeJS.ProcessEnv,
  fn: string,
): core.output<S> {
  const result = z.safeParse(schema, env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  throw new ConfigError(`${fn}: bad environment (${problems}); the stack sets these variables`);
}

/** Text given either inline or base64-encoded (`base64:...`), as the stack passes YAML documents. */
export function decodeText(value: string): string {
  return value.startsWith('base64:')
    ? Buffer.from(value.slice('base64:'.length), 'base64').toString('utf8')
    : value;
}

/**
 * A Lambda entry point that builds its handler once per execution environment (from `process.env` and new
 * SDK clients) and throws every failure scrubbed: the runtime prints it, and a validation error quotes values.
 */
export function lambdaEntry<A extends unknown[], R>(
  create: () => (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  let instance: ((...args: A) => Promise<R>) | undefined;
  return async (...args) => {
    try {
      instance ??= create();
      return await instance(...args);
    } catch (err) {
      throw redactedError(err);
    }
  };
}

/**
 * Runs `start` once and keeps its promise; a failure is forgotten, so the next invocation retries it rather
 * than the container failing for its whole life.
 */
export function once<T>(start: () => Promise<T>): () => Promise<T> {
  let ready: Promise<T> | undefined;
  return () => {
    ready ??= start().catch((err) => {
      ready = undefined;
      throw err;
    });
    return ready;
  };
}
