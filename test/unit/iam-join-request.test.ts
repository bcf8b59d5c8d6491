/**
 * The iam join verifier on its own: what checkStsRequest lets through to STS (header names, values, counts,
 * the SigV4 Authorization, the signed host and challenge, the region), and what verifyIamJoin believes of
 * what STS answers (status, size, the GetCallerIdentityResult, the ARN's account). Requests are built by
 * hand: nothing here reaches STS, so the signature only has to look like one.
 */
import { describe, expect, it } from 'vitest';
import {
  type AwsCallerIdentity,
  checkStsRequest,
  IamJoinRefusedError,
  KNOWN_AWS_REGIONS,
  StsUnavailableError,
  verifyIamJoin,
} from '../../src/authority/iam-join.js';
import {
  CHALLENGE_HEADER,
  GET_CALLER_IDENTITY_BODY,
  type SignedStsRequest,
  stsHostOf,
} from '../../src/credentials/iam.js';

const REGION = 'eu-west-1';
const HOST = 'sts.eu-west-1.amazonaws.com';
const CHALLENGE = 'c'.repeat(64);
const SIGNATURE = 'a'.repeat(64);
const SIGNED = 'content-type;host;x-amz-date;x-broker-challenge';

function authorization(input: { region?: string; service?: string; signed?: string } = {}): string {
  const { region = REGION, service = 'sts', signed = SIGNED } = input;
  return `AWS4-HMAC-SHA256 Credential=ASIATESTBOTSESSION01/20260301/${region}/${service}/aws4_request, SignedHeaders=${signed}, Signature=${SIGNATURE}`;
}

/** A well-formed request for HOST; `headers` entries replace the defaults, undefined removes one. */
function stsRequest(
  headers: Record<string, unknown> = {},
  change: Partial<SignedStsRequest> = {},
): SignedStsRequest {
  const all: Record<string, unknown> = {
    host: HOST,
    'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
    'x-amz-date': '20260301T120000Z',
    [CHALLENGE_HEADER]: CHALLENGE,
    authorization: authorization(),
    ...headers,
  };
  for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
  return {
    method: 'POST',
    url: `https://${HOST}/`,
    headers: all as Record<string, string>,
    body: GET_CALLER_IDENTITY_BODY,
    ...change,
  };
}

/** The refusal checkStsRequest throws, failing the test when it accepts. */
function refusal(request: SignedStsRequest, challenge = CHALLENGE, regions?: readonly string[]): Error {
  try {
    checkStsRequest(request, challenge, regions);
  } catch (err) {
    return err as Error;
  }
  throw new Error('the request was accepted');
}

function expectRefusal(request: SignedStsRequest, message: RegExp, challenge = CHALLENGE): void {
  const err = refusal(request, challenge);
  expect(err).toBeInstanceOf(IamJoinRefusedError);
  expect(err.message).toMatch(/^the signed STS request was refused: /);
  expect(err.message).toMatch(message);
}

describe('checkStsRequest: what is forwarded', () => {
  it('accepts a well-formed request and forwards exactly the signed headers (but host) and Authorization', () => {
    const checked = checkStsRequest(stsRequest({ 'user-agent': 'not signed' }), CHALLENGE);
    expect(checked).toEqual({
      url: `https://${HOST}/`,
      host: HOST,
      region: REGION,
      headers: {
        authorization: authorization(),
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        'x-amz-date': '20260301T120000Z',
        [CHALLENGE_HEADER]: CHALLENGE,
      },
    });
  });

  it('reads header names case-insensitively and forwards them in lower case', () => {
    const request = stsRequest({
      host: undefined,
      Host: HOST,
      'X-Amz-Date': '20260301T120000Z',
      'x-amz-date': undefined,
    });
    const checked = checkStsRequest(request, CHALLENGE);
    expect(checked.headers['x-amz-date']).toBe('20260301T120000Z');
  });
});

