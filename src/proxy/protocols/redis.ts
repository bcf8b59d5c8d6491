/**
 * Redis request framing, pure: what the tunnel does with the bytes a client sends. Requests are read the way
 * the server reads them (networking.c processMultibulkBuffer / processInlineBuffer): `*<count>\r\n`, then per
 * argument `$<length>\r\n<bytes>\r\n` (the two bytes after each '\r' and after each argument are skipped
 * unread), or an inline line. Argument bytes are passed on as they come; only the commands that change the
 * connection's user are held until complete and checked:
 *
 * - `AUTH <user> <password>` and `HELLO <protover> AUTH <user> <password>` naming another user than the
 *   certificate's, and `AUTH <password>` (the `default` user) unless that is the certificate's user, are refused;
 * - `RESET`, which returns the connection to the `default` user, likewise.
 *
 * Command names are compared as the server compares them: case-insensitively, up to the first NUL byte.
 * Anything the server would answer with a protocol error and a closed connection is refused here too.
 */
import { type Refusal, relayRun } from './framing.js';
import {
  commandName,
  INSPECTED,
  inspectRequest,
  namesInspected,
  protocolRefusal,
  type RedisSessionPolicy,
} from './redis-auth.js';
import { MAX_INLINE, splitInline } from './redis-inline.js';

export type { RedisSessionPolicy } from './redis-auth.js';

/** Largest AUTH/HELLO/RESET request held for inspection. */
export const MAX_INSPECTED_REQUEST = 64 * 1024;
/** string2ll refuses 21 characters and more. */
const MAX_NUMBER = 20;

// Framer states.
const START = 0; // at a request boundary
const INLINE = 1; // an inline line, held until '\n'
const COUNT = 2; // the characters of *<count>
const DOLLAR = 3; // the '$' of an argument header
const LENGTH = 4; // the characters of $<length>
const SKIP = 5; // bytes the server skips unread
const BODY = 6; // argument bytes

const CR = 0x0d;
const STAR = 0x2a;
/** Argument lengths beyond this are refused (the server's own limit, proto-max-bulk-len, is 512 MiB by default). */
export const MAX_ARGUMENT = 0xffffffff;
const INT_MAX = 0x7fffffff;

/**
 * Frames the client's side of a Redis connection. Each `push` returns the bytes to relay: the chunk itself
 * unless it holds part of an AUTH, HELLO, RESET or inline request, which is relayed once checked.
 */
export class RedisRequestFramer {
  private state = START;
  /** string2ll, one character at a time: characters read, value, sign, first digit '0', bad character. */
  private numLen = 0;
  private num = 0;
  private negative = false;
  private zeroFirst = false;
  private digits = 0;
  private bad = false;
  private count = 0;
  private arg = 0;
  /** Bytes left to skip (SKIP) or of the current argument (BODY). */
  private left = 0;
  private bulk = 0;
  /** What follows the skipped bytes: an argument's body, or the next header or request. */
  private bodyNext = false;
  /** The first bytes of the first argument, up to 6: enough to tell AUTH, HELLO and RESET (NUL-cut). */
  private readonly name = Buffer.alloc(6);
  private nameLen = 0;
  private nameNeed = 0;
  /** Bytes of a held request (copies), its arguments so far, and the argument being read. */
  private held: Buffer[] | undefined;
  private heldLen = 0;
  private args: Buffer[] = [];
  private part: Buffer[] = [];
  private refused = false;

  constructor(private readonly policy: RedisSessionPolicy) {}

  push(chunk: Buffer): { forward: Buffer[]; refusal?: Refusal } {
    const forward: Buffer[] = [];
    if (this.refused) return { forward };
    const n = chunk.length;
    let runStart = 0;
    let i = 0;
    let refusal: Refusal | undefined;
    read: while (i < n) {
      switch (this.state) {
        case START:
          if (chunk[i] === STAR) {
            this.state = COUNT;
            this.resetNumber();
            i++;
          } else {
            // An inline request is kept back whole, until its end of line.
            relayRun(forward, chunk, runStart, i);
            runStart = i;
            this.hold();
            this.state = INLINE;
          }
          break;
        case INLINE: {
          const nl = chunk.indexOf(0x0a, i);
          const nul = chunk.indexOf(0, i);
          if (nul >= 0 && (nl < 0 || nul < nl)) {
            refusal = protocolRefusal('a NUL byte in an inline request');
            break read;
          }
          if (nl < 0) {
            i = n;
            break;
          }
          i = nl + 1;
          this.keep(chunk.subarray(runStart, i));
          runStart = i;
          this.state = START;
          const line = Buffer.concat(this.held as Buffer[]);
          const args = splitInline(line.subarray(0, line.length - 1));
          if (!args) {
            refusal = protocolRefusal('unbalanced quotes in an inline request');
            break read;
          }
          this.args = args;
          refusal = this.release(forward);
          if (refusal) break read;
          break;
        }
        case COUNT:
        case LENGTH: {
          let ended = false;
          while (i < n) {
            const c = chunk[i++] as number;
            if (c === CR) {
              ended = true;
              break;
            }
            if (!this.character(c)) {
              refusal = protocolRefusal('a bad multibulk length');
              break read;
            }
          }
          if (!ended) break;
          refusal = this.numberRead();
          if (refusal) break read;
          break;
        }
        case DOLLAR:
          if (chunk[i] !== 0x24) {
            refusal = protocolRefusal('an argument that does not start with $');
            break read;
          }
          this.state = LENGTH;
          this.resetNumber();
          i++;
          break;
        case SKIP: {
          const k = Math.min(this.left, n - i);
          i += k;
          this.left -= k;
          if (this.left > 0) break;
          if (this.bodyNext) this.startArgument();
          else if (this.arg < this.count) this.state = DOLLAR;
          else {
            // The request is complete (a count of 0 or less runs nothing).
            this.state = START;
            if (this.held) {
              this.keep(chunk.subarray(runStart, i));
              runStart = i;
              refusal = this.release(forward);
              if (refusal) break read;
            }
          }
          break;
        }
        case BODY: {
          let k = Math.min(this.left, n - i);
          if (this.arg === 0 && this.nameLen < this.nameNeed) {
            k = Math.min(k, this.nameNeed - this.nameLen);
            for (let j = 0; j < k; j++) this.name[this.nameLen++] = chunk[i + j] as number;
            i += k;
            this.left -= k;
            if (this.nameLen === this.nameNeed && this.nameDecided(true)) {
              // Keep back the rest of the request: the server runs nothing before its last byte.
              relayRun(forward, chunk, runStart, i);
              runStart = i;
              this.hold();
            }
          } else {
            if (this.held && this.arg > 0) this.part.push(Buffer.from(chunk.subarray(i, i + k)));
            i += k;
            this.left -= k;
          }
          if (this.left === 0) this.argumentDone();
          break;
        }
      }
    }
    if (!refusal && this.held) {
      this.keep(chunk.subarray(runStart, n));
      if (this.state === INLINE && this.heldLen > MAX_INLINE)
        refusal = protocolRefusal('an inline request without an end of line');
      else if (this.heldLen > MAX_INSPECTED_REQUEST)
        refusal = protocolRefusal('an AUTH, HELLO or RESET request this large');
      if (!refusal) return { forward };
    }
    if (!refusal) {
      relayRun(forward, chunk, runStart, n);
      return { forward };
    }
    // Nothing of a held request is relayed; otherwise what came before the offending byte is (the server runs
    // no request before its last byte).
    if (!this.held) relayRun(forward, chunk, runStart, i);
    this.refused = true;
    return { forward, refusal };
  }

