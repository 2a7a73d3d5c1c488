/**
 * Persistence of plans and subscriptions for SQLite and PostgreSQL. A billing commit
 * writes the changed subscription rows, their ledger ops and their webhook events in ONE
 * transaction: after a crash the row, the money and the events agree (never charged
 * twice, never an event for a charge that rolled back).
 */
import type { SqliteDatabase } from '../db/sqlite.js';
import type { PostgresSql, PostgresTransaction } from '../db/postgres.js';
import { migratePostgres, migrateSqlite } from '../db/migrate.js';
import { msat } from '../money/msat.js';
import type { LedgerOp, LedgerResult } from '../ledger/store.js';
import { runPostgresStatements, runSqliteStatements } from '../webhooks/index.js';
import type { PreparedEvent } from '../webhooks/index.js';
import { postgresSubscriptionMigrations, sqliteSubscriptionMigrations } from './migrations.js';
import type { PlanRow, RefundDestination, SubscriptionRow } from './model.js';

export type Statement = PreparedEvent['statements'][number];

export type SqliteLedgerApply = (db: SqliteDatabase, ops: readonly LedgerOp[], now: number) => LedgerResult[];
export type PostgresLedgerApply = (tx: PostgresTransaction, ops: readonly LedgerOp[], now: number) => Promise<LedgerResult[]>;

export interface SubscriptionStore {
  readonly dialect: 'sqlite' | 'postgres';
  insertPlan(plan: PlanRow): Promise<void>;
  getPlan(id: string): Promise<PlanRow | null>;
  listPlans(appId: string, limit: number): Promise<PlanRow[]>;
  countPlans(appId: string): Promise<number>;
  insertSubscription(row: SubscriptionRow, events: Statement[]): Promise<void>;
  getSubscription(id: string): Promise<SubscriptionRow | null>;
  findByTokenHash(tokenHash: string): Promise<SubscriptionRow | null>;
  listSubscriptions(appId: string, limit: number): Promise<SubscriptionRow[]>;
  /** Subscriptions billing still works on: not ended, or ended with a refund not finished. */
  listUnfinished(): Promise<SubscriptionRow[]>;
  /**
   * Saves the rows, applies the ledger ops and writes the events in one transaction. A
   * refused ledger op throws a LedgerOpRefused and rolls it all back (the billing rules make
   * that impossible for charges; a refund's fee loan is refused when the app lacks it).
   */
  commit(rows: readonly SubscriptionRow[], ops: readonly LedgerOp[], events: readonly Statement[], now: number): Promise<LedgerResult[]>;
}

type Row = Record<string, unknown>;
const num = (value: unknown): number => Number(value as bigint | number);
const optionalNum = (value: unknown): number | null => (value === null || value === undefined ? null : num(value));
const big = (value: unknown): bigint => BigInt(value as bigint | number);

const PLAN_COLUMNS = ['id', 'app_id', 'name', 'rate_kind', 'price_msat', 'increment_s', 'prepayment_s', 'grace_s', 'contract_s', 'min_settlement_msat', 'trial_s', 'created_at', 'max_pause_s'];

const planValues = (plan: PlanRow): unknown[] => [
  plan.id, plan.appId, plan.name, plan.rateKind, plan.priceMsat, plan.incrementS, plan.prepaymentS, plan.graceS, plan.contractS,
  plan.minSettlementMsat, plan.trialS, plan.createdAt, plan.maxPauseS,
];

function planFromRow(row: Row): PlanRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    name: row.name as string,
    rateKind: row.rate_kind as PlanRow['rateKind'],
    priceMsat: msat(big(row.price_msat)),
    incrementS: num(row.increment_s),
    prepaymentS: num(row.prepayment_s),
    graceS: num(row.grace_s),
    contractS: optionalNum(row.contract_s),
    minSettlementMsat: msat(big(row.min_settlement_msat)),
    trialS: num(row.trial_s),
    maxPauseS: num(row.max_pause_s),
    createdAt: num(row.created_at),
  };
}

/** Columns a billing commit rewrites (everything but the identity). */
const MUTABLE = [
  'status', 'refund_destination', 'trial_ends_at', 'activated_at', 'contract_ends_at', 'segment', 'anchor_at', 'started', 'owed',
  'past_due_since', 'suspended_at', 'ended_at', 'ended_by', 'charged_msat', 'invoice_hash', 'invoice_request', 'invoice_amount_msat',
  'invoice_expires_at', 'invoice_count', 'refund_status', 'refund_msat', 'refund_attempts', 'refund_payment_hash', 'paused_at',
  'refund_payment_request', 'refund_max_fee_msat',
];
const IDENTITY = ['id', 'app_id', 'plan_id', 'account_id', 'payer_token_hash', 'metadata', 'created_at'];

