import type { Node } from 'constructs';
import { readBrokerFiles } from './broker-files.js';
import type { BrokerStackProps } from './broker-stack.js';
import { BrokerPropError } from './constructs/props.js';

/**
 * The CDK context keys the app reads (`npx cdk synth -c resources=... -c bots=a.yaml,b.yaml`); cdk.json
 * holds defaults that point at examples/aws/.
 */
export const CONTEXT_KEYS = {
  /** Path of the resource YAML (roles, dbs, bots). */
  resources: 'resources',
  /** Comma-separated paths of bot configurations; each bot is named after its file (`orders.yaml` → `orders`). */
  bots: 'bots',
  /** The stack's name. Default `Broker`. */
  stackName: 'stackName',
  /** The cluster name in the CA certificates. Default `broker`. */
  clusterName: 'clusterName',
  /** `true` creates the encrypted SNS alarm topic. */
  alarmTopic: 'alarmTopic',
  /** An address subscribed to the alarm topic (implies alarmTopic). */
  alarmEmail: 'alarmEmail',
  /** The KMS key spec of the CA keys: RSA_2048 (default) or ECC_NIST_P256. */
  caKeySpec: 'caKeySpec',
  /** Comma-separated CAs to rotate next (bot, db-server, db-client, db-client/<service>); see docs/aws.md. */
  nextCaKeys: 'nextCaKeys',
  /** `true` creates the database server certificate action (also created by a db-server rotation). */
  dbServerCertificates: 'dbServerCertificates',
  /** Pin the stack to an account and region; without them the template is environment-agnostic. */
  account: 'account',
  region: 'region',
} as const;

/** The stack's props and name, read from context and validated with the broker's own parsers. */
export interface BrokerAppConfig extends BrokerStackProps {
  /**
   * The stack's name (context `stackName`).
   * @default 'Broker'
   */
  readonly stackName: string;
}

function contextString(node: Node, key: string): string | undefined {
  const v: unknown = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  throw new BrokerPropError(
    `context ${key} is ${JSON.stringify(v)}: expected a string; pass -c ${key}=VALUE`,
  );
}

/**
 * Reads the broker configuration the app deploys: the resource file and every bot file named in context
 * (paths relative to the working directory), each validated with parseResources / parseBotConfig, so a bad
 * file fails synth with its name, the path inside it and the bad value.
 */
export function loadBrokerConfig(node: Node): BrokerAppConfig {
  const resourcesFile = contextString(node, CONTEXT_KEYS.resources);
  if (!resourcesFile)
    throw new BrokerPropError(
      `context ${CONTEXT_KEYS.resources} is not set: pass -c resources=PATH (cdk.json points it at examples/aws/resources.yaml)`,
    );
  const botFiles = (contextString(node, CONTEXT_KEYS.bots) ?? '')
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  if (botFiles.length === 0)
    throw new BrokerPropError(
      `context ${CONTEXT_KEYS.bots} is not set: pass -c bots=a.yaml,b.yaml (each bot is named after its file)`,
    );
  const { resourcesYaml, bots } = readBrokerFiles(resourcesFile, botFiles, 'context');

  const alarmTopic = contextString(node, CONTEXT_KEYS.alarmTopic);
  if (alarmTopic !== undefined && alarmTopic !== 'true' && alarmTopic !== 'false')
    throw new BrokerPropError(
      `context ${CONTEXT_KEYS.alarmTopic} is ${JSON.stringify(alarmTopic)}: use true or false`,
    );
  const alarmEmail = contextString(node, CONTEXT_KEYS.alarmEmail);
  const clusterName = contextString(node, CONTEXT_KEYS.clusterName);
  const account = contextString(node, CONTEXT_KEYS.account);
  const region = contextString(node, CONTEXT_KEYS.region);
  const caKeySpec = contextString(node, CONTEXT_KEYS.caKeySpec);
  if (caKeySpec !== undefined && caKeySpec !== 'RSA_2048' && caKeySpec !== 'ECC_NIST_P256')
    throw new BrokerPropError(
      `context ${CONTEXT_KEYS.caKeySpec} is ${JSON.stringify(caKeySpec)}: use RSA_2048 or ECC_NIST_P256`,
    );
  const serverCerts = contextString(node, CONTEXT_KEYS.dbServerCertificates);
  if (serverCerts !== undefined && serverCerts !== 'true' && serverCerts !== 'false')
    throw new BrokerPropError(
      `context ${CONTEXT_KEYS.dbServerCertificates} is ${JSON.stringify(serverCerts)}: use true or false`,
    );
  const nextCaKeys = (contextString(node, CONTEXT_KEYS.nextCaKeys) ?? '')
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean);
  return {
    stackName: contextString(node, CONTEXT_KEYS.stackName) ?? 'Broker',
    resourcesYaml,
    resourcesFile,
    bots,
    ...(clusterName ? { clusterName } : {}),
    ...(alarmTopic ? { alarmTopic: alarmTopic === 'true' } : {}),
    ...(alarmEmail ? { alarmEmail } : {}),
    ...(caKeySpec ? { caKeySpec } : {}),
    ...(nextCaKeys.length ? { nextCaKeys } : {}),
    ...(serverCerts ? { dbServerCertificates: serverCerts === 'true' } : {}),
    ...(account || region ? { env: { ...(account ? { account } : {}), ...(region ? { region } : {}) } } : {}),
  };
}
