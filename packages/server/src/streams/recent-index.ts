/**
 * A map from small non-negative integer keys to numbers, kept in one Float64Array: the index
 * of a stream's recent rows (money-store-sqlite.ts, StreamRecent.index; ADR 0026).
 *
 * Why not a `Map`: the recent tier is a sliding window (a row enters at every commit and leaves
 * when its generation is archived), and V8's Map, under steady inserts and deletes, allocates a
 * new backing table each time its deleted entries fill the old one. Those tables live for
 * seconds, so they are promoted and become old-generation garbage: at 10,000 charges/s with
 * 1,000 streams, about 60 bytes per charge, the largest share of what drove a Mark-Compact
 * every few seconds (docs/benchmarks.md, "Twelfth session"). This table is allocated only when
 * it grows or shrinks, outside the JS heap, and a window that stays the same size never
 * reallocates it.
 *
 * Open addressing with linear probing; a delete shifts the entries after it back into the gap
 * (no tombstones, so lookups never slow down under churn). At most half the slots are used.
 * The keys are hash bits already, so the slot is the key's low bits.
 */

/** Slots a new table has: a power of two. */
const FIRST_SLOTS = 16;
/** A slot is [key, value]; an empty slot's key is EMPTY. */
const EMPTY = -1;

export class RecentIndex {
  /** Slot i is table[2i] (the key, or EMPTY) and table[2i + 1] (its value). */
  #table: Float64Array;
  #mask: number;
  #size = 0;

  constructor(slots = FIRST_SLOTS) {
    this.#table = RecentIndex.#emptyTable(slots);
    this.#mask = slots - 1;
  }

  /** Keys held. */
  get size(): number {
    return this.#size;
  }

  /** Slots allocated (a power of two): for tests and memory figures. */
  get slots(): number {
    return this.#mask + 1;
  }

  get(key: number): number | undefined {
    const table = this.#table;
    const mask = this.#mask;
    for (let slot = key & mask; ; slot = (slot + 1) & mask) {
      const held = table[slot * 2] as number;
      if (held === key) return table[slot * 2 + 1];
      if (held === EMPTY) return undefined;
    }
  }

  /** `key` is an integer in [0, 2^31): the caller's hash bits (INDEX_KEY_MASK). */
  set(key: number, value: number): void {
    const slot = this.#find(key);
    if (this.#table[slot * 2] === key) {
      this.#table[slot * 2 + 1] = value;
      return;
    }
    if ((this.#size + 1) * 2 > this.#mask + 1) {
      this.#resize((this.#mask + 1) * 2);
      this.#put(key, value);
    } else {
      this.#table[slot * 2] = key;
      this.#table[slot * 2 + 1] = value;
    }
    this.#size += 1;
  }

  delete(key: number): boolean {
    const table = this.#table;
    const mask = this.#mask;
    let gap = this.#find(key);
    if (table[gap * 2] !== key) return false;
    // Backward shift: each entry after the gap, up to the next empty slot, moves into the gap if
    // the gap lies between its home slot and where it is (it was pushed past the gap's slot).
    for (let slot = (gap + 1) & mask; ; slot = (slot + 1) & mask) {
      const moving = table[slot * 2] as number;
      if (moving === EMPTY) break;
      const home = moving & mask;
      const pushedPastGap = gap <= slot ? home <= gap || home > slot : home <= gap && home > slot;
      if (pushedPastGap) {
        table[gap * 2] = moving;
        table[gap * 2 + 1] = table[slot * 2 + 1] as number;
        gap = slot;
      }
    }
    table[gap * 2] = EMPTY;
    this.#size -= 1;
    // A window that shrank for good (a stream gone quiet) gives its slots back.
    if (this.#mask + 1 > FIRST_SLOTS && this.#size * 8 < this.#mask + 1) this.#resize((this.#mask + 1) / 2);
    return true;
  }

  /** The slot holding `key`, or the empty slot where it would go. */
  #find(key: number): number {
    const table = this.#table;
    const mask = this.#mask;
    let slot = key & mask;
    for (;;) {
      const held = table[slot * 2] as number;
      if (held === key || held === EMPTY) return slot;
      slot = (slot + 1) & mask;
    }
  }

  /** Into a table known to have room and not to hold the key. */
  #put(key: number, value: number): void {
    const slot = this.#find(key);
    this.#table[slot * 2] = key;
    this.#table[slot * 2 + 1] = value;
  }

  #resize(slots: number): void {
    const old = this.#table;
    this.#table = RecentIndex.#emptyTable(slots);
    this.#mask = slots - 1;
    for (let at = 0; at < old.length; at += 2) {
      const key = old[at] as number;
      if (key !== EMPTY) this.#put(key, old[at + 1] as number);
    }
  }

  static #emptyTable(slots: number): Float64Array {
    return new Float64Array(slots * 2).fill(EMPTY);
  }
}
