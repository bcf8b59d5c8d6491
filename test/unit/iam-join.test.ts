import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { handleApiRequest } from '../../src/api/handler.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { checkStsRequest, IamJoinRefusedError, verifyIamJoin } from '../../src/authority/iam-join.js';
import { type AwsCredentials, signedGetCallerIdentity } from '../../src/bot/iam.js';
import { ManualClock } from '../../src/clock.js';
import {
  CHALLENGE_HEADER,
  GET_CALLER_IDENTITY_BODY,
  type SignedStsRequest,
} from '../../src/credentials/iam.js';
import { AccessDeniedError } from '../../src/errors.js';
import { verifyIssuedBy } from '../../src/pki/certificate.js';
import { OID_BOT_GENERATION, OID_BOT_NAME } from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { testAuthority } from '../support/authority.js';
import { StsDouble, type StsTestPrincipal } from '../support/aws/sts.js';
import { exampleResourcesYaml, nowSeconds, testKeyPair } from '../support/fixtures.js';

const ACCOUNT = '111111111111';
const REGION = 'eu-west-1';

/** The bot's Lambda role session, which the token allows. Test credentials, known only to the STS double. */
const BOT: StsTestPrincipal = {
  accessKeyId: 'ASIATESTBOTSESSION01',
  secretAccessKey: 'bot-secret-access-key-for-the-sts-double-only',
  sessionToken: 'bot-session-token-for-the-sts-double-only',
  account: ACCOUNT,
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/example-bot/example-bot-function`,
  userId: 'AROATESTEXAMPLEBOT:example-bot-function',
};
/** Another role in the same account: valid AWS credentials, but not allowed by the token. */
const OTHER_ROLE: StsTestPrincipal = {
  accessKeyId: 'ASIATESTOTHERROLE001',
  secretAccessKey: 'other-secret-access-key',
  account: ACCOUNT,
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/other-role/some-session`,
  userId: 'AROATESTOTHERROLE:some-session',
};
/** The allowed role name, but in another account. */
const OTHER_ACCOUNT: StsTestPrincipal = {
  accessKeyId: 'ASIATESTOTHERACCT001',
  secretAccessKey: 'other-account-secret',
  account: '222222222222',
  arn: 'arn:aws:sts::222222222222:assumed-role/example-bot/example-bot-function',
  userId: 'AROATESTOTHERACCT:example-bot-function',
};
const EXPIRED_SESSION: StsTestPrincipal = {
  accessKeyId: 'ASIATESTEXPIRED00001',
  secretAccessKey: 'expired-secret',
  sessionToken: 'expired-session-token',
  account: ACCOUNT,
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/example-bot/old-session`,
  userId: 'AROATESTEXAMPLEBOT:old-session',
  expired: true,
};

function credentialsOf(p: StsTestPrincipal): AwsCredentials {
  return {
    accessKeyId: p.accessKeyId,
    secretAccessKey: p.secretAccessKey,
    ...(p.sessionToken ? { sessionToken: p.sessionToken } : {}),
  };
}

/** The example role (no session cap) and bot, and an iam token allowing the bot's role in ACCOUNT. */
const SEED = exampleResourcesYaml({
  role: { maxSessionTtl: null },
  db: null,
  extra: `kind: token
version: v2
metadata: { name: example-bot-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: "${ACCOUNT}", aws_arn: "arn:aws:sts::${ACCOUNT}:assumed-role/example-bot/*" }]
`,
});

const START = nowSeconds();
let sts: StsDouble;
let stsClock: ManualClock;

beforeAll(async () => {
  stsClock = new ManualClock(START);
  sts = new StsDouble({
    clock: stsClock,
    principals: [BOT, OTHER_ROLE, OTHER_ACCOUNT, EXPIRED_SESSION],
  });
});

afterAll(async () => {
  await sts.close();
});

interface Ctx {
  authority: Authority;
  audit: MemoryAuditLog;
  clock: ManualClock;
  /** URLs the verifier forwarded to STS. */
  forwarded: string[];
}

let ctx: Ctx;

beforeEach(async () => {
  stsClock.set(START);
  const forwarded: string[] = [];
  // Every test gets a fresh authority holding copies of one real initialisation's CAs (RSA keys are slow).
  const { authority, audit, clock } = await testAuthority({
    start: START,
    clusterName: 'iam',
    resources: SEED,
    with: {
      iamVerifier: (request, challenge) =>
        verifyIamJoin(request, challenge, {
          fetch: (input, init) => {
            forwarded.push(String(input));
            return sts.fetch(input, init);
          },
        }),
    },
  });
  ctx = { authority, audit, clock, forwarded };
});

/** A challenge from `authority` and the bot's signed GetCallerIdentity bound to it. */
async function signedJoin(
  principal: StsTestPrincipal = BOT,
  authority: Authority = ctx.authority,
): Promise<{ challengeId: string; challenge: string; stsRequest: SignedStsRequest }> {
  const { challengeId, challenge } = await authority.createChallenge();
  const stsRequest = await signedGetCallerIdentity({
    region: REGION,
    credentials: credentialsOf(principal),
    challenge,
    clock: ctx.clock,
  });
  return { challengeId, challenge, stsRequest };
}

/**
 * A request signed with SigV4 exactly as given, for requests the bot module would never build (other hosts,
 * other bodies, an unsigned challenge header). `after` headers are added once the signature is made.
 */
async function signCustom(input: {
  hostname: string;
  region: string;
  body: string;
  challenge: string;
  principal?: StsTestPrincipal;
  unsigned?: readonly string[];
}): Promise<SignedStsRequest> {
  const signer = new SignatureV4({
    service: 'sts',
    region: input.region,
    credentials: credentialsOf(input.principal ?? BOT),
    sha256: Hash.bind(null, 'sha256'),
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: 'POST',
      protocol: 'https:',
      hostname: input.hostname,
      path: '/',
      headers: {
        host: input.hostname,
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        [CHALLENGE_HEADER]: input.challenge,
      },
      body: input.body,
    }),
    { signingDate: ctx.clock.now(), unsignableHeaders: new Set(input.unsigned ?? []) },
  );
  return {
    method: 'POST',
    url: `https://${input.hostname}/`,
    headers: { ...signed.headers },
    body: input.body,
  };
}

