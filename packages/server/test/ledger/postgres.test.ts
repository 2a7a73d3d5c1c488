/**
 * The LedgerStore contract and the in-transaction API on a real PostgreSQL (a fresh
 * database per suite; skipped with a message when PostgreSQL does not answer, unless
 * SLUICE_TEST_POSTGRES=required).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyOpsInTransaction,
  createAccountInTransaction,
  createPostgresLedgerStore,
  migratePostgresLedger,
} from '../../src/ledger/postgres/store.js';
import fc from 'fast-check';
import { connectPostgres } from '../../src/db/postgres.js';
import { createLedger } from '../../src/ledger/group-commit.js';
import { availableOf, type LedgerOp, type LedgerResult, type LedgerStore } from '../../src/ledger/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { createFixture, describeLedgerStoreContract, m, transfer, uniqueId } from './contract.js';
import { ledgerPropertyTests } from './properties.js';

const available = await postgresAvailable();

describeLedgerStoreContract(
  'postgres',
  async (clock) => {
    const database = await createTestDatabase('sluice_ledger');
    await migratePostgresLedger(database.sql);
    return { store: createPostgresLedgerStore(database.sql, { clock }), close: () => database.drop() };
  },
  { skip: !available },
);

describe.skipIf(!available)('PostgreSQL ledger inside a caller transaction', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_ledger');
    await migratePostgresLedger(database.sql);
    await migratePostgresLedger(database.sql); // idempotent
    await database.sql`CREATE TABLE outgoing (transfer_id TEXT PRIMARY KEY)`;
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('commits ledger ops together with the caller rows', async () => {
    const store = createPostgresLedgerStore(database.sql);
    const f = await createFixture(store);
    const id = await database.sql.begin(async (tx) => {
      const [hold] = await applyOpsInTransaction(tx, [transfer(f.alice, f.bob, 100, { pending: true })], Date.now());
      if (!hold?.ok) throw new Error('hold refused');
      await tx`INSERT INTO outgoing VALUES (${hold.transfer.id})`;
      return hold.transfer.id;
    });
    expect(await store.getTransfer(id)).toMatchObject({ state: 'pending' });
    const rows = await database.sql`SELECT transfer_id FROM outgoing WHERE transfer_id = ${id}`;
    expect(rows).toHaveLength(1);
  });

  it('rolls back ledger ops when the caller transaction fails', async () => {
    const store = createPostgresLedgerStore(database.sql);
    const f = await createFixture(store);
    let results: LedgerResult[] = [];
    await expect(
      database.sql.begin(async (tx) => {
        await createAccountInTransaction(tx, { id: `${f.alice}-extra`, ownerId: 'o', limitMsat: null, code: 'x' }, 1);
        results = await applyOpsInTransaction(tx, [transfer(f.alice, f.bob, 100, { pending: true })], Date.now());
        throw new Error('caller failed after the hold');
      }),
    ).rejects.toThrow('caller failed after the hold');
    const [hold] = results;
    if (!hold?.ok) throw new Error('hold refused');
    expect(await store.getTransfer(hold.transfer.id)).toBeNull();
    expect(await store.getAccount(`${f.alice}-extra`)).toBeNull();
    expect((await store.getAccount(f.alice))?.debitsPendingMsat).toBe(0n);
  });
});

describe.skipIf(!available)('PostgreSQL ledger properties', () => {
  let database: TestDatabase;
  let store: LedgerStore;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_ledger');
    await migratePostgresLedger(database.sql);
    store = createPostgresLedgerStore(database.sql);
  });
  afterAll(async () => {
    await database?.drop();
  });
  ledgerPropertyTests(() => store, 25);

  it('two processes (separate pools) on the same accounts never overdraw or deadlock', async () => {
    const second = connectPostgres({ url: database.url, maxConnections: 4 });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({ from: fc.integer({ min: 0, max: 3 }), to: fc.integer({ min: 0, max: 3 }), amount: fc.integer({ min: 1, max: 300 }), process: fc.integer({ min: 0, max: 1 }), keyed: fc.boolean() }),
            { minLength: 40, maxLength: 160 },
          ),
          async (requests) => {
            const ids = [uniqueId('acct'), uniqueId('acct'), uniqueId('acct'), uniqueId('acct')];
            const system = uniqueId('sys');
            await store.createAccount({ id: system, ownerId: 'system', limitMsat: null, code: 'lightning' });
            for (const id of ids) await store.createAccount({ id, ownerId: 'o', limitMsat: m(50), code: 'payer' });
            await store.applyOps(ids.map((id) => ({ kind: 'transfer', debitAccountId: system, creditAccountId: id, amountMsat: m(1000), code: 'fund' })));
            const stores = [store, createPostgresLedgerStore(second)];
            const ledgers = stores.map((s) => createLedger({ store: s, maxBatch: 16 }));
            // Per process: a group-commit front and direct concurrent batches (several connections each).
            const results = await Promise.all(
              requests.map((r, i) => {
                const op: LedgerOp = { kind: 'transfer', debitAccountId: ids[r.from] as string, creditAccountId: ids[r.to] as string, amountMsat: m(r.amount), code: 'race', ...(r.keyed ? { idempotencyKey: `${system}-${i % 20}` } : {}) };
                return i % 3 === 0
                  ? (stores[r.process] as LedgerStore).applyOps([op]).then(([result]) => result as LedgerResult)
                  : (ledgers[r.process] as ReturnType<typeof createLedger>).apply(op);
              }),
            );
            await Promise.all(ledgers.map((l) => l.close()));
            const accounts = await Promise.all(ids.map((id) => store.getAccount(id)));
            const debited = new Map<string, bigint>();
            const credited = new Map<string, bigint>();
            const seen = new Set<string>();
            results.forEach((result) => {
              if (!result.ok || seen.has(result.transfer.id)) return;
              seen.add(result.transfer.id);
              const t = result.transfer;
              debited.set(t.debitAccountId, (debited.get(t.debitAccountId) ?? 0n) + t.amountMsat);
              credited.set(t.creditAccountId, (credited.get(t.creditAccountId) ?? 0n) + t.amountMsat);
            });
            for (const a of accounts) {
              if (!a) throw new Error('account vanished');
              expect(availableOf(a)! >= 0n).toBe(true);
              expect(a.debitsPostedMsat).toBe(debited.get(a.id) ?? 0n);
              expect(a.creditsPostedMsat).toBe(1000n + (credited.get(a.id) ?? 0n));
            }
            expect(await store.sumOfBalances()).toBe(0n);
          },
        ),
        { numRuns: 8 },
      );
    } finally {
      await second.end({ timeout: 5 });
    }
  });
});
