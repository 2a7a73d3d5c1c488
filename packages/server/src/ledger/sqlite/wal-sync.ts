/**
 * Makes the ledger's own group commits durable without holding the event loop.
 *
 * Why: better-sqlite3 is synchronous, so with synchronous=FULL every commit waits for the WAL
 * fsync on the main thread: nothing else (reading sockets, preparing the next batch) runs
 * meanwhile, and under disk contention that wait is most of a commit. Instead, the store's own
 * batches commit with synchronous=NORMAL (in WAL mode: the same atomic commit, only the WAL
 * is not fsynced by SQLite), then this module fdatasyncs the WAL file on libuv's thread pool,
 * and the group commit answers the batch's callers only once that sync has returned. The
 * guarantee is the one FULL gives: an acknowledged batch's WAL frames are on disk. The rest of
 * the connection keeps synchronous=FULL (the store restores it right after its commit), so
 * every other module's transactions stay durable on their own.
 *
 * Why this is sound:
 * - fdatasync covers every byte written to the file before it was called, through any file
 *   descriptor, so a sync started after a commit returned covers that commit (and all before).
 * - A batch's results are visible to later transactions before they are durable. Anything that
 *   acts outside the database first commits its own record with FULL (e.g. a payment's
 *   in-flight row), and that fsync of the same WAL makes every earlier frame durable first. A
 *   later group-commit batch built on an earlier one is answered after a later sync. After a
 *   crash both are gone or both are there, and neither was answered in between.
 * - Checkpoints still sync the WAL before copying it and the database file after (NORMAL does
 *   that), and SQLite syncs the WAL header when it starts reusing the file.
 * - A failed sync leaves the state of the disk unknown (the kernel may have dropped the dirty
 *   pages): every later sync is refused too, and the store refuses new batches.
 *
 * Syncs are coalesced: commits made while a sync runs wait for the next one, started as soon
 * as the running one returns, so there is at most one sync in flight and one queued.
 */
import fs from 'node:fs';
import type { SqliteDatabase } from '../../db/sqlite.js';

export interface WalSync {
  /**
   * Runs `transaction` (a function that commits) with synchronous=NORMAL for it alone, so
   * SQLite does not fsync inside that commit: the caller answers nobody before afterCommit().
   * The connection's own level (FULL from openSqlite, or stricter) is set again right after,
   * for every other transaction on it.
   */
  commitUnsynced<T>(transaction: () => T): T;
  /** Resolves once everything committed before this call is on disk. */
  afterCommit(): Promise<void>;
  /** The error of a failed sync, after which nothing is made durable here; null while healthy. */
  readonly failure: unknown;
}

export class WalSyncFailedError extends Error {
  constructor(cause: unknown) {
    super(`the ledger's WAL could not be synced to disk (${(cause as Error)?.message ?? String(cause)}); restart the process`, { cause });
    this.name = 'WalSyncFailedError';
  }
}

/** Syncs a file's data to disk on the thread pool. Replaceable in tests. */
export type SyncFile = (path: string) => Promise<void>;

/**
 * fdatasync through a descriptor kept open per path (opening and closing one per sync cost
 * three thread-pool round trips and ~3x the main-thread time). Every INODE_CHECK_EVERY syncs
 * (and on the first) the path's inode is compared with the descriptor's, so a WAL file
 * replaced under us is reopened instead of syncing a stale file. SQLite replaces the WAL
 * only when the last connection closes or the journal mode changes, neither of which
 * happens while the ledger's connection is open; the check is a guard, not a mechanism.
 * Callbacks, not fs.promises: a FileHandle costs more on the main thread.
 */
const INODE_CHECK_EVERY = 64;

export function createFileSyncer(): SyncFile & { close(): void } {
  let open: { path: string; fd: number; ino: number } | null = null;
  let syncs = 0;
  const closeOpen = (): void => {
    if (open) fs.close(open.fd, () => {});
    open = null;
  };
  const sync = (path: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      syncs += 1;
      if (!open || open.path !== path || syncs % INODE_CHECK_EVERY === 0) {
        const current = fs.statSync(path, { throwIfNoEntry: false });
        if (!current) {
          closeOpen();
          return reject(Object.assign(new Error(`ENOENT: no such file, ${path}`), { code: 'ENOENT' }));
        }
        if (!open || open.path !== path || open.ino !== current.ino) {
          closeOpen();
          const fd = fs.openSync(path, 'r');
          open = { path, fd, ino: fs.fstatSync(fd).ino };
        }
      }
      fs.fdatasync(open.fd, (error) => (error ? reject(error) : resolve()));
    });
  return Object.assign(sync, { close: closeOpen });
}

const syncers = new FinalizationRegistry<{ close(): void }>((syncer) => syncer.close());

/**
 * The WAL sync for a file database in WAL mode; null otherwise (an in-memory database has
 * nothing to sync, and another journal mode keeps its own synchronous commits).
 */
export function createWalSync(db: SqliteDatabase, syncFile?: SyncFile): WalSync | null {
  if (db.memory || db.name === '' || String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return null;
  const walPath = `${db.name}-wal`;
  const own = syncFile ? null : createFileSyncer();
  const syncWal: SyncFile = syncFile ?? (own as SyncFile);
  let running: Promise<void> | null = null;
  let queued: { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | null = null;
  let failure: unknown = null;
  /**
   * The connection's own synchronous level, read once. Set with db.exec per commit (~1 µs for
   * both): SQLite applies PRAGMA synchronous while it prepares the statement, so a statement
   * prepared once and run again would act only through SQLite's automatic re-prepare
   * (measured: not on its first run). Checked from outside with strace in sqlite-wal-sync.test.ts.
   */
  let ownSyncLevel: number | null = null;

  const syncOnce = async (): Promise<void> => {
    try {
      if (own && !db.open) own.close();
      await syncWal(walPath);
    } catch (error) {
      // The WAL is deleted only when the last connection closes, after a full checkpoint
      // that synced the database file: nothing of ours is left to sync.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !db.open) return;
      failure ??= new WalSyncFailedError(error);
      throw failure;
    }
  };

  const start = (): Promise<void> => {
    const sync = syncOnce();
    running = sync;
    const next = (): void => {
      running = null;
      const waiting = queued;
      queued = null;
      if (!waiting) return;
      if (failure) return waiting.reject(failure);
      start().then(waiting.resolve, waiting.reject);
    };
    sync.then(next, next);
    return sync;
  };

  const walSync: WalSync = {
    get failure() {
      return failure;
    },
    commitUnsynced(transaction) {
      ownSyncLevel ??= Number(db.pragma('synchronous', { simple: true }));
      db.exec('PRAGMA synchronous = NORMAL');
      try {
        return transaction();
      } finally {
        db.exec(`PRAGMA synchronous = ${ownSyncLevel}`);
      }
    },
    afterCommit() {
      if (failure) return Promise.reject(failure);
      if (!running) return start();
      // The sync under way may have started before this commit's writes: wait for the next.
      if (!queued) {
        let resolve!: () => void;
        let reject!: (error: unknown) => void;
        const promise = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        queued = { promise, resolve, reject };
      }
      return queued.promise;
    },
  };
  // The kept descriptor is closed when the store that owns this sync is collected.
  if (own) syncers.register(walSync, own);
  return walSync;
}
