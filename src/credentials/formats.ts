/** Output formats and the artifact files each renders, with the reference system's file names. Pure. */
import { joinPemBundle } from './pem.js';

/** `""` (default) | `tls` | `mongo` | `cockroach`, as tbot's `database` output spells them. */
export const OUTPUT_FORMATS = ['', 'tls', 'mongo', 'cockroach'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface DatabaseCredentials {
  certificatePem: string;
  privateKeyPem: string;
  /** CA bundle that verifies the database server. */
  serverCaPem: string;
}

/**
 * Renders a database output in the artifact names of the reference system, so existing client
 * configurations keep working. Every format also gets the default artifacts.
 */
export function renderDatabaseArtifacts(
  format: OutputFormat,
  creds: DatabaseCredentials,
): Record<string, string> {
  const ca = joinPemBundle([creds.serverCaPem]);
  const files: Record<string, string> = {
    tlscert: creds.certificatePem,
    key: creds.privateKeyPem,
    'teleport-host-ca.crt': ca,
    'teleport-database-ca.crt': ca,
  };
  switch (format) {
    case '':
      break;
    case 'tls':
      files['tls.crt'] = creds.certificatePem;
      files['tls.key'] = creds.privateKeyPem;
      files['tls.cas'] = ca;
      break;
    case 'mongo':
      // MongoDB clients take the certificate and its key in one PEM file (tlsCertificateKeyFile).
      // The newline keeps the END and BEGIN lines apart when the certificate PEM lacks a trailing one.
      files['mongo.crt'] = `${creds.certificatePem.trimEnd()}\n${creds.privateKeyPem}`;
      files['mongo.cas'] = ca;
      break;
    case 'cockroach':
      files['cockroach/node.crt'] = creds.certificatePem;
      files['cockroach/node.key'] = creds.privateKeyPem;
      files['cockroach/ca.crt'] = ca;
      break;
  }
  return files;
}
