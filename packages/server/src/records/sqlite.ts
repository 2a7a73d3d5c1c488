/**
 * RecordStore on SQLite. better-sqlite3 is synchronous, so every composite operation is
 * one synchronous `db.transaction(...)`: nothing else can run on the connection between
 * its statements, which is what makes the checks inside it safe.
 */
import type { SqliteDatabase } from '../db/sqlite.js';
import { migrateSqlite } from '../db/migrate.js';
import type { LedgerOp, LedgerResult } from '../ledger/store.js';
import { sqliteRecordMigrations } from './migrations.js';
import type { RecordStore } from './model.js';
import {
  apiKeyFromRow, appFromRow, invoiceFromRow, invoiceValues, INVOICE_COLUMNS, paymentFromRow, paymentValues,
  PAYMENT_COLUMNS, placeholders,
} from './rows.js';

/** Applies ledger ops inside the caller's open SQLite transaction (from the ledger module). */
export type SqliteLedgerApply = (db: SqliteDatabase, ops: readonly LedgerOp[], now: number) => LedgerResult[];

type Row = Record<string, unknown>;

export function createSqliteRecordStore(db: SqliteDatabase, applyLedgerOps: SqliteLedgerApply): RecordStore {
  migrateSqlite(db, sqliteRecordMigrations);
  const one = (sql: string, ...params: unknown[]): Row | undefined => db.prepare(sql).get(...params) as Row | undefined;
  const all = (sql: string, ...params: unknown[]): Row[] => db.prepare(sql).all(...params) as Row[];
  const run = (sql: string, ...params: unknown[]): number => db.prepare(sql).run(...params).changes;

  const insertInvoiceSql = `INSERT INTO invoices (${INVOICE_COLUMNS.join(', ')}) VALUES (${placeholders(INVOICE_COLUMNS.length, 'sqlite')})`;
  const insertPaymentSql = `INSERT INTO payments (${PAYMENT_COLUMNS.join(', ')}) VALUES (${placeholders(PAYMENT_COLUMNS.length, 'sqlite')})`;

  return {
    dialect: 'sqlite',

    async getMeta(key) {
      const row = one('SELECT value FROM meta WHERE key = ?', key);
      return row ? (row.value as string) : null;
    },
    async setMeta(key, value) {
      run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
    },
    async setMetaIfAbsent(key, value) {
      run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', key, value);
      return (one('SELECT value FROM meta WHERE key = ?', key) as Row).value as string;
    },

    async insertApp(app, firstKey) {
      db.transaction(() => {
        run('INSERT INTO apps (id, name, account_id, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)',
          app.id, app.name, app.accountId, app.createdAt, app.revokedAt);
        run('INSERT INTO api_keys (id, app_id, key_hash, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)',
          firstKey.id, firstKey.appId, firstKey.keyHash, firstKey.prefix, firstKey.createdAt, firstKey.revokedAt);
      }).immediate();
    },
    async getApp(id) {
      const row = one('SELECT * FROM apps WHERE id = ?', id);
      return row ? appFromRow(row) : null;
    },
    async listApps() {
      return all('SELECT * FROM apps ORDER BY created_at, id').map(appFromRow);
    },
    async revokeApp(id, at) {
      return db.transaction(() => {
        const changed = run('UPDATE apps SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', at, id);
        run('UPDATE api_keys SET revoked_at = ? WHERE app_id = ? AND revoked_at IS NULL', at, id);
        return changed > 0;
      }).immediate();
    },
    async insertApiKey(key) {
      run('INSERT INTO api_keys (id, app_id, key_hash, prefix, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)',
        key.id, key.appId, key.keyHash, key.prefix, key.createdAt, key.revokedAt);
    },
    async listApiKeys(appId) {
      return all('SELECT * FROM api_keys WHERE app_id = ? ORDER BY created_at, id', appId).map(apiKeyFromRow);
    },
    async revokeApiKey(appId, keyId, at) {
      return run('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND app_id = ? AND revoked_at IS NULL', at, keyId, appId) > 0;
    },
    async findApiKeyByHash(keyHash) {
      const key = one('SELECT * FROM api_keys WHERE key_hash = ?', keyHash);
      if (!key) return null;
      const app = one('SELECT * FROM apps WHERE id = ?', key.app_id);
      if (!app) throw new Error(`api key ${String(key.id)} points at a missing app`);
      return { key: apiKeyFromRow(key), app: appFromRow(app) };
    },

    async insertInvoice(invoice) {
      return db.transaction(() => {
        if (invoice.idempotencyKey !== null &&
            one('SELECT 1 FROM invoices WHERE app_id = ? AND idempotency_key = ?', invoice.appId, invoice.idempotencyKey)) {
          return 'DuplicateKey' as const;
        }
        run(insertInvoiceSql, ...invoiceValues(invoice));
        return 'ok' as const;
      }).immediate();
    },
    async markInvoiceOpen(paymentHash, paymentRequest) {
      run("UPDATE invoices SET payment_request = ?, status = 'open' WHERE payment_hash = ? AND status = 'creating'", paymentRequest, paymentHash);
    },
    async getInvoice(paymentHash) {
      const row = one('SELECT * FROM invoices WHERE payment_hash = ?', paymentHash);
      return row ? invoiceFromRow(row) : null;
    },
    async findInvoiceByKey(appId, idempotencyKey) {
      const row = one('SELECT * FROM invoices WHERE app_id = ? AND idempotency_key = ?', appId, idempotencyKey);
      return row ? invoiceFromRow(row) : null;
    },
    async listInvoices(appId, limit) {
      return all('SELECT * FROM invoices WHERE app_id = ? ORDER BY created_at DESC, payment_hash LIMIT ?', appId, limit).map(invoiceFromRow);
    },
    async listCreatingInvoices() {
      return all("SELECT * FROM invoices WHERE status = 'creating'").map(invoiceFromRow);
    },
    async listPaidInvoices(paymentHashes) {
      if (paymentHashes.length === 0) return [];
      // A JSON array as one parameter: any number of hashes, one statement text.
      return all("SELECT * FROM invoices WHERE status = 'paid' AND payment_hash IN (SELECT value FROM json_each(?))", JSON.stringify(paymentHashes)).map(invoiceFromRow);
    },
    async settleInvoice(paymentHash, paid, credit) {
      return db.transaction(() => {
        const row = one('SELECT * FROM invoices WHERE payment_hash = ?', paymentHash);
        if (!row) return { ok: false as const, error: 'UnknownInvoice' as const };
        if (row.status === 'paid') return { ok: false as const, error: 'AlreadyPaid' as const };
        const [result] = applyLedgerOps(db, [credit], paid.paidAt);
        if (!result) throw new Error('ledger returned no result for the invoice credit');
        if (!result.ok) return { ok: false as const, error: result.error };
        run("UPDATE invoices SET status = 'paid', amount_paid_msat = ?, paid_at = ? WHERE payment_hash = ?",
          paid.amountPaidMsat, paid.paidAt, paymentHash);
        const invoice = invoiceFromRow(one('SELECT * FROM invoices WHERE payment_hash = ?', paymentHash) as Row);
        return { ok: true as const, invoice, transfer: result.transfer };
      }).immediate();
    },

    async beginPayment(payment, hold) {
      return db.transaction(() => {
        if (one('SELECT 1 FROM payments WHERE app_id = ? AND idempotency_key = ?', payment.appId, payment.idempotencyKey)) {
          return { ok: false as const, error: 'DuplicateKey' as const };
        }
        if (one("SELECT 1 FROM payments WHERE payment_hash = ? AND status <> 'failed'", payment.paymentHash)) {
          return { ok: false as const, error: 'HashInUse' as const };
        }
        const [result] = applyLedgerOps(db, [hold], payment.createdAt);
        if (!result) throw new Error('ledger returned no result for the payment hold');
        if (!result.ok) return { ok: false as const, error: result.error };
        const row = { ...payment, holdTransferId: result.transfer.id };
        run(insertPaymentSql, ...paymentValues(row));
        return { ok: true as const, payment: row };
      }).immediate();
    },
    async finishPayment(paymentId, finish) {
      return db.transaction(() => {
        const row = one("SELECT status FROM payments WHERE id = ?", paymentId);
        if (!row || row.status !== 'in_flight') return false;
        const [result] = applyLedgerOps(db, [finish.ledgerOp], finish.resolvedAt);
        if (!result || !result.ok) throw new Error(`could not ${finish.ledgerOp.kind} the hold of payment ${paymentId}: ${result?.ok === false ? result.error : 'no result'}`);
        run('UPDATE payments SET status = ?, fee_msat = ?, failure_reason = ?, preimage = COALESCE(?, preimage), resolved_at = ? WHERE id = ?',
          finish.status, finish.feeMsat, finish.failureReason, finish.preimage, finish.resolvedAt, paymentId);
        return true;
      }).immediate();
    },
    async getPayment(id) {
      const row = one('SELECT * FROM payments WHERE id = ?', id);
      return row ? paymentFromRow(row) : null;
    },
    async findPaymentByKey(appId, idempotencyKey) {
      const row = one('SELECT * FROM payments WHERE app_id = ? AND idempotency_key = ?', appId, idempotencyKey);
      return row ? paymentFromRow(row) : null;
    },
    async latestPaymentByHash(paymentHash) {
      const row = one('SELECT * FROM payments WHERE payment_hash = ? ORDER BY created_at DESC, id DESC LIMIT 1', paymentHash);
      return row ? paymentFromRow(row) : null;
    },
    async listPayments(appId, limit) {
      return all('SELECT * FROM payments WHERE app_id = ? ORDER BY created_at DESC, id LIMIT ?', appId, limit).map(paymentFromRow);
    },
    async listInFlightPayments() {
      return all("SELECT * FROM payments WHERE status = 'in_flight' ORDER BY created_at").map(paymentFromRow);
    },
    async listPaymentsOf(debitAccountId) {
      return all('SELECT * FROM payments WHERE debit_account_id = ? ORDER BY created_at, id', debitAccountId).map(paymentFromRow);
    },

    async close() {
      // The connection is shared with the ledger; whoever opened it closes it.
    },
  };
}
