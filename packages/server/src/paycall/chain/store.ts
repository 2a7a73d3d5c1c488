/**
 * Persistence of hash-chain tokens, SQLite and PostgreSQL. One row per chain; the hot
 * path never reads it (the service keeps live chains in memory). Writes come in batches
 * from the service's flusher: ONE transaction per batch holds every dirty chain's new
 * index and link, nothing else, so a paid call waits for the smallest possible commit.
 * The money follows in sweeps (`settle`, see settlement.ts): one transaction moves the
 * value of every step spent since the last sweep to the apps and records how far each
 * chain is settled, so the index and the money can never disagree, even across a crash.
 *
 * Each index write applies only if the row still holds the index the service last made
 * durable (`fromIndex`) and is not refunded. If another process (PostgreSQL shared by two
 * Sluices) advanced or refunded it, the whole batch is rolled back and the conflicting
 * chains are named, so no link is ever accepted twice and a refunded chain never pays again.
 */
import { retryTransaction, type PostgresSql, type PostgresTransaction } from '../../db/postgres.js';
import type { SqliteDatabase } from '../../db/sqlite.js';
import { migratePostgres, migrateSqlite } from '../../db/migrate.js';
import { createWalSync, type SyncFile, type WalSync } from '../../ledger/sqlite/wal-sync.js';
import type { LedgerOp, LedgerResult } from '../../ledger/store.js';
import { msat } from '../../money/msat.js';
import { postgresChainMigrations, sqliteChainMigrations } from './migrations.js';
import type { ChainRow, ChainStoredStatus, ChainWrite } from './model.js';
import { settlementOp, type UnsettledChain } from './settlement.js';

export type ChainCommitResult =
  | { ok: true }
  /** Nothing was written: these chains' rows no longer hold the expected index. */
  | { ok: false; conflicts: string[] };

export interface ChainStore {
  readonly dialect: 'sqlite' | 'postgres';
  insertChain(row: ChainRow): Promise<void>;
  getChain(id: string): Promise<ChainRow | null>;
  /** Every chain not refunded (pending, active, exhausted or expired): loaded at start-up. */
  listUnrefundedChains(): Promise<ChainRow[]>;
  /**
   * Moves a chain from one stored status to another; false if it was not in `from` (or, with
   * `atIndex`, if its index is no longer that: a refund counts the unused steps from it).
   */
  setStatus(id: string, from: ChainStoredStatus, to: ChainStoredStatus, atIndex?: number): Promise<boolean>;
  /** Writes the chains' new indexes in one transaction (one commit). */
  commit(writes: readonly ChainWrite[]): Promise<ChainCommitResult>;
  /**
   * Pays the apps for every step of these chains spent since their last settlement, and
   * records how far each is settled, in one transaction. Chains with nothing to settle are
   * skipped. Returns how many chains were settled.
   */
  settle(ids: readonly string[], now: number): Promise<number>;
  /** Chains whose index moved past their settled index (a crash before a sweep): read at start-up. */
  listUnsettledChainIds(): Promise<string[]>;
}

/** Applies ledger ops inside the caller's open transaction (from the ledger module). */
export type SqliteLedgerApply = (db: SqliteDatabase, ops: readonly LedgerOp[], now: number) => LedgerResult[];
export type PostgresLedgerApply = (tx: PostgresTransaction, ops: readonly LedgerOp[], now: number) => Promise<LedgerResult[]>;

type Row = Record<string, unknown>;

const COLUMNS = ['id', 'app_id', 'anchor', 'steps', 'step_msat', 'current_index', 'settled_index', 'current_link', 'status', 'expires_at', 'account_id', 'invoice_hash'];

function chainFromRow(row: Row): ChainRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    anchor: row.anchor as string,
    steps: Number(row.steps as bigint),
    stepMsat: msat(BigInt(row.step_msat as bigint)),
    index: Number(row.current_index as bigint),
    settledIndex: Number(row.settled_index as bigint),
    link: row.current_link as string,
    status: row.status as ChainStoredStatus,
    expiresAt: Number(row.expires_at as bigint),
    accountId: row.account_id as string,
    invoiceHash: row.invoice_hash as string,
  };
}

function values(row: ChainRow): unknown[] {
  return [row.id, row.appId, row.anchor, row.steps, row.stepMsat, row.index, row.settledIndex, row.link, row.status, row.expiresAt, row.accountId, row.invoiceHash];
}