async function join(challengeId: string, stsRequest: SignedStsRequest, slot = 1) {
  return ctx.authority.joinWithIam({
    tokenName: 'example-bot-iam',
    challengeId,
    stsRequest,
    publicKeyPem: (await testKeyPair(slot)).publicKeyPem,
  });
}

async function expectRefused(promise: Promise<unknown>, message: RegExp): Promise<AccessDeniedError> {
  const err = await promise.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AccessDeniedError);
  expect((err as Error).message).toMatch(/^iam join refused: /);
  expect((err as Error).message).toMatch(message);
  return err as AccessDeniedError;
}

function lastAudit() {
  return ctx.audit.events.at(-1);
}

describe('the bot side: signedGetCallerIdentity', () => {
  it('signs POST https://sts.<region>.amazonaws.com/ with the GetCallerIdentity body and the challenge header', async () => {
    const req = await signedGetCallerIdentity({
      region: REGION,
      credentials: credentialsOf(BOT),
      challenge: 'c'.repeat(64),
      clock: new ManualClock('2026-03-01T12:00:00Z'),
    });
    expect(req.method).toBe('POST');
    expect(req.url).toBe('https://sts.eu-west-1.amazonaws.com/');
    expect(req.body).toBe('Action=GetCallerIdentity&Version=2011-06-15');
    expect(req.headers).toMatchObject({
      host: 'sts.eu-west-1.amazonaws.com',
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      'x-broker-challenge': 'c'.repeat(64),
      'x-amz-date': '20260301T120000Z',
      'x-amz-security-token': BOT.sessionToken,
    });
    expect(req.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=ASIATESTBOTSESSION01\/20260301\/eu-west-1\/sts\/aws4_request, SignedHeaders=[a-z0-9;-]*\bx-broker-challenge\b[a-z0-9;-]*, Signature=[0-9a-f]{64}$/,
    );
    expect(req.headers.authorization).toMatch(/SignedHeaders=[^,]*\bhost\b/);
  });

  it.each(['cn-north-1', 'cn-northwest-1'])(
    'signs for the China partition at https://sts.%s.amazonaws.com.cn/ with that region',
    async (region) => {
      const req = await signedGetCallerIdentity({
        region,
        credentials: credentialsOf(BOT),
        challenge: 'c'.repeat(64),
        clock: new ManualClock('2026-03-01T12:00:00Z'),
      });
      expect(req.url).toBe(`https://sts.${region}.amazonaws.com.cn/`);
      expect(req.headers.host).toBe(`sts.${region}.amazonaws.com.cn`);
      expect(req.headers.authorization).toContain(`/20260301/${region}/sts/aws4_request,`);
    },
  );

  it('refuses a region name that is not one', async () => {
    await expect(
      signedGetCallerIdentity({
        region: 'evil.example/x',
        credentials: credentialsOf(BOT),
        challenge: 'c',
        clock: ctx.clock,
      }),
    ).rejects.toThrow(/is not an AWS region name/);
  });
});

