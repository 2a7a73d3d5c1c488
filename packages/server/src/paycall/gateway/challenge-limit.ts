/**
 * A limit on 402 challenges per client address. A challenge is not free for the server:
 * the L402 scheme creates a Lightning invoice (a signature and a database row) for each.
 * Without a limit, anyone could make the gateway mint invoices as fast as it can sign.
 * Requests that carry a credential are not counted: they are judged, and a bad credential
 * costs a hash or a signature check, not an invoice.
 *
 * Fixed one-minute windows per address, in memory; at most `maxAddresses` are tracked
 * (past that the oldest window's entries are dropped first, so memory stays bounded).
 */
export interface ChallengeLimiter {
  /** True when `address` may have one more challenge now. */
  take(address: string): boolean;
  /** Seconds until the current window ends (for Retry-After). */
  retryAfterS(): number;
}

export function createChallengeLimiter(options: { perMinute: number; maxAddresses?: number; nowMs?: () => number }): ChallengeLimiter {
  const nowMs = options.nowMs ?? Date.now;
  const maxAddresses = options.maxAddresses ?? 100_000;
  let windowStart = nowMs();
  let counts = new Map<string, number>();
  const roll = (): void => {
    const now = nowMs();
    if (now - windowStart >= 60_000) {
      windowStart = now - ((now - windowStart) % 60_000);
      counts = new Map();
    }
  };
  return {
    take(address) {
      roll();
      const used = counts.get(address) ?? 0;
      if (used >= options.perMinute) return false;
      if (used === 0 && counts.size >= maxAddresses) {
        // Bounded memory: forget the oldest address (Map keeps insertion order).
        const oldest = counts.keys().next().value;
        if (oldest !== undefined) counts.delete(oldest);
      }
      counts.set(address, used + 1);
      return true;
    },
    retryAfterS() {
      return Math.max(1, Math.ceil((windowStart + 60_000 - nowMs()) / 1000));
    },
  };
}