  private hold(): void {
    this.held = [];
    this.heldLen = 0;
  }

  /** The '\r' of a number line: the count of a request, or the length of an argument. */
  private numberRead(): Refusal | undefined {
    const value = this.numberValue();
    if (this.state === COUNT) {
      if (value === undefined || value > INT_MAX) return protocolRefusal('a bad multibulk length');
      this.count = value;
      this.arg = 0;
      this.bodyNext = false;
    } else {
      if (value === undefined || value < 0 || value > MAX_ARGUMENT)
        return protocolRefusal('a bad argument length');
      this.bulk = value;
      this.bodyNext = true;
    }
    this.state = SKIP;
    this.left = 1; // the '\n' after the '\r', unread
    return undefined;
  }

  /** An argument header and the two bytes after it are read: its body follows. */
  private startArgument(): void {
    this.state = BODY;
    this.left = this.bulk;
    if (this.arg === 0) {
      this.nameLen = 0;
      this.nameNeed = Math.min(this.bulk, this.name.length);
      if (this.nameNeed === 0) this.nameDecided(false);
    }
    if (this.left === 0) this.argumentDone();
  }

  private resetNumber(): void {
    this.numLen = 0;
    this.num = 0;
    this.negative = false;
    this.zeroFirst = false;
    this.digits = 0;
    this.bad = false;
  }

  /** One character of a number line; false once string2ll can no longer accept the line. */
  private character(c: number): boolean {
    if (this.numLen === 0 && c === 0x2d /* '-' */) this.negative = true;
    else if (c >= 0x30 && c <= 0x39) {
      if (this.digits === 0 && c === 0x30) this.zeroFirst = true;
      else if (this.zeroFirst) this.bad = true;
      // Values past MAX_ARGUMENT are refused anyway; stop growing before losing precision.
      if (this.num <= MAX_ARGUMENT) this.num = this.num * 10 + (c - 0x30);
      this.digits++;
    } else this.bad = true;
    this.numLen++;
    return !this.bad && this.numLen <= MAX_NUMBER;
  }

  /** The number as string2ll reads the line: "0", or an optional '-' and digits without a leading zero. */
  private numberValue(): number | undefined {
    if (this.bad || this.digits === 0 || (this.zeroFirst && this.negative)) return undefined;
    return this.negative ? -this.num : this.num;
  }

  /** The first argument's start is read: hold the rest of the request when it names AUTH, HELLO or RESET. */
  private nameDecided(read: boolean): boolean {
    if (!read || !namesInspected(this.name, this.nameLen)) return false;
    this.args = [Buffer.from(this.name.subarray(0, this.nameLen))];
    return true;
  }

  private argumentDone(): void {
    if (this.held && this.arg > 0) this.args.push(Buffer.concat(this.part));
    this.part = [];
    this.arg++;
    this.bodyNext = false;
    this.state = SKIP;
    this.left = 2;
  }

  private keep(bytes: Buffer): void {
    if (!this.held || bytes.length === 0) return;
    this.held.push(Buffer.from(bytes));
    this.heldLen += bytes.length;
  }

  /** Decides on a complete held request: relays it, or returns the refusal. */
  private release(forward: Buffer[]): Refusal | undefined {
    const args = this.args;
    this.args = [];
    const refusal =
      args.length > 0 && INSPECTED.has(commandName(args[0] as Buffer))
        ? inspectRequest(args, this.policy)
        : undefined;
    if (!refusal) forward.push(...(this.held as Buffer[]));
    this.held = undefined;
    return refusal;
  }
}
