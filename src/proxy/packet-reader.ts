import type { Duplex } from 'node:stream';
import { ProxyError } from './errors.js';

/**
 * Reads framed packets from a socket before the proxy starts relaying. `next(take)` resolves with the
 * first packet `take` can split off; bytes beyond it stay buffered for `rest()`.
 */
export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.waiter?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.waiter?.();
  };
  private readonly onError = (err: Error) => {
    this.failure = err;
    this.waiter?.();
  };

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    // The listener accepts sockets paused (so nothing is read before a handler is ready).
    socket.resume();
  }

  async next<T>(
    take: (buf: Buffer) => { packet: T; rest: Buffer } | undefined,
    timeoutMs: number,
    what: string,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = take(this.buf);
      if (got) {
        this.buf = got.rest;
        return got.packet;
      }
      if (this.failure) throw this.failure;
      if (this.ended) throw new ProxyError(`connection closed while waiting for ${what}`, 'ECONNRESET');
      const left = deadline - Date.now();
      if (left <= 0) throw new ProxyError(`no ${what} within ${timeoutMs / 1000}s`, 'STARTUP_TIMEOUT');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  /** Stops reading and returns what was buffered but not consumed. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
