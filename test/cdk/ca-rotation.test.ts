import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import { Authority } from '../../cdk/constructs/authority.js';
import { CaRotation } from '../../cdk/constructs/ca-rotation.js';
import {
  actionsOf,
  inlineCode,
  lambdaEnv,
  logicalId,
  read,
  resourcesOf,
  resourcesOfStatement,
  statementsOfRole,
} from '../support/cdk.js';

/** The example authority with a rotation of `nextCaKeys`, synthesized without bundling. */
function synth(nextCaKeys: string[]) {
  const stack = new Stack(new App(), 'S');
  const authority = new Authority(stack, 'Authority', {
    resourcesYaml: read('examples/aws/resources.yaml'),
    code: inlineCode(),
  });
  const service = Object.keys(authority.dbClientCaKeys)[0] as string;
  const rotation = new CaRotation(stack, 'Rotation', {
    authority,
    nextCaKeys: nextCaKeys.map((n) => n.replace('<service>', service)),
    code: inlineCode(),
  });
  const operator = new iam.Role(stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
  rotation.grantRotate(operator);
  return { template: Template.fromStack(stack), stack, service, authority, rotation };
}

const ref = (template: Template, prefix: string) => ({
  'Fn::GetAtt': [logicalId(template, 'AWS::KMS::Key', prefix), 'Arn'],
});

describe('CaRotation', () => {
  it('creates the next key of each named CA and gives the rotation action only what a rotation needs', () => {
    const { template, service } = synth(['db-server', 'db-client/<service>']);
    const keys = resourcesOf(template, 'AWS::KMS::Key');
    const next = Object.keys(keys).filter((id) => id.startsWith('RotationNextCaKey'));
    expect(next).toHaveLength(2);
    for (const id of next)
      expect(keys[id]?.Properties).toMatchObject({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    const env = lambdaEnv(template, 'RotationFunction');
    expect(JSON.stringify(env.BROKER_CA_NEXT_KEYS)).toContain(`db-client/${service}`);
    expect(env.BROKER_TABLE_NAME).toBeDefined();

    const rotator = statementsOfRole(template, logicalId(template, 'AWS::IAM::Role', 'RotationFunctionRole'));
    const signs = rotator.filter((s) => actionsOf(s).includes('kms:Sign'));
    expect(signs).toHaveLength(1);
    // It signs only with the next keys (self-signing their CA certificates), only digests.
    expect(resourcesOfStatement(signs[0] as (typeof rotator)[number]).sort()).toEqual(
      [ref(template, 'RotationNextCaKeydbserver'), ref(template, 'RotationNextCaKeydbclient')].sort(),
    );
    expect(signs[0]?.Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'RSASSA_PKCS1_V1_5_SHA_256', 'kms:MessageType': 'DIGEST' },
    });
    const deletion = rotator.find((s) => actionsOf(s).includes('kms:ScheduleKeyDeletion'));
    expect(resourcesOfStatement(deletion as (typeof rotator)[number])).toHaveLength(Object.keys(keys).length);
    // Besides writing its own log group (as every broker function does), nothing else.
    expect(
      rotator
        .flatMap(actionsOf)
        .filter((a) => !a.startsWith('logs:'))
        .sort(),
    ).toEqual(
      [
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
        'kms:GetPublicKey',
        'kms:ScheduleKeyDeletion',
        'kms:Sign',
      ].sort(),
    );

    // The authority signs with the new key from update_clients on.
    const authority = statementsOfRole(
      template,
      logicalId(template, 'AWS::IAM::Role', 'AuthorityFunctionRole'),
    );
    const authoritySigns = authority
      .filter((s) => actionsOf(s).includes('kms:Sign'))
      .flatMap(resourcesOfStatement);
    expect(authoritySigns).toContainEqual(ref(template, 'RotationNextCaKeydbserver'));
    expect(authority.flatMap(actionsOf)).not.toContain('kms:ScheduleKeyDeletion');
  });

  it('only the operator granted it may invoke the rotation action', () => {
    const { template } = synth(['bot']);
    const operator = statementsOfRole(template, logicalId(template, 'AWS::IAM::Role', 'Operator'));
    expect(operator.map((s) => [actionsOf(s), resourcesOfStatement(s)])).toEqual([
      [
        ['lambda:InvokeFunction'],
        [{ 'Fn::GetAtt': [logicalId(template, 'AWS::Lambda::Function', 'RotationFunction'), 'Arn'] }],
      ],
    ]);
  });

  it('the next keys refuse every signer but the authority and the rotation action', () => {
    const { template } = synth(['db-server']);
    const key = resourcesOf(template, 'AWS::KMS::Key')[
      logicalId(template, 'AWS::KMS::Key', 'RotationNextCaKey')
    ];
    if (!key) throw new Error('no next key in the template');
    const deny = (
      key.Properties.KeyPolicy as { Statement: { Sid?: string; Condition?: unknown }[] }
    ).Statement.find((s) => s.Sid === 'OnlyTheAuthorityAndItsRotationSign');
    expect(JSON.stringify(deny?.Condition)).toContain(
      logicalId(template, 'AWS::IAM::Role', 'AuthorityFunctionRole'),
    );
    expect(JSON.stringify(deny?.Condition)).toContain(
      logicalId(template, 'AWS::IAM::Role', 'RotationFunctionRole'),
    );
  });

  it('refuses a name that is not one of the authority CAs, naming what is allowed', () => {
    expect(() => synth(['db-client/nope'])).toThrow(
      /nextCaKeys names "db-client\/nope".*use one of bot, db-server, db-client/,
    );
  });
});
