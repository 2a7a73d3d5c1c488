/**
 * The SQLite ledger's idempotency index, in two tiers (a small log-structured merge).
 *
 * Why: idempotency keys are random (clients send UUIDs), so inserting each one into a
 * key-ordered B-tree dirties a different 4 KB leaf page per key, and with WAL every dirty
 * page is written at commit. With 256 keyed transfers per group commit that was about 1 MB
 * of WAL per commit, which capped SQLite at ~25k transfers/s. So:
 *
 * - new records are appended to `ledger_idempotency_recent`, a rowid table: consecutive
 *   inserts share pages, a commit writes a few pages for a whole batch;
 * - every row of that table is also held in memory (`entries`), which is how a key in the
 *   recent tier is found (the table has no index on the key: that index would have the
 *   same random-insert cost);
 * - when the recent tier passes `compactAt` records, it is merged into the key-ordered
 *   `ledger_idempotency` table in ONE transaction with the keys sorted, so each leaf page
 *   of that table is written at most once per merge instead of once per key;
 * - a lookup checks the memory first, then the key-ordered table, but only when a Bloom
 *   filter over that table's keys says the key may be there (a new key, the common case,
 *   costs no B-tree probe); on open the recent table is read back into memory and the
 *   filter is built from the table's keys, so nothing is lost across a restart.
 *
 * Cost that stays: keys are random, so each merge rewrites most leaf pages of the
 * key-ordered table (measured: ~160 bytes of WAL per record in that table, 10 MB per 65k
 * records), so a merge costs more as the table grows, and once the table has more leaf
 * pages than a merge has keys, a key costs about one page again, as without the recent
 * tier, only written in one sorted pass. Keeping that cost flat needs more levels (runs
 * merged by size, as LSM trees do) or an expiry for old keys.
 *
 * Every record is durable in the same commit as the transfer it belongs to; memory only
 * mirrors the recent table. A record enters memory when it is written inside a transaction;
 * if that transaction is rolled back (a caller of applyOpsInTransaction throws), the entry is
 * stale. Such an entry stays "unconfirmed" until it is checked against the table (by rowid
 * and key) outside any transaction, and it is checked again on every lookup until then, so a
 * rolled-back record is never taken for a real one. Merges run only outside any caller's
 * transaction, in a transaction of their own, and memory is cleared only after that commit.
 *
 * Limit: ONE writing connection per database file (one process, one connection). Another
 * writer would add records this connection's memory does not know about, so it could apply
 * a replay twice. Readers (other connections, other processes) are fine.
 * (Sluice's embedded mode is one process; several processes use PostgreSQL, whose store
 * does not use this index.)
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from '../../db/sqlite.js';
import type { Msat } from '../../money/msat.js';
import { fingerprintOf, type IdempotencyRecord } from '../planner.js';
import { idempotencyFromRow } from '../rows.js';
import { idListQuery, type IdListQuery } from './id-list.js';
import { createKeyFilter, type KeyFilter } from './key-filter.js';
import { multiRowStatement, type MultiRowStatement } from './multi-row.js';

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

/** Records kept in the recent tier before a merge (about 300 bytes of memory each). */
export const DEFAULT_COMPACT_AT = 131_072;

interface Entry {
  record: IdempotencyRecord;
  rowid: bigint;
  /** False while the transaction that wrote it may still roll back. */
  confirmed: boolean;
}

export interface IdempotencyIndex {
  /**
   * The record for each key, or null; a Map with every key of `keys`. Must run inside the
   * transaction that will write the batch (it reads the key-ordered table).
   */
  lookup(keys: Iterable<string>): Map<string, IdempotencyRecord | null>;
  /**
   * Appends records to the recent tier inside the current transaction. `confirmOnCommit`
   * collects their keys for `confirm` when the caller will see the commit; null otherwise.
   */
  insert(records: readonly IdempotencyRecord[], confirmOnCommit: string[] | null): void;
  /** The transaction that wrote these keys has committed (the store's own batches). */
  confirm(keys: readonly string[]): void;
  /** Outside any transaction: settle unconfirmed entries, and merge the recent tier if it is full. */
  maintain(): void;
  /** Merges the recent tier into the key-ordered table now (outside any transaction). */
  compact(): void;
  /** Records in the recent tier (memory), for tests and metrics. */
  readonly recentSize: number;
  /** Merges run by this connection, for benchmarks and metrics. */
  readonly merges: number;
  readonly compactAt: number;
}

