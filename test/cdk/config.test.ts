import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBrokerConfig } from '../../cdk/config.js';
import { functionBundle } from '../../cdk/constructs/broker-function.js';
import { cdkJsonContext, exampleStack, inlineCode, read, resourcesOf } from '../support/cdk.js';

const dir = mkdtempSync(path.join(tmpdir(), 'broker-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const load = (context: Record<string, unknown>) => loadBrokerConfig(new App({ context }).node);
const file = (name: string, text: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('loadBrokerConfig', () => {
  it('reads the example configuration cdk.json points at, naming each bot after its file', () => {
    const config = load(cdkJsonContext());
    expect(config.stackName).toBe('Broker');
    expect(config.resourcesFile).toBe('examples/aws/resources.yaml');
    expect(config.bots.map((b) => [b.name, b.configFile])).toEqual([
      ['orders', 'examples/aws/bots/orders.yaml'],
      ['reports', 'examples/aws/bots/reports.yaml'],
    ]);
    expect(config.bots[0]?.configYaml).toBe(read('examples/aws/bots/orders.yaml'));
    expect(config.alarmTopic).toBe(true);
    expect(config.env).toBeUndefined();
  });

  it('takes -c values as strings: bot lists, flags, stack name, cluster, email and environment', () => {
    const bot = file('payments.yml', read('examples/aws/bots/orders.yaml'));
    const config = load({
      resources: 'examples/aws/resources.yaml',
      bots: ` ${bot} ,`,
      alarmTopic: 'false',
      alarmEmail: 'ops@example.com',
      stackName: 'BrokerProd',
      clusterName: 'prod',
      account: '111111111111',
      region: 'eu-west-1',
    });
    expect(config.bots.map((b) => b.name)).toEqual(['payments']);
    expect(config).toMatchObject({
      stackName: 'BrokerProd',
      clusterName: 'prod',
      alarmTopic: false,
      alarmEmail: 'ops@example.com',
      env: { account: '111111111111', region: 'eu-west-1' },
    });
  });

  it('says which context key is missing and how to pass it', () => {
    expect(() => load({})).toThrow(/context resources is not set: pass -c resources=PATH/);
    expect(() => load({ resources: 'examples/aws/resources.yaml' })).toThrow(
      /context bots is not set: pass -c bots=a\.yaml,b\.yaml/,
    );
  });

  it('names an unreadable file and the key that named it', () => {
    expect(() => load({ resources: path.join(dir, 'nope.yaml'), bots: 'x.yaml' })).toThrow(
      /context resources: cannot read .*nope\.yaml \(ENOENT.*\); pass an existing file with -c resources=PATH/,
    );
  });

  it('validates every file with the broker parsers, errors naming the file and the path inside it', () => {
    const resources = file(
      'bad-resources.yaml',
      'kind: role\nversion: v6\nmetadata: { name: "bad name" }\nspec: {}\n',
    );
    expect(() => load({ resources, bots: 'x.yaml' })).toThrow(/bad-resources\.yaml.*metadata\.name/s);
    const bot = file(
      'bad-bot.yaml',
      read('examples/aws/bots/orders.yaml').replace('renewal_interval: 20m', 'renewal_interval: 2h'),
    );
    expect(() => load({ resources: 'examples/aws/resources.yaml', bots: bot })).toThrow(
      /bad-bot\.yaml.*renewal_interval.*must be shorter than credential_ttl/s,
    );
  });

  it('refuses an alarmTopic that is not true or false', () => {
    expect(() => load({ ...cdkJsonContext(), alarmTopic: 'yes' })).toThrow(
      /context alarmTopic is "yes": use true or false/,
    );
  });
  it('reads the CA key spec and the CAs to rotate next, refusing a key spec KMS has no CA use for', () => {
    const config = load({ ...cdkJsonContext(), caKeySpec: 'ECC_NIST_P256', nextCaKeys: ' db-server, bot ,' });
    expect(config).toMatchObject({ caKeySpec: 'ECC_NIST_P256', nextCaKeys: ['db-server', 'bot'] });
    expect(load(cdkJsonContext())).not.toHaveProperty('nextCaKeys');
    expect(() => load({ ...cdkJsonContext(), caKeySpec: 'RSA_4096' })).toThrow(
      /context caKeySpec is "RSA_4096": use RSA_2048 or ECC_NIST_P256/,
    );
  });
});

describe('BrokerStack with nextCaKeys', () => {
  it('adds the rotation action and one next key per CA named, with the CA key spec, and outputs its name', () => {
    const stack = exampleStack({
      caKeySpec: 'ECC_NIST_P256',
      nextCaKeys: ['db-server', 'bot'],
      code: {
        authority: inlineCode(),
        bot: inlineCode(),
        rotate: inlineCode(),
        serverCertificates: inlineCode(),
      },
    });
    const template = Template.fromStack(stack);
    const nextKeys = Object.values(resourcesOf(template, 'AWS::KMS::Key')).filter((k) =>
      String(k.Properties.Description).startsWith('next key of the'),
    );
    expect(nextKeys.map((k) => k.Properties.Description).sort()).toEqual([
      'next key of the bot CA, for its rotation (broker auth rotate)',
      'next key of the db-server CA, for its rotation (broker auth rotate)',
    ]);
    for (const key of nextKeys) expect(key.Properties.KeySpec).toBe('ECC_NIST_P256');
    expect(stack.rotation?.nextKeys).toHaveProperty('bot');
    template.hasOutput('RotationFunctionName', {});
    // A db-server rotation needs new server certificates at update_servers: the action that signs them.
    template.hasOutput('DbServerCertFunctionName', {});
    const report = new AwsSolutionsChecks().validateScope(stack);
    expect(
      report.violations.map(
        (v) => `${v.ruleName} ${v.violatingResources.map((r) => r.resourceLogicalId).join(',')}`,
      ),
    ).toEqual([]);
  }, 120_000);

  it('adds nothing for rotation without nextCaKeys', () => {
    const stack = exampleStack();
    expect(stack.rotation).toBeUndefined();
    expect(Template.fromStack(stack).findOutputs('RotationFunctionName')).toEqual({});
  });
});

describe('functionBundle', () => {
  it('tells to run the build when a Lambda bundle is missing', () => {
    expect(() => functionBundle('authority', dir)).toThrow(
      /dist\/functions\/authority\/index\.mjs does not exist: run `npm run build` before `cdk synth` or `cdk deploy`/,
    );
  });
});
