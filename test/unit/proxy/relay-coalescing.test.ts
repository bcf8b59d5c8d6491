/**
 * The relay's write coalescing (src/proxy/relay.ts): the records one read of the TLS socket hands over one by
 * one go to the other side as one write per batch, in order and complete; small chunks are written at once.
 */
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { relay } from '../../../src/proxy/relay.js';

/** A duplex that records each write call it gets (a writev counts once) and can be fed from the test. */
function recordingSide() {
  const writes: Buffer[][] = [];
  const side = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes.push([chunk]);
      cb();
    },
    writev(chunks, cb) {
      writes.push(chunks.map((c) => c.chunk as Buffer));
      cb();
    },
  });
  return { side, writes };
}

const counters = { clientToServer: () => {}, serverToClient: () => {} };
const turn = () => new Promise((r) => setImmediate(r));

describe('relay write coalescing', () => {
  it('writes the 8 KiB records of one turn of the event loop as batches of at most 64 KiB, every byte in order', async () => {
    const client = recordingSide();
    const server = recordingSide();
    void relay(client.side, server.side, counters);
    const records = Array.from({ length: 20 }, (_, i) => Buffer.alloc(8192, i));
    for (const r of records) server.side.push(r);
    await turn();
    await turn();
    expect(Buffer.concat(client.writes.flat())).toEqual(Buffer.concat(records));
    // 20 records: batches of 8 (64 KiB), 8 and 4 instead of 20 writes.
    expect(client.writes.map((w) => w.length)).toEqual([8, 8, 4]);
    client.side.destroy();
  });

  it('writes a small chunk (a query, a result row) at once, without waiting for the turn to end', async () => {
    const client = recordingSide();
    const server = recordingSide();
    void relay(client.side, server.side, counters);
    await turn();
    client.side.push(Buffer.from('Q\0\0\0\x0dSELECT 1\0'));
    await new Promise((r) => process.nextTick(r));
    await Promise.resolve();
    expect(server.writes.flat().map((b) => b.toString('latin1'))).toEqual(['Q\0\0\0\x0dSELECT 1\0']);
    client.side.destroy();
  });
});
