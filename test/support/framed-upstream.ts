/**
 * FramedUpstream's unit tests' parts: an in-memory database side, a framer that refuses "NO", and a wrapper
 * wired to a client with its outcome as a promise. Listed with those tests in scripts/mutation/targets.mjs
 * (a change here tests framed-upstream.ts's mutants again).
 */
import { Duplex, PassThrough, type Writable } from 'node:stream';
import { expect } from 'vitest';
import type { ClientFramer, FramerStep } from '../../src/proxy/protocols/framing.js';
import { FramedUpstream } from '../../src/proxy/tunnels/framed-upstream.js';
import { memoryLogger } from './proxy.js';

/** The database side: records what it is sent; `push` is what it sends. */
export class FakeUpstream extends Duplex {
  written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.written.push(chunk);
    callback();
  }
}

/**
 * A database side that takes one byte before it asks for a drain and completes no write until the test
 * calls the callbacks in `pending` (it records each chunk as it arrives).
 */
export function slowUpstream(): { upstream: FakeUpstream; pending: (() => void)[] } {
  const upstream = new FakeUpstream({ highWaterMark: 1 });
  const pending: (() => void)[] = [];
  upstream._write = (chunk: Buffer, _encoding, callback) => {
    upstream.written.push(chunk);
    pending.push(callback);
  };
  return { upstream, pending };
}

/** Relays every chunk; a chunk containing "NO" is refused whole. */
export const refusingNo: ClientFramer = {
  push(chunk: Buffer): FramerStep {
    if (!chunk.includes('NO')) return { forward: [chunk] };
    return {
      forward: [],
      refusal: { code: 'COMMAND_REFUSED', message: 'refused', reply: Buffer.from('ERR refused\n') },
    };
  },
};

export interface FramedPairOptions<C extends Writable> {
  upstream?: FakeUpstream;
  client?: C;
  framer?: ClientFramer;
}

/**
 * A FramedUpstream over `upstream` (a fresh FakeUpstream) for `client` (a PassThrough) with `framer`
 * (refusingNo), and how it closed: `closed` resolves at 'close' with the error it emitted, if any.
 */
export function framedPair<C extends Writable = PassThrough>(options: FramedPairOptions<C> = {}) {
  const upstream = options.upstream ?? new FakeUpstream();
  // Without a client the default type argument applies, so the PassThrough is the C asked for.
  const client = options.client ?? (new PassThrough() as unknown as C);
  const logger = memoryLogger();
  const framed = new FramedUpstream({
    upstream,
    client,
    framer: options.framer ?? refusingNo,
    log: logger.log,
  });
  const closed = new Promise<Error | undefined>((resolve) => {
    let failure: Error | undefined;
    framed.on('error', (err) => {
      failure = err;
    });
    framed.on('close', () => resolve(failure));
  });
  return { upstream, client, framed, closed, logger };
}

/**
 * The database sends `rows`, ends its side and closes its socket; the pair must still be open (the rows are
 * not read yet). Reads the pair from then on: the returned chunks are what the client side got.
 */
export async function databaseEndsCleanly(
  upstream: FakeUpstream,
  framed: FramedUpstream,
  rows = 'last rows',
): Promise<Buffer[]> {
  upstream.push(Buffer.from(rows));
  upstream.push(null);
  await tick();
  upstream.destroy();
  await tick();
  expect(framed.destroyed).toBe(false);
  const got: Buffer[] = [];
  framed.on('data', (d: Buffer) => got.push(d));
  return got;
}

/** One turn of the event loop (I/O callbacks and stream events queued so far have run). */
export const tick = () => new Promise((resolve) => setImmediate(resolve));
