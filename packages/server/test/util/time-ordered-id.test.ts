// Stream ids sort by creation time (util/fingerprint.ts timeOrderedId), which is what lets a
// sweep's transaction write a few neighbouring pages instead of one per stream.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { timeOrderedId } from '../../src/util/fingerprint.js';

describe('timeOrderedId', () => {
  it('is the prefix, 12 hex digits of the milliseconds, then 16 base64url characters', () => {
    const id = timeOrderedId('st_', Date.UTC(2026, 10, 22, 21, 50, 2, 158));
    expect(id).toMatch(/^st_[0-9a-f]{12}[A-Za-z0-9_-]{16}$/);
    expect(id.slice(3, 15)).toBe(Date.UTC(2026, 10, 22, 21, 50, 2, 158).toString(16).padStart(12, '0'));
  });

  it('sorts (as text, as SQLite compares it) by the time it was made', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), fc.integer({ min: 0, max: 2 ** 48 - 1 }), (a, b) => {
      fc.pre(a !== b);
      const [earlier, later] = a < b ? [a, b] : [b, a];
      expect(timeOrderedId('st_', earlier) < timeOrderedId('st_', later)).toBe(true);
    }));
  });

  it('draws 96 random bits: ids of the same millisecond differ', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => timeOrderedId('st_', 1_795_000_000_000)));
    expect(ids.size).toBe(10_000);
  });

  it('counts a part millisecond as the millisecond it is in', () => {
    expect(timeOrderedId('st_', 1_795_000_000_000.75).slice(3, 15)).toBe((1_795_000_000_000).toString(16).padStart(12, '0'));
  });

  it('refuses a time before 1970, from 2^48 ms on (12 hex digits no longer hold it), or not a number', () => {
    for (const bad of [-1, 2 ** 48, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => timeOrderedId('st_', bad)).toThrow(RangeError);
    expect(timeOrderedId('st_', 2 ** 48 - 1)).toMatch(/^st_ffffffffffff/);
  });
});
