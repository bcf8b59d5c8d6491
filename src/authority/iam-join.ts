import { timingSafeEqual } from 'node:crypto';
import {
  CHALLENGE_HEADER,
  GET_CALLER_IDENTITY_BODY,
  type SignedStsRequest,
  stsHostOf,
} from '../credentials/iam.js';
import { AccessDeniedError, BrokerError } from '../errors.js';

/**
 * Verification of the `iam` join method, as Teleport and Vault do it: the bot signs an
 * `sts:GetCallerIdentity` request with its AWS credentials, binding the authority's challenge into a signed
 * header, and hands the signed request over instead of sending it. The authority checks that the request
 * can only ever be that call to AWS STS, forwards it unchanged, and believes whatever identity STS answers
 * with: only STS can check a SigV4 signature, and only a holder of the credentials can make one.
 */

/**
 * Regions whose STS endpoint the authority accepts (`stsHostOf`): the `aws`, `aws-us-gov` and `aws-cn`
 * partitions as the AWS SDK for JavaScript v3 (3.1164) lists them; China's STS is
 * `sts.<region>.amazonaws.com.cn`. The European Sovereign Cloud (`amazonaws.eu`) and ISO partitions use other
 * domains and are not accepted. A new region is added here.
 */
export const KNOWN_AWS_REGIONS: readonly string[] = [
  'af-south-1',
  'ap-east-1',
  'ap-east-2',
  'ap-northeast-1',
  'ap-northeast-2',
  'ap-northeast-3',
  'ap-south-1',
  'ap-south-2',
  'ap-southeast-1',
  'ap-southeast-2',
  'ap-southeast-3',
  'ap-southeast-4',
  'ap-southeast-5',
  'ap-southeast-6',
  'ap-southeast-7',
  'ca-central-1',
  'ca-west-1',
  'cn-north-1',
  'cn-northwest-1',
  'eu-central-1',
  'eu-central-2',
  'eu-north-1',
  'eu-south-1',
  'eu-south-2',
  'eu-west-1',
  'eu-west-2',
  'eu-west-3',
  'il-central-1',
  'me-central-1',
  'me-south-1',
  'me-west-1',
  'mx-central-1',
  'sa-east-1',
  'sa-west-1',
  'us-east-1',
  'us-east-2',
  'us-west-1',
  'us-west-2',
  'us-gov-east-1',
  'us-gov-west-1',
];

/** The global endpoint signs with us-east-1. */
const GLOBAL_STS_HOST = 'sts.amazonaws.com';
const GLOBAL_STS_REGION = 'us-east-1';

/** Who STS says signed the request. */
export interface AwsCallerIdentity {
  account: string;
  arn: string;
  userId: string;
}

/** Checks a signed STS request against a challenge and returns the AWS identity behind it. */
export type IamJoinVerifier = (request: SignedStsRequest, challenge: string) => Promise<AwsCallerIdentity>;

export interface VerifyIamJoinOptions {
  /** How to reach STS; tests map the real STS URL to a local double. */
  fetch: typeof globalThis.fetch;
  /** Narrows KNOWN_AWS_REGIONS (e.g. to the regions the bots run in). */
  allowedRegions?: readonly string[];
  /** Gives up on STS after this long (default 10 s). */
  timeoutMs?: number;
}

/** The signed request was refused: it is not a GetCallerIdentity call bound to the challenge, or STS said no. */
export class IamJoinRefusedError extends AccessDeniedError {
  override name = 'IamJoinRefusedError';
}

/** STS could not be reached or failed on its side; the bot may retry with a new challenge. */
export class StsUnavailableError extends BrokerError {
  override name = 'StsUnavailableError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('sts_unavailable', message, options);
  }
}

// Headers the verifier forwards must be plain tokens; anything else could not have been signed as given.
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;
const MAX_HEADERS = 32;
const MAX_HEADER_VALUE = 4096;
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]{16,128})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,1024}), ?Signature=([0-9a-f]{64})$/;
const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * Checks `request` without sending it: https to an STS endpoint of a known region, POST /, exactly the
 * GetCallerIdentity body, a SigV4 Authorization whose SignedHeaders hold the host and the challenge header,
 * and the challenge header equal to `challenge`. Returns the URL to send it to and the headers to forward
 * (the signed ones and Authorization). Throws IamJoinRefusedError naming the first problem.
 */
