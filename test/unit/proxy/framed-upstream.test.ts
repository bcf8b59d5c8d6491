import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/proxy/errors.js';
import type { ClientFramer, FramerStep } from '../../../src/proxy/protocols/framing.js';
import { FramedUpstream } from '../../../src/proxy/tunnels/framed-upstream.js';
import { framedPair, slowUpstream, tick } from '../../support/framed-upstream.js';
import { memoryLogger } from '../../support/proxy.js';

/** Relays every chunk, except that a chunk containing BAD is cut there and refused. */
const framer: ClientFramer = {
  push(chunk: Buffer): FramerStep {
    const bad = chunk.indexOf('BAD');
    if (bad < 0) return { forward: [chunk] };
    return {
      forward: bad > 0 ? [chunk.subarray(0, bad)] : [],
      refusal: { code: 'USER_MISMATCH', message: 'broker proxy: refused', reply: Buffer.from('NO\n') },
    };
  },
};

/** A wrapper wired to a client the way the relay wires it. */
function setup() {
  const pair = framedPair({ framer });
  const { framed, client } = pair;
  const received: Buffer[] = [];
  framed.on('data', (d: Buffer) => client.write(d));
  framed.on('end', () => client.end());
  client.on('data', (d: Buffer) => received.push(d));
  return { ...pair, received };
}

describe('FramedUpstream', () => {
  it('relays framed client bytes up and the database bytes down, and ends both ways', async () => {
    const { upstream, framed, received, closed } = setup();
    framed.write(Buffer.from('hello'));
    upstream.push(Buffer.from('world'));
    await tick();
    expect(Buffer.concat(upstream.written).toString()).toBe('hello');
    expect(Buffer.concat(received).toString()).toBe('world');
    upstream.push(null);
    framed.end();
    upstream.destroy();
    expect(await closed).toBeUndefined();
    expect(upstream.writableEnded).toBe(true);
  });

  it('on a refusal closes the database, sends what it had sent then the reply, and ends with the code', async () => {
    const { upstream, framed, received, closed, logger, client } = setup();
    upstream.push(Buffer.from('row1 '));
    await tick();
    framed.write(Buffer.from('okBADrest'));
    framed.write(Buffer.from('more'));
    const failure = await closed;
    expect(failure).toBeInstanceOf(ProxyError);
    expect((failure as ProxyError).code).toBe('USER_MISMATCH');
    expect(upstream.destroyed).toBe(true);
    expect(Buffer.concat(upstream.written).toString()).toBe('ok');
    expect(Buffer.concat(received).toString()).toBe('row1 NO\n');
    expect(client.writableFinished).toBe(true);
    expect(logger.lines.find((l) => l.msg === 'broker proxy: refused')?.code).toBe('USER_MISMATCH');
  });

  it('passes a database error on and closes', async () => {
    const { upstream, closed } = setup();
    upstream.destroy(new Error('tls alert'));
    expect((await closed)?.message).toBe('tls alert');
  });

  it('waits for the database to drain before taking more', async () => {
    const { upstream, pending: slow } = slowUpstream();
    const framed = new FramedUpstream({
      upstream,
      client: new PassThrough(),
      framer,
      log: memoryLogger().log,
    });
    let done = false;
    framed.write(Buffer.from('abc'), () => {
      done = true;
    });
    await tick();
    expect(done).toBe(false);
    for (const callback of slow.splice(0)) callback();
    await tick();
    expect(done).toBe(true);
  });
});
