/**
 * The ledger's rules, in one pure function shared by both stores.
 *
 * `planOps` takes a batch of ops and a read-only view of the rows they touch (accounts,
 * referenced pending transfers, idempotency records for the batch's keys) and returns the
 * results plus the rows to write. It never talks to a database, so SQLite and PostgreSQL
 * cannot disagree about what a transfer may do; each store only loads and writes rows.
 *
 * Ops are applied in order and each sees the effects of the ones before it: the planner
 * works on copies of the loaded rows and writes every touched account once per batch.
 *
 * Order of checks for a transfer: idempotency (replay or IdempotencyConflict),
 * ZeroAmount, SameAccount, AccountNotFound, Overflow, LimitExceeded. For post and void:
 * idempotency, TransferNotFound, TransferNotPending, then (post only) ZeroAmount,
 * AmountExceedsPending, Overflow. A refused op changes no balance; if it carries an
 * idempotency key its refusal is recorded so a replay returns the same refusal (like
 * TigerBeetle's id_already_failed). IdempotencyConflict is never recorded: the key
 * already belongs to another request.
 */
import { MSAT_MAX, type Msat } from '../money/msat.js';
import { publicTransfer, type AccountState, type TransferRecord } from './rows.js';
import type { AccountId, AccountSpec, LedgerError, LedgerOp, LedgerResult, TransferId } from './store.js';

/** What a store keeps per idempotency key: the request's fingerprint and its first outcome. */
export interface IdempotencyRecord {
  key: string;
  fingerprint: string;
  /** The transfer created (transfer op) or resolved (post, void); null for a refusal. */
  transferId: TransferId | null;
  error: LedgerError | null;
  createdAt: number;
  /**
   * For a transfer op that succeeded: the amount and pending flag it asked for. With the
   * transfer's own (immutable) accounts, code and reference they are the whole fingerprint,
   * so a store may keep these instead of the fingerprint (SQLite does: smaller records).
   * The amount is needed because posting less than a hold changes the transfer's amount.
   */
  transferRequest?: { amountMsat: Msat; pending: boolean };
}

/** Rows as they were in the database before the batch; null when absent. */
export interface LedgerView {
  account(id: AccountId): AccountState | null;
  transfer(id: TransferId): TransferRecord | null;
  idempotency(key: string): IdempotencyRecord | null;
}

export interface LedgerPlan {
  results: LedgerResult[];
  /** Final state of every account whose counters changed, once each. */
  updateAccounts: AccountState[];
  /** Transfers created by the batch, in their final state (one created and posted in the same batch is inserted posted). */
  insertTransfers: TransferRecord[];
  /** Transfers that existed before the batch and were posted or voided by it. */
  updateTransfers: TransferRecord[];
  insertIdempotency: IdempotencyRecord[];
}

export const MAX_CODE_LENGTH = 64;
export const MAX_REFERENCE_LENGTH = 1024;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;
export const MAX_ID_LENGTH = 256;

/**
 * Throws when an op is malformed. Malformed ops are bugs in the caller (the edge validates
 * client input before it builds an op), so they are assertions, not LedgerErrors. The
 * group-commit front calls this before queueing so one bad op cannot fail a whole batch.
 */
export function assertValidOp(op: LedgerOp): void {
  if (op === null || typeof op !== 'object') throw new TypeError('ledger op must be an object');
  if (op.idempotencyKey !== undefined) assertText('idempotencyKey', op.idempotencyKey, 1, MAX_IDEMPOTENCY_KEY_LENGTH);
  switch (op.kind) {
    case 'transfer':
      assertText('debitAccountId', op.debitAccountId, 1, MAX_ID_LENGTH);
      assertText('creditAccountId', op.creditAccountId, 1, MAX_ID_LENGTH);
      assertAmount('amountMsat', op.amountMsat);
      assertText('code', op.code, 1, MAX_CODE_LENGTH);
      if (op.reference !== undefined) assertText('reference', op.reference, 0, MAX_REFERENCE_LENGTH);
      if (op.pending !== undefined && typeof op.pending !== 'boolean') throw new TypeError('pending must be a boolean');
      return;
    case 'post':
      assertText('pendingId', op.pendingId, 1, MAX_ID_LENGTH);
      if (op.amountMsat !== undefined) assertAmount('amountMsat', op.amountMsat);
      return;
    case 'void':
      assertText('pendingId', op.pendingId, 1, MAX_ID_LENGTH);
      return;
    default:
      throw new TypeError(`unknown ledger op kind ${JSON.stringify((op as { kind: unknown }).kind)}`);
  }
}

