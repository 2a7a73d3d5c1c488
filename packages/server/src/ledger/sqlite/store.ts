/**
 * LedgerStore on SQLite (better-sqlite3: synchronous, one connection, WAL, synchronous=FULL).
 *
 * better-sqlite3 runs a whole `db.transaction(...)` synchronously: no other statement can
 * run on the connection between its reads and its writes, so the planner's checks and the
 * writes that follow are atomic without row locks. Batches take the write lock up front
 * (BEGIN IMMEDIATE), so a reader elsewhere never makes one fail halfway.
 *
 * Speed: one batch of ops costs one commit (one fsync, which the store's own batches take off
 * the event loop: see wal-sync.ts and `applyOpsStaged`). Inside it, the rows the batch
 * needs are loaded with one query per kind (`IN (?, ...)` over the ids), new rows go out in
 * multi-row INSERTs, each touched account is written once (one multi-row UPDATE), and every
 * statement is prepared once per connection. Idempotency records: see idempotency.ts.
 *
 * Limit: ONE writing connection per database file. The idempotency index's recent tier
 * (idempotency.ts) and the account cache (account-cache.ts) live in this connection's
 * memory; another writer would go unseen. Other connections may read.
 *
 * Migrations are not run by the factory: call `migrateSqliteLedger(db)` once at startup
 * (the composition root runs every module's migrations before serving).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Clock } from '../../clock.js';
import { systemClock } from '../../clock.js';
import { migrateSqlite } from '../../db/migrate.js';
import type { SqliteDatabase } from '../../db/sqlite.js';
import { createTransferIdGenerator, type TransferIdGenerator } from '../ids.js';
import { assertValidAccountSpec, assertValidOp, needsOf, planOps, type IdempotencyRecord, type LedgerPlan, type LedgerView } from '../planner.js';
import {
  ACCOUNT_COLUMNS,
  accountFromRow,
  previousOf,
  publicAccount,
  publicTransfer,
  type AccountState,
  type TransferRecord,
  sameSpec,
  TRANSFER_COLUMNS,
  transferFromRow,
  type AccountRow,
  type TransferRow,
} from '../rows.js';
import type {
  AccountId,
  AccountSpec,
  CreateAccountResult,
  LedgerOp,
  LedgerResult,
  LedgerStore,
  ListTransfersQuery,
  Transfer,
  TransferId,
} from '../store.js';
import { accountCacheFor, type AccountCache } from './account-cache.js';
import { idempotencyIndexFor, type IdempotencyIndex } from './idempotency.js';
import { sqliteLedgerMigrations } from './migrations.js';
import { multiRowStatement, type MultiRowStatement } from './multi-row.js';
import { idListQuery, type IdListQuery } from './id-list.js';
import { createWalSync, type SyncFile, type WalSync } from './wal-sync.js';
import { checkpointerFor, type Checkpointer, type CheckpointerOptions } from './checkpointer.js';
import type { StagedLedgerStore } from '../group-commit.js';

/** Rows per multi-row INSERT or UPDATE (12 columns x 64 rows = 768 parameters). */
const ROWS_PER_STATEMENT = 64;

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

interface Statements {
  selectAccount: Statement;
  selectAccounts: IdListQuery;
  selectTransfer: Statement;
  selectTransfers: IdListQuery;
  insertAccount: Statement;
  updateAccounts: MultiRowStatement;
  insertTransfers: MultiRowStatement;
  updateTransfer: Statement;
  listAccounts: Statement;
  sumOfBalances: Statement;
}

// Prepared statements and the id generator belong to a connection; these maps only
// remember them per connection (no shared state between databases).
const statementsByDb = new WeakMap<SqliteDatabase, Statements>();
const idsByDb = new WeakMap<SqliteDatabase, TransferIdGenerator>();

function statementsFor(db: SqliteDatabase): Statements {
  let statements = statementsByDb.get(db);
  if (!statements) {
    statements = prepareStatements(db);
    statementsByDb.set(db, statements);
  }
  return statements;
}

function idsFor(db: SqliteDatabase): TransferIdGenerator {
  let ids = idsByDb.get(db);
  if (!ids) {
    ids = createTransferIdGenerator();
    idsByDb.set(db, ids);
  }
  return ids;
}

