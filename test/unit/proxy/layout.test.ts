/**
 * The proxy's shape, checked so it stays true: framing modules are pure (no sockets, no timers: bytes in,
 * messages and decisions out), and only the dialer opens connections to the database or starts TLS, so
 * every path to it takes the current certificate the same way. Reads the sources; runs nothing.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/fixtures.js';

const PROXY = path.join(REPO_ROOT, 'src/proxy');

function sources(dir: string): string[] {
  return readdirSync(path.join(PROXY, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(rel);
    return entry.name.endsWith('.ts') ? [rel] : [];
  });
}

const text = (rel: string) => readFileSync(path.join(PROXY, rel), 'utf8');

describe('src/proxy layout', () => {
  const framing = sources('protocols');

  it('has framing modules to check', () => {
    expect(framing).toEqual(
      expect.arrayContaining([
        'protocols/postgres.ts',
        'protocols/mysql.ts',
        'protocols/mysql-commands.ts',
        'protocols/redis.ts',
        'protocols/redis-auth.ts',
        'protocols/redis-inline.ts',
      ]),
    );
  });

  it.each(framing)('%s is pure framing: no sockets, streams, timers or imports from the proxy', (file) => {
    const source = text(file);
    expect(source).not.toMatch(/from 'node:(net|tls|stream|dgram|http|https|fs|child_process)'/);
    expect(source).not.toMatch(/\b(setTimeout|setInterval|setImmediate|Date\.now|process\.)/);
    expect(source).not.toMatch(/from '\.\.\//);
  });

  it('only the dialer connects to the database or starts TLS', () => {
    const connecting = sources('.').filter((file) =>
      /\b(net|tls)\.connect\(|\bnew tls\.TLSSocket\(/.test(text(file)),
    );
    expect(connecting).toEqual(['dialer.ts']);
  });

  it('tunnels reach the database only through the dialer', () => {
    for (const file of sources('tunnels')) {
      expect(text(file), file).not.toMatch(/import (?!type )[^;]*from 'node:(net|tls)'/);
    }
  });
});
