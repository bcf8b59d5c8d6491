/**
 * FramedUpstream's flow control and endings: several forwarded pieces written as one, backpressure both
 * ways, a drain that never comes because the database closed, how the pair closes after a clean end or an
 * abrupt close, and what happens to writes and ends after a refusal.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { ProxyError } from '../../../src/proxy/errors.js';
import type { ClientFramer, FramerStep } from '../../../src/proxy/protocols/framing.js';
import {
  databaseEndsCleanly,
  FakeUpstream,
  framedPair,
  slowUpstream,
  tick,
} from '../../support/framed-upstream.js';

/** Splits every chunk at its spaces into several forwarded pieces; "NO" anywhere is refused. */
const splitting: ClientFramer = {
  push(chunk: Buffer): FramerStep {
    if (chunk.includes('NO'))
      return {
        forward: [],
        refusal: { code: 'DATABASE_MISMATCH', message: 'refused here', reply: Buffer.from('R') },
      };
    return {
      forward: chunk
        .toString()
        .split(' ')
        .map((s) => Buffer.from(s)),
    };
  },
};

function pair(upstream = new FakeUpstream(), client: PassThrough = new PassThrough()) {
  return framedPair({ upstream, client, framer: splitting });
}

describe('FramedUpstream flow', () => {
  it('writes several forwarded pieces of one chunk corked, in order', async () => {
    const { upstream, framed } = pair();
    const cork = vi.spyOn(upstream, 'cork');
    const uncork = vi.spyOn(upstream, 'uncork');
    framed.write(Buffer.from('a b c'));
    await tick();
    expect(upstream.written.map(String)).toEqual(['a', 'b', 'c']);
    expect(cork).toHaveBeenCalledTimes(1);
    expect(uncork).toHaveBeenCalledTimes(1);
    framed.write(Buffer.from('single'));
    await tick();
    expect(cork).toHaveBeenCalledTimes(1);
  });

  it('pauses the database while the client side is not reading, and resumes when it reads', async () => {
    const { upstream, framed } = pair();
    upstream.push(Buffer.alloc(64 * 1024));
    await tick();
    expect(upstream.isPaused()).toBe(true);
    framed.read();
    await tick();
    expect(upstream.isPaused()).toBe(false);
  });

  it('a write waiting for a drain completes when the database closes instead', async () => {
    // The database never completes the write.
    const { upstream } = slowUpstream();
    const { framed } = pair(upstream);
    framed.on('error', () => undefined);
    let done = false;
    framed.write(Buffer.from('abc'), () => {
      done = true;
    });
    await tick();
    expect(done).toBe(false);
    upstream.destroy();
    await tick();
    expect(done).toBe(true);
  });

  it('an abrupt close of the database closes the pair at once', async () => {
    const { upstream, closed, framed } = pair();
    upstream.destroy();
    expect(await closed).toBeUndefined();
    expect(framed.destroyed).toBe(true);
  });

  it('after a clean end, the pair closes only once what the database sent has been read', async () => {
    const { upstream, framed, closed } = pair();
    const got = await databaseEndsCleanly(upstream, framed);
    expect(await closed).toBeUndefined();
    expect(Buffer.concat(got).toString()).toBe('last rows');
  });

  it('ending the client side ends the database side; destroying the pair destroys the database', async () => {
    const { upstream, framed } = pair();
    framed.end();
    await tick();
    expect(upstream.writableEnded).toBe(true);
    const other = pair();
    other.framed.on('error', () => undefined);
    other.framed.destroy();
    await tick();
    expect(other.upstream.destroyed).toBe(true);
  });

  it('after a refusal, later writes are dropped and an end does not reach the database', async () => {
    const { upstream, framed, closed, client } = pair();
    client.resume();
    framed.resume();
    framed.write(Buffer.from('NO'));
    framed.write(Buffer.from('x y'));
    const failure = await closed;
    expect(failure).toBeInstanceOf(ProxyError);
    expect((failure as ProxyError).code).toBe('DATABASE_MISMATCH');
    expect(failure?.message).toBe('refused here');
    expect(upstream.written).toEqual([]);
    expect(upstream.writableEnded).toBe(false);
    expect(upstream.destroyed).toBe(true);
  });

  it('an end after a refusal does not end the database side', async () => {
    const { upstream, framed } = pair();
    framed.on('error', () => undefined);
    framed.write(Buffer.from('NO'));
    framed.end();
    await tick();
    expect(upstream.writableEnded).toBe(false);
  });

  it('a refusal when the client has already finished ends the pair at once with the refusal', async () => {
    const client = new PassThrough();
    client.end();
    client.resume();
    await tick();
    expect(client.writableFinished).toBe(true);
    const { framed, closed, logger } = pair(new FakeUpstream(), client);
    framed.resume();
    framed.write(Buffer.from('NO'));
    expect((await closed)?.message).toBe('refused here');
    expect(logger.lines.find((l) => l.msg === 'refused here')).toMatchObject({
      code: 'DATABASE_MISMATCH',
      level: 40,
    });
  });
});
