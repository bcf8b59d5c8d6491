import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseResources } from '../src/authority/resources.js';
import { parseBotConfig } from '../src/bot/config.js';
import { BrokerPropError } from './constructs/props.js';

/** One bot of the broker: its name (a `kind: bot` resource) and its configuration text. */
export interface BrokerBotDefinition {
  /**
   * The bot resource's name.
   * @default - none: required
   */
  readonly name: string;
  /**
   * The bot configuration (tbot v2 YAML).
   * @default - none: required
   */
  readonly configYaml: string;
  /**
   * Where it came from, for error messages.
   * @default `bot <name>`
   */
  readonly configFile?: string;
}

/** Where file names came from, for the error that names a missing one: CDK context, or construct props. */
export type BrokerFilesSource = 'context' | 'props';

function readText(file: string, key: 'resources' | 'bots', source: BrokerFilesSource): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const [prop, fix] =
      source === 'context'
        ? [`context ${key}`, `pass an existing file with -c ${key}=PATH`]
        : [key === 'resources' ? 'resourcesFile' : 'botConfigFiles', 'name an existing file'];
    throw new BrokerPropError(`${prop}: cannot read ${file} (${(err as Error).message}); ${fix}`);
  }
}

/**
 * Reads a resource file and bot configuration files (paths relative to the working directory), each
 * validated with parseResources / parseBotConfig so that a bad file fails synth with its name, the path
 * inside it and the bad value. Each bot is named after its file (`bots/orders.yaml` → bot `orders`).
 */
export function readBrokerFiles<F extends string | undefined>(
  resourcesFile: F,
  botFiles: readonly string[],
  source: BrokerFilesSource = 'props',
): { resourcesYaml: F extends string ? string : undefined; bots: BrokerBotDefinition[] } {
  let resourcesYaml: string | undefined;
  if (resourcesFile !== undefined) {
    resourcesYaml = readText(resourcesFile, 'resources', source);
    parseResources(resourcesYaml, resourcesFile);
  }
  const bots = botFiles.map((file) => {
    const configYaml = readText(file, 'bots', source);
    parseBotConfig(configYaml, file);
    return { name: path.basename(file).replace(/\.ya?ml$/i, ''), configYaml, configFile: file };
  });
  return { resourcesYaml: resourcesYaml as F extends string ? string : undefined, bots };
}
