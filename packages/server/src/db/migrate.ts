/**
 * A small migration runner shared by every module that owns tables.
 *
 * Each module (ledger, records, ...) keeps its own ordered list of migrations and its own
 * version counter in `schema_migrations(module, version)`, so modules evolve
 * independently. Migrations are TypeScript string constants so they ship inside `dist`.
 * Each migration runs in its own transaction together with its bookkeeping row.
 */
import type { SqliteDatabase } from './sqlite.js';
import type { PostgresSql } from './postgres.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface ModuleMigrations {
  module: string;
  migrations: readonly Migration[];
}

const SQLITE_BOOKKEEPING = `CREATE TABLE IF NOT EXISTS schema_migrations (
  module TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at INTEGER NOT NULL,
  PRIMARY KEY (module, version))`;

const POSTGRES_BOOKKEEPING = `CREATE TABLE IF NOT EXISTS schema_migrations (
  module TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at BIGINT NOT NULL,
  PRIMARY KEY (module, version))`;

function assertOrdered(set: ModuleMigrations): void {
  set.migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`${set.module} migration ${migration.name} has version ${migration.version}, expected ${index + 1}`);
    }
  });
}

export function migrateSqlite(db: SqliteDatabase, set: ModuleMigrations): void {
  assertOrdered(set);
  db.exec(SQLITE_BOOKKEEPING);
  const current = db
    .prepare('SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations WHERE module = ?')
    .get(set.module) as { version: bigint | number };
  const applied = Number(current.version);
  for (const migration of set.migrations.slice(applied)) {
    db.transaction(() => {
      db.exec(migration.sql);
      db.prepare('INSERT INTO schema_migrations (module, version, name, applied_at) VALUES (?, ?, ?, ?)').run(
        set.module,
        migration.version,
        migration.name,
        Date.now(),
      );
    }).immediate();
  }
}

export async function migratePostgres(sql: PostgresSql, set: ModuleMigrations): Promise<void> {
  assertOrdered(set);
  await sql.unsafe(POSTGRES_BOOKKEEPING);
  // One migrator at a time across processes: an advisory lock keyed by the module name.
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext(${'sluice-migrate:' + set.module}))`;
    const rows = await tx`SELECT COALESCE(MAX(version), 0)::int AS version FROM schema_migrations WHERE module = ${set.module}`;
    const applied = Number(rows[0]?.version ?? 0);
    for (const migration of set.migrations.slice(applied)) {
      await tx.unsafe(migration.sql);
      await tx`INSERT INTO schema_migrations (module, version, name, applied_at)
               VALUES (${set.module}, ${migration.version}, ${migration.name}, ${Date.now()})`;
    }
  });
}
