/**
 * An AWS STS double for tests that answers the Query API action GetCallerIdentity the way STS does, after
 * checking the request's SigV4 signature: in-process (`new StsDouble(...)`, no socket) or over loopback HTTP
 * (`StsDouble.start(...)`). Code under test reaches it through `fetch` below. See ./http-double.ts.
 *
 * What it models: the caller's credentials (access key id → secret key, optional session token, account,
 * ARN, user id) are registered up front; the Authorization header is parsed, the signature is recomputed with
 * `@smithy/signature-v4` over exactly the headers the request lists in SignedHeaders (with the payload hash of
 * the body actually received) and compared; the credential scope must name service `sts`, the date of
 * X-Amz-Date and the endpoint's region (us-east-1 for sts.amazonaws.com; China's hosts end in .com.cn); X-Amz-Date must be within 15
 * minutes of the double's clock. Answers are the XML STS sends: a GetCallerIdentityResponse, or an
 * ErrorResponse with status 403 (SignatureDoesNotMatch, IncompleteSignature, InvalidClientTokenId,
 * ExpiredToken) or 400 (InvalidAction, MissingAuthenticationToken).
 *
 * Over loopback, the address the request was meant for travels in the `x-sts-double-host` header, which
 * `fetch` (below) adds when it maps `https://sts[.region].amazonaws.com/` to the double: it stands for the Host
 * the real network would deliver, since Node's fetch will not send a Host header of the caller's choosing.
 * In-process, the request's URL gives it.
 *
 * What it does not model: IAM policies, other actions, presigned (query-string) requests, SigV4a, chunked
 * payloads, TLS, throttling, and session tokens' real expiry (a credential is marked expired instead).
 */
import { createHash, randomUUID } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Clock } from '../../../src/clock.js';
import {
  AwsFault,
  type DoubleRequest,
  type DoubleResponse,
  HttpDouble,
  queryErrorResponse,
  queryParameters,
  queryResponse,
  xmlEscape,
} from './http-double.js';

/** A principal the double knows. */
export interface StsTestPrincipal {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  account: string;
  arn: string;
  userId: string;
  /** The session token has expired: requests get ExpiredToken. */
  expired?: boolean;
}

/** One request the double received. */
export interface StsRequestRecord {
  host: string;
  headers: Record<string, string>;
  body: string;
  /** The error code answered, or 'OK'. */
  outcome: string;
}

const MAX_SKEW_MS = 15 * 60_000;
const XMLNS = 'https://sts.amazonaws.com/doc/2011-06-15/';
/** Global and regional endpoints, China's (`sts.cn-*.amazonaws.com.cn`) included. */
const STS_HOST = /^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$/;
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/\s]+)\/(\d{8})\/([^/\s]+)\/([^/\s]+)\/aws4_request, ?SignedHeaders=([^,\s]+), ?Signature=([0-9a-f]{64})$/;

/** An STS error: status first, as STS's documentation lists them. */
const stsFault = (status: number, code: string, message: string) => new AwsFault(code, message, status);

/** `20260101T000000Z` → Date. */
function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  return m ? new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) : undefined;
}

export class StsDouble extends HttpDouble {
  readonly requests: StsRequestRecord[] = [];
  private readonly principals = new Map<string, StsTestPrincipal>();
  private readonly clock: Clock;

  constructor(options: { clock: Clock; principals?: readonly StsTestPrincipal[] }) {
    super();
    this.clock = options.clock;
    for (const p of options.principals ?? []) this.addPrincipal(p);
  }

  /** A double serving over loopback HTTP (`endpoint`), for integration tests and child processes. */
  static async start(options: {
    clock: Clock;
    principals?: readonly StsTestPrincipal[];
  }): Promise<StsDouble> {
    const double = new StsDouble(options);
    await double.listen();
    return double;
  }

  addPrincipal(principal: StsTestPrincipal): void {
    this.principals.set(principal.accessKeyId, principal);
  }

  private readonly inProcess = this.inProcessFetch(
    (url) => url.protocol === 'https:' && STS_HOST.test(url.host),
  );

