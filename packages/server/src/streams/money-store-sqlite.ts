/**
 * The stream money store on SQLite, in two tiers (a small log-structured merge, as the
 * ledger's idempotency index: ledger/sqlite/idempotency.ts).
 *
 * Why: stream_money is ordered by (stream, seq) and indexed by (stream, ref), so a commit
 * holding the charges of 100 streams dirtied a leaf page per stream in each of the two
 * B-trees, about 800 KB of WAL per commit, and streams were slower with rows than with one
 * ledger transfer per charge. So:
 *
 * - new rows are appended to the recent tier: a commit's rows as ONE row of
 *   `stream_money_log` (a JSON array, rowids first..last; ADR 0019), so a batch writes a few
 *   pages in one statement, whatever the number of streams (`stream_money_recent`, one SQL row
 *   per step, holds what was written before the log, and is read and archived the same way);
 * - every recent row is also held in memory, which is how a ref (or a resume) finds it;
 * - once the recent tier holds `compactAt` rows, that generation (rowid <= X, every row of
 *   it settled, X the end of a commit) is handed to the archive (money-archive.ts): a file of
 *   its own, where a worker thread writes the rows into the two B-trees, sorted by stream, off
 *   the event loop. Once the archive has them on disk, the cursor (`stream_money_merge`: X) is
 *   recorded and the generation leaves the recent tier and memory in chunks, one after each
 *   commit;
 * - a ref is looked up in memory, then in the archive only when a Bloom filter over its keys
 *   says it may be there (a new ref, the common case, costs no B-tree probe).
 *
 * `stream_money` in the main database holds the rows merged there before the archive existed
 * (ADR 0017's first form); it is read, never written.
 *
 * Limit: ONE writing connection per database file, as for the ledger (memory mirrors the
 * recent tier). Sluice's embedded mode is one process.
 */
import type { SqliteDatabase } from '../db/sqlite.js';
import { createKeyFilter, type KeyFilter } from '../ledger/sqlite/key-filter.js';
import { defaultArchivePath, openMoneyArchive } from './money-archive.js';
import { checkpointerFor } from '../ledger/sqlite/checkpointer.js';
import { createWalSync, type SyncFile, type WalSync } from '../ledger/sqlite/wal-sync.js';
import { multiRowStatement } from '../ledger/sqlite/multi-row.js';
import type { SqliteLedgerApply } from '../records/sqlite.js';
import type { Logger } from 'pino';
import { msat } from '../money/msat.js';
import {
  assertSettled, chargesSettlementOp, isReward, moneyFromRow, refusalOf, rewardOps, SELECT_COLUMNS,
  type MoneyOutcome, type MoneyRow, type MoneyStep, type Row, type StreamMoneyStore, type UnsettledCharges,
} from './money-store.js';

export interface SqliteStreamMoneyStoreOptions {
  /** As the chain store's: true (default) syncs the WAL on the thread pool after the commit (ledger/sqlite/wal-sync.ts). */
  syncOffLoop?: boolean;
  syncFile?: SyncFile;
  /** Recent rows that start a generation for the archive (default DEFAULT_MONEY_COMPACT_AT). */
  compactAt?: number;
  /** The most rows a generation takes (default GENERATION_MAX_COMPACTS × compactAt, and at least DEFAULT_MONEY_COMPACT_AT). */
  generationMaxRows?: number;
  /** Archived rows deleted from the recent tier after a commit (default DEFAULT_DELETE_CHUNK). */
  deleteChunkRows?: number;
  /** Least time between two such chunks while the tier is not behind (default DEFAULT_DELETE_GAP_MS). */
  deleteChunkGapMs?: number;
  /** The archive's file (default: beside the database, money-archive.ts defaultArchivePath). */
  archivePath?: string;
  /** A generation the archive failed is logged (and handed over again ARCHIVE_RETRY_MS later). */
  logger?: Logger;
}

/** About 210 bytes of heap per recent row (bench/streams-recent-memory.ts). */
export const DEFAULT_MONEY_COMPACT_AT = 65_536;
/** Refs the Bloom filter over the archive is first sized for. */
const FILTER_MIN_REFS = 1 << 20;
/**
 * Archived recent rows deleted (and dropped from memory) per chunk, one chunk after a commit.
 * Dropping a row from memory (the maps, the Bloom filter) costs 1-2.5 µs with 1,000 streams:
 * 2,048 a chunk held the event loop 2-4 ms in the VM's slow hours (ADR 0019). The log's
 * deletes are whole rows.
 */
