/**
 * Persistence of hash-chain tokens, SQLite and PostgreSQL. One row per chain; the hot
 * path never reads it (the service keeps live chains in memory). Writes come in batches
 * from the service's flusher: ONE transaction per batch holds every dirty chain's new
 * index and link AND the ledger transfers that pay the app for those steps, so the index
 * and the money can never disagree, even across a crash.
 *
 * Each write applies only if the row still holds the index the service last made durable
 * (`fromIndex`) and is not refunded. If another process (PostgreSQL shared by two Sluices)
 * advanced or refunded it, the whole batch is rolled back and the conflicting chains are
 * named, so no link is ever accepted twice and a refunded chain never pays again.
 */
import type { PostgresSql, PostgresTransaction } from '../../db/postgres.js';
import type { SqliteDatabase } from '../../db/sqlite.js';
import { migratePostgres, migrateSqlite } from '../../db/migrate.js';
import type { LedgerOp, LedgerResult } from '../../ledger/store.js';
import { msat } from '../../money/msat.js';
import { postgresChainMigrations, sqliteChainMigrations } from './migrations.js';
import type { ChainRow, ChainStoredStatus, ChainWrite } from './model.js';

export type ChainCommitResult =
  | { ok: true; ledger: LedgerResult[] }
  /** Nothing was written: these chains' rows no longer hold the expected index. */
  | { ok: false; conflicts: string[] };

export interface ChainStore {
  readonly dialect: 'sqlite' | 'postgres';
  insertChain(row: ChainRow): Promise<void>;
  getChain(id: string): Promise<ChainRow | null>;
  /** Every chain not refunded (pending, active, exhausted or expired): loaded at start-up. */
  listUnrefundedChains(): Promise<ChainRow[]>;
  /** Moves a chain from one stored status to another; false if it was not in `from`. */
  setStatus(id: string, from: ChainStoredStatus, to: ChainStoredStatus): Promise<boolean>;
  /** Writes the chains and applies the ledger ops in one transaction (one commit). */
  commit(writes: readonly ChainWrite[], ops: readonly LedgerOp[], now: number): Promise<ChainCommitResult>;
}

/** Applies ledger ops inside the caller's open transaction (from the ledger module). */
export type SqliteLedgerApply = (db: SqliteDatabase, ops: readonly LedgerOp[], now: number) => LedgerResult[];
export type PostgresLedgerApply = (tx: PostgresTransaction, ops: readonly LedgerOp[], now: number) => Promise<LedgerResult[]>;

type Row = Record<string, unknown>;

const COLUMNS = ['id', 'app_id', 'anchor', 'steps', 'step_msat', 'current_index', 'current_link', 'status', 'expires_at', 'account_id', 'invoice_hash'];

function chainFromRow(row: Row): ChainRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    anchor: row.anchor as string,
    steps: Number(row.steps as bigint),
    stepMsat: msat(BigInt(row.step_msat as bigint)),
    index: Number(row.current_index as bigint),
    link: row.current_link as string,
    status: row.status as ChainStoredStatus,
    expiresAt: Number(row.expires_at as bigint),
    accountId: row.account_id as string,
    invoiceHash: row.invoice_hash as string,
  };
}

function values(row: ChainRow): unknown[] {
  return [row.id, row.appId, row.anchor, row.steps, row.stepMsat, row.index, row.link, row.status, row.expiresAt, row.accountId, row.invoiceHash];
}

/** A ledger op the planner refused inside a chain commit: the invariant is broken, so the batch must not commit. */
function assertLedgerApplied(results: readonly LedgerResult[]): void {
  for (const result of results) {
    if (!result.ok) throw new Error(`a chain commit's ledger transfer was refused (${result.error}): chain account and index disagree`);
  }
}

class Conflict extends Error {
  constructor(readonly ids: string[]) {
    super('chain rows moved underneath this batch');
  }
}

