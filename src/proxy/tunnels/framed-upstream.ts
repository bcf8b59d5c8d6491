import { Duplex, type Writable } from 'node:stream';
import type { JsonLogger as Logger } from '../../json-log.js';
import { ProxyError } from '../errors.js';
import type { ClientFramer, Refusal } from '../protocols/framing.js';

export interface FramedUpstreamOptions {
  /** The mutual-TLS connection to the database. */
  upstream: Duplex;
  /** The client's socket: a refusal ends the pair once the client has its answer. */
  client: Writable;
  /** Reads every byte the client sends before it goes upstream. */
  framer: ClientFramer;
  log: Logger;
}

/**
 * The database connection as the relay sees it, with the client's bytes passed through a framer on their
 * way. What the database sends comes through as it is. When the framer refuses a command, the database
 * connection is closed at once (nothing from that command on reaches it), the client gets the refusal after
 * the bytes the database had already sent, then the end of the connection; the pair ends with a ProxyError
 * whose code is the connection's outcome.
 */
export class FramedUpstream extends Duplex {
  private readonly upstream: Duplex;
  private readonly client: Writable;
  private readonly framer: ClientFramer;
  private readonly log: Logger;
  private upstreamEnded = false;
  private refused = false;

  constructor(options: FramedUpstreamOptions) {
    super({ allowHalfOpen: true });
    this.upstream = options.upstream;
    this.client = options.client;
    this.framer = options.framer;
    this.log = options.log;
    const { upstream } = this;
    upstream.on('data', this.onData);
    upstream.on('end', this.onEnd);
    upstream.on('error', this.onError);
    upstream.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer) => {
    if (!this.push(chunk)) this.upstream.pause();
  };

  private readonly onEnd = () => {
    this.upstreamEnded = true;
    this.push(null);
  };

  private readonly onError = (err: Error) => {
    this.destroy(err);
  };

  private readonly onClose = () => {
    // After a clean end, close once what the database sent has been read.
    if (!this.upstreamEnded || this.readableEnded) this.destroy();
    else this.once('end', () => this.destroy());
  };

  override _read(): void {
    this.upstream.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.refused || this.send(chunk)) callback();
    else {
      const { upstream } = this;
      const done = () => {
        upstream.off('drain', done);
        upstream.off('close', done);
        callback();
      };
      upstream.on('drain', done);
      upstream.on('close', done);
    }
  }

  /** Frames a chunk and writes what may go upstream; false when the upstream wants a drain first. */
  private send(chunk: Buffer): boolean {
    const { forward, refusal } = this.framer.push(chunk);
    const { upstream } = this;
    let drained = true;
    if (forward.length > 1) upstream.cork();
    for (const bytes of forward) drained = upstream.write(bytes) && drained;
    if (forward.length > 1) upstream.uncork();
    if (refusal) this.refuse(refusal);
    return drained || this.refused || upstream.destroyed;
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (!this.refused && !this.upstream.destroyed) this.upstream.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.upstream.destroy();
    callback(err);
  }

  private refuse(refusal: Refusal): void {
    this.refused = true;
    this.log.warn({ code: refusal.code }, refusal.message);
    const { upstream } = this;
    upstream.off('data', this.onData);
    upstream.off('end', this.onEnd);
    upstream.off('close', this.onClose);
    upstream.on('error', () => undefined);
    upstream.destroy();
    // The refusal goes to the client after what the database already sent, then the end of the stream;
    // once the client has it all, the pair ends with the refusal as its outcome.
    this.once('end', () => {
      const { client } = this;
      const finish = () => this.destroy(new ProxyError(refusal.message, refusal.code));
      if (client.writableFinished || client.destroyed) finish();
      else {
        client.once('finish', finish);
        client.once('close', finish);
        client.end();
      }
    });
    this.push(refusal.reply);
    this.push(null);
  }
}
