/** The Bloom filter in front of the key-ordered idempotency table: it must never miss a key it was given. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createKeyFilter, createLayeredKeyFilter, hashKey } from '../../src/ledger/sqlite/key-filter.js';

describe('key filter', () => {
  it('finds every key it was given', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 256, unit: 'grapheme' }), { maxLength: 300 }), (keys) => {
        const filter = createKeyFilter(keys.length);
        for (const key of keys) filter.add(key);
        for (const key of keys) expect(filter.mightContain(key)).toBe(true);
        expect(filter.size).toBe(keys.length);
      }),
    );
  });

  it('hashes a key and a suffix as the text key, NUL, suffix (pairs and joined texts find each other)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.string({ maxLength: 64 }), fc.string({ maxLength: 64, unit: 'grapheme' })), { maxLength: 200 }), (pairs) => {
        const byPair = createKeyFilter(pairs.length);
        const byText = createKeyFilter(pairs.length);
        for (const [key, suffix] of pairs) {
          byPair.add(key, suffix);
          byText.add(`${key}\u0000${suffix}`);
        }
        for (const [key, suffix] of pairs) {
          expect(byPair.mightContain(`${key}\u0000${suffix}`)).toBe(true);
          expect(byText.mightContain(key, suffix)).toBe(true);
        }
      }),
    );
  });

  it('takes a hash computed once (hashKey) as it takes the key it was computed from', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.string({ maxLength: 64 }), fc.string({ maxLength: 64, unit: 'grapheme' })), { maxLength: 200 }), (pairs) => {
        const byHash = createKeyFilter(pairs.length);
        const byKey = createKeyFilter(pairs.length);
        for (const [key, suffix] of pairs) {
          const hash = hashKey(key, suffix);
          expect(hash[0]).toBe(hash[0] >>> 0);
          expect(hash[1] % 2).toBe(1);
          byHash.addHash(hash);
          byKey.add(key, suffix);
        }
        for (const [key, suffix] of pairs) {
          expect(byHash.mightContain(key, suffix)).toBe(true);
          expect(byKey.mightContainHash(hashKey(key, suffix))).toBe(true);
        }
        expect(byHash.size).toBe(pairs.length);
      }),
    );
  });

  it('says "absent" for most keys it was not given, at capacity', () => {
    const filter = createKeyFilter(1 << 16);
    for (let i = 0; i < filter.capacity; i++) filter.add(`present-${i}`);
    let maybe = 0;
    for (let i = 0; i < 10_000; i++) if (filter.mightContain(`absent-${i}`)) maybe++;
    // ~1% expected at 10 bits per key; 3% leaves room for the hash's unevenness.
    expect(maybe).toBeLessThan(300);
  });

  it('in layers, grows past its first filter without a rebuild, finds every key, and keeps most absent keys out', () => {
    const first = createKeyFilter(0);
    first.add('before');
    const layered = createLayeredKeyFilter(first);
    const keys = first.capacity * 5 + 123;
    for (let i = 0; i < keys; i++) {
      if (i % 2 === 0) layered.add(`st_${i % 97}`, `c:${i}`);
      else layered.addHash(hashKey(`st_${i % 97}`, `c:${i}`));
    }
    expect(layered.size).toBe(keys + 1);
    // 65,536, then 262,144 (full), then 1,048,576 keys.
    expect(layered.layers).toBe(3);
    expect(layered.mightContain('before')).toBe(true);
    for (let i = 0; i < keys; i++) expect(layered.mightContainHash(hashKey(`st_${i % 97}`, `c:${i}`))).toBe(true);
    let maybe = 0;
    for (let i = 0; i < 10_000; i++) if (layered.mightContain(`st_${i % 97}`, `absent-${i}`)) maybe++;
    // About 1% per layer, three layers.
    expect(maybe).toBeLessThan(600);
  });
});
