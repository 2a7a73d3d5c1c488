/**
 * Subscriptions: "satoshis per second" plans with a prepaid buffer, a grace period and
 * cancel at any time (docs/subscriptions.md).
 *
 * A plan prices time: `priceMsat` per increment of `incrementS` seconds (the billing
 * resolution: a started increment is billed in full, at its start). A subscription is a
 * prepaid ledger account `sub:<id>` (limit 0: it never owes the ledger): prepayment
 * invoices credit it, each started increment moves its price to the app's account, and a
 * cancel refunds what is left to the customer.
 *
 * Time is cut into segments: a segment starts at activation (or at the end of the trial) and
 * again at each resume after a suspension; increment k of a segment starts at
 * `anchorAt + k * incrementS`. `started` increments of the segment have begun; the last
 * `owed` of them could not be paid when they began (the grace period's service, charged
 * when money arrives, in order).
 */
import type { Msat } from '../money/msat.js';

export type SubscriptionStatus = 'created' | 'trialing' | 'active' | 'past_due' | 'suspended' | 'paused' | 'cancelled' | 'expired';

export const FINAL_STATUSES: ReadonlySet<SubscriptionStatus> = new Set(['cancelled', 'expired']);

export interface PlanTerms {
  name: string;
  /** Price of one increment. */
  priceMsat: Msat;
  incrementS: number;
  /** The buffer a prepayment invoice fills: whole increments (prepayment_s / increment_s, floored). */
  prepaymentS: number;
  graceS: number;
  /** null: no end. Otherwise a whole number of increments. */
  contractS: number | null;
  /** No prepayment invoice asks for less (so routing fees stay small). */
  minSettlementMsat: Msat;
  trialS: number;
  /** How long one pause may last (0: the plan does not allow pausing); billing resumes by itself after it. */
  maxPauseS: number;
}

export interface PlanRow extends PlanTerms {
  id: string;
  appId: string;
  /** What the merchant sent: 'per_second' (rate_msat_per_s x increment_s) or 'per_increment'. */
  rateKind: 'per_second' | 'per_increment';
  createdAt: number;
}

export type RefundDestination =
  | { kind: 'invoice'; paymentRequest: string }
  | { kind: 'lightning_address'; address: string }
  | { kind: 'keysend'; pubkey: string };

export type RefundStatus = 'none' | 'held' | 'pending' | 'succeeded' | 'failed';

export interface SubscriptionRow {
  id: string;
  appId: string;
  planId: string;
  accountId: string;
  payerTokenHash: string;
  status: SubscriptionStatus;
  /** Kept for a later refund (lightning_address or keysend; an invoice is single-use). */
  refundDestination: RefundDestination | null;
  metadata: string;
  createdAt: number;
  trialEndsAt: number | null;
  activatedAt: number | null;
  contractEndsAt: number | null;
  segment: number;
  anchorAt: number | null;
  started: number;
  owed: number;
  pastDueSince: number | null;
  suspendedAt: number | null;
  /** Paused by the customer or the merchant since then (no increments start); null otherwise. */
  pausedAt: number | null;
  endedAt: number | null;
  endedBy: string | null;
  /** Total charged to the app over the subscription's life. */
  chargedMsat: bigint;
  /** Open prepayment invoice, if any. */
  invoiceHash: string | null;
  invoiceRequest: string | null;
  invoiceAmountMsat: bigint | null;
  invoiceExpiresAt: number | null;
  invoiceCount: number;
  refundStatus: RefundStatus;
  refundMsat: bigint;
  refundAttempts: number;
  /** The refund payment's hash: for an invoice (a Lightning address's too) saved with the attempt, before it is sent; for keysend once sent. */
  refundPaymentHash: string | null;
  /**
   * The invoice the attempt pays (the destination's, or the one a Lightning address gave),
   * saved with it so a restart sends exactly this payment again: asked again, an address
   * would give another invoice, which the same idempotency key refuses as a conflict.
   */
  refundPaymentRequest: string | null;
  /** The routing-fee budget the app lent the attempt; null for an attempt of a version before it was saved. */
  refundMaxFeeMsat: bigint | null;
}

export type SubscriptionEventType =
  | 'created' | 'activated' | 'renewed' | 'payment_succeeded' | 'balance_low' | 'past_due'
  | 'suspended' | 'resumed' | 'cancelled' | 'expired';

/** A transition or occurrence, in time order; becomes a `subscription.<type>` webhook event. */
export interface SubscriptionOccurrence {
  type: SubscriptionEventType;
  at: number;
  /** Unique per subscription and cause (the webhook key). */
  cause: string;
  /** The status right after it (a catch-up may make several transitions in one commit); default the row's. */
  status?: SubscriptionStatus;
  data: Record<string, unknown>;
}
