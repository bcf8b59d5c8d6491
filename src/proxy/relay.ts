import type { Duplex } from 'node:stream';
import { ProxyError } from './errors.js';

export interface RelayCounters {
  clientToServer(n: number): void;
  serverToClient(n: number): void;
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
    let failure: Error | undefined;
    let closed = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const touch = () => {
      if (!idleTimeoutMs) return;
      if (idleTimer) idleTimer.refresh();
      else
        idleTimer = setTimeout(() => {
          failure = new ProxyError(`idle for ${idleTimeoutMs / 1000}s`, 'IDLE_TIMEOUT');
          client.destroy();
          server.destroy();
        }, idleTimeoutMs);
    };
    const wire = (from: Duplex, to: Duplex, count: (n: number) => void) => {
      from.on('data', (chunk: Buffer) => {
        count(chunk.length);
        touch();
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', (err) => {
        failure ??= err;
        to.destroy();
      });
      from.on('close', () => {
        // A side destroyed before its end (shutdown, idle timeout) leaves nothing to relay to: destroy the
        // other, which may be paused waiting for a drain that will never come. After a clean end, half-close.
        if (!from.readableEnded) to.destroy();
        else if (!to.destroyed && (to as { writableEnded?: boolean }).writableEnded !== true) to.end();
        if (++closed === 2) {
          if (idleTimer) clearTimeout(idleTimer);
          resolve(failure);
        }
      });
    };
    wire(client, server, counters.clientToServer);
    wire(server, client, counters.serverToClient);
    touch();
    client.resume();
    server.resume();
  });
}
