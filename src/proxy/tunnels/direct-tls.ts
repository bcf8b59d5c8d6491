import { errorMessage } from '../../errors.js';
import { RedisRequestFramer } from '../protocols/redis.js';
import { FramedUpstream } from './framed-upstream.js';
import type { TunnelHandler } from './tunnel.js';

/**
 * MongoDB and Redis: TLS from the first byte. The proxy opens mutual TLS upstream with the current
 * certificate as soon as a client connects; the client's first bytes are relayed once it is up.
 * Redis clients get a RESP error line when the upstream cannot be reached; MongoDB has no such message
 * before a handshake, so its clients just see the connection close.
 *
 * Redis requests pass through a RedisRequestFramer: AUTH, HELLO AUTH and RESET that would make the
 * connection another user than the certificate's are refused. MongoDB is relayed as bytes: its
 * authentication is in-band (MONGODB-X509 takes the user from the certificate; other mechanisms need
 * that user's own secret), and compressed messages (OP_COMPRESSED) would hide commands from any framing.
 */
export function directTlsTunnel(protocol: 'mongodb' | 'redis'): TunnelHandler {
  return async (ctx) => {
    try {
      const creds = ctx.dialer.current();
      const upstream = await ctx.dialer.dialTls(creds);
      const toUpstream = ctx.reader.detach();
      if (protocol === 'mongodb') return { upstream, toUpstream };
      const framer = new RedisRequestFramer({ user: creds.bundle.username });
      return {
        upstream: new FramedUpstream({ upstream, client: ctx.client, framer, log: ctx.log }),
        toUpstream,
      };
    } catch (err) {
      if (protocol === 'redis')
        ctx.client.end(`-ERR broker proxy: ${errorMessage(err).replace(/[\r\n]+/g, ' ')}\r\n`);
      throw err;
    }
  };
}
