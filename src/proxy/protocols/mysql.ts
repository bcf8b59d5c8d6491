/**
 * MySQL/MariaDB connection-phase framing, pure (no sockets): packets are a 3-byte little-endian payload
 * length, a 1-byte sequence id and the payload (MySQL "Protocol Basics"; MariaDB "Connection").
 */
export const CLIENT_CONNECT_WITH_DB = 0x00000008;
export const CLIENT_COMPRESS = 0x00000020;
export const CLIENT_LOCAL_FILES = 0x00000080;
export const CLIENT_PROTOCOL_41 = 0x00000200;
export const CLIENT_SSL = 0x00000800;
export const CLIENT_SECURE_CONNECTION = 0x00008000;
export const CLIENT_PLUGIN_AUTH = 0x00080000;
export const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x00200000;
export const CLIENT_ZSTD_COMPRESSION_ALGORITHM = 0x04000000;
/** Largest packet accepted during the connection phase; real handshakes are a few hundred bytes. */
export const MAX_HANDSHAKE_PACKET = 64 * 1024;

export interface MysqlPacket {
  seq: number;
  payload: Buffer;
}

export class MysqlProtocolError extends Error {
  override name = 'MysqlProtocolError';
}

/** Splits one packet off the front of `buf`; undefined while more bytes are needed. */
export function takeMysqlPacket(buf: Buffer): { packet: MysqlPacket; rest: Buffer } | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readUIntLE(0, 3);
  if (len > MAX_HANDSHAKE_PACKET)
    throw new MysqlProtocolError(`handshake packet of ${len} bytes is larger than any handshake`);
  if (buf.length < 4 + len) return undefined;
  return {
    packet: { seq: buf[3] as number, payload: Buffer.from(buf.subarray(4, 4 + len)) },
    rest: buf.subarray(4 + len),
  };
}

