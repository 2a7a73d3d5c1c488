/**
 * The stream money archive on SQLite: where a stream's settled money rows go once they leave
 * the recent tier (money-store-sqlite.ts), in a database file of its own, written by a worker
 * thread.
 *
 * Why: indexing every charge twice, by (stream, seq) for resumes and by (stream, ref) for
 * retries, cost about 4 µs of the event loop's time per charge on the 2-core VM, a fifth of
 * a charge's whole cost, in pauses of several milliseconds (the merges and the checkpoints
 * of the pages they wrote). The machine's second core was mostly idle. So the main thread
 * now only appends rows to the recent table; the worker reads a generation of them through
 * its own connection to the main database, sorted by stream, and writes them into the
 * archive's two B-trees, checkpoints included, while the event loop goes on.
 *
 * Why a second file: SQLite lets one connection write a database at a time. A worker
 * writing the main file would make the main thread's commits wait for its lock (and
 * SQLite's busy handler sleeps, holding the event loop). The archive has one writer, the
 * worker; the main thread only reads it (WAL: readers never wait for the writer).
 *
 * Durability and order (the caller's side, money-store-sqlite.ts):
 * - a generation is handed over only once its rows (and the sweeps that settled them) are
 *   synced in the main database, so the archive never holds a row a crash could take back;
 * - the worker writes a generation in slices of its key order, each a transaction committed
 *   with synchronous=FULL (DEFAULT_ARCHIVE_SLICE_ROWS says why), and answers after the last,
 *   so an answered generation is on disk; only then does the main database record it and
 *   delete its rows;
 * - handing a generation over again (after a crash, or a reopen while the worker was busy)
 *   is harmless: a row already archived is checked equal and skipped. A row that differs
 *   (the archive belongs to another copy of the database) fails its slice, and so the
 *   generation, which stays in the recent tier, loudly: the two files are backed up and
 *   restored together. The slices before it stay archived: rows of this database, synced in
 *   it before the handover, which reads take once (a row both in memory and archived is
 *   found in memory first, and listed once by seq).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { openSqlite, type SqliteDatabase } from '../db/sqlite.js';
import { streamMoneyTable } from './migrations.js';

/** The archive's schema: stream_money as in the main database (migration 4), created on first open. */
const ARCHIVE_SCHEMA = streamMoneyTable('INTEGER', ' WITHOUT ROWID', 'IF NOT EXISTS ');