function assertText(name: string, value: unknown, minLength: number, maxLength: number): void {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  if (value.length < minLength || value.length > maxLength) {
    throw new RangeError(`${name} must have ${minLength}..${maxLength} characters, has ${value.length}`);
  }
}

function assertAmount(name: string, value: unknown): void {
  if (typeof value !== 'bigint') throw new TypeError(`${name} must be a bigint`);
  if (value < 0n || value > MSAT_MAX) throw new RangeError(`${name} out of range: ${value}`);
}

/**
 * The canonical form of an op's arguments. Two requests under one key are "the same" when
 * their fingerprints are equal; defaults are filled in first (pending false), so omitting a
 * default and passing it explicitly are the same request.
 *
 * The reference is NOT part of it: it is the caller's annotation of the transfer (a payment
 * hash, a stream's sequence number) and may legitimately differ on a retry, whose answer is
 * then the first transfer, first reference included. What the money does (accounts,
 * amount, pending, code) must match.
 */
export function fingerprintOf(op: LedgerOp): string {
  switch (op.kind) {
    case 'transfer':
      return JSON.stringify([
        'transfer',
        op.debitAccountId,
        op.creditAccountId,
        op.amountMsat.toString(),
        op.pending === true,
        op.code,
      ]);
    case 'post':
      return JSON.stringify(['post', op.pendingId, op.amountMsat === undefined ? null : op.amountMsat.toString()]);
    case 'void':
      return JSON.stringify(['void', op.pendingId]);
  }
}

/** Every account id, transfer id and key that `planOps` may ask the view for, except accounts of referenced transfers. */
export interface BatchNeeds {
  accountIds: Set<AccountId>;
  pendingIds: Set<TransferId>;
  keys: Set<string>;
}

export function needsOf(ops: readonly LedgerOp[]): BatchNeeds {
  const needs: BatchNeeds = { accountIds: new Set(), pendingIds: new Set(), keys: new Set() };
  for (const op of ops) {
    if (op.idempotencyKey !== undefined) needs.keys.add(op.idempotencyKey);
    if (op.kind === 'transfer') {
      needs.accountIds.add(op.debitAccountId);
      needs.accountIds.add(op.creditAccountId);
    } else {
      needs.pendingIds.add(op.pendingId);
    }
  }
  return needs;
}

interface Working {
  view: LedgerView;
  now: number;
  newId: () => TransferId;
  accounts: Map<AccountId, AccountState | null>;
  changedAccounts: Set<AccountId>;
  transfers: Map<TransferId, TransferRecord | null>;
  newTransfers: Map<TransferId, TransferRecord>;
  resolvedTransfers: Map<TransferId, TransferRecord>;
  keys: Map<string, IdempotencyRecord | null>;
  insertIdempotency: IdempotencyRecord[];
}

/** Applies `ops` in order to copies of the rows in `view`; see the module comment. */
export function planOps(
  ops: readonly LedgerOp[],
  view: LedgerView,
  now: number,
  newId: () => TransferId,
): LedgerPlan {
  const working: Working = {
    view,
    now,
    newId,
    accounts: new Map(),
    changedAccounts: new Set(),
    transfers: new Map(),
    newTransfers: new Map(),
    resolvedTransfers: new Map(),
    keys: new Map(),
    insertIdempotency: [],
  };
  const results = ops.map((op) => planOne(working, op));
  const updateAccounts: AccountState[] = [];
  for (const id of working.changedAccounts) {
    const account = working.accounts.get(id);
    if (!account) throw new Error(`changed account ${id} missing from the working set`);
    updateAccounts.push(account);
  }
  return {
    results,
    updateAccounts,
    insertTransfers: [...working.newTransfers.values()],
    updateTransfers: [...working.resolvedTransfers.values()],
    insertIdempotency: working.insertIdempotency,
  };
}

function planOne(working: Working, op: LedgerOp): LedgerResult {
  assertValidOp(op);
  const key = op.idempotencyKey;
  if (key === undefined) return applyOp(working, op);
  const fingerprint = fingerprintOf(op);
  const existing = keyRecord(working, key);
  if (existing) return replay(working, op, existing, fingerprint);
  const result = applyOp(working, op);
  const record: IdempotencyRecord = {
    key,
    fingerprint,
    transferId: result.ok ? result.transfer.id : null,
    error: result.ok ? null : result.error,
    createdAt: working.now,
    ...(op.kind === 'transfer' && result.ok ? { transferRequest: { amountMsat: op.amountMsat, pending: op.pending === true } } : {}),
  };
  working.keys.set(key, record);
  working.insertIdempotency.push(record);
  return result;
}

