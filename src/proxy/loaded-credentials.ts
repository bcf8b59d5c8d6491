import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import {
  type CredentialBundle,
  checkBundleKeyPair,
  splitEndpoint,
  validateBundleShape,
} from '../credentials/bundle.js';

/** A validated bundle with everything a connection needs, parsed once. */
export interface LoadedCredentials {
  bundle: CredentialBundle;
  serial: string;
  expiresAt: Date;
  certificatePem: string;
  keyPem: string;
  /** CA bundle that verifies the database server. */
  caPem: string;
  host: string;
  port: number;
  /** Secure context for upstream mutual TLS, built once per bundle. */
  secureContext: tls.SecureContext;
}

/**
 * Checks a bundle with the one bundle validation (schema, certificate parses, key matches it, serial is the
 * certificate's, endpoint is host:port) and prepares what every connection needs.
 */
export function loadCredentials(bundle: CredentialBundle): LoadedCredentials {
  const valid = validateBundleShape(bundle);
  checkBundleKeyPair(valid);
  const { host, port } = splitEndpoint(valid.endpoint);
  const certificatePem = valid.files.tlscert as string;
  const keyPem = valid.files.key as string;
  const caPem = valid.files['teleport-host-ca.crt'] as string;
  return {
    bundle,
    serial: valid.serial,
    expiresAt: new Date(new X509Certificate(certificatePem).validTo),
    certificatePem,
    keyPem,
    caPem,
    host,
    port,
    secureContext: tls.createSecureContext({
      cert: certificatePem,
      key: keyPem,
      ca: caPem,
      minVersion: 'TLSv1.2',
    }),
  };
}
