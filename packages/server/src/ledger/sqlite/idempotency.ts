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
 * - when the recent tier passes `compactAt` records, that generation (rowid <= X) is merged
 *   into the key-ordered `ledger_idempotency` table incrementally: its keys are split into
 *   ascending key ranges of about `sliceRecords` keys, and each range is copied, sorted, in
 *   the transaction of one of the store's group commits (so each leaf page of that table is
 *   still written about once per generation, not once per key, and no merge holds the event
 *   loop for long: one transaction copying the whole tier took up to ~1 s once the table was
 *   large). A cursor row (`ledger_idempotency_merge`: X and the key below which the
 *   generation is merged) commits with each range; the generation's rows leave the recent
 *   table only once all of it is merged, in contiguous rowid chunks, so a range copied to the
 *   key-ordered table is also still in the recent table until then, and the cursor is what
 *   says which tier a key counts in: on open, rows the cursor covers are not read back;
 * - a lookup checks the memory first, then the key-ordered table, but only when a Bloom
 *   filter over that table's keys says the key may be there (a new key, the common case,
 *   costs no B-tree probe); on open the recent table is read back into memory and the
 *   filter is built from the table's keys, so nothing is lost across a restart.
 *
 * Cost that stays: keys are random, so each merge (generation) rewrites most leaf pages of the
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
 * transaction (in the store's own batches, or in their own for `compact`), and memory drops
 * a merged range only after the commit that copied it.
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
import { createKeyFilter, createLayeredKeyFilter, type KeyFilter } from './key-filter.js';
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
  /**
   * The transaction that wrote these keys has committed (the store's own batches); also
   * applies to memory the merge step that transaction carried (`mergeInTransaction`).
   */
  confirm(keys: readonly string[]): void;
  /**
   * Inside the store's own batch transaction, after `maintain`: writes the next merge step
   * (one key range of the generation being merged, or a chunk of its deletion), so it shares
   * the batch's commit instead of paying an fsync of its own. `confirm` applies it to memory.
   */
  mergeInTransaction(): void;
  /**
   * Before each of the store's batches, outside any transaction: settles unconfirmed entries,
   * starts merging the recent tier when it is full, and does a bounded share of the merge's
   * in-memory work (bucketing keys by range).
   */
  maintain(): void;
  /** Merges the recent tier into the key-ordered table now, all of it (outside any transaction). */
  compact(): void;
  /** Records in the recent tier (memory), for tests and metrics. */
  readonly recentSize: number;
  /** Merges (generations) completed by this connection, for benchmarks and metrics. */
  readonly merges: number;
  /** Slices (key ranges of a generation) merged by this connection. */
  readonly slices: number;
  /** A generation is being merged (its rows may still be in the recent table). */
  readonly merging: boolean;
  readonly compactAt: number;
}

interface Statements {
  selectMain: Statement;
  selectMainMany: IdListQuery;
  selectRecentAll: Statement;
  selectRecentKey: Statement;
  insertRecent: MultiRowStatement;
  maxRecentRowid: Statement;
  minRecentRowid: Statement;
  insertMain: MultiRowStatement;
  deleteRecentThrough: Statement;
  mainKeys: Statement;
  selectCursor: Statement;
  upsertCursor: Statement;
  clearCursor: Statement;
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
    minRecentRowid: db.prepare('SELECT COALESCE(MIN(rowid), 1) FROM ledger_idempotency_recent').pluck(),
    insertMain: multiRowStatement(db, 7, 128, (values) => `INSERT INTO ledger_idempotency (${COLUMNS}) VALUES ${values}`),
    deleteRecentThrough: db.prepare('DELETE FROM ledger_idempotency_recent WHERE rowid <= ?'),
    mainKeys: db.prepare('SELECT key FROM ledger_idempotency').pluck(),
    selectCursor: db.prepare('SELECT through_rowid, below_key FROM ledger_idempotency_merge WHERE id = 1'),
    upsertCursor: db.prepare(
      `INSERT INTO ledger_idempotency_merge (id, through_rowid, below_key) VALUES (1, ?, ?)
       ON CONFLICT (id) DO UPDATE SET through_rowid = excluded.through_rowid, below_key = excluded.below_key`,
    ),
    clearCursor: db.prepare('DELETE FROM ledger_idempotency_merge'),
  };
}

