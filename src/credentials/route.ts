/** The shared vocabulary of what a database certificate is for. Pure: no I/O. */

/** The database protocols the broker issues certificates and tunnels for. */
export const DB_PROTOCOLS = ['postgres', 'cockroachdb', 'mysql', 'mongodb', 'redis'] as const;
export type DbProtocol = (typeof DB_PROTOCOLS)[number];

/** A route: one database user on one database of one database service (a `db` resource). */
export interface DatabaseRoute {
  service: string;
  database: string;
  username: string;
}

/** Splits `host:port` (IPv6 in brackets) into host (without brackets) and port; undefined when it is not one. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const i = text.lastIndexOf(':');
  const host = hostOf(text);
  const port = Number(text.slice(i + 1));
  if (i <= 0 || !host || !/^\d{1,5}$/.test(text.slice(i + 1)) || port <= 0 || port > 65535) return undefined;
  return { host, port };
}

/** The `host:port` rule of a `db` resource's `uri` and a bundle's `endpoint` (DESIGN.md §3). */
export const HOST_PORT_PATTERN = /^(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+):\d{1,5}$/;
export const HOST_PORT_HINT = 'must be host:port, e.g. db.internal:5432';

/** The host part of `host:port`, without the brackets of an IPv6 address. */
export function hostOf(hostPort: string): string {
  return hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
}