/**
 * CommonJS, evaluated in the worker (as the ledger's checkpointer: no loader, no TypeScript).
 * One message at a time: { id, after, through } archives the main database's recent rows
 * with after < rowid <= through; the answer is { id, rows } once all are committed, or
 * { id, error }.
 * The recent rows are in stream_money_log, a JSON array per commit (money-store-sqlite.ts
 * encodeLogRows; a generation takes whole log rows), and, from before the log, one per row
 * in stream_money_recent. They are written sorted by stream and seq, the archive's key order.
 *
 * Why SQL does the work: the log rows' JSON texts are joined into one array, which SQLite
 * turns into its binary JSON once (jsonb) and sorts with its own sorter into a temporary table
 * in memory, from which one INSERT ... SELECT per slice writes them. The rows never become
 * JavaScript values. Parsing them in JavaScript (arrays,
 * BigInts, 7 bound parameters per row, and the garbage: about 100 ms of collection per
 * generation) took 520-640 ms of CPU per generation of 64,000 rows; this takes 330-370 ms
 * (docs/benchmarks.md, "Eighth session"). On a 2-core machine that CPU is taken from the event
 * loop and the load generator, and V8's collector helpers, which the worker's garbage kept
 * busy, run on the same cores.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const archive = new Database(workerData.archivePath, { fileMustExist: true });
archive.pragma('journal_mode = WAL');
archive.pragma('synchronous = FULL');
archive.pragma('busy_timeout = 10000');
archive.defaultSafeIntegers(true);
const main = new Database(workerData.mainPath, { fileMustExist: true });
main.pragma('busy_timeout = 10000');
main.defaultSafeIntegers(true);
const readRecent = main.prepare('SELECT stream_id, seq, ref, name, amount_msat, at, refused FROM stream_money_recent WHERE rowid > ? AND rowid <= ? ORDER BY rowid').raw(true);
const readLog = main.prepare('SELECT first_rowid, last_rowid, rows FROM stream_money_log WHERE first_rowid > ? AND first_rowid <= ? ORDER BY first_rowid').raw(true);
// The generation as one JSON array of rows, each [stream_id, seq, ref, name, "amount", at, refused]
// (encodeLogRows' form): the log rows' arrays joined, without parsing them here.
const read = (after, through) => {
  const parts = [];
  const logRows = [];
  let count = 0;
  for (const [streamId, seq, ref, name, amount, at, refused] of readRecent.all(after, through)) {
    parts.push(JSON.stringify([streamId, Number(seq), ref, name, String(amount), Number(at), refused]));
    count += 1;
  }
  for (const [first, last, text] of readLog.all(after, through)) {
    if (last > through) throw new Error('stream_money_log row ' + first + ' runs past the generation (' + through + ')');
    if (text.length < 3 || text[0] !== '[' || text[text.length - 1] !== ']') throw new Error('stream_money_log row ' + first + ' is not a JSON array of rows');
    parts.push(text.slice(1, -1));
    logRows.push([first, last, text]);
    count += Number(last - first) + 1;
  }
  return { json: '[' + parts.join(',') + ']', count, logRows };
};
const toJsonb = archive.prepare('SELECT jsonb(?)').pluck();
const lengthOf = archive.prepare('SELECT json_array_length(?)').pluck();
// The generation sorted once, in memory (temp_store = MEMORY: no file, no dirty pages), in the
// archive's key order: inserted in that order into an empty table, its rows take consecutive
// rowids in it, so a slice is a rowid range and touches a run of streams. (Were the order not
// kept, slices would only write more pages, never other rows.)
archive.pragma('temp_store = MEMORY');
archive.exec('CREATE TEMP TABLE generation (stream_id TEXT NOT NULL, seq INTEGER NOT NULL, ref TEXT NOT NULL, name TEXT NOT NULL, amount_msat INTEGER NOT NULL, at INTEGER NOT NULL, refused TEXT)');
const clearSorted = archive.prepare('DELETE FROM temp.generation');
const firstSorted = archive.prepare('SELECT min(rowid) FROM temp.generation').pluck();
const sortAll = archive.prepare('INSERT INTO temp.generation (stream_id, seq, ref, name, amount_msat, at, refused) SELECT '
  + "e.value->>0, e.value->>1, e.value->>2, e.value->>3, CAST(e.value->>4 AS INTEGER), e.value->>5, e.value->>6 FROM jsonb_each(?) AS e ORDER BY 1, 2");
// WHERE true: an upsert after a SELECT needs it (SQLite would read ON CONFLICT as a join's ON).
const insertSlice = archive.prepare('INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) SELECT '
  + 'stream_id, seq, ref, name, amount_msat, at, refused FROM temp.generation WHERE rowid BETWEEN ? AND ? ORDER BY rowid ON CONFLICT DO NOTHING');
// A row of the slice that the archive does not hold as it is: archived before with other
// values, or kept out by another row with its ref.
const firstDifferent = archive.prepare('SELECT g.stream_id, g.seq, g.ref FROM temp.generation AS g WHERE g.rowid BETWEEN ? AND ? AND NOT EXISTS ('
  + 'SELECT 1 FROM stream_money AS a WHERE a.stream_id = g.stream_id AND a.seq = g.seq AND a.ref = g.ref AND a.name = g.name'
  + ' AND a.amount_msat = g.amount_msat AND a.at = g.at AND a.refused IS g.refused) LIMIT 1').raw(true);
const isJson = archive.prepare('SELECT json_valid(?)').pluck();
// Named for whoever has to look: the log row that is not JSON, or whose array does not match its rowids.
const badLogRow = (logRows) => {
  for (const [first, last, text] of logRows) {
    if (!isJson.get(text)) return 'stream_money_log row ' + first + ' is not a JSON array of rows';
    const held = Number(lengthOf.get(text));
    if (held !== Number(last - first) + 1) return 'stream_money_log row ' + first + ' holds ' + held + ' rows for rowids ' + first + '..' + last;
  }
  return null;
};
// The entries' fields are not checked here: every log row this worker is handed was written by
// encodeLogRows in this run, or decoded and checked by the main thread when it loaded the
// recent tier at its start (decodeLogRows refuses a malformed entry), so a malformed one would
// be the database file damaged while the server runs. One that is not a row at all still
// fails the generation on the table's NOT NULL and CHECK constraints.
const sort = ({ json, count, logRows }) => {
  let rows;
  try {
    rows = toJsonb.get(json);
  } catch (error) {
    throw new Error(badLogRow(logRows) || String((error && error.message) || error));
  }
  const length = Number(lengthOf.get(rows));
  if (length !== count) throw new Error(badLogRow(logRows) || 'the generation holds ' + length + ' rows, not ' + count);
  // Empty here: write() empties it after each generation, whatever happened.
  sortAll.run(rows);
  return Number(firstSorted.get());
};
const writeSlice = archive.transaction((from, to) => {
  if (insertSlice.run(from, to).changes === to - from + 1) return;
  // Some were archived before (a generation handed over again): each must be the same row.
  const different = firstDifferent.get(from, to);
  if (different) {
    throw new Error('the archive holds another row for stream ' + different[0] + ' at seq ' + different[1] + ' or ref ' + JSON.stringify(different[2]) + ': it does not belong to this database (back up and restore the two files together)');
  }
});
const write = (generation) => {
  try {
    const first = sort(generation);
    const last = first + generation.count - 1;
    for (let from = first; from <= last; from += workerData.sliceRows) writeSlice(from, Math.min(last, from + workerData.sliceRows - 1));
  } finally {
    clearSorted.run();
  }
};
parentPort.on('message', (message) => {
  if (message === 'stop') {
    archive.close();
    main.close();
    parentPort.close();
    return;
  }
  try {
    const generation = read(BigInt(message.after), BigInt(message.through));
    write(generation);
    parentPort.postMessage({ id: message.id, rows: generation.count });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: String((error && error.message) || error) });
  }
});
`;

/**
 * Rows per transaction of the archive (a generation is written in slices of its key order).
 *
 * Why: a generation of 65,536 rows (up to four times that after a burst) in one transaction
 * left 20-80 MB of dirty pages in the archive's WAL, synced at its commit and again by the
 * checkpoint after it. A sync (a FLUSH on a virtual disk) waits for every write before it, so
 * each of those syncs held up the main database's WAL syncs, and with them every ack, for tens
 * of milliseconds (80-99 MB written in half a second after the streams benchmark's throughput
 * runs; the durable echo beside it stalled 74 ms). A slice of 4,096 rows leaves about 1 MB.
 * Sorted once, the generation's slices touch disjoint runs of streams, so slicing writes about
 * the same pages in all.
 */