export function serializeMysqlPacket(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

export interface ServerGreeting {
  serverVersion: string;
  capabilities: number;
  /** Offsets of the two capability halves in the payload, for rewriting them. */
  lowerCapsOffset: number;
  upperCapsOffset: number | undefined;
}

/** Parses a HandshakeV10 payload. Throws MysqlProtocolError when it is not one. */
export function parseServerGreeting(payload: Buffer): ServerGreeting {
  if (payload[0] !== 10) throw new MysqlProtocolError(`unexpected handshake protocol version ${payload[0]}`);
  const versionEnd = payload.indexOf(0, 1);
  if (versionEnd < 0) throw new MysqlProtocolError('server greeting has no version terminator');
  const lowerCapsOffset = versionEnd + 1 + 4 + 8 + 1;
  if (payload.length < lowerCapsOffset + 2) throw new MysqlProtocolError('truncated server greeting');
  let capabilities = payload.readUInt16LE(lowerCapsOffset);
  let upperCapsOffset: number | undefined;
  if (payload.length >= lowerCapsOffset + 2 + 1 + 2 + 2) {
    upperCapsOffset = lowerCapsOffset + 2 + 1 + 2;
    capabilities |= payload.readUInt16LE(upperCapsOffset) << 16;
  }
  return {
    serverVersion: payload.toString('latin1', 1, versionEnd),
    capabilities: capabilities >>> 0,
    lowerCapsOffset,
    upperCapsOffset,
  };
}

/** The greeting with some capability bits cleared (the tunnel hides CLIENT_SSL from its clients). */
export function withoutCapabilities(payload: Buffer, greeting: ServerGreeting, clear: number): Buffer {
  const out = Buffer.from(payload);
  out.writeUInt16LE(
    payload.readUInt16LE(greeting.lowerCapsOffset) & ~clear & 0xffff,
    greeting.lowerCapsOffset,
  );
  if (greeting.upperCapsOffset !== undefined)
    out.writeUInt16LE(
      payload.readUInt16LE(greeting.upperCapsOffset) & ~(clear >>> 16) & 0xffff,
      greeting.upperCapsOffset,
    );
  return out;
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacketSize: number;
  charset: number;
  /**
   * MariaDB's extended capabilities, in the last 4 of the 23 filler bytes (zero from MySQL clients). The
   * server takes them from the SSLRequest, so they must be repeated there (e.g. extended metadata).
   */
  mariadbCapabilities: number;
  /** Undefined for an SSLRequest, which stops after the fixed part. */
  username: string | undefined;
  /** The database asked for (CLIENT_CONNECT_WITH_DB); undefined when there is none or it is empty. */
  database: string | undefined;
  isSslRequest: boolean;
}

/** Parses a client HandshakeResponse41 (or an SSLRequest, its 32-byte prefix). */
export function parseHandshakeResponse(payload: Buffer): HandshakeResponse {
  if (payload.length < 32) throw new MysqlProtocolError('truncated client handshake response');
  const capabilities = payload.readUInt32LE(0);
  if (!(capabilities & CLIENT_PROTOCOL_41))
    throw new MysqlProtocolError('the client does not speak protocol 4.1');
  const base = {
    capabilities,
    maxPacketSize: payload.readUInt32LE(4),
    charset: payload[8] as number,
    mariadbCapabilities: payload.readUInt32LE(28),
  };
  if (payload.length === 32)
    return {
      ...base,
      username: undefined,
      database: undefined,
      isSslRequest: (capabilities & CLIENT_SSL) !== 0,
    };
  const end = payload.indexOf(0, 32);
  if (end < 0) throw new MysqlProtocolError('client handshake response has no user name terminator');
  return {
    ...base,
    username: payload.toString('utf8', 32, end),
    database: handshakeDatabase(payload, capabilities, end + 1),
    isSslRequest: false,
  };
}

/**
 * The database of a handshake response, read as the server reads it (MariaDB sql_acl.cc
 * parse_client_handshake_packet): the auth data is length-encoded, or has a one-byte length, or is
 * NUL-terminated, by capability; the database follows, NUL-terminated or to the end.
 */
function handshakeDatabase(payload: Buffer, capabilities: number, authAt: number): string | undefined {
  if (authAt >= payload.length) return undefined;
  let at: number;
  if (capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
    const n = lengthEncoded(payload, authAt);
    at = n.next + n.value;
  } else if (capabilities & CLIENT_SECURE_CONNECTION) {
    at = authAt + 1 + (payload[authAt] as number);
  } else {
    const end = payload.indexOf(0, authAt);
    at = end < 0 ? payload.length : end + 1;
  }
  if (at > payload.length) throw new MysqlProtocolError('client handshake response auth data is truncated');
  if (!(capabilities & CLIENT_CONNECT_WITH_DB) || at >= payload.length) return undefined;
  const end = payload.indexOf(0, at);
  const name = payload.toString('utf8', at, end < 0 ? payload.length : end);
  return name === '' ? undefined : name;
}

/** A length-encoded integer at `at`: its value and where what it counts starts. */
function lengthEncoded(b: Buffer, at: number): { value: number; next: number } {
  const first = b[at];
  const need = first === 0xfc ? 2 : first === 0xfd ? 3 : first === 0xfe ? 8 : 0;
  if (first === undefined || first === 0xfb || first === 0xff || at + 1 + need > b.length)
    throw new MysqlProtocolError('client handshake response has a bad length-encoded integer');
  if (need === 0) return { value: first, next: at + 1 };
  // An 8-byte length is beyond any payload: the caller finds it overruns.
  const value = need === 8 ? Number.MAX_SAFE_INTEGER : b.readUIntLE(at + 1, need);
  return { value, next: at + 1 + need };
}

/**
 * The SSLRequest payload: the client's capabilities plus CLIENT_SSL, max packet size, charset, 19 zero
 * bytes and the client's MariaDB extended capabilities (zero for MySQL clients).
 */
export function sslRequestPayload(response: HandshakeResponse): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE((response.capabilities | CLIENT_SSL) >>> 0, 0);
  b.writeUInt32LE(response.maxPacketSize, 4);
  b[8] = response.charset;
  b.writeUInt32LE(response.mariadbCapabilities >>> 0, 28);
  return b;
}

/** The client's handshake response with CLIENT_SSL set, as the server expects after an SSLRequest. */
export function withSslCapability(payload: Buffer): Buffer {
  return withClientCapabilities(payload, { set: CLIENT_SSL, clear: 0 });
}

/** The client's handshake response (or SSLRequest) with some capability bits set and others cleared. */
export function withClientCapabilities(payload: Buffer, bits: { set: number; clear: number }): Buffer {
  const out = Buffer.from(payload);
  out.writeUInt32LE(((payload.readUInt32LE(0) | bits.set) & ~bits.clear) >>> 0, 0);
  return out;
}

/** An ERR packet payload: 0xff, error code, '#', SQLSTATE, message. */
export function errPayload(code: number, sqlState: string, message: string): Buffer {
  const head = Buffer.alloc(3);
  head[0] = 0xff;
  head.writeUInt16LE(code, 1);
  return Buffer.concat([head, Buffer.from(`#${sqlState.padEnd(5, '0').slice(0, 5)}${message}`, 'utf8')]);
}

/** What a server packet in the authentication exchange means for the tunnel. */
export function authPacketKind(payload: Buffer): 'ok' | 'err' | 'fast-auth-ok' | 'needs-client' {
  const first = payload[0];
  if (first === 0x00) return 'ok';
  if (first === 0xff) return 'err';
  // AuthMoreData 0x01 0x03: caching_sha2_password fast path succeeded; the OK follows from the server.
  if (first === 0x01 && payload.length === 2 && payload[1] === 0x03) return 'fast-auth-ok';
  return 'needs-client';
}
