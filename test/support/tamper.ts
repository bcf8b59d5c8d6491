/** DER surgery on certificates, for tests of what verification refuses. */
import { X509Certificate } from 'node:crypto';

/** The DER bytes of a PEM certificate. */
export const der = (pem: string) => Buffer.from(new X509Certificate(pem).raw);

export const toPem = (bytes: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${bytes
    .toString('base64')
    .match(/.{1,64}/g)
    ?.join('\n')}\n-----END CERTIFICATE-----\n`;

/** Offsets of the to-be-signed part: [start, end) within the certificate DER (both use long-form lengths). */
export function tbsRange(bytes: Buffer): [number, number] {
  const start = 4; // 30 82 LL LL: the outer SEQUENCE
  if (bytes[start] !== 0x30 || bytes[start + 1] !== 0x82) throw new Error('unexpected TBS encoding');
  return [start, start + 4 + bytes.readUInt16BE(start + 2)];
}

/** The certificate with byte `at` XOR-ed with `mask` (never 0, so the byte always changes). */
export function flipped(pem: string, at: number, mask = 0x01): string {
  const bytes = der(pem);
  bytes[at] = (bytes[at] as number) ^ mask;
  return toPem(bytes);
}

/** Replaces the first occurrence of `from` in the DER with `to` (same length, so the encoding stays valid). */
export function replaced(pem: string, from: string, to: string): string {
  const bytes = der(pem);
  const at = bytes.indexOf(Buffer.from(from, 'utf8'));
  if (at < 0 || from.length !== to.length) throw new Error(`${from} is not in the certificate`);
  Buffer.from(to, 'utf8').copy(bytes, at);
  return toPem(bytes);
}