interface Statements {
  selectMain: Statement;
  selectMainMany: IdListQuery;
  selectRecentAll: Statement;
  selectRecentKey: Statement;
  insertRecent: MultiRowStatement;
  maxRecentRowid: Statement;
  mergeRecent: Statement;
  mainKeys: Statement;
  clearRecent: Statement;
}

const COLUMNS = 'key, fingerprint, transfer_id, error, request_amount_msat, request_pending, created_at';
/** A stored record plus, for one without a fingerprint, the columns of its transfer that rebuild it. */
const JOINED = (table: string) =>
  `SELECT i.key, i.fingerprint, i.transfer_id, i.error, i.request_amount_msat, i.request_pending, i.created_at,
          t.debit_account_id, t.credit_account_id, t.code, t.reference
   FROM ${table} AS i LEFT JOIN ledger_transfers AS t ON i.fingerprint IS NULL AND t.id = i.transfer_id`;

interface StoredRow {
  key: string;
  fingerprint: string | null;
  transfer_id: string | null;
  error: string | null;
  request_amount_msat: bigint | null;
  request_pending: bigint | null;
  created_at: bigint;
  debit_account_id: string | null;
  credit_account_id: string | null;
  code: string | null;
  reference: string | null;
}

/**
 * A successful transfer op is stored without its fingerprint (about 70 of its ~160 bytes):
 * the transfer's accounts, code and reference never change, and the request's amount and
 * pending flag are stored, so fingerprintOf rebuilds exactly the string the planner made.
 */
function recordFromStoredRow(row: StoredRow): IdempotencyRecord {
  const base = idempotencyFromRow({ ...row, fingerprint: row.fingerprint ?? '' });
  if (row.fingerprint !== null) return base;
  const { request_amount_msat: amount, request_pending: pending } = row;
  if (amount === null || pending === null) throw new Error(`idempotency key ${row.key} has neither fingerprint nor request`);
  if (row.debit_account_id === null || row.credit_account_id === null || row.code === null || row.reference === null) {
    throw new Error(`idempotency key ${row.key} points at missing transfer ${row.transfer_id}`);
  }
  const transferRequest = { amountMsat: amount as Msat, pending: Number(pending) === 1 };
  const fingerprint = fingerprintOf({
    kind: 'transfer',
    debitAccountId: row.debit_account_id,
    creditAccountId: row.credit_account_id,
    amountMsat: transferRequest.amountMsat,
    pending: transferRequest.pending,
    code: row.code,
    reference: row.reference,
  });
  return { ...base, fingerprint, transferRequest };
}

function prepare(db: SqliteDatabase): Statements {
  return {
    selectMain: db.prepare(`${JOINED('ledger_idempotency')} WHERE i.key = ?`),
    selectMainMany: idListQuery(db, (keys) => `${JOINED('ledger_idempotency')} WHERE i.key IN (${keys})`),
    selectRecentAll: db.prepare(
      `${JOINED('ledger_idempotency_recent').replace('SELECT i.key', 'SELECT i.rowid, i.key')} ORDER BY i.rowid`,
    ),
    selectRecentKey: db.prepare('SELECT key FROM ledger_idempotency_recent WHERE rowid = ?').pluck(),
    insertRecent: multiRowStatement(db, 8, 64, (values) => `INSERT INTO ledger_idempotency_recent (rowid, ${COLUMNS}) VALUES ${values}`),
    maxRecentRowid: db.prepare('SELECT COALESCE(MAX(rowid), 0) FROM ledger_idempotency_recent').pluck(),
    mergeRecent: db.prepare(
      `INSERT INTO ledger_idempotency (${COLUMNS}) SELECT ${COLUMNS} FROM ledger_idempotency_recent ORDER BY key`,
    ),
    clearRecent: db.prepare('DELETE FROM ledger_idempotency_recent'),
    mainKeys: db.prepare('SELECT key FROM ledger_idempotency').pluck(),
  };
}

const indexes = new WeakMap<SqliteDatabase, IdempotencyIndex>();

/**
 * The index of this connection, loaded from the recent table on first use. One per
 * connection; `compactAt` is set by its first user, and asking for another one later is a bug.
 */
export function idempotencyIndexFor(db: SqliteDatabase, compactAt?: number): IdempotencyIndex {
  let index = indexes.get(db);
  if (!index) {
    index = createIdempotencyIndex(db, compactAt ?? DEFAULT_COMPACT_AT);
    indexes.set(db, index);
  } else if (compactAt !== undefined && compactAt !== index.compactAt) {
    throw new Error(`this connection's idempotency index merges at ${index.compactAt} records, not ${compactAt}`);
  }
  return index;
}

