/**
 * Issue 13, finding 10: iam token allow rules. `aws_arn` is matched segment by segment (`*` and `?` never
 * cross `/` or `:`), and a rule that constrains only the role session name (chosen by whoever calls
 * sts:AssumeRole) is refused when the token is created and never admits anyone at join time.
 */
import { describe, expect, it } from 'vitest';
import { arnMatches, arnPatternProblem } from '../../src/authority/arn.js';
import type { AwsCallerIdentity } from '../../src/authority/iam-join.js';
import { parseResources, type TokenResource } from '../../src/authority/resources.js';
import { ConfigError } from '../../src/config/errors.js';
import {
  CHALLENGE_HEADER,
  GET_CALLER_IDENTITY_BODY,
  type SignedStsRequest,
} from '../../src/credentials/iam.js';
import { AccessDeniedError } from '../../src/errors.js';
import { testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, nowSeconds, testKeyPair } from '../support/fixtures.js';

const ACCOUNT = '111111111111';
const sts = (resource: string) => `arn:aws:sts::${ACCOUNT}:${resource}`;

function iamTokenYaml(awsArn: string): string {
  return exampleResourcesYaml({
    db: null,
    extra: `kind: token
version: v2
metadata: { name: example-bot-iam }
spec:
  join_method: iam
  bot_name: example
  allow: [{ aws_account: "${ACCOUNT}", aws_arn: "${awsArn}" }]
`,
  });
}

