/**
 * The LedgerStore contract and the in-transaction API on SQLite: a temporary file with
 * WAL and synchronous=FULL, as in production (not :memory:).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyOpsInTransaction,
  createAccountInTransaction,
  createSqliteLedgerStore,
  migrateSqliteLedger,
} from '../../src/ledger/sqlite/store.js';
import { createFixture, describeLedgerStoreContract, transfer } from './contract.js';
import { openTempSqlite, type TempSqlite } from './temp-sqlite.js';
import { ledgerPropertyTests } from './properties.js';
import type { LedgerStore } from '../../src/ledger/store.js';

describeLedgerStoreContract('sqlite', async (clock) => {
  const temp = openTempSqlite();
  migrateSqliteLedger(temp.db);
  return { store: createSqliteLedgerStore(temp.db, { clock }), close: async () => temp.remove() };
});

describe('SQLite ledger inside a caller transaction', () => {
  let temp: TempSqlite;
  beforeAll(() => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    migrateSqliteLedger(temp.db); // idempotent
    temp.db.exec('CREATE TABLE outgoing (transfer_id TEXT PRIMARY KEY)');
  });
  afterAll(() => temp.remove());

  it('commits ledger ops together with the caller rows', async () => {
    const store = createSqliteLedgerStore(temp.db);
    const f = await createFixture(store);
    const id = temp.db.transaction(() => {
      const [hold] = applyOpsInTransaction(temp.db, [transfer(f.alice, f.bob, 100, { pending: true })], Date.now());
      if (!hold?.ok) throw new Error('hold refused');
      temp.db.prepare('INSERT INTO outgoing VALUES (?)').run(hold.transfer.id);
      return hold.transfer.id;
    }).immediate();
    expect(await store.getTransfer(id)).toMatchObject({ state: 'pending' });
    expect(temp.db.prepare('SELECT transfer_id FROM outgoing WHERE transfer_id = ?').get(id)).toEqual({ transfer_id: id });
  });

  it('rolls back ledger ops when the caller transaction fails', async () => {
    const store = createSqliteLedgerStore(temp.db);
    const f = await createFixture(store);
    let heldId = '';
    expect(() =>
      temp.db.transaction(() => {
        createAccountInTransaction(temp.db, { id: `${f.alice}-extra`, ownerId: 'o', limitMsat: null, code: 'x' }, 1);
        const [hold] = applyOpsInTransaction(temp.db, [transfer(f.alice, f.bob, 100, { pending: true })], Date.now());
        if (!hold?.ok) throw new Error('hold refused');
        heldId = hold.transfer.id;
        throw new Error('caller failed after the hold');
      })(),
    ).toThrow('caller failed after the hold');
    expect(heldId).not.toBe('');
    expect(await store.getTransfer(heldId)).toBeNull();
    expect(await store.getAccount(`${f.alice}-extra`)).toBeNull();
    expect((await store.getAccount(f.alice))?.debitsPendingMsat).toBe(0n);
  });

  it('refuses to run outside a transaction', () => {
    expect(() => applyOpsInTransaction(temp.db, [], 1)).toThrow(/inside db.transaction/);
  });
});

describe('SQLite ledger properties', () => {
  let temp: TempSqlite;
  let store: LedgerStore;
  beforeAll(() => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    store = createSqliteLedgerStore(temp.db);
  });
  afterAll(() => temp.remove());
  ledgerPropertyTests(() => store, 100);
});