function createIdempotencyIndex(db: SqliteDatabase, compactAt: number): IdempotencyIndex {
  if (!Number.isSafeInteger(compactAt) || compactAt < 1) throw new RangeError(`compactAt must be >= 1, got ${compactAt}`);
  const statements = prepare(db);
  const entries = new Map<string, Entry>();
  let merges = 0;
  /** Keys whose entries were written by a transaction not known to have committed. */
  const unconfirmed = new Set<string>();

  // Rowids are handed out here, never reused while this connection lives (a rolled-back
  // transaction leaves a gap), so an entry's rowid names its row or no row at all.
  let lastRowid = BigInt(statements.maxRecentRowid.get() as bigint | number);
  /** Every key of the key-ordered table (rebuilt twice as big when it fills up). */
  let filter: KeyFilter = buildFilter(0);
  function buildFilter(atLeast: number): KeyFilter {
    const keys = statements.mainKeys.iterate() as IterableIterator<string>;
    const built = createKeyFilter(atLeast);
    for (const key of keys) built.add(key);
    return built.size > built.capacity ? buildFilter(built.size * 2) : built;
  }

  // Read back what earlier runs left in the recent tier: all of it is committed.
  for (const row of statements.selectRecentAll.all() as (StoredRow & { rowid: bigint })[]) {
    entries.set(row.key, { record: recordFromStoredRow(row), rowid: row.rowid, confirmed: true });
  }

  /** Is this entry's row in the table as this connection sees it now? Drops it from memory if not. */
  function stillThere(key: string, entry: Entry): boolean {
    if (statements.selectRecentKey.get(entry.rowid) === key) return true;
    entries.delete(key);
    unconfirmed.delete(key);
    return false;
  }

  function compact(): void {
    if (db.inTransaction) throw new Error('the idempotency index merges only outside a transaction');
    const merged = db.transaction(() => {
      const count = statements.mergeRecent.run().changes;
      statements.clearRecent.run();
      return count;
    }).immediate();
    merges++;
    // Only now, after the merge committed: every record is in the key-ordered table. Entries
    // of rolled-back transactions may still be in memory; adding their keys to the filter
    // only costs a probe.
    if (filter.size + entries.size > filter.capacity) filter = buildFilter((filter.size + merged) * 2);
    else for (const key of entries.keys()) filter.add(key);
    entries.clear();
    unconfirmed.clear();
  }

  return {
    compactAt,
    get recentSize() {
      return entries.size;
    },
    get merges() {
      return merges;
    },
    lookup(keys) {
      const found = new Map<string, IdempotencyRecord | null>();
      const missing: string[] = [];
      for (const key of keys) {
        const entry = entries.get(key);
        if (entry && (entry.confirmed || stillThere(key, entry))) {
          found.set(key, entry.record);
        } else {
          found.set(key, null);
          if (filter.mightContain(key)) missing.push(key);
        }
      }
      if (missing.length === 1) {
        const row = statements.selectMain.get(missing[0]) as StoredRow | undefined;
        if (row) found.set(row.key, recordFromStoredRow(row));
      } else if (missing.length > 1) {
        for (const row of statements.selectMainMany.all(missing) as StoredRow[]) {
          found.set(row.key, recordFromStoredRow(row));
        }
      }
      return found;
    },
    insert(records, confirmOnCommit) {
      if (records.length === 0) return;
      const values: unknown[] = [];
      const first = lastRowid + 1n;
      for (const r of records) {
        const request = r.transferId === null ? undefined : r.transferRequest;
        values.push(
          ++lastRowid,
          r.key,
          request ? null : r.fingerprint,
          r.transferId,
          r.error,
          request ? request.amountMsat : null,
          request ? (request.pending ? 1 : 0) : null,
          r.createdAt,
        );
      }
      statements.insertRecent.run(values, records.length);
      let rowid = first;
      for (const r of records) {
        entries.set(r.key, { record: r, rowid: rowid++, confirmed: false });
        if (confirmOnCommit) confirmOnCommit.push(r.key);
        else unconfirmed.add(r.key);
      }
    },
    confirm(keys) {
      for (const key of keys) {
        const entry = entries.get(key);
        if (entry) entry.confirmed = true;
      }
    },
    maintain() {
      if (db.inTransaction) return;
      if (unconfirmed.size > 0) {
        // Outside any transaction the table shows only committed rows.
        for (const key of unconfirmed) {
          const entry = entries.get(key);
          if (entry && stillThere(key, entry)) entry.confirmed = true;
        }
        unconfirmed.clear();
      }
      if (entries.size >= compactAt) compact();
    },
    compact,
  };
}
