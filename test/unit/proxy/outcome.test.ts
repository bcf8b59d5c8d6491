import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../../src/errors.js';
import { CredentialsUnavailableError } from '../../../src/proxy/credential-cache.js';
import { ProxyError } from '../../../src/proxy/errors.js';
import { outcomeOf } from '../../../src/proxy/outcome.js';
import { PostgresProtocolError } from '../../../src/proxy/protocols/postgres.js';

const errno = (code: string) => Object.assign(new Error(code), { code });

describe('outcomeOf', () => {
  it.each([
    [undefined, 'ok'],
    [null, 'ok'],
    [new Error('plain'), 'error'],
    [errno('ECONNREFUSED'), 'upstream_refused'],
    [errno('ETIMEDOUT'), 'upstream_timeout'],
    [new ProxyError('dial', 'DIAL_TIMEOUT'), 'upstream_timeout'],
    [errno('ENOTFOUND'), 'upstream_dns'],
    [errno('EAI_AGAIN'), 'upstream_dns'],
    [errno('ECONNRESET'), 'reset'],
    [errno('EPIPE'), 'reset'],
    [new ProxyError('startup', 'STARTUP_TIMEOUT'), 'client_timeout'],
    [new ProxyError('user', 'USER_MISMATCH'), 'user_mismatch'],
    [new ProxyError('database', 'DATABASE_MISMATCH'), 'database_mismatch'],
    [new ProxyError('command', 'COMMAND_REFUSED'), 'command_refused'],
    [new ProxyError('tls', 'TLS_REFUSED'), 'upstream_tls_refused'],
    [new ProxyError('protocol', 'PROTOCOL'), 'protocol_error'],
    [new ProxyError('idle', 'IDLE_TIMEOUT'), 'idle_timeout'],
    [new ProxyError('err', 'UPSTREAM_ERR'), 'upstream_refused'],
    [new CredentialsUnavailableError('none'), 'no_credentials'],
    [errno('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'upstream_cert_invalid'],
    [errno('SELF_SIGNED_CERT_IN_CHAIN'), 'upstream_cert_invalid'],
    [errno('DEPTH_ZERO_SELF_SIGNED_CERT'), 'upstream_cert_invalid'],
    [errno('ERR_TLS_CERT_ALTNAME_INVALID'), 'upstream_cert_invalid'],
    [errno('CERT_HAS_EXPIRED'), 'upstream_cert_invalid'],
    [errno('ERR_SSL_WRONG_VERSION_NUMBER'), 'tls_error'],
    [errno('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), 'tls_error'],
    [errno('ERR_TLS_HANDSHAKE_TIMEOUT'), 'tls_error'],
    [errno('EHOSTUNREACH'), 'error'],
    [new BrokerError('bad_bundle', 'x'), 'error'],
    // Parse errors carry no code: they are plain errors unless a handler maps them.
    [new PostgresProtocolError('bad'), 'error'],
  ])('%s → %s', (err, outcome) => {
    expect(outcomeOf(err)).toBe(outcome);
  });
});