export function createSqliteChainStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply): ChainStore {
  migrateSqlite(db, sqliteChainMigrations);
  const insert = db.prepare(`INSERT INTO paycall_chains (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`);
  const select = db.prepare('SELECT * FROM paycall_chains WHERE id = ?');
  const update = db.prepare("UPDATE paycall_chains SET current_index = ?, current_link = ? WHERE id = ? AND current_index = ? AND status <> 'refunded'");
  const commitBatch = db.transaction((writes: readonly ChainWrite[], ops: readonly LedgerOp[], now: number): LedgerResult[] => {
    const conflicts: string[] = [];
    for (const write of writes) {
      if (update.run(write.index, write.link, write.id, write.fromIndex).changes !== 1) conflicts.push(write.id);
    }
    if (conflicts.length > 0) throw new Conflict(conflicts);
    const results = applyLedgerOps(db, ops, now);
    assertLedgerApplied(results);
    return results;
  });
  return {
    dialect: 'sqlite',
    async insertChain(row) {
      insert.run(...values(row));
    },
    async getChain(id) {
      const row = select.get(id) as Row | undefined;
      return row ? chainFromRow(row) : null;
    },
    async setStatus(id, from, to) {
      return db.prepare('UPDATE paycall_chains SET status = ? WHERE id = ? AND status = ?').run(to, id, from).changes === 1;
    },
    async listUnrefundedChains() {
      return (db.prepare("SELECT * FROM paycall_chains WHERE status <> 'refunded'").all() as Row[]).map(chainFromRow);
    },
    async commit(writes, ops, now) {
      try {
        // IMMEDIATE: take the write lock first, so nothing else writes between our checks and our commit.
        return { ok: true, ledger: commitBatch.immediate(writes, ops, now) };
      } catch (error) {
        if (error instanceof Conflict) return { ok: false, conflicts: error.ids };
        throw error;
      }
    },
  };
}

/** Serialization failures and deadlocks: the whole batch may simply be tried again. */
const RETRYABLE_CODES = new Set(['40001', '40P01']);
const MAX_ATTEMPTS = 5;

export async function createPostgresChainStore(sql: PostgresSql, applyLedgerOps: PostgresLedgerApply): Promise<ChainStore> {
  await migratePostgres(sql, postgresChainMigrations);
  const insertSql = `INSERT INTO paycall_chains (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`;
  const commitOnce = (unsorted: readonly ChainWrite[], ops: readonly LedgerOp[], now: number): Promise<LedgerResult[]> =>
    sql.begin(async (tx) => {
      // Rows locked in id order: two processes writing the same chains cannot deadlock.
      const writes = [...unsorted].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      await tx.unsafe('SELECT id FROM paycall_chains WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [writes.map((w) => w.id)] as never[]);
      // One statement for the whole batch; RETURNING names the rows that matched.
      const updated = (await tx.unsafe(
        `UPDATE paycall_chains AS c SET current_index = u.idx, current_link = u.link
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[]) AS u(id, idx, link, from_idx)
         WHERE c.id = u.id AND c.current_index = u.from_idx AND c.status <> 'refunded' RETURNING c.id`,
        [writes.map((w) => w.id), writes.map((w) => String(w.index)), writes.map((w) => w.link), writes.map((w) => String(w.fromIndex))] as never[],
      )) as unknown as Row[];
      if (updated.length !== writes.length) {
        const matched = new Set(updated.map((row) => row.id as string));
        throw new Conflict(writes.filter((w) => !matched.has(w.id)).map((w) => w.id));
      }
      const results = await applyLedgerOps(tx as unknown as PostgresTransaction, ops, now);
      assertLedgerApplied(results);
      return results;
    }) as Promise<LedgerResult[]>;
  return {
    dialect: 'postgres',
    async insertChain(row) {
      await sql.unsafe(insertSql, values(row) as never[]);
    },
    async getChain(id) {
      const [row] = (await sql.unsafe('SELECT * FROM paycall_chains WHERE id = $1', [id])) as unknown as Row[];
      return row ? chainFromRow(row) : null;
    },
    async setStatus(id, from, to) {
      const rows = (await sql.unsafe('UPDATE paycall_chains SET status = $1 WHERE id = $2 AND status = $3 RETURNING id', [to, id, from])) as unknown as Row[];
      return rows.length === 1;
    },
    async listUnrefundedChains() {
      return ((await sql.unsafe("SELECT * FROM paycall_chains WHERE status <> 'refunded'")) as unknown as Row[]).map(chainFromRow);
    },
    async commit(writes, ops, now) {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return { ok: true, ledger: await commitOnce(writes, ops, now) };
        } catch (error) {
          if (error instanceof Conflict) return { ok: false, conflicts: error.ids };
          const code = (error as { code?: unknown } | null)?.code;
          if (typeof code !== 'string' || !RETRYABLE_CODES.has(code) || attempt >= MAX_ATTEMPTS) throw error;
        }
      }
    },
  };
}
