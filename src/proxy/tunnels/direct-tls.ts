import { errorMessage } from '../../errors.js';
import type { TunnelHandler } from './tunnel.js';

/**
 * MongoDB and Redis: TLS from the first byte. The proxy opens mutual TLS upstream with the current
 * certificate as soon as a client connects; the client's first bytes are relayed once it is up.
 * Redis clients get a RESP error line when the upstream cannot be reached; MongoDB has no such message
 * before a handshake, so its clients just see the connection close.
 */
export function directTlsTunnel(protocol: 'mongodb' | 'redis'): TunnelHandler {
  return async (ctx) => {
    try {
      const upstream = await ctx.dialer.dialTls(ctx.dialer.current());
      return { upstream, toUpstream: ctx.reader.detach() };
    } catch (err) {
      if (protocol === 'redis')
        ctx.client.end(`-ERR broker proxy: ${errorMessage(err).replace(/[\r\n]+/g, ' ')}\r\n`);
      throw err;
    }
  };
}
