/**
 * Tables for apps, keys, invoices, payments and settings, for both dialects.
 * Amounts are 64-bit integers with CHECK constraints; times are unix milliseconds.
 */
import type { ModuleMigrations } from '../db/migrate.js';

const tables = (int8: string) => `
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE apps (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  account_id TEXT NOT NULL,
  created_at ${int8} NOT NULL,
  revoked_at ${int8}
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at ${int8} NOT NULL,
  revoked_at ${int8}
);
CREATE INDEX api_keys_app ON api_keys(app_id);
CREATE TABLE invoices (
  payment_hash TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  credit_account_id TEXT NOT NULL,
  preimage TEXT NOT NULL,
  payment_request TEXT,
  amount_msat ${int8} NOT NULL CHECK (amount_msat > 0),
  description TEXT NOT NULL,
  description_hash TEXT,
  created_at ${int8} NOT NULL,
  expires_at ${int8} NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('creating', 'open', 'paid')),
  amount_paid_msat ${int8} CHECK (amount_paid_msat IS NULL OR amount_paid_msat >= amount_msat),
  paid_at ${int8},
  idempotency_key TEXT,
  request_fingerprint TEXT
);
CREATE UNIQUE INDEX invoices_idempotency ON invoices(app_id, idempotency_key);
CREATE INDEX invoices_app_created ON invoices(app_id, created_at);
CREATE INDEX invoices_creating ON invoices(status) WHERE status = 'creating';
CREATE TABLE payments (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL REFERENCES apps(id),
  debit_account_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('invoice', 'keysend')),
  payment_hash TEXT NOT NULL,
  payment_request TEXT,
  destination TEXT NOT NULL,
  amount_msat ${int8} NOT NULL CHECK (amount_msat > 0),
  max_fee_msat ${int8} NOT NULL CHECK (max_fee_msat >= 0),
  fee_msat ${int8} CHECK (fee_msat IS NULL OR (fee_msat >= 0 AND fee_msat <= max_fee_msat)),
  status TEXT NOT NULL CHECK (status IN ('in_flight', 'succeeded', 'failed')),
  failure_reason TEXT,
  preimage TEXT,
  hold_transfer_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  request_fingerprint TEXT NOT NULL,
  created_at ${int8} NOT NULL,
  resolved_at ${int8}
);
CREATE UNIQUE INDEX payments_idempotency ON payments(app_id, idempotency_key);
-- At most one live (in flight or succeeded) payment per hash: never pay an invoice twice.
CREATE UNIQUE INDEX payments_live_hash ON payments(payment_hash) WHERE status <> 'failed';
CREATE INDEX payments_hash ON payments(payment_hash, created_at);
CREATE INDEX payments_app_created ON payments(app_id, created_at);
CREATE INDEX payments_in_flight ON payments(status) WHERE status = 'in_flight';
`;

/**
 * The webhook catch-up reads paid invoices and resolved payments since a time, in that
 * order (webhooks/store.ts missingCauses); without these it scans both tables. Only rows
 * with the time set are indexed: open invoices and payments in flight never match.
 */
const causeTimeIndexes = `
CREATE INDEX invoices_paid_at ON invoices(paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX payments_resolved_at ON payments(resolved_at) WHERE resolved_at IS NOT NULL;
`;

/**
 * A stream's load reads the payments its account paid (streams/service.ts unrecordedOutcomes),
 * to find payouts whose outcome was saved and never recorded on the stream; without this it
 * scans the table at every load.
 */
const debitAccountIndex = `
CREATE INDEX payments_debit_account ON payments(debit_account_id, created_at, id);
`;

export const sqliteRecordMigrations: ModuleMigrations = {
  module: 'records',
  migrations: [
    { version: 1, name: 'apps, keys, invoices, payments, meta', sql: tables('INTEGER') },
    { version: 2, name: 'indexes on paid_at and resolved_at for the webhook catch-up', sql: causeTimeIndexes },
    { version: 3, name: 'index on debit_account_id for a stream\'s payouts at load', sql: debitAccountIndex },
  ],
};

export const postgresRecordMigrations: ModuleMigrations = {
  module: 'records',
  migrations: [
    { version: 1, name: 'apps, keys, invoices, payments, meta', sql: tables('BIGINT') },
    { version: 2, name: 'indexes on paid_at and resolved_at for the webhook catch-up', sql: causeTimeIndexes },
    { version: 3, name: 'index on debit_account_id for a stream\'s payouts at load', sql: debitAccountIndex },
  ],
};
