/**
 * Request fingerprints for idempotency: the same key must come with the same arguments.
 * Canonical JSON (sorted keys, bigints as decimal strings) hashed with SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';

function canonical(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString(10);
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as Record<string, unknown>)
        .sort()
        .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
        .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

export function fingerprint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(canonical(value))).digest('hex');
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function randomHex(byteLength: number): string {
  return randomBytes(byteLength).toString('hex');
}

export function randomId(prefix: string): string {
  return prefix + randomBytes(12).toString('base64url');
}

/**
 * An id whose text sorts by creation time: 12 hex digits of Unix milliseconds, then 96 random
 * bits (base64url). Why: rows keyed or looked up by such ids sit in creation order, which is
 * the order of a table's rowids. A sweep that takes its ids sorted then touches a few
 * neighbouring pages per transaction, in the table and in every index keyed by the id,
 * instead of one page per row (streams/service.ts, paycall/chain/settler.ts; ADR 0020).
 * Its 96 random bits are randomId's, so it is as hard to guess; the time it adds is public.
 */
export function timeOrderedId(prefix: string, nowMs: number): string {
  return prefix + millisecondsHex(nowMs) + randomBytes(12).toString('base64url');
}

/**
 * The time part of the time-ordered ids (these and the ledger's transfer ids, ledger/ids.ts):
 * 12 lowercase hex digits of Unix milliseconds, so the text sorts as the time. 12 digits hold
 * times below 2^48 ms (the year 10889); a part millisecond (a test's manual clock) counts as
 * the millisecond it is in.
 */
export function millisecondsHex(nowMs: number): string {
  if (!Number.isFinite(nowMs) || nowMs < 0 || nowMs >= 2 ** 48) throw new RangeError(`bad timestamp ${nowMs}`);
  return Math.floor(nowMs).toString(16).padStart(12, '0');
}
