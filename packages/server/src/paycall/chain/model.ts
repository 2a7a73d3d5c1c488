/**
 * Hash-chain tokens: what the server keeps of a chain (one row, never the seed nor the
 * links between the anchor and the last accepted one), and what a client sees of it.
 *
 * Money: the purchase invoice credits the chain's own ledger account (`chain:<id>`).
 * Accepted calls move their steps' value from that account to the app's account in sweeps
 * (settlement.ts) that record how far each chain is settled, so after every sweep
 *   chain account = (steps - settled_index) x step_msat (+ anything paid above the invoice)
 * and the app's revenue from the chain = settled_index x step_msat, to the msat; a sweep
 * follows every commit of the index within the settle interval.
 */
import type { Msat } from '../../money/msat.js';

/** Stored status. `exhausted` and `expired` are derived (index = steps; past expires_at). */
export type ChainStoredStatus = 'pending' | 'active' | 'refunded';
export type ChainStatus = 'pending' | 'active' | 'exhausted' | 'expired' | 'refunded';

export interface ChainRow {
  id: string;
  appId: string;
  /** w_0, 32 bytes as lowercase hex. */
  anchor: string;
  steps: number;
  stepMsat: Msat;
  /** The index of the last accepted link (0: nothing spent yet). */
  index: number;
  /**
   * How far the app has been paid (settlement.ts), as read from the store: a copy held in
   * memory does not follow the sweeps (the money's cold paths read the row again).
   */
  settledIndex: number;
  /** w_index as lowercase hex (the anchor while index = 0). */
  link: string;
  status: ChainStoredStatus;
  /** Unix ms; calls are refused from then on (a refund is still allowed). */
  expiresAt: number;
  accountId: string;
  /** Payment hash of the purchase invoice. */
  invoiceHash: string;
}

/** What the durable write of one dirty chain changes. */
export interface ChainWrite {
  id: string;
  /** The index the database holds now: the write applies only if it still does. */
  fromIndex: number;
  index: number;
  link: string;
}

export interface ChainView {
  id: string;
  appId: string;
  anchor: string;
  steps: number;
  stepMsat: Msat;
  amountMsat: Msat;
  status: ChainStatus;
  index: number;
  remainingSteps: number;
  remainingMsat: Msat;
  expiresAt: number;
  invoiceHash: string;
}

export const CHAIN_ACCOUNT_PREFIX = 'chain:';

export function chainAccountId(chainId: string): string {
  return `${CHAIN_ACCOUNT_PREFIX}${chainId}`;
}
