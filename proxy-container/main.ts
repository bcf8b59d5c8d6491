import { runProxyCli } from '../src/cli/proxy-main.js';

/**
 * Entry point of the proxy sidecar container. It is `broker proxy db` configured by environment, since ECS
 * task definitions set environment variables, not arguments:
 *
 *   BROKER_BUNDLE_SECRET_ID  the output's Secrets Manager secret (required)
 *   BROKER_SERVICE           the database service of the output (required)
 *   BROKER_PROXY_PORT        TCP port on 127.0.0.1 (default 5432) — or BROKER_PROXY_UNIX_SOCKET, a path
 *   BROKER_PROXY_TUNNEL      "true" (default) to attach the certificate; "false" for non-tunnel
 *   BROKER_DIAG_ADDR         /livez, /readyz, /metrics (default 127.0.0.1:9090)
 *   BROKER_MAX_CONNECTIONS   default 0 (unlimited)
 *   BROKER_MAX_SIGTERM_DELAY default 25s (fits the ECS 30 s stop timeout)
 *   BROKER_PROXY_WORKERS     event loops (--workers), default 1; 2 or more when the task's CPU is busy
 *                            with many threads (e.g. a database beside it) — each extra loop costs memory
 *
 * `proxy.mjs healthcheck` is the container health check: exit 0 when /readyz answers 200. Other arguments
 * are taken as those of `broker proxy` (e.g. `proxy.mjs db --tunnel --destination-dir DIR SERVICE`), so the
 * same bundle runs outside a container too. It loads only the proxy (src/cli/proxy-main.ts).
 *
 * The V8 flags that fit a small sidecar are in node-flags.ts.
 */

/** `broker proxy` arguments from the container's environment, or from its own arguments when it has any. */
export function argvFromEnv(env: NodeJS.ProcessEnv, args: readonly string[]): string[] {
  const diag = env.BROKER_DIAG_ADDR ?? '127.0.0.1:9090';
  if (args[0] === 'healthcheck') return ['proxy', 'healthcheck', '--diag-addr', diag];
  if (args.length > 0) return ['proxy', ...args];
  const argv = ['proxy', 'db', '--diag-addr', diag];
  if (env.BROKER_BUNDLE_SECRET_ID) argv.push('--secret-id', env.BROKER_BUNDLE_SECRET_ID);
  if (env.BROKER_PROXY_UNIX_SOCKET) argv.push('--unix', env.BROKER_PROXY_UNIX_SOCKET);
  else argv.push('--port', env.BROKER_PROXY_PORT ?? '5432');
  if ((env.BROKER_PROXY_TUNNEL ?? 'true') === 'true') argv.push('--tunnel');
  if (env.BROKER_MAX_CONNECTIONS) argv.push('--max-connections', env.BROKER_MAX_CONNECTIONS);
  if (env.BROKER_PROXY_WORKERS) argv.push('--workers', env.BROKER_PROXY_WORKERS);
  argv.push('--max-sigterm-delay', env.BROKER_MAX_SIGTERM_DELAY ?? '25s');
  argv.push(env.BROKER_SERVICE ?? '');
  return argv;
}

if (process.argv[1] && /proxy\.m?js$/.test(process.argv[1])) {
  runProxyCli(argvFromEnv(process.env, process.argv.slice(2))).then((code) => {
    process.exitCode = code;
  });
}