function prepareStatements(db: SqliteDatabase): Statements {
  return {
    selectAccount: db.prepare(`SELECT ${ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = ?`),
    selectAccounts: idListQuery(db, (ids) => `SELECT ${ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id IN (${ids})`),
    selectTransfer: db.prepare(`SELECT ${TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ?`),
    selectTransfers: idListQuery(db, (ids) => `SELECT ${TRANSFER_COLUMNS} FROM ledger_transfers WHERE id IN (${ids})`),
    insertAccount: db.prepare(
      `INSERT INTO ledger_accounts (id, owner_id, code, limit_msat, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    ),
    updateAccounts: multiRowStatement(
      db,
      6,
      ROWS_PER_STATEMENT,
      (values) =>
        `UPDATE ledger_accounts AS a SET debits_pending_msat = u.column2, debits_posted_msat = u.column3,
         credits_pending_msat = u.column4, credits_posted_msat = u.column5, last_transfer_id = u.column6
         FROM (VALUES ${values}) AS u WHERE a.id = u.column1`,
    ),
    insertTransfers: multiRowStatement(
      db,
      12,
      ROWS_PER_STATEMENT,
      (values) => `INSERT INTO ledger_transfers (${TRANSFER_COLUMNS}) VALUES ${values}`,
    ),
    updateTransfer: db.prepare(
      `UPDATE ledger_transfers SET state = ?, amount_msat = ?, resolved_at = ? WHERE id = ? AND state = 'pending'`,
    ),
    listAccounts: db.prepare(`SELECT ${ACCOUNT_COLUMNS} FROM ledger_accounts WHERE owner_id = ? ORDER BY id`),
    // Summed in JavaScript: SQLite's SUM fails on 64-bit overflow, and partial sums of
    // balances near 2^63 can overflow even when the total is zero.
    sumOfBalances: db.prepare('SELECT credits_posted_msat - debits_posted_msat FROM ledger_accounts').raw(),
  };
}

/** Runs the ledger's migrations (module "ledger"); idempotent. */
export function migrateSqliteLedger(db: SqliteDatabase): void {
  migrateSqlite(db, sqliteLedgerMigrations);
}

export interface ApplyOpsOptions {
  /** Where new transfer ids come from; default: one time-ordered generator per connection. */
  ids?: TransferIdGenerator;
}

/**
 * Applies `ops` inside the transaction the caller has already opened on `db` (call it from
 * within `db.transaction(...)`), so ledger ops and the caller's own rows commit or roll
 * back together. Synchronous; `now` (Unix ms) stamps the transfers. Refusals are results;
 * a thrown error (a bug, a CHECK backstop firing) must abort the caller's transaction.
 *
 * @example
 * db.transaction(() => {
 *   const [hold] = applyOpsInTransaction(db, [{ kind: 'transfer', pending: true, ... }], clock.now());
 *   if (hold?.ok) insertPaymentRow(db, hold.transfer.id);
 * }).immediate();
 */
export function applyOpsInTransaction(
  db: SqliteDatabase,
  ops: readonly LedgerOp[],
  now: number,
  options: ApplyOpsOptions = {},
): LedgerResult[] {
  return applyInTransaction(db, ops, now, options.ids ?? idsFor(db), null);
}

/**
 * What one of the store's own batches wrote, to be made known to memory (idempotency index,
 * account cache) once its commit has returned.
 */
interface OwnBatch {
  keys: string[];
  accounts: AccountState[];
}

/**
 * `own`: set for the store's own batches, which see their commit; null for a caller's
 * transaction, whose outcome we cannot see (see idempotency.ts and account-cache.ts).
 */
function applyInTransaction(
  db: SqliteDatabase,
  ops: readonly LedgerOp[],
  now: number,
  ids: TransferIdGenerator,
  own: OwnBatch | null,
): LedgerResult[] {
  if (!db.inTransaction) throw new Error('applyOpsInTransaction must run inside db.transaction(...)');
  if (!Number.isSafeInteger(now) || now < 0) throw new RangeError(`bad timestamp ${now}`);
  if (ops.length === 0) return [];
  // Malformed ops are caller bugs: refuse the whole call before reading anything.
  for (const op of ops) assertValidOp(op);
  const statements = statementsFor(db);
  const index = idempotencyIndexFor(db);
  const cache = accountCacheFor(db);
  const view = loadView(statements, index, cache, own !== null, ops);
  const plan = planOps(ops, view, now, () => ids.next(now));
  writePlan(statements, index, plan, own ? own.keys : null);
  // The store's own batch also carries the next step of a merge under way: it shares this commit.
  if (own) index.mergeInTransaction();
  if (own) own.accounts.push(...plan.updateAccounts);
  else for (const account of plan.updateAccounts) cache.forget(account.id);
  return plan.results;
}

/**
 * Loads every row the batch names in one query per table (accounts, pending transfers,
 * idempotency records). Rows it could not know in advance (the accounts of a referenced
 * transfer, the transfer of a replayed key) are fetched one by one when asked for.
 */
function loadView(
  statements: Statements,
  index: IdempotencyIndex,
  cache: AccountCache,
  committedReads: boolean,
  ops: readonly LedgerOp[],
): LedgerView {
  const needs = needsOf(ops);
  const accounts = new Map<AccountId, AccountState | null>();
  const transfers = new Map<TransferId, TransferRecord | null>();
  const keys = needs.keys.size > 0 ? index.lookup(needs.keys) : new Map<string, IdempotencyRecord | null>();
  const uncached: AccountId[] = [];
  for (const id of needs.accountIds) {
    const cached = cache.get(id);
    if (cached) {
      accounts.set(id, cached);
    } else {
      accounts.set(id, null);
      uncached.push(id);
    }
  }
  if (uncached.length > 0) {
    for (const row of statements.selectAccounts.all(uncached) as AccountRow[]) {
      const account = accountFromRow(row);
      accounts.set(row.id, account);
      if (committedReads) cache.remember(account);
    }
  }
  if (needs.pendingIds.size > 0) {
    for (const id of needs.pendingIds) transfers.set(id, null);
    for (const row of statements.selectTransfers.all([...needs.pendingIds]) as TransferRow[]) {
      transfers.set(row.id, transferFromRow(row));
    }
  }
  return {
    account(id) {
      const known = accounts.get(id);
      if (known !== undefined) return known;
      const row = statements.selectAccount.get(id) as AccountRow | undefined;
      return row ? accountFromRow(row) : null;
    },
    transfer(id) {
      const known = transfers.get(id);
      if (known !== undefined) return known;
      const row = statements.selectTransfer.get(id) as TransferRow | undefined;
      return row ? transferFromRow(row) : null;
    },
    idempotency(key) {
      const known = keys.get(key);
      if (known !== undefined) return known;
      return index.lookup([key]).get(key) ?? null;
    },
  };
}

function writePlan(statements: Statements, index: IdempotencyIndex, plan: LedgerPlan, writtenKeys: string[] | null): void {
  const inserts = plan.insertTransfers;
  if (inserts.length > 0) {
    const values: unknown[] = [];
    for (const t of inserts) {
      values.push(
        t.id,
        t.debitAccountId,
        t.creditAccountId,
        t.amountMsat,
        t.state,
        t.code,
        t.reference,
        t.idempotencyKey,
        t.createdAt,
        t.resolvedAt,
        t.debitPreviousId,
        t.creditPreviousId,
      );
    }
    statements.insertTransfers.run(values, inserts.length);
  }
  for (const t of plan.updateTransfers) {
    const changes = statements.updateTransfer.run(t.state, t.amountMsat, t.resolvedAt, t.id).changes;
    if (changes !== 1) throw new Error(`transfer ${t.id} was not pending when resolving it`);
  }
  index.insert(plan.insertIdempotency, writtenKeys);
  const accounts = plan.updateAccounts;
  if (accounts.length > 0) {
    const values: unknown[] = [];
    for (const a of accounts) {
      values.push(a.id, a.debitsPendingMsat, a.debitsPostedMsat, a.creditsPendingMsat, a.creditsPostedMsat, a.lastTransferId);
    }
    const changes = statements.updateAccounts.run(values, accounts.length);
    if (changes !== accounts.length) throw new Error(`updated ${changes} of ${accounts.length} accounts: one vanished during a batch`);
  }
}

/**
 * Creates an account inside the caller's open transaction. The same spec again returns the
 * existing account (created: false); another spec under the same id is AccountExists.
 */
export function createAccountInTransaction(db: SqliteDatabase, spec: AccountSpec, now: number): CreateAccountResult {
  if (!db.inTransaction) throw new Error('createAccountInTransaction must run inside db.transaction(...)');
  assertValidAccountSpec(spec);
  const statements = statementsFor(db);
  const inserted = statements.insertAccount.run(spec.id, spec.ownerId, spec.code, spec.limitMsat, now).changes === 1;
  const row = statements.selectAccount.get(spec.id) as AccountRow | undefined;
  if (!row) throw new Error(`account ${spec.id} missing right after insert`);
  const account = publicAccount(accountFromRow(row));
  if (inserted) return { ok: true, account, created: true };
  return sameSpec(account, spec) ? { ok: true, account, created: false } : { ok: false, error: 'AccountExists' };
}

export interface SqliteLedgerStoreOptions {
  clock?: Clock;
  ids?: TransferIdGenerator;
  /**
   * Idempotency records kept in the recent tier before they are merged into the key-ordered
   * table (default DEFAULT_COMPACT_AT); the first user of a connection decides. Tests set it low.
   */
  idempotencyCompactAt?: number;
  /**
   * Records merged per slice (default DEFAULT_MERGE_SLICE): a merge runs one slice before each
   * of the store's batches, so this bounds the pause it adds. Tests set it low.
   */
  idempotencyMergeSlice?: number;
  /**
   * How the WAL is synced after the store's own batches (default: fdatasync on the thread
   * pool). Tests replace it to watch the order of commit, sync and answer.
   */
  syncFile?: SyncFile;
  /**
   * false: the store's own batches commit with synchronous=FULL like every other transaction
   * (SQLite fsyncs inside the commit, on the event loop) and no checkpoint worker runs. The
   * default (true) syncs after the commit on the thread pool (wal-sync.ts), which frees the
   * event loop during the sync but costs a thread hand-off per commit (measured ~60 µs of CPU
   * per commit on a 2-core VM).
   */
  syncOffLoop?: boolean;
  /** WAL checkpoints in a worker thread (checkpointer.ts); false keeps SQLite's own. The first store of a connection decides. */
  checkpoints?: CheckpointerOptions | false;
}

export const MAX_LIST_LIMIT = 1000;

/**
 * What the server runs with: SQLite's own fsync inside each group commit and SQLite's own
 * checkpoints. Measured against the off-loop sync and the checkpoint worker on the 2-core VM
 * of docs/benchmarks.md (alternating runs, 2026-11-23): the ledger was faster this way at 1
 * and 16 callers (about 1.4x: no thread hand-off per commit) and equal at 256; streams were
 * equal within noise. The other modes stay available (and tested) for disks where the sync
 * is long enough to be worth freeing the event loop for. (The stream money store starts the
 * checkpoint worker on the same connection once its WAL passes 4 MB: with streams, SQLite's
 * own checkpoints held the event loop 10-40 ms; ADR 0018.)
 */
export const SERVER_LEDGER_STORE_OPTIONS = { syncOffLoop: false, checkpoints: false } as const satisfies SqliteLedgerStoreOptions;

export function createSqliteLedgerStore(db: SqliteDatabase, options: SqliteLedgerStoreOptions = {}): StagedLedgerStore {
  const clock = options.clock ?? systemClock;
  const ids = options.ids ?? idsFor(db);
  // Built on first use (it reads the ledger's tables), so the store may be created before migrating.
  const indexOf = (): IdempotencyIndex => idempotencyIndexFor(db, options.idempotencyCompactAt, options.idempotencyMergeSlice);
  const cache = accountCacheFor(db);
  const applyBatch = db.transaction((ops: readonly LedgerOp[], now: number, own: OwnBatch | null) =>
    applyInTransaction(db, ops, now, ids, own),
  );
  const createAccount = db.transaction((spec: AccountSpec, now: number) => createAccountInTransaction(db, spec, now));
  // Built on first use, after the caller configured the connection (journal mode).
  let walSync: WalSync | null | undefined;
  const walSyncOf = (): WalSync | null =>
    walSync === undefined ? (walSync = options.syncOffLoop === false ? null : createWalSync(db, options.syncFile)) : walSync;
  let checkpointer: Checkpointer | null | undefined;
  const checkpointerOf = (): Checkpointer | null =>
    checkpointer === undefined ? (checkpointer = options.checkpoints === false ? null : checkpointerFor(db, options.checkpoints)) : checkpointer;
  /**
   * One of the store's own batches: one transaction, committed. With a WAL sync, the commit
   * itself does not fsync (synchronous=NORMAL for this transaction only; the connection's own
   * setting, FULL, again right after, for every other transaction on it) and `durable` is the sync that
   * follows; without one (in-memory database), the commit was durable as it returned.
   */
  const applyOwn = (ops: readonly LedgerOp[]): { results: LedgerResult[]; durable: Promise<void> | null } => {
    const wal = walSyncOf();
    if (wal?.failure) throw wal.failure;
    indexOf().maintain();
    const batch: OwnBatch = { keys: [], accounts: [] };
    // BEGIN IMMEDIATE takes the write lock up front, so this transaction cannot fail
    // halfway with SQLITE_BUSY on its first write.
    const commit = (): LedgerResult[] => applyBatch.immediate(ops, clock.now(), batch);
    const results = wal ? wal.commitUnsynced(commit) : commit();
    // Committed: memory may now know what the batch wrote (later batches read it; a crash
    // before the sync loses memory and the batch together).
    indexOf().confirm(batch.keys);
    for (const account of batch.accounts) cache.remember(account);
    const durable = wal ? wal.afterCommit() : null;
    // Between two commits: the only place the main connection may checkpoint (see checkpointer.ts).
    if (wal) checkpointerOf()?.afterCommit();
    return { results, durable };
  };

  return {
    dialect: 'sqlite',
    async createAccount(spec) {
      return createAccount.immediate(spec, clock.now());
    },
    async getAccount(id) {
      const row = statementsFor(db).selectAccount.get(id) as AccountRow | undefined;
      return row ? publicAccount(accountFromRow(row)) : null;
    },
    async listAccounts(ownerId) {
      return (statementsFor(db).listAccounts.all(ownerId) as AccountRow[]).map((row) => publicAccount(accountFromRow(row)));
    },
    async applyOps(ops) {
      if (ops.length === 0) return [];
      // Called inside a caller's transaction (a savepoint), our commit is not the commit.
      if (db.inTransaction) return applyBatch.immediate(ops, clock.now(), null);
      const { results, durable } = applyOwn(ops);
      if (durable) await durable;
      return results;
    },
    async applyOpsStaged(ops) {
      if (ops.length === 0) return { results: [], durable: null };
      if (db.inTransaction) return { results: applyBatch.immediate(ops, clock.now(), null), durable: null };
      return applyOwn(ops);
    },
    async getTransfer(id) {
      const row = statementsFor(db).selectTransfer.get(id) as TransferRow | undefined;
      return row ? publicTransfer(transferFromRow(row)) : null;
    },
    async listTransfers(query: ListTransfersQuery) {
      assertListLimit(query.limit);
      return db.transaction(() => listTransfersByChain(statementsFor(db), query))();
    },
    async sumOfBalances() {
      let sum = 0n;
      for (const row of statementsFor(db).sumOfBalances.iterate() as IterableIterator<[bigint]>) sum += row[0];
      return sum;
    },
  };
}

/** Walks the account's transfer chain newest-first (one primary-key lookup per transfer). */
function listTransfersByChain(statements: Statements, query: ListTransfersQuery): Transfer[] {
  const load = (id: TransferId): TransferRecord | null => {
    const row = statements.selectTransfer.get(id) as TransferRow | undefined;
    return row ? transferFromRow(row) : null;
  };
  let next: TransferId | null;
  if (query.beforeId === undefined) {
    const row = statements.selectAccount.get(query.accountId) as AccountRow | undefined;
    next = row ? row.last_transfer_id : null;
  } else {
    const before = load(query.beforeId);
    const involved = before && (before.debitAccountId === query.accountId || before.creditAccountId === query.accountId);
    next = involved ? previousOf(before, query.accountId) : null;
  }
  const transfers: Transfer[] = [];
  while (next !== null && transfers.length < query.limit) {
    const record = load(next);
    if (!record) throw new Error(`transfer chain of ${query.accountId} points at missing transfer ${next}`);
    transfers.push(publicTransfer(record));
    next = previousOf(record, query.accountId);
  }
  return transfers;
}

export function assertListLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new RangeError(`list limit must be 1..${MAX_LIST_LIMIT}, got ${limit}`);
  }
}
