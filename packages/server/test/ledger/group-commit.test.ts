/**
 * Group commit: many callers share one commit, nobody is answered before that commit, and a
 * failed commit fails exactly the callers in it. With a store that commits first and syncs
 * after (SQLite), the next batch commits while the previous one syncs, and nobody is answered
 * before the sync that covers their commit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, LedgerClosedError, MAX_UNDURABLE_BATCHES, type StagedLedgerStore } from '../../src/ledger/group-commit.js';
import { createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import type { LedgerOp, LedgerResult, LedgerStore } from '../../src/ledger/store.js';
import { createFixture, m, transfer, type Fixture } from './contract.js';
import { openTempSqlite, type TempSqlite } from './temp-sqlite.js';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Wraps a store: counts commits, and can hold each commit until released or make it fail. */
function instrument(inner: LedgerStore) {
  const state = {
    commits: [] as number[],
    gate: null as Deferred | null,
    failNext: null as Error | null,
    committed: 0,
  };
  // Without applyOpsStaged: the group commit goes through applyOps, one step per batch.
  const { applyOpsStaged: _staged, ...plain } = inner as Partial<StagedLedgerStore> & LedgerStore;
  const store: LedgerStore = {
    ...plain,
    async applyOps(ops: readonly LedgerOp[]): Promise<LedgerResult[]> {
      state.commits.push(ops.length);
      if (state.gate) await state.gate.promise;
      if (state.failNext) {
        const error = state.failNext;
        state.failNext = null;
        throw error;
      }
      const results = await inner.applyOps(ops);
      state.committed += ops.length;
      return results;
    },
  };
  return { store, state };
}

const settled = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('group commit', () => {
  let temp: TempSqlite;
  let inner: LedgerStore;
  let f: Fixture;

  beforeAll(async () => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    inner = createSqliteLedgerStore(temp.db);
    f = await createFixture(inner, 1_000_000n);
  });
  afterAll(() => temp.remove());

  it('commits N concurrent transfers in far fewer than N commits', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store, maxBatch: 100 });
    const n = 1000;
    const results = await Promise.all(Array.from({ length: n }, () => ledger.apply(transfer(f.alice, f.bob, 1))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(state.commits.reduce((a, b) => a + b, 0)).toBe(n);
    expect(state.commits.length).toBeLessThanOrEqual(n / 100 + 1);
    expect(Math.max(...state.commits)).toBeLessThanOrEqual(100);
    await ledger.close();
  });

  it('answers nobody before the commit that holds their op, and queues behind a commit in flight', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store });
    state.gate = deferred();
    const answered: number[] = [];
    const first = Array.from({ length: 10 }, (_, i) => ledger.apply(transfer(f.alice, f.bob, 1)).then(() => answered.push(i)));
    await settled();
    expect(state.commits).toEqual([10]);
    // These arrive while the first commit is in flight: they wait for the next one.
    const second = Array.from({ length: 5 }, (_, i) => ledger.apply(transfer(f.alice, f.bob, 1)).then(() => answered.push(10 + i)));
    await settled();
    expect(answered).toEqual([]);
    expect(state.commits).toEqual([10]);
    expect(state.committed).toBe(0);

    const firstGate = state.gate;
    state.gate = deferred();
    firstGate.resolve();
    await Promise.all(first);
    expect(state.committed).toBe(10);
    expect(answered.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await settled();
    expect(state.commits).toEqual([10, 5]);
    expect(answered).toHaveLength(10);
    state.gate.resolve();
    await Promise.all(second);
    expect(answered).toHaveLength(15);
    await ledger.close();
  });

  it('rejects every caller of a failed commit, acknowledges none, and carries on', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store });
    const before = (await inner.getAccount(f.bob))?.creditsPostedMsat;
    state.failNext = new Error('disk on fire');
    const batch = await Promise.allSettled(Array.from({ length: 7 }, () => ledger.apply(transfer(f.alice, f.bob, 1))));
    expect(batch.map((r) => r.status)).toEqual(Array(7).fill('rejected'));
    expect((await inner.getAccount(f.bob))?.creditsPostedMsat).toBe(before);
    expect((await ledger.apply(transfer(f.alice, f.bob, 1))).ok).toBe(true);
    await ledger.close();
  });

  it('answers Overloaded when the queue is full, without applying anything', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store, maxBatch: 2, maxQueue: 4 });
    state.gate = deferred();
    const inFlight = [ledger.apply(transfer(f.alice, f.bob, 1)), ledger.apply(transfer(f.alice, f.bob, 1))];
    await settled(); // the first two are now in a commit; the queue is empty
    const queued = Array.from({ length: 4 }, () => ledger.apply(transfer(f.alice, f.bob, 1)));
    const overflow = await ledger.applyMany([transfer(f.alice, f.bob, 1)]);
    expect(overflow).toEqual([{ ok: false, error: 'Overloaded', replayed: false }]);
    state.gate.resolve();
    state.gate = null;
    const results = await Promise.all([...inFlight, ...queued]);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(state.committed).toBe(6);
    await ledger.close();
  });

  it('commits applyMany ops together, in order', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store, maxBatch: 3 });
    const g = await createFixture(inner, 0n);
    const results = await ledger.applyMany([
      transfer(g.system, g.alice, 50),
      transfer(g.alice, g.bob, 50, { pending: true }),
      transfer(g.alice, g.bob, 1),
      transfer(g.alice, g.bob, 1, { code: 'fee' }),
    ]);
    // Larger than maxBatch: it commits alone, as one transaction.
    expect(state.commits).toEqual([4]);
    expect(results.map((r) => (r.ok ? r.transfer.state : r.error))).toEqual(['posted', 'pending', 'LimitExceeded', 'LimitExceeded']);
    await ledger.close();
  });

  it('refuses a malformed op to its own caller only', async () => {
    const ledger = createLedger({ store: inner });
    const good = ledger.apply(transfer(f.alice, f.bob, 1));
    const bad = ledger.apply({ ...transfer(f.alice, f.bob, 1), amountMsat: m(-1) } as LedgerOp);
    await expect(bad).rejects.toThrow(RangeError);
    expect((await good).ok).toBe(true);
    await ledger.close();
  });

  it('drains on close and refuses new requests after it', async () => {
    const { store, state } = instrument(inner);
    const ledger = createLedger({ store });
    state.gate = deferred();
    const pending = ledger.apply(transfer(f.alice, f.bob, 1));
    const closing = ledger.close();
    await expect(ledger.apply(transfer(f.alice, f.bob, 1))).rejects.toThrow(LedgerClosedError);
    state.gate.resolve();
    await closing;
    expect((await pending).ok).toBe(true);
  });
});

