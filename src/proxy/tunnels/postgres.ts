import type net from 'node:net';
import { errorMessage } from '../../errors.js';
import { CredentialsUnavailableError } from '../credential-cache.js';
import { ProxyError } from '../errors.js';
import type { LoadedCredentials } from '../loaded-credentials.js';
import {
  errorResponse,
  PostgresProtocolError,
  parseStartupPacket,
  serializeCancel,
  serializeStartup,
  sslRequest,
  sslRequestAccepted,
  startupParams,
  takeStartupPacket,
} from '../protocols/postgres.js';
import type { TunnelContext, TunnelHandler, TunnelSetup } from './tunnel.js';

const take = (buf: Buffer) => takeStartupPacket(buf);

/** PostgreSQL's TLS start on a fresh connection: an SSLRequest, then the server's one-byte answer. */
async function requestTls(socket: net.Socket, creds: LoadedCredentials, timeoutMs: number): Promise<void> {
  socket.write(sslRequest());
  const answer = await new Promise<Buffer>((resolve, reject) => {
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      // The socket lives on under TLS: listeners left on it would keep these closures and the timer.
      socket.off('data', onData).off('error', onError).off('end', onEnd);
      fn();
    };
    const onData = (b: Buffer) => settle(() => resolve(b));
    const onError = (err: Error) => settle(() => reject(err));
    const onEnd = () =>
      settle(() =>
        reject(new ProxyError('the database closed the connection after the SSLRequest', 'ECONNRESET')),
      );
    const timer = setTimeout(
      () =>
        settle(() => reject(new ProxyError('the database did not answer the SSLRequest', 'DIAL_TIMEOUT'))),
      timeoutMs,
    );
    socket.once('data', onData).once('error', onError).once('end', onEnd);
  });
  if (!sslRequestAccepted(answer))
    throw new ProxyError(
      `the database at ${creds.bundle.endpoint} refused TLS (answered ${JSON.stringify(answer.subarray(0, 1).toString('latin1'))} to SSLRequest)`,
      'TLS_REFUSED',
    );
}

/** Mutual TLS to the database with `creds`, asked for with an SSLRequest. */
function openUpstream(ctx: TunnelContext, creds: LoadedCredentials) {
  return ctx.dialer.dialTls(creds, (socket) => requestTls(socket, creds, ctx.dialTimeoutMs));
}

/**
 * PostgreSQL and CockroachDB tunnel: the client speaks plain protocol 3 to the proxy (its SSLRequest and
 * GSSENCRequest are answered 'N'), the proxy checks the startup user against the certificate and the
 * database against the output's (filling in a missing one), and replays the StartupMessage over mutual TLS
 * upstream. The protocol has no message that changes the user or database after the startup.
 */
export const postgresTunnel: TunnelHandler = async (ctx) => {
  const fail = (code: string, message: string, hint?: string) => {
    ctx.client.end(errorResponse({ code, message, ...(hint ? { hint } : {}) }));
  };
  for (let round = 0; round < 3; round++) {
    let packet: ReturnType<typeof parseStartupPacket>;
    try {
      packet = parseStartupPacket(
        await ctx.reader.next(take, ctx.startupTimeoutMs, 'PostgreSQL startup message'),
      );
    } catch (err) {
      if (err instanceof PostgresProtocolError) fail('08P01', `broker proxy: ${err.message}`);
      throw err;
    }
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc':
        // The client-to-proxy leg is loopback; TLS happens upstream.
        ctx.client.write('N');
        continue;
      case 'cancel': {
        const creds = ctx.dialer.current();
        const upstream = await openUpstream(ctx, creds);
        upstream.end(serializeCancel(packet.processId, packet.secretKey));
        ctx.client.end();
        return undefined;
      }
      case 'startup': {
        let creds: LoadedCredentials;
        try {
          creds = ctx.dialer.current();
        } catch (err) {
          if (err instanceof CredentialsUnavailableError) fail('08006', `broker proxy: ${err.message}`);
          throw err;
        }
        const decided = startupParams(packet.params, {
          user: creds.bundle.username,
          database: creds.bundle.database,
        });
        if ('refusal' in decided) {
          const { code, sqlState, message, hint } = decided.refusal;
          fail(sqlState, message, hint);
          throw new ProxyError(message, code);
        }
        const { params } = decided;
        let upstream: Awaited<ReturnType<typeof openUpstream>>;
        try {
          upstream = await openUpstream(ctx, creds);
        } catch (err) {
          fail(
            '08006',
            `broker proxy: could not reach ${creds.bundle.service} at ${creds.bundle.endpoint}: ${errorMessage(err)}`,
          );
          throw err;
        }
        upstream.write(serializeStartup(packet.protocol, params));
        return { upstream, toUpstream: ctx.reader.detach() } satisfies TunnelSetup;
      }
    }
  }
  fail('08P01', 'broker proxy: too many SSL/GSS negotiation requests');
  throw new ProxyError('too many negotiation requests', 'PROTOCOL');
};