describe('iam join: accepted', () => {
  it('a good join through the API returns generation 1 of an identity for the token’s bot, every time', async () => {
    const keys = await testKeyPair(1);
    const client = new AuthorityClient(new InProcessTransport(ctx.authority), ctx.clock);
    const signRequest = (challenge: string) =>
      signedGetCallerIdentity({
        region: REGION,
        credentials: credentialsOf(BOT),
        challenge,
        clock: ctx.clock,
      });

    const first = await client.joinWithIam({
      tokenName: 'example-bot-iam',
      publicKeyPem: keys.publicKeyPem,
      signRequest,
    });
    const info = parseCertificate(first.certificatePem);
    expect(info.privateExtensions[OID_BOT_NAME]).toBe('example');
    expect(info.privateExtensions[OID_BOT_GENERATION]).toBe('1');
    expect(first.generation).toBe(1);
    expect(verifyIssuedBy(first.certificatePem, first.botCaPem, ctx.clock.now())).toBe(true);
    expect(info.publicKeyPem).toBe(keys.publicKeyPem);

    // The token is not consumed: the bot joins again on its next run, again as generation 1.
    const second = await client.joinWithIam({
      tokenName: 'example-bot-iam',
      publicKeyPem: keys.publicKeyPem,
      signRequest,
    });
    expect(second.generation).toBe(1);
    expect(second.serial).not.toBe(first.serial);

    expect(ctx.forwarded).toEqual([
      'https://sts.eu-west-1.amazonaws.com/',
      'https://sts.eu-west-1.amazonaws.com/',
    ]);
    const joins = ctx.audit.events.filter((e) => e.event === 'bot.join');
    expect(joins).toHaveLength(2);
    for (const event of joins)
      expect(event).toMatchObject({
        outcome: 'success',
        bot: 'example',
        name: 'example-bot-iam',
        generation: 1,
        reason: `iam: AWS account ${ACCOUNT}, ARN ${BOT.arn}`,
      });
  });

  it('accepts the global endpoint sts.amazonaws.com (signed for us-east-1)', async () => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signCustom({
      hostname: 'sts.amazonaws.com',
      region: 'us-east-1',
      body: GET_CALLER_IDENTITY_BODY,
      challenge,
    });
    const identity = await join(challengeId, stsRequest);
    expect(identity.generation).toBe(1);
    expect(sts.requests.at(-1)).toMatchObject({ host: 'sts.amazonaws.com', outcome: 'OK' });
  });
});

