/**
 * The Redis commands that change a connection's user, pure: AUTH, HELLO (with its AUTH option) and RESET
 * (back to the `default` user), their names compared as the server compares them, and the decision on a
 * complete request. The framing that finds them is in redis.ts.
 */
import { type Refusal, shown } from './framing.js';

export interface RedisSessionPolicy {
  /** The certificate's user. */
  user: string;
}

/** A command name as the server's lookup sees it: up to the first NUL, lower case (ASCII). */
export function commandName(arg: Buffer): string {
  const nul = arg.indexOf(0);
  return arg.toString('latin1', 0, nul < 0 ? arg.length : nul).replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

export const INSPECTED = new Set(['auth', 'hello', 'reset']);

function refusal(message: string, code: Refusal['code'] = 'USER_MISMATCH'): Refusal {
  const text = `broker proxy: ${message}`;
  return { code, message: text, reply: Buffer.from(`-ERR ${text}\r\n`, 'utf8') };
}

export const protocolRefusal = (what: string) =>
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

const NAMES = [...INSPECTED].map((name) => Buffer.from(name, 'latin1'));

/**
 * Whether the start of a first argument (its first min(length, 6) bytes) names AUTH, HELLO or RESET, compared
 * as commandName does: up to a NUL, ASCII letters in either case.
 */
export function namesInspected(start: Buffer, length: number): boolean {
  let end = start.indexOf(0);
  if (end < 0 || end > length) end = length;
  return NAMES.some((name) => {
    if (name.length !== end) return false;
    for (let k = 0; k < end; k++) if (((start[k] as number) | 0x20) !== name[k]) return false;
    return true;
  });
}