describe('checkStsRequest: header names and values', () => {
  it.each([
    ['a space', 'x amz'],
    ['an underscore', 'x_amz'],
    ['a colon', 'x-amz:date'],
    ['a newline', 'x-amz\ndate'],
    ['a non-ASCII letter', 'x-ämz'],
    ['nothing', ''],
    ['65 characters', 'x'.repeat(65)],
  ])('a header name with %s is refused', (_what, name) => {
    expectRefusal(stsRequest({ [name]: 'v' }), /the header name ".*" is not allowed/s);
  });

  it('a header name of 64 characters is allowed', () => {
    expect(() => checkStsRequest(stsRequest({ ['x'.repeat(64)]: 'v' }), CHALLENGE)).not.toThrow();
  });

  it.each([
    ['a carriage return', 'a\rb'],
    ['a line feed', 'a\nX-Injected: 1'],
    ['a NUL', 'a\u0000b'],
    ['4097 characters', 'v'.repeat(4097)],
  ])('a header value with %s is refused', (_what, value) => {
    expectRefusal(stsRequest({ 'x-extra': value }), /the value of header x-extra is not allowed/);
  });

  it('a header value of 4096 characters is allowed', () => {
    expect(() => checkStsRequest(stsRequest({ 'x-extra': 'v'.repeat(4096) }), CHALLENGE)).not.toThrow();
  });

  it.each([
    ['a number', 5],
    ['an array', ['a', 'b']],
    ['null', null],
  ])('a header value that is %s, not a string, is refused', (_what, value) => {
    expectRefusal(stsRequest({ 'x-extra': value }), /the value of header x-extra is not allowed/);
  });

  it('a signed header carrying CR/LF is refused, not forwarded', () => {
    expectRefusal(
      stsRequest({ 'x-amz-date': '20260301T120000Z\r\nHost: evil' }),
      /value of header x-amz-date/,
    );
  });

  it.each([
    ['Host and host', { Host: HOST }],
    ['host and HOST', { HOST: 'sts.us-east-1.amazonaws.com' }],
    ['Authorization and authorization', { Authorization: authorization() }],
  ])('a header given twice (%s) is refused', (_what, extra) => {
    const name = Object.keys(extra)[0]?.toLowerCase();
    expectRefusal(stsRequest(extra), new RegExp(`the header ${name} appears twice`));
  });

  /** The five headers of stsRequest plus `extra` more. */
  const withHeaders = (extra: number) =>
    stsRequest(Object.fromEntries(Array.from({ length: extra }, (_, i) => [`x-extra-${i}`, 'v'])));

  it('32 headers are allowed', () => {
    expect(Object.keys(withHeaders(27).headers)).toHaveLength(32);
    expect(() => checkStsRequest(withHeaders(27), CHALLENGE)).not.toThrow();
  });

  it('33 headers are refused', () => {
    expect(Object.keys(withHeaders(28).headers)).toHaveLength(33);
    expectRefusal(withHeaders(28), /more than 32 headers/);
  });
});