export const DEFAULT_ARCHIVE_SLICE_ROWS = 4096;

export interface MoneyArchiveOptions {
  /** A generation that fails is logged by the caller; the worker's start is logged here. */
  logger?: Logger;
  /** Rows per transaction (default DEFAULT_ARCHIVE_SLICE_ROWS; tests make it small). */
  sliceRows?: number;
}

export interface MoneyArchive {
  /** The main thread's connection to the archive: reads only (the worker writes). */
  readonly db: SqliteDatabase;
  /** Archives the main database's recent rows with after < rowid <= through; resolves with their count once durable there. */
  archive(after: number, through: number): Promise<number>;
  /** Stops the worker (a generation under way is dropped: it stays in the recent tier) and closes the connection. */
  close(): void;
}

/** `<name>.money.sqlite` beside the main database (`sluice.sqlite` -> `sluice.money.sqlite`). */
export function defaultArchivePath(mainPath: string): string {
  return mainPath.endsWith('.sqlite') ? `${mainPath.slice(0, -'.sqlite'.length)}.money.sqlite` : `${mainPath}.money.sqlite`;
}

/**
 * Opens (creating it if needed) the archive of the main database `main`, a file database.
 * The worker starts with the first generation, and again after it failed.
 */
export function openMoneyArchive(main: SqliteDatabase, archivePath: string, options: MoneyArchiveOptions = {}): MoneyArchive {
  const { logger } = options;
  const sliceRows = options.sliceRows ?? DEFAULT_ARCHIVE_SLICE_ROWS;
  if (!Number.isSafeInteger(sliceRows) || sliceRows < 1) throw new Error(`sliceRows must be a positive integer, not ${sliceRows}`);
  if (main.memory || main.name === '') throw new Error('stream money rows on SQLite need a file database: their archive is a second file, written by a worker thread');
  const db = openSqlite({ path: archivePath });
  db.exec(ARCHIVE_SCHEMA);
  let worker: Worker | null = null;
  let nextId = 0;
  const waiting = new Map<number, { resolve: (rows: number) => void; reject: (error: Error) => void }>();

  const failAll = (error: Error): void => {
    for (const { reject } of waiting.values()) reject(error);
    waiting.clear();
  };

  const stopWorker = (): void => {
    const running = worker;
    worker = null;
    if (!running) return;
    running.postMessage('stop');
    // Past its transaction (if any), the worker closes; terminate it if it does not.
    setTimeout(() => void running.terminate(), 5000).unref();
  };

  const start = (): Worker => {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const started = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { driver, archivePath, mainPath: main.name, sliceRows } });
    started.on('message', (message: { id: number; rows?: number; error?: string }) => {
      const entry = waiting.get(message.id);
      if (!entry) return;
      waiting.delete(message.id);
      if (typeof message.rows === 'number') entry.resolve(message.rows);
      else entry.reject(new Error(message.error ?? 'the money archive worker failed'));
    });
    const gone = (error?: unknown): void => {
      if (worker !== started) return;
      worker = null;
      failAll(error instanceof Error ? error : new Error('the money archive worker exited'));
    };
    started.on('error', gone);
    started.on('exit', gone);
    // After the listeners (a 'message' listener refs the worker again): never keeps the process alive.
    started.unref();
    logger?.debug({ archivePath }, 'stream money archive worker started');
    return started;
  };

  const archive: MoneyArchive = {
    db,
    archive(after, through) {
      if (!main.open || !db.open) return Promise.reject(new Error('the stream money store is closed'));
      worker ??= start();
      const id = (nextId += 1);
      return new Promise<number>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        (worker as Worker).postMessage({ id, after, through });
      });
    },
    close() {
      clearInterval(watch);
      stopWorker();
      failAll(new Error('the stream money store is closed'));
      if (db.open) db.close();
    },
  };
  // A database closed without close() (tests, a crash path) takes the worker and this connection with it.
  const watch = setInterval(() => {
    if (!main.open) archive.close();
  }, 1000);
  watch.unref();
  return archive;
}
