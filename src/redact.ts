/**
 * Scrubbing of secret-shaped text and the field names whose values are never logged. On its own (no logging
 * library), so that entry points that only need these, such as the proxy's, load nothing more.
 */

const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
const CERTIFICATE_PEM = /-----BEGIN CERTIFICATE-----[\s\S]*?(-----END CERTIFICATE-----|$)/g;
// Join tokens are 32 hex characters; STS signatures and other hex secrets are 64.
const HEX_SECRET = /\b[0-9a-f]{32}\b|\b[0-9a-f]{64}\b/g;
const AWS_SIGNATURE = /(Signature=|X-Amz-Signature=|"signature":\s*")[^\s",&]+/gi;

/** Field names whose values are never logged. */
export const SECRET_FIELDS = [
  'token',
  'privateKeyPem',
  'privateKey',
  'key',
  'signature',
  'proof',
  'password',
  'secret',
  'identityPem',
  'certificatePem',
];

/**
 * Scrubs secret-shaped material from a string: private keys, certificate bodies, join tokens and
 * signatures. Serials (32 hex digits) look like tokens; pass them in structured fields, which are kept.
 */
export function redact(text: string): string {
  return text
    .replace(PRIVATE_KEY_PEM, '[REDACTED PRIVATE KEY]')
    .replace(CERTIFICATE_PEM, '[REDACTED CERTIFICATE]')
    .replace(AWS_SIGNATURE, '$1[REDACTED]')
    .replace(HEX_SECRET, '[REDACTED]');
}

/**
 * `err` with its message and stack scrubbed by `redact`, for an error about to leave the process (a Lambda
 * handler's rejection, which the runtime prints). The error itself is changed, so its class and code stay.
 */
export function redactedError(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  e.message = redact(e.message);
  if (e.stack !== undefined) e.stack = redact(e.stack);
  return e;
}