/** A ledger op the planner refused inside a chain commit: the invariant is broken, so the batch must not commit. */
function assertLedgerApplied(results: readonly LedgerResult[]): void {
  for (const result of results) {
    if (!result.ok) throw new Error(`a chain settlement's ledger transfer was refused (${result.error}): chain account and settled index disagree`);
  }
}

function unsettledFromRow(row: Row): UnsettledChain {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    accountId: row.account_id as string,
    stepMsat: msat(BigInt(row.step_msat as bigint)),
    settledIndex: Number(row.settled_index as bigint),
    index: Number(row.current_index as bigint),
  };
}

const UNSETTLED_COLUMNS = 'id, app_id, account_id, step_msat, current_index, settled_index';

class Conflict extends Error {
  constructor(readonly ids: string[]) {
    super('chain rows moved underneath this batch');
  }
}

export interface SqliteChainStoreOptions {
  /**
   * true (default): an index commit does not fsync inside SQLite (synchronous=NORMAL for that
   * transaction only) and is answered once the WAL is fdatasynced on the thread pool
   * (ledger/sqlite/wal-sync.ts), so the event loop keeps serving while the disk syncs. false:
   * SQLite's own fsync inside the commit, on the event loop.
   */
  syncOffLoop?: boolean;
  /** How the WAL is synced after an index commit (default: fdatasync on the thread pool). Tests replace it. */
  syncFile?: SyncFile;
}

