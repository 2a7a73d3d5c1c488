/**
 * Row <-> model mappers shared by both stores. Both drivers read 64-bit integers as
 * bigint (better-sqlite3 with safe integers, `postgres` with the int8 parser), and both
 * schemas use the same column names.
 */
import type { Msat } from '../money/msat.js';
import type { IdempotencyRecord } from './planner.js';
import type { Account, LedgerError, Transfer, TransferId, TransferState } from './store.js';

export interface AccountRow {
  id: string;
  owner_id: string;
  code: string;
  limit_msat: bigint | null;
  debits_pending_msat: bigint;
  debits_posted_msat: bigint;
  credits_pending_msat: bigint;
  credits_posted_msat: bigint;
  created_at: bigint;
  last_transfer_id: string | null;
}

export interface TransferRow {
  id: string;
  debit_account_id: string;
  credit_account_id: string;
  amount_msat: bigint;
  state: string;
  code: string;
  reference: string;
  idempotency_key: string | null;
  created_at: bigint;
  resolved_at: bigint | null;
  debit_previous_id: string | null;
  credit_previous_id: string | null;
}

export interface IdempotencyRow {
  key: string;
  fingerprint: string;
  transfer_id: string | null;
  error: string | null;
  created_at: bigint;
}

export const ACCOUNT_COLUMNS =
  'id, owner_id, code, limit_msat, debits_pending_msat, debits_posted_msat, credits_pending_msat, credits_posted_msat, created_at, last_transfer_id';
export const TRANSFER_COLUMNS =
  'id, debit_account_id, credit_account_id, amount_msat, state, code, reference, idempotency_key, created_at, resolved_at, debit_previous_id, credit_previous_id';

/**
 * An account as the stores and the planner see it: the public Account plus the id of its
 * newest transfer, the head of the account's transfer list (see TransferRecord).
 */
export interface AccountState extends Account {
  lastTransferId: TransferId | null;
}

/**
 * A transfer as stored: the public Transfer plus, for each of its two accounts, the id of
 * that account's previous transfer. Listing an account's transfers newest-first walks this
 * chain from the account's lastTransferId. It replaces two (account_id, id) indexes whose
 * inserts land on a different page for almost every transfer, which made every commit
 * write several pages per transfer; the chain costs no index at all, and the account row
 * it updates is written by the batch anyway.
 */
export interface TransferRecord extends Transfer {
  debitPreviousId: TransferId | null;
  creditPreviousId: TransferId | null;
}

export function publicAccount(state: AccountState): Account {
  const { lastTransferId: _head, ...account } = state;
  return account;
}

export function publicTransfer(record: TransferRecord): Transfer {
  const { debitPreviousId: _debit, creditPreviousId: _credit, ...transfer } = record;
  return transfer;
}

/** The previous transfer of `accountId` before `record` in that account's list. */
export function previousOf(record: TransferRecord, accountId: string): TransferId | null {
  if (record.debitAccountId === accountId) return record.debitPreviousId;
  if (record.creditAccountId === accountId) return record.creditPreviousId;
  throw new Error(`transfer ${record.id} does not involve account ${accountId}`);
}
export const IDEMPOTENCY_COLUMNS = 'key, fingerprint, transfer_id, error, created_at';

function amount(value: bigint, column: string): Msat {
  if (typeof value !== 'bigint') throw new TypeError(`${column} read as ${typeof value}, expected bigint`);
  if (value < 0n) throw new RangeError(`${column} is negative in the database: ${value}`);
  return value as Msat;
}

function time(value: bigint | number): number {
  return Number(value);
}

export function accountFromRow(row: AccountRow): AccountState {
  return {
    id: row.id,
    ownerId: row.owner_id,
    code: row.code,
    limitMsat: row.limit_msat === null ? null : amount(row.limit_msat, 'limit_msat'),
    debitsPendingMsat: amount(row.debits_pending_msat, 'debits_pending_msat'),
    debitsPostedMsat: amount(row.debits_posted_msat, 'debits_posted_msat'),
    creditsPendingMsat: amount(row.credits_pending_msat, 'credits_pending_msat'),
    creditsPostedMsat: amount(row.credits_posted_msat, 'credits_posted_msat'),
    createdAt: time(row.created_at),
    lastTransferId: row.last_transfer_id,
  };
}

const STATES: ReadonlySet<string> = new Set<TransferState>(['pending', 'posted', 'voided']);

export function transferFromRow(row: TransferRow): TransferRecord {
  if (!STATES.has(row.state)) throw new Error(`transfer ${row.id} has unknown state ${row.state}`);
  return {
    id: row.id,
    debitAccountId: row.debit_account_id,
    creditAccountId: row.credit_account_id,
    amountMsat: amount(row.amount_msat, 'amount_msat'),
    state: row.state as TransferState,
    code: row.code,
    reference: row.reference,
    idempotencyKey: row.idempotency_key,
    createdAt: time(row.created_at),
    resolvedAt: row.resolved_at === null ? null : time(row.resolved_at),
    debitPreviousId: row.debit_previous_id,
    creditPreviousId: row.credit_previous_id,
  };
}

const ERRORS: ReadonlySet<string> = new Set<LedgerError>([
  'AccountNotFound',
  'SameAccount',
  'ZeroAmount',
  'LimitExceeded',
  'Overflow',
  'TransferNotFound',
  'TransferNotPending',
  'AmountExceedsPending',
  'IdempotencyConflict',
]);

export function idempotencyFromRow(row: IdempotencyRow): IdempotencyRecord {
  if (row.error !== null && !ERRORS.has(row.error)) throw new Error(`idempotency key ${row.key} has unknown error ${row.error}`);
  return {
    key: row.key,
    fingerprint: row.fingerprint,
    transferId: row.transfer_id,
    error: row.error as LedgerError | null,
    createdAt: time(row.created_at),
  };
}

/** Same spec as an existing account: createAccount returns it instead of AccountExists. */
export function sameSpec(account: Account, spec: { ownerId: string; limitMsat: Msat | null; code: string }): boolean {
  return account.ownerId === spec.ownerId && account.code === spec.code && account.limitMsat === spec.limitMsat;
}
