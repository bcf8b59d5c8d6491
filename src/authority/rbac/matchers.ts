/**
 * Database name and user matching, per protocol. Mirrors lib/services/role.go (MatchDatabaseName,
 * MatchDatabaseUser, NewDatabaseUserMatcher, DatabaseNameMatcher), lib/srv/db/common/role/role.go
 * (GetDatabaseRoleMatchers, databaseNameMatcher) and api/types/database.go (IsUsernameCaseInsensitive).
 * Entries are literal: only a lone `*` is a wildcard; there are no globs or regular expressions here.
 */
import type { DbProtocol } from '../../credentials/route.js';

/** Wildcard (types.Wildcard). */
export const WILDCARD = '*';

/**
 * databaseNameMatcher: protocols where Teleport checks db_names. MySQL and CockroachDB cannot stop
 * cross-database queries and Redis has no database names, so Teleport checks only db_users for them.
 */
export function checksDatabaseNames(protocol: DbProtocol): boolean {
  return protocol === 'postgres' || protocol === 'mongodb';
}

/** IsUsernameCaseInsensitive: CockroachDB user names are case-insensitive, so matching folds case. */
export function foldsUserCase(protocol: DbProtocol): boolean {
  return protocol === 'cockroachdb';
}

/** MatchDatabaseName: an entry equal to the name, or `*`. */
export function matchDatabaseName(selectors: readonly string[], name: string): string | undefined {
  return selectors.find((s) => s === name || s === WILDCARD);
}

/** MatchDatabaseUser (matchWildcard = true, as databaseUserMatcher passes): equal (folded), or `*`. */
export function matchDatabaseUser(
  selectors: readonly string[],
  user: string,
  caseFold: boolean,
): string | undefined {
  return selectors.find((s) => (caseFold ? equalFold(s, user) : s === user) || s === WILDCARD);
}

/**
 * Go's strings.EqualFold: equal under Unicode simple case folding, code point by code point. Two code
 * points are equivalent when their single-code-point upper or lower case forms meet; U+0130 and U+0131 fold
 * only to themselves in Go (Turkish dotted and dotless i), so they are left out of that rule.
 */
export function equalFold(a: string, b: string): boolean {
  const ca = [...a];
  const cb = [...b];
  if (ca.length !== cb.length) return false;
  return ca.every((x, i) => {
    const y = cb[i] as string;
    if (x === y) return true;
    const ox = orbit(x);
    return orbit(y).some((c) => ox.includes(c));
  });
}

function orbit(c: string): string[] {
  if (c === '\u0130' || c === '\u0131') return [c];
  const out = [c];
  for (const m of [c.toLowerCase(), c.toUpperCase()])
    if ([...m].length === 1 && m !== '\u0130' && m !== '\u0131' && !out.includes(m)) out.push(m);
  // One step further catches orbits of three (k, K, KELVIN SIGN; s, S, LONG S; σ, ς, Σ).
  for (const m of [...out]) {
    for (const n of [m.toLowerCase(), m.toUpperCase()])
      if ([...n].length === 1 && n !== '\u0130' && n !== '\u0131' && !out.includes(n)) out.push(n);
  }
  return out;
}
