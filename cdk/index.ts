/**
 * The broker's CDK constructs, as the package exports them (`import { CredentialBroker } from
 * 'db-credential-broker/cdk'`): the whole broker in one construct, its parts for finer control, the proxy
 * sidecar for ECS task definitions and the output grants for every other consumer.
 */

export { type BrokerFilesSource, readBrokerFiles } from './broker-files.js';
export { BrokerStack, type BrokerStackProps } from './broker-stack.js';
export { AlarmTopic, type AlarmTopicProps } from './constructs/alarm-topic.js';
export {
  Authority,
  type AuthorityProps,
  DENIED_AUDIT_FILTER,
  type IamJoinTokenOptions,
  METRIC_NAMESPACE,
} from './constructs/authority.js';
export { Bot, type BotProps } from './constructs/bot.js';
export { BotOutput, type BotOutputProps, type OutputRoute } from './constructs/bot-output.js';
export {
  BROKER_LAMBDA_RUNTIME,
  BrokerFunction,
  type BrokerFunctionName,
  type BrokerFunctionProps,
  functionBundle,
  packageRoot,
} from './constructs/broker-function.js';
export { CaRotation, type CaRotationProps } from './constructs/ca-rotation.js';
export {
  type BrokerBotDefinition,
  type BrokerDefinitionProps,
  type BrokerParts,
  CredentialBroker,
  type CredentialBrokerProps,
} from './constructs/credential-broker.js';
export {
  type AddProxySidecarOptions,
  DatabaseProxySidecar,
  type DatabaseProxySidecarProps,
  DEFAULT_PORTS,
  PROXY_SOCKET_DIRECTORY,
} from './constructs/database-proxy-sidecar.js';
export { DbServerCertificates, type DbServerCertificatesProps } from './constructs/db-server-certificates.js';
export { BrokerPropError } from './constructs/props.js';
