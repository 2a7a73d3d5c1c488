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
 * - every recent row is also held in memory, which is how a ref (or a resume) finds it: as
 *   numbers in its stream's typed array, outside the JS heap, with no object or string of its
 *   own (ADR 0023: what each row held on the heap made the collector's pauses); its fields
 *   are read back from its log row when asked for;
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
import { createKeyFilter, createLayeredKeyFilter, hashKey, type KeyHash } from '../ledger/sqlite/key-filter.js';
import { defaultArchivePath, openMoneyArchive } from './money-archive.js';
import { RecentIndex } from './recent-index.js';
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

/** About 50 bytes of heap and 60 of ArrayBuffers per recent row with 1,000 streams (bench/streams-recent-memory.ts). */
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
/**
 * While no commit comes for this long, the archive's work goes on by itself, a step each time
 * (idleArchiveStep): otherwise a tier left behind by a burst waited for the next commits, and
 * their acks waited behind its deletes (the streams benchmark's latency runs, after its
 * throughput runs, found 130,000 rows and a generation's deletes still pending).
 */
const IDLE_STEP_MS = 10;

export interface SqliteStreamMoneyStore extends StreamMoneyStore {
  /**
   * Rows in the recent tier (memory), whether a generation is being archived or deleted, and
   * the keys in the streams' ref indexes (tests, metrics).
   */
  tiers(): { recent: number; merging: boolean; indexKeys: number };
  /** Resolves once no generation is with the archive's worker (tests). */
  archived(): Promise<void>;
  /** Stops the archive's worker and closes its connection; call before closing the database. */
  close(): void;
}

/** A row of a commit while the commit runs (the recent tier keeps no such object: StreamRecent.cells). */
interface BatchRow extends MoneyRow {
  streamId: string;
  rowid: number;
  /** hashKey(streamId, ref): the stream's index and the archive's filter both take it. */
  hash: KeyHash;
  /** Where its entry is in its log row's text (text.slice(start, end)), once encoded. */
  start: number;
  end: number;
}

/**
 * A recent row, as ROW_CELLS numbers in its stream's `cells`: no object per row. Objects per
 * row (the row, its ref and name strings, its bigint, a map entry: about five) lived for the
 * 6 s or so a row spends in the recent tier, so every scavenge copied the last few thousand
 * and every full collection traced all of them, and those pauses were the slow acks at
 * 1,000 streams (ADR 0023; docs/benchmarks.md, tenth session). Nor is its text kept: holding
 * each commit's log text (one string per commit) still cost a millisecond or two at the 99th
 * percentile. The row is read back from its log row when asked for (a replay, a resume, a
 * lookup by ref), which is rare next to the charges that only need the numbers here.
 */
const ROWID = 0;
const SEQ = 1;
const HASH1 = 2;
const HASH2 = 3;
/** 1 for a charge not refused (a sweep moves it), else 0. */
const MOVABLE = 4;
/** Where the row's entry is in its log row's text, or NO_OFFSET (a row from before the log, or a log row not in encodeLogRows' exact form). */
const START = 5;
const END = 6;
const ROW_CELLS = 7;
const NO_OFFSET = -1;
/** Rows a stream's cells are first made for (they double as it grows). */
const FIRST_CELL_ROWS = 4;
/** The first hash's bits that key a stream's index: 30, so keys are small integers (no heap number each). */
const INDEX_KEY_MASK = 0x3fff_ffff;

interface StreamRecent {
  streamId: string;
  /**
   * The stream's recent rows in rowid order, ROW_CELLS numbers each; rows [first, count) are
   * live, those before `first` left the recent tier (archived) and wait to be cut off.
   */
  cells: Float64Array;
  first: number;
  count: number;
  /** Rows cut off the front of `cells` so far: a row's position (base + index) stays as it was. */
  base: number;
  /**
   * Position of the row by INDEX_KEY_MASK bits of its ref's hash, once the stream holds
   * INDEX_FROM recent rows; below that the rows' hashes are searched. An entry below zero is
   * minus the number of live rows sharing its key: they are searched too, and it counts down as
   * they leave, so it goes with the last. Per stream, so a key of 30 bits is enough. A table off
   * the JS heap (RecentIndex, ADR 0026), not for every stream: an empty one is a few hundred bytes.
   */
  index: RecentIndex | null;
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

/** The recent rows of one commit (one stream_money_log row, whole), or one row from before the log (stream_money_recent). */
interface LogChunk {
  /** The rowid of its first row (the log row's first_rowid); row i has rowid first + i. A generation ends on a chunk's edge. */
  first: number;
  /** False for a row of stream_money_recent (from before the log), read back by its rowid. */
  fromLog: boolean;
  /** Row i's stream. */
  streams: StreamRecent[];
}

/** One row's entry in a stream_money_log row: [stream_id, seq, ref, name, amount_msat, at, refused], the amount as a string (a bigint). */
function encodeLogEntry(row: MoneyRow & { streamId: string }): string {
  return JSON.stringify([row.streamId, row.seq, row.ref, row.name, row.amountMsat.toString(), row.at, row.refused]);
}

/**
 * A commit's rows as the text of one stream_money_log row: a JSON array of their entries
 * (encodeLogEntry) in rowid order. The archive's worker reads the same form (money-archive.ts).
 */
export function encodeLogRows(rows: readonly (MoneyRow & { streamId: string })[]): string {
  return logText(rows.map(encodeLogEntry)).text;
}

/** One entry of a stream_money_log row, checked: a malformed entry is a corrupt database, never guessed at. */
function decodeLogEntry(entry: unknown): MoneyRow & { streamId: string } {
  const [streamId, seq, ref, name, amount, at, refused] = (Array.isArray(entry) ? entry : []) as unknown[];
  if (typeof streamId !== 'string' || !Number.isSafeInteger(seq) || typeof ref !== 'string' || typeof name !== 'string'
    || typeof amount !== 'string' || !/^[1-9][0-9]*$/.test(amount) || !Number.isSafeInteger(at) || (refused !== null && typeof refused !== 'string')) {
    throw new Error(`a malformed stream_money_log entry: ${JSON.stringify(entry)}`);
  }
  return { streamId, seq: seq as number, ref, name, amountMsat: msat(BigInt(amount)), at: at as number, refused: refused as string | null };
}

/** The rows of a stream_money_log row (encodeLogRows), checked. */
export function decodeLogRows(text: string): (MoneyRow & { streamId: string })[] {
  const decoded: unknown = JSON.parse(text);
  if (!Array.isArray(decoded)) throw new Error('a stream_money_log row is not a JSON array');
  return decoded.map(decodeLogEntry);
}

/**
 * A log row's text (encodeLogRows' form) from its entries, and where each entry is in it:
 * entry i is text.slice(starts[i], starts[i + 1] - 1).
 */
function logText(entries: readonly string[]): { text: string; starts: number[] } {
  const starts: number[] = new Array(entries.length + 1);
  starts[0] = 1;
  for (let i = 0; i < entries.length; i += 1) starts[i + 1] = (starts[i] as number) + (entries[i] as string).length + 1;
  return { text: `[${entries.join(',')}]`, starts };
}

/** Recent rows of one stream from which they are found through its index (StreamRecent.index). */
const INDEX_FROM = 8;

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
  const archive = openMoneyArchive(db, options.archivePath ?? defaultArchivePath(db.name), { logger: options.logger });

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
  // Read in a commit's transaction, or at open: a stream row missing (a bug) fails that stream's sweeps, not the commit's answers.
  const newStreamRecent = (streamId: string): StreamRecent => {
    const row = selectStream.get(streamId) as Row | undefined;
    return {
      streamId, cells: new Float64Array(FIRST_CELL_ROWS * ROW_CELLS), first: 0, count: 0, base: 0, index: null, lastSeq: 0, settledSeq: Number(row?.charges_settled_seq ?? 0), accountId: (row?.account_id as string | undefined) ?? '', appId: (row?.app_id as string | undefined) ?? '',
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
  /** Every recent row's commit in rowid order, from `chunkHead` (its rows from `headRow`) on: archived rows leave from the front. */
  let chunks: LogChunk[] = [];
  let chunkHead = 0;
  let headRow = 0;
  /** Rows in the recent tier. */
  let recentCount = 0;
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

  /** The chunk holding a recent row (by binary search: chunks are in rowid order). */
  const chunkHolding = (rowid: number): LogChunk => {
    let low = chunkHead;
    let high = chunks.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if ((chunks[middle] as LogChunk).first <= rowid) low = middle;
      else high = middle - 1;
    }
    return chunks[low] as LogChunk;
  };

  // substr counts characters, and the offsets are UTF-16 code units: the same for the ASCII a
  // log row holds (refs and event names are ASCII, and JSON escapes the rest but for
  // characters past U+FFFF). An entry that does not read back as its row is read whole.
  const selectLogEntry = db.prepare('SELECT substr(rows, ?, ?) FROM stream_money_log WHERE first_rowid = ?').pluck();
  const selectLogText = db.prepare('SELECT rows FROM stream_money_log WHERE first_rowid = ?').pluck();
  const selectRecentRow = db.prepare(`SELECT stream_id, ${SELECT_COLUMNS} FROM stream_money_recent WHERE rowid = ?`);

  /**
   * The stream's recent row at this index, read back from its log row (or its row from before
   * the log). One that is not the row memory says (another stream's, another seq) is a
   * damaged database, never answered.
   */
  const decodeRecent = (recent: StreamRecent, index: number): MoneyRow => {
    const at = index * ROW_CELLS;
    const rowid = recent.cells[at + ROWID] as number;
    const seq = recent.cells[at + SEQ] as number;
    const chunk = chunkHolding(rowid);
    const isIt = (row: (MoneyRow & { streamId: string }) | undefined): row is MoneyRow & { streamId: string } => row !== undefined && row.streamId === recent.streamId && row.seq === seq;
    let row: (MoneyRow & { streamId: string }) | undefined;
    if (!chunk.fromLog) {
      const read = selectRecentRow.get(rowid) as Row | undefined;
      if (read) row = { ...moneyFromRow(read), streamId: read.stream_id as string };
    } else {
      const start = recent.cells[at + START] as number;
      if (start !== NO_OFFSET) {
        const entry = selectLogEntry.get(start + 1, (recent.cells[at + END] as number) - start, chunk.first) as string | undefined;
        try {
          row = entry === undefined ? undefined : decodeLogEntry(JSON.parse(entry) as unknown);
        } catch {
          row = undefined;
        }
      }
      if (!isIt(row)) {
        const text = selectLogText.get(chunk.first) as string | undefined;
        row = text === undefined ? undefined : decodeLogRows(text)[rowid - chunk.first];
      }
    }
    if (!isIt(row)) {
      throw new Error(`stream ${recent.streamId}: recent row ${rowid} is not in the database as it was written`);
    }
    return copyRow(row);
  };

  /** The stream's recent row at this index, if its ref is `ref` (its hash was checked by the caller). */
  const recentIfRef = (recent: StreamRecent, index: number, ref: string): MoneyRow | undefined => {
    const row = decodeRecent(recent, index);
    return row.ref === ref ? row : undefined;
  };

  /** The stream's recent row with this ref (and this hashKey of stream and ref), if any. */
  const recentByRef = (recent: StreamRecent | undefined, ref: string, hash: KeyHash): MoneyRow | undefined => {
    if (!recent) return undefined;
    const { cells } = recent;
    if (recent.index) {
      const position = recent.index.get(hash[0] & INDEX_KEY_MASK);
      if (position === undefined) return undefined;
      if (position >= 0) {
        const index = position - recent.base;
        const at = index * ROW_CELLS;
        if (index < recent.first || index >= recent.count || cells[at + HASH1] !== hash[0] || cells[at + HASH2] !== hash[1]) return undefined;
        return recentIfRef(recent, index, ref);
      }
    }
    for (let index = recent.first; index < recent.count; index += 1) {
      const at = index * ROW_CELLS;
      if (cells[at + HASH1] === hash[0] && cells[at + HASH2] === hash[1]) {
        const row = recentIfRef(recent, index, ref);
        if (row) return row;
      }
    }
    return undefined;
  };

  /** Into the stream's index: the row at this index. */
  const indexRow = (recent: StreamRecent, index: number): void => {
    const key = (recent.cells[index * ROW_CELLS + HASH1] as number) & INDEX_KEY_MASK;
    const held = (recent.index as RecentIndex).get(key);
    (recent.index as RecentIndex).set(key, held === undefined ? recent.base + index : held >= 0 ? -2 : held - 1);
  };

  /**
   * A row into memory: a commit's, whose stream's StreamRecent the commit made (commitSteps), or
   * one read back at open. Its chunk is the last one (rows arrive in rowid order).
   */
  const remember = (row: MoneyRow & { streamId: string }, rowid: number, hash: KeyHash, chunk: LogChunk, start: number, end: number): void => {
    let recent = byStream.get(row.streamId);
    if (!recent) byStream.set(row.streamId, (recent = newStreamRecent(row.streamId)));
    if (recent.count * ROW_CELLS === recent.cells.length) {
      const grown = new Float64Array(recent.cells.length * 2);
      grown.set(recent.cells);
      recent.cells = grown;
    }
    const index = recent.count;
    const at = index * ROW_CELLS;
    const movable = row.refused === null && !isReward(row.ref);
    recent.cells[at + ROWID] = rowid;
    recent.cells[at + SEQ] = row.seq;
    recent.cells[at + HASH1] = hash[0];
    recent.cells[at + HASH2] = hash[1];
    recent.cells[at + MOVABLE] = movable ? 1 : 0;
    recent.cells[at + START] = start;
    recent.cells[at + END] = end;
    recent.count += 1;
    chunk.streams[rowid - chunk.first] = recent;
    recentCount += 1;
    if (recent.index) indexRow(recent, index);
    else if (recent.count - recent.first >= INDEX_FROM) {
      recent.index = new RecentIndex();
      for (let i = recent.first; i < recent.count; i += 1) indexRow(recent, i);
    }
    if (row.seq > recent.lastSeq) recent.lastSeq = row.seq;
    if (movable && row.seq > recent.settledSeq) {
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
  // Rows from before the log first (their rowids are lower: the log's continue after them), a chunk each.
  for (const row of db.prepare(`SELECT rowid, stream_id, ${SELECT_COLUMNS} FROM stream_money_recent ORDER BY rowid`).iterate() as IterableIterator<Row>) {
    const rowid = Number(row.rowid as number);
    if (firstRowid === 0) firstRowid = rowid;
    if (rowid >= nextRowid) nextRowid = rowid + 1;
    if (rowid <= archivedThrough) continue;
    const chunk: LogChunk = { first: rowid, fromLog: false, streams: new Array(1) };
    chunks.push(chunk);
    const streamId = row.stream_id as string;
    const money = moneyFromRow(row);
    remember({ ...money, streamId }, rowid, hashKey(streamId, money.ref), chunk, NO_OFFSET, NO_OFFSET);
  }
  for (const log of db.prepare('SELECT first_rowid, last_rowid, rows FROM stream_money_log ORDER BY first_rowid').iterate() as IterableIterator<Row>) {
    const first = Number(log.first_rowid as number);
    const last = Number(log.last_rowid as number);
    if (firstRowid === 0) firstRowid = first;
    if (last >= nextRowid) nextRowid = last + 1;
    if (last <= archivedThrough) continue;
    // A generation ends on a log row's edge. One the cursor cuts would not be handed to the
    // archive again (its worker reads whole log rows after the cursor) and its rows would be
    // lost with it: refused loudly, never guessed at.
    if (first <= archivedThrough) throw new Error(`stream_money_log row ${first}..${last} is cut by the archive's cursor (${archivedThrough})`);
    const decoded = decodeLogRows(log.rows as string);
    if (decoded.length !== last - first + 1) throw new Error(`stream_money_log row ${first}: ${decoded.length} rows for rowids ${first}..${last}`);
    // Where each entry is in the text, if the text is in encodeLogRows' exact form (it was
    // written by it); if not, a decode parses the whole log row.
    const { text, starts } = logText(decoded.map(encodeLogEntry));
    const exact = text === log.rows;
    const chunk: LogChunk = { first, fromLog: true, streams: new Array(last - first + 1) };
    chunks.push(chunk);
    for (let rowid = first; rowid <= last; rowid += 1) {
      const row = decoded[rowid - first] as MoneyRow & { streamId: string };
      const at = rowid - first;
      remember(row, rowid, hashKey(row.streamId, row.ref), chunk, exact ? (starts[at] as number) : NO_OFFSET, exact ? (starts[at + 1] as number) - 1 : NO_OFFSET);
    }
  }
  if (archivedThrough > 0) deleting = { through: archivedThrough, deletedThrough: firstRowid === 0 ? archivedThrough : firstRowid - 1 };

  // Every archived ref, in layers (a full filter gets a bigger successor, never a rebuild that
  // reads the whole archive on the event loop). The first is sized ahead (about 1.3 MB per
  // million refs): a layer fewer.
  const archivedCount = archivedTables.reduce((sum, tables) => sum + Number((tables.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint | number }).n), 0);
  const firstFilter = createKeyFilter(Math.max(FILTER_MIN_REFS, archivedCount * 2));
  for (const tables of archivedTables) {
    for (const row of tables.prepare('SELECT stream_id, ref FROM stream_money').iterate() as IterableIterator<Row>) firstFilter.add(row.stream_id as string, row.ref as string);
  }
  // Rows archived and still in memory enter it as they leave memory (forget).
  const filter = createLayeredKeyFilter(firstFilter);

  const archivedFirst = (hash: KeyHash, streamId: string, ref: string): MoneyRow | null => {
    if (!filter.mightContainHash(hash)) return null;
    for (const queries of archivedQueries) {
      const row = queries.byRef.get(streamId, ref) as Row | undefined;
      if (row) return moneyFromRow(row);
    }
    return null;
  };

  // ---- the steps' transaction ----
  const commitSteps = db.transaction((steps: readonly MoneyStep[], now: number): { outcomes: MoneyOutcome[]; written: BatchRow[]; chunk: LogChunk | null } => {
    const outcomes: MoneyOutcome[] = new Array(steps.length);
    /** This batch's rows by stream, then ref (no string is built per row to key them). */
    const batch = new Map<string, Map<string, BatchRow>>();
    /** Per stream, the last seq this batch writes. */
    const batchLast = new Map<string, number>();
    const rows: BatchRow[] = [];
    const movable: number[] = [];
    const rowOf: (BatchRow | undefined)[] = new Array(steps.length);
    const replays: { index: number; first: MoneyRow }[] = [];
    for (let i = 0; i < steps.length; i += 1) {
      const step = steps[i] as MoneyStep;
      let ofStream = batch.get(step.streamId);
      let recent = byStream.get(step.streamId);
      const hash = hashKey(step.streamId, step.ref);
      const first = ofStream?.get(step.ref) ?? recentByRef(recent, step.ref, hash) ?? archivedFirst(hash, step.streamId, step.ref);
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
      const row: BatchRow = { streamId: step.streamId, rowid, hash, seq: step.seq, ref: step.ref, name: step.name, amountMsat: step.amountMsat, at: step.at, refused, start: NO_OFFSET, end: NO_OFFSET };
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
      for (const index of owners[op] as number[]) (rowOf[index] as BatchRow).refused = refused;
    });
    let chunk: LogChunk | null = null;
    if (rows.length > 0) {
      // encodeLogRows' text, and where each row's entry is in it (memory keeps no text).
      const { text, starts } = logText(rows.map(encodeLogEntry));
      rows.forEach((row, index) => {
        row.start = starts[index] as number;
        row.end = (starts[index + 1] as number) - 1;
      });
      insertLog.run(nextRowid, nextRowid + rows.length - 1, text);
      chunk = { first: nextRowid, fromLog: true, streams: new Array(rows.length) };
    }
    for (let i = 0; i < steps.length; i += 1) {
      const row = rowOf[i];
      if (row) outcomes[i] = { kind: 'written', refused: row.refused };
    }
    // Taken only once everything above held: a batch that throws leaves the next rowid as it was.
    nextRowid += rows.length;
    // Answered last: a first step of this same batch answers as the ledger left it.
    for (const { index, first } of replays) outcomes[index] = { kind: 'replay', first: copyRow(first) };
    return { outcomes, written: rows, chunk };
  });

  // ---- the archive ----

  /**
   * Archived rows leave memory, in rowid order through `through`; their keys enter the filter
   * first (a lookup then probes the archive). A stream's rows are in rowid order, so the row
   * leaving is its stream's first: its `first` index moves past it, and its cells are cut once
   * half of them have left (a splice per row moved the stream's whole array every time; ADR 0021).
   */
  const forget = (through: number): void => {
    while (chunkHead < chunks.length) {
      const chunk = chunks[chunkHead] as LogChunk;
      const rows = chunk.streams.length;
      for (; headRow < rows && chunk.first + headRow <= through; headRow += 1) {
        const recent = chunk.streams[headRow] as StreamRecent;
        const at = recent.first * ROW_CELLS;
        const { cells } = recent;
        filter.addHash([cells[at + HASH1] as number, cells[at + HASH2] as number]);
        if (recent.index) {
          const key = (cells[at + HASH1] as number) & INDEX_KEY_MASK;
          const held = recent.index.get(key);
          // Its own position, or the last of the rows that shared the key; or one fewer of them.
          if (held === recent.base + recent.first || held === -1) recent.index.delete(key);
          else if (held !== undefined && held < -1) recent.index.set(key, held + 1);
        }
        recent.first += 1;
        recentCount -= 1;
        if (recent.first === recent.count) {
          if (byStream.get(recent.streamId) === recent) byStream.delete(recent.streamId);
        } else if (recent.first >= 64 && recent.first * 2 >= recent.count) {
          const live = recent.count - recent.first;
          if (live * 4 <= cells.length / ROW_CELLS) {
            // Mostly empty (the stream held many rows once, a sweep stuck for a while): smaller.
            recent.cells = new Float64Array(Math.max(FIRST_CELL_ROWS, live * 2) * ROW_CELLS);
            recent.cells.set(cells.subarray(at + ROW_CELLS, recent.count * ROW_CELLS));
          } else {
            cells.copyWithin(0, at + ROW_CELLS, recent.count * ROW_CELLS);
          }
          recent.base += recent.first;
          recent.count -= recent.first;
          recent.first = 0;
        }
      }
      if (headRow < rows) break;
      // Not kept alive until the array is cut.
      chunks[chunkHead] = undefined as unknown as LogChunk;
      chunkHead += 1;
      headRow = 0;
    }
    if (chunkHead > 1024 && chunkHead * 2 > chunks.length) {
      chunks = chunks.slice(chunkHead);
      chunkHead = 0;
    }
  };

  /** One chunk of the archived generation leaves the recent table (one transaction), then memory. */
  const deleteChunk = db.transaction((from: number, to: number, last: boolean): void => {
    deleteRecent.run(from, to);
    // Whole log rows only: one that runs past `to` leaves with a later chunk (a generation ends on a log row's edge).
    deleteLog.run(to, to);
    if (last) clearCursor.run();
  });

  /** The index of the stream's first recent row with a seq past `seq` (its rows are in seq order). */
  function firstPast(recent: StreamRecent, seq: number): number {
    let low = recent.first;
    let high = recent.count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((recent.cells[middle * ROW_CELLS + SEQ] as number) > seq) high = middle;
      else low = middle + 1;
    }
    return low;
  }

  /** The chunk holding the recent row `rows` rows after the oldest, if the tier holds that many more. */
  const chunkAfter = (rows: number): LogChunk | undefined => {
    let left = rows + headRow;
    for (let index = chunkHead; index < chunks.length; index += 1) {
      const chunk = chunks[index] as LogChunk;
      if (left < chunk.streams.length) return chunk;
      left -= chunk.streams.length;
    }
    return undefined;
  };

  /**
   * Hands the oldest settled rows to the archive once the recent tier holds compactAt rows.
   * The generation ends before the oldest charge not yet settled: a sweep (or a start) finds
   * unsettled charges in the recent tier only. Sweeps run every interval, so that is recent.
   */
  const startGeneration = (): void => {
    if (recentCount < compactAt || Date.now() - archiveFailedAt < ARCHIVE_RETRY_MS || performance.now() < noGenerationUntil) return;
    const oldest = chunks[chunkHead] as LogChunk;
    const newest = chunks[chunks.length - 1] as LogChunk;
    const first = oldest.first + headRow;
    let through = newest.first + newest.streams.length - 1;
    const past = recentCount > generationMaxRows ? chunkAfter(generationMaxRows) : undefined;
    // Whole commits: one larger than the cap (a commit holds maxBatch steps at most) goes whole.
    if (past && past.first - 1 >= first) through = past.first - 1;
    // Per stream, from its first row past the settled seq: a scan of every recent row held
    // the event loop 10 ms with 1,000 streams (a stream's rows are in seq order, and the
    // charges at or below its settled seq are settled).
    for (const recent of byStream.values()) {
      if (recent.unsettledMsat === 0n) continue;
      for (let index = firstPast(recent, recent.settledSeq); index < recent.count; index += 1) {
        const at = index * ROW_CELLS;
        const rowid = recent.cells[at + ROWID] as number;
        if (rowid > through) break;
        // Past the settled seq from firstPast on: the first charge not refused is unsettled.
        if (recent.cells[at + MOVABLE] === 1) {
          // Before the whole commit that wrote it: a generation takes whole log rows.
          through = chunkHolding(rowid).first - 1;
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
      armIdleStep();
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
    const now = performance.now();
    lastStepAt = now;
    if (handing) return;
    if (!deleting) return startGeneration();
    const behind = recentCount > 2 * compactAt;
    if (!behind && now - lastChunkAt < deleteChunkGapMs) return;
    lastChunkAt = now;
    const to = Math.min(deleting.through, deleting.deletedThrough + deleteChunkRows + (behind ? 2 * writtenRows : 0));
    const last = to >= deleting.through;
    try {
      deleteChunk.immediate(deleting.deletedThrough, to, last);
    } catch (error) {
      // Nothing of it committed: the next step (after a commit, or idle) tries again.
      options.logger?.error({ err: error }, 'deleting archived stream money rows failed; tried again at the next step');
      return;
    }
    forget(to);
    deleting = last ? null : { through: deleting.through, deletedThrough: to };
  };

  /** When archiveStep last ran (performance.now()): after a commit, or by itself (idleArchiveStep). */
  let lastStepAt = -Infinity;
  let idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** A generation being deleted, or one due to start. */
  const archiveWorkLeft = (): boolean => !closed && db.open && (deleting !== null || (handing === null && recentCount >= compactAt));
  /** Once no commit came for IDLE_STEP_MS: a step of the archive's work, in the same sync window as a commit's. */
  const idleArchiveStep = (): void => {
    idleTimer = null;
    if (!archiveWorkLeft()) return;
    if (performance.now() - lastStepAt >= IDLE_STEP_MS) {
      const wal = walSyncOf();
      // Not synced here: like a commit's step, it is synced with whatever is synced next, and a
      // crash can only take it back with what came after it (the WAL is replayed in order).
      if (wal?.failure) return;
      try {
        if (wal) wal.commitUnsynced(() => archiveStep(0));
        else archiveStep(0);
      } catch (error) {
        options.logger?.error({ err: error }, 'a step of the stream money archive failed; tried again later');
      }
    }
    armIdleStep();
  };
  function armIdleStep(): void {
    if (idleTimer || !archiveWorkLeft()) return;
    idleTimer = setTimeout(idleArchiveStep, IDLE_STEP_MS);
    idleTimer.unref();
  }
  // A generation archived before a restart is deleted whether or not commits come.
  armIdleStep();

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
        const { outcomes, written, chunk } = commitSteps.immediate(steps, now);
        if (chunk) {
          chunks.push(chunk);
          for (const row of written) remember(row, row.rowid, row.hash, chunk, row.start, row.end);
        }
        // Its own transaction (a failed delete is logged and tried again; it fails no step).
        archiveStep(written.length);
        armIdleStep();
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
      // The stream's recent rows are in seq order: from its first past afterSeq, at most `limit`
      // of them (each is read back from its log row).
      const recent = byStream.get(streamId);
      if (recent) {
        for (let index = firstPast(recent, afterSeq), taken = 0; index < recent.count && taken < limit; index += 1, taken += 1) {
          const seq = recent.cells[index * ROW_CELLS + SEQ] as number;
          if (seq > toSeq) break;
          bySeq.set(seq, decodeRecent(recent, index));
        }
      }
      return [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(0, limit);
    },
    async findByRef(streamId, ref) {
      const hash = hashKey(streamId, ref);
      return recentByRef(byStream.get(streamId), ref, hash) ?? archivedFirst(hash, streamId, ref);
    },
    async maxSeq(streamId) {
      let max = 0;
      for (const queries of archivedQueries) max = Math.max(max, Number((queries.maxSeq.get(streamId) as Row | undefined)?.seq ?? 0));
      // A stream's recent rows are in seq order: its last is its highest.
      const recent = byStream.get(streamId);
      if (recent && recent.count > recent.first) max = Math.max(max, recent.cells[(recent.count - 1) * ROW_CELLS + SEQ] as number);
      return max;
    },
    tiers: () => ({
      recent: recentCount,
      merging: handing !== null || deleting !== null,
      indexKeys: [...byStream.values()].reduce((sum, recent) => sum + (recent.index?.size ?? 0), 0),
    }),
    archived: () => handing?.done ?? Promise.resolve(),
    close() {
      closed = true;
      if (idleTimer) clearTimeout(idleTimer);
      archive.close();
    },
  };
}
