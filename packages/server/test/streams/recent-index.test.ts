// RecentIndex (src/streams/recent-index.ts) is the SQLite money store's per-stream index of
// recent rows: an open-addressing table off the JS heap, with deletes that shift entries back.
// Checked against a Map on random sequences of sets and deletes, with keys crowded into few
// slots so that probe runs wrap around the table's end and deletes move entries across it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecentIndex } from '../../src/streams/recent-index.js';

type Op = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number };

/**
 * Keys whose low bits collide often: homes in the last slots of a table of 16, 32 or 64 (so
 * probe runs wrap past its end, where a delete's shift is easiest to get wrong), a few small
 * keys, and keys spread over 30 bits like real hash bits.
 */
const key = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 6 })).map(([last, times]) => 64 * times + 63 - last),
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 6 })).map(([last, times]) => 64 * times + 31 - last),
  fc.integer({ min: 0, max: 40 }),
  fc.integer({ min: 0, max: 0x3fff_ffff }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key, value: fc.integer({ min: -5, max: 2 ** 40 }) }),
  fc.record({ kind: fc.constant('delete' as const), key }),
);

function agree(index: RecentIndex, model: Map<number, number>, probes: readonly number[]): void {
  expect(index.size).toBe(model.size);
  for (const [k, v] of model) expect(index.get(k)).toBe(v);
  for (const k of probes) expect(index.get(k)).toBe(model.get(k));
}

describe('RecentIndex', () => {
  it('answers as a Map does after any sequence of sets and deletes', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
      const index = new RecentIndex();
      const model = new Map<number, number>();
      for (const o of ops) {
        if (o.kind === 'set') {
          index.set(o.key, o.value);
          model.set(o.key, o.value);
        } else {
          expect(index.delete(o.key)).toBe(model.delete(o.key));
        }
      }
      agree(index, model, ops.map((o) => o.key));
    }), { numRuns: 500 });
  });

  it('keeps a sliding window in the same table: no reallocation while the window keeps its size', () => {
    const index = new RecentIndex();
    const window = 300;
    const keyOf = (n: number): number => (Math.imul(n, 0x9e37_79b1) >>> 2) & 0x3fff_ffff;
    for (let n = 0; n < window; n += 1) index.set(keyOf(n), n);
    const slots = index.slots;
    for (let n = window; n < 50_000; n += 1) {
      index.set(keyOf(n), n);
      expect(index.delete(keyOf(n - window))).toBe(true);
    }
    expect(index.slots).toBe(slots);
    expect(index.size).toBe(window);
    for (let n = 50_000 - window; n < 50_000; n += 1) expect(index.get(keyOf(n))).toBe(n);
    expect(index.get(keyOf(0))).toBeUndefined();
  });

  it('grows to keep at most half its slots used, and gives slots back when the window shrinks', () => {
    const index = new RecentIndex();
    for (let k = 0; k < 1000; k += 1) index.set(k * 7919, k);
    expect(index.slots).toBeGreaterThanOrEqual(2000);
    for (let k = 0; k < 995; k += 1) index.delete(k * 7919);
    expect(index.size).toBe(5);
    expect(index.slots).toBeLessThanOrEqual(64);
    for (let k = 995; k < 1000; k += 1) expect(index.get(k * 7919)).toBe(k);
  });
});
