/** Why a connection ended, as a stable label for logs and metrics (errno codes mapped in one place). */
export function outcomeOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case undefined:
      return err ? 'error' : 'ok';
    case 'ECONNREFUSED':
      return 'upstream_refused';
    case 'ETIMEDOUT':
    case 'DIAL_TIMEOUT':
      return 'upstream_timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'upstream_dns';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'STARTUP_TIMEOUT':
      return 'client_timeout';
    case 'USER_MISMATCH':
      return 'user_mismatch';
    case 'DATABASE_MISMATCH':
      return 'database_mismatch';
    case 'COMMAND_REFUSED':
      return 'command_refused';
    case 'TLS_REFUSED':
      return 'upstream_tls_refused';
    case 'PROTOCOL':
      return 'protocol_error';
    case 'IDLE_TIMEOUT':
      return 'idle_timeout';
    case 'UPSTREAM_ERR':
      return 'upstream_refused';
    case 'credentials_unavailable':
      return 'no_credentials';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
    case 'CERT_HAS_EXPIRED':
      return 'upstream_cert_invalid';
    default:
      return code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') ? 'tls_error' : 'error';
  }
}
