/** Tables for plans and subscriptions (module "subscriptions"), both dialects. */
import type { ModuleMigrations } from '../db/migrate.js';

const STATUSES_V1 = "'created', 'trialing', 'active', 'past_due', 'suspended', 'cancelled', 'expired'";
const STATUSES_V2 = "'created', 'trialing', 'active', 'past_due', 'suspended', 'paused', 'cancelled', 'expired'";

/** The columns of `subscriptions` as of version 1 (version 2 rebuilds the SQLite table with another status list). */
const subscriptionColumns = (int8: string, statuses: string) => `
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  plan_id TEXT NOT NULL REFERENCES subscription_plans(id),
  account_id TEXT NOT NULL UNIQUE,
  payer_token_hash TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL CHECK (status IN (${statuses})),
  refund_destination TEXT,
  metadata TEXT NOT NULL,
  created_at ${int8} NOT NULL,
  trial_ends_at ${int8},
  activated_at ${int8},
  contract_ends_at ${int8},
  segment ${int8} NOT NULL,
  anchor_at ${int8},
  started ${int8} NOT NULL CHECK (started >= 0),
  owed ${int8} NOT NULL CHECK (owed >= 0 AND owed <= started),
  past_due_since ${int8},
  suspended_at ${int8},
  ended_at ${int8},
  ended_by TEXT,
  charged_msat ${int8} NOT NULL CHECK (charged_msat >= 0),
  invoice_hash TEXT,
  invoice_request TEXT,
  invoice_amount_msat ${int8},
  invoice_expires_at ${int8},
  invoice_count ${int8} NOT NULL,
  refund_status TEXT NOT NULL CHECK (refund_status IN ('none', 'held', 'pending', 'succeeded', 'failed')),
  refund_msat ${int8} NOT NULL CHECK (refund_msat >= 0),
  refund_attempts ${int8} NOT NULL,
  refund_payment_hash TEXT`;

const SUBSCRIPTION_INDEXES = `
CREATE INDEX subscriptions_app ON subscriptions(app_id, created_at);
CREATE INDEX subscriptions_unfinished ON subscriptions(status) WHERE status NOT IN ('cancelled', 'expired');
CREATE INDEX subscriptions_refunding ON subscriptions(refund_status) WHERE refund_status IN ('held', 'pending', 'failed');
`;

const tables = (int8: string) => `
CREATE TABLE subscription_plans (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  name TEXT NOT NULL,
  rate_kind TEXT NOT NULL CHECK (rate_kind IN ('per_second', 'per_increment')),
  price_msat ${int8} NOT NULL CHECK (price_msat > 0),
  increment_s ${int8} NOT NULL CHECK (increment_s > 0),
  prepayment_s ${int8} NOT NULL CHECK (prepayment_s >= increment_s),
  grace_s ${int8} NOT NULL CHECK (grace_s >= 0),
  contract_s ${int8} CHECK (contract_s IS NULL OR contract_s >= increment_s),
  min_settlement_msat ${int8} NOT NULL CHECK (min_settlement_msat >= 0),
  trial_s ${int8} NOT NULL CHECK (trial_s >= 0),
  created_at ${int8} NOT NULL
);
CREATE INDEX subscription_plans_app ON subscription_plans(app_id, created_at);
CREATE TABLE subscriptions (${subscriptionColumns(int8, STATUSES_V1)}
);
${SUBSCRIPTION_INDEXES}`;

/** Pause (version 2): a plan says how long one pause may last; a subscription may be paused. */
const SQLITE_PAUSE = `
ALTER TABLE subscription_plans ADD COLUMN max_pause_s INTEGER NOT NULL DEFAULT 0 CHECK (max_pause_s >= 0);
CREATE TABLE subscriptions_v2 (${subscriptionColumns('INTEGER', STATUSES_V2)},
  paused_at INTEGER
);
INSERT INTO subscriptions_v2 SELECT *, NULL FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_v2 RENAME TO subscriptions;
${SUBSCRIPTION_INDEXES}`;

const POSTGRES_PAUSE = `
ALTER TABLE subscription_plans ADD COLUMN max_pause_s BIGINT NOT NULL DEFAULT 0 CHECK (max_pause_s >= 0);
ALTER TABLE subscriptions ADD COLUMN paused_at BIGINT;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check CHECK (status IN (${STATUSES_V2}));
`;

/**
 * Refund attempts (version 3): the invoice an attempt pays and the fee budget lent to it are
 * saved with it, so a restart replays exactly that payment (NULL for attempts made before).
 */
const refundAttemptColumns = (int8: string) => `
ALTER TABLE subscriptions ADD COLUMN refund_payment_request TEXT;
ALTER TABLE subscriptions ADD COLUMN refund_max_fee_msat ${int8} CHECK (refund_max_fee_msat IS NULL OR refund_max_fee_msat >= 0);
`;

export const sqliteSubscriptionMigrations: ModuleMigrations = {
  module: 'subscriptions',
  migrations: [
    { version: 1, name: 'plans and subscriptions', sql: tables('INTEGER') },
    { version: 2, name: 'pause', sql: SQLITE_PAUSE },
    { version: 3, name: 'refund attempt payment', sql: refundAttemptColumns('INTEGER') },
  ],
};

export const postgresSubscriptionMigrations: ModuleMigrations = {
  module: 'subscriptions',
  migrations: [
    { version: 1, name: 'plans and subscriptions', sql: tables('BIGINT') },
    { version: 2, name: 'pause', sql: POSTGRES_PAUSE },
    { version: 3, name: 'refund attempt payment', sql: refundAttemptColumns('BIGINT') },
  ],
};
