/**
 * Chain ids recently found absent from the store, so that a flood of calls with made-up
 * ids costs one database read per id, not one per request.
 *
 * Bounded twice: at most `max` ids (the oldest are dropped first) and each for `ttlMs`.
 * Chain ids hold 96 random bits (after their creation time) and are handed out only once
 * the chain is written, so a client that got one from a purchase never meets a stale entry:
 * an entry can only shadow a chain created after a guessed id was tried. The service forgets
 * an id the moment it creates or loads that chain; the time bound covers chains created by
 * another process sharing the database.
 */
import type { Clock } from '../../clock.js';

export interface UnknownChainIds {
  /** Whether `id` was found absent less than ttlMs ago. */
  has(id: string): boolean;
  /** Records that the store has no chain `id` (now). */
  add(id: string): void;
  /** The chain exists now (created or loaded): forget any absence. */
  delete(id: string): void;
  readonly size: number;
}

export const UNKNOWN_CHAIN_IDS_MAX = 10_000;
export const UNKNOWN_CHAIN_IDS_TTL_MS = 60_000;

export function createUnknownChainIds(clock: Clock, options: { max?: number; ttlMs?: number } = {}): UnknownChainIds {
  const max = options.max ?? UNKNOWN_CHAIN_IDS_MAX;
  const ttlMs = options.ttlMs ?? UNKNOWN_CHAIN_IDS_TTL_MS;
  /** id -> when it was found absent (Unix ms); Map order is insertion order, oldest first. */
  const seen = new Map<string, number>();
  return {
    has(id) {
      const at = seen.get(id);
      if (at === undefined) return false;
      if (clock.now() - at < ttlMs) return true;
      seen.delete(id);
      return false;
    },
    add(id) {
      seen.delete(id);
      seen.set(id, clock.now());
      while (seen.size > max) {
        const oldest = seen.keys().next().value as string;
        seen.delete(oldest);
      }
    },
    delete(id) {
      seen.delete(id);
    },
    get size() {
      return seen.size;
    },
  };
}
