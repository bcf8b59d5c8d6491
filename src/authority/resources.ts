import { parseYamlDocuments } from '../config/yaml.js';
import { type Resource, resourcesFromDocuments } from './resources-schema.js';

// The schemas and checks live in resources-schema.ts, free of the YAML library (the authority Lambda reads the
// JSON its stack writes with them); this module adds reading YAML text.
export * from './resources-schema.js';

/**
 * Parses a file of Teleport-shaped resources (several YAML documents). Every document is validated before
 * anything is returned, so a bad file changes nothing. Duplicate kind/name pairs inside one file are refused.
 */
export function parseResources(text: string, file: string): Resource[] {
  return resourcesFromDocuments(parseYamlDocuments(text, file), file);
}