const indexes = new WeakMap<SqliteDatabase, IdempotencyIndex>();

/**
 * The index of this connection, loaded from the recent table on first use. One per
 * connection; `compactAt` is set by its first user, and asking for another one later is a bug.
 */
export function idempotencyIndexFor(db: SqliteDatabase, compactAt?: number, sliceRecords?: number): IdempotencyIndex {
  let index = indexes.get(db);
  if (!index) {
    index = createIdempotencyIndex(db, compactAt ?? DEFAULT_COMPACT_AT, sliceRecords ?? DEFAULT_MERGE_SLICE);
    indexes.set(db, index);
  } else if (compactAt !== undefined && compactAt !== index.compactAt) {
    throw new Error(`this connection's idempotency index merges at ${index.compactAt} records, not ${compactAt}`);
  }
  return index;
}

/**
 * A generation of the recent tier being merged: the records with rowid <= throughRowid, merged
 * in ascending key ranges (buckets), one or a few per `maintain` call, so no call blocks the
 * event loop for long. Keys below `belowKey` are already merged (null: all of them).
 */
interface Generation {
  throughRowid: bigint;
  belowKey: string | null;
  /** The generation's unmerged keys; bucketed in steps of BUCKET_STEP before any slice runs. */
  keys: string[];
  bucketed: number;
  /** Ascending upper bounds of buckets 0..n-2; the last bucket has none. */
  bounds: string[];
  buckets: string[][];
  next: number;
  /** Merge steps (slices and deletion chunks) this generation takes, and those done. */
  stepsTotal: number;
  stepsDone: number;
  /** Records inserted into the recent tier since this generation started (pacing). */
  insertedSince: number;
  /** Everything merged: deleting the generation's rows from the recent table, up to this rowid. */
  deletedThrough: bigint | null;
}

/**
 * Records merged per maintain call (one slice); the work of a call is about this many row
 * writes, added to one group commit. 128, not 512: a 512-record slice made the commits that
 * carried one the slowest 1% (measured: p99.9 of a 10-op batch 17 ms with 512, 8 ms with 128),
 * and smaller slices cost the same in total (each is still a disjoint, sorted key range).
 */
export const DEFAULT_MERGE_SLICE = 128;
/** Bucketing a key or deleting a merged row costs about this fraction of merging one. */
const CHEAP_STEPS_PER_UNIT = 8;

