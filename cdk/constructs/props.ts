import { Duration, Token } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * A construct prop (or a value in the configuration a construct was given) that cannot work. Thrown while
 * the construct is built, so a bad value fails `cdk synth` instead of a deployment.
 */
export class BrokerPropError extends Error {
  override name = 'BrokerPropError';
}

/** How a prop value reads in an error message. Tokens have no value at synth time, so they say so. */
export function describeValue(value: unknown): string {
  if (value instanceof Duration) return value.toHumanString();
  if (typeof value === 'string' && Token.isUnresolved(value)) return '(a deploy-time value)';
  if (value === undefined) return 'not set';
  return JSON.stringify(value);
}

/**
 * Fails construction with a message that names the construct, the prop, its bad value, what is wrong and
 * how to fix it: `Broker/Bot/orders: timeout is 20 minutes: longer than ...; use ...`.
 */
export function badProp(
  scope: IConstruct,
  prop: string,
  value: unknown,
  problem: string,
  fix: string,
): never {
  throw new BrokerPropError(`${scope.node.path}: ${prop} is ${describeValue(value)}: ${problem}; ${fix}`);
}

/** Checks a duration prop against a closed range (either bound optional), naming the prop when it fails. */
export function checkDuration(
  scope: IConstruct,
  prop: string,
  value: Duration,
  range: { min?: Duration; max?: Duration },
): void {
  if (range.min && value.toMilliseconds() < range.min.toMilliseconds())
    badProp(scope, prop, value, `shorter than ${range.min.toHumanString()}`, 'give a longer duration');
  if (range.max && value.toMilliseconds() > range.max.toMilliseconds())
    badProp(scope, prop, value, `longer than ${range.max.toHumanString()}`, 'give a shorter duration');
}

/** Checks an integer prop against a closed range, naming the prop when it fails. */
export function checkInteger(scope: IConstruct, prop: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max)
    badProp(scope, prop, value, `not an integer from ${min} to ${max}`, `give a value in that range`);
}
