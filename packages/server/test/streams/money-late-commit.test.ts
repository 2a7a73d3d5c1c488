// PostgreSQL: a sweep must not pass over a money commit still in progress on the same stream,
// and a commit must not wait for a sweep's ledger work.
//
// The case (from the notes of ADR 0017's review): a commit holding a stream's charge takes
// long (its connection lost after COMMIT was sent, or, as here, a lock it waits for), the next
// batch with a later seq of the same stream commits, and a sweep moves the stream's charges up
// to that later seq. When the slow commit lands, its charge sits below the stream's
// charges_settled_seq, and no sweep would ever pay it to the app. So each money commit holds
// an advisory lock in shared mode, and a sweep takes it exclusively in a savepoint (waiting
// for the commits in progress), reads what to move in a snapshot of its own (READ COMMITTED,
// whatever the server's default: the suites below run once with each default), and lets it go.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appAccountId } from '../../src/apps/service.js';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { MONEY_COMMITS_LOCK, type MoneyStep, type StreamMoneyStore } from '../../src/streams/money-store.js';
import { streamAccountId } from '../../src/streams/service.js';
import type { PostgresTransaction } from '../../src/db/postgres.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const isolation of ['read committed', 'repeatable read', 'serializable'] as const) {
describe.skipIf(!usePostgres)(`money on PostgreSQL (default isolation ${isolation}): sweeps and commits in progress`, () => {
  let t: TestSluice;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(`sluice_money_late_${isolation.replace(' ', '_')}`);
    const name = new URL(database.url).pathname.slice(1);
    await database.sql.unsafe(`ALTER DATABASE "${name}" SET default_transaction_isolation = '${isolation}'`);
    t = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  /** Waits until `count` sessions of this database wait for a lock (at most 5 s; the assertions after it decide). */
  const lockWaiters = async (count: number): Promise<void> => {
    for (let tries = 0; tries < 500; tries += 1) {
      const [row] = await database.sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
      if ((row!.n as number) >= count) return;
      await sleep(10);
    }
  };

  /** Another transaction runs `hold` and keeps what it locked until `release` is called. */
  const holdLocks = async (hold: (tx: PostgresTransaction) => Promise<unknown>): Promise<{ release(): Promise<void> }> => {
    let taken!: () => void;
    const isTaken = new Promise<void>((resolve) => (taken = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holder = database.sql.begin(async (tx) => {
      await hold(tx);
      taken();
      await released;
      throw new Error('rolled back on purpose');
    }).catch(() => undefined);
    await isTaken;
    return { release: async () => { release(); await holder; } };
  };

  const openStream = async (funded = false) => {
    const app = await t.createApp();
    if (funded) {
      // The app's balance covers a reward.
      const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '100000', description: 'float' } });
      expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    }
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
    const balance = async () => balanceOf((await t.sluice.ledger.getAccount(accountId))!);
    return { app, streamId, store, step, balance, before: await balance() };
  };

  const written = { kind: 'written', refused: null };

  /**
   * Batch A waits inside its transaction for what `lock` holds, after writing its rows; batch
   * B, a later charge of the same stream, commits meanwhile; then a sweep starts, and must wait
   * for A. Once A and that sweep are done, a second sweep runs: nothing may be left unswept.
   */
  const lateCommit = async (
    { streamId, store, step }: Awaited<ReturnType<typeof openStream>>,
    lock: { release(): Promise<void> },
    batchA: MoneyStep[],
  ): Promise<void> => {
    const committingA = store.commit(batchA, Date.now());
    await lockWaiters(1);
    expect(await store.commit([step(1003, 'c:later', 2000n)], Date.now())).toEqual([written]);
    const sweep = store.settle([streamId], Date.now());
    await lockWaiters(2);
    await lock.release();
    expect(await committingA).toEqual(batchA.map(() => written));
    await sweep;
    await store.settle([streamId], Date.now());
    expect(await store.unsettledMsat(streamId)).toBe(0n);
  };

  it('pays the app for a charge whose commit lands after a later batch was committed, with a sweep in between (the slow batch moves the app\'s money)', async () => {
    const opened = await openStream(true);
    // Batch A is a charge, then a reward, which moves the app's money in the same transaction:
    // it waits while another transaction holds the app's account.
    const lock = await holdLocks((tx) => tx`SELECT id FROM ledger_accounts WHERE id = ${appAccountId(opened.app.id)} FOR UPDATE`);
    await lateCommit(opened, lock, [opened.step(1001, 'c:late', 1000n), opened.step(1002, 'r:late', 500n)]);
    // Both charges reached the app: the stream's account paid 3,000 and received the reward of 500.
    expect((await opened.balance()) - opened.before).toBe(-2500n);
  });

  it('pays the app for a charge whose commit lands after a later batch was committed, with a sweep in between (charges only)', async () => {
    const opened = await openStream();
    // Batch A waits on a unique ref that another, uncommitted transaction wrote first.
    const lock = await holdLocks((tx) => tx.unsafe(
      "INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at) VALUES ($1, 5000, 'c:blocker', 'hit', 1, 0)", [opened.streamId]));
    await lateCommit(opened, lock, [opened.step(1001, 'c:late', 1000n), opened.step(1002, 'c:blocker', 1n)]);
    expect((await opened.balance()) - opened.before).toBe(-3001n);
  });

  it("lets a commit go on while a sweep of the same stream waits in its ledger work", async () => {
    const { app, streamId, store, step, balance, before } = await openStream();
    expect(await store.commit([step(1001, 'c:first', 1000n)], Date.now())).toEqual([written]);
    // The sweep waits for the app's account, which another transaction holds.
    const lock = await holdLocks((tx) => tx`SELECT id FROM ledger_accounts WHERE id = ${appAccountId(app.id)} FOR UPDATE`);
    const sweep = store.settle([streamId], Date.now());
    await lockWaiters(1);
    // A commit on the same stream is not held up by it.
    const second = store.commit([step(1002, 'c:second', 2000n)], Date.now());
    const first = await Promise.race([second.then(() => 'committed'), sleep(2000).then(() => 'still waiting')]);
    await lock.release();
    expect(first).toBe('committed');
    expect(await second).toEqual([written]);
    expect(await sweep).toBe(1);
    // The sweep moved what it had summed; the charge committed meanwhile goes with the next one.
    expect(await store.unsettledMsat(streamId)).toBe(2000n);
    await store.settle([streamId], Date.now());
    expect(await store.unsettledMsat(streamId)).toBe(0n);
    expect((await balance()) - before).toBe(-3000n);
  });

  it('gives up a sweep, and holds no commit, when a transaction left open keeps the money commits\' lock', async () => {
    const { streamId, store, step } = await openStream();
    expect(await store.commit([step(1001, 'c:first', 1000n)], Date.now())).toEqual([written]);
    // As a money commit whose client was lost before its COMMIT arrived.
    const lock = await holdLocks((tx) => tx.unsafe(`SELECT pg_advisory_xact_lock_shared(${MONEY_COMMITS_LOCK})`));
    try {
      const started = Date.now();
      const sweep = await store.settle([streamId], Date.now()).then(() => 'settled', (error: { code?: string }) => error.code);
      expect(sweep).toBe('55P03'); // lock_not_available: tried again at the next sweep
      expect(Date.now() - started).toBeLessThan(10_000);
      // Nothing moved, and commits go on.
      expect(await store.unsettledMsat(streamId)).toBe(1000n);
      expect(await store.commit([step(1002, 'c:second', 2000n)], Date.now())).toEqual([written]);
    } finally {
      await lock.release();
    }
    expect(await store.settle([streamId], Date.now())).toBe(1);
    expect(await store.unsettledMsat(streamId)).toBe(0n);
  });
});
}
