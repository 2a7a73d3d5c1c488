/**
 * Transfer ids: 32 lowercase hex characters, time-ordered.
 *
 * The first 12 characters are the Unix millisecond time, the other 20 a random 80-bit
 * number that is incremented (not redrawn) within the same millisecond, as in ULID's
 * monotonic mode. So ids sort by creation time within one process, listing newest-first is
 * an index range scan, and inserts append to the right edge of the primary-key B-tree
 * (cheap in both SQLite and PostgreSQL). Ids from two processes in the same millisecond
 * interleave but never collide in practice (80 random bits).
 */
import { randomBytes } from 'node:crypto';
import { millisecondsHex } from '../util/fingerprint.js';
import type { TransferId } from './store.js';

export interface TransferIdGenerator {
  /** A new id for a transfer created at `nowMs`; strictly greater than the previous one. */
  next(nowMs: number): TransferId;
}

const RANDOM_BITS = 80n;
/** Leave headroom so that increments within one millisecond cannot wrap. */
const RANDOM_START_MAX = (1n << (RANDOM_BITS - 1n)) - 1n;

function randomStart(): bigint {
  return BigInt('0x' + randomBytes(10).toString('hex')) & RANDOM_START_MAX;
}

export function createTransferIdGenerator(): TransferIdGenerator {
  let lastMs = -1;
  let counter = 0n;
  return {
    next(nowMs) {
      if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new RangeError(`bad timestamp ${nowMs}`);
      // A clock that steps backwards keeps the last millisecond, so ids stay ordered.
      if (nowMs > lastMs) {
        // Checked (it throws past 2^48 ms) before the state moves: a bad time changes nothing.
        const time = millisecondsHex(nowMs);
        lastMs = nowMs;
        counter = randomStart();
        return time + counter.toString(16).padStart(20, '0');
      }
      counter += 1n;
      return millisecondsHex(lastMs) + counter.toString(16).padStart(20, '0');
    },
  };
}
