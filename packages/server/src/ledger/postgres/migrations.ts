/**
 * The ledger's PostgreSQL schema, module "ledger" in schema_migrations.
 *
 * BIGINT amounts with the same CHECK constraints as SQLite. The limit rule is computed in
 * numeric so that the check itself cannot overflow bigint (a credit balance near 2^63 plus
 * a large limit would); the planner keeps every counter within 2^63 - 1. Ids use the "C"
 * collation: byte order, the order they are generated in, and cheaper comparisons.
 */
import type { ModuleMigrations } from '../../db/migrate.js';

const CREATE_TABLES = `
CREATE TABLE ledger_accounts (
  id TEXT COLLATE "C" PRIMARY KEY,
  owner_id TEXT COLLATE "C" NOT NULL,
  code TEXT NOT NULL,
  limit_msat BIGINT CHECK (limit_msat IS NULL OR limit_msat >= 0),
  debits_pending_msat BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending_msat >= 0),
  debits_posted_msat BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted_msat >= 0),
  credits_pending_msat BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending_msat >= 0),
  credits_posted_msat BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted_msat >= 0),
  created_at BIGINT NOT NULL,
  last_transfer_id TEXT COLLATE "C",
  CONSTRAINT ledger_accounts_limit CHECK (
    limit_msat IS NULL
    OR credits_posted_msat::numeric - debits_posted_msat - debits_pending_msat + limit_msat >= 0)
);
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner_id, id);

CREATE TABLE ledger_transfers (
  id TEXT COLLATE "C" PRIMARY KEY,
  debit_account_id TEXT COLLATE "C" NOT NULL REFERENCES ledger_accounts (id),
  credit_account_id TEXT COLLATE "C" NOT NULL REFERENCES ledger_accounts (id),
  amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
  state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
  code TEXT NOT NULL,
  reference TEXT NOT NULL,
  idempotency_key TEXT,
  created_at BIGINT NOT NULL,
  resolved_at BIGINT,
  debit_previous_id TEXT COLLATE "C",
  credit_previous_id TEXT COLLATE "C",
  CHECK (debit_account_id <> credit_account_id),
  CHECK ((state = 'pending') = (resolved_at IS NULL))
);

CREATE TABLE ledger_idempotency (
  key TEXT COLLATE "C" PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  transfer_id TEXT COLLATE "C" REFERENCES ledger_transfers (id),
  error TEXT,
  created_at BIGINT NOT NULL,
  CHECK ((transfer_id IS NULL) <> (error IS NULL))
);
`;

export const postgresLedgerMigrations: ModuleMigrations = {
  module: 'ledger',
  migrations: [{ version: 1, name: 'accounts, transfers, idempotency', sql: CREATE_TABLES }],
};
