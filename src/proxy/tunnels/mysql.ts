import type net from 'node:net';
import { errorMessage } from '../../errors.js';
import { CredentialsUnavailableError } from '../credential-cache.js';
import { ProxyError } from '../errors.js';
import type { LoadedCredentials } from '../loaded-credentials.js';
import { PacketReader } from '../packet-reader.js';
import {
  authPacketKind,
  CLIENT_SSL,
  errPayload,
  type MysqlPacket,
  MysqlProtocolError,
  parseHandshakeResponse,
  parseServerGreeting,
  serializeMysqlPacket,
  sslRequestPayload,
  takeMysqlPacket,
  withoutCapabilities,
  withSslCapability,
} from '../protocols/mysql.js';
import type { TunnelHandler } from './tunnel.js';

// ER_ACCESS_DENIED_ERROR and ER_HANDSHAKE_ERROR / CR_CONNECTION_ERROR-like codes clients show as is.
const ER_ACCESS_DENIED = 1045;
const ER_HANDSHAKE = 1043;
const CR_CONN_HOST_ERROR = 2003;

/**
 * MySQL/MariaDB tunnel. The proxy reads the server greeting, shows it to the client without CLIENT_SSL,
 * reads the client's handshake response, then upgrades the upstream with an SSLRequest (sequence 1) and
 * mutual TLS, and replays the response as sequence 2 with CLIENT_SSL set. Until the server's OK or ERR,
 * sequence ids differ by one between the two legs, so the proxy rewrites them; after that it relays bytes.
 */
export const mysqlTunnel: TunnelHandler = async (ctx) => {
  const toClient = (seq: number, code: number, state: string, message: string) =>
    ctx.client.end(serializeMysqlPacket(seq, errPayload(code, state, `broker proxy: ${message}`)));
  let creds: LoadedCredentials;
  try {
    creds = ctx.dialer.current();
  } catch (err) {
    if (err instanceof CredentialsUnavailableError) toClient(0, CR_CONN_HOST_ERROR, 'HY000', err.message);
    throw err;
  }
  let socket: net.Socket;
  try {
    socket = await ctx.dialer.dialTcp(creds);
  } catch (err) {
    toClient(
      0,
      CR_CONN_HOST_ERROR,
      'HY000',
      `could not reach ${creds.bundle.service} at ${creds.bundle.endpoint}: ${errorMessage(err)}`,
    );
    throw err;
  }
  const plain = new PacketReader(socket);
  const readServer = (r: PacketReader, what: string) =>
    r.next<MysqlPacket>(takeMysqlPacket, ctx.dialTimeoutMs, what);
  try {
    const greeting = await readServer(plain, 'MySQL server greeting');
    if (greeting.payload[0] === 0xff) {
      // The server refused us before any handshake (e.g. too many connections): the client sees its error.
      ctx.client.end(serializeMysqlPacket(0, greeting.payload));
      throw new ProxyError('the database refused the connection before the handshake', 'UPSTREAM_ERR');
    }
    const info = parseServerGreeting(greeting.payload);
    if (!(info.capabilities & CLIENT_SSL)) {
      toClient(0, ER_HANDSHAKE, '08S01', `the database at ${creds.bundle.endpoint} does not support TLS`);
      throw new ProxyError('upstream lacks CLIENT_SSL', 'TLS_REFUSED');
    }
    ctx.client.write(serializeMysqlPacket(0, withoutCapabilities(greeting.payload, info, CLIENT_SSL)));

    const responsePacket = await ctx.reader.next<MysqlPacket>(
      takeMysqlPacket,
      ctx.startupTimeoutMs,
      'MySQL handshake response',
    );
    const response = parseHandshakeResponse(responsePacket.payload);
    if (response.isSslRequest) {
      toClient(
        2,
        ER_HANDSHAKE,
        '08S01',
        'the tunnel does the TLS; connect to it without TLS (e.g. --ssl=0 / ssl: false)',
      );
      throw new ProxyError('client asked for TLS to the tunnel', 'PROTOCOL');
    }
    const want = creds.bundle.username;
    if (response.username !== want) {
      toClient(
        responsePacket.seq + 1,
        ER_ACCESS_DENIED,
        '28000',
        `the client asked for user "${response.username ?? ''}" but the certificate is for user "${want}"`,
      );
      throw new ProxyError(
        `startup user ${response.username} differs from the certificate's ${want}`,
        'USER_MISMATCH',
      );
    }

    const leftover = plain.detach();
    if (leftover.length) throw new MysqlProtocolError('the server sent data before the TLS upgrade');
    socket.write(serializeMysqlPacket(responsePacket.seq, sslRequestPayload(response)));
    const upstream = await ctx.dialer.upgrade(socket, creds);
    upstream.write(serializeMysqlPacket(responsePacket.seq + 1, withSslCapability(responsePacket.payload)));

    // Authentication exchange: relay packet by packet, shifting sequence ids by one, until OK or ERR.
    const secure = new PacketReader(upstream);
    for (let i = 0; i < 16; i++) {
      const p = await readServer(secure, 'MySQL authentication result');
      ctx.client.write(serializeMysqlPacket(p.seq - 1, p.payload));
      const kind = authPacketKind(p.payload);
      if (kind === 'ok') return { upstream, toClient: secure.detach(), toUpstream: ctx.reader.detach() };
      if (kind === 'err') {
        ctx.client.end();
        upstream.end();
        return undefined;
      }
      if (kind === 'fast-auth-ok') continue;
      const c = await ctx.reader.next<MysqlPacket>(
        takeMysqlPacket,
        ctx.startupTimeoutMs,
        'MySQL authentication data',
      );
      upstream.write(serializeMysqlPacket(c.seq + 1, c.payload));
    }
    throw new MysqlProtocolError('the authentication exchange did not finish');
  } catch (err) {
    socket.destroy();
    if (err instanceof MysqlProtocolError && !ctx.client.destroyed && !ctx.client.writableEnded)
      toClient(0, ER_HANDSHAKE, '08S01', err.message);
    if (!ctx.client.writableEnded && !(err instanceof ProxyError) && !(err instanceof MysqlProtocolError))
      toClient(
        0,
        CR_CONN_HOST_ERROR,
        'HY000',
        `could not open the TLS connection to ${creds.bundle.endpoint}: ${errorMessage(err)}`,
      );
    throw err;
  }
};
