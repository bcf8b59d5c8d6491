/**
 * The sidecar's own argument reader (src/cli/proxy-args.ts) must read `broker proxy …` as the `broker`
 * command (commander, src/cli/proxy-commands.ts) does: the same options from the same arguments, and a
 * usage error where commander gives one.
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { argvFromEnv } from '../../proxy-container/main.js';
import { UsageError } from '../../src/cli/errors.js';
import { ProxyArgsError, parseProxyArgs } from '../../src/cli/proxy-args.js';
import { PROXY_DB_OPTIONS, workersOption } from '../../src/cli/proxy-commands.js';

/** What commander makes of `argv` with the proxy's option table: the service and options, or its error. */
function commanderReads(
  argv: readonly string[],
): { service: string; options: Record<string, unknown> } | 'error' {
  let got: { service: string; options: Record<string, unknown> } | undefined;
  const program = new Command('broker')
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
  const proxy = program.command('proxy').option('--destination-dir <dir>', 'dir').exitOverride();
  const db = proxy.command('db').argument('<service>').exitOverride();
  for (const o of PROXY_DB_OPTIONS) db.option(o.flags, o.description, o.default);
  db.action((service: string, options: Record<string, unknown>) => {
    got = {
      service,
      options: { ...options, destinationDir: options.destinationDir ?? proxy.opts().destinationDir },
    };
  });
  try {
    program.parse(argv as string[], { from: 'user' });
  } catch {
    return 'error';
  }
  return got ?? 'error';
}

function leanReads(argv: readonly string[]): { service: string; options: Record<string, unknown> } | 'error' {
  try {
    const call = parseProxyArgs(argv);
    if (call.command !== 'db') return 'error';
    const options = Object.fromEntries(Object.entries(call.options).filter(([, v]) => v !== undefined));
    return { service: call.service, options: { ...options, destinationDir: call.options.destinationDir } };
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyArgsError);
    expect((err as Error).message).toMatch(/^error: /);
    return 'error';
  }
}

describe('parseProxyArgs reads what commander reads', () => {
  it.each([
    ['proxy', 'db', '--tunnel', '--port', '5433', '--destination-dir', '/out', 'svc'],
    ['proxy', '--destination-dir', '/out', 'db', 'svc', '--port=0', '--unsafe-listen'],
    ['proxy', 'db', '-p', '7000', '--secret-id', 'broker/x', '--diag-addr', '127.0.0.1:9090', 'svc'],
    ['proxy', 'db', '-p7000', '--unix', '/run/x.sock', '--max-connections', '10', 'svc'],
    [
      'proxy',
      'db',
      '--max-sigterm-delay',
      '5s',
      '--idle-timeout',
      '1m',
      '--db-user',
      'alice',
      '--db-name',
      'example',
      'svc',
    ],
    ['proxy', 'db', '--address', '::1', '--port', '-1', 'svc'],
    ['proxy', 'db', '--workers', '4', '--tunnel', 'svc'],
    ['proxy', 'db', '--workers=2', 'svc'],
    ['proxy', 'db', 'svc', '--workers'],
    ['proxy', 'db', '--', '--svc'],
    ['proxy', 'db', '--port'],
    ['proxy', 'db', '--tunnel'],
    ['proxy', 'db', '--nope', 'svc'],
    ['proxy', 'db', 'a', 'b'],
    ['proxy', 'db', '--tunnel=yes', 'svc'],
    ['proxy', 'nope'],
  ])('%j', (...argv) => {
    expect(leanReads(argv)).toEqual(commanderReads(argv));
  });

  it('reads healthcheck and help, and refuses a healthcheck without --diag-addr', () => {
    expect(parseProxyArgs(['proxy', 'healthcheck', '--diag-addr', '127.0.0.1:9090'])).toEqual({
      command: 'healthcheck',
      diagAddr: '127.0.0.1:9090',
    });
    expect(() => parseProxyArgs(['proxy', 'healthcheck'])).toThrow(/required option '--diag-addr/);
    const help = parseProxyArgs(['proxy', 'db', '--help']);
    expect(help.command).toBe('help');
    for (const o of PROXY_DB_OPTIONS) expect(help.command === 'help' && help.text).toContain(o.flags);
  });
});

describe('--workers', () => {
  it('defaults to one event loop, as before the flag', () => {
    const call = parseProxyArgs(['proxy', 'db', '--tunnel', 'svc']);
    expect(call.command === 'db' && call.options.workers).toBe('1');
    expect(workersOption('1')).toBe(1);
  });

  it.each([
    ['2', 2],
    ['64', 64],
    [' 8 ', 8],
  ])('takes %j as %d loops', (text, n) => {
    expect(workersOption(text)).toBe(n);
  });

  it.each(['0', '65', '-1', '1.5', '2e1', 'two', '', '0x2'])(
    'refuses %j as a usage error naming the flag, the value and what is allowed',
    (text) => {
      const err = (() => {
        try {
          return workersOption(text);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toBe(
        `--workers ${JSON.stringify(text)} is not a number of event loops; use a whole number from 1 to 64 (1, the default, is one loop as before)`,
      );
    },
  );

  it('says what an extra loop costs and when it helps, in --help', () => {
    const help = parseProxyArgs(['proxy', 'db', '--help']);
    const text = help.command === 'help' ? help.text : '';
    expect(text).toMatch(/--workers <n>\s+event loops serving connections \(1-64\)/);
    expect(text).toMatch(/10-12 MB more RSS/);
    expect(text).toMatch(/busy with many threads/);
  });

  it('comes from BROKER_PROXY_WORKERS in the container, and is left out when unset', () => {
    const env = { BROKER_BUNDLE_SECRET_ID: 'broker/x', BROKER_SERVICE: 'svc' };
    expect(argvFromEnv({ ...env, BROKER_PROXY_WORKERS: '2' }, [])).toEqual(
      expect.arrayContaining(['--workers', '2']),
    );
    expect(argvFromEnv(env, [])).not.toContain('--workers');
    const call = parseProxyArgs(argvFromEnv({ ...env, BROKER_PROXY_WORKERS: '3' }, []));
    expect(call.command === 'db' && call.options.workers).toBe('3');
  });
});
