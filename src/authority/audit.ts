import { promises as fs } from 'node:fs';
import type { DatabaseRoute } from '../credentials/route.js';

/** One audit record. Never holds secrets: no keys, tokens or certificate bodies. */
export interface AuditEvent {
  time: string;
  event: string;
  outcome: 'success' | 'denied' | 'error';
  bot?: string;
  route?: DatabaseRoute;
  /** The roles a certificate request asked for (a subset of the bot's), when it named any. */
  roles?: string[];
  serial?: string;
  reason?: string;
  kind?: string;
  name?: string;
  expires?: string;
  generation?: number;
  requestId?: string;
}

/** Where audit events go: a JSON-lines file (embedded), stdout for CloudWatch (Lambda), memory (tests). */
export interface AuditSink {
  write(event: AuditEvent): Promise<void>;
}

/** Appends JSON lines to a file (mode 0600). Each line is written with one append, so lines never interleave. */
export class FileAuditLog implements AuditSink {
  constructor(readonly file: string) {}
  async write(event: AuditEvent): Promise<void> {
    await fs.appendFile(this.file, `${JSON.stringify(event)}\n`, { mode: 0o600 });
  }
}

export class MemoryAuditLog implements AuditSink {
  readonly events: AuditEvent[] = [];
  async write(event: AuditEvent): Promise<void> {
    this.events.push(event);
  }
}

/** Reads a JSON-lines audit file, newest last; skips lines that do not parse. */
export async function readAuditLog(file: string): Promise<AuditEvent[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: AuditEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as AuditEvent);
    } catch {
      // A torn last line after a crash is not worth failing a read over.
    }
  }
  return out;
}
