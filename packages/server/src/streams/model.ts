/**
 * Streams: a metered account between an app and a payer, where value moves both ways in
 * msat (charges: payer -> app; rewards: app -> payer) and is settled on Lightning in
 * batches (top-up invoices to the payer, payouts to the payer).
 *
 * Ledger accounts: the payer's position is `stream:<id>` (limit = maximum_msat, the debt
 * the app allows); charges credit and rewards debit the app's own account. Funding
 * invoices credit the stream account; payouts debit it.
 *
 * Every change of a stream has a sequence number (`seq`), strictly increasing per
 * stream (gaps are possible: a refused operation may have used one). Money steps (charge,
 * reward, meter) are rows of stream_money (money-store.ts; the charges reach the app's
 * account in sweeps), or, for a stream opened before those rows existed, ledger transfers
 * whose reference carries the seq; other events (funded, paused, closed, invoice, ...) are
 * rows of stream_events. A client resumes after a reconnect from the last seq it saw.
 */
import type { Msat } from '../money/msat.js';

export type StreamStatus = 'open' | 'closed';
export type MeterState = 'stopped' | 'running' | 'paused';

export type PayoutDestination =
  | { kind: 'keysend'; pubkey: string }
  | { kind: 'lightning_address'; address: string }
  /** Ask the payer's client for an invoice of the exact amount each time. */
  | { kind: 'invoice' };

export interface StreamTerms {
  /** Named prices: event name -> msat per event. */
  prices: Record<string, Msat>;
  /** Per-second metering rate (0: no meter). */
  rateMsatPerS: Msat;
  /** How far the payer may fall into debt; 0: prepaid only. */
  maximumMsat: Msat;
  /** When the payer's balance falls under this, a top-up invoice is sent... */
  settleThresholdMsat: Msat;
  /** ...for the amount that brings it back to this level. */
  settleToMsat: Msat;
  /** The largest single charge or reward. */
  maxChargeMsat: Msat;
  /** When the balance exceeds settle_to by this much, the excess is paid out (0: only on close). */
  payoutThresholdMsat: Msat;
  /** Unix ms; the stream closes itself then. */
  expiresAt: number | null;
}

export interface StreamRow extends StreamTerms {
  id: string;
  appId: string;
  accountId: string;
  payerTokenHash: string;
  payoutDestination: PayoutDestination | null;
  status: StreamStatus;
  meter: MeterState;
  /** Meter segment: every start or resume begins a new one, so tick keys stay unique. */
  meterSegment: number;
  /** Unix ms when the current segment started (running) or null. */
  meterSegmentStartedAt: number | null;
  /** Whole seconds of the current segment already charged. */
  meterSecondsCharged: number;
  metadata: string;
  createdAt: number;
  closedAt: number | null;
  /**
   * Where its money steps are kept: true, compact rows (stream_money; its charges reach the
   * app in sweeps, one ledger transfer per stream); false, one ledger transfer each (streams opened
   * before the rows existed, or by a service without a money store).
   */
  moneyRows: boolean;
}

export type StreamEventType =
  | 'created'
  | 'invoice'
  | 'funded'
  | 'charged'
  | 'rewarded'
  | 'metered'
  | 'meter_started'
  | 'paused'
  | 'resumed'
  | 'meter_stopped'
  | 'payout_requested'
  | 'payout_destination_set'
  | 'payout_invoice_needed'
  | 'settled'
  | 'payout_failed'
  | 'closed';

export interface StreamEvent {
  streamId: string;
  seq: number;
  type: StreamEventType;
  /** Event fields (amounts as decimal strings), as sent on the wire. */
  data: Record<string, unknown>;
  at: number;
  /** The stream's balance right after this event, when it changed money. */
  balanceMsat?: bigint;
}

export interface StreamView {
  id: string;
  appId: string;
  status: StreamStatus;
  meter: MeterState;
  terms: StreamTerms;
  /** Signed: negative when the payer owes. */
  balanceMsat: bigint;
  /** Held by payouts in flight. */
  heldMsat: Msat;
  seq: number;
  payoutDestination: PayoutDestination | null;
  metadata: string;
  createdAt: number;
  closedAt: number | null;
}
