import { BrokerError } from '../errors.js';
import { redact } from '../redact.js';
import { exitCodeOf } from './errors.js';
import { ProxyArgsError, parseProxyArgs } from './proxy-args.js';
import { runProxyDb, runProxyHealthcheck } from './proxy-commands.js';

/**
 * `broker proxy …` on its own: the proxy sidecar's entry point. It reads only the proxy commands' arguments
 * (proxy-args.ts, no command-line library), so a proxy process never loads the authority, the bot, YAML,
 * node-forge, the database drivers or commander (and the AWS SDK only with --secret-id). Arguments and exit
 * codes are those of `broker proxy` (main.ts runCli).
 */
export async function runProxyCli(argv: readonly string[]): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    const call = parseProxyArgs(argv);
    if (call.command === 'help') {
      (call.error ? process.stderr : process.stdout).write(call.text);
      return call.error ? 1 : 0;
    }
    if (call.command === 'healthcheck') await runProxyHealthcheck(call.diagAddr, out);
    else await runProxyDb(call.service, call.options, out);
    return 0;
  } catch (err) {
    // Usage errors quote what was typed, and a secret may have been typed into the wrong argument.
    if (err instanceof ProxyArgsError) {
      process.stderr.write(redact(`${err.message}\n(add --help for usage)\n`));
      return 2;
    }
    const message = err instanceof BrokerError ? err.message : ((err as Error)?.message ?? String(err));
    process.stderr.write(`ERROR: ${redact(message)}\n`);
    return exitCodeOf(err);
  }
}
