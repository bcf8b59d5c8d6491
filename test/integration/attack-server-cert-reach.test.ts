/**
 * Who can reach the database server certificate action (cdk/constructs/db-server-certificates.ts) in the
 * synthesized stack, looked at as an attacker holding any role of it would: every IAM statement that allows
 * invoking a Lambda (by name, by a wildcard ARN, by `lambda:*` or `*`), every resource policy on the
 * function, a function URL, a schedule or event source that would run it. Only the operator role the app
 * granted may invoke it; the bots, the scheduler and the authority may not.
 */
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import {
  actionsOf,
  exampleStack,
  inlineCode,
  logicalId,
  renderIntrinsic,
  resourcesOf,
  resourcesOfStatement,
  type Statement,
} from '../support/cdk.js';

const code = {
  authority: inlineCode(),
  bot: inlineCode(),
  rotate: inlineCode(),
  serverCertificates: inlineCode(),
};

/** Whether `action` (an IAM action pattern) covers lambda:InvokeFunction. */
const coversInvoke = (action: string): boolean =>
  new RegExp(`^${action.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i').test(
    'lambda:InvokeFunction',
  );

/** Every Allow statement of the template with the principal it is attached to (role, user or group ids). */
function allowStatements(template: Template): { holders: string[]; statement: Statement }[] {
  const out: { holders: string[]; statement: Statement }[] = [];
  const refs = (list: unknown) =>
    ((list as { Ref?: string }[] | undefined) ?? []).map((r) => r.Ref ?? JSON.stringify(r));
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy'])
    for (const policy of Object.values(resourcesOf(template, type))) {
      const p = policy.Properties;
      const holders = [...refs(p.Roles), ...refs(p.Users), ...refs(p.Groups)];
      for (const statement of (p.PolicyDocument as { Statement: Statement[] }).Statement)
        out.push({ holders, statement });
    }
  for (const [id, role] of Object.entries(resourcesOf(template, 'AWS::IAM::Role')))
    for (const inline of (role.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]) ?? [])
      for (const statement of inline.PolicyDocument.Statement) out.push({ holders: [id], statement });
  return out.filter((s) => s.statement.Effect === 'Allow');
}

/** The Allow statements that let their holders invoke the function `fn` (by its ARN or a wildcard). */
function reaching(template: Template, fn: string) {
  return allowStatements(template).filter(({ statement }) => {
    if (!actionsOf(statement).some(coversInvoke)) return false;
    return resourcesOfStatement(statement).some((r) => {
      const text = JSON.stringify(r).includes(fn) ? fn : renderIntrinsic(r);
      return text === fn || text === '*' || /:function:\*|:function:[^:]*\*$/.test(text);
    });
  });
}

describe('the server certificate action is reachable by the operator role only', () => {
  it('no other principal may invoke it, by name or wildcard; no resource policy, URL or schedule runs it', () => {
    const stack = exampleStack({ nextCaKeys: ['db-server'], dbServerCertificates: true, code });
    const operator = new iam.Role(stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
    stack.serverCertificates?.grantSign(operator);
    const template = Template.fromStack(stack);
    const fn = logicalId(template, 'AWS::Lambda::Function', 'DbServerCertificatesFunction');
    const operatorId = logicalId(template, 'AWS::IAM::Role', 'Operator');

    expect(reaching(template, fn).map((r) => r.holders)).toEqual([[operatorId]]);
    // The same look finds the bots' own grant on the authority function (the check can see a grant).
    const authorityFn = logicalId(template, 'AWS::Lambda::Function', 'AuthorityFunction');
    expect(
      reaching(template, authorityFn)
        .flatMap((r) => r.holders)
        .some((h) => h.startsWith('Bot')),
    ).toBe(true);

    // A resource policy would let a principal outside the stack invoke it; a URL would open it to HTTP.
    for (const type of ['AWS::Lambda::Permission', 'AWS::Lambda::Url', 'AWS::Lambda::EventSourceMapping'])
      for (const r of Object.values(resourcesOf(template, type)))
        expect(JSON.stringify(r.Properties)).not.toContain(fn);
    for (const type of ['AWS::Scheduler::Schedule', 'AWS::Events::Rule'])
      for (const r of Object.values(resourcesOf(template, type)))
        expect(JSON.stringify(r.Properties)).not.toContain(fn);
  }, 120_000);

  it('the pattern check itself: lambda:*, * and Invoke* cover InvokeFunction; other actions do not', () => {
    expect(['lambda:*', '*', 'lambda:Invoke*', 'LAMBDA:invokefunction'].every(coversInvoke)).toBe(true);
    expect(['lambda:GetFunction', 'lambda:InvokeAsync2', 'kms:Sign'].some(coversInvoke)).toBe(false);
  });
});