const DEFAULT_DELETE_CHUNK = 256;
/**
 * Least time between two chunks (ADR 0021): a chunk after every commit took a generation of
 * 65,536 rows out in about 0.4 s at 10,000 charges/s, the event loop busy with it half of
 * that time, and the acks of those commits waited behind it. 256 rows every 5 ms is at most
 * 51,200 rows a second: a generation takes 1.3 s at least (256 commits when they come less
 * often than every 5 ms). A tier that falls behind anyway (more than twice compactAt rows: a
 * faster load) deletes after every commit again, more than twice what it wrote (archiveStep).
 */
const DEFAULT_DELETE_GAP_MS = 5;
/** Streams per multi-row UPDATE of a sweep (3 parameters each). */
const ROWS_PER_STATEMENT = 128;
/**
 * A generation takes at most this many times compactAt rows (to the end of the commit before):
 * the archive's worker joins a generation's rows into one text (money-archive.ts), and a tier
 * that fell far behind (a sweep stuck for a while) must not make one past V8's string limit
 * (about 536 M characters, some 6 M rows), which would fail every retry. The rest follows in
 * the next generations.
 */
const GENERATION_MAX_COMPACTS = 4;
/** After a generation found its oldest row unsettled, how long before one is looked for again. */
const GENERATION_RETRY_MS = 100;
/** After the archive failed a generation, how long before it is handed over again. */
const ARCHIVE_RETRY_MS = 5000;

export interface SqliteStreamMoneyStore extends StreamMoneyStore {
  /** Rows in the recent tier (memory), and whether a generation is being archived or deleted (tests, metrics). */
  tiers(): { recent: number; merging: boolean };
  /** Resolves once no generation is with the archive's worker (tests). */
  archived(): Promise<void>;
  /** Stops the archive's worker and closes its connection; call before closing the database. */
  close(): void;
}

interface RecentRow extends MoneyRow {
  streamId: string;
  rowid: number;
  /** The first rowid of the log row (commit) that holds it: a generation ends on a commit's edge. */
  batchFirst: number;
}

interface StreamRecent {
  /**
   * The stream's recent rows in rowid order, from index `first` on: the rows before it have
   * left the recent tier (archived) and wait to be cut off the array.
   */
  rows: RecentRow[];
  first: number;
  /**
   * The same rows by ref (a ref is unique per stream), once the stream holds BY_REF_FROM
   * recent rows; below that they are searched in `rows` (recentByRef). Per stream, not one map
   * keyed by `${stream}\u0000${ref}`: that key was one more string per row, kept alive for as
   * long as the row (about a fifth of a recent row's heap), which every scavenge copied and
   * every collection traced. Not for every stream: an empty Map is about 180 bytes, more than
   * the strings it saves for a stream with two rows. The Bloom filter hashes the pair as that
   * text without building it.
   */
  byRef: Map<string, RecentRow> | null;
  /**
   * The highest seq written: a stream's steps are written in seq order (the sweeps rely on it),
   * so a step at or below it is refused, before a seq taken twice could reach the archive.
   */
  lastSeq: number;
  /** streams.charges_settled_seq: the charges up to it are in the ledger (only those are archived). */
  settledSeq: number;
  /** The stream's ledger account and app, read once with settledSeq (a sweep then reads no stream row). */
  accountId: string;
  appId: string;
  /** The charges committed past settledSeq (not refused): what the next sweep moves. */
  unsettledMsat: bigint;
  unsettledToSeq: number;
}


/**
 * A commit's rows as the text of one stream_money_log row: a JSON array of
 * [stream_id, seq, ref, name, amount_msat, at, refused] in rowid order, the amount as a
 * string (a bigint). The archive's worker reads the same form (money-archive.ts).
 */
export function encodeLogRows(rows: readonly (MoneyRow & { streamId: string })[]): string {
  return JSON.stringify(rows.map((row) => [row.streamId, row.seq, row.ref, row.name, row.amountMsat.toString(), row.at, row.refused]));
}

