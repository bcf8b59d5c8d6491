/**
 * Redis inline commands (a request not starting with '*'), split as the server splits them: a line up to
 * '\n' (the server never finds one past a NUL byte, since it searches with strchr), one trailing '\r'
 * dropped, then sdssplitargs (Redis sds.c) — blanks separate arguments, "double quotes" take \xHH, \n, \r,
 * \t, \b, \a and \<any> escapes, 'single quotes' take \', a quote may start anywhere in an unquoted argument,
 * and a closing quote must be followed by a blank or the end.
 */

/** Redis's PROTO_INLINE_MAX_SIZE: a longer line without '\n' makes the server close the connection. */
export const MAX_INLINE = 64 * 1024;

// C isspace in the "C" locale: what sdssplitargs skips between arguments.
const isBlank = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);
const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const hexValue = (c: number) => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10);
const ESCAPES: Record<number, number> = { 110: 0x0a, 114: 0x0d, 116: 0x09, 98: 0x08, 97: 0x07 };

/** The arguments of one inline line (without its '\n'), or undefined where the server refuses the quoting. */
export function splitInline(line: Buffer): Buffer[] | undefined {
  const end = line.length > 0 && line[line.length - 1] === 0x0d ? line.length - 1 : line.length;
  // The line holds no NUL (the server would not have found the '\n'), so the C string ends at `end`.
  const at = (p: number) => (p < end ? (line[p] as number) : 0);
  const args: Buffer[] = [];
  let p = 0;
  for (;;) {
    while (p < end && isBlank(at(p))) p++;
    if (p >= end) return args;
    const arg: number[] = [];
    let quote: 0 | 0x22 | 0x27 = 0;
    for (let done = false; !done; ) {
      const c = at(p);
      if (quote === 0x22) {
        if (c === 0x5c && at(p + 1) === 0x78 && isHex(at(p + 2)) && isHex(at(p + 3))) {
          arg.push(hexValue(at(p + 2)) * 16 + hexValue(at(p + 3)));
          p += 3;
        } else if (c === 0x5c && at(p + 1) !== 0) {
          p++;
          arg.push(ESCAPES[at(p)] ?? at(p));
        } else if (c === 0x22) {
          if (at(p + 1) !== 0 && !isBlank(at(p + 1))) return undefined;
          done = true;
        } else if (c === 0) return undefined;
        else arg.push(c);
      } else if (quote === 0x27) {
        if (c === 0x5c && at(p + 1) === 0x27) {
          p++;
          arg.push(0x27);
        } else if (c === 0x27) {
          if (at(p + 1) !== 0 && !isBlank(at(p + 1))) return undefined;
          done = true;
        } else if (c === 0) return undefined;
        else arg.push(c);
      } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0) done = true;
      else if (c === 0x22 || c === 0x27) quote = c;
      else arg.push(c);
      if (p < end) p++;
    }
    args.push(Buffer.from(arg));
  }
}