function createIdempotencyIndex(db: SqliteDatabase, compactAt: number, sliceRecords: number): IdempotencyIndex {
  if (!Number.isSafeInteger(compactAt) || compactAt < 1) throw new RangeError(`compactAt must be >= 1, got ${compactAt}`);
  if (!Number.isSafeInteger(sliceRecords) || sliceRecords < 1) throw new RangeError(`sliceRecords must be >= 1, got ${sliceRecords}`);
  const statements = prepare(db);
  const entries = new Map<string, Entry>();
  let merges = 0;
  let slices = 0;
  /** Keys whose entries were written by a transaction not known to have committed. */
  const unconfirmed = new Set<string>();

  // Rowids are handed out here, never reused while this connection lives (a rolled-back
  // transaction leaves a gap), so an entry's rowid names its row or no row at all.
  let lastRowid = BigInt(statements.maxRecentRowid.get() as bigint | number);
  /** Every key of the key-ordered table, in layers (createLayeredKeyFilter): a full filter is never rebuilt. */
  const filter = createLayeredKeyFilter(buildFilter(0));
  function buildFilter(atLeast: number): KeyFilter {
    const keys = statements.mainKeys.iterate() as IterableIterator<string>;
    const built = createKeyFilter(atLeast);
    for (const key of keys) built.add(key);
    return built.size > built.capacity ? buildFilter(built.size * 2) : built;
  }

  // Read back what earlier runs left in the recent tier: all of it is committed. Rows an
  // interrupted merge already copied to the key-ordered table are skipped (the cursor says which).
  const cursor = statements.selectCursor.get() as { through_rowid: bigint; below_key: string | null } | undefined;
  const merged = (rowid: bigint, key: string): boolean =>
    cursor !== undefined && rowid <= BigInt(cursor.through_rowid) && (cursor.below_key === null || key < cursor.below_key);
  for (const row of statements.selectRecentAll.all() as (StoredRow & { rowid: bigint })[]) {
    if (merged(BigInt(row.rowid), row.key)) continue;
    entries.set(row.key, { record: recordFromStoredRow(row), rowid: BigInt(row.rowid), confirmed: true });
  }
  let generation: Generation | null = null;
  if (cursor) {
    const throughRowid = BigInt(cursor.through_rowid);
    generation = startGeneration(throughRowid, cursor.below_key);
    if (cursor.below_key === null) generation.deletedThrough = firstRecentRowid() - 1n;
  }

  /** Is this entry's row in the table as this connection sees it now? Drops it from memory if not. */
  function stillThere(key: string, entry: Entry): boolean {
    if (statements.selectRecentKey.get(entry.rowid) === key) return true;
    entries.delete(key);
    unconfirmed.delete(key);
    return false;
  }

  function firstRecentRowid(): bigint {
    return BigInt(statements.minRecentRowid.get() as bigint | number);
  }

  function startGeneration(throughRowid: bigint, belowKey: string | null): Generation {
    const keys: string[] = [];
    for (const [key, entry] of entries) if (entry.rowid <= throughRowid) keys.push(key);
    // Bucket bounds from a sorted sample: buckets of about sliceRecords keys, ascending.
    const bucketCount = Math.max(1, Math.ceil(keys.length / sliceRecords));
    const perBound = 16;
    const stride = Math.max(1, Math.floor(keys.length / (bucketCount * perBound)));
    const sample: string[] = [];
    for (let i = 0; i < keys.length; i += stride) sample.push(keys[i] as string);
    sample.sort();
    const bounds: string[] = [];
    for (let b = 1; b < bucketCount; b++) {
      const bound = sample[Math.floor((b * sample.length) / bucketCount)];
      if (bound !== undefined && (bounds.length === 0 || bound > (bounds[bounds.length - 1] as string))) bounds.push(bound);
    }
    return {
      throughRowid,
      belowKey,
      keys,
      bucketed: 0,
      bounds,
      buckets: Array.from({ length: bounds.length + 1 }, () => []),
      next: 0,
      stepsTotal: bounds.length + 1 + Math.ceil(keys.length / (sliceRecords * CHEAP_STEPS_PER_UNIT)),
      stepsDone: 0,
      insertedSince: 0,
      deletedThrough: null,
    };
  }

  function bucketOf(g: Generation, key: string): number {
    let lo = 0;
    let hi = g.bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((g.bounds[mid] as string) <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Non-transactional preparation, outside any transaction: starts a generation when the tier
   * is full (or `force`), and buckets up to `keysToBucket` of its keys. True when the
   * generation is ready for `writeStep`.
   */
  function prepareMerge(keysToBucket: number, force: boolean): Generation | null {
    if (!generation) {
      if (entries.size === 0 || (!force && entries.size < compactAt)) return null;
      // Outside a transaction with every unconfirmed entry settled: all of memory is committed.
      generation = startGeneration(lastRowid, '');
    }
    const g = generation;
    if (g.bucketed < g.keys.length) {
      const end = Math.min(g.keys.length, g.bucketed + keysToBucket);
      for (let i = g.bucketed; i < end; i++) {
        const key = g.keys[i] as string;
        (g.buckets[bucketOf(g, key)] as string[]).push(key);
      }
      g.bucketed = end;
      if (end < g.keys.length) return null;
      g.keys = [];
      g.bucketed = 0;
    }
    return g;
  }

  /**
   * One step of the merge, inside the current transaction: copies one bucket (a key range) to
   * the key-ordered table and moves the cursor, or deletes a chunk of the merged generation's
   * rows. Returns what to do to memory once that transaction has committed: the copy and the
   * cursor commit together, and memory changes only after that commit, so a key is found in
   * exactly one tier at every moment, across a crash too.
   */
  function writeStep(g: Generation): () => void {
    if (!db.inTransaction) throw new Error('writeStep runs inside a transaction');
    if (g.deletedThrough !== null) {
      const upTo = g.deletedThrough + BigInt(sliceRecords * CHEAP_STEPS_PER_UNIT);
      const last = upTo >= g.throughRowid;
      statements.deleteRecentThrough.run(last ? g.throughRowid : upTo);
      if (last) statements.clearCursor.run();
      return () => {
        g.deletedThrough = upTo;
        if (last) {
          generation = null;
          merges++;
        }
      };
    }
    const bucket = (g.buckets[g.next] as string[]).sort();
    const upper = g.next < g.bounds.length ? (g.bounds[g.next] as string) : null;
    const values: unknown[] = [];
    for (const key of bucket) {
      const entry = entries.get(key);
      if (!entry) throw new Error(`idempotency key ${key} of a merge is not in the recent tier`);
      pushStored(values, entry.record);
    }
    const copied = bucket.length === 0 ? 0 : statements.insertMain.run(values, bucket.length);
    if (copied !== bucket.length) throw new Error(`merged ${copied} idempotency records, expected ${bucket.length}`);
    statements.upsertCursor.run(g.throughRowid, upper);
    return () => {
      // Committed: these keys are now found in the key-ordered table, and only there.
      for (const key of bucket) {
        filter.add(key);
        entries.delete(key);
      }
      g.buckets[g.next] = [];
      g.belowKey = upper;
      g.next++;
      slices++;
      if (upper === null) g.deletedThrough = firstRecentRowid() - 1n;
    };
  }

  /** A step written inside the store's batch transaction, applied to memory by `confirm`. */
  let pendingStep: (() => void) | null = null;

  function settle(): void {
    if (unconfirmed.size === 0) return;
    // Outside any transaction the table shows only committed rows.
    for (const key of unconfirmed) {
      const entry = entries.get(key);
      if (entry && stillThere(key, entry)) entry.confirmed = true;
    }
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
    get slices() {
      return slices;
    },
    get merging() {
      return generation !== null;
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
        values.push(++lastRowid);
        pushStored(values, r);
      }
      statements.insertRecent.run(values, records.length);
      if (generation) generation.insertedSince += records.length;
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
      const step = pendingStep;
      pendingStep = null;
      if (step) step();
    },
    mergeInTransaction() {
      if (!db.inTransaction) throw new Error('mergeInTransaction runs inside the batch transaction');
      if (pendingStep) throw new Error('one merge step per batch transaction');
      const g = generation;
      if (!g || g.keys.length > 0) return;
      // Paced by inserts: the merge is due to finish when the tier is half full again, so its
      // steps ride on a share of the batches instead of on every one in a row. Two steps of
      // headroom; and no pacing once the tier is twice full (the merge has fallen behind).
      const allowed = Math.ceil((g.stepsTotal * 2 * g.insertedSince) / compactAt) + 2;
      if (g.stepsDone >= allowed && entries.size < 2 * compactAt) return;
      g.stepsDone++;
      pendingStep = writeStep(g);
    },
    maintain() {
      if (db.inTransaction) return;
      // A step left by a batch that did not commit was rolled back with it: forget it.
      pendingStep = null;
      settle();
      prepareMerge(sliceRecords * CHEAP_STEPS_PER_UNIT, false);
    },
    compact() {
      if (db.inTransaction) throw new Error('the idempotency index merges only outside a transaction');
      pendingStep = null;
      settle();
      // Finish the merge under way, then merge whatever is left, each step in its own transaction.
      for (let force = false; ; ) {
        const g = prepareMerge(Number.MAX_SAFE_INTEGER, force);
        if (!g) {
          if (force) return;
          force = true;
          continue;
        }
        db.transaction(() => writeStep(g)).immediate()();
        // After a generation completes, a forced start picks up what is left.
        if (!generation) force = true;
      }
    },
  };
}

/** The stored columns of a record (COLUMNS order), appended to `values`. */
function pushStored(values: unknown[], r: IdempotencyRecord): void {
  const request = r.transferId === null ? undefined : r.transferRequest;
  values.push(
    r.key,
    request ? null : r.fingerprint,
    r.transferId,
    r.error,
    request ? request.amountMsat : null,
    request ? (request.pending ? 1 : 0) : null,
    r.createdAt,
  );
}
