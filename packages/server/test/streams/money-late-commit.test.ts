// PostgreSQL: a sweep must not pass over a money commit still in progress on the same stream.
//
// The case (from the notes of ADR 0017's review): a commit holding a stream's charge takes
// long (its connection lost after COMMIT was sent, or, as here, a lock it waits for), the next
// batch with a later seq of the same stream commits, and a sweep moves the stream's charges up
// to that later seq. When the slow commit lands, its charge sits below the stream's
// charges_settled_seq, and no sweep would ever pay it to the app. Each money commit therefore
// holds its streams' rows in KEY SHARE mode, which a sweep's FOR UPDATE waits for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appAccountId } from '../../src/apps/service.js';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import type { MoneyStep, StreamMoneyStore } from '../../src/streams/money-store.js';
import { streamAccountId } from '../../src/streams/service.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!usePostgres)('money on PostgreSQL: a sweep and a commit still in progress on the same stream', () => {
  let t: TestSluice;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_money_late_commit');
    t = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  it('pays the app for a charge whose commit lands after a later batch of the same stream was swept', async () => {
    const app = await t.createApp();
    // The app's balance must cover the reward below.
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '100000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '1000000' } });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    const accountId = streamAccountId(streamId);
    const store = t.sluice.streamMoney.store as StreamMoneyStore;
    expect(store.dialect).toBe('postgres');
    // Written straight to the store, far past the service's own seqs (nothing else uses this stream).
    const step = (seq: number, ref: string, amount: bigint): MoneyStep => ({
      streamId, accountId, appId: app.id, seq, ref, name: 'hit', amountMsat: msat(amount), at: Date.now(),
    });
    const before = balanceOf((await t.sluice.ledger.getAccount(accountId))!);

    // Another transaction holds the app's ledger account, so batch A (a charge, then a reward,
    // which moves the app's money in the same transaction) waits inside its transaction after
    // writing its rows.
    let lockTaken!: () => void;
    const taken = new Promise<void>((resolve) => (lockTaken = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holder = database.sql.begin(async (tx) => {
      await tx`SELECT id FROM ledger_accounts WHERE id = ${appAccountId(app.id)} FOR UPDATE`;
      lockTaken();
      await released;
    });
    await taken;
    const batchA = store.commit([step(1001, 'c:late', 1000n), step(1002, 'r:late', 500n)], Date.now());
    await sleep(200);

    // Batch B, a later charge of the same stream, commits meanwhile; then a sweep starts.
    expect(await store.commit([step(1003, 'c:later', 2000n)], Date.now())).toEqual([{ kind: 'written', refused: null }]);
    const sweep = store.settle([streamId], Date.now());
    await sleep(200);

    release();
    await holder;
    expect(await batchA).toEqual([{ kind: 'written', refused: null }, { kind: 'written', refused: null }]);
    await sweep;
    await store.settle([streamId], Date.now());

    // Both charges reached the app: the stream's account paid 3,000 and received the reward of 500.
    expect(await store.unsettledMsat(streamId)).toBe(0n);
    expect(balanceOf((await t.sluice.ledger.getAccount(accountId))!) - before).toBe(-2500n);
  });
});
