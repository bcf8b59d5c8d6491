/**
 * A raw PostgreSQL wire client for the proxy integration tests, for what `pg` cannot send: hand-made startup
 * packets, CancelRequest, garbage.
 */
import net from 'node:net';
import { serializeCancel } from '../../src/proxy/protocols/postgres.js';

export interface PgMessage {
  /** The one-letter message type, e.g. 'R', 'E', 'Z'. */
  type: string;
  body: Buffer;
}

/** A client connection that reads and writes raw bytes. Never throws from socket errors; a close follows. */
export class RawSocket {
  private buf: Buffer = Buffer.alloc(0);
  private closedAt: number | undefined;
  private readonly waiters = new Set<() => void>();
  readonly openedAt = Date.now();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closedAt = Date.now();
      this.wake();
    });
    socket.on('error', () => {
      // 'close' follows and is what the tests look at
    });
  }

  /** Connects to a TCP port on 127.0.0.1, or to a unix socket path. */
  static connect(target: number | string): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const socket =
        typeof target === 'number' ? net.connect({ host: '127.0.0.1', port: target }) : net.connect(target);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawSocket(socket));
      });
      socket.once('error', reject);
    });
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  get closed(): boolean {
    return this.closedAt !== undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const w of waiting) w();
  }

  private async waitFor<T>(take: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = take();
      if (got !== undefined) return got;
      if (this.closedAt !== undefined)
        throw new Error(
          `connection closed while waiting for ${what}; unread bytes: ${JSON.stringify(this.buf.toString('latin1'))}`,
        );
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Exactly `n` bytes. */
  bytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    return this.waitFor(
      () => {
        if (this.buf.length < n) return undefined;
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      },
      timeoutMs,
      `${n} byte(s)`,
    );
  }

  /** One backend message: type byte, Int32 length (including itself), body. */
  message(timeoutMs = 5000): Promise<PgMessage> {
    return this.waitFor(
      () => {
        if (this.buf.length < 5) return undefined;
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) return undefined;
        const msg = { type: String.fromCharCode(this.buf[0] as number), body: this.buf.subarray(5, 1 + len) };
        this.buf = this.buf.subarray(1 + len);
        return msg;
      },
      timeoutMs,
      'a PostgreSQL message',
    );
  }

  /** Waits for the peer to close; resolves with every byte not read yet and when the close came. */
  async closeWithin(timeoutMs: number): Promise<{ data: Buffer; afterMs: number }> {
    await this.waitFor(
      () => (this.closedAt === undefined ? undefined : true),
      timeoutMs,
      'the connection to close',
    ).catch((err: Error) => {
      if (this.closedAt === undefined) throw err;
    });
    return { data: this.buf, afterMs: (this.closedAt as number) - this.openedAt };
  }
}

/** The fields of an ErrorResponse body by their one-letter codes: S severity, C SQLSTATE, M message. */
export function errorFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    fields[String.fromCharCode(body[i] as number)] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return fields;
}

/** A simple Query ('Q') message. */
export function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`, 'utf8');
  const head = Buffer.alloc(5);
  head.write('Q', 0, 'latin1');
  head.writeInt32BE(4 + text.length, 1);
  return Buffer.concat([head, text]);
}

/** The column values of a DataRow ('D') body; null for SQL NULL. */
export function dataRowValues(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const values: (string | null)[] = [];
  let i = 2;
  for (let c = 0; c < n; c++) {
    const len = body.readInt32BE(i);
    i += 4;
    if (len < 0) values.push(null);
    else {
      values.push(body.toString('utf8', i, i + len));
      i += len;
    }
  }
  return values;
}

/** Reads messages up to ReadyForQuery ('Z'); throws with the server's message on an ErrorResponse. */
export async function untilReady(raw: RawSocket, timeoutMs = 5000): Promise<PgMessage[]> {
  const seen: PgMessage[] = [];
  for (;;) {
    const msg = await raw.message(timeoutMs);
    if (msg.type === 'E') throw new Error(errorFields(msg.body).M ?? 'ErrorResponse');
    seen.push(msg);
    if (msg.type === 'Z') return seen;
  }
}

/** Runs one simple query on an authenticated raw connection and returns its rows. */
export async function simpleQuery(raw: RawSocket, sql: string): Promise<(string | null)[][]> {
  raw.write(queryMessage(sql));
  return (await untilReady(raw)).filter((m) => m.type === 'D').map((m) => dataRowValues(m.body));
}

/** A CancelRequest for a backend, with the secret key `pg` keeps as a 32-bit integer. */
export function cancelRequest(processId: number, secretKey: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeInt32BE(secretKey, 0);
  return serializeCancel(processId, key);
}
