/**
 * The ledger: the only code that changes balances.
 *
 * Double entry: every transfer debits one account and credits another by the same
 * amount, so the sum of all balances is always zero. An account's balance is
 * credits_posted - debits_posted and may go below zero only as far as its limit
 * (`limitMsat`; null means unlimited, used by system accounts such as the Lightning
 * node's). Pending debits count against the limit too, so a pending transfer is a hold.
 *
 * Threat model: callers are our own services, but every amount they pass may come from
 * a client. The store re-checks limits inside the transaction that writes the transfer
 * (never check-then-set across transactions) and the database carries CHECK constraints
 * as a second line. A request with an idempotency key is applied at most once: a replay
 * with the same arguments returns the first result (success or refusal), a replay with
 * other arguments is refused with `IdempotencyConflict`.
 */
import type { Msat } from '../money/msat.js';

export type AccountId = string;
export type TransferId = string;

export interface AccountSpec {
  id: AccountId;
  /** Who the account belongs to: an app id, a payer id, or "system". */
  ownerId: string;
  /** How far below zero the balance may go; null: no limit (system accounts only). */
  limitMsat: Msat | null;
  /** What the account is for ("app", "lightning", "stream-payer", ...). */
  code: string;
}

export interface Account extends AccountSpec {
  debitsPendingMsat: Msat;
  debitsPostedMsat: Msat;
  creditsPendingMsat: Msat;
  creditsPostedMsat: Msat;
  /** Unix milliseconds. */
  createdAt: number;
}

export type TransferState = 'pending' | 'posted' | 'voided';

export interface Transfer {
  id: TransferId;
  debitAccountId: AccountId;
  creditAccountId: AccountId;
  /** For a pending transfer, the amount held; once posted, the amount that moved. */
  amountMsat: Msat;
  state: TransferState;
  /** What the transfer is for ("invoice", "payment", "fee", "charge", ...). */
  code: string;
  /** An outside reference such as a payment hash; "" when none. */
  reference: string;
  idempotencyKey: string | null;
  createdAt: number;
  /** When it was posted or voided (two-phase transfers); equal to createdAt for one-phase. */
  resolvedAt: number | null;
}

/** Moves amountMsat now (posted), or holds it (pending) until a later post or void. */
export interface TransferOp {
  kind: 'transfer';
  debitAccountId: AccountId;
  creditAccountId: AccountId;
  amountMsat: Msat;
  pending?: boolean;
  code: string;
  reference?: string;
  idempotencyKey?: string;
}

/** Completes a pending transfer, moving amountMsat (default: all of it, never more). */
export interface PostOp {
  kind: 'post';
  pendingId: TransferId;
  amountMsat?: Msat;
  idempotencyKey?: string;
}

/** Releases a pending transfer's hold; nothing moves. */
export interface VoidOp {
  kind: 'void';
  pendingId: TransferId;
  idempotencyKey?: string;
}

export type LedgerOp = TransferOp | PostOp | VoidOp;

export type LedgerError =
  | 'AccountNotFound'
  | 'SameAccount'
  | 'ZeroAmount'
  | 'LimitExceeded'
  | 'Overflow'
  | 'TransferNotFound'
  | 'TransferNotPending'
  | 'AmountExceedsPending'
  | 'IdempotencyConflict';

export type LedgerResult =
  | { ok: true; transfer: Transfer; replayed: boolean }
  | { ok: false; error: LedgerError; replayed: boolean };

export type CreateAccountResult =
  | { ok: true; account: Account; created: boolean }
  | { ok: false; error: 'AccountExists' };

/** Signed balance helpers: a balance may be negative, so these are plain bigints. */
export function balanceOf(account: Account): bigint {
  return account.creditsPostedMsat - account.debitsPostedMsat;
}

/** What the account may still spend: balance, minus holds, plus its limit (Infinity-like for null). */
export function availableOf(account: Account): bigint | null {
  if (account.limitMsat === null) return null;
  return account.creditsPostedMsat - account.debitsPostedMsat - account.debitsPendingMsat + account.limitMsat;
}

export interface ListTransfersQuery {
  accountId: AccountId;
  /** Newest first; page with `beforeId`. */
  limit: number;
  beforeId?: TransferId;
}

export interface LedgerStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Idempotent: the same spec again returns the existing account (created: false); a different spec under the same id is AccountExists. */
  createAccount(spec: AccountSpec): Promise<CreateAccountResult>;
  getAccount(id: AccountId): Promise<Account | null>;
  listAccounts(ownerId: string): Promise<Account[]>;
  /**
   * Applies the ops in order in ONE database transaction and ONE commit; each op sees the
   * effects of the ops before it. Resolves only after the commit is durable. A refused op
   * changes nothing but is recorded under its idempotency key (if it has one) so a
   * replay returns the same refusal.
   */
  applyOps(ops: readonly LedgerOp[]): Promise<LedgerResult[]>;
  getTransfer(id: TransferId): Promise<Transfer | null>;
  listTransfers(query: ListTransfersQuery): Promise<Transfer[]>;
  /** Sum of every account's balance; zero unless the ledger is broken (tests, health checks). */
  sumOfBalances(): Promise<bigint>;
}
