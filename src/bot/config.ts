import { promises as fs } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import { parseYamlDocuments } from '../config/yaml.js';
import { type BotConfig, botConfigFromDocuments } from './config-schema.js';

// The schema, its resolution and checks live in config-schema.ts, free of the YAML library (the bot Lambda
// reads the JSON its stack writes with them); this module adds reading YAML text and files.
export * from './config-schema.js';

/**
 * Parses a bot configuration (one YAML document) as tbot reads it: v2, or v1 migrated in memory. Errors name
 * the file, path, value and what is allowed; features that need a Teleport cluster are refused by name.
 */
export function parseBotConfig(
  text: string,
  file: string,
  options: { overrides?: (raw: Record<string, unknown>) => void } = {},
): BotConfig {
  return botConfigFromDocuments(parseYamlDocuments(text, file), file, options);
}

export async function loadBotConfig(
  file: string,
  options: { overrides?: (raw: Record<string, unknown>) => void } = {},
): Promise<BotConfig> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read bot configuration ${file}: ${(err as Error).message}`);
  }
  return parseBotConfig(text, file, options);
}