function createError(awsArn: string): ConfigError {
  try {
    parseResources(iamTokenYaml(awsArn), 'token.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected aws_arn ${awsArn} to be refused`);
}

describe('arnMatches: segment by segment', () => {
  it.each([
    [sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot/fn')],
    [sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot/')],
    [sts('assumed-role/example-bot-*/*'), sts('assumed-role/example-bot-eu/fn')],
    [sts('assumed-role/example-bo?/i-?23'), sts('assumed-role/example-bot/i-123')],
    [sts('assumed-role/*/*'), sts('assumed-role/anything/at-all')],
    [`arn:aws:iam::${ACCOUNT}:user/ci/*`, `arn:aws:iam::${ACCOUNT}:user/ci/deployer`],
    [`arn:*:sts::${ACCOUNT}:assumed-role/r/*`, `arn:aws-us-gov:sts::${ACCOUNT}:assumed-role/r/s`],
  ])('%s matches %s', (pattern, arn) => {
    expect(arnMatches(pattern, arn)).toBe(true);
  });

  it.each([
    // The attack: a trailing `*` ran across the role/session boundary into another role's name.
    [sts('assumed-role/example-bot*'), sts('assumed-role/example-bot-role-admin/s')],
    [sts('assumed-role/example-bot*'), sts('assumed-role/example-bot/s')],
    [sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot-admin/s')],
    [sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot/a/b')],
    [`arn:aws:iam::${ACCOUNT}:user/ci/*`, `arn:aws:iam::${ACCOUNT}:user/ci/admins/root`],
    // `*` never crosses `:` either: one wildcard cannot stand for service, region and account.
    [`arn:aws:*:assumed-role/r/s`, sts('assumed-role/r/s')],
    [sts('assumed-role/example-bo?/*'), sts('assumed-role/example-bo/x')],
    [sts('assumed-role/example-bot/*'), `arn:aws:sts::222222222222:assumed-role/example-bot/fn`],
    // Regular-expression syntax is literal text in an ARN glob.
    [`^arn:aws:sts::${ACCOUNT}:assumed-role/.*$`, sts('assumed-role/example-bot/fn')],
  ])('%s does not match %s', (pattern, arn) => {
    expect(arnMatches(pattern, arn)).toBe(false);
  });
});

describe('arnPatternProblem', () => {
  it.each([
    sts('assumed-role/example-bot/*'),
    sts('assumed-role/example-*/*'),
    sts('assumed-role/*/*'),
    `arn:aws:iam::${ACCOUNT}:user/ci/*`,
    `arn:aws:iam::${ACCOUNT}:role/*`,
  ])('%s is a usable rule', (pattern) => {
    expect(arnPatternProblem(pattern)).toBeUndefined();
  });

  it.each([
    [sts('assumed-role/*/bot-session'), /only the session name/],
    [sts('assumed-role/?*/bot-*'), /only the session name/],
    [sts('*/*/bot-*'), /only the session name/],
    [sts('assumed-role/example-bot*'), /assumed-role\/ROLE\/SESSION/],
    [sts('assumed-role/example-bot/x/*'), /assumed-role\/ROLE\/SESSION/],
    [sts('*'), /one segment/],
    ['*', /not an ARN/],
    ['arn:aws:*:assumed-role/r/s', /not an ARN/],
    [`^arn:aws:sts::${ACCOUNT}:assumed-role/.*$`, /not a regular expression/],
  ])('%s is refused', (pattern, message) => {
    expect(arnPatternProblem(pattern)).toMatch(message);
  });
});

describe('creating an iam token', () => {
  it('refuses a rule whose role is a wildcard and only the session name is constrained, saying why', () => {
    const err = createError(sts('assumed-role/*/example-bot-function'));
    expect(err.message).toContain('spec.allow.0.aws_arn');
    expect(err.message).toMatch(/only the session name/);
    expect(err.message).toMatch(/whoever calls sts:AssumeRole chooses it/);
  });

  it('refuses a trailing * that used to run from the role name into the session name', () => {
    const err = createError(sts('assumed-role/example-bot*'));
    expect(err.message).toMatch(/assumed-role\/ROLE\/SESSION/);
  });

  it('refuses an aws_arn of another account than aws_account', () => {
    const err = createError('arn:aws:sts::222222222222:assumed-role/example-bot/*');
    expect(err.message).toMatch(/account 222222222222.*aws_account 111111111111/);
  });

  it('accepts a rule naming the role', () => {
    const resources = parseResources(iamTokenYaml(sts('assumed-role/example-bot/*')), 'token.yaml');
    expect(resources.map((r) => r.kind)).toContain('token');
  });
});

describe('iam join: allow rules stored before this check (or written around the parser)', () => {
  const START = nowSeconds();
  /** The request the bot would sign; the STS double below answers for it without reading it. */
  const stsRequest = (challenge: string): SignedStsRequest => ({
    method: 'POST',
    url: 'https://sts.eu-west-1.amazonaws.com/',
    headers: { [CHALLENGE_HEADER]: challenge },
    body: GET_CALLER_IDENTITY_BODY,
  });

  /** An authority whose iam token carries `awsArn` as stored, and whose STS answers with `caller`. */
  async function joinAs(awsArn: string, callerArn: string) {
    const caller: AwsCallerIdentity = { account: ACCOUNT, arn: callerArn, userId: 'AROATEST:s' };
    const { authority } = await testAuthority({
      start: START,
      clusterName: 'iam-arn',
      resources: exampleResourcesYaml({ db: null }),
      with: { iamVerifier: async () => caller },
    });
    const token: TokenResource = {
      kind: 'token',
      version: 'v2',
      metadata: { name: 'legacy-iam' },
      spec: { join_method: 'iam', bot_name: 'example', allow: [{ aws_account: ACCOUNT, aws_arn: awsArn }] },
    };
    await authority.createResources([token]);
    const { challengeId, challenge } = await authority.createChallenge();
    return authority.joinWithIam({
      tokenName: 'legacy-iam',
      challengeId,
      stsRequest: stsRequest(challenge),
      publicKeyPem: (await testKeyPair(1)).publicKeyPem,
    });
  }

  it('the role named by the rule joins', async () => {
    const joined = await joinAs(sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot/fn'));
    expect(joined.certificatePem).toContain('-----BEGIN CERTIFICATE-----');
  });

  it.each([
    // `example-bot*` was meant as "the example-bot role"; as a string glob it admitted every role starting so.
    [sts('assumed-role/example-bot*'), sts('assumed-role/example-bot-role-admin/session')],
    [sts('assumed-role/example-bot/*'), sts('assumed-role/example-bot-admin/fn')],
    // Any role in the account that names its session "bot-…" (the caller of AssumeRole picks the name).
    [sts('assumed-role/*/bot-*'), sts('assumed-role/intern/bot-1')],
  ])('rule %s refuses %s', async (awsArn, callerArn) => {
    const err = await joinAs(awsArn, callerArn).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect((err as Error).message).toMatch(/matches no allow rule/);
  });
});
