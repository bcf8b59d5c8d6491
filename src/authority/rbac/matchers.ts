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
 * points are equivalent when their single-code-point upper or lower case forms meet. Some code points fold
 * only to themselves in Go (FOLDS_ALONE), so they are left out of that rule.
 */
export function equalFold(a: string, b: string): boolean {
  const ca = [...a];
  const cb = [...b];
  if (ca.length !== cb.length) return false;
  return ca.every((x, i) => {
    const ox = orbit(x);
    return orbit(cb[i] as string).some((c) => ox.includes(c));
  });
}

/**
 * Code points with no case partner in Go's tables (Unicode 15.0, as of Go 1.26) although JavaScript's may
 * give them one: Turkish dotted and dotless i (U+0130, U+0131: only Turkish folding pairs them with i and
 * I), and the case pairs Unicode 16 and 17 added (Latin ƛ/Ƛ, ɤ/Ɤ and others, Cyrillic Ᲊ/ᲊ, Garay, Beria
 * Erfe). Without this, a CockroachDB user name would match in more ways here than in Teleport.
 */
const FOLDS_ALONE: readonly (readonly [number, number])[] = [
  [0x0130, 0x0131],
  [0x019b, 0x019b],
  [0x0264, 0x0264],
  [0x1c89, 0x1c8a],
  [0xa7cb, 0xa7cf],
  [0xa7d2, 0xa7d5],
  [0xa7da, 0xa7dc],
  [0x10d50, 0x10d65],
  [0x10d70, 0x10d85],
  [0x16ea0, 0x16eb8],
  [0x16ebb, 0x16ed3],
];

function foldsAlone(c: string): boolean {
  const p = c.codePointAt(0) as number;
  return FOLDS_ALONE.some(([from, to]) => p >= from && p <= to);
}

/** `c` and every code point reached from it by single-code-point lower and upper case mappings. */
function orbit(c: string): string[] {
  const out = [c];
  if (foldsAlone(c)) return out;
  // Followed until nothing new comes, for orbits of three or four (k, K, KELVIN SIGN; θ, ϑ, Θ, ϴ).
  for (const m of out)
    for (const n of [m.toLowerCase(), m.toUpperCase()])
      if ([...n].length === 1 && !foldsAlone(n) && !out.includes(n)) out.push(n);
  return out;
}