describe('iam join: the China partition', () => {
  it.each(['cn-north-1', 'cn-northwest-1'])(
    'accepts sts.%s.amazonaws.com.cn signed for its own region, and forwards it there',
    async (region) => {
      const { challengeId, challenge } = await ctx.authority.createChallenge();
      const stsRequest = await signedGetCallerIdentity({
        region,
        credentials: credentialsOf(BOT),
        challenge,
        clock: ctx.clock,
      });
      expect((await join(challengeId, stsRequest)).generation).toBe(1);
      expect(ctx.forwarded).toEqual([`https://sts.${region}.amazonaws.com.cn/`]);
      expect(sts.requests.at(-1)).toMatchObject({ host: `sts.${region}.amazonaws.com.cn`, outcome: 'OK' });
    },
  );

  it.each([
    [
      'a China region under amazonaws.com',
      'sts.cn-north-1.amazonaws.com',
      'cn-north-1',
      /is not an AWS STS endpoint/,
    ],
    [
      'another region under amazonaws.com.cn',
      'sts.eu-west-1.amazonaws.com.cn',
      'eu-west-1',
      /is not an AWS STS endpoint/,
    ],
    [
      'a global endpoint under amazonaws.com.cn',
      'sts.amazonaws.com.cn',
      'cn-north-1',
      /is not an AWS STS endpoint/,
    ],
    [
      'a China host signed for the other China region',
      'sts.cn-north-1.amazonaws.com.cn',
      'cn-northwest-1',
      /the signature is scoped to region cn-northwest-1, but the request goes to sts\.cn-north-1\.amazonaws\.com\.cn/,
    ],
  ])('refuses %s before any forwarding', async (_what, hostname, region, message) => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signCustom({ hostname, region, body: GET_CALLER_IDENTITY_BODY, challenge });
    await expectRefused(join(challengeId, stsRequest), message);
    expect(ctx.forwarded).toHaveLength(0);
  });
});

