/**
 * Runs RBAC cases the way an operator meets them: resources written as YAML go through parseResources (what
 * `broker create -f` does) and Authority.createResources, then every question is an
 * issueDatabaseCertificate call, allowed when a certificate comes back and denied on AccessDeniedError.
 * Used by the tables ported from Teleport's own tests.
 */
import { stringify } from 'yaml';
import type { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import type { DatabaseRoute, DbProtocol } from '../../src/credentials/route.js';
import { AccessDeniedError } from '../../src/errors.js';
import { testAuthority } from './authority.js';
import { nowSeconds, testKeyPair } from './fixtures.js';

type Conditions = Record<string, unknown>;

/** A role document; `version` defaults to v6. */
export function roleDoc(
  name: string,
  spec: { allow?: Conditions; deny?: Conditions; options?: Conditions },
  version = 'v6',
): object {
  return { kind: 'role', version, metadata: { name }, spec };
}

/** A db document; `protocol` defaults to postgres. */
export function dbDoc(
  name: string,
  labels: Record<string, string> = {},
  protocol: DbProtocol = 'postgres',
): object {
  return {
    kind: 'db',
    version: 'v3',
    metadata: { name, ...(Object.keys(labels).length ? { labels } : {}) },
    spec: { protocol, uri: `${name}.internal:5432` },
  };
}

/** A bot document with roles and (Teleport-shaped) traits. */
export function botDoc(name: string, roles: string[], traits: Record<string, string[]> = {}): object {
  const list = Object.entries(traits).map(([n, values]) => ({ name: n, values }));
  return {
    kind: 'bot',
    version: 'v1',
    metadata: { name },
    spec: { roles, ...(list.length ? { traits: list } : {}) },
  };
}

/** The documents as one YAML file, as an operator would write it. */
export function yamlOf(docs: readonly object[]): string {
  return docs.map((d) => stringify(d)).join('---\n');
}

export type Outcome = { allowed: true } | { allowed: false; reason: string };

export interface RbacWorld {
  authority: Authority;
  /** Asks for a certificate for `bot` and `route`. */
  decide(bot: string, route: DatabaseRoute): Promise<Outcome>;
}

const START = nowSeconds();

/** An authority with the documents created from their YAML text. */
export async function rbacWorld(docs: readonly object[]): Promise<RbacWorld> {
  const text = yamlOf(docs);
  const { authority } = await testAuthority({
    start: START,
    resources: parseResources(text, 'teleport-cases.yaml'),
  });
  const { publicKeyPem } = await testKeyPair(0);
  return {
    authority,
    async decide(bot, route) {
      try {
        await authority.issueDatabaseCertificate(bot, route, publicKeyPem);
        return { allowed: true };
      } catch (err) {
        if (err instanceof AccessDeniedError) return { allowed: false, reason: err.message };
        throw err;
      }
    },
  };
}

/** The error parseResources gives for a file, or undefined when it parses. */
export function createError(docs: readonly object[]): string | undefined {
  try {
    parseResources(yamlOf(docs), 'teleport-cases.yaml');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
