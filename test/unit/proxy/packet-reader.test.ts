import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/proxy/errors.js';
import { outcomeOf } from '../../../src/proxy/outcome.js';
import { PacketReader } from '../../../src/proxy/packet-reader.js';
import {
  PostgresProtocolError,
  PROTOCOL_3_0,
  serializeStartup,
  sslRequest,
  takeStartupPacket,
} from '../../../src/proxy/protocols/postgres.js';

const errno = (code: string) => Object.assign(new Error(code), { code });

const startup = serializeStartup(PROTOCOL_3_0, new Map([['user', 'alice']]));
const PG = 'PostgreSQL startup message';

/** Lets pending I/O callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('PacketReader on an in-memory stream', () => {
  it('assembles a packet written in pieces and keeps bytes past it for detach()', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    let done = false;
    const next = reader.next(takeStartupPacket, 5000, PG).then((p) => {
      done = true;
      return p;
    });
    const bytes = Buffer.concat([startup, Buffer.from('after')]);
    for (const piece of [bytes.subarray(0, 3), bytes.subarray(3, 9), bytes.subarray(9, startup.length - 1)]) {
      stream.write(piece);
      await tick();
      expect(done).toBe(false);
    }
    stream.write(bytes.subarray(startup.length - 1));
    expect((await next).equals(startup)).toBe(true);
    expect(reader.detach().toString()).toBe('after');
  });

  it('returns packets already buffered without waiting, in order', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(Buffer.concat([sslRequest(), startup]));
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(sslRequest())).toBe(true);
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(startup)).toBe(true);
    expect(reader.detach()).toHaveLength(0);
  });

  it('gives up with STARTUP_TIMEOUT when no packet completes in time', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(startup.subarray(0, 5));
    const started = Date.now();
    const err = await reader.next(takeStartupPacket, 30, PG).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'STARTUP_TIMEOUT', message: `no ${PG} within 0.03s` });
    expect(outcomeOf(err)).toBe('client_timeout');
  });

  it('keeps the deadline across partial writes: trickling bytes do not extend it', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const trickle = setInterval(() => stream.write(Buffer.from([0])), 5);
    try {
      // Every byte wakes the reader, but no packet ever completes.
      const started = Date.now();
      const err = await reader.next(() => undefined, 60, PG).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STARTUP_TIMEOUT' });
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      clearInterval(trickle);
    }
  });

  it('fails with ECONNRESET when the peer ends before a packet completes', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const next = reader.next(takeStartupPacket, 5000, PG);
    stream.end(startup.subarray(0, 6));
    const err = await next.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect(err).toMatchObject({ code: 'ECONNRESET', message: `connection closed while waiting for ${PG}` });
    expect(outcomeOf(err)).toBe('reset');
  });

  it('still returns a packet that completed just before the end', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.end(startup);
    await tick();
    expect((await reader.next(takeStartupPacket, 5000, PG)).equals(startup)).toBe(true);
    await expect(reader.next(takeStartupPacket, 5000, PG)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('rejects with the stream error', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    const next = reader.next(takeStartupPacket, 5000, PG);
    stream.destroy(errno('ECONNRESET'));
    await expect(next).rejects.toMatchObject({ code: 'ECONNRESET', message: 'ECONNRESET' });
  });

  it('passes on what the framing function throws', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(Buffer.from('GET / HTTP/1.1\r\n'));
    await expect(reader.next(takeStartupPacket, 5000, PG)).rejects.toBeInstanceOf(PostgresProtocolError);
  });

  it('detach() stops reading: later bytes stay in the stream for the next reader', async () => {
    const stream = new PassThrough();
    const reader = new PacketReader(stream);
    stream.write(startup);
    await reader.next(takeStartupPacket, 5000, PG);
    reader.detach();
    expect(stream.listenerCount('data')).toBe(0);
    stream.write(Buffer.from('later'));
    await tick();
    expect(stream.read()?.toString()).toBe('later');
  });
});
