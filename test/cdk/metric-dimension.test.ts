import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { BrokerStack } from '../../cdk/broker-stack.js';
import { exampleProps, lambdaEnv, resourcesOf, testApp } from '../support/cdk.js';

/** The Stack dimension of every SecondsToExpiry alarm, and the BROKER_STACK_NAME of every bot Lambda. */
function stackDimensions(template: Template): { alarms: unknown[]; functions: unknown[] } {
  const alarms = Object.values(resourcesOf(template, 'AWS::CloudWatch::Alarm'))
    .filter((a) => a.Properties.MetricName === 'SecondsToExpiry')
    .map((a) => {
      const dims = a.Properties.Dimensions as { Name: string; Value: unknown }[];
      expect(dims.map((d) => d.Name).sort()).toEqual(['Output', 'Stack']);
      return dims.find((d) => d.Name === 'Stack')?.Value;
    });
  const functions = ['orders', 'reports'].map(
    (bot) => lambdaEnv(template, `Bot${bot}Function`).BROKER_STACK_NAME,
  );
  return { alarms, functions };
}

describe('the expiry metric is unique per stack', () => {
  it('two stacks in one app: each alarm and each bot Lambda carry their own stack name as the Stack dimension', {
    timeout: 180_000,
  }, () => {
    const app = testApp();
    const stagingStack = new BrokerStack(app, 'BrokerStaging', exampleProps());
    const productionStack = new BrokerStack(app, 'BrokerProduction', exampleProps());
    const staging = Template.fromStack(stagingStack);
    const production = Template.fromStack(productionStack);
    const a = stackDimensions(staging);
    const b = stackDimensions(production);
    expect(a.alarms).toEqual(['BrokerStaging', 'BrokerStaging', 'BrokerStaging']);
    expect(a.functions).toEqual(['BrokerStaging', 'BrokerStaging']);
    expect(b.alarms).toEqual(['BrokerProduction', 'BrokerProduction', 'BrokerProduction']);
    expect(b.functions).toEqual(['BrokerProduction', 'BrokerProduction']);
  });

  it('the authority denials: the metric filter takes Stack from the audit line, which BROKER_STACK_NAME fills', () => {
    const app = testApp();
    const template = Template.fromStack(new BrokerStack(app, 'BrokerStaging', exampleProps()));
    const [filter] = Object.values(resourcesOf(template, 'AWS::Logs::MetricFilter'));
    expect(filter?.Properties.MetricTransformations).toEqual([
      {
        MetricNamespace: 'Broker',
        MetricName: 'AuthorityDenials',
        MetricValue: '1',
        Dimensions: [{ Key: 'Stack', Value: '$.stack' }],
      },
    ]);
    const [alarm] = Object.values(resourcesOf(template, 'AWS::CloudWatch::Alarm')).filter(
      (a) => a.Properties.MetricName === 'AuthorityDenials',
    );
    expect(alarm?.Properties.Dimensions).toEqual([{ Name: 'Stack', Value: 'BrokerStaging' }]);
    expect(lambdaEnv(template, 'AuthorityFunction').BROKER_STACK_NAME).toBe('BrokerStaging');
  }, 120_000);
});
