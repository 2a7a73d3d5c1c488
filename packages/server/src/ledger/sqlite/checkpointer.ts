/**
 * WAL checkpoints off the event loop.
 *
 * Why: SQLite checkpoints a WAL of 1000 pages (~4 MB) inside the commit that fills it, on the
 * committing connection: it copies every page to the database file and syncs both files,
 * and with better-sqlite3 that holds the event loop for milliseconds to tens of
 * milliseconds. Under a steady stream of small group commits that happened several times a
 * second and set the ack latency's p99. So, once the WAL of a connection that the ledger
 * writes has grown past `startAtBytes` (small test databases never get there):
 *
 * - the connection's automatic checkpoints are turned off (wal_autocheckpoint = 0);
 * - a worker thread with its own connection runs a PASSIVE checkpoint every `intervalMs`:
 *   it copies committed frames to the database file while the main connection keeps
 *   committing (PASSIVE never blocks writers or readers) and reports how long the WAL is;
 * - the WAL restarts from its beginning only when every frame has been copied as a write
 *   begins, which a checkpoint racing the commits rarely achieves; so when the worker reports
 *   more than `limitFrames` frames, the main connection runs one PASSIVE checkpoint itself as
 *   soon as that report arrives (between two commits, as everything on the event loop): the
 *   worker has just copied everything up to its start, so this one copies only the pages
 *   committed since, and the next write starts the WAL over.
 *
 * Durability does not depend on any of this: commits are durable in the WAL (wal-sync.ts and
 * synchronous=FULL); a checkpoint only copies them into the database file, and SQLite makes
 * an interrupted checkpoint harmless. If the worker fails, automatic checkpoints come back.
 * The worker stops when the main connection has closed (checked every second).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { SqliteDatabase } from '../../db/sqlite.js';

export interface CheckpointerOptions {
  /** WAL size at which the worker starts (default 4 MiB, SQLite's own checkpoint point). */
  startAtBytes?: number;
  /** WAL length in frames (pages) past which the main connection checkpoints once itself. */
  limitFrames?: number;
  /** How often the worker checkpoints. */
  intervalMs?: number;
}

export interface Checkpointer {
  /** Call after each of the ledger's own commits, outside any transaction (starts the worker when due). */
  afterCommit(): void;
  /** The worker runs (for tests and metrics). */
  readonly running: boolean;
  /** Checkpoints the main connection ran because the WAL passed limitFrames. */
  readonly mainCheckpoints: number;
  /** Checkpoints the worker has reported. */
  readonly workerCheckpoints: number;
  /** Why the worker stopped working (SQLite's own checkpoints are back); null while fine. */
  readonly failure: string | null;
}

export const DEFAULT_CHECKPOINT_START_BYTES = 4 * 1024 * 1024;
export const DEFAULT_CHECKPOINT_LIMIT_FRAMES = 4000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 50;
/** The WAL's size is looked at every this many commits until the worker starts. */
const SIZE_CHECK_EVERY = 32;

// CommonJS, evaluated in the worker: it only checkpoints, never writes a row.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = FULL');
const timer = setInterval(() => {
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ log: Number(row.log), checkpointed: Number(row.checkpointed) });
  } catch (error) {
    parentPort.postMessage({ error: String((error && error.message) || error) });
  }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

const checkpointers = new WeakMap<SqliteDatabase, Checkpointer>();

/** The checkpointer of a file database in WAL mode (one per connection); null otherwise. */
export function checkpointerFor(db: SqliteDatabase, options: CheckpointerOptions = {}): Checkpointer | null {
  const known = checkpointers.get(db);
  if (known) return known;
  if (db.memory || db.name === '' || String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return null;
  const created = createCheckpointer(db, options);
  checkpointers.set(db, created);
  return created;
}

function createCheckpointer(db: SqliteDatabase, options: CheckpointerOptions): Checkpointer {
  const walPath = `${db.name}-wal`;
  const startAtBytes = options.startAtBytes ?? DEFAULT_CHECKPOINT_START_BYTES;
  const limitFrames = options.limitFrames ?? DEFAULT_CHECKPOINT_LIMIT_FRAMES;
  const intervalMs = options.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  let worker: Worker | null = null;
  let watch: NodeJS.Timeout | null = null;
  let failed = false;
  let failure: string | null = null;
  let commits = 0;
  let mainCheckpoints = 0;
  let workerCheckpoints = 0;
  let autocheckpoint: unknown = 1000;

  const stop = (restoreAutocheckpoint: boolean): void => {
    if (watch) clearInterval(watch);
    watch = null;
    const running = worker;
    worker = null;
    if (running) {
      running.postMessage('stop');
      setTimeout(() => void running.terminate(), 1000).unref();
    }
    if (restoreAutocheckpoint && db.open) db.pragma(`wal_autocheckpoint = ${Number(autocheckpoint)}`);
  };

  const checkpointHere = (): void => {
    if (!db.open || db.inTransaction) return;
    mainCheckpoints += 1;
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy (the worker started its next one): its next report asks again.
    }
  };

  const start = (): void => {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    // execArgv: none of the parent's flags (a loader, --input-type=module) applies to this source.
    const started = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { driver, path: db.name, intervalMs } });
    worker = started;
    autocheckpoint = db.pragma('wal_autocheckpoint', { simple: true });
    db.pragma('wal_autocheckpoint = 0');
    started.on('message', (message: { log?: number; error?: string }) => {
      if (typeof message.log === 'number') {
        workerCheckpoints += 1;
        if (message.log > limitFrames) checkpointHere();
      } else if (message.error) failure = message.error;
    });
    const fail = (error?: unknown): void => {
      if (worker !== started) return;
      failure = error instanceof Error ? error.message : 'the checkpoint worker exited';
      // Back to SQLite's own checkpoints on this connection; no second attempt.
      failed = true;
      stop(true);
    };
    started.on('error', fail);
    started.on('exit', fail);
    // After the listeners: adding a 'message' listener refs the worker again, and a ref'd
    // worker would keep the process from exiting.
    started.unref();
    watch = setInterval(() => {
      if (!db.open) stop(false);
    }, 1000);
    watch.unref();
  };

  return {
    get running() {
      return worker !== null;
    },
    get mainCheckpoints() {
      return mainCheckpoints;
    },
    get workerCheckpoints() {
      return workerCheckpoints;
    },
    get failure() {
      return failure;
    },
    afterCommit() {
      if (failed || worker || db.inTransaction) return;
      commits += 1;
      if (commits % SIZE_CHECK_EVERY !== 0) return;
      const size = fs.statSync(walPath, { throwIfNoEntry: false })?.size ?? 0;
      if (size >= startAtBytes) start();
    },
  };
}
