import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseResources, resourcesFromDocuments } from '../../src/authority/resources.js';
import { botConfigFromDocuments, parseBotConfig } from '../../src/bot/config.js';
import { parseJsonDocuments } from '../../src/config/documents.js';
import { ConfigError } from '../../src/config/errors.js';
import { readConfigDocuments } from '../../src/config/read-documents.js';
import { parseYamlDocuments } from '../../src/config/yaml.js';
import { exampleResourcesYaml } from '../support/fixtures.js';

/** The stack's rendering: one compact JSON document per YAML document, joined by `---` lines. */
const asJson = (yaml: string) =>
  parseYamlDocuments(yaml, 'x.yaml')
    .map((d) => JSON.stringify(d.value))
    .join('\n---\n');

describe('configuration read as a Lambda reads it', () => {
  it('reads the JSON the stack writes to the same resources and bot configuration as the YAML', async () => {
    const resources = exampleResourcesYaml();
    const docs = await readConfigDocuments(asJson(resources), 'deployed resources');
    expect(resourcesFromDocuments(docs, 'deployed resources')).toEqual(parseResources(resources, 'r.yaml'));
    const bot = readFileSync(new URL('../../examples/aws/bots/orders.yaml', import.meta.url), 'utf8');
    const botDocs = await readConfigDocuments(asJson(bot), 'BROKER_BOT_CONFIG');
    expect(botConfigFromDocuments(botDocs, 'BROKER_BOT_CONFIG')).toEqual(
      parseBotConfig(bot, 'BROKER_BOT_CONFIG'),
    );
  });

  it('reads YAML text (an environment set by hand) through the YAML parser, with its positions', async () => {
    const docs = await readConfigDocuments('a: 1\n---\nb: [2]\n', 'f.yaml');
    expect(docs.map((d) => d.value)).toEqual([{ a: 1 }, { b: [2] }]);
    expect(docs[1]?.locate(['b'])).toBe('line 3, column 1');
    // A YAML flow mapping looks like JSON at first sight, and is still read as YAML.
    expect((await readConfigDocuments('{a: 1}', 'f.yaml')).map((d) => d.value)).toEqual([{ a: 1 }]);
    await expect(readConfigDocuments('a: [1\n', 'f.yaml')).rejects.toThrow(
      /f\.yaml: document 1: invalid YAML at line/,
    );
  });

  it('numbers JSON documents as the YAML parser does and skips empty ones', () => {
    const docs = parseJsonDocuments('{"a":1}\n---\nnull\n---\n[2]\n---\n');
    expect(docs?.map((d) => [d.index, d.value])).toEqual([
      [1, { a: 1 }],
      [3, [2]],
    ]);
    expect(parseJsonDocuments('a: 1')).toBeUndefined();
    expect(parseJsonDocuments('{"a":1}\n---\nb: 2')).toBeUndefined();
  });

  it('refuses a bad bot configuration in JSON by path and value, naming the variable', () => {
    const docs = parseJsonDocuments(JSON.stringify({ version: 'v2', outputs: 'none' })) ?? [];
    let error: unknown;
    try {
      botConfigFromDocuments(docs, 'BROKER_BOT_CONFIG');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^BROKER_BOT_CONFIG: document 1 \(bot config\): .*outputs/);
  });
});
