/**
 * Time as a dependency, so expiry, grace periods and per-second billing are tested
 * without sleeping.
 */
export interface Clock {
  /** Unix milliseconds. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to (tests, and the devnet's clock advance). */
export interface ManualClock extends Clock {
  advanceMs(ms: number): void;
  set(ms: number): void;
}

export function createManualClock(startMs = Date.UTC(2026, 0, 1)): ManualClock {
  let current = startMs;
  return {
    now: () => current,
    advanceMs(ms) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot move the clock by ${ms} ms`);
      current += ms;
    },
    set(ms) {
      current = ms;
    },
  };
}
