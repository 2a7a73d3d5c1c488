/**
 * A Bloom filter over the keys of the key-ordered idempotency table, so that looking up a
 * new key (the common case: almost every request is new) costs no B-tree probe. It answers
 * "certainly absent" or "maybe present"; it never misses a key that was added, so a
 * "maybe" is checked against the table and an "absent" is exact.
 *
 * About 10 bits and 7 probes per key: ~1% of new keys still get probed.
 */

const BITS_PER_KEY = 10;
const PROBES = 7;
const MIN_CAPACITY = 1 << 16;

export interface KeyFilter {
  /**
   * With `suffix`, the key is `${key}\u0000${suffix}`, hashed as that text without building it
   * (the stream money store's keys are a stream id and a ref: one string fewer per row).
   */
  add(key: string, suffix?: string): void;
  mightContain(key: string, suffix?: string): boolean;
  /** As add and mightContain, with the key's hashKey computed once by the caller (who keeps it). */
  addHash(hash: KeyHash): void;
  mightContainHash(hash: KeyHash): boolean;
  readonly size: number;
  /** Keys it was sized for; past it the false-positive rate climbs, so its owner adds a layer (createLayeredKeyFilter). */
  readonly capacity: number;
}

export function createKeyFilter(expectedKeys: number): KeyFilter {
  let capacity = MIN_CAPACITY;
  while (capacity < expectedKeys) capacity *= 2;
  const bitCount = capacity * BITS_PER_KEY;
  const words = new Uint32Array(Math.ceil(bitCount / 32));
  let size = 0;
  const probe = (h1: number, h2: number, set: boolean): boolean => {
    for (let i = 0; i < PROBES; i++) {
      const bit = ((h1 + Math.imul(i, h2)) >>> 0) % bitCount;
      const word = bit >>> 5;
      const mask = 1 << (bit & 31);
      if (set) words[word] = (words[word] as number) | mask;
      else if (((words[word] as number) & mask) === 0) return false;
    }
    return true;
  };
  return {
    capacity,
    get size() {
      return size;
    },
    add(key, suffix) {
      const [h1, h2] = hashKey(key, suffix);
      probe(h1, h2, true);
      size++;
    },
    mightContain: (key, suffix) => {
      const [h1, h2] = hashKey(key, suffix);
      return probe(h1, h2, false);
    },
    addHash(hash) {
      probe(hash[0], hash[1], true);
      size++;
    },
    mightContainHash: (hash) => probe(hash[0], hash[1], false),
  };
}

/** A key's two hashes (hashKey): unsigned 32-bit integers, the second odd. */
export type KeyHash = readonly [number, number];

/**
 * Two independent 32-bit hashes of the key's UTF-16 code units (FNV-1a and a murmur-style mix);
 * with a suffix, of the key, a NUL and the suffix, exactly as of that joined text. Exported so
 * a caller that also keeps the hash (the stream money store finds its recent rows by it)
 * hashes a key once.
 */
export function hashKey(key: string, suffix?: string): KeyHash {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  // The key's code units, then (with a suffix) a NUL and the suffix's. The loop is written
  // out twice, not shared through a closure over a and b or a branch per unit: this runs for
  // every ledger idempotency key too, and either form doubled a lookup's time.
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  if (suffix !== undefined) {
    a = Math.imul(a, 0x01000193); // the NUL: c = 0
    b = Math.imul(b, 0x5bd1e995);
    b ^= b >>> 15;
    for (let i = 0; i < suffix.length; i++) {
      const c = suffix.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
  }
  a ^= a >>> 16;
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  b ^= b >>> 16;
  // An odd step visits distinct bits for every probe.
  return [a >>> 0, (b | 1) >>> 0];
}

/** A set of keys that only grows, filtered in layers (createLayeredKeyFilter). */
export interface LayeredKeyFilter {
  add(key: string, suffix?: string): void;
  mightContain(key: string, suffix?: string): boolean;
  addHash(hash: KeyHash): void;
  mightContainHash(hash: KeyHash): boolean;
  /** Keys added, over all layers. */
  readonly size: number;
  readonly layers: number;
}

/**
 * Keys go to the newest layer (the first: `first`, built by the caller from what it holds),
 * and a full layer gets a successor four times its size. Rebuilding one bigger filter instead
 * would read every key the owner holds in one go, a pause that grows with the table (0.9 s
 * for a million stream refs). A key is absent when every layer says so; with ~1% false
 * positives per layer and layers growing fourfold, a few layers stay cheap.
 */
export function createLayeredKeyFilter(first: KeyFilter): LayeredKeyFilter {
  const layers: KeyFilter[] = [first];
  let size = first.size;
  const newest = (): KeyFilter => {
    let last = layers[layers.length - 1] as KeyFilter;
    if (last.size >= last.capacity) {
      last = createKeyFilter(last.capacity * 4);
      layers.push(last);
    }
    size++;
    return last;
  };
  return {
    get size() {
      return size;
    },
    get layers() {
      return layers.length;
    },
    add: (key, suffix) => newest().add(key, suffix),
    addHash: (hash) => newest().addHash(hash),
    mightContain: (key, suffix) => mightContainHash(hashKey(key, suffix)),
    mightContainHash,
  };
  function mightContainHash(hash: KeyHash): boolean {
    for (const layer of layers) if (layer.mightContainHash(hash)) return true;
    return false;
  }
}
