import { parseJsonDocuments, type SourceDocument } from './documents.js';

/**
 * The documents of a configuration text the way a Lambda reads it: JSON (what the stack writes) without
 * loading the YAML library, anything else through it, loaded on first need, so a cold start never pays for it.
 */
export async function readConfigDocuments(text: string, file: string): Promise<SourceDocument[]> {
  const json = parseJsonDocuments(text);
  if (json) return json;
  const { parseYamlDocuments } = await import('./yaml.js');
  return parseYamlDocuments(text, file);
}