function mutableValues(row: SubscriptionRow): unknown[] {
  return [
    row.status, row.refundDestination === null ? null : JSON.stringify(row.refundDestination), row.trialEndsAt, row.activatedAt,
    row.contractEndsAt, row.segment, row.anchorAt, row.started, row.owed, row.pastDueSince, row.suspendedAt, row.endedAt, row.endedBy,
    row.chargedMsat, row.invoiceHash, row.invoiceRequest, row.invoiceAmountMsat, row.invoiceExpiresAt, row.invoiceCount,
    row.refundStatus, row.refundMsat, row.refundAttempts, row.refundPaymentHash, row.pausedAt,
    row.refundPaymentRequest ?? null, row.refundMaxFeeMsat ?? null,
  ];
}

const identityValues = (row: SubscriptionRow): unknown[] => [row.id, row.appId, row.planId, row.accountId, row.payerTokenHash, row.metadata, row.createdAt];

function subscriptionFromRow(row: Row): SubscriptionRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    planId: row.plan_id as string,
    accountId: row.account_id as string,
    payerTokenHash: row.payer_token_hash as string,
    status: row.status as SubscriptionRow['status'],
    refundDestination: row.refund_destination === null ? null : (JSON.parse(row.refund_destination as string) as RefundDestination),
    metadata: row.metadata as string,
    createdAt: num(row.created_at),
    trialEndsAt: optionalNum(row.trial_ends_at),
    activatedAt: optionalNum(row.activated_at),
    contractEndsAt: optionalNum(row.contract_ends_at),
    segment: num(row.segment),
    anchorAt: optionalNum(row.anchor_at),
    started: num(row.started),
    owed: num(row.owed),
    pastDueSince: optionalNum(row.past_due_since),
    suspendedAt: optionalNum(row.suspended_at),
    pausedAt: optionalNum(row.paused_at),
    endedAt: optionalNum(row.ended_at),
    endedBy: (row.ended_by as string | null) ?? null,
    chargedMsat: big(row.charged_msat),
    invoiceHash: (row.invoice_hash as string | null) ?? null,
    invoiceRequest: (row.invoice_request as string | null) ?? null,
    invoiceAmountMsat: row.invoice_amount_msat === null ? null : big(row.invoice_amount_msat),
    invoiceExpiresAt: optionalNum(row.invoice_expires_at),
    invoiceCount: num(row.invoice_count),
    refundStatus: row.refund_status as SubscriptionRow['refundStatus'],
    refundMsat: big(row.refund_msat),
    refundAttempts: num(row.refund_attempts),
    refundPaymentHash: (row.refund_payment_hash as string | null) ?? null,
    refundPaymentRequest: (row.refund_payment_request as string | null) ?? null,
    refundMaxFeeMsat: row.refund_max_fee_msat === null || row.refund_max_fee_msat === undefined ? null : big(row.refund_max_fee_msat),
  };
}

/** A commit whose ledger op was refused: nothing of it was written. */
export class LedgerOpRefused extends Error {
  constructor(readonly error: string) {
    super(`the ledger refused a subscription op: ${error}`);
    this.name = 'LedgerOpRefused';
  }
}

function assertApplied(results: readonly LedgerResult[]): void {
  for (const result of results) {
    if (!result.ok) throw new LedgerOpRefused(result.error);
  }
}

const UNFINISHED = `SELECT * FROM subscriptions WHERE status NOT IN ('cancelled', 'expired')
  UNION ALL SELECT * FROM subscriptions WHERE status IN ('cancelled', 'expired') AND refund_status IN ('held', 'pending', 'failed')`;

export function createSqliteSubscriptionStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply): SubscriptionStore {
  migrateSqlite(db, sqliteSubscriptionMigrations);
  const insertPlan = db.prepare(`INSERT INTO subscription_plans (${PLAN_COLUMNS.join(', ')}) VALUES (${PLAN_COLUMNS.map(() => '?').join(', ')})`);
  const allColumns = [...IDENTITY, ...MUTABLE];
  const insertSubscription = db.prepare(`INSERT INTO subscriptions (${allColumns.join(', ')}) VALUES (${allColumns.map(() => '?').join(', ')})`);
  const update = db.prepare(`UPDATE subscriptions SET ${MUTABLE.map((column) => `${column} = ?`).join(', ')} WHERE id = ?`);
  const insertWithEvents = db.transaction((row: SubscriptionRow, events: Statement[]) => {
    insertSubscription.run(...identityValues(row), ...mutableValues(row));
    runSqliteStatements(db, events);
  });
  const commit = db.transaction((rows: readonly SubscriptionRow[], ops: readonly LedgerOp[], events: readonly Statement[], now: number) => {
    for (const row of rows) {
      if (update.run(...mutableValues(row), row.id).changes !== 1) throw new Error(`subscription ${row.id} is not in the store`);
    }
    const results = applyLedgerOps(db, ops, now);
    assertApplied(results);
    runSqliteStatements(db, [...events]);
    return results;
  });
  return {
    dialect: 'sqlite',
    async insertPlan(plan) {
      insertPlan.run(...planValues(plan));
    },
    async getPlan(id) {
      const row = db.prepare('SELECT * FROM subscription_plans WHERE id = ?').get(id) as Row | undefined;
      return row ? planFromRow(row) : null;
    },
    async listPlans(appId, limit) {
      return (db.prepare('SELECT * FROM subscription_plans WHERE app_id = ? ORDER BY created_at, id LIMIT ?').all(appId, limit) as Row[]).map(planFromRow);
    },
    async countPlans(appId) {
      return num((db.prepare('SELECT COUNT(*) AS n FROM subscription_plans WHERE app_id = ?').get(appId) as Row).n);
    },
    async insertSubscription(row, events) {
      insertWithEvents.immediate(row, events);
    },
    async getSubscription(id) {
      const row = db.prepare('SELECT * FROM subscriptions WHERE id = ?').get(id) as Row | undefined;
      return row ? subscriptionFromRow(row) : null;
    },
    async findByTokenHash(tokenHash) {
      const row = db.prepare('SELECT * FROM subscriptions WHERE payer_token_hash = ?').get(tokenHash) as Row | undefined;
      return row ? subscriptionFromRow(row) : null;
    },
    async listSubscriptions(appId, limit) {
      return (db.prepare('SELECT * FROM subscriptions WHERE app_id = ? ORDER BY created_at DESC, id LIMIT ?').all(appId, limit) as Row[]).map(subscriptionFromRow);
    },
    async listUnfinished() {
      return (db.prepare(UNFINISHED).all() as Row[]).map(subscriptionFromRow);
    },
    async commit(rows, ops, events, now) {
      return commit.immediate(rows, ops, events, now);
    },
  };
}

