/** A ledger-ready SQLite file in a fresh temporary directory (WAL, synchronous=FULL, as in production). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite, type SqliteDatabase } from '../../src/db/sqlite.js';

export interface TempSqlite {
  db: SqliteDatabase;
  path: string;
  remove(): void;
}

export function openTempSqlite(): TempSqlite {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ledger-'));
  const path = join(dir, 'ledger.db');
  const db = openSqlite({ path });
  return {
    db,
    path,
    remove() {
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
