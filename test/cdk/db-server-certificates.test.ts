/**
 * The database server certificate action (cdk/constructs/db-server-certificates.ts) in the shipped stack:
 * created by a db-server rotation or `dbServerCertificates`, it may read the table and sign digests with the
 * db-server CA's keys (the current one and the rotation's next one) and nothing else; the keys' policies let
 * it sign; no bot may invoke it; cdk-nag finds nothing.
 */
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import {
  actionsOf,
  exampleStack,
  inlineCode,
  lambdaEnv,
  logicalId,
  renderIntrinsic,
  resourcesOf,
  resourcesOfStatement,
  statementsOfRole,
} from '../support/cdk.js';

const code = {
  authority: inlineCode(),
  bot: inlineCode(),
  rotate: inlineCode(),
  serverCertificates: inlineCode(),
};

const keyArn = (template: Template, prefix: string) => ({
  'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', prefix), 'Arn'],
});

/** The "only these sign" deny statement of a key's policy, rendered. */
function signDeny(template: Template, keyPrefix: string): string {
  const key = resourcesOf(template, 'AWS::KMS::Key')[logicalId(template, 'AWS::KMS::Key', keyPrefix)];
  if (!key) throw new Error(`no key ${keyPrefix}`);
  const statements = (key.Properties.KeyPolicy as { Statement: { Sid?: string; Condition?: unknown }[] })
    .Statement;
  const deny = statements.find((s) => s.Sid?.startsWith('OnlyTheAuthority'));
  return JSON.stringify(deny?.Condition);
}

describe('DbServerCertificates', () => {
  it('signs only digests with the db-server CA keys, reads only its table, and outputs its name', () => {
    const stack = exampleStack({ nextCaKeys: ['db-server'], code });
    const template = Template.fromStack(stack);
    template.hasOutput('DbServerCertFunctionName', {});
    const role = logicalId(template, 'AWS::IAM::Role', 'DbServerCertificatesFunctionRole');
    const statements = statementsOfRole(template, role);
    expect(
      statements
        .flatMap(actionsOf)
        .filter((a) => !a.startsWith('logs:'))
        .sort(),
    ).toEqual(['dynamodb:GetItem', 'kms:Sign']);
    const sign = statements.find((s) => actionsOf(s).includes('kms:Sign'));
    expect(
      resourcesOfStatement(sign as (typeof statements)[number])
        .map(renderIntrinsic)
        .sort(),
    ).toEqual(
      [keyArn(template, 'AuthorityCaKeydbserver'), keyArn(template, 'CaRotationNextCaKeydbserver')]
        .map(renderIntrinsic)
        .sort(),
    );
    expect(sign?.Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'RSASSA_PKCS1_V1_5_SHA_256', 'kms:MessageType': 'DIGEST' },
    });
    const read = statements.find((s) => actionsOf(s).includes('dynamodb:GetItem'));
    expect(resourcesOfStatement(read as (typeof statements)[number])).toEqual([
      { 'Fn::GetAtt': [logicalId(template, 'AWS::DynamoDB::Table', 'AuthorityStateTable'), 'Arn'] },
    ]);
    // Its environment names the table and the stack, nothing of the authority's configuration.
    const env = lambdaEnv(template, 'DbServerCertificatesFunction');
    expect(env.BROKER_TABLE_NAME).toBeDefined();
    expect(Object.keys(env).filter((k) => /RESOURCES|_KEY/.test(k))).toEqual([]);

    // The db-server keys let it sign; the other CA keys still let only the authority sign.
    expect(signDeny(template, 'AuthorityCaKeydbserver')).toContain(role);
    expect(signDeny(template, 'CaRotationNextCaKeydbserver')).toContain(role);
    for (const other of [
      'AuthorityCaKeybot',
      'AuthorityCaKeydbclient',
      'AuthorityDbClientCaKeyorderspostgres',
    ])
      expect(signDeny(template, other)).not.toContain(role);

    // No bot may invoke it: each bot invokes the authority only.
    const fn = logicalId(template, 'AWS::Lambda::Function', 'DbServerCertificatesFunction');
    for (const [id] of Object.entries(resourcesOf(template, 'AWS::IAM::Role')).filter(([id]) =>
      id.startsWith('Bot'),
    ))
      expect(JSON.stringify(statementsOfRole(template, id))).not.toContain(fn);

    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(
      report.violations.map(
        (v) => `${v.ruleName} ${v.violatingResources.map((r) => r.resourceLogicalId).join(',')}`,
      ),
    ).toEqual([]);
  }, 120_000);

  it('without a rotation signs with the current db-server key only, when asked for; grantSign gives invoke only', () => {
    const stack = exampleStack({ dbServerCertificates: true, code });
    const operator = new iam.Role(stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
    stack.serverCertificates?.grantSign(operator);
    const template = Template.fromStack(stack);
    const role = logicalId(template, 'AWS::IAM::Role', 'DbServerCertificatesFunctionRole');
    const sign = statementsOfRole(template, role).find((s) => actionsOf(s).includes('kms:Sign'));
    expect(resourcesOfStatement(sign as NonNullable<typeof sign>)).toEqual([
      keyArn(template, 'AuthorityCaKeydbserver'),
    ]);
    expect(
      statementsOfRole(template, logicalId(template, 'AWS::IAM::Role', 'Operator')).map((s) => [
        actionsOf(s),
        resourcesOfStatement(s),
      ]),
    ).toEqual([
      [
        ['lambda:InvokeFunction'],
        [
          {
            'Fn::GetAtt': [
              logicalId(template, 'AWS::Lambda::Function', 'DbServerCertificatesFunction'),
              'Arn',
            ],
          },
        ],
      ],
    ]);
  }, 60_000);

  it('is not created unless asked for or a db-server rotation needs it', () => {
    expect(exampleStack({ code }).serverCertificates).toBeUndefined();
    expect(exampleStack({ nextCaKeys: ['bot'], code }).serverCertificates).toBeUndefined();
    expect(Template.fromStack(exampleStack({ code })).findOutputs('DbServerCertFunctionName')).toEqual({});
  });
});
