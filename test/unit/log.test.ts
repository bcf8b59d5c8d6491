import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, type Logger, redact } from '../../src/log.js';
import { testCa, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

const TOKEN_32 = '9f86d081884c7d659a2feaa0c55ad015';
const HEX_64 = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
const SIGV4 = 'fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024';

describe('redact', () => {
  it('scrubs a PKCS#8 private key and keeps the words around it', async () => {
    const { privateKeyPem } = await testKeyPair();
    const body = privateKeyPem.split('\n')[1]!;
    const out = redact(`loaded key ${privateKeyPem} from disk`);
    expect(out).toBe('loaded key [REDACTED PRIVATE KEY]\n from disk');
    expect(out).not.toContain(body);
  });

  it('scrubs RSA, EC and encrypted private keys, and a truncated one up to the end', () => {
    for (const label of ['RSA PRIVATE KEY', 'EC PRIVATE KEY', 'ENCRYPTED PRIVATE KEY']) {
      const pem = `-----BEGIN ${label}-----\nMIIEsecretbody\n-----END ${label}-----`;
      expect(redact(`x ${pem} y`)).toBe('x [REDACTED PRIVATE KEY] y');
    }
    expect(redact('cut: -----BEGIN PRIVATE KEY-----\nMIIEsecretbody')).toBe('cut: [REDACTED PRIVATE KEY]');
  });

  it('scrubs certificates, including several in a bundle', async () => {
    const ca = await testCa();
    const body = ca.certificatePem.split('\n')[1]!;
    const out = redact(`bundle: ${ca.certificatePem}${ca.certificatePem}end`);
    expect(out).not.toContain(body);
    expect(out.match(/\[REDACTED CERTIFICATE\]/g)).toHaveLength(2);
    expect(out.startsWith('bundle: ')).toBe(true);
  });

  it('scrubs 32-hex join tokens and 64-hex secrets wherever they stand as words', () => {
    expect(redact(`join with ${TOKEN_32} failed`)).toBe('join with [REDACTED] failed');
    expect(redact(`token=${TOKEN_32}&x=1`)).toBe('token=[REDACTED]&x=1');
    expect(redact(`"${HEX_64}"`)).toBe('"[REDACTED]"');
    expect(redact(`pin sha256:${HEX_64}`)).toBe('pin sha256:[REDACTED]');
    expect(redact(`${TOKEN_32}`)).toBe('[REDACTED]');
  });

  it('scrubs AWS SigV4 signatures in URLs, Authorization headers and JSON', () => {
    const url = `https://sts.amazonaws.com/?Action=GetCallerIdentity&X-Amz-Signature=${SIGV4}&X-Amz-Date=20260101T000000Z`;
    expect(redact(url)).toBe(
      'https://sts.amazonaws.com/?Action=GetCallerIdentity&X-Amz-Signature=[REDACTED]&X-Amz-Date=20260101T000000Z',
    );
    const header = `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=${SIGV4.slice(0, 40)}`;
    expect(redact(header)).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=[REDACTED]',
    );
    expect(redact('{"signature": "c2lnbmF0dXJlIGJ5dGVz+/=="}')).toBe('{"signature": "[REDACTED]"}');
  });

  it('leaves ordinary text alone and is idempotent', () => {
    const plain = 'renewed the bot identity: generation 3, bot example, output alice@example-server/example';
    expect(redact(plain)).toBe(plain);
    const once = redact(`a ${TOKEN_32} b -----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----`);
    expect(redact(once)).toBe(once);
  });
});

describe('createLogger', () => {
  /** Runs `fn` with a logger writing to a temp file and returns the parsed JSON lines. */
  async function logLines(fn: (log: Logger) => void): Promise<Record<string, unknown>[]> {
    const file = path.join(await makeTempDir(), 'log.jsonl');
    const fd = openSync(file, 'w');
    try {
      fn(createLogger({ destination: fd, level: 'debug', base: { component: 'test' } }));
    } finally {
      closeSync(fd);
    }
    const text = readFileSync(file, 'utf8');
    return text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('writes JSON lines with a level label, an ISO time and the base fields', async () => {
    const [line] = await logLines((log) => log.info({ output: 'a' }, 'hello'));
    expect(line).toMatchObject({ level: 'info', component: 'test', output: 'a', msg: 'hello' });
    expect(new Date(line?.time as string).toISOString()).toBe(line?.time);
  });

  it('censors fields named token, privateKeyPem, key and the other secret names, also one level down', async () => {
    const { privateKeyPem } = await testKeyPair();
    const lines = await logLines((log) => {
      log.info({ token: TOKEN_32, privateKeyPem, key: 'k-material', serial: TOKEN_32 }, 'top level');
      log.info({ params: { token: 'nested-token', key: 'nested-key' }, request: { proof: 'p' } }, 'nested');
      log.info(
        { identity: { certificatePem: 'CERT', identityPem: 'ID' }, password: 'pw', secret: 's' },
        'more',
      );
    });
    expect(lines[0]).toMatchObject({
      token: '[REDACTED]',
      privateKeyPem: '[REDACTED]',
      key: '[REDACTED]',
      // Serials look like tokens, but a structured serial field is kept for correlation.
      serial: TOKEN_32,
    });
    expect(lines[1]).toMatchObject({
      params: { token: '[REDACTED]', key: '[REDACTED]' },
      request: { proof: '[REDACTED]' },
    });
    expect(lines[2]).toMatchObject({
      identity: { certificatePem: '[REDACTED]', identityPem: '[REDACTED]' },
      password: '[REDACTED]',
      secret: '[REDACTED]',
    });
    const all = JSON.stringify(lines);
    for (const secret of ['k-material', 'nested-token', 'nested-key', 'MII', '"pw"'])
      expect(all).not.toContain(secret);
  });

  it('scrubs secrets from messages and format arguments', async () => {
    const { privateKeyPem } = await testKeyPair();
    const lines = await logLines((log) => {
      log.warn(`joining with ${TOKEN_32}`);
      log.info('key %s and signature %s', privateKeyPem, `X-Amz-Signature=${SIGV4}`);
    });
    expect(lines[0]?.msg).toBe('joining with [REDACTED]');
    expect(lines[1]?.msg).toBe('key [REDACTED PRIVATE KEY]\n and signature X-Amz-Signature=[REDACTED]');
  });

  it('scrubs error messages, whether the error is a field or the first argument, and drops stacks', async () => {
    const lines = await logLines((log) => {
      log.error({ err: new Error(`join refused for token ${TOKEN_32}`) }, 'failed');
      const err = Object.assign(new Error(`sts said Signature=${SIGV4}`), { code: 'sts_error' });
      log.error(err, 'also failed');
    });
    expect(lines[0]?.err).toEqual({ type: 'Error', message: 'join refused for token [REDACTED]' });
    expect(lines[1]?.err).toEqual({
      type: 'Error',
      message: 'sts said Signature=[REDACTED]',
      code: 'sts_error',
    });
    expect(JSON.stringify(lines)).not.toContain(TOKEN_32);
    expect(JSON.stringify(lines)).not.toContain(SIGV4);
  });

  it('honours the level', async () => {
    const file = path.join(await makeTempDir(), 'log.jsonl');
    const fd = openSync(file, 'w');
    try {
      const log = createLogger({ destination: fd, level: 'warn' });
      log.info('quiet');
      log.warn('loud');
    } finally {
      closeSync(fd);
    }
    const msgs = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs).toEqual(['loud']);
  });
});