function replay(working: Working, op: LedgerOp, record: IdempotencyRecord, fingerprint: string): LedgerResult {
  if (record.fingerprint !== fingerprint) return { ok: false, error: 'IdempotencyConflict', replayed: false };
  if (record.error !== null) return { ok: false, error: record.error, replayed: true };
  if (record.transferId === null) throw new Error(`idempotency record ${record.key} has neither transfer nor error`);
  const current = transferById(working, record.transferId);
  if (!current) throw new Error(`idempotency record ${record.key} points at missing transfer ${record.transferId}`);
  if (op.kind !== 'transfer') {
    // A post or void leaves the transfer final, so its current state is the first result.
    return { ok: true, transfer: publicTransfer(current), replayed: true };
  }
  // A transfer may have been posted or voided since it was created; the first result was the
  // transfer as created, which the (equal) arguments describe exactly.
  const pending = op.pending === true;
  return {
    ok: true,
    transfer: {
      ...publicTransfer(current),
      amountMsat: op.amountMsat,
      state: pending ? 'pending' : 'posted',
      resolvedAt: pending ? null : current.createdAt,
    },
    replayed: true,
  };
}

function applyOp(working: Working, op: LedgerOp): LedgerResult {
  switch (op.kind) {
    case 'transfer':
      return applyTransfer(working, op);
    case 'post':
      return applyPost(working, op.pendingId, op.amountMsat);
    case 'void':
      return applyVoid(working, op.pendingId);
  }
}

function refuse(error: LedgerError): LedgerResult {
  return { ok: false, error, replayed: false };
}

function applyTransfer(working: Working, op: Extract<LedgerOp, { kind: 'transfer' }>): LedgerResult {
  const amount = op.amountMsat;
  if (amount === 0n) return refuse('ZeroAmount');
  if (op.debitAccountId === op.creditAccountId) return refuse('SameAccount');
  const debit = accountById(working, op.debitAccountId);
  const credit = accountById(working, op.creditAccountId);
  if (!debit || !credit) return refuse('AccountNotFound');
  const pending = op.pending === true;
  const debitsPending = debit.debitsPendingMsat + (pending ? amount : 0n);
  const debitsPosted = debit.debitsPostedMsat + (pending ? 0n : amount);
  const creditsPending = credit.creditsPendingMsat + (pending ? amount : 0n);
  const creditsPosted = credit.creditsPostedMsat + (pending ? 0n : amount);
  if (debitsPending > MSAT_MAX || debitsPosted > MSAT_MAX || creditsPending > MSAT_MAX || creditsPosted > MSAT_MAX) {
    return refuse('Overflow');
  }
  if (debit.limitMsat !== null && debit.creditsPostedMsat - debitsPosted - debitsPending + debit.limitMsat < 0n) {
    return refuse('LimitExceeded');
  }
  debit.debitsPendingMsat = debitsPending as Msat;
  debit.debitsPostedMsat = debitsPosted as Msat;
  credit.creditsPendingMsat = creditsPending as Msat;
  credit.creditsPostedMsat = creditsPosted as Msat;
  working.changedAccounts.add(debit.id);
  working.changedAccounts.add(credit.id);
  const transfer: TransferRecord = {
    id: working.newId(),
    debitAccountId: debit.id,
    creditAccountId: credit.id,
    amountMsat: amount,
    state: pending ? 'pending' : 'posted',
    code: op.code,
    reference: op.reference ?? '',
    idempotencyKey: op.idempotencyKey ?? null,
    createdAt: working.now,
    resolvedAt: pending ? null : working.now,
    debitPreviousId: debit.lastTransferId,
    creditPreviousId: credit.lastTransferId,
  };
  debit.lastTransferId = transfer.id;
  credit.lastTransferId = transfer.id;
  if (working.transfers.has(transfer.id) || working.newTransfers.has(transfer.id)) {
    throw new Error(`transfer id ${transfer.id} generated twice`);
  }
  working.transfers.set(transfer.id, transfer);
  working.newTransfers.set(transfer.id, transfer);
  return { ok: true, transfer: publicTransfer(transfer), replayed: false };
}

function pendingTransfer(working: Working, id: TransferId): TransferRecord | LedgerError {
  const transfer = transferById(working, id);
  if (!transfer) return 'TransferNotFound';
  if (transfer.state !== 'pending') return 'TransferNotPending';
  return transfer;
}

