import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces, hostname as osHostname } from 'node:os';
import { ConfigError } from '../config/errors.js';
import { OID_CERT_ROLE } from './oids.js';
import { caPin, parseCertificate } from './parse.js';

/**
 * The authority's serving certificate, and how a bot recognises it.
 *
 * The bot CA signs both bot identities and the authority's HTTPS certificate, and bots pin that CA
 * (`ca_pins`). A pin alone would let any bot serve its own identity as the authority, so a bot also checks
 * what Teleport clients check of a server certificate signed by the host CA they pin: the certificate is
 * a server certificate (extended key usage serverAuth) for the host the bot dials (a SAN, never the CN). On
 * top of that it must carry the broker's role extension `authority-server` and no clientAuth usage. Bot
 * identities are issued `bot-identity`, clientAuth only, from a public key alone: a bot cannot choose
 * either, so no identity can pass. The same CA keeps every existing `ca_pins` valid; a dedicated CA would
 * have made every bot configuration's pin change at once.
 */
export const AUTHORITY_SERVER_ROLE = 'authority-server';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** What a bot expects of the authority it dials. */
export interface ExpectedAuthority {
  /** `sha256:<hex>` pins of the CAs that may sign the authority's certificate (`ca_pins`). */
  pins: readonly string[];
  /** The host of `auth_server`: a DNS name or an IP address (no brackets). */
  host: string;
  now: Date;
}

/**
 * Returns why `leaf` (with the certificates the server sent after it) is not the authority's serving
 * certificate for `expected.host`, or undefined when it is.
 */
export function checkAuthorityCertificate(
  leaf: X509Certificate,
  chain: readonly X509Certificate[],
  expected: ExpectedAuthority,
): string | undefined {
  if (new Date(leaf.validTo) < expected.now || new Date(leaf.validFrom) > expected.now)
    return 'the authority certificate is outside its validity period';
  const signedByPin = chain.some(
    (ca) =>
      ca.ca &&
      expected.pins.includes(caPin(ca.toString())) &&
      leaf.checkIssued(ca) &&
      leaf.verify(ca.publicKey),
  );
  if (!signedByPin)
    return 'the authority certificate is not signed by a CA matching ca_pins (check `broker status` on the authority)';
  const usages = leaf.keyUsage ?? [];
  const role = parseCertificate(leaf.toString()).privateExtensions[OID_CERT_ROLE];
  if (
    leaf.ca ||
    !usages.includes(SERVER_AUTH) ||
    usages.includes(CLIENT_AUTH) ||
    role !== AUTHORITY_SERVER_ROLE
  )
    return `the server presented a certificate from the pinned CA that is not the authority's serving certificate (role ${role ?? 'none'}, usages ${usages.join(',') || 'none'}; expected ${AUTHORITY_SERVER_ROLE} with serverAuth only): a bot identity or another certificate posing as the authority`;
  const named = isIP(expected.host)
    ? leaf.checkIP(expected.host)
    : leaf.checkHost(expected.host, { subject: 'never' });
  if (!named)
    return `the authority certificate is not for ${expected.host} (it names ${leaf.subjectAltName ?? 'nothing'}); start the authority with --public-addr ${expected.host}, or point auth_server at a name it has`;
  return undefined;
}

const NAME =
  /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;

/**
 * The names the authority's serving certificate carries when it listens on `listenHost`: the loopback
 * names, the listen address itself, every `publicAddrs` name (as Teleport's `public_addr`), and, when it
 * listens on every address (`0.0.0.0`, `::`), this host's name and interface addresses, so a bot dialling
 * any of them finds its name in the certificate.
 */
export function authorityServerNames(listenHost: string, publicAddrs: readonly string[] = []): string[] {
  const bad = publicAddrs.find((h) => isIP(h) === 0 && !NAME.test(h));
  if (bad !== undefined)
    throw new ConfigError(
      `--public-addr ${JSON.stringify(bad)}: expected host names or IP addresses, without ports`,
    );
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  const local = wildcard
    ? [
        osHostname(),
        ...Object.values(networkInterfaces())
          .flat()
          .map((a) => a?.address ?? ''),
      ]
    : [listenHost];
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...local, ...publicAddrs])];
  // Link-local IPv6 addresses carry a zone (fe80::1%eth0) that no certificate can name.
  return names.filter((h) => h !== '0.0.0.0' && h !== '::' && (isIP(h) !== 0 || NAME.test(h)));
}
