/**
 * db_names and db_users matching per protocol, as Teleport does it: which protocols check database names,
 * which fold the case of user names, what an entry matches, and Go's strings.EqualFold for the folding,
 * checked against Go's own case-folding table (test/support/go-case-orbits.txt) on every code point.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  checksDatabaseNames,
  equalFold,
  foldsUserCase,
  matchDatabaseName,
  matchDatabaseUser,
} from '../../src/authority/rbac/matchers.js';
import { DB_PROTOCOLS } from '../../src/credentials/route.js';

/** Code point → the members of its orbit in Go's table (absent: it folds only to itself). */
function goOrbits(): Map<number, number[]> {
  const text = readFileSync(new URL('../support/go-case-orbits.txt', import.meta.url), 'utf8');
  const orbits = new Map<number, number[]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const members = line.split(' ').map((h) => Number.parseInt(h, 16));
    for (const m of members) orbits.set(m, members);
  }
  return orbits;
}

const cp = (p: number) => String.fromCodePoint(p);
const hex = (p: number) => `U+${p.toString(16).toUpperCase().padStart(4, '0')}`;

describe('which protocols check what (databaseNameMatcher, IsUsernameCaseInsensitive)', () => {
  it('checks db_names for PostgreSQL and MongoDB only: MySQL, CockroachDB and Redis check db_users alone', () => {
    expect(DB_PROTOCOLS.filter(checksDatabaseNames)).toEqual(['postgres', 'mongodb']);
  });

  it('folds user case for CockroachDB only', () => {
    expect(DB_PROTOCOLS.filter(foldsUserCase)).toEqual(['cockroachdb']);
  });
});

describe('matchDatabaseName', () => {
  it('matches an entry equal to the name, or a lone *, and says which entry matched', () => {
    expect(matchDatabaseName(['main', 'other'], 'other')).toBe('other');
    expect(matchDatabaseName(['main', '*'], 'reports')).toBe('*');
    expect(matchDatabaseName(['main'], 'reports')).toBeUndefined();
    expect(matchDatabaseName([], 'main')).toBeUndefined();
  });

  it('is exact: no case folding, no globs, no regular expressions', () => {
    expect(matchDatabaseName(['Main'], 'main')).toBeUndefined();
    expect(matchDatabaseName(['ma*'], 'main')).toBeUndefined();
    expect(matchDatabaseName(['^main$'], 'main')).toBeUndefined();
    expect(matchDatabaseName(['ma*'], 'ma*')).toBe('ma*');
  });
});

describe('matchDatabaseUser', () => {
  it('matches an equal entry or a lone *; folds case only when asked', () => {
    expect(matchDatabaseUser(['alice', 'bob'], 'bob', false)).toBe('bob');
    expect(matchDatabaseUser(['*'], 'anyone', false)).toBe('*');
    expect(matchDatabaseUser(['Alice'], 'alice', false)).toBeUndefined();
    expect(matchDatabaseUser(['Alice'], 'alice', true)).toBe('Alice');
    expect(matchDatabaseUser(['ALICE', '*'], 'alice', true)).toBe('ALICE');
    expect(matchDatabaseUser(['alice'], 'alicia', true)).toBeUndefined();
    expect(matchDatabaseUser(['al*'], 'alice', true)).toBeUndefined();
  });

  it('a dotless or dotted Turkish i in a CockroachDB user matches only itself', () => {
    expect(matchDatabaseUser(['admin'], 'admın', true)).toBeUndefined();
    expect(matchDatabaseUser(['ADMIN'], 'ADMİN', true)).toBeUndefined();
    expect(matchDatabaseUser(['admın'], 'admın', true)).toBe('admın');
  });
});

describe('equalFold (Go strings.EqualFold)', () => {
  it('compares code point by code point: every one must fold to its counterpart', () => {
    expect(equalFold('Reporting', 'rEPORTING')).toBe(true);
    expect(equalFold('reporting', 'reportinX')).toBe(false);
    expect(equalFold('xeporting', 'reporting')).toBe(false);
    expect(equalFold('ab', 'abc')).toBe(false);
    expect(equalFold('', '')).toBe(true);
    expect(equalFold('😀a', '😀A')).toBe(true);
  });

  it('follows orbits of three and four (k K KELVIN SIGN; s S LONG S; θ ϑ Θ ϴ; σ ς Σ)', () => {
    for (const orbit of ['kK\u212a', 'sS\u017f', 'θϑΘϴ', 'σςΣ', 'ßẞ']) {
      for (const a of orbit) for (const b of orbit) expect(equalFold(a, b), `${a} ${b}`).toBe(true);
    }
    expect(equalFold('ϑ', 'ϴ')).toBe(true); // meet only through θ/Θ, two mappings away
    expect(equalFold('ß', 'ss')).toBe(false);
    expect(equalFold('ﬀ', 'FF')).toBe(false);
  });

  it('does not fold two letters together because their upper case is the same several letters', () => {
    // ﬅ and ﬆ are both ST in upper case, ΐ and ΐ both Ϊ́: Go's tables (Unicode 15.0) fold neither pair.
    expect(equalFold('\ufb05', '\ufb06')).toBe(false);
    expect(equalFold('\u0390', '\u1fd3')).toBe(false);
    expect(equalFold('\u03b0', '\u1fe3')).toBe(false);
  });

  it('leaves Turkish İ and ı apart from i and I', () => {
    for (const turkish of ['\u0130', '\u0131'])
      for (const latin of ['i', 'I']) {
        expect(equalFold(turkish, latin)).toBe(false);
        expect(equalFold(latin, turkish)).toBe(false);
      }
    expect(equalFold('\u0131', '\u0131')).toBe(true);
    expect(equalFold('\u0130', '\u0130')).toBe(true);
  });

  it('agrees with Go on every code point: its orbit members and its own case mappings', () => {
    const orbits = goOrbits();
    expect(orbits.size).toBeGreaterThan(2800);
    const wrong: string[] = [];
    // Planes 2 to 16 hold no letter with a case.
    for (let p = 0; p <= 0x1ffff; p++) {
      if (p >= 0xd800 && p <= 0xdfff) continue;
      const c = cp(p);
      const orbit = orbits.get(p) ?? [p];
      const candidates = new Set(orbit);
      for (const m of [c.toLowerCase(), c.toUpperCase()]) {
        const cps = [...m];
        if (cps.length === 1) candidates.add((cps[0] as string).codePointAt(0) as number);
      }
      if (candidates.size === 1) continue; // no case at all: nothing to fold
      for (const q of candidates) {
        const expected = orbit.includes(q);
        if (equalFold(c, cp(q)) !== expected) wrong.push(`${hex(p)} ${hex(q)}: Go says ${expected}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('case pairs newer than Go 1.26 tables (Unicode 16 and 17) do not fold, as in Teleport', () => {
    expect(equalFold('ƛ', '\ua7dc')).toBe(false);
    expect(equalFold('ɤ', '\ua7cb')).toBe(false);
    expect(equalFold('\u{10d50}', '\u{10d70}')).toBe(false);
    expect(equalFold('\u{16ea0}', '\u{16ebb}')).toBe(false);
  });
});
