/**
 * RecordStore on PostgreSQL. Composite operations run in one transaction; races between
 * Sluice processes are settled by the unique indexes (a violation rolls the whole
 * transaction back, hold included) rather than by checks alone.
 */
import type { PostgresSql, PostgresTransaction } from '../db/postgres.js';
import { migratePostgres } from '../db/migrate.js';
import type { LedgerOp, LedgerResult } from '../ledger/store.js';
import { postgresRecordMigrations } from './migrations.js';
import type { BeginPaymentResult, RecordStore } from './model.js';
import {
  apiKeyFromRow, appFromRow, invoiceFromRow, invoiceValues, INVOICE_COLUMNS, paymentFromRow, paymentValues,
  PAYMENT_COLUMNS, placeholders,
} from './rows.js';

/** Applies ledger ops inside the caller's open PostgreSQL transaction (from the ledger module). */
export type PostgresLedgerApply = (tx: PostgresTransaction, ops: readonly LedgerOp[], now: number) => Promise<LedgerResult[]>;

type Row = Record<string, unknown>;
type Runner = PostgresSql | PostgresTransaction;

/** Thrown inside a transaction to roll it back and return a value from outside it. */
class Rollback<T> extends Error {
  constructor(readonly value: T) {
    super('rollback');
  }
}

function uniqueViolation(error: unknown): string | null {
  const candidate = error as { code?: string; constraint_name?: string };
  return candidate?.code === '23505' ? (candidate.constraint_name ?? '') : null;
}