describe('checkStsRequest: the signature and what it covers', () => {
  it('a request without Authorization is refused', () => {
    expectRefusal(stsRequest({ authorization: undefined }), /the Authorization header is not an AWS SigV4/);
  });

  it.each([
    ['another algorithm', authorization().replace('AWS4-HMAC-SHA256', 'AWS4-ECDSA-P256-SHA256')],
    ['a short signature', authorization().replace(SIGNATURE, 'a'.repeat(63))],
    ['an upper-case signature', authorization().replace(SIGNATURE, 'A'.repeat(64))],
    ['no SignedHeaders', authorization().replace(/SignedHeaders=[^,]*, /, '')],
    ['trailing text', `${authorization()} extra`],
    ['leading text', ` ${authorization()}`],
  ])('an Authorization header with %s is refused', (_what, value) => {
    expectRefusal(stsRequest({ authorization: value }), /the Authorization header is not an AWS SigV4/);
  });

  it('a signed header absent from the request is refused', () => {
    expectRefusal(
      stsRequest({ authorization: authorization({ signed: `${SIGNED};x-amz-security-token` }) }),
      /the signed header x-amz-security-token is not in the request/,
    );
  });

  it('an unsigned host is refused', () => {
    expectRefusal(
      stsRequest({ authorization: authorization({ signed: 'content-type;x-amz-date;x-broker-challenge' }) }),
      /the host header must be signed and equal sts\.eu-west-1\.amazonaws\.com/,
    );
  });

  it('a signed host that differs from the URL is refused', () => {
    expectRefusal(
      stsRequest({ host: 'sts.us-east-1.amazonaws.com' }),
      /the host header must be signed and equal sts\.eu-west-1\.amazonaws\.com/,
    );
  });

  it('a challenge header that is not signed is refused', () => {
    expectRefusal(
      stsRequest({ authorization: authorization({ signed: 'content-type;host;x-amz-date' }) }),
      /the x-broker-challenge header must be among the signed headers/,
    );
  });

  it.each([
    ['shorter', 'c'.repeat(63)],
    ['longer', 'c'.repeat(65)],
    ['empty', ''],
    ['the same length in characters but not in bytes', `${'c'.repeat(63)}é`],
  ])(
    'a challenge header of another length (%s) is refused cleanly, not with a RangeError',
    (_what, value) => {
      const err = refusal(stsRequest({ [CHALLENGE_HEADER]: value }));
      expect(err).not.toBeInstanceOf(RangeError);
      expect(err).toBeInstanceOf(IamJoinRefusedError);
      expect(err.message).toMatch(/the x-broker-challenge header does not hold this join's challenge/);
    },
  );

  it('a challenge of the right length but other content is refused', () => {
    expectRefusal(stsRequest({ [CHALLENGE_HEADER]: 'd'.repeat(64) }), /does not hold this join's challenge/);
  });

  it('a request without the challenge header is refused', () => {
    expectRefusal(
      stsRequest({
        [CHALLENGE_HEADER]: undefined,
        authorization: authorization({ signed: 'host;x-amz-date' }),
      }),
      /x-broker-challenge header must be among the signed headers/,
    );
  });
});

describe('checkStsRequest: regions and endpoints', () => {
  it('the known regions cover the aws, aws-cn and aws-us-gov partitions', () => {
    expect(KNOWN_AWS_REGIONS.length).toBeGreaterThanOrEqual(38);
    for (const region of [
      'us-east-1',
      'eu-west-1',
      'ap-southeast-2',
      'cn-north-1',
      'cn-northwest-1',
      'us-gov-west-1',
    ])
      expect(KNOWN_AWS_REGIONS).toContain(region);
    expect(new Set(KNOWN_AWS_REGIONS).size).toBe(KNOWN_AWS_REGIONS.length);
  });

  it('every known region is accepted at its own endpoint, signed for itself', () => {
    for (const region of KNOWN_AWS_REGIONS) {
      const host = stsHostOf(region);
      const request = stsRequest(
        { host, authorization: authorization({ region }) },
        { url: `https://${host}/` },
      );
      expect(checkStsRequest(request, CHALLENGE)).toMatchObject({ region, host, url: `https://${host}/` });
    }
  });

  it('the global endpoint is us-east-1', () => {
    const host = 'sts.amazonaws.com';
    const request = stsRequest(
      { host, authorization: authorization({ region: 'us-east-1' }) },
      { url: `https://${host}/` },
    );
    expect(checkStsRequest(request, CHALLENGE).region).toBe('us-east-1');
    expect(refusal(request, CHALLENGE, ['eu-west-1']).message).toMatch(/for one of eu-west-1/);
  });

  it('a region that is not known is refused even when allowedRegions names it', () => {
    const host = 'sts.xx-fake-1.amazonaws.com';
    const request = stsRequest(
      { host, authorization: authorization({ region: 'xx-fake-1' }) },
      { url: `https://${host}/` },
    );
    const err = refusal(request, CHALLENGE, ['xx-fake-1']);
    expect(err).toBeInstanceOf(IamJoinRefusedError);
    expect(err.message).toMatch(/"sts\.xx-fake-1\.amazonaws\.com" is not an AWS STS endpoint/);
  });

  it('the refusal names what is accepted: any known region, or the allowed ones', () => {
    const host = 'sts.example.com';
    const request = stsRequest({ host }, { url: `https://${host}/` });
    expect(refusal(request).message).toMatch(/for a known AWS region\)$/);
    expect(refusal(request, CHALLENGE, ['eu-west-1', 'eu-west-2']).message).toMatch(
      /for one of eu-west-1, eu-west-2\)$/,
    );
  });

  it.each([
    ['a China region under amazonaws.com', 'sts.cn-north-1.amazonaws.com', 'cn-north-1'],
    ['another region under amazonaws.com.cn', 'sts.eu-west-1.amazonaws.com.cn', REGION],
    ['a prefix before sts', 'x.sts.eu-west-1.amazonaws.com', REGION],
  ])('%s is refused', (_what, host, region) => {
    const request = stsRequest(
      { host, authorization: authorization({ region }) },
      { url: `https://${host}/` },
    );
    expectRefusal(request, /is not an AWS STS endpoint this authority accepts/);
  });

  it.each([
    ['GET', { method: 'GET' }, /the method must be POST, not "GET"/],
    ['plain http', { url: `http://${HOST}/` }, /the URL must be https, not http:/],
    [
      'a port',
      { url: `https://${HOST}:8443/` },
      /the URL must be exactly https:\/\/sts\.eu-west-1\.amazonaws\.com\//,
    ],
    ['a path', { url: `https://${HOST}/x` }, /the URL must be exactly https:\/\//],
    ['a query', { url: `https://${HOST}/?Action=GetSessionToken` }, /the URL must be exactly https:\/\//],
    ['user info', { url: `https://a@${HOST}/` }, /the URL must be exactly https:\/\//],
    ['a fragment', { url: `https://${HOST}/#x` }, /the URL must be exactly https:\/\//],
  ])('a request with %s is refused', (_what, change, message) => {
    expectRefusal(stsRequest({}, change), message);
  });

  it('a signature scoped to another region or service is refused', () => {
    expectRefusal(
      stsRequest({ authorization: authorization({ region: 'us-east-1' }) }),
      /the signature is scoped to region us-east-1, but the request goes to sts\.eu-west-1\.amazonaws\.com/,
    );
    expectRefusal(
      stsRequest({ authorization: authorization({ service: 'iam' }) }),
      /the signature is scoped to service iam, not sts/,
    );
  });

  it('a URL that does not parse is refused', () => {
    expectRefusal(stsRequest({}, { url: 'not a url' }), /the URL does not parse/);
  });

  it('a body with anything more than GetCallerIdentity is refused', () => {
    expectRefusal(stsRequest({}, { body: `${GET_CALLER_IDENTITY_BODY} ` }), /the body must be exactly/);
  });
});

/** What a fake STS answers: status and body, and what it was asked. */
function fakeSts(status: number, body: string | Uint8Array) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input), init: init ?? {} });
    return new Response(body, { status });
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

function identityXml(fields: string): string {
  return `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
${fields}
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>
`;
}

const ARN = 'arn:aws:sts::111111111111:assumed-role/example-bot/session';
const GOOD_FIELDS = `    <Arn>${ARN}</Arn>
    <UserId>AROATESTEXAMPLEBOT:session</UserId>
    <Account>111111111111</Account>`;

async function verifyWith(status: number, body: string | Uint8Array, timeoutMs?: number) {
  const sts = fakeSts(status, body);
  const result = await verifyIamJoin(stsRequest(), CHALLENGE, {
    fetch: sts.fetch,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  }).catch((e: unknown) => e as Error);
  return { result, calls: sts.calls };
}

describe('verifyIamJoin: what STS answers', () => {
  it('forwards the checked request to that endpoint without following redirects, and returns the identity', async () => {
    const { result, calls } = await verifyWith(200, identityXml(GOOD_FIELDS));
    expect(result).toEqual<AwsCallerIdentity>({
      account: '111111111111',
      arn: ARN,
      userId: 'AROATESTEXAMPLEBOT:session',
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.url).toBe(`https://${HOST}/`);
    expect(calls[0]?.init).toMatchObject({
      method: 'POST',
      body: GET_CALLER_IDENTITY_BODY,
      redirect: 'error',
      headers: checkStsRequest(stsRequest(), CHALLENGE).headers,
    });
    expect(calls[0]?.init.signal).toBeInstanceOf(AbortSignal);
  });

  it('decodes XML entities and surrounding space in the answer', async () => {
    const fields = `<Arn> ${ARN} </Arn><UserId>AROA&lt;x&gt;&quot;&apos;&amp;amp;</UserId><Account>111111111111</Account>`;
    const { result } = await verifyWith(200, identityXml(fields));
    expect((result as AwsCallerIdentity).userId).toBe(`AROA<x>"'&amp;`);
    expect((result as AwsCallerIdentity).arn).toBe(ARN);
  });

  it.each([
    ['the Account is missing', GOOD_FIELDS.replace(/<Account>.*<\/Account>/, '')],
    ['the Arn is missing', GOOD_FIELDS.replace(/<Arn>.*<\/Arn>/, '')],
    ['the UserId is missing', GOOD_FIELDS.replace(/<UserId>.*<\/UserId>/, '')],
    ['the Account is repeated', `${GOOD_FIELDS}<Account>222222222222</Account>`],
    ['the Arn is repeated', `${GOOD_FIELDS}<Arn>arn:aws:iam::111111111111:user/other</Arn>`],
    ['the Account is not 12 digits', GOOD_FIELDS.replace('<Account>111111111111', '<Account>11111111111')],
    [
      'the Account has more than 12 digits',
      GOOD_FIELDS.replace('<Account>111111111111', '<Account>1111111111112'),
    ],
    ['the Arn is empty', GOOD_FIELDS.replace(ARN, '')],
    ['the UserId is empty', GOOD_FIELDS.replace('AROATESTEXAMPLEBOT:session', '')],
  ])('a 200 answer where %s is not believed', async (_what, fields) => {
    const { result } = await verifyWith(200, identityXml(fields));
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(
      /AWS STS at sts\.eu-west-1\.amazonaws\.com answered 200 without a GetCallerIdentityResult holding Account, Arn and UserId/,
    );
  });

  it('a 200 answer without GetCallerIdentityResult is not believed', async () => {
    const { result } = await verifyWith(
      200,
      `<Arn>${ARN}</Arn><UserId>u</UserId><Account>111111111111</Account>`,
    );
    expect(result).toBeInstanceOf(StsUnavailableError);
  });

  it.each([
    ['another account', ARN.replace('111111111111', '222222222222')],
    ['no account', 'arn:aws:s3:::bucket'],
    ['another service', 'arn:aws:ec2::111111111111:instance/i-1'],
    ['a space', `${ARN} extra`],
    ['no prefix', ARN.replace('arn:', '')],
    ['text before it', `x${ARN}`],
  ])('an ARN of %s is not believed', async (_what, arn) => {
    const { result } = await verifyWith(200, identityXml(GOOD_FIELDS.replace(ARN, arn)));
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(/which does not belong to account 111111111111/);
  });

  it('ARNs of IAM users and of other partitions are believed', async () => {
    for (const arn of [
      'arn:aws:iam::111111111111:user/bot',
      'arn:aws-cn:sts::111111111111:assumed-role/r/s',
    ]) {
      const { result } = await verifyWith(200, identityXml(GOOD_FIELDS.replace(ARN, arn)));
      expect((result as AwsCallerIdentity).arn).toBe(arn);
    }
  });

  const errorXml = (code: string, message: string) =>
    `<ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error></ErrorResponse>`;

  it('a 4xx answer is a refusal naming the code and message', async () => {
    const { result } = await verifyWith(
      403,
      errorXml('InvalidClientTokenId', 'The security token is invalid.'),
    );
    expect(result).toBeInstanceOf(IamJoinRefusedError);
    expect((result as Error).message).toBe(
      'AWS STS rejected the signed GetCallerIdentity request: InvalidClientTokenId: The security token is invalid.',
    );
  });

  it('refusals and unavailability are told apart by name and code', async () => {
    const refused = refusal(stsRequest({}, { method: 'GET' }));
    expect(refused.name).toBe('IamJoinRefusedError');
    expect((refused as IamJoinRefusedError).code).toBe('access_denied');
    const { result } = await verifyWith(503, '');
    expect((result as Error).name).toBe('StsUnavailableError');
  });

  it('a 4xx answer without XML is a refusal naming the status', async () => {
    const { result } = await verifyWith(400, 'Bad Request');
    expect(result).toBeInstanceOf(IamJoinRefusedError);
    expect((result as Error).message).toBe('AWS STS rejected the signed GetCallerIdentity request: HTTP 400');
  });

  it('STS messages are cut to 200 characters', async () => {
    const { result } = await verifyWith(403, errorXml('AccessDenied', 'm'.repeat(500)));
    expect((result as Error).message).toBe(
      `AWS STS rejected the signed GetCallerIdentity request: AccessDenied: ${'m'.repeat(200)}`,
    );
  });

  it.each([500, 503])('a %i answer means STS is unavailable (retry), not a refusal', async (status) => {
    const { result } = await verifyWith(status, errorXml('ServiceUnavailable', 'Try later'));
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect(result).not.toBeInstanceOf(IamJoinRefusedError);
    expect((result as StsUnavailableError).code).toBe('sts_unavailable');
    expect((result as Error).message).toBe(
      `AWS STS at ${HOST} failed (ServiceUnavailable: Try later); retry`,
    );
  });

  it('a 5xx answer without XML names the status', async () => {
    const { result } = await verifyWith(502, '');
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toBe(`AWS STS at ${HOST} failed (HTTP 502); retry`);
  });

  it('an answer of exactly 64 KiB is read', async () => {
    const xml = identityXml(GOOD_FIELDS);
    const padded = xml + ' '.repeat(64 * 1024 - Buffer.byteLength(xml));
    const { result } = await verifyWith(200, padded);
    expect((result as AwsCallerIdentity).account).toBe('111111111111');
  });

  it('an answer over 64 KiB is not read: STS is treated as unavailable', async () => {
    const xml = identityXml(GOOD_FIELDS);
    const padded = xml + ' '.repeat(64 * 1024 + 1 - Buffer.byteLength(xml));
    const { result } = await verifyWith(200, padded);
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(
      /AWS STS at sts\.eu-west-1\.amazonaws\.com could not be reached to verify the join \(the response is larger than 65536 bytes\); retry/,
    );
  });

  it('a fetch that fails is STS unavailable, with the cause kept', async () => {
    const cause = new TypeError('fetch failed');
    const result = await verifyIamJoin(stsRequest(), CHALLENGE, {
      fetch: (async () => {
        throw cause;
      }) as typeof globalThis.fetch,
    }).catch((e: unknown) => e as Error);
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(
      /could not be reached to verify the join \(fetch failed\); retry/,
    );
    expect((result as Error).cause).toBe(cause);
  });

  it('STS that does not answer in timeoutMs is unavailable', async () => {
    const result = await verifyIamJoin(stsRequest(), CHALLENGE, {
      timeoutMs: 50,
      fetch: ((_input: unknown, init?: RequestInit) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
        })) as typeof globalThis.fetch,
    }).catch((e: unknown) => e as Error);
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(/could not be reached/);
  });

  it('an answer without a body is not believed', async () => {
    const result = await verifyIamJoin(stsRequest(), CHALLENGE, {
      fetch: (async () => new Response(null, { status: 200 })) as typeof globalThis.fetch,
    }).catch((e: unknown) => e as Error);
    expect(result).toBeInstanceOf(StsUnavailableError);
    expect((result as Error).message).toMatch(/answered 200 without a GetCallerIdentityResult/);
  });

  it('nothing is sent for a request that fails the checks', async () => {
    const sts = fakeSts(200, identityXml(GOOD_FIELDS));
    const result = await verifyIamJoin(stsRequest({ host: 'sts.us-east-1.amazonaws.com' }), CHALLENGE, {
      fetch: sts.fetch,
    }).catch((e: unknown) => e as Error);
    expect(result).toBeInstanceOf(IamJoinRefusedError);
    expect(sts.calls).toHaveLength(0);
  });

  it('allowedRegions reaches the checks', async () => {
    const sts = fakeSts(200, identityXml(GOOD_FIELDS));
    const result = await verifyIamJoin(stsRequest(), CHALLENGE, {
      fetch: sts.fetch,
      allowedRegions: ['us-east-1'],
    }).catch((e: unknown) => e as Error);
    expect(result).toBeInstanceOf(IamJoinRefusedError);
    expect(sts.calls).toHaveLength(0);
  });
});
