import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Clock } from '../clock.js';
import { ConfigError } from '../config/errors.js';
import {
  CHALLENGE_HEADER,
  GET_CALLER_IDENTITY_BODY,
  type SignedStsRequest,
  stsHostOf,
} from '../credentials/iam.js';

/** AWS credentials as the SDK resolves them (a role session has a session token). */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/**
 * Builds the proof of the `iam` join method: an `sts:GetCallerIdentity` request to the regional STS endpoint
 * (`.amazonaws.com.cn` in China), SigV4-signed with the bot's AWS credentials, with the authority's challenge
 * in the signed header `x-broker-challenge`. The request is not sent: the authority forwards it to STS, which
 * tells it who signed. The result holds a signature valid for 15 minutes for this one challenge; it is never
 * logged.
 */
export async function signedGetCallerIdentity(input: {
  region: string;
  credentials: AwsCredentials;
  challenge: string;
  clock: Clock;
}): Promise<SignedStsRequest> {
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(input.region))
    throw new ConfigError(`${JSON.stringify(input.region)} is not an AWS region name (e.g. eu-west-1)`);
  const hostname = stsHostOf(input.region);
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'https:',
    hostname,
    path: '/',
    headers: {
      host: hostname,
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      [CHALLENGE_HEADER]: input.challenge,
    },
    body: GET_CALLER_IDENTITY_BODY,
  });
  const signer = new SignatureV4({
    service: 'sts',
    region: input.region,
    credentials: input.credentials,
    sha256: Hash.bind(null, 'sha256'),
  });
  const signed = await signer.sign(request, { signingDate: input.clock.now() });
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) headers[name.toLowerCase()] = value;
  // The authority refuses a request whose challenge is not signed; fail here, where the cause is visible.
  if (!/SignedHeaders=[^,]*\bx-broker-challenge\b/.test(headers.authorization ?? ''))
    throw new Error(`the SigV4 signer did not sign the ${CHALLENGE_HEADER} header`);
  return { method: 'POST', url: `https://${hostname}/`, headers, body: GET_CALLER_IDENTITY_BODY };
}
