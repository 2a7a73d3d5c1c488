/**
 * The stream money store on SQLite, in two tiers (a small log-structured merge, as the
 * ledger's idempotency index: ledger/sqlite/idempotency.ts).
 *
 * Why: stream_money is ordered by (stream, seq) and indexed by (stream, ref), so a commit
 * holding the charges of 100 streams dirtied a leaf page per stream in each of the two
 * B-trees, about 800 KB of WAL per commit, and streams were slower with rows than with one
 * ledger transfer per charge. So:
 *
 * - new rows are appended to `stream_money_recent`, a rowid table without an index: a batch
 *   writes a few pages, whatever the number of streams;
 * - every recent row is also held in memory, which is how a ref (or a resume) finds it;
 * - once the recent tier holds `compactAt` rows, that generation (rowid <= X) is merged into
 *   `stream_money` one group of whole streams at a time (about `sliceRows` rows), each in its
 *   own transaction right after a commit of steps, so each leaf page of stream_money is written
 *   about once per generation, and no merge holds the event loop for long. The cursor row
 *   (`stream_money_merge`: X, and the stream and seq below which the generation is merged; a
 *   stream with more rows than a group is merged over several) commits with
 *   each group; the generation's rows leave the recent table in rowid chunks once all of it is
 *   merged, so on open the cursor says which recent rows count;
 * - a ref is looked up in memory, then in stream_money only when a Bloom filter over its keys
 *   says it may be there (a new ref, the common case, costs no B-tree probe).
 *
 * Limit: ONE writing connection per database file, as for the ledger (memory mirrors the
 * recent tier). Sluice's embedded mode is one process.
 */
import type { SqliteDatabase } from '../db/sqlite.js';
import { createKeyFilter, type KeyFilter } from '../ledger/sqlite/key-filter.js';
import { createWalSync, type SyncFile, type WalSync } from '../ledger/sqlite/wal-sync.js';
import type { SqliteLedgerApply } from '../records/sqlite.js';
import type { Logger } from 'pino';
import {
  assertSettled, chargesSettlementOp, isReward, moneyFromRow, refusalOf, rewardOps, SELECT_COLUMNS,
  type MoneyOutcome, type MoneyRow, type MoneyStep, type Row, type StreamMoneyStore, type UnsettledCharges,
} from './money-store.js';

export interface SqliteStreamMoneyStoreOptions {
  /** As the chain store's: true (default) syncs the WAL on the thread pool after the commit (ledger/sqlite/wal-sync.ts). */
  syncOffLoop?: boolean;
  syncFile?: SyncFile;
  /** Recent rows that start a merge (default DEFAULT_MONEY_COMPACT_AT). */
  compactAt?: number;
  /** Rows merged after a commit, at least (whole streams; default DEFAULT_MONEY_SLICE_ROWS). */
  sliceRows?: number;
  /** A merge that fails is logged (and tried again after the next commit). */
  logger?: Logger;
}

/** About 250 bytes of memory per recent row. */
export const DEFAULT_MONEY_COMPACT_AT = 65_536;
export const DEFAULT_MONEY_SLICE_ROWS = 1024;
/** Refs the Bloom filter over stream_money is first sized for. */
const FILTER_MIN_REFS = 1 << 20;
/** Merged recent rows deleted per commit. */
const DELETE_CHUNK = 2048;

export interface SqliteStreamMoneyStore extends StreamMoneyStore {
  /** Rows in the recent tier (memory), and whether a generation is being merged or deleted (tests, metrics). */
  tiers(): { recent: number; merging: boolean };
}

interface RecentRow extends MoneyRow {
  streamId: string;
  rowid: number;
}

/** Rows with rowid in [from, through], of the streams in `streams` (sorted), merged from stream `next`'s seq `nextSeq` on. */
interface Generation {
  from: number;
  through: number;
  streams: string[];
  next: number;
  nextSeq: number;
}

interface StreamRecent {
  rows: RecentRow[];
  /**
   * The highest seq written: a stream's steps are written in seq order (the sweeps rely on it),
   * so a step at or below it is refused, before a seq taken twice could stop a merge.
   */
  lastSeq: number;
  /** streams.charges_settled_seq: the charges up to it are in the ledger (only those are merged). */
  settledSeq: number;
  /** The charges committed past settledSeq (not refused): what the next sweep moves. */
  unsettledMsat: bigint;
  unsettledToSeq: number;
}

const refKey = (streamId: string, ref: string): string => `${streamId}\u0000${ref}`;

export function createSqliteStreamMoneyStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply, options: SqliteStreamMoneyStoreOptions = {}): SqliteStreamMoneyStore {
  const compactAt = options.compactAt ?? DEFAULT_MONEY_COMPACT_AT;
  const sliceRows = options.sliceRows ?? DEFAULT_MONEY_SLICE_ROWS;
  // Built on first use, after the caller configured the connection (journal mode).
  let walSync: WalSync | null | undefined;
  const walSyncOf = (): WalSync | null => (walSync === undefined ? (walSync = options.syncOffLoop === false ? null : createWalSync(db, options.syncFile)) : walSync);

  const insertRecent = db.prepare('INSERT INTO stream_money_recent (stream_id, seq, ref, name, amount_msat, at, refused) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const markRefused = db.prepare('UPDATE stream_money_recent SET refused = ? WHERE rowid = ?');
  const insertMerged = db.prepare('INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const mergedByRef = db.prepare(`SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = ? AND ref = ?`);
  const mergedBetween = db.prepare(`SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`);
  const mergedMaxSeq = db.prepare('SELECT MAX(seq) AS seq FROM stream_money WHERE stream_id = ?');
  const setCursor = db.prepare(`INSERT INTO stream_money_merge (id, through_rowid, below_stream, below_seq) VALUES (1, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET through_rowid = excluded.through_rowid, below_stream = excluded.below_stream, below_seq = excluded.below_seq`);
  const clearCursor = db.prepare('DELETE FROM stream_money_merge WHERE id = 1');
  const deleteRecent = db.prepare('DELETE FROM stream_money_recent WHERE rowid > ? AND rowid <= ?');
  const selectStream = db.prepare('SELECT account_id, app_id, charges_settled_seq FROM streams WHERE id = ?');
  const markChargesSettled = db.prepare('UPDATE streams SET charges_settled_seq = ? WHERE id = ? AND charges_settled_seq = ?');
  const settledSeqOf = (streamId: string): number => Number((selectStream.get(streamId) as Row | undefined)?.charges_settled_seq ?? 0);

  // ---- memory: the recent tier, read back on open ----
  const byKey = new Map<string, RecentRow>();
  const byStream = new Map<string, StreamRecent>();
  let recentCount = 0;
  /** The generation being merged: rows with rowid <= through, of the streams in `streams` (sorted; merged from `next`). */
  let generation: Generation | null = null;
  /** Merged, its rows being deleted from the recent table: rowids in (deletedThrough, through]. */
  let deleting: { through: number; deletedThrough: number } | null = null;

  const remember = (row: RecentRow): void => {
    byKey.set(refKey(row.streamId, row.ref), row);
    let recent = byStream.get(row.streamId);
    if (!recent) byStream.set(row.streamId, (recent = { rows: [], lastSeq: 0, settledSeq: settledSeqOf(row.streamId), unsettledMsat: 0n, unsettledToSeq: 0 }));
    recent.rows.push(row);
    if (row.seq > recent.lastSeq) recent.lastSeq = row.seq;
    recentCount += 1;
    if (row.refused === null && !isReward(row.ref) && row.seq > recent.settledSeq) {
      recent.unsettledMsat += row.amountMsat;
      if (row.seq > recent.unsettledToSeq) recent.unsettledToSeq = row.seq;
    }
  };

  const cursor = db.prepare('SELECT through_rowid, below_stream, below_seq FROM stream_money_merge WHERE id = 1').get() as Row | undefined;
  const through = cursor ? Number(cursor.through_rowid as number) : 0;
  const below = cursor ? ((cursor.below_stream as string | null) ?? null) : null;
  const belowSeq = cursor ? Number(cursor.below_seq as number) : 0;
  for (const row of db.prepare(`SELECT rowid, stream_id, ${SELECT_COLUMNS} FROM stream_money_recent ORDER BY rowid`).iterate() as IterableIterator<Row>) {
    const rowid = Number(row.rowid as number);
    const streamId = row.stream_id as string;
    // Already merged (the cursor covers it): it counts in stream_money.
    if (cursor && rowid <= through && (below === null || streamId < below || (streamId === below && Number(row.seq as number) < belowSeq))) continue;
    remember({ ...moneyFromRow(row), streamId, rowid });
  }
  if (cursor && below !== null) {
    const streams = [...byStream.entries()].filter(([id, recent]) => id >= below && recent.rows.some((row) => row.rowid <= through)).map(([id]) => id).sort();
    const first = db.prepare('SELECT MIN(rowid) AS rowid FROM stream_money_recent').get() as Row | undefined;
    generation = { from: Number(first?.rowid ?? through), through, streams, next: 0, nextSeq: belowSeq };
  } else if (cursor) {
    const first = db.prepare('SELECT MIN(rowid) AS rowid FROM stream_money_recent').get() as Row | undefined;
    deleting = { through, deletedThrough: first?.rowid == null ? through : Number(first.rowid as number) - 1 };
  }
  let filter: KeyFilter = createKeyFilter(0);
  const buildFilter = (atLeast: number): void => {
    const built = createKeyFilter(atLeast);
    for (const row of db.prepare('SELECT stream_id, ref FROM stream_money').iterate() as IterableIterator<Row>) built.add(refKey(row.stream_id as string, row.ref as string));
    filter = built;
  };
  // Sized ahead (about 1.3 MB per million refs): a rebuild reads the whole table, a pause the tail latency would show.
  buildFilter(Math.max(FILTER_MIN_REFS, Number((db.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint | number }).n) * 2));

  const mergedFirst = (streamId: string, ref: string): MoneyRow | null => {
    if (!filter.mightContain(refKey(streamId, ref))) return null;
    const row = mergedByRef.get(streamId, ref) as Row | undefined;
    return row ? moneyFromRow(row) : null;
  };

  // ---- the steps' transaction ----
  const commitSteps = db.transaction((steps: readonly MoneyStep[], now: number): { outcomes: MoneyOutcome[]; written: RecentRow[] } => {
    const outcomes: MoneyOutcome[] = new Array(steps.length);
    const batch = new Map<string, RecentRow>();
    /** Per stream, the last seq this batch writes. */
    const batchLast = new Map<string, number>();
    const rows: RecentRow[] = [];
    const movable: number[] = [];
    const rowOf: (RecentRow | undefined)[] = new Array(steps.length);
    const replays: { index: number; first: MoneyRow }[] = [];
    for (let i = 0; i < steps.length; i += 1) {
      const step = steps[i] as MoneyStep;
      const key = refKey(step.streamId, step.ref);
      const first = batch.get(key) ?? byKey.get(key) ?? mergedFirst(step.streamId, step.ref);
      if (first) {
        replays.push({ index: i, first });
        continue;
      }
      if (step.seq <= (batchLast.get(step.streamId) ?? byStream.get(step.streamId)?.lastSeq ?? 0)) {
        throw new Error(`stream ${step.streamId}: seq ${step.seq} written out of order (taken twice, or after a later one)`);
      }
      batchLast.set(step.streamId, step.seq);
      const refused = step.refused ?? null;
      const rowid = Number(insertRecent.run(step.streamId, step.seq, step.ref, step.name, step.amountMsat, step.at, refused).lastInsertRowid);
      const row: RecentRow = { streamId: step.streamId, rowid, seq: step.seq, ref: step.ref, name: step.name, amountMsat: step.amountMsat, at: step.at, refused };
      batch.set(key, row);
      rows.push(row);
      rowOf[i] = row;
      if (refused === null) movable.push(i);
    }
    const { ops, owners } = rewardOps(steps, movable);
    const results = ops.length === 0 ? [] : applyLedgerOps(db, ops, now);
    results.forEach((result, op) => {
      const refused = refusalOf(result);
      if (refused === null) return;
      for (const index of owners[op] as number[]) {
        const row = rowOf[index] as RecentRow;
        markRefused.run(refused, row.rowid);
        row.refused = refused;
      }
    });
    for (let i = 0; i < steps.length; i += 1) {
      const row = rowOf[i];
      if (row) outcomes[i] = { kind: 'written', refused: row.refused };
    }
    // Answered last: a first step of this same batch answers as the ledger left it.
    for (const { index, first } of replays) outcomes[index] = { kind: 'replay', first: { seq: first.seq, ref: first.ref, name: first.name, amountMsat: first.amountMsat, at: first.at, refused: first.refused } };
    return { outcomes, written: rows };
  });

  // ---- merging ----
  type MergeStep =
    | { kind: 'merged'; rows: RecentRow[]; next: number; nextSeq: number }
    | { kind: 'deleted'; through: number };

  /**
   * One step, in its own transaction: the next group of the generation's rows, stream by
   * stream in seq order (so stream_money's pages are written about once per group), or
   * the next chunk of merged rows deleted from the recent table. Memory follows once it committed.
   */
  const mergeStep = db.transaction((): MergeStep => {
    if (deleting) {
      const to = Math.min(deleting.through, deleting.deletedThrough + DELETE_CHUNK);
      deleteRecent.run(deleting.deletedThrough, to);
      if (to >= deleting.through) clearCursor.run();
      return { kind: 'deleted', through: to };
    }
    const gen = generation as Generation;
    const rows: RecentRow[] = [];
    let next = gen.next;
    let nextSeq = gen.nextSeq;
    while (next < gen.streams.length && rows.length < sliceRows) {
      const streamId = gen.streams[next] as string;
      // A stream's rows are in commit order, which is its seq order (and rowid order): the
      // generation's are a prefix, and those merged by an earlier step have left memory.
      const all = byStream.get(streamId)?.rows ?? [];
      let i = 0;
      while (i < all.length && (all[i] as RecentRow).seq < nextSeq) i += 1;
      for (; i < all.length && rows.length < sliceRows; i += 1) {
        const row = all[i] as RecentRow;
        if (row.rowid > gen.through) break;
        insertMerged.run(row.streamId, row.seq, row.ref, row.name, row.amountMsat, row.at, row.refused);
        rows.push(row);
      }
      if (i < all.length && (all[i] as RecentRow).rowid <= gen.through) {
        nextSeq = (all[i] as RecentRow).seq;
        break;
      }
      next += 1;
      nextSeq = 0;
    }
    // NULL: the whole generation is merged; its rows are deleted next.
    setCursor.run(gen.through, gen.streams[next] ?? null, nextSeq);
    return { kind: 'merged', rows, next, nextSeq };
  });

  /** Merged rows leave memory; their refs enter the filter (a lookup then probes stream_money). */
  const forget = (merged: readonly RecentRow[]): void => {
    const byStreamMerged = new Map<string, Set<RecentRow>>();
    for (const row of merged) {
      byKey.delete(refKey(row.streamId, row.ref));
      if (filter.size >= filter.capacity) buildFilter(filter.capacity * 4);
      filter.add(refKey(row.streamId, row.ref));
      let set = byStreamMerged.get(row.streamId);
      if (!set) byStreamMerged.set(row.streamId, (set = new Set()));
      set.add(row);
    }
    for (const [streamId, set] of byStreamMerged) {
      const recent = byStream.get(streamId);
      if (!recent) continue;
      // Normally the first rows (see mergeStep): cut off without a pass over the rest.
      let prefix = 0;
      while (prefix < recent.rows.length && set.has(recent.rows[prefix] as RecentRow)) prefix += 1;
      if (prefix === set.size) recent.rows.splice(0, prefix);
      else recent.rows = recent.rows.filter((row) => !set.has(row));
      if (recent.rows.length === 0) byStream.delete(streamId);
    }
    recentCount -= merged.length;
  };

  /** After a commit of steps: starts a generation once the recent tier is full, and runs one step of the one under way. */
  const maybeMerge = (): void => {
    if (!generation && !deleting) {
      if (recentCount < compactAt) return;
      // The generation ends before the oldest charge not yet settled: a sweep (or a start) finds
      // unsettled charges in the recent tier only. Sweeps run every interval, so that is recent.
      let min = Number.MAX_SAFE_INTEGER;
      let max = 0;
      let firstUnsettled = Number.MAX_SAFE_INTEGER;
      for (const recent of byStream.values()) {
        for (const row of recent.rows) {
          if (row.rowid > max) max = row.rowid;
          if (row.rowid < min) min = row.rowid;
          if (row.rowid < firstUnsettled && row.refused === null && !isReward(row.ref) && row.seq > recent.settledSeq) firstUnsettled = row.rowid;
        }
      }
      const through = Math.min(max, firstUnsettled - 1);
      if (through < min) return;
      const streams = [...byStream.entries()].filter(([, recent]) => recent.rows.some((row) => row.rowid <= through)).map(([id]) => id).sort();
      generation = { from: min, through, streams, next: 0, nextSeq: 0 };
    }
    let step: MergeStep;
    try {
      step = mergeStep.immediate();
    } catch (error) {
      // Nothing of it committed: memory is as it was, and the next commit tries again.
      options.logger?.error({ err: error }, 'merging stream money rows failed; tried again after the next commit');
      return;
    }
    if (step.kind === 'deleted') {
      const current = deleting as { through: number; deletedThrough: number };
      deleting = step.through >= current.through ? null : { through: current.through, deletedThrough: step.through };
      return;
    }
    forget(step.rows);
    const gen = generation as Generation;
    gen.next = step.next;
    gen.nextSeq = step.nextSeq;
    if (gen.next >= gen.streams.length) {
      generation = null;
      deleting = { through: gen.through, deletedThrough: gen.from - 1 };
    }
  };

  // ---- sweeps ----
  const settleBatch = db.transaction((ids: readonly string[], now: number): { recent: StreamRecent; toSeq: number }[] => {
    const settled: { recent: StreamRecent; toSeq: number }[] = [];
    const unsettled: UnsettledCharges[] = [];
    for (const streamId of ids) {
      const recent = byStream.get(streamId);
      if (!recent || recent.unsettledMsat === 0n) continue;
      const row = selectStream.get(streamId) as Row | undefined;
      if (!row) throw new Error(`stream ${streamId} has money rows and no stream row`);
      const charges: UnsettledCharges = {
        streamId, accountId: row.account_id as string, appId: row.app_id as string,
        fromSeq: recent.settledSeq, toSeq: recent.unsettledToSeq, sumMsat: recent.unsettledMsat,
      };
      if (markChargesSettled.run(charges.toSeq, streamId, charges.fromSeq).changes !== 1) throw new Error(`stream ${streamId}: its settled seq moved underneath this process`);
      unsettled.push(charges);
      settled.push({ recent, toSeq: charges.toSeq });
    }
    if (unsettled.length > 0) assertSettled(applyLedgerOps(db, unsettled.map(chargesSettlementOp), now));
    return settled;
  });

  return {
    dialect: 'sqlite',
    async settle(ids, now) {
      // Nothing to move (the common case for a reward or a read): no transaction.
      if (!ids.some((id) => (byStream.get(id)?.unsettledMsat ?? 0n) > 0n)) return 0;
      const wal = walSyncOf();
      if (wal?.failure) throw wal.failure;
      // Not waited for on disk: a sweep lost in a crash is made again at the next start (its
      // rows are durable), and anything acting on the app's balance outside the database
      // commits its own record with FULL first, which syncs this one too.
      const settled = wal ? wal.commitUnsynced(() => settleBatch.immediate(ids, now)) : settleBatch.immediate(ids, now);
      for (const { recent, toSeq } of settled) {
        recent.settledSeq = toSeq;
        recent.unsettledMsat = 0n;
        recent.unsettledToSeq = 0;
      }
      return settled.length;
    },
    // One process per SQLite file: every stream with unsettled charges (the app is not known
    // here, and its sweep is this process's own anyway).
    async listUnsettled() {
      return [...byStream.entries()].filter(([, recent]) => recent.unsettledMsat > 0n).map(([id]) => id);
    },
    async unsettledMsat(streamId) {
      return byStream.get(streamId)?.unsettledMsat ?? 0n;
    },
    async commit(steps, now) {
      if (steps.length === 0) return [];
      const wal = walSyncOf();
      if (wal?.failure) throw wal.failure;
      // IMMEDIATE: the write lock first, so nothing writes between the ref checks and the commit.
      const { outcomes, written } = wal ? wal.commitUnsynced(() => commitSteps.immediate(steps, now)) : commitSteps.immediate(steps, now);
      for (const row of written) remember(row);
      if (wal) wal.commitUnsynced(maybeMerge);
      else maybeMerge();
      // Committed, not yet durable: nobody is answered before the sync (which covers the merge too).
      if (wal) await wal.afterCommit();
      return outcomes;
    },
    async listBetween(streamId, afterSeq, toSeq, limit) {
      const merged = (mergedBetween.all(streamId, afterSeq, toSeq, limit) as Row[]).map(moneyFromRow);
      const recent = (byStream.get(streamId)?.rows ?? []).filter((row) => row.seq > afterSeq && row.seq <= toSeq);
      const all: MoneyRow[] = [...merged, ...recent.map(({ seq, ref, name, amountMsat, at, refused }) => ({ seq, ref, name, amountMsat, at, refused }))];
      return all.sort((a, b) => a.seq - b.seq).slice(0, limit);
    },
    async findByRef(streamId, ref) {
      const recent = byKey.get(refKey(streamId, ref));
      if (recent) return { seq: recent.seq, ref: recent.ref, name: recent.name, amountMsat: recent.amountMsat, at: recent.at, refused: recent.refused };
      return mergedFirst(streamId, ref);
    },
    async maxSeq(streamId) {
      let max = Number((mergedMaxSeq.get(streamId) as Row | undefined)?.seq ?? 0);
      for (const row of byStream.get(streamId)?.rows ?? []) max = Math.max(max, row.seq);
      return max;
    },
    tiers: () => ({ recent: recentCount, merging: generation !== null || deleting !== null }),
  };
}
