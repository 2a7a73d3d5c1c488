// The subscriptions module's migrations upgrade a database made by version 1 (before
// pause existed) without losing a row, on SQLite and PostgreSQL, and the new status is
// then accepted; version 3's refund attempt columns are NULL for rows made before.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { migratePostgres, migrateSqlite } from '../../src/db/migrate.js';
import { postgresSubscriptionMigrations, sqliteSubscriptionMigrations } from '../../src/subscriptions/migrations.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();
const PLAN = "INSERT INTO subscription_plans VALUES ('plan_a', 'app_a', 'p', 'per_second', 1000, 60, 3600, 0, NULL, 1000, 0, 1)";
const SUB = `INSERT INTO subscriptions (id, app_id, plan_id, account_id, payer_token_hash, status, metadata, created_at, segment, started, owed,
  charged_msat, invoice_count, refund_status, refund_msat, refund_attempts) VALUES ('sub_a', 'app_a', 'plan_a', 'sub:sub_a', 'h', 'active', '', 1, 1, 3, 0, 3000, 1, 'none', 0, 0)`;

describe('subscriptions migrations', () => {
  let database: TestDatabase | null = null;
  afterAll(async () => {
    await database?.drop();
  });

  it('SQLite: version 1 data survives the rebuild of version 2', () => {
    const db = openSqlite({ path: path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-subs-mig-')), 'db.sqlite') });
    migrateSqlite(db, { ...sqliteSubscriptionMigrations, migrations: sqliteSubscriptionMigrations.migrations.slice(0, 1) });
    db.exec(PLAN);
    db.exec(SUB);
    expect(() => db.exec("UPDATE subscriptions SET status = 'paused'")).toThrow(/CHECK/);
    migrateSqlite(db, sqliteSubscriptionMigrations);
    const row = db.prepare('SELECT * FROM subscriptions WHERE id = ?').get('sub_a') as Record<string, unknown>;
    expect(row).toMatchObject({ status: 'active', started: 3n, charged_msat: 3000n, paused_at: null, refund_payment_request: null, refund_max_fee_msat: null });
    expect(() => db.exec('UPDATE subscriptions SET refund_max_fee_msat = -1')).toThrow(/CHECK/);
    expect((db.prepare('SELECT max_pause_s FROM subscription_plans').get() as Record<string, unknown>).max_pause_s).toBe(0n);
    db.exec("UPDATE subscriptions SET status = 'paused', paused_at = 5");
    expect(() => db.exec("UPDATE subscriptions SET status = 'sleeping'")).toThrow(/CHECK/);
    const indexes = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'subscriptions'").all() as { name: string }[]).map((index) => index.name);
    expect(indexes).toEqual(expect.arrayContaining(['subscriptions_app', 'subscriptions_unfinished', 'subscriptions_refunding']));
    db.close();
  });

  it.skipIf(!usePostgres)('PostgreSQL: version 1 data survives version 2', async () => {
    database = await createTestDatabase('sluice_subs_mig');
    const sql = database.sql;
    await migratePostgres(sql, { ...postgresSubscriptionMigrations, migrations: postgresSubscriptionMigrations.migrations.slice(0, 1) });
    await sql.unsafe(PLAN);
    await sql.unsafe(SUB);
    await expect(sql.unsafe("UPDATE subscriptions SET status = 'paused'")).rejects.toThrow(/check/i);
    await migratePostgres(sql, postgresSubscriptionMigrations);
    const [row] = await sql.unsafe('SELECT * FROM subscriptions');
    expect(row).toMatchObject({ status: 'active', charged_msat: 3000n, paused_at: null, refund_payment_request: null, refund_max_fee_msat: null });
    await expect(sql.unsafe('UPDATE subscriptions SET refund_max_fee_msat = -1')).rejects.toThrow(/check/i);
    await sql.unsafe("UPDATE subscriptions SET status = 'paused', paused_at = 5");
    await expect(sql.unsafe("UPDATE subscriptions SET status = 'sleeping'")).rejects.toThrow(/check/i);
  });
});