export function checkStsRequest(
  request: SignedStsRequest,
  challenge: string,
  allowedRegions: readonly string[] = KNOWN_AWS_REGIONS,
): { url: string; host: string; region: string; headers: Record<string, string> } {
  // Typed explicitly so that TypeScript narrows after a call, as it does after `throw`.
  const refuse: (why: string) => never = (why) => {
    throw new IamJoinRefusedError(`the signed STS request was refused: ${why}`);
  };
  if (request.method !== 'POST') refuse(`the method must be POST, not ${JSON.stringify(request.method)}`);
  let parsed: URL;
  try {
    parsed = new URL(request.url);
  } catch {
    refuse('the URL does not parse');
  }
  const host = parsed.hostname;
  // The region is read from the host, which must then be that region's own endpoint: a cn- region is
  // reached only under amazonaws.com.cn, any other only under amazonaws.com.
  const match = /^sts\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(host);
  const named = host === GLOBAL_STS_HOST ? GLOBAL_STS_REGION : match?.[1];
  const region =
    named !== undefined && (host === GLOBAL_STS_HOST || stsHostOf(named) === host) ? named : undefined;
  if (parsed.protocol !== 'https:') refuse(`the URL must be https, not ${parsed.protocol}`);
  if (region === undefined || !KNOWN_AWS_REGIONS.includes(region) || !allowedRegions.includes(region))
    refuse(
      `the host ${JSON.stringify(host)} is not an AWS STS endpoint this authority accepts (sts.amazonaws.com, sts.<region>.amazonaws.com, or sts.<region>.amazonaws.com.cn for China, for ${allowedRegions === KNOWN_AWS_REGIONS ? 'a known AWS region' : `one of ${allowedRegions.join(', ')}`})`,
    );
  // The exact canonical form: no port, credentials, path, query or fragment can slip through.
  if (request.url !== `https://${host}/`) refuse(`the URL must be exactly https://${host}/`);
  if (request.body !== GET_CALLER_IDENTITY_BODY)
    refuse(`the body must be exactly ${GET_CALLER_IDENTITY_BODY}`);

  const headers = new Map<string, string>();
  const entries = Object.entries(request.headers);
  if (entries.length > MAX_HEADERS) refuse(`more than ${MAX_HEADERS} headers`);
  for (const [rawName, value] of entries) {
    const name = rawName.toLowerCase();
    if (!HEADER_NAME.test(name)) refuse(`the header name ${JSON.stringify(rawName)} is not allowed`);
    if (typeof value !== 'string' || value.length > MAX_HEADER_VALUE || /[\r\n\0]/.test(value))
      refuse(`the value of header ${name} is not allowed`);
    if (headers.has(name)) refuse(`the header ${name} appears twice`);
    headers.set(name, value);
  }
  const auth = AUTHORIZATION.exec(headers.get('authorization') ?? '');
  if (!auth) refuse('the Authorization header is not an AWS SigV4 (AWS4-HMAC-SHA256) signature');
  const [, , , scopeRegion, scopeService, signedList = ''] = auth;
  if (scopeService !== 'sts') refuse(`the signature is scoped to service ${scopeService}, not sts`);
  if (scopeRegion !== region)
    refuse(`the signature is scoped to region ${scopeRegion}, but the request goes to ${host}`);
  const signed = signedList.split(';');
  for (const name of signed)
    if (!headers.has(name)) refuse(`the signed header ${name} is not in the request`);
  if (!signed.includes('host') || headers.get('host') !== host)
    refuse(`the host header must be signed and equal ${host}`);
  if (!signed.includes(CHALLENGE_HEADER))
    refuse(`the ${CHALLENGE_HEADER} header must be among the signed headers`);
  const presented = Buffer.from(headers.get(CHALLENGE_HEADER) ?? '', 'utf8');
  const expected = Buffer.from(challenge, 'utf8');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected))
    refuse(`the ${CHALLENGE_HEADER} header does not hold this join's challenge`);

  // Only what the signature covers goes to STS (fetch sets Host from the URL, which was checked above).
  const forward: Record<string, string> = { authorization: headers.get('authorization') as string };
  for (const name of signed) if (name !== 'host') forward[name] = headers.get(name) as string;
  return { url: request.url, host, region, headers: forward };
}

/** Text of the single `<tag>` element in `xml`, or undefined when it is missing or repeated. */
function element(xml: string, tag: string): string | undefined {
  const all = [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))];
  if (all.length !== 1) return undefined;
  return (all[0]?.[1] ?? '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&')
    .trim();
}

/** Reads a response body, giving up past `limit` bytes (STS answers a few hundred). */
async function readLimited(response: Response, limit: number): Promise<string> {
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) throw new Error(`the response is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Verifies an iam join: checks the signed request (checkStsRequest), forwards it to that STS endpoint,
 * requires 200 and reads Account, Arn and UserId from the GetCallerIdentityResponse.
 */
export async function verifyIamJoin(
  request: SignedStsRequest,
  challenge: string,
  options: VerifyIamJoinOptions,
): Promise<AwsCallerIdentity> {
  const checked = checkStsRequest(request, challenge, options.allowedRegions);
  let response: Response;
  let text: string;
  try {
    response = await options.fetch(checked.url, {
      method: 'POST',
      headers: checked.headers,
      body: request.body,
      // A redirect would send the signed request somewhere this function did not check.
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    text = await readLimited(response, MAX_RESPONSE_BYTES);
  } catch (err) {
    throw new StsUnavailableError(
      `AWS STS at ${checked.host} could not be reached to verify the join (${err instanceof Error ? err.message : String(err)}); retry`,
      { cause: err },
    );
  }
  if (response.status !== 200) {
    const code = element(text, 'Code') ?? `HTTP ${response.status}`;
    // STS messages hold no secrets, but are cut short: they are passed on to the caller and the audit log.
    const message = (element(text, 'Message') ?? '').slice(0, 200);
    if (response.status >= 500)
      throw new StsUnavailableError(
        `AWS STS at ${checked.host} failed (${code}${message ? `: ${message}` : ''}); retry`,
      );
    throw new IamJoinRefusedError(
      `AWS STS rejected the signed GetCallerIdentity request: ${code}${message ? `: ${message}` : ''}`,
    );
  }
  const result = /<GetCallerIdentityResult>([\s\S]*)<\/GetCallerIdentityResult>/.exec(text)?.[1];
  const account = result === undefined ? undefined : element(result, 'Account');
  const arn = result === undefined ? undefined : element(result, 'Arn');
  const userId = result === undefined ? undefined : element(result, 'UserId');
  if (!account || !/^\d{12}$/.test(account) || !arn || !userId)
    throw new StsUnavailableError(
      `AWS STS at ${checked.host} answered 200 without a GetCallerIdentityResult holding Account, Arn and UserId`,
    );
  if (!/^arn:aws[a-z-]*:(sts|iam)::\d{12}:\S+$/.test(arn) || arn.split(':')[4] !== account)
    throw new StsUnavailableError(
      `AWS STS at ${checked.host} answered with ARN ${JSON.stringify(arn)}, which does not belong to account ${account}`,
    );
  return { account, arn, userId };
}
