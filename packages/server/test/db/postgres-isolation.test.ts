/**
 * Sluice's PostgreSQL connections run at READ COMMITTED whatever the database's default
 * (src/db/postgres.ts): its transactions lock what they change and expect a statement that
 * waited for a lock to see the row as its holder committed it. With a REPEATABLE READ or
 * SERIALIZABLE default the same statement failed with a serialization error instead, and
 * paying an invoice answered 500 now and then.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres } from '../../src/db/postgres.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();

for (const isolation of ['repeatable read', 'serializable'] as const) {
  describe.skipIf(!usePostgres)(`PostgreSQL with default_transaction_isolation = '${isolation}'`, () => {
    let database: TestDatabase;
    let t: TestSluice | undefined;
    beforeAll(async () => {
      database = await createTestDatabase(`sluice_isolation_${isolation.replace(' ', '_')}`);
      const name = new URL(database.url).pathname.slice(1);
      await database.sql.unsafe(`ALTER DATABASE "${name}" SET default_transaction_isolation = '${isolation}'`);
    });
    afterAll(async () => {
      await t?.close();
      await database?.drop();
    });

    it('runs Sluice\'s transactions at READ COMMITTED (a plain connection gets the database\'s default)', async () => {
      const plain = postgres(database.url, { max: 1, onnotice: () => {} });
      const ours = connectPostgres({ url: database.url, maxConnections: 1 });
      try {
        const [plainLevel] = await plain.begin((tx) => tx`SHOW transaction_isolation`);
        expect(plainLevel!.transaction_isolation).toBe(isolation);
        const [ourLevel] = await ours.begin((tx) => tx`SHOW transaction_isolation`);
        expect(ourLevel!.transaction_isolation).toBe('read committed');
        // Outside an explicit transaction too (each statement is its own).
        const [statement] = await ours`SHOW transaction_isolation`;
        expect(statement!.transaction_isolation).toBe('read committed');
      } finally {
        await plain.end({ timeout: 1 });
        await ours.end({ timeout: 1 });
      }
    });

    it('refuses to start when the URL asks for another level (it outranks the startup parameter), closing its connections', async () => {
      const url = new URL(database.url);
      url.searchParams.set('default_transaction_isolation', isolation);
      const level = isolation.toUpperCase();
      await expect(startTestSluice({ env: { SLUICE_DATABASE_URL: url.toString() } })).rejects.toThrow(`PostgreSQL runs this connection's transactions at ${level}, and Sluice needs READ COMMITTED`);
      const name = url.pathname.slice(1);
      const [open] = await database.sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ${name} AND pid <> pg_backend_pid()`;
      // The test's own pool (database.sql) may hold a connection or two; none of Sluice's stays.
      expect(open!.n as number).toBeLessThanOrEqual(1);
    });

    it('pays invoices to one app concurrently, every one credited once', async () => {
      t = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
      const app = await t.createApp();
      const count = 24;
      const invoices = await Promise.all(Array.from({ length: count }, async (_, index) => {
        const created = await t!.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: String(1000 + index), description: `float ${index}` } });
        expect(created.status).toBe(201);
        return created.body.payment_request as string;
      }));
      const paid = await Promise.all(invoices.map((payment_request) =>
        t!.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request, wallet: 'bob' } })));
      expect(paid.map((reply) => reply.status)).toEqual(invoices.map(() => 200));
      const expected = Array.from({ length: count }, (_, index) => 1000 + index).reduce((sum, amount) => sum + amount, 0);
      const balance = await t.call('GET', '/v1/balance', { key: app.apiKey });
      expect(balance.body.balance_msat).toBe(String(expected));
    });
  });
}