/** Wraps a staged store: records commits and holds each batch's sync until released. */
function instrumentStaged(inner: StagedLedgerStore) {
  const state = { commits: [] as number[], syncs: [] as Deferred[], failSync: null as Error | null };
  const store: StagedLedgerStore = {
    ...inner,
    async applyOpsStaged(ops) {
      const { results, durable } = await inner.applyOpsStaged(ops);
      state.commits.push(ops.length);
      const held = deferred();
      state.syncs.push(held);
      const failure = state.failSync;
      state.failSync = null;
      return {
        results,
        durable: held.promise.then(async () => {
          await durable;
          if (failure) throw failure;
        }),
      };
    },
  };
  return { store, state };
}

describe('group commit, pipelined over a store that syncs after committing', () => {
  let temp: TempSqlite;
  let inner: StagedLedgerStore;
  let f: Fixture;

  beforeAll(async () => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    inner = createSqliteLedgerStore(temp.db);
    f = await createFixture(inner, 1_000_000n);
  });
  afterAll(() => temp.remove());

  it('answers a batch only after its sync; the next batch forms while the sync runs and commits after it', async () => {
    const { store, state } = instrumentStaged(inner);
    const ledger = createLedger({ store });
    const answered: string[] = [];
    const send = (tag: string, count: number) =>
      Array.from({ length: count }, (_, i) => ledger.apply(transfer(f.alice, f.bob, 1)).then((r) => {
        expect(r.ok).toBe(true);
        answered.push(`${tag}${i}`);
      }));
    const first = send('a', 4);
    await settled();
    expect(state.commits).toEqual([4]);
    // Committed, visible to later transactions, answered to nobody until its sync returns.
    const second = send('b', 3);
    const more = send('c', 2);
    await settled();
    expect(MAX_UNDURABLE_BATCHES).toBe(1);
    expect(state.commits).toEqual([4]);
    expect(answered).toEqual([]);
    (state.syncs[0] as Deferred).resolve();
    await Promise.all(first);
    expect(answered).toEqual(['a0', 'a1', 'a2', 'a3']);
    await settled();
    // What arrived during the sync is one batch now.
    expect(state.commits).toEqual([4, 5]);
    (state.syncs[1] as Deferred).resolve();
    await Promise.all([...second, ...more]);
    expect(answered).toEqual(['a0', 'a1', 'a2', 'a3', 'b0', 'b1', 'b2', 'c0', 'c1']);
    await ledger.close();
  });

  it('rejects every caller of a batch whose sync failed, acknowledges none of them', async () => {
    const { store, state } = instrumentStaged(inner);
    const ledger = createLedger({ store });
    state.failSync = new Error('EIO');
    const batch = Array.from({ length: 5 }, () => ledger.apply(transfer(f.alice, f.bob, 1)));
    await settled();
    (state.syncs[0] as Deferred).resolve();
    expect((await Promise.allSettled(batch)).map((r) => r.status)).toEqual(Array(5).fill('rejected'));
    await ledger.close();
  });

  it('drains on close only after the last sync', async () => {
    const { store, state } = instrumentStaged(inner);
    const ledger = createLedger({ store });
    const pending = ledger.apply(transfer(f.alice, f.bob, 1));
    await settled();
    let closed = false;
    const closing = ledger.close().then(() => {
      closed = true;
    });
    await settled();
    expect(closed).toBe(false);
    (state.syncs[0] as Deferred).resolve();
    await closing;
    expect((await pending).ok).toBe(true);
  });
});
