// Token budgets on SQLite and PostgreSQL: guarded counting, races, group commit,
// restarts, and two processes sharing one PostgreSQL database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite, type SqliteDatabase } from '../../../src/db/sqlite.js';
import { connectPostgres } from '../../../src/db/postgres.js';
import { createBudgetLedger } from '../../../src/paycall/l402/budget.js';
import { createPostgresL402BudgetStore, createSqliteL402BudgetStore, type BudgetUse, type L402BudgetStore } from '../../../src/paycall/l402/budget-store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';

const MAX = (1n << 63n) - 1n;
const use = (tokenId: string, msat: bigint, msatLimit: bigint, callsLimit = MAX): BudgetUse => ({ tokenId, calls: 1n, msat, msatLimit, callsLimit, at: 1 });
const newToken = () => randomBytes(32).toString('hex');

interface Dialect {
  name: string;
  available: () => Promise<boolean>;
  /** A store over the same database each time it is called (a restart, or another process). */
  open(): Promise<L402BudgetStore>;
  cleanup(): Promise<void>;
}

function sqliteDialect(): Dialect {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-l402-'));
  const opened: SqliteDatabase[] = [];
  return {
    name: 'SQLite',
    available: async () => true,
    async open() {
      for (const db of opened.splice(0)) db.close();
      const db = openSqlite({ path: path.join(dir, 'l402.sqlite') });
      opened.push(db);
      return createSqliteL402BudgetStore(db);
    },
    async cleanup() {
      for (const db of opened.splice(0)) db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresDialect(): Dialect {
  let database: TestDatabase | null = null;
  const extra: ReturnType<typeof connectPostgres>[] = [];
  return {
    name: 'PostgreSQL',
    available: postgresAvailable,
    async open() {
      database ??= await createTestDatabase('sluice_l402');
      const sql = connectPostgres({ url: database.url });
      extra.push(sql);
      return createPostgresL402BudgetStore(sql);
    },
    async cleanup() {
      for (const sql of extra) await sql.end({ timeout: 5 });
      await database?.drop();
    },
  };
}

for (const dialect of [sqliteDialect(), postgresDialect()]) {
  describe(`L402 budgets on ${dialect.name}`, async () => {
    const available = await dialect.available();
    let store: L402BudgetStore;
    beforeAll(async () => {
      if (available) store = await dialect.open();
    });
    afterAll(() => dialect.cleanup());

    it.skipIf(!available)('counts msat and calls and refuses past the limit; the database guards on its own', async () => {
      const tokenId = newToken();
      expect(await store.applyUses([use(tokenId, 3000n, 5000n), use(tokenId, 2000n, 5000n), use(tokenId, 1n, 5000n)])).toEqual([
        { applied: true, callsUsed: 1n, msatUsed: 3000n },
        { applied: true, callsUsed: 2n, msatUsed: 5000n },
        { applied: false, callsUsed: 2n, msatUsed: 5000n },
      ]);
      const calls = newToken();
      const [first, second] = await store.applyUses([use(calls, 0n, MAX, 1n), use(calls, 0n, MAX, 1n)]);
      expect(first?.applied).toBe(true);
      expect(second?.applied).toBe(false);
      // Near 2^63: the guard never computes a sum past the column.
      const big = newToken();
      expect((await store.applyUses([use(big, MAX - 1n, MAX), use(big, MAX, MAX)])).map((result) => result.applied)).toEqual([true, false]);
      expect(await store.getUsage(big)).toEqual({ callsUsed: 1n, msatUsed: MAX - 1n });
    });

    it.skipIf(!available)('two racing calls on a one-call budget: exactly one is counted', async () => {
      const ledger = createBudgetLedger({ store });
      const tokenId = newToken();
      const results = await Promise.all([ledger.use(use(tokenId, 5000n, 5000n)), ledger.use(use(tokenId, 5000n, 5000n))]);
      expect(results.filter((result) => result.ok)).toHaveLength(1);
      expect(results.find((result) => !result.ok)).toMatchObject({ ok: false, error: 'exhausted' });
      expect(await store.getUsage(tokenId)).toEqual({ callsUsed: 1n, msatUsed: 5000n });
      await ledger.close();
    });

    it.skipIf(!available)('many concurrent calls share commits and never overspend', async () => {
      let commits = 0;
      const counting: L402BudgetStore = {
        applyUses: (uses) => {
          commits += 1;
          return store.applyUses(uses);
        },
        getUsage: (tokenId) => store.getUsage(tokenId),
      };
      const ledger = createBudgetLedger({ store: counting });
      const tokens = Array.from({ length: 50 }, newToken);
      // Each token may make 3 calls of 1000 msat; each gets 5 attempts.
      const attempts = tokens.flatMap((tokenId) => Array.from({ length: 5 }, () => ledger.use(use(tokenId, 1000n, 3000n))));
      const results = await Promise.all(attempts);
      expect(results.filter((result) => result.ok)).toHaveLength(150);
      expect(commits).toBeLessThan(20);
      for (const tokenId of tokens) expect(await store.getUsage(tokenId)).toEqual({ callsUsed: 3n, msatUsed: 3000n });
      await ledger.close();
    });

    it.skipIf(!available)('a restart keeps what was used', async () => {
      const tokenId = newToken();
      const before = createBudgetLedger({ store });
      expect((await before.use(use(tokenId, 2000n, 3000n))).ok).toBe(true);
      await before.close();
      store = await dialect.open();
      const after = createBudgetLedger({ store });
      expect(await after.use(use(tokenId, 2000n, 3000n))).toMatchObject({ ok: false, error: 'exhausted', msatUsed: 2000n });
      expect(await after.use(use(tokenId, 1000n, 3000n))).toMatchObject({ ok: true, msatUsed: 3000n });
      await after.close();
    });

    // Two processes share a database only on PostgreSQL; SQLite has one writer (not a skip).
    (dialect.name === 'PostgreSQL' ? it.skipIf(!available) : () => undefined)('two processes on one database: each token unit is served once', async () => {
      const other = await dialect.open();
      const here = createBudgetLedger({ store });
      const there = createBudgetLedger({ store: other });
      const tokens = Array.from({ length: 40 }, newToken);
      const results = await Promise.all(tokens.flatMap((tokenId) => [
        here.use(use(tokenId, 1000n, 2000n)), there.use(use(tokenId, 1000n, 2000n)),
        here.use(use(tokenId, 1000n, 2000n)), there.use(use(tokenId, 1000n, 2000n)),
      ]));
      expect(results.filter((result) => result.ok)).toHaveLength(80);
      for (const tokenId of tokens) expect(await store.getUsage(tokenId)).toEqual({ callsUsed: 2n, msatUsed: 2000n });
      await here.close();
      await there.close();
    });

    it.skipIf(!available)('a failed commit answers its callers with the error and gives back their reservation', async () => {
      let fail = true;
      const flaky: L402BudgetStore = {
        applyUses: async (uses) => {
          if (fail) throw new Error('disk on fire');
          return store.applyUses(uses);
        },
        getUsage: (tokenId) => store.getUsage(tokenId),
      };
      const ledger = createBudgetLedger({ store: flaky });
      const tokenId = newToken();
      await expect(ledger.use(use(tokenId, 1000n, 1000n))).rejects.toThrow('disk on fire');
      fail = false;
      expect((await ledger.use(use(tokenId, 1000n, 1000n))).ok).toBe(true);
      await ledger.close();
      await expect(ledger.use(use(tokenId, 1n, 1000n))).rejects.toThrow(/closed/);
    });

    it.skipIf(!available)('a commit that wrote and then lost its connection (outcome unknown) is not served, and its unit is never served again', async () => {
      let loseConnection = true;
      const lossy: L402BudgetStore = {
        applyUses: async (uses) => {
          const results = await store.applyUses(uses);
          if (loseConnection) {
            loseConnection = false;
            throw Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });
          }
          return results;
        },
        getUsage: (tokenId) => store.getUsage(tokenId),
      };
      const ledger = createBudgetLedger({ store: lossy });
      const tokenId = newToken();
      await expect(ledger.use(use(tokenId, 1000n, 1000n))).rejects.toThrow('CONNECTION_CLOSED');
      // The memory gives the reservation back (it must stay a lower bound), but the database
      // holds the use and its guarded upsert decides: the one-call budget is spent.
      expect(await ledger.use(use(tokenId, 1000n, 1000n))).toMatchObject({ ok: false, error: 'exhausted', callsUsed: 1n, msatUsed: 1000n });
      expect(await store.getUsage(tokenId)).toEqual({ callsUsed: 1n, msatUsed: 1000n });
      await ledger.close();
    });
  });
}
