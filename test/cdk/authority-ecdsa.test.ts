import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { Authority } from '../../cdk/constructs/authority.js';
import { inlineCode, logicalId, read, resourcesOf, statementsOfRole } from '../support/cdk.js';

/** An authority with the example resources and `caKeySpec`, synthesized without bundling. */
function synth(caKeySpec?: string): Template {
  const stack = new Stack(new App(), 'S');
  new Authority(stack, 'Authority', {
    resourcesYaml: read('examples/aws/resources.yaml'),
    code: inlineCode(),
    ...(caKeySpec === undefined ? {} : { caKeySpec: caKeySpec as 'ECC_NIST_P256' }),
  });
  return Template.fromStack(stack);
}

describe('Authority caKeySpec', () => {
  it('ECC_NIST_P256: every CA key is a P-256 key and the authority may sign only with ECDSA_SHA_256 over digests', () => {
    const template = synth('ECC_NIST_P256');
    const keys = Object.values(resourcesOf(template, 'AWS::KMS::Key'));
    // Three shared CAs and one client CA per db resource of the example.
    expect(keys.length).toBe(5);
    for (const key of keys)
      expect(key.Properties).toMatchObject({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    const role = logicalId(template, 'AWS::IAM::Role', 'AuthorityFunctionRole');
    const sign = statementsOfRole(template, role).find((s) => s.Action === 'kms:Sign');
    expect(sign?.Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' },
    });
  });

  it('defaults to RSA_2048 with RSASSA_PKCS1_V1_5_SHA_256', () => {
    const template = synth();
    for (const key of Object.values(resourcesOf(template, 'AWS::KMS::Key')))
      expect(key.Properties.KeySpec).toBe('RSA_2048');
  });

  it('refuses another key spec, naming the prop, the value and what to use', () => {
    expect(() => synth('ECC_NIST_P384')).toThrow(/caKeySpec is "ECC_NIST_P384".*RSA_2048 or ECC_NIST_P256/);
  });
});
