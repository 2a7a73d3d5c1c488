/**
 * What each L402 token has used (module "l402" migrations), for SQLite and PostgreSQL.
 *
 * One row per token id that has a budget and has been used. A use is one guarded upsert:
 * it adds the call's cost only if the total stays within the limits the caveats set, so
 * the database itself refuses an overdraw, also when several Sluice processes share a
 * PostgreSQL database. Many uses go in one transaction (group commit, see budget.ts).
 *
 * The guard is written `used <= limit - cost` (the caller ensures cost <= limit) so that
 * no sum can pass 2^63.
 */
import type { SqliteDatabase } from '../../db/sqlite.js';
import type { PostgresSql } from '../../db/postgres.js';
import { migratePostgres, migrateSqlite, type ModuleMigrations } from '../../db/migrate.js';

const table = (int8: string) => `
CREATE TABLE l402_token_usage (
  token_id TEXT PRIMARY KEY,
  calls_used ${int8} NOT NULL CHECK (calls_used >= 0),
  msat_used ${int8} NOT NULL CHECK (msat_used >= 0),
  first_used_at ${int8} NOT NULL,
  last_used_at ${int8} NOT NULL
);
`;

export const sqliteL402Migrations: ModuleMigrations = {
  module: 'l402',
  migrations: [{ version: 1, name: 'token usage', sql: table('INTEGER') }],
};

export const postgresL402Migrations: ModuleMigrations = {
  module: 'l402',
  migrations: [{ version: 1, name: 'token usage', sql: table('BIGINT') }],
};

/** One call to count against a token. `calls <= callsLimit` and `msat <= msatLimit` hold. */
export interface BudgetUse {
  tokenId: string;
  calls: bigint;
  msat: bigint;
  callsLimit: bigint;
  msatLimit: bigint;
  at: number;
}

export type BudgetUseResult = { applied: boolean; callsUsed: bigint; msatUsed: bigint };

export interface L402BudgetStore {
  /** Applies the uses in order, in one transaction; each is applied or refused on its own. */
  applyUses(uses: readonly BudgetUse[]): Promise<BudgetUseResult[]>;
  getUsage(tokenId: string): Promise<{ callsUsed: bigint; msatUsed: bigint } | null>;
}

const upsert = (p: (index: number) => string) => `
INSERT INTO l402_token_usage (token_id, calls_used, msat_used, first_used_at, last_used_at)
VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)})
ON CONFLICT (token_id) DO UPDATE SET
  calls_used = l402_token_usage.calls_used + excluded.calls_used,
  msat_used = l402_token_usage.msat_used + excluded.msat_used,
  last_used_at = excluded.last_used_at
WHERE l402_token_usage.calls_used <= ${p(6)} AND l402_token_usage.msat_used <= ${p(7)}
RETURNING calls_used, msat_used`;

const select = (p: (index: number) => string) => `SELECT calls_used, msat_used FROM l402_token_usage WHERE token_id = ${p(1)}`;

type Row = { calls_used: bigint | number; msat_used: bigint | number };

const params = (use: BudgetUse) => [use.tokenId, use.calls, use.msat, use.at, use.at, use.callsLimit - use.calls, use.msatLimit - use.msat];

export function createSqliteL402BudgetStore(db: SqliteDatabase): L402BudgetStore {
  migrateSqlite(db, sqliteL402Migrations);
  const upsertStatement = db.prepare(upsert(() => '?'));
  const selectStatement = db.prepare(select(() => '?'));
  const applyAll = db.transaction((uses: readonly BudgetUse[]) =>
    uses.map((use): BudgetUseResult => {
      const applied = upsertStatement.get(...params(use)) as Row | undefined;
      const row = applied ?? (selectStatement.get(use.tokenId) as Row);
      return { applied: applied !== undefined, callsUsed: BigInt(row.calls_used), msatUsed: BigInt(row.msat_used) };
    }),
  );
  return {
    async applyUses(uses) {
      return applyAll.immediate(uses);
    },
    async getUsage(tokenId) {
      const row = selectStatement.get(tokenId) as Row | undefined;
      return row ? { callsUsed: BigInt(row.calls_used), msatUsed: BigInt(row.msat_used) } : null;
    },
  };
}

export async function createPostgresL402BudgetStore(sql: PostgresSql): Promise<L402BudgetStore> {
  await migratePostgres(sql, postgresL402Migrations);
  const upsertText = upsert((index) => `$${index}`);
  const selectText = select((index) => `$${index}`);
  return {
    async applyUses(uses) {
      // Rows are locked in token order (a stable sort keeps each token's uses in their
      // order) so that two processes' batches cannot deadlock on each other.
      const order = uses.map((_, index) => index).sort((a, b) => {
        const left = (uses[a] as BudgetUse).tokenId;
        const right = (uses[b] as BudgetUse).tokenId;
        return left < right ? -1 : left > right ? 1 : a - b;
      });
      return sql.begin(async (tx) => {
        // Sent together (the driver pipelines them in the transaction); they run in order.
        const applied = await Promise.all(order.map((index) => tx.unsafe(upsertText, params(uses[index] as BudgetUse) as never[])));
        const results: BudgetUseResult[] = new Array(uses.length);
        for (const [position, index] of order.entries()) {
          const [row] = applied[position] as unknown as Row[];
          if (row) {
            results[index] = { applied: true, callsUsed: BigInt(row.calls_used), msatUsed: BigInt(row.msat_used) };
            continue;
          }
          const [current] = (await tx.unsafe(selectText, [(uses[index] as BudgetUse).tokenId])) as unknown as Row[];
          results[index] = { applied: false, callsUsed: BigInt(current?.calls_used ?? 0), msatUsed: BigInt(current?.msat_used ?? 0) };
        }
        return results;
      }) as Promise<BudgetUseResult[]>;
    },
    async getUsage(tokenId) {
      const [row] = (await sql.unsafe(selectText, [tokenId])) as unknown as Row[];
      return row ? { callsUsed: BigInt(row.calls_used), msatUsed: BigInt(row.msat_used) } : null;
    },
  };
}