  /**
   * A fetch that sends requests for `https://sts.amazonaws.com/` and `https://sts.<region>.amazonaws.com[.cn]/`
   * to this double, over loopback when it listens (any other URL is an error: nothing in a test may reach
   * the network).
   */
  readonly fetch: typeof globalThis.fetch = async (input, init) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    if (url.protocol !== 'https:' || !STS_HOST.test(url.hostname))
      throw new TypeError(`the STS double's fetch only reaches AWS STS, not ${url.href}`);
    if (!this.listening) return this.inProcess(input, init);
    const headers = new Headers(init?.headers);
    headers.set('x-sts-double-host', url.hostname);
    return globalThis.fetch(`${this.endpoint}${url.pathname}${url.search}`, {
      ...init,
      headers,
    });
  };

  protected async respond(request: DoubleRequest): Promise<DoubleResponse> {
    const { headers } = request;
    const body = request.body.toString('utf8');
    const host = headers['x-sts-double-host'] ?? request.host;
    const record: StsRequestRecord = { host, headers, body, outcome: 'OK' };
    this.requests.push(record);
    const requestId = randomUUID();
    try {
      const principal = await this.authenticate(request.method, request.path, host, headers, body);
      const params = queryParameters(request);
      if (params.get('Action') !== 'GetCallerIdentity' || params.get('Version') !== '2011-06-15')
        throw stsFault(
          400,
          'InvalidAction',
          `Could not find operation ${params.get('Action') ?? '(none)'} for version ${params.get('Version') ?? '(none)'}`,
        );
      return queryResponse(
        200,
        `<GetCallerIdentityResponse xmlns="${XMLNS}">
  <GetCallerIdentityResult>
    <Arn>${xmlEscape(principal.arn)}</Arn>
    <UserId>${xmlEscape(principal.userId)}</UserId>
    <Account>${xmlEscape(principal.account)}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>${requestId}</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`,
        requestId,
      );
    } catch (err) {
      const fault = err instanceof AwsFault ? err : stsFault(500, 'InternalFailure', String(err));
      record.outcome = fault.type;
      return queryErrorResponse(fault, XMLNS, requestId);
    }
  }

  /** Checks the SigV4 signature the way STS does and returns the principal that made it. */
  private async authenticate(
    method: string,
    path: string,
    host: string,
    headers: Record<string, string>,
    body: string,
  ): Promise<StsTestPrincipal> {
    const authorization = headers.authorization;
    if (!authorization)
      throw stsFault(400, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const m = AUTHORIZATION.exec(authorization);
    if (!m)
      throw stsFault(
        403,
        'IncompleteSignature',
        `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.`,
      );
    const [, accessKeyId = '', scopeDate, scopeRegion = '', scopeService, signedList = '', signature] = m;
    const principal = this.principals.get(accessKeyId);
    if (!principal)
      throw stsFault(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (principal.sessionToken !== undefined && headers['x-amz-security-token'] !== principal.sessionToken)
      throw stsFault(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (principal.expired)
      throw stsFault(403, 'ExpiredToken', 'The security token included in the request is expired');
    const amzDate = headers['x-amz-date'] ?? '';
    const signedAt = parseAmzDate(amzDate);
    if (!signedAt)
      throw stsFault(403, 'IncompleteSignature', 'Authorization header requires existence of X-Amz-Date');
    const now = this.clock.now();
    if (Math.abs(now.getTime() - signedAt.getTime()) > MAX_SKEW_MS)
      throw stsFault(
        403,
        'SignatureDoesNotMatch',
        `Signature expired: ${amzDate} is now earlier than ${new Date(now.getTime() - MAX_SKEW_MS).toISOString()} or later than ${new Date(now.getTime() + MAX_SKEW_MS).toISOString()}`,
      );
    const hostRegion =
      host === 'sts.amazonaws.com'
        ? 'us-east-1'
        : /^sts\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(host)?.[1];
    if (scopeService !== 'sts' || scopeDate !== amzDate.slice(0, 8) || scopeRegion !== hostRegion)
      throw stsFault(
        403,
        'SignatureDoesNotMatch',
        `Credential should be scoped to a valid region and service, not '${scopeRegion}/${scopeService}'.`,
      );
    const signed = signedList.split(';');
    if (!signed.includes('host'))
      throw stsFault(
        403,
        'SignatureDoesNotMatch',
        "'Host' must be a 'SignedHeader' in the AWS Authorization.",
      );
    const payloadHash = createHash('sha256').update(body).digest('hex');
    const claimedHash = headers['x-amz-content-sha256'];
    if (claimedHash !== undefined && claimedHash !== payloadHash)
      throw stsFault(
        403,
        'SignatureDoesNotMatch',
        'The provided x-amz-content-sha256 does not match the body.',
      );

    // The canonical request covers exactly the headers the signer listed, with the values received.
    const canonicalHeaders: Record<string, string> = {};
    for (const name of signed) {
      const value = name === 'host' ? host : headers[name];
      if (value === undefined)
        throw stsFault(403, 'SignatureDoesNotMatch', `The signed header ${name} is missing.`);
      canonicalHeaders[name] = value;
    }
    const [pathname = '/', query = ''] = path.split('?');
    const signer = new SignatureV4({
      service: 'sts',
      region: scopeRegion,
      credentials: {
        accessKeyId,
        secretAccessKey: principal.secretAccessKey,
        ...(principal.sessionToken ? { sessionToken: principal.sessionToken } : {}),
      },
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
    const expected = await signer.sign(
      new HttpRequest({
        method,
        protocol: 'https:',
        hostname: host,
        path: pathname,
        query: Object.fromEntries(new URLSearchParams(query)),
        headers: canonicalHeaders,
        body,
      }),
      // signableHeaders lets a client sign headers the SDK never would (user-agent); the signer also adds
      // X-Amz-Date and the session token itself, so a request that left them unsigned does not match.
      { signingDate: signedAt, signableHeaders: new Set(signed) },
    );
    const expectedSignature = /Signature=([0-9a-f]{64})/.exec(String(expected.headers.authorization))?.[1];
    const expectedSigned = /SignedHeaders=([^,\s]+)/.exec(String(expected.headers.authorization))?.[1];
    if (expectedSignature !== signature || expectedSigned !== signedList)
      throw stsFault(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    return principal;
  }
}
