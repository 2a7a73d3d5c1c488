/** The in-memory state of a subscription the service works on (service.ts, refunds.ts). */
import type { PlanRow, SubscriptionRow } from './model.js';

export interface LiveSubscription {
  row: SubscriptionRow;
  plan: PlanRow;
  balance: bigint;
  /** The lock: every step on this subscription chains after the previous one. */
  tail: Promise<void>;
  /** Steps holding or waiting for the lock; a billing pass leaves busy subscriptions to the next pass. */
  busy: number;
  due: number | null;
}

/** A copy to change, so the live row changes only once a commit succeeded. */
export const cloneRow = (row: SubscriptionRow): SubscriptionRow => ({
  ...row,
  refundDestination: row.refundDestination === null ? null : { ...row.refundDestination },
});
