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
import type { LedgerResult } from '../../src/ledger/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { createFixture, describeLedgerStoreContract, transfer } from './contract.js';

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
