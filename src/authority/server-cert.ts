import { isIP } from 'node:net';
import { ConfigError } from '../config/errors.js';
import { BrokerError } from '../errors.js';
import { buildCertificate } from '../pki/certificate.js';
import { publicKeyOfCsr } from '../pki/csr.js';
import { OID_CERT_ROLE } from '../pki/oids.js';
import type { CaRegistry } from './ca-registry.js';
import { type AuthorityContext, withRequestId } from './context.js';
import { assertPublicKey } from './limits.js';

export const DEFAULT_SERVER_CERT_TTL_MS = 2190 * 3_600_000;
const MAX_SERVER_CERT_TTL_MS = 8760 * 3_600_000;

/** What `auth sign --format=db` signs for. */
export interface DatabaseServerOptions {
  /** The database service (a `db` resource name) this server is: it will trust only that service's client CA. */
  service: string;
  /** Validity of the server certificate; default 2190h. */
  ttlMs?: number | undefined;
  /** Correlates the audit line with the caller's request (the Lambda request id in AWS mode). */
  requestId?: string | undefined;
}

/** A server certificate for a key the caller holds: the authority never sees the server's private key. */
export interface SignedDatabaseServerCertificate {
  certificatePem: string;
  /** The client CA bundle of the service (every active key): the database's trust store. */
  clientCaPem: string;
  serial: string;
  expires: string;
}

const LABEL = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

/**
 * An IP address (no zone) or a DNS name of letters, digits and hyphens, with `*` only as the whole leftmost
 * label of a name of three labels or more: every broker client trusts the db-server CA, so a wildcard that
 * covers a top-level domain (or every single-label host) would let one server answer for others.
 */
function isServerHost(host: string): boolean {
  if (isIP(host) !== 0) return !host.includes('%');
  if (host.length > 253) return false;
  const [first, ...rest] = host.split('.');
  if (first === '*') return rest.length >= 2 && rest.every((l) => LABEL.test(l));
  return [first ?? '', ...rest].every((l) => LABEL.test(l));
}

/** Refuses host lists and TTLs `auth sign --format=db` cannot sign, naming the flag to fix. */
export function checkServerCertRequest(hosts: readonly string[], ttlMs: number): void {
  if (hosts.length === 0)
    throw new ConfigError('--host needs one or more host names or IP addresses, comma-separated');
  const bad = hosts.find((h) => !isServerHost(h));
  if (bad !== undefined)
    throw new ConfigError(
      `--host: ${JSON.stringify(bad)} is not a host name or IP address (labels of letters, digits and hyphens; a wildcard only as the first label, as in *.db.example.com)`,
    );
  if (!(ttlMs > 0 && ttlMs <= MAX_SERVER_CERT_TTL_MS))
    throw new ConfigError('server certificate TTL must be between 1s and 8760h');
}

/**
 * The server's key: a public key (the embedded mode, whose key pair is made beside the authority), or a
 * PKCS#10 request signed by the key (AWS mode: the key pair is made on the operator's machine, and the
 * request proves the sender holds its private key). Only the request's public key is used: its subject,
 * names and requested extensions are ignored, the certificate's names are `hosts`.
 */
export type ServerKey =
  | { publicKeyPem: string; csrPem?: undefined }
  | { csrPem: string; publicKeyPem?: undefined };

/**
 * `auth sign --format=db --service S` for a public key or a certificate request: a database server
 * certificate from the db-server CA for `hosts` (plus localhost and 127.0.0.1, so a client verifying through
 * a local proxy succeeds), and the client CA of service S (created when S has none yet), the only CA that
 * database is to trust. Audited, refusals (a request whose signature does not verify included) too.
 */
export async function signDatabaseServerKey(
  ctx: AuthorityContext,
  cas: CaRegistry,
  request: { hosts: readonly string[] } & ServerKey & DatabaseServerOptions,
): Promise<SignedDatabaseServerCertificate> {
  const { hosts, service, ttlMs = DEFAULT_SERVER_CERT_TTL_MS } = request;
  const rid = withRequestId(request.requestId);
  const name = `${service}:${hosts.join(',')}`;
  try {
    checkServerCertRequest(hosts, ttlMs);
    const publicKeyPem =
      request.csrPem !== undefined ? publicKeyOfCsr(request.csrPem) : (request.publicKeyPem as string);
    assertPublicKey(publicKeyPem);
    // First, so a bad service name fails before anything is signed.
    const clientCaPem = await cas.serviceBundle(service);
    const now = ctx.clock.now();
    const sans = [...new Set([...hosts, 'localhost', '127.0.0.1'])];
    const { certificatePem, serial } = await buildCertificate(
      {
        subject: { commonName: hosts[0] as string, organization: 'broker-db-server' },
        publicKeyPem,
        issuedAt: now,
        notAfter: new Date(now.getTime() + ttlMs),
        profile: 'server',
        sans,
        privateExtensions: { [OID_CERT_ROLE]: 'db-server' },
      },
      await cas.issuer('db-server'),
    );
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    await ctx.record({
      event: 'server_cert.issue',
      outcome: 'success',
      kind: 'db-server',
      name: `${service}:${sans.join(',')}`,
      serial,
      expires,
      ...rid,
    });
    return { certificatePem, clientCaPem, serial, expires };
  } catch (err) {
    // A refusal (bad hosts, key or service) or a failed KMS signature is audited too; no message names a secret.
    if (err instanceof BrokerError)
      await ctx.record({
        event: 'server_cert.issue',
        outcome: err.code === 'kms_error' ? 'error' : 'denied',
        kind: 'db-server',
        name,
        reason: err.message,
        ...rid,
      });
    throw err;
  }
}
