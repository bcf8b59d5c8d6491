/**
 * MySQL/MariaDB command-phase framing, pure: what the tunnel does with every packet a client sends after
 * authentication. It reads the 4-byte header of each packet and the command byte of each command, and passes
 * the bytes of relayed commands on as the chunks they came in (it holds no payload it relays). It holds only
 * COM_CHANGE_USER and COM_INIT_DB, and decides:
 *
 * - COM_CHANGE_USER to another user than the certificate's is refused; to the certificate's user it is sent
 *   as COM_RESET_CONNECTION, which resets the session the same way but has no authentication exchange. The
 *   exchange is what must never reach the server: MariaDB answers an out-of-order reply in it with an error
 *   and keeps the session, having read only that packet's header, so its payload is read as the next command
 *   — a command this framing would have seen as data.
 * - COM_INIT_DB (the CLI's `use`) to another database than the output's is refused.
 * - A command packet must have sequence id 0 (the server closes the connection otherwise) and a command byte
 *   clients send; anything else is refused.
 *
 * The tunnel also keeps CLIENT_LOCAL_FILES from the server (LOAD DATA LOCAL is the other exchange in which the
 * server reads client packets mid-command) and refuses compression (the headers would be hidden).
 */
import { type Refusal, type RefusalCode, relayRun, shown } from './framing.js';
import { CLIENT_SECURE_CONNECTION, errPayload, serializeMysqlPacket } from './mysql.js';

export const COM_INIT_DB = 0x02;
export const COM_CHANGE_USER = 0x11;
export const COM_RESET_CONNECTION = 0x1f;
/** A packet of this payload length continues in the next packet. */
const CONTINUED = 0xffffff;
/** Largest COM_CHANGE_USER or COM_INIT_DB held for inspection; real ones are a few hundred bytes. */
export const MAX_INSPECTED_COMMAND = 64 * 1024;

/**
 * Commands relayed as they are (MySQL 8.4 and MariaDB 11 command lists, less what is held or refused):
 * QUIT, QUERY, FIELD_LIST, CREATE_DB, DROP_DB, REFRESH, SHUTDOWN, STATISTICS, PROCESS_INFO, PROCESS_KILL,
 * DEBUG, PING, BINLOG_DUMP, REGISTER_SLAVE, STMT_PREPARE, STMT_EXECUTE, STMT_SEND_LONG_DATA, STMT_CLOSE,
 * STMT_RESET, SET_OPTION, STMT_FETCH, BINLOG_DUMP_GTID, RESET_CONNECTION and MariaDB's STMT_BULK_EXECUTE.
 * Not relayed: MariaDB's COM_MULTI (it carries other commands, COM_CHANGE_USER among them), MySQL's COM_CLONE
 * and group replication stream, and the commands only servers send to themselves.
 */
const RELAYED = new Set([
  0x01,
  0x03,
  0x04,
  0x05,
  0x06,
  0x07,
  0x08,
  0x09,
  0x0a,
  0x0c,
  0x0d,
  0x0e,
  0x12,
  0x15,
  0x16,
  0x17,
  0x18,
  0x19,
  0x1a,
  0x1b,
  0x1c,
  0x1e,
  COM_RESET_CONNECTION,
  0xfa,
]);

// Error codes clients show as is.
const ER_DBACCESS_DENIED = 1044;
const ER_ACCESS_DENIED = 1045;
const ER_UNKNOWN_COM = 1047;
const ER_NET_PACKETS_OUT_OF_ORDER = 1156;

export interface MysqlSessionPolicy {
  /** The certificate's user. */
  user: string;
  /** The output's database; '' lets the client choose. */
  database: string;
  /** The capabilities the client logged in with (COM_CHANGE_USER's layout depends on them). */
  capabilities: number;
}

export interface ChangeUserRequest {
  user: string;
  /** '' when the client names none. */
  database: string;
}

/**
 * The user and database of a COM_CHANGE_USER payload (command byte included), as MariaDB reads them
 * (sql_acl.cc parse_com_change_user_packet); undefined when the user name is not terminated.
 */