export async function createPostgresRecordStore(sql: PostgresSql, applyLedgerOps: PostgresLedgerApply): Promise<RecordStore> {
  await migratePostgres(sql, postgresRecordMigrations);
  const q = (runner: Runner, text: string, params: unknown[] = []): Promise<Row[]> =>
    runner.unsafe(text, params as never[]) as unknown as Promise<Row[]>;
  const one = async (runner: Runner, text: string, params: unknown[] = []): Promise<Row | undefined> => (await q(runner, text, params))[0];
  const insertInvoiceSql = `INSERT INTO invoices (${INVOICE_COLUMNS.join(', ')}) VALUES (${placeholders(INVOICE_COLUMNS.length, 'postgres')})`;
  const insertPaymentSql = `INSERT INTO payments (${PAYMENT_COLUMNS.join(', ')}) VALUES (${placeholders(PAYMENT_COLUMNS.length, 'postgres')})`;
  const transaction = <T>(fn: (tx: PostgresTransaction) => Promise<T>): Promise<T> =>
    sql.begin((tx) => fn(tx as PostgresTransaction)) as Promise<T>;
  const rollbackWith = async <T>(fn: (tx: PostgresTransaction) => Promise<T>): Promise<T> => {
    try {
      return await transaction(fn);
    } catch (error) {
      if (error instanceof Rollback) return error.value as T;
      throw error;
    }
  };

  return {
    dialect: 'postgres',

    async getMeta(key) {
      const row = await one(sql, 'SELECT value FROM meta WHERE key = $1', [key]);
      return row ? (row.value as string) : null;
    },
    async setMeta(key, value) {
      await q(sql, 'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
    },
    async setMetaIfAbsent(key, value) {
      await q(sql, 'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, value]);
      return (await one(sql, 'SELECT value FROM meta WHERE key = $1', [key]) as Row).value as string;
    },

    async insertApp(app, firstKey) {
      await transaction(async (tx) => {
        await q(tx, 'INSERT INTO apps (id, name, account_id, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5)',
          [app.id, app.name, app.accountId, app.createdAt, app.revokedAt]);
        await q(tx, 'INSERT INTO api_keys (id, app_id, key_hash, prefix, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
          [firstKey.id, firstKey.appId, firstKey.keyHash, firstKey.prefix, firstKey.createdAt, firstKey.revokedAt]);
      });
    },
    async getApp(id) {
      const row = await one(sql, 'SELECT * FROM apps WHERE id = $1', [id]);
      return row ? appFromRow(row) : null;
    },
    async listApps() {
      return (await q(sql, 'SELECT * FROM apps ORDER BY created_at, id')).map(appFromRow);
    },
    async revokeApp(id, at) {
      return transaction(async (tx) => {
        const changed = await q(tx, 'UPDATE apps SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id', [at, id]);
        await q(tx, 'UPDATE api_keys SET revoked_at = $1 WHERE app_id = $2 AND revoked_at IS NULL', [at, id]);
        return changed.length > 0;
      });
    },
    async insertApiKey(key) {
      await q(sql, 'INSERT INTO api_keys (id, app_id, key_hash, prefix, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [key.id, key.appId, key.keyHash, key.prefix, key.createdAt, key.revokedAt]);
    },
    async listApiKeys(appId) {
      return (await q(sql, 'SELECT * FROM api_keys WHERE app_id = $1 ORDER BY created_at, id', [appId])).map(apiKeyFromRow);
    },
    async revokeApiKey(appId, keyId, at) {
      const rows = await q(sql, 'UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND app_id = $3 AND revoked_at IS NULL RETURNING id', [at, keyId, appId]);
      return rows.length > 0;
    },
    async findApiKeyByHash(keyHash) {
      const row = await one(sql,
        `SELECT k.*, a.id AS a_id, a.name AS a_name, a.account_id AS a_account_id, a.created_at AS a_created_at, a.revoked_at AS a_revoked_at
         FROM api_keys k JOIN apps a ON a.id = k.app_id WHERE k.key_hash = $1`, [keyHash]);
      if (!row) return null;
      const app = appFromRow({ id: row.a_id, name: row.a_name, account_id: row.a_account_id, created_at: row.a_created_at, revoked_at: row.a_revoked_at });
      return { key: apiKeyFromRow(row), app };
    },

    async insertInvoice(invoice) {
      try {
        await q(sql, insertInvoiceSql, invoiceValues(invoice));
        return 'ok';
      } catch (error) {
        if (uniqueViolation(error) === 'invoices_idempotency') return 'DuplicateKey';
        throw error;
      }
    },
    async markInvoiceOpen(paymentHash, paymentRequest) {
      await q(sql, "UPDATE invoices SET payment_request = $1, status = 'open' WHERE payment_hash = $2 AND status = 'creating'", [paymentRequest, paymentHash]);
    },
    async getInvoice(paymentHash) {
      const row = await one(sql, 'SELECT * FROM invoices WHERE payment_hash = $1', [paymentHash]);
      return row ? invoiceFromRow(row) : null;
    },
    async findInvoiceByKey(appId, idempotencyKey) {
      const row = await one(sql, 'SELECT * FROM invoices WHERE app_id = $1 AND idempotency_key = $2', [appId, idempotencyKey]);
      return row ? invoiceFromRow(row) : null;
    },
    async listInvoices(appId, limit) {
      return (await q(sql, 'SELECT * FROM invoices WHERE app_id = $1 ORDER BY created_at DESC, payment_hash LIMIT $2', [appId, limit])).map(invoiceFromRow);
    },
    async listCreatingInvoices() {
      return (await q(sql, "SELECT * FROM invoices WHERE status = 'creating'")).map(invoiceFromRow);
    },
    async listPaidInvoices(paymentHashes) {
      if (paymentHashes.length === 0) return [];
      const text = "SELECT * FROM invoices WHERE status = 'paid' AND payment_hash IN (SELECT jsonb_array_elements_text(CAST($1::text AS jsonb)))";
      return (await q(sql, text, [JSON.stringify(paymentHashes)])).map(invoiceFromRow);
    },
    async settleInvoice(paymentHash, paid, credit) {
      return rollbackWith(async (tx) => {
        const row = await one(tx, 'SELECT * FROM invoices WHERE payment_hash = $1 FOR UPDATE', [paymentHash]);
        if (!row) return { ok: false as const, error: 'UnknownInvoice' as const };
        if (row.status === 'paid') return { ok: false as const, error: 'AlreadyPaid' as const };
        const [result] = await applyLedgerOps(tx, [credit], paid.paidAt);
        if (!result) throw new Error('ledger returned no result for the invoice credit');
        if (!result.ok) throw new Rollback({ ok: false as const, error: result.error });
        const updated = await one(tx, "UPDATE invoices SET status = 'paid', amount_paid_msat = $1, paid_at = $2 WHERE payment_hash = $3 RETURNING *",
          [paid.amountPaidMsat, paid.paidAt, paymentHash]);
        return { ok: true as const, invoice: invoiceFromRow(updated as Row), transfer: result.transfer };
      });
    },

    async beginPayment(payment, hold) {
      try {
        return await rollbackWith<BeginPaymentResult>(async (tx) => {
          if (await one(tx, 'SELECT 1 FROM payments WHERE app_id = $1 AND idempotency_key = $2', [payment.appId, payment.idempotencyKey])) {
            return { ok: false, error: 'DuplicateKey' };
          }
          if (await one(tx, "SELECT 1 FROM payments WHERE payment_hash = $1 AND status <> 'failed'", [payment.paymentHash])) {
            return { ok: false, error: 'HashInUse' };
          }
          const [result] = await applyLedgerOps(tx, [hold], payment.createdAt);
          if (!result) throw new Error('ledger returned no result for the payment hold');
          if (!result.ok) throw new Rollback<BeginPaymentResult>({ ok: false, error: result.error });
          const row = { ...payment, holdTransferId: result.transfer.id };
          await q(tx, insertPaymentSql, paymentValues(row));
          return { ok: true, payment: row };
        });
      } catch (error) {
        const constraint = uniqueViolation(error);
        if (constraint === 'payments_idempotency') return { ok: false, error: 'DuplicateKey' };
        if (constraint === 'payments_live_hash') return { ok: false, error: 'HashInUse' };
        throw error;
      }
    },
    async finishPayment(paymentId, finish) {
      return transaction(async (tx) => {
        const row = await one(tx, 'SELECT status FROM payments WHERE id = $1 FOR UPDATE', [paymentId]);
        if (!row || row.status !== 'in_flight') return false;
        const [result] = await applyLedgerOps(tx, [finish.ledgerOp], finish.resolvedAt);
        if (!result || !result.ok) throw new Error(`could not ${finish.ledgerOp.kind} the hold of payment ${paymentId}: ${result?.ok === false ? result.error : 'no result'}`);
        await q(tx, 'UPDATE payments SET status = $1, fee_msat = $2, failure_reason = $3, preimage = COALESCE($4, preimage), resolved_at = $5 WHERE id = $6',
          [finish.status, finish.feeMsat, finish.failureReason, finish.preimage, finish.resolvedAt, paymentId]);
        return true;
      });
    },
    async getPayment(id) {
      const row = await one(sql, 'SELECT * FROM payments WHERE id = $1', [id]);
      return row ? paymentFromRow(row) : null;
    },
    async findPaymentByKey(appId, idempotencyKey) {
      const row = await one(sql, 'SELECT * FROM payments WHERE app_id = $1 AND idempotency_key = $2', [appId, idempotencyKey]);
      return row ? paymentFromRow(row) : null;
    },
    async latestPaymentByHash(paymentHash) {
      const row = await one(sql, 'SELECT * FROM payments WHERE payment_hash = $1 ORDER BY created_at DESC, id DESC LIMIT 1', [paymentHash]);
      return row ? paymentFromRow(row) : null;
    },
    async listPayments(appId, limit) {
      return (await q(sql, 'SELECT * FROM payments WHERE app_id = $1 ORDER BY created_at DESC, id LIMIT $2', [appId, limit])).map(paymentFromRow);
    },
    async listInFlightPayments() {
      return (await q(sql, "SELECT * FROM payments WHERE status = 'in_flight' ORDER BY created_at")).map(paymentFromRow);
    },
    async listPaymentsOf(debitAccountId) {
      return (await q(sql, 'SELECT * FROM payments WHERE debit_account_id = $1 ORDER BY created_at, id', [debitAccountId])).map(paymentFromRow);
    },

    async close() {
      // The pool is shared with the ledger; whoever opened it ends it.
    },
  };
}
