/**
 * The ledger's SQLite schema, module "ledger" in schema_migrations.
 *
 * STRICT tables so an amount column can only hold a 64-bit integer. CHECK constraints are
 * the second line of defence behind the planner: counters never negative, a transfer
 * never between one account and itself, and an account with a limit never below it
 * (pending debits included). Transfers and idempotency records are WITHOUT ROWID tables
 * keyed by their text id (accounts too), so each row lives in one B-tree instead of two: one
 * seek per update and per foreign-key check. New idempotency
 * records go to ledger_idempotency_recent first (see idempotency.ts for why).
 */
import type { ModuleMigrations } from '../../db/migrate.js';

const CREATE_ACCOUNTS = `
CREATE TABLE ledger_accounts (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  code TEXT NOT NULL,
  limit_msat INTEGER CHECK (limit_msat IS NULL OR limit_msat >= 0),
  debits_pending_msat INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending_msat >= 0),
  debits_posted_msat INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted_msat >= 0),
  credits_pending_msat INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending_msat >= 0),
  credits_posted_msat INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted_msat >= 0),
  created_at INTEGER NOT NULL,
  last_transfer_id TEXT,
  CHECK (limit_msat IS NULL OR credits_posted_msat - debits_posted_msat - debits_pending_msat + limit_msat >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner_id, id);

CREATE TABLE ledger_transfers (
  id TEXT PRIMARY KEY,
  debit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
  credit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
  amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
  state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
  code TEXT NOT NULL,
  reference TEXT NOT NULL,
  idempotency_key TEXT,
  created_at INTEGER NOT NULL,
  resolved_at INTEGER,
  debit_previous_id TEXT,
  credit_previous_id TEXT,
  CHECK (debit_account_id <> credit_account_id),
  CHECK ((state = 'pending') = (resolved_at IS NULL))
) STRICT, WITHOUT ROWID;

-- A successful transfer op keeps no fingerprint: its transfer's accounts, code and reference
-- plus the amount and pending flag it asked for (request_*) rebuild it (idempotency.ts).
-- No foreign key on transfer_id: rows arrive here only by merging the recent tier, whose
-- rows were written in the same transaction as their transfer; a check per merged row
-- would cost a seek each and guard nothing.
CREATE TABLE ledger_idempotency (
  key TEXT PRIMARY KEY,
  fingerprint TEXT,
  transfer_id TEXT,
  error TEXT,
  request_amount_msat INTEGER,
  request_pending INTEGER,
  created_at INTEGER NOT NULL,
  CHECK ((transfer_id IS NULL) <> (error IS NULL)),
  CHECK ((fingerprint IS NULL) = (request_amount_msat IS NOT NULL)),
  CHECK ((request_amount_msat IS NULL) = (request_pending IS NULL)),
  CHECK (fingerprint IS NOT NULL OR transfer_id IS NOT NULL)
) STRICT, WITHOUT ROWID;

-- The recent tier of the idempotency index (see sqlite/idempotency.ts): appended in rowid
-- order, found through memory, merged into ledger_idempotency with its keys sorted.
CREATE TABLE ledger_idempotency_recent (
  key TEXT NOT NULL,
  fingerprint TEXT,
  transfer_id TEXT,
  error TEXT,
  request_amount_msat INTEGER,
  request_pending INTEGER,
  created_at INTEGER NOT NULL,
  CHECK ((transfer_id IS NULL) <> (error IS NULL)),
  CHECK ((fingerprint IS NULL) = (request_amount_msat IS NOT NULL)),
  CHECK ((request_amount_msat IS NULL) = (request_pending IS NULL)),
  CHECK (fingerprint IS NOT NULL OR transfer_id IS NOT NULL)
) STRICT;
`;

// Where an incremental merge of the recent tier stands (see sqlite/idempotency.ts): rows of
// ledger_idempotency_recent with rowid <= through_rowid and key < below_key (every key when
// below_key is NULL) are already in ledger_idempotency and no longer count as recent.
// At most one row; none when no merge is under way.
const CREATE_MERGE_CURSOR = `
CREATE TABLE ledger_idempotency_merge (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  through_rowid INTEGER NOT NULL,
  below_key TEXT
) STRICT;
`;

export const sqliteLedgerMigrations: ModuleMigrations = {
  module: 'ledger',
  migrations: [
    { version: 1, name: 'accounts, transfers, idempotency', sql: CREATE_ACCOUNTS },
    { version: 2, name: 'idempotency merge cursor', sql: CREATE_MERGE_CURSOR },
  ],
};