export function parseChangeUser(payload: Buffer, capabilities: number): ChangeUserRequest | undefined {
  const userEnd = payload.indexOf(0, 1);
  if (userEnd < 0) return undefined;
  const user = payload.toString('utf8', 1, userEnd);
  let at = userEnd + 1;
  if (at < payload.length) {
    if (capabilities & CLIENT_SECURE_CONNECTION) at += 1 + (payload[at] as number);
    else {
      const end = payload.indexOf(0, at);
      at = end < 0 ? payload.length : end + 1;
    }
  }
  if (at >= payload.length) return { user, database: '' };
  const end = payload.indexOf(0, at);
  return { user, database: payload.toString('utf8', at, end < 0 ? payload.length : end) };
}

/** The command packet that replaces an allowed COM_CHANGE_USER. */
export function resetConnectionPacket(): Buffer {
  return serializeMysqlPacket(0, Buffer.from([COM_RESET_CONNECTION]));
}

function refusal(code: RefusalCode, err: { errno: number; sqlState: string; message: string }): Refusal {
  const message = `broker proxy: ${err.message}`;
  // The answer to a command is sequence id 1.
  return { code, message, reply: serializeMysqlPacket(1, errPayload(err.errno, err.sqlState, message)) };
}

const commandRefusal = (message: string, errno = ER_UNKNOWN_COM) =>
  refusal('COMMAND_REFUSED', { errno, sqlState: '08S01', message });

function databaseRefusal(asked: string, want: string): Refusal {
  return refusal('DATABASE_MISMATCH', {
    errno: ER_DBACCESS_DENIED,
    sqlState: '42000',
    message: `the client asked for database ${shown(asked)} but the output is for database ${shown(want)}`,
  });
}

/**
 * What to do with a held command packet (header included): relay it, send another packet instead, or refuse.
 */
export function inspectCommand(packet: Buffer, policy: MysqlSessionPolicy): Buffer | Refusal {
  const payload = packet.subarray(4);
  if (payload[0] === COM_INIT_DB) {
    const asked = payload.subarray(1);
    if (policy.database && !asked.equals(Buffer.from(policy.database, 'utf8')))
      return databaseRefusal(asked.toString('utf8'), policy.database);
    return packet;
  }
  const change = parseChangeUser(payload, policy.capabilities);
  if (!change) return commandRefusal('a COM_CHANGE_USER without a terminated user name');
  if (change.user !== policy.user)
    return refusal('USER_MISMATCH', {
      errno: ER_ACCESS_DENIED,
      sqlState: '28000',
      message: `the client asked to change to user ${shown(change.user)} but the certificate is for user ${shown(policy.user)}`,
    });
  if (policy.database && change.database && change.database !== policy.database)
    return databaseRefusal(change.database, policy.database);
  return resetConnectionPacket();
}

/** Per command byte: refused (0), relayed as it is, or held for inspection. */
const RELAY = 1;
const HOLD = 2;
const KIND = new Uint8Array(256);
for (const command of RELAYED) KIND[command] = RELAY;
KIND[COM_INIT_DB] = HOLD;
KIND[COM_CHANGE_USER] = HOLD;

/** What the header (and command byte) of the packet being read says to do. */
type Verdict = 'pass' | 'hold' | Refusal | undefined;

/**
 * Frames the client's side of a MySQL connection after authentication. Each `push` returns the bytes to
 * relay: the chunk itself when it holds only relayed commands (or slices of it around a held command).
 */
export class MysqlCommandFramer {
  /** The header and command byte of the packet being read, until its verdict. */
  private readonly prefix = Buffer.alloc(5);
  private prefixLen = 0;
  /** How many bytes of `prefix` came in earlier chunks (and were not relayed yet). */
  private carried = 0;
  private payloadLen = 0;
  /** Whether the next packet continues a packet of CONTINUED bytes (it is then no command). */
  private continues = false;
  /** Payload bytes of the current relayed packet still to come. */
  private left = 0;
  private held: Buffer | undefined;
  private heldLen = 0;
  private refused = false;

  constructor(private readonly policy: MysqlSessionPolicy) {}

