/**
 * PostgreSQL startup-phase framing, pure (no sockets). Before the startup message every packet is an
 * Int32 length (including itself) followed by an Int32 code and a body; see the PostgreSQL docs
 * "Message Formats": SSLRequest, GSSENCRequest, CancelRequest, StartupMessage.
 */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3_0 = 196608;
/** The server's own limit on a startup packet (src/backend/tcop/backend_startup.c: MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10_000;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | { kind: 'startup'; protocol: number; params: Map<string, string> };

export class PostgresProtocolError extends Error {
  override name = 'PostgresProtocolError';
}

/**
 * Splits one startup-phase packet off the front of `buf`. Returns undefined while more bytes are needed;
 * throws PostgresProtocolError on a length no client would send.
 */
export function takeStartupPacket(buf: Buffer): { packet: Buffer; rest: Buffer } | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_PACKET)
    throw new PostgresProtocolError(`invalid startup packet length ${len}`);
  if (buf.length < len) return undefined;
  return { packet: buf.subarray(0, len), rest: buf.subarray(len) };
}

/** Interprets one complete startup-phase packet. */
export function parseStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    const kind = code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc';
    if (packet.length !== 8)
      throw new PostgresProtocolError(
        `${kind === 'ssl' ? 'SSLRequest' : 'GSSENCRequest'} of length ${packet.length}; it is always 8 bytes`,
      );
    return { kind };
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (packet.length < 16) throw new PostgresProtocolError('truncated CancelRequest');
    return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: Buffer.from(packet.subarray(12)) };
  }
  const major = code >>> 16;
  if (major !== 3)
    throw new PostgresProtocolError(
      `unsupported frontend protocol ${major}.${code & 0xffff}: only 3.x is spoken`,
    );
  const params = new Map<string, string>();
  let i = 8;
  for (;;) {
    const end = packet.indexOf(0, i);
    if (end === -1) throw new PostgresProtocolError('StartupMessage is not NUL-terminated');
    if (end === i) break; // the final empty name
    const name = packet.toString('utf8', i, end);
    const vEnd = packet.indexOf(0, end + 1);
    if (vEnd === -1)
      throw new PostgresProtocolError(`StartupMessage parameter ${JSON.stringify(name)} has no value`);
    params.set(name, packet.toString('utf8', end + 1, vEnd));
    i = vEnd + 1;
  }
  if (i !== packet.length - 1)
    throw new PostgresProtocolError('StartupMessage has bytes after its terminator');
  return { kind: 'startup', protocol: code, params };
}

/** Serialises a StartupMessage. */
export function serializeStartup(protocol: number, params: ReadonlyMap<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(protocol, 4);
  return Buffer.concat([head, body]);
}

export function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(SSL_REQUEST_CODE, 4);
  return b;
}

/**
 * Whether a server's answer to an SSLRequest lets TLS start: exactly one 'S'. 'N' is a refusal, and bytes
 * after the 'S' would arrive unencrypted yet be taken as part of the TLS session (CVE-2021-23222), so they
 * are refused too.
 */
export function sslRequestAccepted(answer: Buffer): boolean {
  return answer.length === 1 && answer[0] === 0x53; /* 'S' */
}

export function serializeCancel(processId: number, secretKey: Buffer): Buffer {
  const b = Buffer.alloc(12 + secretKey.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  b.writeInt32BE(processId, 8);
  secretKey.copy(b, 12);
  return b;
}

/**
 * An ErrorResponse ('E') a client shows as is: severity, SQLSTATE code and message
 * (e.g. 28000 invalid_authorization_specification, 08006 connection_failure).
 */
export function errorResponse(fields: {
  severity?: string;
  code: string;
  message: string;
  hint?: string;
}): Buffer {
  const severity = fields.severity ?? 'FATAL';
  const parts = [`S${severity}\0`, `V${severity}\0`, `C${fields.code}\0`, `M${fields.message}\0`];
  if (fields.hint) parts.push(`H${fields.hint}\0`);
  const body = Buffer.from(`${parts.join('')}\0`, 'utf8');
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

export interface StartupPolicy {
  /** The certificate's user. */
  user: string;
  /** The output's database; '' leaves the choice to the client. */
  database: string;
}

export interface StartupRefusal {
  code: 'USER_MISMATCH' | 'DATABASE_MISMATCH';
  sqlState: string;
  message: string;
  hint: string;
}

/**
 * The StartupMessage parameters the tunnel sends for a client's: the certificate's user, and the output's
 * database — a startup naming another user, or another database when the output names one, is refused (the
 * server would take any database the user may connect to); a missing database is the output's.
 */
export function startupParams(
  params: ReadonlyMap<string, string>,
  policy: StartupPolicy,
): { params: Map<string, string> } | { refusal: StartupRefusal } {
  const user = params.get('user');
  if (user !== undefined && user !== policy.user)
    return {
      refusal: {
        code: 'USER_MISMATCH',
        sqlState: '28000',
        message: `broker proxy: the client asked for user "${user}" but the certificate is for user "${policy.user}"`,
        hint: `connect as ${policy.user}`,
      },
    };
  const database = params.get('database');
  if (policy.database && database && database !== policy.database)
    return {
      refusal: {
        code: 'DATABASE_MISMATCH',
        sqlState: '28000',
        message: `broker proxy: the client asked for database "${database}" but the output is for database "${policy.database}"`,
        hint: `connect to database ${policy.database}`,
      },
    };
  const out = new Map(params);
  out.set('user', policy.user);
  if (!database && policy.database) out.set('database', policy.database);
  return { params: out };
}
