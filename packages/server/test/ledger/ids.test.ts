// Transfer ids (src/ledger/ids.ts): time-ordered, strictly increasing within one generator, and
// a bad time is refused without moving the generator.
import { describe, expect, it } from 'vitest';
import { createTransferIdGenerator } from '../../src/ledger/ids.js';

describe('transfer ids', () => {
  it('are 32 hex characters that sort by time, and increase within one millisecond and when the clock steps back', () => {
    const ids = createTransferIdGenerator();
    const made = [ids.next(1_700_000_000_000), ids.next(1_700_000_000_000), ids.next(1_699_999_999_999), ids.next(1_700_000_000_001)];
    for (const id of made) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(made[0]!.slice(0, 12)).toBe((1_700_000_000_000).toString(16).padStart(12, '0'));
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
  });

  it('refuses a time past 2^48 ms, or not a whole number, and goes on as before after it', () => {
    const ids = createTransferIdGenerator();
    const before = ids.next(1_700_000_000_000);
    expect(() => ids.next(2 ** 48)).toThrow(RangeError);
    expect(() => ids.next(1.5)).toThrow(RangeError);
    const after = ids.next(1_700_000_000_001);
    expect(after.slice(0, 12)).toBe((1_700_000_000_001).toString(16).padStart(12, '0'));
    expect(after > before).toBe(true);
  });
});
