/**
 * Opens the embedded SQLite database.
 *
 * WAL with synchronous=FULL: every commit is fsynced before it returns, so an
 * acknowledged write survives a crash or power loss. Throughput comes from batching
 * many writes into one commit (group commit), never from acknowledging before the disk
 * has the write. The ledger store also has a mode that commits its batches with
 * synchronous=NORMAL and fdatasyncs the WAL on the thread pool before answering
 * (ledger/sqlite/wal-sync.ts): as durable, and the event loop works during the sync; the
 * server does not use it by default (see SERVER_LEDGER_STORE_OPTIONS for the measurements).
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
