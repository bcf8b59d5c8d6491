import { isIP } from 'node:net';
import { encodeOid } from './oid-der.js';

/**
 * The few DER encodings an X.509 certificate needs, and a reader for the elements the broker picks out of
 * one. Certificates are assembled from these rather than through a general ASN.1 library, which keeps the
 * Lambda bundles small and works for RSA and ECDSA keys alike.
 */

/** Tag bytes (universal class unless said otherwise). */
export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** One constructed or primitive element whose contents are `parts` one after another, in one allocation. */
function element(tag: number, parts: readonly Uint8Array[]): Buffer {
  let length = 0;
  for (const p of parts) length += p.length;
  let lengthOfLength = 0;
  for (let l = length; l > 0; l = Math.floor(l / 256)) lengthOfLength++;
  const header = length < 0x80 ? 2 : 2 + lengthOfLength;
  // Every byte is written below, so the unzeroed (pooled) allocation never shows old memory.
  const out = Buffer.allocUnsafe(header + length);
  out[0] = tag;
  if (length < 0x80) out[1] = length;
  else {
    out[1] = 0x80 | lengthOfLength;
    for (let i = header - 1, l = length; i >= 2; i--, l = Math.floor(l / 256)) out[i] = l & 0xff;
  }
  let at = header;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One tag-length-value element. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  return element(tag, [content]);
}

export const sequence = (...parts: Uint8Array[]): Buffer => element(TAG.sequence, parts);
export const set = (...parts: Uint8Array[]): Buffer => element(TAG.set, parts);
// A certificate names the same dozen OIDs every time: their encodings are kept (bounded), so issuing does
// not redo the arbitrary-precision arc arithmetic of encodeOid for each one. Callers only concatenate them.
const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  let der = oidCache.get(dotted);
  if (!der) {
    der = tlv(TAG.oid, encodeOid(dotted));
    if (oidCache.size >= 256) oidCache.clear();
    oidCache.set(dotted, der);
  }
  return der;
}
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.octetString, bytes);
export const utf8String = (text: string): Buffer => tlv(TAG.utf8String, Buffer.from(text, 'utf8'));
export const booleanTrue = (): Buffer => tlv(TAG.boolean, Buffer.from([0xff]));
/** `[n]`, constructed (EXPLICIT tagging, or an IMPLICIT SEQUENCE) or primitive (an IMPLICIT primitive). */
export const contextTag = (n: number, content: Uint8Array, constructed: boolean): Buffer =>
  tlv((constructed ? 0xa0 : 0x80) | n, content);

/** One zero byte: a BIT STRING's count of unused bits, or the sign byte of a positive INTEGER. */
const NO_UNUSED_BITS = Buffer.from([0]);

/** A BIT STRING of whole bytes (no unused bits). */
export const bitString = (bytes: Uint8Array): Buffer => element(TAG.bitString, [NO_UNUSED_BITS, bytes]);

/** A non-negative INTEGER from hex digits; a leading 00 is added when the top bit would read as negative. */
export function integerFromHex(hex: string): Buffer {
  let digits = hex.replace(/^(00)+(?=[0-9a-f]{2})/i, '');
  if (digits.length % 2) digits = `0${digits}`;
  const bytes = Buffer.from(digits, 'hex');
  return element(TAG.integer, (bytes[0] as number) >= 0x80 ? [NO_UNUSED_BITS, bytes] : [bytes]);
}

/** A small non-negative INTEGER. */
export const smallInteger = (n: number): Buffer => tlv(TAG.integer, Buffer.from([n]));

/**
 * A named bit list (KeyUsage): bit 0 is the most significant bit of the first byte. DER drops trailing zero
 * bits and says how many bits of the last byte are unused.
 */
export function namedBits(bits: readonly number[]): Buffer {
  const top = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(top / 8) + 1);
  for (const b of bits) bytes[b >> 3] = (bytes[b >> 3] as number) | (0x80 >> (b & 7));
  return element(TAG.bitString, [Buffer.from([7 - (top & 7)]), bytes]);
}

const two = (n: number) => String(n).padStart(2, '0');

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest = `${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  return y >= 1950 && y < 2050
    ? tlv(TAG.utcTime, Buffer.from(`${two(y % 100)}${rest}`, 'ascii'))
    : tlv(TAG.generalizedTime, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'ascii'));
}

/** The 4 or 16 bytes of an IP address (a SAN iPAddress). */
export function ipAddressBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  if (isIP(ip) !== 6) throw new Error(`not an IP address: ${ip}`);
  let text = ip;
  const words: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = (v4[1] as string).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (s: string) => (s ? s.split(':').map((w) => Number.parseInt(w, 16)) : []);
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  words.push(...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t);
  const out = Buffer.alloc(16);
  for (const [i, w] of words.entries()) out.writeUInt16BE(w, i * 2);
  return out;
}

/** One element read from DER: its tag, where its contents start and where it ends. */
export interface Element {
  tag: number;
  /** Offset of the tag byte. */
  offset: number;
  /** Offset of the contents. */
  start: number;
  /** Offset just past the contents. */
  end: number;
}

/** Reads the element at `offset`; throws on a length that runs past the buffer. */
export function readElement(der: Uint8Array, offset: number): Element {
  const tag = der[offset];
  let len = der[offset + 1];
  if (tag === undefined || len === undefined) throw new Error('DER: truncated element');
  let start = offset + 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] ?? Number.NaN);
    start += n;
  }
  const end = start + len;
  if (!Number.isFinite(end) || end > der.length) throw new Error('DER: element runs past the end');
  return { tag, offset, start, end };
}

/** The elements inside a constructed element. */
export function childrenOf(der: Uint8Array, parent: Element): Element[] {
  const out: Element[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const child = readElement(der, at);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** The whole element's bytes (tag and length included). */
export const bytesOf = (der: Uint8Array, e: Element): Buffer => Buffer.from(der.subarray(e.offset, e.end));
/** The element's contents. */
export const contentsOf = (der: Uint8Array, e: Element): Buffer => Buffer.from(der.subarray(e.start, e.end));

/** The parts of a certificate's TBSCertificate the broker reads, by position (v3 certificates). */
export function tbsParts(certificateDer: Uint8Array): {
  tbs: Element;
  fields: Element[];
  hasVersion: boolean;
} {
  const cert = readElement(certificateDer, 0);
  const tbs = childrenOf(certificateDer, cert)[0];
  if (!tbs) throw new Error('DER: no TBSCertificate');
  const fields = childrenOf(certificateDer, tbs);
  return { tbs, fields, hasVersion: fields[0]?.tag === 0xa0 };
}

/** Whether `ip` is an IP address (a SAN of type iPAddress rather than dNSName). */
export const isIpAddress = (name: string): boolean => isIP(name) !== 0;
