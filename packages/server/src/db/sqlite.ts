/**
 * Opens the embedded SQLite database.
 *
 * WAL with synchronous=FULL: every commit is fsynced before it returns, so an
 * acknowledged write survives a crash or power loss. Throughput comes from batching
 * many writes into one commit (group commit), never from acknowledging before the disk
 * has the write. One refinement, in the ledger's group commit only
 * (ledger/sqlite/wal-sync.ts): its batches commit with synchronous=NORMAL and the WAL is
 * then fdatasynced on the thread pool; nobody is answered before that sync returns, so
 * what is acknowledged is exactly as durable as under FULL, and the event loop keeps
 * working while the disk syncs. Every other transaction runs under FULL.
 */
import Database from 'better-sqlite3';

export type SqliteDatabase = Database.Database;

export interface OpenSqliteOptions {
  /** A file path, or ":memory:" for tests that do not need durability. */
  path: string;
  /** Milliseconds to wait for a lock held by another connection. */
  busyTimeoutMs?: number;
}

export function openSqlite(options: OpenSqliteOptions): SqliteDatabase {
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  // Amounts are 64-bit integers: read them back as bigint, never as lossy numbers.
  db.defaultSafeIntegers(true);
  return db;
}