export function createSqliteChainStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply, options: SqliteChainStoreOptions = {}): ChainStore {
  migrateSqlite(db, sqliteChainMigrations);
  // Built on first use, after the caller configured the connection (journal mode).
  let walSync: WalSync | null | undefined;
  const walSyncOf = (): WalSync | null => (walSync === undefined ? (walSync = options.syncOffLoop === false ? null : createWalSync(db, options.syncFile)) : walSync);
  const insert = db.prepare(`INSERT INTO paycall_chains (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`);
  const select = db.prepare('SELECT * FROM paycall_chains WHERE id = ?');
  const update = db.prepare("UPDATE paycall_chains SET current_index = ?, current_link = ? WHERE id = ? AND current_index = ? AND status <> 'refunded'");
  const commitBatch = db.transaction((writes: readonly ChainWrite[]): void => {
    const conflicts: string[] = [];
    for (const write of writes) {
      if (update.run(write.index, write.link, write.id, write.fromIndex).changes !== 1) conflicts.push(write.id);
    }
    if (conflicts.length > 0) throw new Conflict(conflicts);
  });
  const selectUnsettled = db.prepare(`SELECT ${UNSETTLED_COLUMNS} FROM paycall_chains WHERE id = ? AND current_index > settled_index`);
  const markSettled = db.prepare('UPDATE paycall_chains SET settled_index = ? WHERE id = ? AND settled_index = ?');
  const settleBatch = db.transaction((ids: readonly string[], now: number): number => {
    const ops: LedgerOp[] = [];
    for (const id of ids) {
      const row = selectUnsettled.get(id) as Row | undefined;
      if (!row) continue;
      const chain = unsettledFromRow(row);
      ops.push(settlementOp(chain));
      markSettled.run(chain.index, chain.id, chain.settledIndex);
    }
    assertLedgerApplied(applyLedgerOps(db, ops, now));
    return ops.length;
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
    async setStatus(id, from, to, atIndex) {
      if (atIndex === undefined) return db.prepare('UPDATE paycall_chains SET status = ? WHERE id = ? AND status = ?').run(to, id, from).changes === 1;
      return db.prepare('UPDATE paycall_chains SET status = ? WHERE id = ? AND status = ? AND current_index = ?').run(to, id, from, atIndex).changes === 1;
    },
    async listUnrefundedChains() {
      return (db.prepare("SELECT * FROM paycall_chains WHERE status <> 'refunded'").all() as Row[]).map(chainFromRow);
    },
    async commit(writes) {
      const wal = walSyncOf();
      if (wal?.failure) throw wal.failure;
      try {
        // IMMEDIATE: take the write lock first, so nothing else writes between our checks and our commit.
        if (wal) wal.commitUnsynced(() => commitBatch.immediate(writes));
        else commitBatch.immediate(writes);
      } catch (error) {
        if (error instanceof Conflict) return { ok: false, conflicts: error.ids };
        throw error;
      }
      // Committed, not yet durable: no call is answered before the sync (a failed one throws,
      // and the flusher fails the batch closed).
      if (wal) await wal.afterCommit();
      return { ok: true };
    },
    async settle(ids, now) {
      return ids.length === 0 ? 0 : settleBatch.immediate(ids, now);
    },
    async listUnsettledChainIds() {
      return (db.prepare('SELECT id FROM paycall_chains WHERE current_index > settled_index').all() as Row[]).map((row) => row.id as string);
    },
  };
}


export async function createPostgresChainStore(sql: PostgresSql, applyLedgerOps: PostgresLedgerApply): Promise<ChainStore> {
  await migratePostgres(sql, postgresChainMigrations);
  const insertSql = `INSERT INTO paycall_chains (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`;
  const commitOnce = (unsorted: readonly ChainWrite[]): Promise<void> =>
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
        const conflicts = writes.filter((w) => !matched.has(w.id)).map((w) => w.id);
        // Every chain matched, yet fewer rows than writes: the batch named a chain twice (two
        // copies in memory). Not a conflict to retry: fail closed, every chain is re-read.
        if (conflicts.length === 0) throw new Error('a chain commit named one chain twice; its chains are re-read before the next call');
        throw new Conflict(conflicts);
      }
    }) as Promise<void>;
  const settleOnce = (ids: readonly string[], now: number): Promise<number> =>
    sql.begin(async (tx) => {
      // Locked in id order (as commits lock them): a commit and a sweep cannot deadlock.
      const rows = (await tx.unsafe(
        `SELECT ${UNSETTLED_COLUMNS} FROM paycall_chains WHERE id = ANY($1::text[]) AND current_index > settled_index ORDER BY id FOR UPDATE`,
        [[...ids]] as never[],
      )) as unknown as Row[];
      if (rows.length === 0) return 0;
      const chains = rows.map(unsettledFromRow);
      await tx.unsafe(
        `UPDATE paycall_chains AS c SET settled_index = u.idx
         FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, idx, from_idx)
         WHERE c.id = u.id AND c.settled_index = u.from_idx`,
        [chains.map((c) => c.id), chains.map((c) => String(c.index)), chains.map((c) => String(c.settledIndex))] as never[],
      );
      assertLedgerApplied(await applyLedgerOps(tx as unknown as PostgresTransaction, chains.map(settlementOp), now));
      return chains.length;
    }) as Promise<number>;
  /** Serialization failures and deadlocks: the whole transaction is tried again (a conflict is an answer, not a failure). */
  const retried = <T>(work: () => Promise<T>): Promise<T> => retryTransaction(work, { final: (error) => error instanceof Conflict });
  return {
    dialect: 'postgres',
    async insertChain(row) {
      await sql.unsafe(insertSql, values(row) as never[]);
    },
    async getChain(id) {
      const [row] = (await sql.unsafe('SELECT * FROM paycall_chains WHERE id = $1', [id])) as unknown as Row[];
      return row ? chainFromRow(row) : null;
    },
    async setStatus(id, from, to, atIndex) {
      const rows = (atIndex === undefined
        ? await sql.unsafe('UPDATE paycall_chains SET status = $1 WHERE id = $2 AND status = $3 RETURNING id', [to, id, from])
        : await sql.unsafe('UPDATE paycall_chains SET status = $1 WHERE id = $2 AND status = $3 AND current_index = $4 RETURNING id', [to, id, from, atIndex])) as unknown as Row[];
      return rows.length === 1;
    },
    async listUnrefundedChains() {
      return ((await sql.unsafe("SELECT * FROM paycall_chains WHERE status <> 'refunded'")) as unknown as Row[]).map(chainFromRow);
    },
    async commit(writes) {
      try {
        await retried(() => commitOnce(writes));
        return { ok: true };
      } catch (error) {
        if (error instanceof Conflict) return { ok: false, conflicts: error.ids };
        throw error;
      }
    },
    async settle(ids, now) {
      return ids.length === 0 ? 0 : retried(() => settleOnce(ids, now));
    },
    async listUnsettledChainIds() {
      return ((await sql.unsafe('SELECT id FROM paycall_chains WHERE current_index > settled_index')) as unknown as Row[]).map((row) => row.id as string);
    },
  };
}
