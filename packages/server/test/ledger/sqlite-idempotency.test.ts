/**
 * The SQLite idempotency index in two tiers (src/ledger/sqlite/idempotency.ts): records in
 * the recent tier (memory + an append-only table), records merged into the key-ordered
 * table, and restarts (a new connection to the same file) before, during and after merges.
 * Every replay must return the first result, whichever tier holds it; a key written by a
 * caller transaction that rolled back must not count. Also the account cache
 * (src/ledger/sqlite/account-cache.ts): it must never hold a row a caller's transaction wrote.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite, type SqliteDatabase } from '../../src/db/sqlite.js';
import { idempotencyIndexFor } from '../../src/ledger/sqlite/idempotency.js';
import {
  applyOpsInTransaction,
  createAccountInTransaction,
  createSqliteLedgerStore,
  migrateSqliteLedger,
} from '../../src/ledger/sqlite/store.js';
import type { LedgerOp, LedgerResult, LedgerStore } from '../../src/ledger/store.js';
import { m, transfer } from './contract.js';
import { openTempSqlite, type TempSqlite } from './temp-sqlite.js';

const COMPACT_AT = 4;

interface Harness {
  temp: TempSqlite;
  db: SqliteDatabase;
  store: LedgerStore;
  /** Closes the connection and opens a new one on the same file, as a process restart does. */
  restart(): void;
  recentSize(): number;
  mainSize(): number;
  recentTableSize(): number;
}

const harnesses: Harness[] = [];
afterEach(() => {
  for (const h of harnesses.splice(0)) {
    if (h.db.open) h.db.close();
    h.temp.remove();
  }
});

/** compactAt and slice size of the index; the default merges a whole tier in one maintain call. */
interface Tiers {
  compactAt: number;
  slice?: number;
}

async function open(tiers: Tiers = { compactAt: COMPACT_AT }): Promise<Harness> {
  const temp = openTempSqlite();
  migrateSqliteLedger(temp.db);
  const options = { idempotencyCompactAt: tiers.compactAt, ...(tiers.slice === undefined ? {} : { idempotencyMergeSlice: tiers.slice }) };
  const h: Harness = {
    temp,
    db: temp.db,
    store: createSqliteLedgerStore(temp.db, options),
    restart() {
      h.db.close();
      h.db = openSqlite({ path: temp.path });
      migrateSqliteLedger(h.db);
      h.store = createSqliteLedgerStore(h.db, options);
    },
    recentSize: () => idempotencyIndexFor(h.db, tiers.compactAt).recentSize,
    mainSize: () => Number(h.db.prepare('SELECT COUNT(*) FROM ledger_idempotency').pluck().get()),
    recentTableSize: () => Number(h.db.prepare('SELECT COUNT(*) FROM ledger_idempotency_recent').pluck().get()),
  };
  harnesses.push(h);
  for (const [id, limitMsat] of [['system', null], ['alice', m(0)], ['bob', m(0)]] as const) {
    const created = await h.store.createAccount({ id, ownerId: id, limitMsat, code: 'test' });
    if (!created.ok) throw new Error(`account ${id} not created`);
  }
  const [funded] = await h.store.applyOps([transfer('system', 'alice', 1_000_000)]);
  if (!funded?.ok) throw new Error('funding refused');
  return h;
}

async function applyOne(store: LedgerStore, op: LedgerOp): Promise<LedgerResult> {
  const [result] = await store.applyOps([op]);
  if (!result) throw new Error('no result');
  return result;
}

/** What a replay of `first` must return: the same outcome, marked replayed. */
function asReplay(first: LedgerResult): LedgerResult {
  return { ...first, replayed: true };
}

const keyed = (key: string, amount: number, extra: Partial<Extract<LedgerOp, { kind: 'transfer' }>> = {}): LedgerOp =>
  transfer('alice', 'bob', amount, { idempotencyKey: key, ...extra });

