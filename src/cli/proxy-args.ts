import { PROXY_DB_HELP_AFTER, PROXY_DB_OPTIONS, type ProxyDbOptions } from './proxy-commands.js';

/**
 * The proxy sidecar's own reading of `broker proxy …` arguments, so that its entry point does not load the
 * command-line library: the same flags (PROXY_DB_OPTIONS, shared with the `broker` command), the same
 * `--flag value`, `--flag=value` and `-p value` forms, and commander's wording for usage errors.
 */

/** A usage error in commander's words (`error: …`); the entry point prints it and exits 2. */
export class ProxyArgsError extends Error {
  override name = 'ProxyArgsError';
}

export type ProxyInvocation =
  | { command: 'db'; service: string; options: ProxyDbOptions }
  | { command: 'healthcheck'; diagAddr: string }
  /** `error`: no command was given; the help goes to stderr and the exit code is 1, as commander does. */
  | { command: 'help'; text: string; error?: boolean };

interface Spec {
  long: string;
  short?: string;
  /** camelCase key, as commander names it. */
  key: string;
  /** `<value>` placeholder, absent for a boolean flag. */
  value?: string;
  flags: string;
  description: string;
  default?: string;
}

function spec(flags: string, description: string, dflt?: string): Spec {
  const m = /^(?:-(\w), )?--([\w-]+)(?: (<[^>]+>))?$/.exec(flags);
  if (!m) throw new Error(`bad option flags ${flags}`);
  const [, short, long, value] = m;
  return {
    long: long as string,
    ...(short ? { short } : {}),
    key: (long as string).replace(/-(\w)/g, (_, c: string) => c.toUpperCase()),
    ...(value ? { value } : {}),
    flags,
    description,
    ...(dflt !== undefined ? { default: dflt } : {}),
  };
}

const DB_SPECS = PROXY_DB_OPTIONS.map((o) => spec(o.flags, o.description, o.default));
const PROXY_SPECS = [
  spec('--destination-dir <dir>', 'directory output the bot writes (as in `tbot proxy --destination-dir`)'),
];
const HEALTH_SPECS = [spec('--diag-addr <host:port>', 'the proxy diagnostics address')];

function help(usage: string, description: string, specs: readonly Spec[], after = ''): string {
  const rows = [...specs.map((s) => [s.flags, s.description, s.default]), ['-h, --help', 'display help']];
  const width = Math.max(...rows.map((r) => (r[0] as string).length));
  const lines = rows.map(
    ([flags, text, d]) =>
      `  ${(flags as string).padEnd(width)}  ${text}${d !== undefined ? ` (default: "${d}")` : ''}`,
  );
  return `Usage: ${usage}\n\n${description}\n\nOptions:\n${lines.join('\n')}\n${after ? `${after}\n` : ''}`;
}

/**
 * Reads options and positional arguments from `args` against `specs`, commander-style: options may come
 * before or after the arguments, `--` ends them. Stops at the first positional when `stopAtCommand`.
 */
function parse(
  args: readonly string[],
  specs: readonly Spec[],
  stopAtCommand: boolean,
): { values: Record<string, string | boolean>; positional: string[]; rest: string[]; help: boolean } {
  const values: Record<string, string | boolean> = {};
  for (const s of specs) if (s.default !== undefined) values[s.key] = s.default;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') return { values, positional, rest: [], help: true };
    if (!arg.startsWith('-') || arg === '-') {
      if (stopAtCommand) return { values, positional: [arg], rest: args.slice(i + 1), help: false };
      positional.push(arg);
      continue;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const s = name.startsWith('--')
      ? specs.find((x) => `--${x.long}` === name)
      : specs.find((x) => x.short !== undefined && name.startsWith(`-${x.short}`));
    if (!s) throw new ProxyArgsError(`error: unknown option '${name}'`);
    if (!s.value) {
      if (eq >= 0) throw new ProxyArgsError(`error: option '${s.flags}' does not take an argument`);
      values[s.key] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (!name.startsWith('--') && name.length > 2) value = name.slice(2);
    else if (i + 1 < args.length) value = args[++i];
    if (value === undefined) throw new ProxyArgsError(`error: option '${s.flags}' argument missing`);
    values[s.key] = value;
  }
  return { values, positional, rest: [], help: false };
}

/** `proxy [--destination-dir DIR] (db [options] SERVICE | healthcheck --diag-addr ADDR)`. */
export function parseProxyArgs(argv: readonly string[]): ProxyInvocation {
  if (argv[0] !== 'proxy')
    throw new ProxyArgsError(
      `error: unknown command '${argv[0] ?? ''}' (this entry point runs only \`proxy\`)`,
    );
  const top = parse(argv.slice(1), PROXY_SPECS, true);
  const proxyHelp = help(
    'broker proxy [options] [command]',
    'local database proxy next to a workload (tbot proxy db)',
    PROXY_SPECS,
    '\nCommands:\n  db [options] <service>  serve a localhost endpoint for one database output\n  healthcheck [options]   exit 0 when the proxy is ready (GET /readyz on --diag-addr)',
  );
  if (top.help) return { command: 'help', text: proxyHelp };
  const [command] = top.positional;
  if (command === 'db') {
    const r = parse(top.rest, DB_SPECS, false);
    if (r.help)
      return {
        command: 'help',
        text: help(
          'broker proxy db [options] <service>',
          'serve a localhost endpoint for one database output',
          DB_SPECS,
          PROXY_DB_HELP_AFTER,
        ),
      };
    if (r.positional.length === 0) throw new ProxyArgsError("error: missing required argument 'service'");
    if (r.positional.length > 1)
      throw new ProxyArgsError(
        `error: too many arguments for 'db'. Expected 1 argument but got ${r.positional.length}.`,
      );
    const options = r.values as unknown as ProxyDbOptions;
    options.destinationDir ??= top.values.destinationDir as string | undefined;
    return { command: 'db', service: r.positional[0] as string, options };
  }
  if (command === 'healthcheck') {
    const r = parse(top.rest, HEALTH_SPECS, false);
    if (r.help)
      return {
        command: 'help',
        text: help('broker proxy healthcheck [options]', 'exit 0 when the proxy is ready', HEALTH_SPECS),
      };
    if (r.positional.length > 0)
      throw new ProxyArgsError(
        `error: too many arguments for 'healthcheck'. Expected 0 arguments but got ${r.positional.length}.`,
      );
    const diagAddr = r.values.diagAddr;
    if (typeof diagAddr !== 'string')
      throw new ProxyArgsError("error: required option '--diag-addr <host:port>' not specified");
    return { command: 'healthcheck', diagAddr };
  }
  if (command === undefined) return { command: 'help', text: proxyHelp, error: true };
  throw new ProxyArgsError(`error: unknown command '${command}'`);
}
