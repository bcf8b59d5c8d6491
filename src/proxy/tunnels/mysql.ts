import type net from 'node:net';
import { errorMessage } from '../../errors.js';
import { CredentialsUnavailableError } from '../credential-cache.js';
import { ProxyError } from '../errors.js';
import type { LoadedCredentials } from '../loaded-credentials.js';
import { PacketReader } from '../packet-reader.js';
import {
  authPacketKind,
  CLIENT_COMPRESS,
  CLIENT_LOCAL_FILES,
  CLIENT_SSL,
  CLIENT_ZSTD_COMPRESSION_ALGORITHM,
  errPayload,
  type MysqlPacket,
  MysqlProtocolError,
  parseHandshakeResponse,
  parseServerGreeting,
  serializeMysqlPacket,
  sslRequestPayload,
  takeMysqlPacket,
  withClientCapabilities,
  withoutCapabilities,
} from '../protocols/mysql.js';
import { MysqlCommandFramer } from '../protocols/mysql-commands.js';
import { FramedUpstream } from './framed-upstream.js';
import type { TunnelHandler } from './tunnel.js';

/**
 * Capabilities the tunnel does not offer: TLS (it does that upstream itself), compression (command headers
 * would be hidden from the framing) and LOAD DATA LOCAL (the server would read client packets mid-command,
 * where an out-of-order one desynchronises it from the framing).
 */
const COMPRESSION = CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION_ALGORITHM;
const HIDDEN = CLIENT_SSL | CLIENT_LOCAL_FILES | COMPRESSION;

// ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR and ER_HANDSHAKE_ERROR / CR_CONNECTION_ERROR-like codes
// clients show as is.
const ER_DBACCESS_DENIED = 1044;
const ER_ACCESS_DENIED = 1045;
const ER_HANDSHAKE = 1043;
const CR_CONN_HOST_ERROR = 2003;

/**
 * MySQL/MariaDB tunnel. The proxy reads the server greeting, shows it to the client without CLIENT_SSL,
 * reads the client's handshake response, then upgrades the upstream with an SSLRequest (sequence 1) and
 * mutual TLS, and replays the response as sequence 2 with CLIENT_SSL set. Until the server's OK or ERR,
 * sequence ids differ by one between the two legs, so the proxy rewrites them. After that it relays what the
 * server sends as it is, and passes the client's commands through a MysqlCommandFramer (COM_CHANGE_USER and
 * COM_INIT_DB are checked against the certificate's user and the output's database).
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
    ctx.client.write(serializeMysqlPacket(0, withoutCapabilities(greeting.payload, info, HIDDEN)));

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
    const refuse = (errno: number, sqlState: string, message: string) =>
      toClient(responsePacket.seq + 1, errno, sqlState, message);
    if (response.capabilities & COMPRESSION) {
      refuse(
        ER_HANDSHAKE,
        '08S01',
        'the tunnel does not relay compressed connections; connect without compression',
      );
      throw new ProxyError('client asked for compression', 'PROTOCOL');
    }
    const want = creds.bundle.username;
    if (response.username !== want) {
      const message = `the client asked for user "${response.username ?? ''}" but the certificate is for user "${want}"`;
      refuse(ER_ACCESS_DENIED, '28000', message);
      throw new ProxyError(message, 'USER_MISMATCH');
    }
    const wantDb = creds.bundle.database;
    if (wantDb && response.database !== undefined && response.database !== wantDb) {
      const message = `the client asked for database "${response.database}" but the output is for database "${wantDb}"`;
      refuse(ER_DBACCESS_DENIED, '42000', message);
      throw new ProxyError(message, 'DATABASE_MISMATCH');
    }

    const leftover = plain.detach();
    if (leftover.length) throw new MysqlProtocolError('the server sent data before the TLS upgrade');
    const capabilities = (response.capabilities & ~CLIENT_LOCAL_FILES) >>> 0;
    socket.write(serializeMysqlPacket(responsePacket.seq, sslRequestPayload({ ...response, capabilities })));
    const upstream = await ctx.dialer.upgrade(socket, creds);
    upstream.write(
      serializeMysqlPacket(
        responsePacket.seq + 1,
        withClientCapabilities(responsePacket.payload, { set: CLIENT_SSL, clear: CLIENT_LOCAL_FILES }),
      ),
    );

    // Authentication exchange: relay packet by packet, shifting sequence ids by one, until OK or ERR.
    const secure = new PacketReader(upstream);
    for (let i = 0; i < 16; i++) {
      const p = await readServer(secure, 'MySQL authentication result');
      ctx.client.write(serializeMysqlPacket(p.seq - 1, p.payload));
      const kind = authPacketKind(p.payload);
      if (kind === 'ok') {
        const framer = new MysqlCommandFramer({ user: want, database: wantDb, capabilities });
        return {
          upstream: new FramedUpstream({ upstream, client: ctx.client, framer, log: ctx.log }),
          toClient: secure.detach(),
          toUpstream: ctx.reader.detach(),
        };
      }
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