describe('SQLite idempotency tiers', () => {
  it('replays from the recent tier, then from the key-ordered table after a merge', async () => {
    const h = await open();
    const first = await applyOne(h.store, keyed('k-1', 10));
    expect(h.recentSize()).toBe(1);
    expect(await applyOne(h.store, keyed('k-1', 10))).toEqual(asReplay(first));
    expect(await applyOne(h.store, keyed('k-1', 11))).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });

    // Fill the recent tier to COMPACT_AT records; the next batch carries the merge of its one
    // key range, the one after that the deletion of the merged rows from the recent table.
    for (let i = 2; i <= COMPACT_AT; i++) await applyOne(h.store, keyed(`k-${i}`, 10));
    expect(h.recentSize()).toBe(COMPACT_AT);
    await applyOne(h.store, transfer('alice', 'bob', 1));
    expect(h.recentSize()).toBe(0);
    expect(h.recentTableSize()).toBe(COMPACT_AT);
    await applyOne(h.store, transfer('alice', 'bob', 1));
    expect(h.recentTableSize()).toBe(0);
    expect(h.mainSize()).toBe(COMPACT_AT);
    expect(await applyOne(h.store, keyed('k-1', 10))).toEqual(asReplay(first));
    expect(await applyOne(h.store, keyed('k-1', 11))).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });
    expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(m(10 * COMPACT_AT + 2));
  });

  it('replays refusals from both tiers and across a restart', async () => {
    const h = await open();
    const refused = await applyOne(h.store, keyed('too-much', 2_000_000));
    expect(refused).toEqual({ ok: false, error: 'LimitExceeded', replayed: false });
    h.restart();
    expect(await applyOne(h.store, keyed('too-much', 2_000_000))).toEqual(asReplay(refused));
    for (let i = 1; i < COMPACT_AT; i++) await applyOne(h.store, keyed(`fill-${i}`, 1));
    await h.store.applyOps([transfer('alice', 'bob', 1)]);
    expect(h.recentSize()).toBe(0);
    expect(h.mainSize()).toBe(COMPACT_AT);
    h.restart();
    expect(await applyOne(h.store, keyed('too-much', 2_000_000))).toEqual(asReplay(refused));
  });

  it('keeps records of the recent tier across a restart (read back into memory)', async () => {
    const h = await open();
    const first = await applyOne(h.store, keyed('before-restart', 7, { pending: true }));
    expect(h.recentTableSize()).toBe(1);
    h.restart();
    expect(h.recentSize()).toBe(1);
    expect(await applyOne(h.store, keyed('before-restart', 7, { pending: true }))).toEqual(asReplay(first));
    expect((await h.store.getAccount('alice'))?.debitsPendingMsat).toBe(m(7));
  });

  it('answers every key after restarts straddling a merge', async () => {
    const h = await open();
    const firsts = new Map<string, LedgerResult>();
    // Two keys, restart (recent tier read back), two more (tier full), one whose batch
    // merges a-d first, two more, restart: a-d in the key-ordered table, e-g in the recent tier.
    for (const key of ['a', 'b']) firsts.set(key, await applyOne(h.store, keyed(key, 3)));
    h.restart();
    expect(h.recentSize()).toBe(2);
    for (const key of ['c', 'd', 'e']) firsts.set(key, await applyOne(h.store, keyed(key, 3)));
    expect(h.mainSize()).toBe(4);
    for (const key of ['f', 'g']) firsts.set(key, await applyOne(h.store, keyed(key, 3)));
    h.restart();
    expect(h.recentSize()).toBe(3);
    for (const [key, first] of firsts) expect(await applyOne(h.store, keyed(key, 3))).toEqual(asReplay(first));
    expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(m(3 * firsts.size));
    expect(await h.store.sumOfBalances()).toBe(0n);
  });

  it('rebuilds fingerprints of stored transfer requests: a hold posted for less replays as created, in every tier', async () => {
    const h = await open();
    const hold = keyed('hold', 500, { pending: true, reference: 'ref/1' });
    const first = await applyOne(h.store, hold);
    if (!first.ok) throw new Error('hold refused');
    const post: LedgerOp = { kind: 'post', pendingId: first.transfer.id, amountMsat: m(200), idempotencyKey: 'post' };
    const posted = await applyOne(h.store, post);
    expect(posted).toMatchObject({ ok: true, transfer: { state: 'posted', amountMsat: m(200) } });
    const check = async () => {
      expect(await applyOne(h.store, hold)).toEqual(asReplay(first));
      expect(await applyOne(h.store, post)).toEqual(asReplay(posted));
      // The reference is the caller's annotation, not an argument: a retry carrying another
      // one replays the first transfer, first reference included.
      expect(await applyOne(h.store, keyed('hold', 500, { pending: true, reference: 'ref/2' }))).toEqual(asReplay(first));
      // Each argument of the request is part of the rebuilt fingerprint.
      for (const other of [
        keyed('hold', 200, { pending: true, reference: 'ref/1' }),
        keyed('hold', 500, { reference: 'ref/1' }),
        keyed('hold', 500, { pending: true, reference: 'ref/1', code: 'other' }),
        transfer('bob', 'alice', 500, { pending: true, reference: 'ref/1', idempotencyKey: 'hold' }),
        { ...post, amountMsat: m(201) },
      ]) {
        expect(await applyOne(h.store, other)).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });
      }
    };
    await check();
    h.restart();
    await check();
    for (let i = 2; i < COMPACT_AT; i++) await applyOne(h.store, keyed(`fill-${i}`, 1));
    await h.store.applyOps([transfer('alice', 'bob', 1)]);
    expect(h.mainSize()).toBe(COMPACT_AT);
    await check();
    h.restart();
    await check();
  });

  it('does not count a key written by a caller transaction that rolled back', async () => {
    const h = await open();
    expect(() =>
      h.db.transaction(() => {
        const [result] = applyOpsInTransaction(h.db, [keyed('rolled-back', 5)], Date.now());
        expect(result?.ok).toBe(true);
        throw new Error('caller failed');
      })(),
    ).toThrow('caller failed');
    // Another caller transaction, before any store batch: the key is still unknown.
    const again = h.db.transaction(() => applyOpsInTransaction(h.db, [keyed('rolled-back', 4)], Date.now())[0])();
    expect(again).toMatchObject({ ok: true, replayed: false, transfer: { amountMsat: m(4) } });
    expect(() =>
      h.db.transaction(() => {
        applyOpsInTransaction(h.db, [keyed('rolled-back-twice', 5)], Date.now());
        throw new Error('caller failed again');
      })(),
    ).toThrow('caller failed again');
    // Same key, other arguments: a new request, not a conflict, since nothing was kept.
    const fresh = await applyOne(h.store, keyed('rolled-back-twice', 6));
    expect(fresh).toMatchObject({ ok: true, replayed: false, transfer: { amountMsat: m(6) } });
    expect(await applyOne(h.store, keyed('rolled-back-twice', 6))).toEqual(asReplay(fresh));
    expect(await applyOne(h.store, keyed('rolled-back', 4))).toEqual(asReplay(again as LedgerResult));
    expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(m(10));
  });

  it('keeps a key written by a caller transaction that committed, through a merge and a restart', async () => {
    const h = await open();
    const first = h.db.transaction(() => applyOpsInTransaction(h.db, [keyed('committed', 5)], Date.now())[0]).immediate();
    expect(first?.ok).toBe(true);
    expect(await applyOne(h.store, keyed('committed', 5))).toEqual(asReplay(first as LedgerResult));
    for (let i = 1; i < COMPACT_AT; i++) await applyOne(h.store, keyed(`fill-${i}`, 1));
    await h.store.applyOps([transfer('alice', 'bob', 1)]);
    expect(h.recentSize()).toBe(0);
    expect(h.mainSize()).toBe(COMPACT_AT);
    expect(await applyOne(h.store, keyed('committed', 5))).toEqual(asReplay(first as LedgerResult));
    h.restart();
    expect(await applyOne(h.store, keyed('committed', 5))).toEqual(asReplay(first as LedgerResult));
  });

  it('merges a full tier in slices of ascending key ranges; restarts between slices lose and duplicate nothing', async () => {
    const h = await open({ compactAt: 8, slice: 2 });
    const index = () => idempotencyIndexFor(h.db, 8);
    const firsts = new Map<string, LedgerResult>();
    const keys = ['q', 'c', 'x', 'a', 'm', 'f', 'z', 'k'];
    for (const key of keys) firsts.set(key, await applyOne(h.store, keyed(key, 2)));
    expect(h.recentSize()).toBe(8);
    const checkAll = async () => {
      for (const [key, first] of firsts) expect(await applyOne(h.store, keyed(key, 2))).toEqual(asReplay(first));
      expect(await applyOne(h.store, keyed('a', 3))).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });
    };
    // Each batch of the store runs one slice first; restart after every one of them.
    let sawPartial = false;
    for (let round = 0; round < 20 && (round === 0 || index().merging); round++) {
      const fresh = `n-${round}`;
      firsts.set(fresh, await applyOne(h.store, keyed(fresh, 2)));
      const inMain = h.mainSize();
      if (index().merging && inMain > 0 && inMain < keys.length) sawPartial = true;
      // Every key counts once: in memory (recent) or in the key-ordered table.
      expect(h.recentSize() + h.mainSize()).toBe(firsts.size);
      h.restart();
      expect(h.recentSize() + h.mainSize()).toBe(firsts.size);
      await checkAll();
    }
    expect(sawPartial).toBe(true);
    expect(index().merging).toBe(false);
    expect(h.recentTableSize()).toBe(h.recentSize());
    expect(h.db.prepare('SELECT COUNT(*) FROM ledger_idempotency_merge').pluck().get()).toBe(0n);
    await checkAll();
    expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(m(2 * firsts.size));
  });

  it.each([
    ['whole tiers', { compactAt: COMPACT_AT }],
    ['slices of 2', { compactAt: 6, slice: 2 }],
  ] as const)('matches a model of first results under random batches, merges and restarts (%s)', async (_name, tiers) => {
    type Step = { type: 'batch'; ops: { key: number; amount: number }[] } | { type: 'restart' };
    const stepArb: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          type: fc.constant('batch' as const),
          ops: fc.array(fc.record({ key: fc.integer({ min: 0, max: 11 }), amount: fc.integer({ min: 1, max: 3 }) }), {
            minLength: 1,
            maxLength: 5,
          }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ type: 'restart' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 14 }), async (steps) => {
        const h = await open(tiers);
        const firsts = new Map<number, { amount: number; result: LedgerResult }>();
        let moved = 0n;
        for (const step of steps) {
          if (step.type === 'restart') {
            h.restart();
            continue;
          }
          const results = await h.store.applyOps(step.ops.map((op) => keyed(`key-${op.key}`, op.amount)));
          step.ops.forEach((op, i) => {
            const result = results[i] as LedgerResult;
            const first = firsts.get(op.key);
            if (!first) {
              expect(result).toMatchObject({ ok: true, replayed: false });
              firsts.set(op.key, { amount: op.amount, result });
              moved += BigInt(op.amount);
            } else if (first.amount === op.amount) {
              expect(result).toEqual(asReplay(first.result));
            } else {
              expect(result).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });
            }
          });
        }
        expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(moved);
        expect(h.recentSize() + h.mainSize()).toBe(firsts.size);
        // Rows of a generation being merged stay in the recent table until all of it is merged.
        if (idempotencyIndexFor(h.db, tiers.compactAt).merging) expect(h.recentTableSize()).toBeGreaterThanOrEqual(h.recentSize());
        else expect(h.recentTableSize()).toBe(h.recentSize());
        h.db.close();
        h.temp.remove();
        harnesses.splice(harnesses.indexOf(h), 1);
      }),
      { numRuns: 40 },
    );
  });
});

