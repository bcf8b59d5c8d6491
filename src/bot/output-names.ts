/** How outputs are named in logs and which route each asks for. */
import type { DatabaseRoute } from '../credentials/route.js';
import type { DatabaseOutputConfig } from './config.js';

/** Describes an output for logs: `alice@example-server/example -> directory ./out`. */
export function describeOutput(o: DatabaseOutputConfig): string {
  const dest =
    o.destination.type === 'directory'
      ? o.destination.path
      : o.destination.type === 'secretsmanager'
        ? o.destination.name
        : 'memory';
  return `${o.username}@${o.service}/${o.database ?? ''} -> ${o.destination.type} ${dest}`;
}

/** The route an output asks for; an output without `database` asks for none (the empty name). */
export function routeOf(o: DatabaseOutputConfig): DatabaseRoute {
  return { service: o.service, database: o.database ?? '', username: o.username };
}
