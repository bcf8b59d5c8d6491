/** isoTime (src/iso-time.ts) must write exactly what Date.prototype.toISOString writes, for any time. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoTime } from '../../src/iso-time.js';

const MAX = 8.64e15;

describe('isoTime', () => {
  it('the same text as toISOString, for Dates and epoch milliseconds', () => {
    for (const ms of [
      0,
      1,
      999,
      -1,
      1767225600000,
      253402300799999,
      253402300800000,
      -62167219200000,
      -62167219200001,
      MAX,
      -MAX,
    ])
      expect([isoTime(ms), isoTime(new Date(ms))]).toEqual([
        new Date(ms).toISOString(),
        new Date(ms).toISOString(),
      ]);
    fc.assert(
      fc.property(fc.integer({ min: -MAX, max: MAX }), (ms) => {
        expect(isoTime(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 2000 },
    );
  });

  it('an invalid date throws RangeError, as toISOString does', () => {
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
    expect(() => isoTime(new Date('not a date'))).toThrow(RangeError);
  });
});