  push(chunk: Buffer): { forward: Buffer[]; refusal?: Refusal } {
    const forward: Buffer[] = [];
    if (this.refused) return { forward };
    const n = chunk.length;
    let i = 0;
    let runStart = 0;
    while (i < n) {
      if (this.left > 0) {
        const k = Math.min(n - i, this.left);
        i += k;
        this.left -= k;
        continue;
      }
      if (this.prefixLen === 0 && !this.held && n - i >= 5) {
        // The common case: a whole header and command byte in this chunk, of a packet that is relayed.
        const len = (chunk[i] as number) | ((chunk[i + 1] as number) << 8) | ((chunk[i + 2] as number) << 16);
        if (this.continues) {
          this.continues = len === CONTINUED;
          this.left = len;
          i += 4;
          continue;
        }
        if (chunk[i + 3] === 0 && len > 0 && KIND[chunk[i + 4] as number] === RELAY) {
          this.continues = len === CONTINUED;
          this.left = len - 1;
          i += 5;
          continue;
        }
      }
      if (this.held) {
        const k = Math.min(this.held.length - this.heldLen, n - i);
        chunk.copy(this.held, this.heldLen, i, i + k);
        this.heldLen += k;
        i += k;
        if (this.heldLen < this.held.length) continue;
        const refused = this.release(forward);
        if (refused) return this.refuse(forward, refused);
        runStart = i;
        continue;
      }
      this.prefix[this.prefixLen++] = chunk[i++] as number;
      const verdict = this.verdict();
      if (verdict === undefined) continue;
      const carried = this.carried;
      const prefixStart = i - (this.prefixLen - carried);
      this.carried = 0;
      if (verdict === 'pass') {
        // A prefix begun in an earlier chunk was kept back; nothing of this chunk precedes it.
        if (carried > 0) forward.push(Buffer.from(this.prefix.subarray(0, carried)));
        this.left = this.payloadLen - (this.prefixLen - 4);
        this.prefixLen = 0;
        continue;
      }
      relayRun(forward, chunk, runStart, prefixStart);
      if (verdict !== 'hold') return this.refuse(forward, verdict);
      this.held = Buffer.alloc(4 + this.payloadLen);
      this.prefix.copy(this.held, 0, 0, this.prefixLen);
      this.heldLen = this.prefixLen;
      this.prefixLen = 0;
      if (this.heldLen === this.held.length) {
        const refused = this.release(forward);
        if (refused) return this.refuse(forward, refused);
        runStart = i;
      }
    }
    if (this.held) {
      // The run ended where the held packet began (or the whole chunk is held).
    } else if (this.prefixLen > 0) {
      // Keep back the start of a packet whose verdict needs the next chunk.
      relayRun(forward, chunk, runStart, n - (this.prefixLen - this.carried));
      this.carried = this.prefixLen;
    } else relayRun(forward, chunk, runStart, n);
    return { forward };
  }

  /** Decides on the complete held packet: relays it (or its replacement), or returns the refusal. */
  private release(forward: Buffer[]): Refusal | undefined {
    const decided = inspectCommand(this.held as Buffer, this.policy);
    this.held = undefined;
    if (!Buffer.isBuffer(decided)) return decided;
    forward.push(decided);
    return undefined;
  }

  private refuse(forward: Buffer[], refusal: Refusal): { forward: Buffer[]; refusal: Refusal } {
    this.refused = true;
    return { forward, refusal };
  }

  private verdict(): Verdict {
    if (this.prefixLen < 4) return undefined;
    if (this.prefixLen === 4) {
      this.payloadLen = this.prefix.readUIntLE(0, 3);
      const continuation = this.continues;
      this.continues = this.payloadLen === CONTINUED;
      if (continuation) return 'pass';
      const seq = this.prefix[3] as number;
      if (seq !== 0)
        return commandRefusal(
          `a command packet with sequence id ${seq}: commands start at 0`,
          ER_NET_PACKETS_OUT_OF_ORDER,
        );
      if (this.payloadLen === 0) return commandRefusal('an empty command packet');
      return undefined;
    }
    const command = this.prefix[4] as number;
    if (KIND[command] === HOLD) {
      if (this.payloadLen > MAX_INSPECTED_COMMAND)
        return commandRefusal(
          `a ${this.payloadLen}-byte ${command === COM_INIT_DB ? 'COM_INIT_DB' : 'COM_CHANGE_USER'}`,
        );
      return 'hold';
    }
    if (KIND[command] === RELAY) return 'pass';
    return commandRefusal(`command 0x${command.toString(16).padStart(2, '0')} is not relayed by the tunnel`);
  }
}