/** The rows of a stream_money_log row (encodeLogRows), checked: a malformed row is a corrupt database, never guessed at. */
export function decodeLogRows(text: string): (MoneyRow & { streamId: string })[] {
  const decoded: unknown = JSON.parse(text);
  if (!Array.isArray(decoded)) throw new Error('a stream_money_log row is not a JSON array');
  return decoded.map((entry: unknown) => {
    const [streamId, seq, ref, name, amount, at, refused] = (Array.isArray(entry) ? entry : []) as unknown[];
    if (typeof streamId !== 'string' || !Number.isSafeInteger(seq) || typeof ref !== 'string' || typeof name !== 'string'
      || typeof amount !== 'string' || !/^[1-9][0-9]*$/.test(amount) || !Number.isSafeInteger(at) || (refused !== null && typeof refused !== 'string')) {
      throw new Error(`a malformed stream_money_log entry: ${JSON.stringify(entry)}`);
    }
    return { streamId, seq: seq as number, ref, name, amountMsat: msat(BigInt(amount)), at: at as number, refused: refused as string | null };
  });
}
/** Recent rows of one stream from which they are found by ref through a map (StreamRecent.byRef). */
const BY_REF_FROM = 8;

/** The stream's recent row with this ref, if any. */
function recentByRef(recent: StreamRecent | undefined, ref: string): RecentRow | undefined {
  if (!recent) return undefined;
  if (recent.byRef) return recent.byRef.get(ref);
  for (let index = recent.first; index < recent.rows.length; index += 1) {
    const row = recent.rows[index] as RecentRow;
    if (row.ref === ref) return row;
  }
  return undefined;
}

const copyRow = ({ seq, ref, name, amountMsat, at, refused }: MoneyRow): MoneyRow => ({ seq, ref, name, amountMsat, at, refused });

export function createSqliteStreamMoneyStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply, options: SqliteStreamMoneyStoreOptions = {}): SqliteStreamMoneyStore {
  const compactAt = options.compactAt ?? DEFAULT_MONEY_COMPACT_AT;
  const deleteChunkRows = options.deleteChunkRows ?? DEFAULT_DELETE_CHUNK;
  // At least a default generation's rows (about 6 MB of text): the cap is about the size of one
  // text, not the tier's, so a small compactAt (tests) does not make generations small too.
  const generationMaxRows = options.generationMaxRows ?? Math.max(GENERATION_MAX_COMPACTS * compactAt, DEFAULT_MONEY_COMPACT_AT);
  const deleteChunkGapMs = options.deleteChunkGapMs ?? DEFAULT_DELETE_GAP_MS;
  // Built on first use, after the caller configured the connection (journal mode).
  let walSync: WalSync | null | undefined;
  const walSyncOf = (): WalSync | null => (walSync === undefined ? (walSync = options.syncOffLoop === false ? null : createWalSync(db, options.syncFile)) : walSync);
  const archive = openMoneyArchive(db, options.archivePath ?? defaultArchivePath(db.name), options.logger);

  // A commit's rows as one log row (migration 5: encodeLogRows).
  const insertLog = db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)');
  const setCursor = db.prepare(`INSERT INTO stream_money_merge (id, through_rowid, below_stream, below_seq) VALUES (1, ?, NULL, 0)
    ON CONFLICT (id) DO UPDATE SET through_rowid = excluded.through_rowid, below_stream = NULL, below_seq = 0`);
  const clearCursor = db.prepare('DELETE FROM stream_money_merge WHERE id = 1');
  // Rows from before the log (stream_money_recent), and log rows wholly archived.
  const deleteRecent = db.prepare('DELETE FROM stream_money_recent WHERE rowid > ? AND rowid <= ?');
  const deleteLog = db.prepare('DELETE FROM stream_money_log WHERE first_rowid <= ? AND last_rowid <= ?');
  const selectStream = db.prepare('SELECT account_id, app_id, charges_settled_seq FROM streams WHERE id = ?');
  // A sweep's streams in one statement; each row matches only if its settled seq is where this process left it.
  const markChargesSettled = multiRowStatement(db, 3, ROWS_PER_STATEMENT, (values) =>
    `UPDATE streams AS s SET charges_settled_seq = u.column2 FROM (VALUES ${values}) AS u WHERE s.id = u.column1 AND s.charges_settled_seq = u.column3`);
  // Called after a commit: a stream row missing (a bug) fails that stream's sweeps, not the commit's answers.
  const newStreamRecent = (streamId: string): StreamRecent => {
    const row = selectStream.get(streamId) as Row | undefined;
    return {
      rows: [], first: 0, byRef: null, lastSeq: 0, settledSeq: Number(row?.charges_settled_seq ?? 0), accountId: (row?.account_id as string | undefined) ?? '', appId: (row?.app_id as string | undefined) ?? '',
      unsettledMsat: 0n, unsettledToSeq: 0,
    };
  };

  // The archived rows: in the archive, and (merged before the archive existed) in the main
  // database's stream_money, read only when it holds any.
  const archivedTables: SqliteDatabase[] = [archive.db];
  if (db.prepare('SELECT 1 FROM stream_money LIMIT 1').get() !== undefined) archivedTables.push(db);
  const archivedQueries = archivedTables.map((tables) => ({
    byRef: tables.prepare(`SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = ? AND ref = ?`),
    between: tables.prepare(`SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`),
    maxSeq: tables.prepare('SELECT MAX(seq) AS seq FROM stream_money WHERE stream_id = ?'),
  }));

  // ---- memory: the recent tier, read back on open ----
  const byStream = new Map<string, StreamRecent>();
  /** Every recent row in rowid order (from `head` on): archived rows leave memory from the front. */
  let queue: RecentRow[] = [];
  let head = 0;
  /** A generation with the archive's worker: rows with rowid <= through. */
  let handing: { through: number; done: Promise<void> } | null = null;
  /** Archived, its rows leaving the recent table and memory: rowids in (deletedThrough, through]. */
  let deleting: { through: number; deletedThrough: number } | null = null;
  /** A generation found nothing to take (its oldest row unsettled): none is looked for before this performance.now(). */
  let noGenerationUntil = 0;
  /** performance.now() at the last chunk deleted (the next waits deleteChunkGapMs). */
  let lastChunkAt = -Infinity;
  /** When the archive last failed a generation (the next waits ARCHIVE_RETRY_MS). */
  let archiveFailedAt = 0;
  let closed = false;

  /** A stream's rows still in the recent tier, oldest first. */
  function* recentRows(streamId: string): Generator<RecentRow> {
    const recent = byStream.get(streamId);
    if (!recent) return;
    for (let index = recent.first; index < recent.rows.length; index += 1) yield recent.rows[index] as RecentRow;
  }

  /** A row into memory: a commit's, whose stream's StreamRecent the commit made (commitSteps), or one read back at open. */
  const remember = (row: RecentRow): void => {
    queue.push(row);
    let recent = byStream.get(row.streamId);
    if (!recent) byStream.set(row.streamId, (recent = newStreamRecent(row.streamId)));
    recent.rows.push(row);
    if (recent.byRef) recent.byRef.set(row.ref, row);
    else if (recent.rows.length - recent.first >= BY_REF_FROM) {
      recent.byRef = new Map();
      for (let index = recent.first; index < recent.rows.length; index += 1) recent.byRef.set((recent.rows[index] as RecentRow).ref, recent.rows[index] as RecentRow);
    }
    if (row.seq > recent.lastSeq) recent.lastSeq = row.seq;
    if (row.refused === null && !isReward(row.ref) && row.seq > recent.settledSeq) {
      recent.unsettledMsat += row.amountMsat;
      if (row.seq > recent.unsettledToSeq) recent.unsettledToSeq = row.seq;
    }
  };

  // The cursor: NULL below_stream, the generation through through_rowid is archived and being
  // deleted. A cursor with a stream (a merge in ADR 0017's first form, cut short) counts as
  // none: its rows are read back, and archived again with the next generation.
  const cursor = db.prepare('SELECT through_rowid, below_stream FROM stream_money_merge WHERE id = 1').get() as Row | undefined;
  const archivedThrough = cursor && cursor.below_stream === null ? Number(cursor.through_rowid as number) : 0;
  /**
   * The rowid the next recent row gets, set here rather than by SQLite so a batch's rows go
   * out in multi-row statements knowing their rowids (one writer per file: nobody else takes one).
   */
  let nextRowid = archivedThrough + 1;
  let firstRowid = 0;
  // Rows from before the log first (their rowids are lower: the log's continue after them).
  for (const row of db.prepare(`SELECT rowid, stream_id, ${SELECT_COLUMNS} FROM stream_money_recent ORDER BY rowid`).iterate() as IterableIterator<Row>) {
    const rowid = Number(row.rowid as number);
    if (firstRowid === 0) firstRowid = rowid;
    if (rowid >= nextRowid) nextRowid = rowid + 1;
    if (rowid <= archivedThrough) continue;
    remember({ ...moneyFromRow(row), streamId: row.stream_id as string, rowid, batchFirst: rowid });
  }
  for (const log of db.prepare('SELECT first_rowid, last_rowid, rows FROM stream_money_log ORDER BY first_rowid').iterate() as IterableIterator<Row>) {
    const first = Number(log.first_rowid as number);
    const last = Number(log.last_rowid as number);
    if (firstRowid === 0) firstRowid = first;
    if (last >= nextRowid) nextRowid = last + 1;
    if (last <= archivedThrough) continue;
    const decoded = decodeLogRows(log.rows as string);
    if (decoded.length !== last - first + 1) throw new Error(`stream_money_log row ${first}: ${decoded.length} rows for rowids ${first}..${last}`);
    decoded.forEach((row, index) => {
      const rowid = first + index;
      if (rowid > archivedThrough) remember({ ...row, rowid, batchFirst: first });
    });
  }
  if (archivedThrough > 0) deleting = { through: archivedThrough, deletedThrough: firstRowid === 0 ? archivedThrough : firstRowid - 1 };

  let filter: KeyFilter = createKeyFilter(0);
  const buildFilter = (atLeast: number): void => {
    const built = createKeyFilter(atLeast);
    for (const tables of archivedTables) {
      for (const row of tables.prepare('SELECT stream_id, ref FROM stream_money').iterate() as IterableIterator<Row>) built.add(row.stream_id as string, row.ref as string);
    }
    // Rows archived and still in memory enter it as they leave memory (forget).
    filter = built;
  };
  const archivedCount = archivedTables.reduce((sum, tables) => sum + Number((tables.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint | number }).n), 0);
  // Sized ahead (about 1.3 MB per million refs): a rebuild reads the whole archive, a pause the tail latency would show.
  buildFilter(Math.max(FILTER_MIN_REFS, archivedCount * 2));

  const archivedFirst = (streamId: string, ref: string): MoneyRow | null => {
    if (!filter.mightContain(streamId, ref)) return null;
    for (const queries of archivedQueries) {
      const row = queries.byRef.get(streamId, ref) as Row | undefined;
      if (row) return moneyFromRow(row);
    }
    return null;
  };

  // ---- the steps' transaction ----
  const commitSteps = db.transaction((steps: readonly MoneyStep[], now: number): { outcomes: MoneyOutcome[]; written: RecentRow[] } => {
    const outcomes: MoneyOutcome[] = new Array(steps.length);
    /** This batch's rows by stream, then ref (no string is built per row to key them). */
    const batch = new Map<string, Map<string, RecentRow>>();
    /** Per stream, the last seq this batch writes. */
    const batchLast = new Map<string, number>();
    const rows: RecentRow[] = [];
    const movable: number[] = [];
    const rowOf: (RecentRow | undefined)[] = new Array(steps.length);
    const replays: { index: number; first: MoneyRow }[] = [];
    for (let i = 0; i < steps.length; i += 1) {
      const step = steps[i] as MoneyStep;
      let ofStream = batch.get(step.streamId);
      let recent = byStream.get(step.streamId);
      const first = ofStream?.get(step.ref) ?? recentByRef(recent, step.ref) ?? archivedFirst(step.streamId, step.ref);
      if (first) {
        replays.push({ index: i, first });
        continue;
      }
      if (step.seq <= (batchLast.get(step.streamId) ?? recent?.lastSeq ?? 0)) {
        throw new Error(`stream ${step.streamId}: seq ${step.seq} written out of order (taken twice, or after a later one)`);
      }
      batchLast.set(step.streamId, step.seq);
      const refused = step.refused ?? null;
      const rowid = nextRowid + rows.length;
      const row: RecentRow = { streamId: step.streamId, rowid, batchFirst: nextRowid, seq: step.seq, ref: step.ref, name: step.name, amountMsat: step.amountMsat, at: step.at, refused };
      if (!ofStream) {
        batch.set(step.streamId, (ofStream = new Map()));
        // Its stream row is read here, in the transaction: read after the commit (remember),
        // a read that failed left committed rows out of memory, where the ref and seq checks
        // look, so a retry of the step could be written twice.
        if (!recent) byStream.set(step.streamId, (recent = newStreamRecent(step.streamId)));
      }
      ofStream.set(step.ref, row);
      rows.push(row);
      rowOf[i] = row;
      if (refused === null) movable.push(i);
    }
    // The rewards move first, so the log row is written once, with their refusals in it.
    const { ops, owners } = rewardOps(steps, movable);
    const results = ops.length === 0 ? [] : applyLedgerOps(db, ops, now);
    results.forEach((result, op) => {
      const refused = refusalOf(result);
      if (refused === null) return;
      for (const index of owners[op] as number[]) (rowOf[index] as RecentRow).refused = refused;
    });
    if (rows.length > 0) insertLog.run(nextRowid, nextRowid + rows.length - 1, encodeLogRows(rows));
    for (let i = 0; i < steps.length; i += 1) {
      const row = rowOf[i];
      if (row) outcomes[i] = { kind: 'written', refused: row.refused };
    }
    // Taken only once everything above held: a batch that throws leaves the next rowid as it was.
    nextRowid += rows.length;
    // Answered last: a first step of this same batch answers as the ledger left it.
    for (const { index, first } of replays) outcomes[index] = { kind: 'replay', first: copyRow(first) };
    return { outcomes, written: rows };
  });

  // ---- the archive ----

  /**
   * Archived rows leave memory, from the front of the queue through `through`; their refs
   * enter the filter first (a lookup then probes the archive). A stream's rows are in rowid
   * order, so those leaving are the front of its list: its `first` index moves past them, and
   * the array is cut once half of it has left. A chunk holds a row or two of each of hundreds
   * of streams, and a splice per stream per chunk moved each stream's whole list every time
   * (60 of 82 ms in a micro-benchmark of a generation leaving memory; not measurable in the
   * server's profile, where the maps and the filter cost most; ADR 0021).
   */
  const forget = (through: number): void => {
    const leaving = new Map<string, number>();
    while (head < queue.length && (queue[head] as RecentRow).rowid <= through) {
      const row = queue[head] as RecentRow;
      queue[head] = undefined as unknown as RecentRow;
      head += 1;
      if (filter.size >= filter.capacity) buildFilter(filter.capacity * 4);
      filter.add(row.streamId, row.ref);
      byStream.get(row.streamId)?.byRef?.delete(row.ref);
      leaving.set(row.streamId, (leaving.get(row.streamId) ?? 0) + 1);
    }
    for (const [streamId, count] of leaving) {
      const recent = byStream.get(streamId);
      if (!recent) continue;
      const prefix = recent.rows[recent.first + count - 1]?.rowid ?? Infinity;
      const next = recent.rows[recent.first + count]?.rowid ?? Infinity;
      if (prefix <= through && next > through) {
        // Cleared, so an archived row is not kept alive until the array is cut.
        recent.rows.fill(undefined as unknown as RecentRow, recent.first, recent.first + count);
        recent.first += count;
      } else {
        recent.rows = recent.rows.filter((row, index) => index >= recent.first && row.rowid > through);
        recent.first = 0;
      }
      if (recent.first === recent.rows.length) {
        byStream.delete(streamId);
      } else if (recent.first >= 64 && recent.first * 2 >= recent.rows.length) {
        recent.rows = recent.rows.slice(recent.first);
        recent.first = 0;
      }
    }
    if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  };

  /** One chunk of the archived generation leaves the recent table (one transaction), then memory. */
  const deleteChunk = db.transaction((from: number, to: number, last: boolean): void => {
    deleteRecent.run(from, to);
    // Whole log rows only: one that runs past `to` leaves with a later chunk (a generation ends on a log row's edge).
    deleteLog.run(to, to);
    if (last) clearCursor.run();
  });

  /** The index of the stream's first recent row past its settled seq (its rows are in seq order). */
  const firstPastSettled = (recent: StreamRecent): number => {
    let low = recent.first;
    let high = recent.rows.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((recent.rows[middle] as RecentRow).seq > recent.settledSeq) high = middle;
      else low = middle + 1;
    }
    return low;
  };

  /**
   * Hands the oldest settled rows to the archive once the recent tier holds compactAt rows.
   * The generation ends before the oldest charge not yet settled: a sweep (or a start) finds
   * unsettled charges in the recent tier only. Sweeps run every interval, so that is recent.
   */
  const startGeneration = (): void => {
    if (queue.length - head < compactAt || Date.now() - archiveFailedAt < ARCHIVE_RETRY_MS || performance.now() < noGenerationUntil) return;
    const first = (queue[head] as RecentRow).rowid;
    let through = (queue[queue.length - 1] as RecentRow).rowid;
    const past = queue[head + generationMaxRows] as RecentRow | undefined;
    // Whole commits: one larger than the cap (a commit holds maxBatch steps at most) goes whole.
    if (past && past.batchFirst - 1 >= first) through = past.batchFirst - 1;
    // Per stream, from its first row past the settled seq: a scan of every recent row held
    // the event loop 10 ms with 1,000 streams (a stream's rows are in seq order, and the
    // charges at or below its settled seq are settled).
    for (const recent of byStream.values()) {
      if (recent.unsettledMsat === 0n) continue;
      for (let index = firstPastSettled(recent); index < recent.rows.length; index += 1) {
        const row = recent.rows[index] as RecentRow;
        if (row.rowid > through) break;
        // Past the settled seq from firstPastSettled on: the first charge not refused is unsettled.
        if (row.refused === null && !isReward(row.ref)) {
          // Before the whole commit that wrote it: a generation takes whole log rows.
          through = row.batchFirst - 1;
          break;
        }
      }
    }
    if (through < first) {
      // The oldest row is a charge not yet settled (a sweep is due, or stuck): looked at again
      // after the next sweep that moves something, or a while later, not after every commit.
      noGenerationUntil = performance.now() + GENERATION_RETRY_MS;
      return;
    }
    const wal = walSyncOf();
    const handOver = async (): Promise<void> => {
      // Only rows (and sweeps) on disk go to the archive: a crash cannot take back what it holds.
      if (wal) await wal.afterCommit();
      await archive.archive(first - 1, through);
      if (!db.open) return;
      // Recorded without waiting for the disk: lost in a crash, the generation is handed over
      // again (the archive checks and skips rows it holds); the deletes come after it in the WAL.
      if (wal) wal.commitUnsynced(() => setCursor.run(through));
      else setCursor.run(through);
      deleting = { through, deletedThrough: first - 1 };
    };
    const done = handOver().catch((error: unknown) => {
      if (closed || !db.open) return;
      archiveFailedAt = Date.now();
      options.logger?.error({ err: error, through }, 'archiving stream money rows failed; they stay in the recent tier and are handed over again later');
    }).finally(() => {
      handing = null;
    });
    handing = { through, done };
  };

  /**
   * After a commit of steps (inside its commitUnsynced: not synced either, the next sync
   * covers it): the next chunk of an archived generation leaves, or a new generation starts.
   * Behind (more than twice compactAt rows), a chunk leaves after every commit, twice as large
   * as the rows that commit wrote plus a chunk: the commit that starts each generation deletes
   * nothing, and a generation's last chunk is short, so the tier still shrinks whatever the
   * commits' size.
   */
  const archiveStep = (writtenRows: number): void => {
    if (handing) return;
    if (!deleting) return startGeneration();
    const now = performance.now();
    const behind = queue.length - head > 2 * compactAt;
    if (!behind && now - lastChunkAt < deleteChunkGapMs) return;
    lastChunkAt = now;
    const to = Math.min(deleting.through, deleting.deletedThrough + deleteChunkRows + (behind ? 2 * writtenRows : 0));
    const last = to >= deleting.through;
    try {
      deleteChunk.immediate(deleting.deletedThrough, to, last);
    } catch (error) {
      // Nothing of it committed: the next commit tries again.
      options.logger?.error({ err: error }, 'deleting archived stream money rows failed; tried again after the next commit');
      return;
    }
    forget(to);
    deleting = last ? null : { through: deleting.through, deletedThrough: to };
  };

  // ---- sweeps ----
  const settleBatch = db.transaction((ids: readonly string[], now: number): { recent: StreamRecent; toSeq: number }[] => {
    const settled: { recent: StreamRecent; toSeq: number }[] = [];
    const unsettled: UnsettledCharges[] = [];
    const marks: unknown[] = [];
    const seen = new Set<string>();
    for (const streamId of ids) {
      const recent = byStream.get(streamId);
      if (!recent || recent.unsettledMsat === 0n || seen.has(streamId)) continue;
      seen.add(streamId);
      if (recent.accountId === '') throw new Error(`stream ${streamId} has money rows and no stream row`);
      const charges: UnsettledCharges = {
        streamId, accountId: recent.accountId, appId: recent.appId,
        fromSeq: recent.settledSeq, toSeq: recent.unsettledToSeq, sumMsat: recent.unsettledMsat,
      };
      marks.push(streamId, charges.toSeq, charges.fromSeq);
      unsettled.push(charges);
      settled.push({ recent, toSeq: charges.toSeq });
    }
    if (unsettled.length === 0) return settled;
    // A sweep that fails is tried again stream by stream (settler.ts), which names the stream.
    if (markChargesSettled.run(marks, unsettled.length) !== unsettled.length) {
      throw new Error(unsettled.length === 1 ? `stream ${unsettled[0]!.streamId}: its settled seq moved underneath this process` : 'a stream\'s settled seq moved underneath this process');
    }
    assertSettled(applyLedgerOps(db, unsettled.map(chargesSettlementOp), now));
    return settled;
  });

  return {
    dialect: 'sqlite',
    writesBeforeReturning: true,
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
      // What held a generation back may be settled now.
      if (settled.length > 0) noGenerationUntil = 0;
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
      const commitAll = (): MoneyOutcome[] => {
        // IMMEDIATE: the write lock first, so nothing writes between the ref checks and the commit.
        const { outcomes, written } = commitSteps.immediate(steps, now);
        for (const row of written) remember(row);
        // Its own transaction (a failed delete is logged and tried again; it fails no step).
        archiveStep(written.length);
        return outcomes;
      };
      // One window of synchronous=NORMAL for both transactions: its two PRAGMA statements
      // cost about as much as a small commit's rows, once per commit instead of twice.
      const outcomes = wal ? wal.commitUnsynced(commitAll) : commitAll();
      // Between two commits: checkpoints go to the checkpoint worker once the WAL is long (the
      // ledger's checkpointer.ts). SQLite's own, inside whichever commit filled 1,000 pages,
      // copied them and synced two files on the event loop: pauses of 10-40 ms at 1,000 streams.
      if (wal) checkpointerFor(db)?.afterCommit();
      // Committed, not yet durable: nobody is answered before the sync (which covers the merge too).
      if (wal) await wal.afterCommit();
      return outcomes;
    },
    async listBetween(streamId, afterSeq, toSeq, limit) {
      // By seq: a row may be in memory and archived at once (handed over, not yet forgotten).
      const bySeq = new Map<number, MoneyRow>();
      for (const queries of archivedQueries) {
        for (const row of queries.between.all(streamId, afterSeq, toSeq, limit) as Row[]) bySeq.set(Number(row.seq as bigint), moneyFromRow(row));
      }
      for (const row of recentRows(streamId)) if (row.seq > afterSeq && row.seq <= toSeq) bySeq.set(row.seq, copyRow(row));
      return [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(0, limit);
    },
    async findByRef(streamId, ref) {
      const recent = recentByRef(byStream.get(streamId), ref);
      return recent ? copyRow(recent) : archivedFirst(streamId, ref);
    },
    async maxSeq(streamId) {
      let max = 0;
      for (const queries of archivedQueries) max = Math.max(max, Number((queries.maxSeq.get(streamId) as Row | undefined)?.seq ?? 0));
      for (const row of recentRows(streamId)) max = Math.max(max, row.seq);
      return max;
    },
    tiers: () => ({ recent: queue.length - head, merging: handing !== null || deleting !== null }),
    archived: () => handing?.done ?? Promise.resolve(),
    close() {
      closed = true;
      archive.close();
    },
  };
}
