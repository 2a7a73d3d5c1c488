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

/** A clock that can be moved forward (the devnet's clock advance). */
export interface AdvanceableClock extends Clock {
  advanceMs(ms: number): void;
}

export function isAdvanceable(clock: Clock): clock is AdvanceableClock {
  return typeof (clock as Partial<AdvanceableClock>).advanceMs === 'function';
}

/**
 * The devnet's clock: another clock (the system's) plus an offset that only grows, so a
 * demo or a test can live a month in seconds while time keeps flowing in between.
 */
export function createOffsetClock(base: Clock = systemClock): AdvanceableClock & { offsetMs(): number } {
  let offset = 0;
  return {
    now: () => base.now() + offset,
    advanceMs(ms) {
      if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`cannot move the clock by ${ms} ms`);
      offset += ms;
    },
    offsetMs: () => offset,
  };
}
