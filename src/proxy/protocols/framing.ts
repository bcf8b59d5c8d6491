/**
 * The shape of a client-command framer: after the protocol's start, the tunnel passes every byte the client
 * sends through one, and writes what it returns to the database. A framer is pure (bytes in, bytes and
 * decisions out): it reads only packet headers and the few commands that can change who or where the session
 * is, and hands the bytes of every other command back as the same buffers it was given.
 */

/** Why a command was not relayed: becomes the ProxyError code (and so the connection's outcome label). */
export type RefusalCode = 'USER_MISMATCH' | 'DATABASE_MISMATCH' | 'COMMAND_REFUSED';

export interface Refusal {
  code: RefusalCode;
  /** What the tunnel logs, and what the client sees inside `reply`. */
  message: string;
  /** The answer in the client's protocol (a MySQL ERR packet, a RESP error line), sent before closing. */
  reply: Buffer;
}

export interface FramerStep {
  /** Bytes to send to the database, in order; usually the chunk itself. */
  forward: Buffer[];
  /** Set when a command is refused: nothing from it on is relayed, and the connection is to be closed. */
  refusal?: Refusal;
}

export interface ClientFramer {
  /** Feeds the next chunk the client sent (in any split TCP delivered it in). */
  push(chunk: Buffer): FramerStep;
}

/** A name as it may appear in a message: printable, short, quoted. */
export function shown(name: Buffer | string): string {
  const text = typeof name === 'string' ? name : name.toString('utf8');
  const clean = text.replace(/[\p{Cc}\p{Cf}]/gu, '?');
  return JSON.stringify(clean.length > 64 ? `${clean.slice(0, 64)}…` : clean);
}

/** Appends `chunk[from, to)` to `forward`: the chunk itself when that is all of it. */
export function relayRun(forward: Buffer[], chunk: Buffer, from: number, to: number): void {
  if (to > from) forward.push(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to));
}
