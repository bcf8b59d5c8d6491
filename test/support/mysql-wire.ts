/**
 * A MySQL client at the packet level, for tests that must send what no client library sends: packets with
 * chosen sequence ids, packets inside packets, commands a library would refuse. It speaks just enough of the
 * protocol for a certificate login through the tunnel (no TLS, empty password).
 */
import net from 'node:net';

export interface WirePacket {
  seq: number;
  payload: Buffer;
}

/** A packet: 3-byte length, sequence id, payload. */
export function mysqlPacket(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

export const COM_QUERY = 0x03;
export const COM_INIT_DB = 0x02;
export const COM_CHANGE_USER = 0x11;

/** CLIENT_LONG_PASSWORD, FOUND_ROWS, CONNECT_WITH_DB, LOCAL_FILES, PROTOCOL_41, SECURE_CONNECTION, MULTI_*, PLUGIN_AUTH. */
export const WIRE_CAPS = 0x1 | 0x2 | 0x8 | 0x80 | 0x200 | 0x8000 | 0x10000 | 0x20000 | 0x80000;
const UTF8MB4 = 45;

export const query = (sql: string): Buffer => Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from(sql)]);

/** A COM_CHANGE_USER payload: user, empty auth data, schema, charset and the client's plugin name. */
export function changeUser(user: string, schema: string, plugin = 'mysql_native_password'): Buffer {
  return Buffer.concat([
    Buffer.from([COM_CHANGE_USER]),
    Buffer.from(`${user}\0`),
    Buffer.from([0]),
    Buffer.from(`${schema}\0`),
    Buffer.from([UTF8MB4, 0]),
    Buffer.from(`${plugin}\0`),
  ]);
}

/** ERR packet text (after the SQL state), or the payload as printable text. */
export function describePacket(p: WirePacket): string {
  if (p.payload[0] === 0xff) return `ERR ${p.payload.readUInt16LE(1)} ${p.payload.toString('utf8', 9)}`;
  return `${p.seq}:${p.payload.toString('latin1').replace(/[^\x20-\x7e]/g, '.')}`;
}

export class MysqlWire {
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static connect(port: number): Promise<MysqlWire> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new MysqlWire(s)));
      s.once('error', reject);
    });
  }

  /** Logs in as `user` with an empty password through the tunnel; returns the server's answer. */
  static async login(
    port: number,
    user: string,
    database: string,
    capabilities = WIRE_CAPS,
  ): Promise<{ wire: MysqlWire; result: WirePacket }> {
    const wire = await MysqlWire.connect(port);
    await wire.next();
    const head = Buffer.alloc(32);
    head.writeUInt32LE(capabilities >>> 0, 0);
    head.writeUInt32LE(1 << 24, 4);
    head[8] = UTF8MB4;
    wire.send(
      1,
      Buffer.concat([
        head,
        Buffer.from(`${user}\0`),
        Buffer.from([0]),
        Buffer.from(`${database}\0`),
        Buffer.from('mysql_native_password\0'),
      ]),
    );
    const result = await wire.next();
    if (!result) throw new Error('the tunnel closed the connection during the login');
    return { wire, result };
  }

  send(seq: number, payload: Buffer): void {
    this.socket.write(mysqlPacket(seq, payload));
  }

  /** The next packet, or undefined when the connection closed or nothing came within `ms`. */
  async next(ms = 3_000): Promise<WirePacket | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 4) {
        const len = this.buf.readUIntLE(0, 3);
        if (this.buf.length >= 4 + len) {
          const packet = { seq: this.buf[3] as number, payload: Buffer.from(this.buf.subarray(4, 4 + len)) };
          this.buf = this.buf.subarray(4 + len);
          return packet;
        }
      }
      const left = deadline - Date.now();
      if (this.closed || left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Every packet until the connection closes or stays quiet for `quietMs`. */
  async drain(quietMs = 1_500): Promise<WirePacket[]> {
    const out: WirePacket[] = [];
    for (;;) {
      const p = await this.next(quietMs);
      if (!p) return out;
      out.push(p);
    }
  }

  /** Resolves once the other side closed the connection (false after `ms`). */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await this.drain(Math.min(200, deadline - Date.now()));
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
