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

export const sqliteChainMigrations: ModuleMigrations = {
  module: 'paycall_chain',
  migrations: [{ version: 1, name: 'hash-chain tokens', sql: tables('INTEGER') }],
};

export const postgresChainMigrations: ModuleMigrations = {
  module: 'paycall_chain',
  migrations: [{ version: 1, name: 'hash-chain tokens', sql: tables('BIGINT') }],
};
