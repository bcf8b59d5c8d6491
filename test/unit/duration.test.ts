import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/duration.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;

describe('parseDuration', () => {
  it.each<[string, number]>([
    ['0', 0],
    ['0s', 0],
    ['500ms', 500],
    ['90s', 90 * S],
    ['20m', 20 * M],
    ['1h', H],
    ['8h', 8 * H],
    ['24h', 24 * H],
    ['1h30m', H + 30 * M],
    ['1h0m0s', H],
    ['2h45m30s', 2 * H + 45 * M + 30 * S],
    ['1m30s500ms', M + 30 * S + 500],
    ['1.5h', H + 30 * M],
    ['0.5s', 500],
    ['2190h', 2190 * H],
    ['  20m  ', 20 * M],
  ])('%j is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    '',
    '   ',
    'h',
    '1',
    '10',
    '1d',
    '1w',
    '-1h',
    '+1h',
    '1H',
    '1 h',
    '1h 30m',
    '1h30',
    'h1',
    '1.h',
    'forever',
    '1h;rm',
  ])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('formatDuration', () => {
  it.each<[number, string]>([
    [0, '0s'],
    [H, '1h0m0s'],
    [8 * H, '8h0m0s'],
    [20 * M, '20m0s'],
    [H + 30 * M, '1h30m0s'],
    [90 * S, '1m30s'],
    [1500, '1.5s'],
    [59 * S, '59s'],
    [24 * H, '24h0m0s'],
    [H + 500, '1h0m0.5s'],
    [-1500, '-1.5s'],
    [-2 * H, '-2h0m0s'],
  ])('%d ms is %j', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  // Go prints durations below one second with a sub-second unit: time.Duration(500*time.Millisecond) is "500ms".
  it.each<[number, string]>([
    [500, '500ms'],
    [1, '1ms'],
  ])('%d ms is %j, as Go prints it', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it.each([0, 1, 999, 1000, 59_999, H - 1, H, 25 * H + 7 * M + 3 * S + 250])(
    'round-trips %d ms through parseDuration',
    (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    },
  );
});
