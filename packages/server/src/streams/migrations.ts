/** Tables for streams and their non-money events (module "streams"), both dialects. */
import type { ModuleMigrations } from '../db/migrate.js';

const tables = (int8: string) => `
CREATE TABLE streams (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  account_id TEXT NOT NULL UNIQUE,
  payer_token_hash TEXT NOT NULL UNIQUE,
  prices TEXT NOT NULL,
  rate_msat_per_s ${int8} NOT NULL CHECK (rate_msat_per_s >= 0),
  maximum_msat ${int8} NOT NULL CHECK (maximum_msat >= 0),
  settle_threshold_msat ${int8} NOT NULL CHECK (settle_threshold_msat >= 0),
  settle_to_msat ${int8} NOT NULL CHECK (settle_to_msat >= settle_threshold_msat),
  max_charge_msat ${int8} NOT NULL CHECK (max_charge_msat > 0),
  payout_threshold_msat ${int8} NOT NULL CHECK (payout_threshold_msat >= 0),
  expires_at ${int8},
  payout_destination TEXT,
  status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  meter TEXT NOT NULL CHECK (meter IN ('stopped', 'running', 'paused')),
  meter_segment ${int8} NOT NULL,
  meter_segment_started_at ${int8},
  meter_seconds_charged ${int8} NOT NULL,
  metadata TEXT NOT NULL,
  created_at ${int8} NOT NULL,
  closed_at ${int8}
);
CREATE INDEX streams_app ON streams(app_id, created_at);
CREATE INDEX streams_open ON streams(status) WHERE status = 'open';
CREATE TABLE stream_events (
  stream_id TEXT NOT NULL REFERENCES streams(id),
  seq ${int8} NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  at ${int8} NOT NULL,
  PRIMARY KEY (stream_id, seq)
);
`;

/** The webhook catch-up reads closed streams since a time, in that order (webhooks/store.ts missingCauses); open streams are not indexed. */
const closedAtIndex = `
CREATE INDEX streams_closed_at ON streams(closed_at) WHERE closed_at IS NOT NULL;
`;

/**
 * A closed stream found with nothing left to pay back and nothing held is marked settled, so
 * the start's sweep (closed streams still holding the payer's money) passes it by after.
 */
const settledAt = (int8: string) => `
ALTER TABLE streams ADD COLUMN settled_at ${int8};
CREATE INDEX streams_closed_unsettled ON streams(id) WHERE status = 'closed' AND settled_at IS NULL;
`;

/**
 * Money steps as compact rows (money-store.ts): one row per charge, reward or meter step,
 * unique per stream by seq and by ref; rewards move in the ledger with their rows (the app's
 * balance must cover each), charges in sweeps, one transfer per stream. `money_rows` marks
 * the streams whose steps are kept so; a stream opened before this migration keeps one ledger
 * transfer per step (its refs are in the ledger's idempotency index) for the rest of its life.
 * `refused`: the step was refused (its ref answers the same refusal again); null: it moved.
 * `charges_settled_seq`: the app has been paid for the stream's charges up to this seq (the
 * charges follow their rows in sweeps).
 */
export const streamMoneyTable = (int8: string, withoutRowid: string, ifNotExists = '') => `
CREATE TABLE ${ifNotExists}stream_money (
  stream_id TEXT NOT NULL,
  seq ${int8} NOT NULL,
  ref TEXT NOT NULL,
  name TEXT NOT NULL,
  amount_msat ${int8} NOT NULL CHECK (amount_msat > 0),
  at ${int8} NOT NULL,
  refused TEXT,
  PRIMARY KEY (stream_id, seq)
)${withoutRowid};
CREATE UNIQUE INDEX ${ifNotExists}stream_money_ref ON stream_money(stream_id, ref);
`;
const moneyRows = (int8: string, withoutRowid: string) => `${streamMoneyTable(int8, withoutRowid)}ALTER TABLE streams ADD COLUMN money_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN charges_settled_seq ${int8} NOT NULL DEFAULT 0;
`;

/**
 * SQLite only: new rows go to stream_money_recent first, a rowid table without an index, so a
 * commit appends a few pages for a whole batch instead of writing a leaf page per stream in
 * each of stream_money's two B-trees; they are merged into stream_money stream by stream (see
 * money-store.ts). The cursor says how far the generation under way is merged: every stream
 * below `below_stream`, and that stream's rows below `below_seq`.
 */
const sqliteRecentTier = `
CREATE TABLE stream_money_recent (
  stream_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ref TEXT NOT NULL,
  name TEXT NOT NULL,
  amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
  at INTEGER NOT NULL,
  refused TEXT
);
CREATE TABLE stream_money_merge (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  through_rowid INTEGER NOT NULL,
  below_stream TEXT,
  below_seq INTEGER NOT NULL DEFAULT 0
);
`;

/**
 * SQLite only: the recent tier as one row per commit instead of one per step (ADR 0019). A
 * commit's steps take consecutive rowids first_rowid..last_rowid and are written as one JSON
 * array of [stream_id, seq, ref, name, amount_msat (a string), at, refused], in rowid order:
 * one statement with one value per commit, where a row per step cost 8 bound values each and
 * a B-tree insert, and an archived generation leaves with a few deletes instead of one per
 * step. Rows already in stream_money_recent stay there until archived (read as before).
 */
const sqliteRecentLog = `
CREATE TABLE stream_money_log (
  first_rowid INTEGER PRIMARY KEY,
  last_rowid INTEGER NOT NULL CHECK (last_rowid >= first_rowid),
  rows TEXT NOT NULL
) STRICT;
`;

export const sqliteStreamMigrations: ModuleMigrations = {
  module: 'streams',
  migrations: [
    { version: 1, name: 'streams and stream events', sql: tables('INTEGER') },
    { version: 2, name: 'index on closed_at for the webhook catch-up', sql: closedAtIndex },
    { version: 3, name: 'settled_at: closed streams the start-up sweep has found settled', sql: settledAt('INTEGER') },
    { version: 4, name: 'stream_money: money steps as compact rows', sql: moneyRows('INTEGER', ' WITHOUT ROWID') + sqliteRecentTier },
    { version: 5, name: 'stream_money_log: the recent tier as one row per commit', sql: sqliteRecentLog },
  ],
};

export const postgresStreamMigrations: ModuleMigrations = {
  module: 'streams',
  migrations: [
    { version: 1, name: 'streams and stream events', sql: tables('BIGINT') },
    { version: 2, name: 'index on closed_at for the webhook catch-up', sql: closedAtIndex },
    { version: 3, name: 'settled_at: closed streams the start-up sweep has found settled', sql: settledAt('BIGINT') },
    { version: 4, name: 'stream_money: money steps as compact rows', sql: moneyRows('BIGINT', '') },
  ],
};
