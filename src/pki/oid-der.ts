/**
 * OBJECT IDENTIFIER contents encoding with arbitrary-size arcs, so that certificates under the legacy
 * `2.25.<uuid>` arc (128 bits, over what many ASN.1 libraries read) still decode.
 */
export function encodeOid(oid: string): Buffer {
  const arcs = oid.split('.').map((a) => BigInt(a));
  if (arcs.length < 2) throw new Error(`invalid OID ${oid}`);
  const out: number[] = [];
  const first = (arcs[0] as bigint) * 40n + (arcs[1] as bigint);
  for (const arc of [first, ...arcs.slice(2)]) {
    const bytes: number[] = [];
    let v = arc;
    do {
      bytes.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < bytes.length - 1; i++) bytes[i] = (bytes[i] as number) | 0x80;
    out.push(...bytes);
  }
  return Buffer.from(out);
}

export function decodeOid(contents: Uint8Array): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const byte of contents) {
    v = (v << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs.shift() ?? 0n;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...arcs].join('.');
}