export async function createPostgresSubscriptionStore(sql: PostgresSql, applyLedgerOps: PostgresLedgerApply): Promise<SubscriptionStore> {
  await migratePostgres(sql, postgresSubscriptionMigrations);
  const numbered = (columns: string[], from = 1) => columns.map((_, i) => `$${from + i}`).join(', ');
  const allColumns = [...IDENTITY, ...MUTABLE];
  const insertPlanSql = `INSERT INTO subscription_plans (${PLAN_COLUMNS.join(', ')}) VALUES (${numbered(PLAN_COLUMNS)})`;
  const insertSql = `INSERT INTO subscriptions (${allColumns.join(', ')}) VALUES (${numbered(allColumns)})`;
  const updateSql = `UPDATE subscriptions SET ${MUTABLE.map((column, i) => `${column} = $${i + 1}`).join(', ')} WHERE id = $${MUTABLE.length + 1}`;
  const query = async (text: string, params: unknown[]): Promise<Row[]> => (await sql.unsafe(text, params as never[])) as unknown as Row[];
  return {
    dialect: 'postgres',
    async insertPlan(plan) {
      await sql.unsafe(insertPlanSql, planValues(plan) as never[]);
    },
    async getPlan(id) {
      const [row] = await query('SELECT * FROM subscription_plans WHERE id = $1', [id]);
      return row ? planFromRow(row) : null;
    },
    async listPlans(appId, limit) {
      return (await query('SELECT * FROM subscription_plans WHERE app_id = $1 ORDER BY created_at, id LIMIT $2', [appId, limit])).map(planFromRow);
    },
    async countPlans(appId) {
      const [row] = await query('SELECT COUNT(*) AS n FROM subscription_plans WHERE app_id = $1', [appId]);
      return num(row?.n ?? 0);
    },
    async insertSubscription(row, events) {
      await sql.begin(async (tx) => {
        await tx.unsafe(insertSql, [...identityValues(row), ...mutableValues(row)] as never[]);
        await runPostgresStatements(tx as unknown as PostgresTransaction, events);
      });
    },
    async getSubscription(id) {
      const [row] = await query('SELECT * FROM subscriptions WHERE id = $1', [id]);
      return row ? subscriptionFromRow(row) : null;
    },
    async findByTokenHash(tokenHash) {
      const [row] = await query('SELECT * FROM subscriptions WHERE payer_token_hash = $1', [tokenHash]);
      return row ? subscriptionFromRow(row) : null;
    },
    async listSubscriptions(appId, limit) {
      return (await query('SELECT * FROM subscriptions WHERE app_id = $1 ORDER BY created_at DESC, id LIMIT $2', [appId, limit])).map(subscriptionFromRow);
    },
    async listUnfinished() {
      return (await query(UNFINISHED, [])).map(subscriptionFromRow);
    },
    async commit(rows, ops, events, now) {
      return (await sql.begin(async (tx) => {
        // Pipelined on the transaction's connection: one round trip for the batch, not one per row.
        const updated = await Promise.all(rows.map((row) => tx.unsafe(updateSql, [...mutableValues(row), row.id] as never[])));
        for (const [index, result] of updated.entries()) {
          if ((result.count ?? 0) !== 1) throw new Error(`subscription ${rows[index]?.id} is not in the store`);
        }
        const results = await applyLedgerOps(tx as unknown as PostgresTransaction, ops, now);
        assertApplied(results);
        await runPostgresStatements(tx as unknown as PostgresTransaction, [...events]);
        return results;
      })) as LedgerResult[];
    },
  };
}
