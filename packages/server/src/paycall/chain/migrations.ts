/** The table of hash-chain tokens (module "paycall_chain"), both dialects. */
import type { ModuleMigrations } from '../../db/migrate.js';

const tables = (int8: string) => `
CREATE TABLE paycall_chains (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  anchor TEXT NOT NULL CHECK (length(anchor) = 64),
  steps ${int8} NOT NULL CHECK (steps >= 1 AND steps <= 10000000),
  step_msat ${int8} NOT NULL CHECK (step_msat >= 1),
  current_index ${int8} NOT NULL CHECK (current_index >= 0 AND current_index <= steps),
  current_link TEXT NOT NULL CHECK (length(current_link) = 64),
  status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'refunded')),
  expires_at ${int8} NOT NULL,
  account_id TEXT NOT NULL UNIQUE,
  invoice_hash TEXT NOT NULL UNIQUE
);
CREATE INDEX paycall_chains_live ON paycall_chains(status) WHERE status <> 'refunded';
`;

/**
 * Spent steps are paid to the app in sweeps, not in every commit of the index: the row
 * remembers up to which index the app was paid. Every chain written before this version
 * was paid in the commit that moved its index, so it starts settled up to that index.
 */
const settledIndex = (int8: string) => `
ALTER TABLE paycall_chains ADD COLUMN settled_index ${int8} NOT NULL DEFAULT 0 CHECK (settled_index >= 0);
UPDATE paycall_chains SET settled_index = current_index;
`;

export const sqliteChainMigrations: ModuleMigrations = {
  module: 'paycall_chain',
  migrations: [
    { version: 1, name: 'hash-chain tokens', sql: tables('INTEGER') },
    { version: 2, name: 'spent steps settled in sweeps', sql: settledIndex('INTEGER') },
  ],
};

export const postgresChainMigrations: ModuleMigrations = {
  module: 'paycall_chain',
  migrations: [
    { version: 1, name: 'hash-chain tokens', sql: tables('BIGINT') },
    { version: 2, name: 'spent steps settled in sweeps', sql: settledIndex('BIGINT') },
  ],
};
