/**
 * The RE2 helpers under RBAC as Go's regexp behaves: ReplaceAllString with its template syntax and its rule
 * for empty matches (Teleport's regexp.replace), raw expressions, and the pattern cache.
 */
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import {
  compilePattern,
  compileRegexp,
  globToRegexp,
  PatternError,
  regexMatchesAny,
  regexpReplace,
  sliceMatchesRegex,
} from '../../src/authority/rbac/regex.js';

const replace = (input: string, expression: string, template: string) =>
  regexpReplace([input], expression, template)[0];

describe('regexpReplace: Go ReplaceAllString', () => {
  it.each([
    // The examples of Go's regexp documentation (Regexp.ReplaceAllString).
    ['-ab-axxb-', 'a(x*)b', 'T', '-T-T-'],
    ['-ab-axxb-', 'a(x*)b', '$1', '--xx-'],
    ['-ab-axxb-', 'a(x*)b', '$1W', '---'],
    ['-ab-axxb-', 'a(x*)b', '${1}W', '-W-xxW-'],
    ['-ab-axxb-', 'a(?P<one>x*)b', '$one', '--xx-'],
    ['-ab-axxb-', 'a(?P<one>x*)b', '${one}W', '-W-xxW-'],
    ['Alan Turing', '(?P<first>\\w+)\\s(?P<last>\\w+)', '$last $first', 'Turing Alan'],
    ['a-b', '-', '$$', 'a$b'],
    ['a-b', '-', '$', 'a$b'],
    ['a-b', '-', '${', 'a${b'],
    ['a-b', '-', '${x', 'a${xb'],
    ['a-b', '-', '$2', 'ab'],
    ['a-b', '-', '$nope', 'ab'],
    ['a-b', '-', 'x$', 'ax$b'],
    // Empty matches: one after a match is skipped, and the search advances by a whole code point.
    ['baaac', 'a*', 'X', 'XbXcX'],
    ['abc', '', '-', '-a-b-c-'],
    ['😀😀', '', '-', '-😀-😀-'],
    ['😀a', 'a*', 'X', 'X😀X'],
    ['user@example.com', '^(.*)@.*$', '$1', 'user'],
  ])('%j with %j and %j is %j', (input, expression, template, want) => {
    expect(replace(input, expression, template)).toBe(want);
  });

  it('drops inputs the expression does not match and results that are empty, keeping the order', () => {
    expect(regexpReplace(['team-a', 'other', 'team-', 'team-b'], '^team-(.*)$', '$1')).toEqual(['a', 'b']);
    expect(regexpReplace([], 'x', 'y')).toEqual([]);
  });

  it('throws PatternError for an invalid expression', () => {
    expect(() => regexpReplace(['a'], '(()', 'x')).toThrow(PatternError);
  });
});

describe('raw expressions and the cache', () => {
  it('a raw expression is unanchored; a pattern is anchored unless written ^...$', () => {
    const raw = compileRegexp('b');
    expect(raw).not.toBeInstanceOf(PatternError);
    expect((raw as Exclude<typeof raw, PatternError>).test('abc')).toBe(true);
    const glob = compilePattern('b');
    expect((glob as Exclude<typeof glob, PatternError>).test('abc')).toBe(false);
  });

  it('the same text compiles to the same object until the cache is full, and stays correct after', () => {
    expect(compileRegexp('^cache-probe$')).toBe(compileRegexp('^cache-probe$'));
    const first = compilePattern('first-of-many');
    for (let i = 0; i < 2100; i++) compilePattern(`filler-${i}`);
    expect(compilePattern('first-of-many')).not.toBe(first);
    expect(
      (compilePattern('first-of-many') as Exclude<typeof first, PatternError>).test('first-of-many'),
    ).toBe(true);
    expect(compileRegexp('(')).toBeInstanceOf(PatternError);
    expect(compileRegexp('(')).toBe(compileRegexp('('));
  });

  it('sliceMatchesRegex: the first pattern that matches decides; an invalid one before it throws', () => {
    expect(sliceMatchesRegex('dev', ['prod', 'dev'])).toBe(true);
    expect(sliceMatchesRegex('dev', ['prod', 'test'])).toBe(false);
    expect(sliceMatchesRegex('dev', ['dev', '^(bad$'])).toBe(true);
    expect(() => sliceMatchesRegex('dev', ['^(bad$', 'dev'])).toThrow(PatternError);
  });

  it('regexMatchesAny: whether the pattern matches any input', () => {
    expect(regexMatchesAny(['a', 'b'], 'b')).toBe(true);
    expect(regexMatchesAny(['a', 'b'], 'c')).toBe(false);
    expect(regexMatchesAny([], '*')).toBe(false);
  });
});

describe('globs, matched without a regular expression engine', () => {
  const globMatches = (glob: string, input: string) =>
    (compilePattern(glob) as Exclude<ReturnType<typeof compilePattern>, PatternError>).test(input);

  it.each([
    ['prod', 'prod', true],
    ['prod', 'production', false],
    ['prod', 'xprod', false],
    ['', '', true],
    ['', 'a', false],
    ['*', '', true],
    ['*', 'anything at all', true],
    ['orders-*', 'orders-eu', true],
    ['orders-*', 'orders-', true],
    ['orders-*', 'order-eu', false],
    ['*-eu', 'orders-eu', true],
    ['*-eu', 'orders-us', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'a-b-b-c', true],
    ['a*b*c', 'a-c-b', false],
    ['a**b', 'ab', true],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    // Every other character is literal, as GlobToRegexp quotes it.
    ['a.c', 'abc', false],
    ['a.c', 'a.c', true],
    ['(a|b)', 'a', false],
    ['(a|b)', '(a|b)', true],
    ['\\*', '\\x', true],
    ['\\*', 'x', false],
    ['^a', '^a', true],
    ['a$', 'a$', true],
    // `*` is RE2's `.*`: any code point but a newline; a newline in the glob matches itself.
    ['a*b', 'a\nb', false],
    ['a*b', 'a\rb', true],
    ['a\n*', 'a\nb', true],
    ['*', '\n', false],
    // Code points, not UTF-16 units: a `*` never ends inside a surrogate pair.
    ['*\uDE00', '\uD83D\uDE00', false],
    ['*\uDE00', 'x\uDE00', true],
    ['\u{1F600}*', '\u{1F600}\u{1F601}', true],
  ])('%j against %j is %j', (glob, input, want) => {
    expect(globMatches(glob, input)).toBe(want);
  });

  it('agrees with RE2 compiling the glob as GlobToRegexp does, for any glob and input', () => {
    const text = fc.string({
      unit: fc.constantFrom('a', 'b', '*', '\n', '\r', '\\', '.', '$', '\u{1F600}', '\uD83D', '\uDE00'),
      maxLength: 8,
    });
    fc.assert(
      fc.property(
        text.filter((g) => !(g.startsWith('^') && g.endsWith('$'))),
        text,
        (glob, input) => globMatches(glob, input) === RE2JS.compile(`^${globToRegexp(glob)}$`).test(input),
      ),
      { numRuns: 2000 },
    );
  });
});
