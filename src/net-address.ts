/**
 * The one loopback check for every address the broker listens on (the proxy, its diagnostics endpoint and
 * the authority's HTTPS listener). A host is resolved first and accepted only when every address it resolves
 * to is loopback; the listener then binds the address that was checked, never the name again, so DNS cannot
 * answer differently between the check and the bind.
 */
import { lookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { ConfigError } from './config/errors.js';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to every address it has (`dns.lookup` with `all: true`); tests inject a double. */
export type HostResolver = (host: string) => Promise<readonly ResolvedAddress[]>;

// node:dns's callback form: node:net has loaded it already, while dns/promises is two more modules that a
// proxy sidecar would keep in memory for this one call at start.
export const systemResolver: HostResolver = (host) =>
  new Promise((resolve, reject) =>
    lookup(host, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
  );

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * Whether `address` is an IP address in 127.0.0.0/8 or ::1, including IPv4-mapped IPv6 (`::ffff:127.0.0.1`).
 * Names (`localhost`) and text that only looks like an address (`127.1`, `127.0.0.1.example`) are not.
 */
export function isLoopbackIp(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * A DNS host name: letters, digits, `-` and `_` in dot-separated labels, the last one not a number. Refuses
 * what getaddrinfo would read as an IPv4 shorthand (`127.1`, `2130706433`, `0x7f.1`).
 */
function isHostName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  if (!labels.every((l) => /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l))) return false;
  return !/^(\d+|0x[0-9a-f]*)$/i.test(labels[labels.length - 1] as string);
}

export interface ListenCheck {
  /** The flag or setting the address came from, named in the refusal (`--address`, `--diag-addr`). */
  flag: string;
  /** The operator passed the loud override (`--unsafe-listen`): the host is taken as given. */
  unsafe?: boolean;
  /** What a listener reachable from the network would give away, for the refusal. */
  risk?: string;
  /** Default: the system resolver. */
  resolve?: HostResolver;
}

/**
 * The address to bind for `host`: an IP literal as given, or the first address a name resolves to, once every
 * address it resolves to is loopback. Anything else is a ConfigError naming the flag and `--unsafe-listen`,
 * with which `host` is returned unchecked.
 */
export async function loopbackListenHost(host: string, check: ListenCheck): Promise<string> {
  if (check.unsafe) return host;
  const refuse = (shown: string, detail?: string) =>
    new ConfigError(
      `refusing to listen on ${shown} (${[check.flag, detail].filter(Boolean).join(', ')}): not a loopback address; pass --unsafe-listen if you really mean it${check.risk ? ` (${check.risk})` : ''}`,
    );
  if (isIP(host) !== 0) {
    if (isLoopbackIp(host)) return host;
    throw refuse(host);
  }
  if (!isHostName(host)) throw refuse(JSON.stringify(host), 'not an IP address or a host name');
  let resolved: readonly ResolvedAddress[];
  try {
    resolved = await (check.resolve ?? systemResolver)(host);
  } catch (err) {
    throw refuse(host, `cannot be resolved: ${(err as Error)?.message ?? String(err)}`);
  }
  const addresses = resolved.map((r) => r.address);
  const first = addresses[0];
  if (first === undefined || !addresses.every(isLoopbackIp))
    throw refuse(host, `resolves to ${addresses.join(', ') || 'no address'}`);
  return first;
}

/** `host:port` for messages and URLs, with IPv6 addresses in brackets. */
export function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