describe('iam join: refused', () => {
  it('a replayed request (same challenge) is refused without reaching STS', async () => {
    const { challengeId, stsRequest } = await signedJoin();
    await join(challengeId, stsRequest);
    expect(ctx.forwarded).toHaveLength(1);

    await expectRefused(join(challengeId, stsRequest), /the challenge is unknown or was already used/);
    expect(ctx.forwarded).toHaveLength(1);
    expect(lastAudit()).toMatchObject({ event: 'bot.join', outcome: 'denied' });

    // The captured request with a fresh challenge id: its signed header holds the old challenge.
    const fresh = await ctx.authority.createChallenge();
    await expectRefused(
      join(fresh.challengeId, stsRequest),
      /x-broker-challenge header does not hold this join/,
    );
    expect(ctx.forwarded).toHaveLength(1);
  });

  it('two concurrent joins with one challenge: exactly one succeeds (compare-and-swap)', async () => {
    const { challengeId, stsRequest } = await signedJoin();
    const results = await Promise.allSettled([join(challengeId, stsRequest), join(challengeId, stsRequest)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect(rejected?.reason).toBeInstanceOf(AccessDeniedError);
  });

  it('a challenge from another authority instance is refused', async () => {
    const otherStore = new MemoryStateStore();
    const other = new Authority({ store: otherStore, audit: new MemoryAuditLog(), clock: ctx.clock });
    const { challengeId, stsRequest } = await signedJoin(BOT, other);
    await expectRefused(join(challengeId, stsRequest), /the challenge is unknown or was already used/);
    expect(ctx.forwarded).toHaveLength(0);
  });

  it('an expired challenge is refused', async () => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    ctx.clock.advance(5 * 60_000 + 1_000);
    stsClock.advance(5 * 60_000 + 1_000);
    const stsRequest = await signedGetCallerIdentity({
      region: REGION,
      credentials: credentialsOf(BOT),
      challenge,
      clock: ctx.clock,
    });
    await expectRefused(join(challengeId, stsRequest), /the challenge expired at/);
    expect(ctx.forwarded).toHaveLength(0);
  });

  it.each([
    ['another host', 'sts.evil.example', 'us-east-1', /"sts\.evil\.example" is not an AWS STS endpoint/],
    [
      'IAM instead of STS',
      'iam.amazonaws.com',
      'us-east-1',
      /"iam\.amazonaws\.com" is not an AWS STS endpoint/,
    ],
    [
      'a look-alike domain',
      'sts.eu-west-1.amazonaws.com.evil.example',
      'eu-west-1',
      /is not an AWS STS endpoint/,
    ],
    ['an unknown region', 'sts.xx-fake-1.amazonaws.com', 'xx-fake-1', /is not an AWS STS endpoint/],
    [
      'a partition this authority does not target',
      'sts.eusc-de-east-1.amazonaws.eu',
      'eusc-de-east-1',
      /is not an AWS STS endpoint/,
    ],
  ])('a request to %s is refused before any forwarding', async (_what, hostname, region, message) => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signCustom({ hostname, region, body: GET_CALLER_IDENTITY_BODY, challenge });
    await expectRefused(join(challengeId, stsRequest), message);
    expect(ctx.forwarded).toHaveLength(0);
  });

  it.each([
    ['plain http', { url: 'http://sts.eu-west-1.amazonaws.com/' }, /must be https/],
    ['a port', { url: 'https://sts.eu-west-1.amazonaws.com:8443/' }, /must be exactly https:\/\/sts/],
    ['a path', { url: 'https://sts.eu-west-1.amazonaws.com/x' }, /must be exactly https:\/\/sts/],
    [
      'a query string',
      { url: 'https://sts.eu-west-1.amazonaws.com/?Action=GetSessionToken' },
      /must be exactly https:\/\/sts/,
    ],
    ['user info', { url: 'https://a@sts.eu-west-1.amazonaws.com/' }, /must be exactly https:\/\/sts/],
    ['GET', { method: 'GET' }, /method must be POST/],
  ])('a request with %s is refused before any forwarding', async (_what, change, message) => {
    const { challengeId, stsRequest } = await signedJoin();
    await expectRefused(join(challengeId, { ...stsRequest, ...change }), message);
    expect(ctx.forwarded).toHaveLength(0);
  });

  it.each([
    ['GetSessionToken', 'Action=GetSessionToken&Version=2011-06-15'],
    ['AssumeRole', 'Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::111111111111:role/x'],
    ['extra parameters', `${GET_CALLER_IDENTITY_BODY}&Foo=bar`],
  ])(
    'a correctly signed request with another body (%s) is refused before any forwarding',
    async (_what, body) => {
      const { challengeId, challenge } = await ctx.authority.createChallenge();
      const stsRequest = await signCustom({
        hostname: `sts.${REGION}.amazonaws.com`,
        region: REGION,
        body,
        challenge,
      });
      await expectRefused(join(challengeId, stsRequest), /the body must be exactly Action=GetCallerIdentity/);
      expect(ctx.forwarded).toHaveLength(0);
    },
  );

  it('a request whose challenge header is not signed is refused (STS would have accepted it)', async () => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signCustom({
      hostname: `sts.${REGION}.amazonaws.com`,
      region: REGION,
      body: GET_CALLER_IDENTITY_BODY,
      challenge,
      unsigned: [CHALLENGE_HEADER],
    });
    expect(stsRequest.headers.authorization).not.toContain(CHALLENGE_HEADER);
    expect(stsRequest.headers[CHALLENGE_HEADER]).toBe(challenge);
    await expectRefused(
      join(challengeId, stsRequest),
      /x-broker-challenge header must be among the signed headers/,
    );
    expect(ctx.forwarded).toHaveLength(0);
  });

  it('a signature scoped to another service or region is refused', async () => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signCustom({
      hostname: `sts.${REGION}.amazonaws.com`,
      region: 'us-east-1',
      body: GET_CALLER_IDENTITY_BODY,
      challenge,
    });
    await expectRefused(
      join(challengeId, stsRequest),
      /scoped to region us-east-1, but the request goes to sts\.eu-west-1/,
    );
    expect(() =>
      checkStsRequest(
        {
          ...stsRequest,
          headers: {
            ...stsRequest.headers,
            authorization: (stsRequest.headers.authorization as string).replace('/sts/', '/iam/'),
          },
        },
        challenge,
      ),
    ).toThrow(/scoped to service iam, not sts/);
  });

  it('a tampered signature is refused by STS (SignatureDoesNotMatch)', async () => {
    const { challengeId, stsRequest } = await signedJoin();
    const auth = stsRequest.headers.authorization as string;
    const tampered = auth.replace(/.$/, auth.endsWith('0') ? '1' : '0');
    const err = await expectRefused(
      join(challengeId, { ...stsRequest, headers: { ...stsRequest.headers, authorization: tampered } }),
      /AWS STS rejected the signed GetCallerIdentity request: SignatureDoesNotMatch: The request signature we calculated/,
    );
    expect(err.message).not.toContain(tampered.slice(-64));
    expect(ctx.forwarded).toHaveLength(1);
    expect(sts.requests.at(-1)?.outcome).toBe('SignatureDoesNotMatch');
  });

  it('STS itself refuses a request whose signed challenge header was changed afterwards', async () => {
    // Verifier checks passed (the header equals the "challenge"), so only the signature protects the binding.
    const { stsRequest } = await signedJoin();
    const swapped = { ...stsRequest, headers: { ...stsRequest.headers, [CHALLENGE_HEADER]: 'f'.repeat(64) } };
    const err = await verifyIamJoin(swapped, 'f'.repeat(64), { fetch: sts.fetch }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IamJoinRefusedError);
    expect((err as Error).message).toMatch(/SignatureDoesNotMatch/);
  });

  it('a request signed with a secret STS does not know is refused (SignatureDoesNotMatch)', async () => {
    const { challengeId, stsRequest } = await signedJoin({ ...BOT, secretAccessKey: 'a-guessed-secret' });
    await expectRefused(join(challengeId, stsRequest), /SignatureDoesNotMatch/);
  });

  it('a request signed 20 minutes ago is refused by STS (signature expired)', async () => {
    const { challengeId, challenge } = await ctx.authority.createChallenge();
    const stsRequest = await signedGetCallerIdentity({
      region: REGION,
      credentials: credentialsOf(BOT),
      challenge,
      clock: new ManualClock(new Date(START.getTime() - 20 * 60_000)),
    });
    await expectRefused(join(challengeId, stsRequest), /SignatureDoesNotMatch: Signature expired/);
  });

  it('expired session credentials are refused by STS (ExpiredToken)', async () => {
    const { challengeId, stsRequest } = await signedJoin(EXPIRED_SESSION);
    await expectRefused(
      join(challengeId, stsRequest),
      /ExpiredToken: The security token included in the request is expired/,
    );
  });

  it.each([
    ['another role in the allowed account', OTHER_ROLE],
    ['the allowed role name in another account', OTHER_ACCOUNT],
  ])('%s is refused with the ARN in the message and the audit', async (_what, principal) => {
    const { challengeId, stsRequest } = await signedJoin(principal);
    const err = await expectRefused(
      join(challengeId, stsRequest),
      /matches no allow rule of iam token "example-bot-iam"/,
    );
    expect(err.message).toContain(`the AWS identity ${principal.arn} (account ${principal.account})`);
    expect(ctx.forwarded).toHaveLength(1);
    const event = lastAudit();
    expect(event).toMatchObject({
      event: 'bot.join',
      outcome: 'denied',
      bot: 'example',
      name: 'example-bot-iam',
    });
    expect(event?.reason).toContain(principal.arn);
    expect(event?.reason).toContain(`AWS account ${principal.account}`);
  });

  it('a locked bot is refused after STS, with the caller in the audit', async () => {
    await ctx.authority.addLock('example', 'incident 42');
    const { challengeId, stsRequest } = await signedJoin();
    await expectRefused(join(challengeId, stsRequest), /bot "example" is locked \(incident 42\)/);
    expect(lastAudit()?.reason).toContain(BOT.arn);
  });

  it('a token name that is not an iam token is refused, and a secret-looking name is never echoed', async () => {
    const { token } = await ctx.authority.addToken('example');
    const { challengeId, stsRequest } = await signedJoin();
    const err = await expectRefused(
      ctx.authority.joinWithIam({
        tokenName: token,
        challengeId,
        stsRequest,
        publicKeyPem: (await testKeyPair(1)).publicKeyPem,
      }),
      /there is no iam token with that name/,
    );
    expect(err.message).not.toContain(token);
    expect(JSON.stringify(ctx.audit.events)).not.toContain(token);
    expect(ctx.forwarded).toHaveLength(0);
  });

  it('allowedRegions narrows the accepted endpoints', () => {
    const request = {
      method: 'POST',
      url: 'https://sts.us-east-1.amazonaws.com/',
      headers: {},
      body: GET_CALLER_IDENTITY_BODY,
    };
    expect(() => checkStsRequest(request, 'c', ['eu-west-1'])).toThrow(IamJoinRefusedError);
    expect(() => checkStsRequest(request, 'c', ['eu-west-1'])).toThrow(/for one of eu-west-1/);
  });

  it('no audit event or error holds the signature or the credentials', async () => {
    const { challengeId, stsRequest } = await signedJoin(OTHER_ROLE);
    await join(challengeId, stsRequest).catch(() => undefined);
    const good = await signedJoin();
    await join(good.challengeId, good.stsRequest);
    const audit = JSON.stringify(ctx.audit.events);
    for (const request of [stsRequest, good.stsRequest]) {
      const signature = /Signature=([0-9a-f]{64})/.exec(
        request.headers.authorization as string,
      )?.[1] as string;
      expect(audit).not.toContain(signature);
      expect(audit).not.toContain(request.headers['x-broker-challenge'] as string);
    }
    expect(audit).not.toContain(BOT.sessionToken as string);
    expect(audit).not.toContain(BOT.accessKeyId);
  });
});

describe('iam join through the API handler', () => {
  it('an iam join without challengeId and stsRequest is a bad request', async () => {
    const response = await handleApiRequest(ctx.authority, {
      v: 1,
      type: 'join',
      requestId: 'req-0123456789',
      params: {
        joinMethod: 'iam',
        token: 'example-bot-iam',
        publicKeyPem: (await testKeyPair(1)).publicKeyPem,
      },
    });
    expect(response).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    if (!response.ok) expect(response.error.message).toMatch(/needs challengeId .* and stsRequest/);
  });

  it('a refused iam join answers access_denied with the reason', async () => {
    const { challengeId, stsRequest } = await signedJoin(OTHER_ROLE);
    const response = await handleApiRequest(ctx.authority, {
      v: 1,
      type: 'join',
      requestId: 'req-0123456789',
      params: {
        joinMethod: 'iam',
        token: 'example-bot-iam',
        publicKeyPem: (await testKeyPair(1)).publicKeyPem,
        challengeId,
        stsRequest,
      },
    });
    expect(response).toMatchObject({ ok: false, error: { code: 'access_denied' } });
    if (!response.ok) expect(response.error.message).toContain(OTHER_ROLE.arn);
  });
});
