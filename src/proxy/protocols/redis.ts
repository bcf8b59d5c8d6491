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
import { type Refusal, shown } from './framing.js';
import { MAX_INLINE, splitInline } from './redis-inline.js';

/** Largest AUTH/HELLO/RESET request held for inspection. */
export const MAX_INSPECTED_REQUEST = 64 * 1024;
/** string2ll refuses 21 characters and more. */
const MAX_NUMBER = 20;
/** Bytes of the first argument kept to name the command. */
const NAME_BYTES = 64;

export interface RedisSessionPolicy {
  /** The certificate's user. */
  user: string;
}

/** Redis's string2ll (util.c): an optional '-', then "0" or a digit 1-9 and digits; nothing else. */
export function redisInteger(text: string): number | undefined {
  return /^(0|-?[1-9][0-9]*)$/.test(text) && text.length <= MAX_NUMBER ? Number(text) : undefined;
}

/** A command name as the server's lookup sees it: up to the first NUL, lower case (ASCII). */
export function commandName(arg: Buffer): string {
  const nul = arg.indexOf(0);
  return arg.toString('latin1', 0, nul < 0 ? arg.length : nul).replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

const INSPECTED = new Set(['auth', 'hello', 'reset']);

function refusal(message: string, code: Refusal['code'] = 'USER_MISMATCH'): Refusal {
  const text = `broker proxy: ${message}`;
  return { code, message: text, reply: Buffer.from(`-ERR ${text}\r\n`, 'utf8') };
}

const protocolRefusal = (what: string) =>
  refusal(`${what}: the server would close the connection`, 'COMMAND_REFUSED');

/**
 * The users an AUTH, HELLO or RESET request (its arguments) would make the connection: RESET and a one-argument
 * AUTH mean `default`; HELLO's options are read as the server reads them (protover first, then `AUTH user pass`
 * and `SETNAME name`, up to the first it does not know), and every AUTH counts. Requests the server refuses for
 * their arity name none.
 */
export function requestedUsers(args: readonly Buffer[]): Buffer[] {
  const name = commandName(args[0] as Buffer);
  if (name === 'reset') return [Buffer.from('default')];
  if (name === 'auth') {
    if (args.length === 2) return [Buffer.from('default')];
    return args.length === 3 ? [args[1] as Buffer] : [];
  }
  const users: Buffer[] = [];
  for (let j = 2; j < args.length; j++) {
    const more = args.length - 1 - j;
    const option = commandName(args[j] as Buffer);
    if (option === 'auth' && more >= 2) {
      users.push(args[j + 1] as Buffer);
      j += 2;
    } else if (option === 'setname' && more >= 1) j++;
    else break;
  }
  return users;
}

/** Refuses an inspected request that makes the connection another user than the certificate's. */
export function inspectRequest(args: readonly Buffer[], policy: RedisSessionPolicy): Refusal | undefined {
  const want = Buffer.from(policy.user, 'utf8');
  const other = requestedUsers(args).find((user) => !user.equals(want));
  if (other === undefined) return undefined;
  if (commandName(args[0] as Buffer) === 'reset')
    return refusal(
      `the client asked to reset the connection to user "default" but the certificate is for user ${shown(policy.user)}`,
    );
  return authRefusal(other, policy);
}

function authRefusal(user: Buffer, policy: RedisSessionPolicy): Refusal {
  return refusal(
    `the client asked to authenticate as user ${shown(user)} but the certificate is for user ${shown(policy.user)}`,
  );
}

type State =
  | 'start' // at a request boundary
  | 'inline' // an inline line, held until '\n'
  | 'count' // the digits of *<count>
  | 'dollar' // the '$' of an argument header
  | 'length' // the digits of $<length>
  | 'skip' // bytes the server skips unread
  | 'body'; // argument bytes

/** Where a step stopped reading, and what it means for holding. */
interface Step {
  next: number;
  /** A held request starts at this byte. */
  hold?: number;
  /** The held request ends at `next`: check it. */
  release?: boolean;
  refusal?: Refusal;
}

/**
 * Frames the client's side of a Redis connection. Each `push` returns the bytes to relay: the chunk itself
 * unless it holds part of an AUTH, HELLO, RESET or inline request, which is relayed once checked.
 */
export class RedisRequestFramer {
  private state: State = 'start';
  private digits = '';
  private count = 0;
  private arg = 0;
  /** Bytes left in the current argument ('body') or to skip ('skip'). */
  private left = 0;
  /** What follows the skipped bytes: an argument's body, or the next argument header (or request). */
  private afterSkip: 'body' | 'header' = 'header';
  /** The first bytes of the first argument (the command name). */
  private name: Buffer[] = [];
  private nameLen = 0;
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
    const emit = (to: number) => {
      if (to > runStart) forward.push(runStart === 0 && to === n ? chunk : chunk.subarray(runStart, to));
      runStart = to;
    };
    const refuse = (refusal: Refusal) => {
      this.refused = true;
      return { forward, refusal };
    };
    for (let i = 0; i < n; ) {
      const step = this.step(chunk, i);
      if (step.refusal) {
        if (!this.held) emit(i);
        return refuse(step.refusal);
      }
      if (step.hold !== undefined) {
        emit(step.hold);
        this.held = [];
        this.heldLen = 0;
      }
      i = step.next;
      if (step.release && this.held) {
        this.keep(chunk.subarray(runStart, i));
        runStart = i;
        const refusal = this.check();
        if (refusal) return refuse(refusal);
        forward.push(...this.held);
        this.held = undefined;
      }
    }
    if (!this.held) {
      emit(n);
      return { forward };
    }
    this.keep(chunk.subarray(runStart, n));
    if (this.state === 'inline' && this.heldLen > MAX_INLINE)
      return refuse(protocolRefusal('an inline request without an end of line'));
    if (this.heldLen > MAX_INSPECTED_REQUEST)
      return refuse(protocolRefusal('an AUTH, HELLO or RESET request this large'));
    return { forward };
  }

  private keep(bytes: Buffer): void {
    if (!this.held || bytes.length === 0) return;
    this.held.push(Buffer.from(bytes));
    this.heldLen += bytes.length;
  }

  /** The decision on a complete held request. */
  private check(): Refusal | undefined {
    const args = this.args;
    this.args = [];
    if (args.length === 0 || !INSPECTED.has(commandName(args[0] as Buffer))) return undefined;
    return inspectRequest(args, this.policy);
  }

  private step(chunk: Buffer, at: number): Step {
    const c = chunk[at] as number;
    switch (this.state) {
      case 'start':
        if (c === 0x2a /* '*' */) {
          this.state = 'count';
          return { next: at + 1 };
        }
        this.state = 'inline';
        return { next: at, hold: at };
      case 'inline':
        return this.inline(chunk, at);
      case 'dollar':
        if (c !== 0x24 /* '$' */)
          return { next: at, refusal: protocolRefusal('an argument that does not start with $') };
        this.state = 'length';
        return { next: at + 1 };
      case 'count':
      case 'length':
        return this.number(c, at);
      case 'skip': {
        const k = Math.min(this.left, chunk.length - at);
        this.left -= k;
        return this.left > 0 ? { next: at + k } : this.skipped(at + k);
      }
      case 'body':
        return this.body(chunk, at);
    }
  }

  /** An inline request: the server reads up to '\n', and never past a NUL byte. */
  private inline(chunk: Buffer, at: number): Step {
    const nl = chunk.indexOf(0x0a, at);
    const nul = chunk.indexOf(0, at);
    if (nul >= 0 && (nl < 0 || nul < nl))
      return { next: at, refusal: protocolRefusal('a NUL byte in an inline request') };
    if (nl < 0) {
      this.part.push(Buffer.from(chunk.subarray(at)));
      return { next: chunk.length };
    }
    this.part.push(chunk.subarray(at, nl));
    const args = splitInline(Buffer.concat(this.part));
    this.part = [];
    this.state = 'start';
    if (!args) return { next: at, refusal: protocolRefusal('unbalanced quotes in an inline request') };
    this.args = args;
    return { next: nl + 1, release: true };
  }

  /** A character of *<count> or $<length>, or the '\r' that ends it (the byte after it is skipped). */
  private number(c: number, at: number): Step {
    if (c !== 0x0d) {
      if (c === 0 || this.digits.length > MAX_NUMBER)
        return { next: at, refusal: protocolRefusal('a bad multibulk length') };
      this.digits += String.fromCharCode(c);
      return { next: at + 1 };
    }
    const value = redisInteger(this.digits);
    this.digits = '';
    if (value === undefined || value > 0x7fffffff || (this.state === 'length' && value < 0))
      return { next: at, refusal: protocolRefusal('a bad multibulk length') };
    if (this.state === 'count') {
      this.count = value;
      this.arg = 0;
      this.afterSkip = 'header';
    } else {
      this.afterSkip = 'body';
      this.bodyLen = value;
    }
    this.state = 'skip';
    this.left = 1;
    return { next: at + 1 };
  }

  private bodyLen = 0;

  /** The skipped bytes are behind: an argument's body, the next argument header, or the next request. */
  private skipped(next: number): Step {
    if (this.afterSkip === 'body') {
      this.state = 'body';
      this.left = this.bodyLen;
      return this.left === 0 ? this.argumentDone(next) : { next };
    }
    if (this.arg < this.count) {
      this.state = 'dollar';
      return { next };
    }
    // The request is complete (a count of 0 or less runs nothing).
    this.state = 'start';
    return { next, release: true };
  }

  private body(chunk: Buffer, at: number): Step {
    const k = Math.min(this.left, chunk.length - at);
    if (this.arg === 0 && this.nameLen < NAME_BYTES) {
      const part = chunk.subarray(at, at + Math.min(k, NAME_BYTES - this.nameLen));
      this.name.push(Buffer.from(part));
      this.nameLen += part.length;
    } else if (this.held) this.part.push(Buffer.from(chunk.subarray(at, at + k)));
    this.left -= k;
    return this.left > 0 ? { next: at + k } : this.argumentDone(at + k);
  }

  /** An argument is read; the two bytes after it are skipped. */
  private argumentDone(next: number): Step {
    let hold: number | undefined;
    if (this.arg === 0) {
      const name = Buffer.concat(this.name);
      this.name = [];
      this.nameLen = 0;
      if (INSPECTED.has(commandName(name))) {
        // Keep back the rest of the request: the server runs nothing before its last byte.
        this.args = [name];
        hold = next;
      }
    } else if (this.held) this.args.push(Buffer.concat(this.part));
    this.part = [];
    this.arg++;
    this.afterSkip = 'header';
    this.state = 'skip';
    this.left = 2;
    return hold === undefined ? { next } : { next, hold };
  }
}
