import type { Duplex } from 'node:stream';
import { ProxyError } from './errors.js';

export interface RelayCounters {
  clientToServer(n: number): void;
  serverToClient(n: number): void;
}

/**
 * A chunk this large is part of a bulk transfer (PostgreSQL sends 8 KiB at a time; one read of the TLS socket
 * decrypts several such records, each handed over on its own): the writes are corked until this turn of the
 * event loop has done its reads, or until FLUSH_AT bytes wait, and go out as one writev, so the other socket
 * sees one write per 64 KiB instead of one per record. Smaller chunks (queries, result rows) are written at
 * once, so coalescing never delays an interactive exchange.
 */
const COALESCE_FROM = 4 * 1024;
/** The most a corked batch holds before it is written: larger batches only cost cache misses. */
const FLUSH_AT = 64 * 1024;

/** Idle checks per idle period: the precision of the idle timeout (a quarter of it). */
const IDLE_CHECKS = 4;

/** The idle timer's callback, one for every pair (no function made per connection). */
function checkIdle(pair: Pair): void {
  pair.checkIdle();
}

/** setImmediate's callback, one for every flow (no function made per connection). */
function flushBatch(flow: Flow): void {
  flow.flushBatch();
}

/** The flow that reads a stream and the one that writes to it, kept on the stream for its listeners. */
const READ_BY = Symbol('relay flow reading this stream');
const WRITTEN_BY = Symbol('relay flow writing to this stream');
type Relayed = Duplex & { [READ_BY]?: Flow; [WRITTEN_BY]?: Flow };

// The stream listeners, one of each for every flow: a listener is called with the stream as `this`, and the
// stream names its flow. Functions made per connection would stay in memory for its whole life.
function onData(this: Relayed, chunk: Buffer): void {
  this[READ_BY]?.onData(chunk);
}
function onEnd(this: Relayed): void {
  this[READ_BY]?.onEnd();
}
function onError(this: Relayed, err: Error): void {
  this[READ_BY]?.onError(err);
}
function onClose(this: Relayed): void {
  this[READ_BY]?.onClose();
}
function onDrain(this: Relayed): void {
  this[WRITTEN_BY]?.onDrain();
}

/**
 * One direction of a pair. It makes no function of its own; the per-chunk work is a counter, a flag for the
 * idle check and the write.
 */
class Flow {
  private corked = false;
  private flushScheduled = false;
  private waiting = false;

  constructor(
    private readonly pair: Pair,
    private readonly from: Duplex,
    private readonly to: Duplex,
    private readonly count: (n: number) => void,
  ) {
    (from as Relayed)[READ_BY] = this;
    (to as Relayed)[WRITTEN_BY] = this;
    from.on('data', onData);
    from.on('end', onEnd);
    from.on('error', onError);
    from.on('close', onClose);
  }

  onData(chunk: Buffer): void {
    this.count(chunk.length);
    this.pair.moved = true;
    const { to } = this;
    if (this.corked) {
      // Back-pressure is checked when the batch is written.
      to.write(chunk);
      if (to.writableLength >= FLUSH_AT) this.flush();
      return;
    }
    if (chunk.length >= COALESCE_FROM) {
      this.corked = true;
      to.cork();
      to.write(chunk);
      // Not process.nextTick: Node runs the tick queue after each record it hands over, which would write
      // every record alone. setImmediate runs once the reads of this turn of the event loop are done.
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(flushBatch, this);
      }
      return;
    }
    if (!to.write(chunk)) this.waitForDrain();
  }

  /** The end of this turn's reads: writes the corked batch, if FLUSH_AT has not written it already. */
  flushBatch(): void {
    this.flushScheduled = false;
    if (this.corked) this.flush();
  }

  private flush(): void {
    this.corked = false;
    const { to } = this;
    to.uncork();
    // Only what the socket could not take at once is back-pressure. A corked write of a large chunk reports
    // "wait for drain" even when the uncork then writes it all synchronously; pausing for that would stop and
    // restart reading on every burst.
    if (to.writableLength >= to.writableHighWaterMark) this.waitForDrain();
  }

  private waitForDrain(): void {
    if (this.waiting) return;
    this.waiting = true;
    this.from.pause();
    this.to.once('drain', onDrain);
  }

  onDrain(): void {
    this.waiting = false;
    this.from.resume();
  }

  onEnd(): void {
    this.to.end();
  }

  onError(err: Error): void {
    this.pair.failure ??= err;
    this.to.destroy();
  }

  onClose(): void {
    const { from, to } = this;
    // A side destroyed before its end (shutdown, idle timeout) leaves nothing to relay to: destroy the
    // other, which may be paused waiting for a drain that will never come. After a clean end, half-close.
    if (!from.readableEnded) to.destroy();
    else if (!to.destroyed && (to as { writableEnded?: boolean }).writableEnded !== true) to.end();
    this.pair.closed();
  }
}

/** Both directions, the idle check and the result. */
class Pair {
  failure: Error | undefined;
  /** Set by every chunk, cleared by the idle check: one store per chunk instead of a timer update. */
  moved = false;
  private open = 2;
  private timer: NodeJS.Timeout | undefined;
  private silentChecks = 0;

  constructor(
    private readonly client: Duplex,
    private readonly server: Duplex,
    private readonly idleTimeoutMs: number,
    private readonly resolve: (failure: Error | undefined) => void,
  ) {
    if (idleTimeoutMs > 0) this.timer = setTimeout(checkIdle, idleTimeoutMs / IDLE_CHECKS, this);
  }

  /**
   * Runs IDLE_CHECKS times per idle period: traffic since the last run starts the count again, that many
   * silent runs in a row end the pair. So a pair closes after between 1 and 1 + 1/IDLE_CHECKS idle periods
   * of silence, and traffic costs no timer work.
   */
  checkIdle(): void {
    if (this.moved) {
      this.moved = false;
      this.silentChecks = 0;
    } else if (++this.silentChecks >= IDLE_CHECKS) {
      this.failure = new ProxyError(`idle for ${this.idleTimeoutMs / 1000}s`, 'IDLE_TIMEOUT');
      this.client.destroy();
      this.server.destroy();
      return;
    }
    this.timer?.refresh();
  }

  closed(): void {
    if (--this.open > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.resolve(this.failure);
  }
}

/**
 * Relays bytes both ways until both sides are done, the same rules in each direction:
 * an end (FIN) from one side half-closes the other, so protocols that finish writing before reading
 * still work; an error on one side destroys the other, since a half-broken pair can only hang; an
 * optional idle timeout ends a pair with no traffic either way. Resolves when both sockets are closed.
 */
export function relay(
  client: Duplex,
  server: Duplex,
  counters: RelayCounters,
  idleTimeoutMs = 0,
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    const pair = new Pair(client, server, idleTimeoutMs, resolve);
    new Flow(pair, client, server, counters.clientToServer);
    new Flow(pair, server, client, counters.serverToClient);
    client.resume();
    server.resume();
  });
}