describe('SQLite account cache', () => {
  it('sees balances changed by a committed caller transaction', async () => {
    const h = await open();
    // The store's batch caches alice; a caller transaction then spends most of her balance.
    expect(await applyOne(h.store, transfer('alice', 'bob', 1))).toMatchObject({ ok: true });
    const spent = h.db.transaction(() => applyOpsInTransaction(h.db, [transfer('alice', 'bob', 999_000)], Date.now())[0]).immediate();
    expect(spent?.ok).toBe(true);
    expect(await applyOne(h.store, transfer('alice', 'bob', 1000))).toEqual({ ok: false, error: 'LimitExceeded', replayed: false });
    expect(await applyOne(h.store, transfer('alice', 'bob', 999))).toMatchObject({ ok: true });
    expect((await h.store.getAccount('alice'))?.creditsPostedMsat).toBe(m(1_000_000));
    expect((await h.store.getAccount('bob'))?.creditsPostedMsat).toBe(m(1_000_000));
  });

  it('does not keep balances of a caller transaction that rolled back', async () => {
    const h = await open();
    expect(() =>
      h.db.transaction(() => {
        applyOpsInTransaction(h.db, [transfer('alice', 'bob', 1_000_000)], Date.now());
        throw new Error('caller failed');
      })(),
    ).toThrow('caller failed');
    expect(await applyOne(h.store, transfer('alice', 'bob', 1_000_000))).toMatchObject({ ok: true });
    expect(await h.store.sumOfBalances()).toBe(0n);
  });

  it('does not keep an account that a rolled-back caller transaction created and read', async () => {
    const h = await open();
    expect(() =>
      h.db.transaction(() => {
        createAccountInTransaction(h.db, { id: 'ghost', ownerId: 'ghost', limitMsat: m(0), code: 'test' }, Date.now());
        const [refused] = applyOpsInTransaction(h.db, [transfer('ghost', 'bob', 1)], Date.now());
        expect(refused).toEqual({ ok: false, error: 'LimitExceeded', replayed: false });
        throw new Error('caller failed');
      })(),
    ).toThrow('caller failed');
    expect(await applyOne(h.store, transfer('ghost', 'bob', 1))).toEqual({ ok: false, error: 'AccountNotFound', replayed: false });
  });
});
