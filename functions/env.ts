import type { z } from 'zod';
import { ConfigError } from '../src/config/errors.js';

/** Validates a Lambda's environment once at cold start; a bad one fails every invocation with the reason. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, fn: string): z.output<S> {
  const result = schema.safeParse(env);
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
