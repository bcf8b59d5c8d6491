/**
 * Helpers for split-buffer tests: TCP delivers a byte stream in whatever chunks it likes, so every framing
 * function is fed the same bytes cut at every offset, accumulated the way a socket reader does.
 */

/** A framing function in the shape of takeStartupPacket / takeMysqlPacket. */
export type Take<T> = (buf: Buffer) => { packet: T; rest: Buffer } | undefined;

/** `bytes` cut at the given offsets (sorted, within bounds) into consecutive chunks. */
export function cut(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const at of offsets) {
    chunks.push(bytes.subarray(from, at));
    from = at;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

/**
 * Feeds `chunks` one at a time, appending each to what is buffered, and takes packets after every chunk
 * until `take` needs more bytes, or until `limit` packets came out (the bytes after them are then
 * returned unparsed, as a protocol handler would hand them to the relay).
 */
export function feed<T>(
  take: Take<T>,
  chunks: readonly Buffer[],
  limit = Number.POSITIVE_INFINITY,
): { packets: T[]; rest: Buffer } {
  const packets: T[] = [];
  let buf: Buffer = Buffer.alloc(0);
  for (const chunk of chunks) {
    buf = Buffer.concat([buf, chunk]);
    while (packets.length < limit) {
      const got = take(buf);
      if (!got) break;
      packets.push(got.packet);
      buf = got.rest;
    }
  }
  return { packets, rest: buf };
}

/** Every way to cut `length` bytes into two chunks (including an empty first or last chunk). */
export function everySingleCut(length: number): number[][] {
  return Array.from({ length: length + 1 }, (_, i) => [i]);
}

/** Every way to cut `length` bytes into three chunks at two offsets. */
export function everyDoubleCut(length: number): number[][] {
  const cuts: number[][] = [];
  for (let i = 0; i <= length; i++) for (let j = i; j <= length; j++) cuts.push([i, j]);
  return cuts;
}

/** One byte per chunk: the worst split there is. */
export function byteByByte(length: number): number[] {
  return Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1);
}