function applyPost(working: Working, pendingId: TransferId, requested: Msat | undefined): LedgerResult {
  const transfer = pendingTransfer(working, pendingId);
  if (typeof transfer === 'string') return refuse(transfer);
  const held = transfer.amountMsat;
  const amount = requested ?? held;
  if (amount === 0n) return refuse('ZeroAmount');
  if (amount > held) return refuse('AmountExceedsPending');
  const { debit, credit } = accountsOf(working, transfer);
  const debitsPosted = debit.debitsPostedMsat + amount;
  const creditsPosted = credit.creditsPostedMsat + amount;
  if (debitsPosted > MSAT_MAX || creditsPosted > MSAT_MAX) return refuse('Overflow');
  releaseHold(debit, credit, held);
  // Posting moves at most the hold, so what the debit account may spend can only grow:
  // no limit check is needed (the database CHECK still backs this up).
  debit.debitsPostedMsat = debitsPosted as Msat;
  credit.creditsPostedMsat = creditsPosted as Msat;
  return resolve(working, transfer, 'posted', amount, debit, credit);
}

function applyVoid(working: Working, pendingId: TransferId): LedgerResult {
  const transfer = pendingTransfer(working, pendingId);
  if (typeof transfer === 'string') return refuse(transfer);
  const { debit, credit } = accountsOf(working, transfer);
  releaseHold(debit, credit, transfer.amountMsat);
  return resolve(working, transfer, 'voided', transfer.amountMsat, debit, credit);
}

function releaseHold(debit: AccountState, credit: AccountState, held: Msat): void {
  if (debit.debitsPendingMsat < held) throw new Error(`account ${debit.id} holds less than pending transfer amount ${held}`);
  if (credit.creditsPendingMsat < held) throw new Error(`account ${credit.id} holds less than pending transfer amount ${held}`);
  debit.debitsPendingMsat = (debit.debitsPendingMsat - held) as Msat;
  credit.creditsPendingMsat = (credit.creditsPendingMsat - held) as Msat;
}

function resolve(
  working: Working,
  transfer: TransferRecord,
  state: 'posted' | 'voided',
  amount: Msat,
  debit: AccountState,
  credit: AccountState,
): LedgerResult {
  transfer.state = state;
  transfer.amountMsat = amount;
  transfer.resolvedAt = working.now;
  working.changedAccounts.add(debit.id);
  working.changedAccounts.add(credit.id);
  if (!working.newTransfers.has(transfer.id)) working.resolvedTransfers.set(transfer.id, transfer);
  return { ok: true, transfer: publicTransfer(transfer), replayed: false };
}

function accountsOf(working: Working, transfer: TransferRecord): { debit: AccountState; credit: AccountState } {
  const debit = accountById(working, transfer.debitAccountId);
  const credit = accountById(working, transfer.creditAccountId);
  // Foreign keys guarantee both exist; a missing one means the view was not loaded right.
  if (!debit) throw new Error(`account ${transfer.debitAccountId} of transfer ${transfer.id} not loaded`);
  if (!credit) throw new Error(`account ${transfer.creditAccountId} of transfer ${transfer.id} not loaded`);
  return { debit, credit };
}

function accountById(working: Working, id: AccountId): AccountState | null {
  let account = working.accounts.get(id);
  if (account === undefined) {
    const loaded = working.view.account(id);
    account = loaded ? { ...loaded } : null;
    working.accounts.set(id, account);
  }
  return account;
}

function transferById(working: Working, id: TransferId): TransferRecord | null {
  let transfer = working.transfers.get(id);
  if (transfer === undefined) {
    const loaded = working.view.transfer(id);
    transfer = loaded ? { ...loaded } : null;
    working.transfers.set(id, transfer);
  }
  return transfer;
}

function keyRecord(working: Working, key: string): IdempotencyRecord | null {
  let record = working.keys.get(key);
  if (record === undefined) {
    record = working.view.idempotency(key);
    working.keys.set(key, record);
  }
  return record;
}

/** Throws when an account spec is malformed (a caller bug, like a malformed op). */
export function assertValidAccountSpec(spec: AccountSpec): void {
  if (spec === null || typeof spec !== 'object') throw new TypeError('account spec must be an object');
  assertText('id', spec.id, 1, MAX_ID_LENGTH);
  assertText('ownerId', spec.ownerId, 1, MAX_ID_LENGTH);
  assertText('code', spec.code, 1, MAX_CODE_LENGTH);
  if (spec.limitMsat !== null) assertAmount('limitMsat', spec.limitMsat);
}
