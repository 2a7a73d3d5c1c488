// The webhook catch-up's reads walk an index on their time column (invoices.paid_at,
// payments.resolved_at, streams.closed_at) on SQLite and PostgreSQL, instead of scanning
// and sorting whole tables at every start: checked with EXPLAIN on tables of 20,000 rows
// each (a quarter open or in flight), statistics gathered, a cursor near the end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePostgres, migrateSqlite, type ModuleMigrations } from '../../src/db/migrate.js';
import { openSqlite, type SqliteDatabase } from '../../src/db/sqlite.js';
import { postgresRecordMigrations, sqliteRecordMigrations } from '../../src/records/migrations.js';
import { postgresStreamMigrations, sqliteStreamMigrations } from '../../src/streams/migrations.js';
import { postgresWebhookMigrations, sqliteWebhookMigrations } from '../../src/webhooks/migrations.js';
import { MISSING_CAUSES_SQL, numbered } from '../../src/webhooks/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

const ROWS = 20_000;
const T0 = 1_700_000_000_000;
/** The catch-up's cursor: the last 1% of the rows are newer. */
const SINCE = T0 + ROWS * 0.99 * 30_000;
const LIMIT = 500;

/** The rows, from a sequence `n` (1..ROWS) the dialect provides as the table `g(n)`. */
const FILL = `
INSERT INTO invoices (payment_hash, app_id, credit_account_id, preimage, payment_request, amount_msat, description, created_at, expires_at, status, amount_paid_msat, paid_at)
SELECT 'h' || n, 'a1', 'acc', 'p', 'lnbcrt1', 1000, '', ${T0} + n * 30000, ${T0} + n * 30000 + 3600000,
  CASE WHEN n % 4 = 0 THEN 'open' ELSE 'paid' END, CASE WHEN n % 4 = 0 THEN NULL ELSE 1000 END, CASE WHEN n % 4 = 0 THEN NULL ELSE ${T0} + n * 30000 + 1000 END FROM g;
INSERT INTO payments (id, app_id, debit_account_id, kind, payment_hash, destination, amount_msat, max_fee_msat, status, hold_transfer_id, idempotency_key, request_fingerprint, created_at, resolved_at)
SELECT 'p' || n, 'a1', 'acc', 'invoice', 'x' || n, 'd', 1000, 10, CASE WHEN n % 4 = 0 THEN 'in_flight' WHEN n % 3 = 0 THEN 'failed' ELSE 'succeeded' END,
  't', 'k' || n, 'f', ${T0} + n * 30000, CASE WHEN n % 4 = 0 THEN NULL ELSE ${T0} + n * 30000 + 500 END FROM g;
INSERT INTO streams (id, app_id, account_id, payer_token_hash, prices, rate_msat_per_s, maximum_msat, settle_threshold_msat, settle_to_msat, max_charge_msat, payout_threshold_msat, status, meter, meter_segment, meter_seconds_charged, metadata, created_at, closed_at)
SELECT 's' || n, 'a1', 'sa' || n, 'pt' || n, '{}', 0, 0, 0, 0, 1, 0, CASE WHEN n % 4 = 0 THEN 'open' ELSE 'closed' END, 'stopped', 0, 0, '',
  ${T0} + n * 30000, CASE WHEN n % 4 = 0 THEN NULL ELSE ${T0} + n * 30000 + 9000 END FROM g;
`;

const INDEX_OF = { invoices: 'invoices_paid_at', payments: 'payments_resolved_at', streams: 'streams_closed_at' } as const;
const QUERIES = Object.keys(INDEX_OF) as (keyof typeof INDEX_OF)[];

describe('webhook catch-up query plans on sqlite', () => {
  let db: SqliteDatabase;
  beforeAll(() => {
    db = openSqlite({ path: ':memory:' });
    for (const set of [sqliteRecordMigrations, sqliteStreamMigrations, sqliteWebhookMigrations] as ModuleMigrations[]) migrateSqlite(db, set);
    db.exec(`INSERT INTO apps (id, name, account_id, created_at) VALUES ('a1', 'shop', 'acc', 0)`);
    for (const statement of FILL.split(';').filter((text) => text.trim() !== '')) {
      db.exec(`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ${ROWS}) ${statement}`);
    }
    db.exec('ANALYZE');
  });
  afterAll(() => db?.close());

  it.each(QUERIES)('%s: searches the time index, no scan, no sort', (name) => {
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${MISSING_CAUSES_SQL[name]}`).all(SINCE, LIMIT) as { detail: string }[]).map((row) => row.detail);
    expect(plan[0], plan.join(' | ')).toMatch(new RegExp(`^SEARCH \\w+ USING INDEX ${INDEX_OF[name]} \\(`));
    expect(plan.join(' | ')).not.toMatch(/\bSCAN\b|TEMP B-TREE/);
  });
});

describe.skipIf(!usePostgres)('webhook catch-up query plans on postgres', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_catch_up_plan');
    for (const set of [postgresRecordMigrations, postgresStreamMigrations, postgresWebhookMigrations]) await migratePostgres(database.sql, set);
    await database.sql.unsafe(`INSERT INTO apps (id, name, account_id, created_at) VALUES ('a1', 'shop', 'acc', 0)`);
    for (const statement of FILL.split(';').filter((text) => text.trim() !== '')) {
      await database.sql.unsafe(`WITH g(n) AS (SELECT generate_series(1::bigint, ${ROWS}::bigint)) ${statement}`);
    }
    await database.sql.unsafe('ANALYZE');
  });
  afterAll(async () => {
    await database?.drop();
  });

  it.each(QUERIES)('%s: an index scan on the time index, no sequential scan of the table', async (name) => {
    const rows = await database.sql.unsafe(`EXPLAIN ${numbered(MISSING_CAUSES_SQL[name])}`, [SINCE, LIMIT]);
    const plan = rows.map((row) => String(row['QUERY PLAN'])).join('\n');
    expect(plan).toMatch(new RegExp(`Index Scan using ${INDEX_OF[name]} on ${name}\\b`));
    expect(plan).not.toMatch(new RegExp(`Seq Scan on ${name}\\b`));
  });
});
