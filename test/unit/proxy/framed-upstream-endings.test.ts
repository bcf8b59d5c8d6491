/**
 * FramedUpstream's endings as the two peers see them: the database may stop sending while the client still
 * talks (half-close), a write that waited for a drain leaves nothing behind that fires later, a refused
 * client is not framed any further, and after a refusal the pair ends once the client has the reply, however
 * the client's socket ends (finished but still open, slow to take the reply, reset, already finished).
 */
import { Duplex, PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/proxy/errors.js';
import type { ClientFramer } from '../../../src/proxy/protocols/framing.js';
import {
  databaseEndsCleanly,
  framedPair as pair,
  refusingNo,
  slowUpstream,
  tick,
} from '../../support/framed-upstream.js';

const STILL_OPEN = 'still open after 1 s';
/** How the pair closed, or STILL_OPEN when it had not closed within a second. */
const within = (closed: Promise<Error | undefined>) =>
  Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve(STILL_OPEN), 1000))]);

/** A pair whose output is relayed to `client`, as the relay does, after the client sent a refused "NO". */
function refusedWith(client: Writable) {
  const refused = pair({ client });
  refused.framed.on('data', (d: Buffer) => client.write(d));
  refused.framed.write(Buffer.from('NO'));
  return refused;
}

describe('FramedUpstream half-close', () => {
  it('when the database ends its side, what the client sends next still reaches the database', async () => {
    const { upstream, framed } = pair();
    framed.resume();
    upstream.push(Buffer.from('done'));
    upstream.push(null);
    await new Promise((resolve) => framed.once('end', resolve));
    framed.write(Buffer.from('late command'));
    await tick();
    expect(Buffer.concat(upstream.written).toString()).toBe('late command');
    expect(upstream.writableEnded).toBe(false);
    framed.end();
    await tick();
    expect(upstream.writableEnded).toBe(true);
  });
});

describe('FramedUpstream backpressure', () => {
  it('a write that waited for a drain completes once, and the pair later closes cleanly', async () => {
    const { upstream, pending } = slowUpstream();
    const { framed, closed } = pair({ upstream });
    const completions: string[] = [];
    framed.write(Buffer.from('first'), () => completions.push('first'));
    await tick();
    for (const callback of pending.splice(0)) callback();
    await tick();
    framed.write(Buffer.from('second'), () => completions.push('second'));
    await tick();
    for (const callback of pending.splice(0)) callback();
    await tick();
    expect(completions).toEqual(['first', 'second']);
    expect(upstream.written.map(String)).toEqual(['first', 'second']);
    upstream.destroy();
    expect(await within(closed)).toBeUndefined();
  });

  it('after a drained write, a clean end of the database closes the pair without error once read', async () => {
    const { upstream, pending } = slowUpstream();
    const { framed, closed } = pair({ upstream });
    let completions = 0;
    framed.write(Buffer.from('query'), () => completions++);
    await tick();
    for (const callback of pending.splice(0)) callback();
    await tick();
    const got = await databaseEndsCleanly(upstream, framed);
    expect(await within(closed)).toBeUndefined();
    expect(Buffer.concat(got).toString()).toBe('last rows');
    expect(completions).toBe(1);
  });
});

describe('FramedUpstream after a refusal', () => {
  it('frames nothing more from the client: one refusal, logged once, is the outcome', async () => {
    const seen: string[] = [];
    const framer: ClientFramer = {
      push(chunk) {
        seen.push(chunk.toString());
        return refusingNo.push(chunk);
      },
    };
    const { framed, closed, logger, client } = pair({ framer });
    client.resume();
    framed.resume();
    framed.write(Buffer.from('NO first'));
    framed.write(Buffer.from('NO again'));
    framed.write(Buffer.from('ok'));
    const failure = await within(closed);
    expect(failure).toBeInstanceOf(ProxyError);
    expect((failure as ProxyError).code).toBe('COMMAND_REFUSED');
    expect(seen).toEqual(['NO first']);
    expect(logger.lines.filter((l) => l.msg === 'refused')).toHaveLength(1);
  });

  it('waits until the client has taken the whole reply before ending the pair', async () => {
    const got: Buffer[] = [];
    const pending: (() => void)[] = [];
    const client = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        got.push(chunk);
        pending.push(callback);
      },
    });
    const { framed, closed } = refusedWith(client);
    await tick();
    await tick();
    expect(framed.destroyed).toBe(false);
    while (pending.length > 0) {
      for (const callback of pending.splice(0)) callback();
      await tick();
    }
    const failure = await within(closed);
    expect((failure as ProxyError).code).toBe('COMMAND_REFUSED');
    expect(Buffer.concat(got).toString()).toBe('ERR refused\n');
  });

  it('ends the pair once the reply is sent even when the client keeps its own side open', async () => {
    // A client socket whose writable side finishes while the peer has not closed: 'finish' comes, 'close' not.
    const got: Buffer[] = [];
    const client = new Duplex({
      allowHalfOpen: true,
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        got.push(chunk);
        callback();
      },
    });
    const { closed } = refusedWith(client);
    const failure = await within(closed);
    expect((failure as ProxyError).code).toBe('COMMAND_REFUSED');
    expect(Buffer.concat(got).toString()).toBe('ERR refused\n');
    expect(client.writableFinished).toBe(true);
    expect(client.destroyed).toBe(false);
  });

  it('ends the pair when the client resets before it has taken the reply', async () => {
    const client = new Writable({
      highWaterMark: 1,
      write(_chunk: Buffer, _encoding, _callback) {
        // never completes: the client stopped reading
      },
    });
    const { framed, closed } = refusedWith(client);
    await tick();
    await tick();
    expect(framed.destroyed).toBe(false);
    client.destroy();
    const failure = await within(closed);
    expect((failure as ProxyError).code).toBe('COMMAND_REFUSED');
  });

  it('ends the pair at once when the client had already finished but is not yet closed', async () => {
    const client = new PassThrough();
    client.end();
    await tick();
    expect(client.writableFinished).toBe(true);
    expect(client.destroyed).toBe(false);
    const { framed, closed } = pair({ client });
    framed.resume();
    framed.write(Buffer.from('NO'));
    const failure = await within(closed);
    expect((failure as ProxyError).code).toBe('COMMAND_REFUSED');
  });
});
