// The stream money store (streams/money-store.ts), a contract suite on SQLite AND PostgreSQL:
// one transaction writes a batch's rows (and moves its rewards); the charges move in sweeps,
// one ledger transfer per stream, exactly once; a ref answers its first outcome, refusals
// included; a refused reward moves nothing and is recorded as refused; a sweep the ledger
// refuses moves nothing and stays due; a batch that cannot be written (a seq taken twice)
// leaves nothing behind, rows or money.
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { applyOpsInTransaction as applyPostgresOps, createPostgresLedgerStore, migratePostgresLedger } from '../../src/ledger/postgres/store.js';
import { applyOpsInTransaction as applySqliteOps, createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { balanceOf, type LedgerStore } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { createPostgresStreamMoneyStore, type MoneyStep, type StreamMoneyStore } from '../../src/streams/money-store.js';
import { createSqliteStreamMoneyStore, decodeLogRows, encodeLogRows } from '../../src/streams/money-store-sqlite.js';
import type { SqliteDatabase } from '../../src/db/sqlite.js';
import { createPostgresStreamStore, createSqliteStreamStore, type StreamStore } from '../../src/streams/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { moneyStreamRow } from '../support/stream-rows.js';

const usePostgres = await postgresAvailable();

/** The recent tier's rows on disk (of one stream, or all): stream_money_recent's and the log's (one JSON array per commit). */
function recentOnDisk(db: SqliteDatabase, streamId?: string): number {
  let count = Number((db.prepare('SELECT COUNT(*) AS n FROM stream_money_recent WHERE ? IS NULL OR stream_id = ?').get(streamId ?? null, streamId ?? null) as { n: bigint }).n);
  for (const { rows } of db.prepare('SELECT rows FROM stream_money_log').all() as { rows: string }[]) {
    count += decodeLogRows(rows).filter((row) => streamId === undefined || row.streamId === streamId).length;
  }
  return count;
}

const streamRow = moneyStreamRow;

for (const dialect of ['sqlite', 'postgres'] as const) {
describe.skipIf(dialect === 'postgres' && !usePostgres)(`stream money store on ${dialect}`, () => {
  let ledger: LedgerStore;
  let money: StreamMoneyStore;
  let streamStore: StreamStore;
  let database: TestDatabase | null = null;
  let close: () => Promise<void> = async () => {};
  let streams = 0;

  beforeAll(async () => {
    if (dialect === 'postgres') {
      database = await createTestDatabase('sluice_stream_money');
      await migratePostgresLedger(database.sql);
      ledger = createPostgresLedgerStore(database.sql);
      streamStore = await createPostgresStreamStore(database.sql);
      money = createPostgresStreamMoneyStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
      close = () => database!.drop();
    } else {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-'));
      const db = openSqlite({ path: path.join(dir, 'money.sqlite') });
      migrateSqliteLedger(db);
      ledger = createSqliteLedgerStore(db);
      streamStore = createSqliteStreamStore(db);
      money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now));
      close = async () => {
        db.close();
      };
    }
    expect((await ledger.createAccount({ id: 'test:source', ownerId: 'system', limitMsat: null, code: 'test' })).ok).toBe(true);
  });
  afterAll(async () => close());

  /** A stream account with a debt limit, and its app's account holding `appMsat`. */
  const setup = async (limitMsat: bigint, appMsat = 0n) => {
    const n = ++streams;
    const appId = `app_${dialect}_${n}`;
    const streamId = `st_${dialect}_${n}`;
    const accountId = `stream:${streamId}`;
    await ledger.createAccount({ id: accountId, ownerId: appId, limitMsat: msat(limitMsat), code: 'stream' });
    await streamStore.insertStream(streamRow(streamId, appId, limitMsat), { streamId, seq: 1, type: 'created', data: {}, at: 1 });
    await ledger.createAccount({ id: `app:${appId}`, ownerId: appId, limitMsat: msat(0n), code: 'app' });
    if (appMsat > 0n) {
      const [funded] = await ledger.applyOps([{ kind: 'transfer', debitAccountId: 'test:source', creditAccountId: `app:${appId}`, amountMsat: msat(appMsat), code: 'test' }]);
      expect(funded?.ok).toBe(true);
    }
    const step = (seq: number, ref: string, amount: bigint, extra: Partial<MoneyStep> = {}): MoneyStep => ({
      streamId, accountId, appId, seq, ref, name: ref.startsWith('r:') ? 'reward' : 'hit', amountMsat: msat(amount), at: 1_700_000_000_000 + seq, ...extra,
    });
    const balance = async (id: string) => balanceOf((await ledger.getAccount(id))!);
    return { streamId, accountId, appAccount: `app:${appId}`, step, balance };
  };

  it('writes the rows, moves a reward at once and the charges in a sweep, as one transfer per stream, once', async () => {
    const a = await setup(100_000n, 5_000n);
    const b = await setup(100_000n);
    const outcomes = await money.commit([a.step(2, 'c:a1', 1000n), b.step(2, 'c:b1', 10n), a.step(3, 'c:a2', 500n), a.step(4, 'r:w1', 300n), b.step(3, 'c:b2', 20n)], 1_700_000_000_000);
    expect(outcomes.map((o) => o.kind)).toEqual(['written', 'written', 'written', 'written', 'written']);
    // The reward moved with its row; the charges wait for their sweep.
    expect(await a.balance(a.accountId)).toBe(300n);
    expect(await a.balance(a.appAccount)).toBe(4700n);
    expect(await money.listUnsettled()).toEqual(expect.arrayContaining([a.streamId, b.streamId]));
    expect(await money.settle([a.streamId, b.streamId, 'st_none'], 1_700_000_000_001)).toBe(2);
    expect(await money.listUnsettled()).not.toContain(a.streamId);
    // Swept again with nothing new: nothing moves.
    expect(await money.settle([a.streamId, b.streamId], 1_700_000_000_002)).toBe(0);
    expect(await a.balance(a.accountId)).toBe(-1200n);
    expect(await a.balance(a.appAccount)).toBe(6200n);
    expect(await b.balance(b.accountId)).toBe(-30n);
    const transfers = await ledger.listTransfers({ accountId: a.accountId, limit: 10 });
    // Newest first: the stream's summed charges, named by its last charge seq, then the reward.
    expect(transfers.map((t) => [t.code, t.reference, t.amountMsat])).toEqual([
      ['stream_charges', `${a.streamId}/3/charges`, 1500n],
      ['reward:reward', `${a.streamId}/4/reward`, 300n],
    ]);
    expect((await money.listBetween(a.streamId, 0, 10, 100)).map((r) => [r.seq, r.ref, r.amountMsat, r.refused])).toEqual([
      [2, 'c:a1', 1000n, null], [3, 'c:a2', 500n, null], [4, 'r:w1', 300n, null],
    ]);
    expect((await money.listBetween(a.streamId, 2, 3, 100)).map((r) => r.seq)).toEqual([3]);
    expect((await money.listBetween(a.streamId, 0, 10, 2)).map((r) => r.seq)).toEqual([2, 3]);
    expect(await money.maxSeq(a.streamId)).toBe(4);
    expect(await money.maxSeq('st_none')).toBe(0);
    // The next sweep moves only what came after.
    await money.commit([a.step(5, 'c:a3', 7n)], 1_700_000_000_003);
    await money.settle([a.streamId], 1_700_000_000_004);
    expect(await a.balance(a.accountId)).toBe(-1207n);
    expect(await ledger.sumOfBalances()).toBe(0n);
  });

  it('answers a ref taken before, in an earlier batch or the same one, with the first step, and moves nothing again', async () => {
    const a = await setup(100_000n);
    await money.commit([a.step(1, 'c:x', 700n)], 1);
    const outcomes = await money.commit([a.step(2, 'c:x', 700n), a.step(3, 'c:y', 50n), a.step(4, 'c:y', 50n)], 2);
    expect(outcomes[0]).toEqual({ kind: 'replay', first: expect.objectContaining({ seq: 1, ref: 'c:x', amountMsat: 700n, refused: null }) });
    expect(outcomes[1]).toEqual({ kind: 'written', refused: null });
    expect(outcomes[2]).toEqual({ kind: 'replay', first: expect.objectContaining({ seq: 3, ref: 'c:y', amountMsat: 50n }) });
    await money.settle([a.streamId], 3);
    expect(await a.balance(a.accountId)).toBe(-750n);
    expect((await money.listBetween(a.streamId, 0, 10, 100)).map((r) => r.seq)).toEqual([1, 3]);
    expect(await money.findByRef(a.streamId, 'c:y')).toMatchObject({ seq: 3, amountMsat: 50n });
    expect(await money.findByRef(a.streamId, 'c:none')).toBeNull();
  });

  it('records a step the service refused, moves nothing, and answers its ref with that refusal', async () => {
    const a = await setup(1000n);
    expect(await money.commit([a.step(1, 'c:big', 5000n, { refused: 'LimitExceeded' })], 1)).toEqual([{ kind: 'written', refused: 'LimitExceeded' }]);
    expect(await money.listUnsettled()).not.toContain(a.streamId);
    expect(await money.settle([a.streamId], 1)).toBe(0);
    expect(await a.balance(a.accountId)).toBe(0n);
    const [again] = await money.commit([a.step(2, 'c:big', 5000n)], 2);
    expect(again).toEqual({ kind: 'replay', first: expect.objectContaining({ seq: 1, refused: 'LimitExceeded' }) });
    expect(await a.balance(a.accountId)).toBe(0n);
  });

  it("refuses a reward the app's balance cannot cover, and only that one", async () => {
    const a = await setup(0n, 1000n);
    const outcomes = await money.commit([a.step(1, 'r:ok', 600n), a.step(2, 'r:toomuch', 600n)], 1);
    expect(outcomes).toEqual([{ kind: 'written', refused: null }, { kind: 'written', refused: 'LimitExceeded' }]);
    expect(await a.balance(a.accountId)).toBe(600n);
    expect(await a.balance(a.appAccount)).toBe(400n);
    expect((await money.listBetween(a.streamId, 0, 10, 100)).map((r) => r.refused)).toEqual([null, 'LimitExceeded']);
    const [again] = await money.commit([a.step(3, 'r:toomuch', 600n)], 2);
    expect(again).toMatchObject({ kind: 'replay', first: { seq: 2, refused: 'LimitExceeded' } });
  });

  it('moves nothing when the ledger refuses a sweep (rows and ledger disagree), and keeps the stream due', async () => {
    const tight = await setup(1000n);
    const other = await setup(1000n);
    // The service checks the payer's limit before a charge is sent; these pass it by, as a bug would.
    await money.commit([tight.step(1, 'c:1', 600n), other.step(1, 'c:1', 100n), tight.step(2, 'c:2', 600n)], 1);
    await expect(money.settle([tight.streamId, other.streamId], 2)).rejects.toThrow(/refused/);
    expect(await tight.balance(tight.accountId)).toBe(0n);
    expect(await other.balance(other.accountId)).toBe(0n);
    expect(await money.listUnsettled()).toEqual(expect.arrayContaining([tight.streamId, other.streamId]));
    // Alone, the other stream settles.
    expect(await money.settle([other.streamId], 3)).toBe(1);
    expect(await other.balance(other.accountId)).toBe(-100n);
    expect(await ledger.sumOfBalances()).toBe(0n);
  });

  it('writes nothing and moves nothing when a batch cannot be written (a seq taken twice)', async () => {
    const a = await setup(100_000n);
    const b = await setup(100_000n);
    await money.commit([a.step(1, 'c:first', 10n)], 1);
    await expect(money.commit([b.step(1, 'c:ok', 10n), a.step(1, 'c:second', 10n)], 2)).rejects.toThrow();
    expect(await money.maxSeq(b.streamId)).toBe(0);
    expect(await money.settle([a.streamId, b.streamId], 3)).toBe(1);
    expect(await b.balance(b.accountId)).toBe(0n);
    expect(await a.balance(a.accountId)).toBe(-10n);
    expect(await money.findByRef(a.streamId, 'c:second')).toBeNull();
  });
});
}

// SQLite keeps new rows in a recent tier (memory and an unindexed table) and merges them into
// stream_money stream by stream (money-store-sqlite.ts). With tiny tiers every step crosses
// them: refs, resume pages and max seqs must read the same from either tier, and a store
// opened again on the same file (mid-merge or not) must find everything where it was.
describe('stream money store on sqlite: the recent tier and its merges', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-tiers-'));
  const file = path.join(dir, 'money.sqlite');
  const open = () => {
    const db = openSqlite({ path: file });
    migrateSqliteLedger(db);
    const ledger = createSqliteLedgerStore(db);
    createSqliteStreamStore(db);
    const streamStore = createSqliteStreamStore(db);
    const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now), { compactAt: 12 });
    return { db, ledger, money, streamStore };
  };

  it('answers refs, resumes and max seqs the same from either tier, across merges and reopens', async () => {
    let { db, ledger, money, streamStore } = open();
    const streams = ['st_a', 'st_b', 'st_c'];
    for (const id of streams) {
      expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
      await streamStore.insertStream(streamRow(id, 'app_t', 10n ** 12n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    }
    expect((await ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' })).ok).toBe(true);
    const step = (streamId: string, seq: number): MoneyStep => ({
      streamId, accountId: `stream:${streamId}`, appId: 'app_t', seq, ref: `c:${streamId}-${seq}`, name: 'hit', amountMsat: msat(BigInt(seq)), at: seq,
    });
    let sawMerging = false;
    for (let seq = 1; seq <= 60; seq += 1) {
      const outcomes = await money.commit(streams.map((id) => step(id, seq)), seq);
      expect(outcomes.every((o) => o.kind === 'written')).toBe(true);
      // Only settled rows are merged: a sweep now and then, as the settler's timer does.
      if (seq % 3 === 0) await money.settle(streams, seq);
      sawMerging ||= money.tiers().merging;
      // Reopened now and then, in whatever state the merge is in.
      if (seq % 17 === 0) {
        db.close();
        ({ db, ledger, money, streamStore } = open());
      }
    }
    expect(sawMerging).toBe(true);
    // Every ref answers its first step, whichever tier it is in; nothing moves again.
    // Charges not settled before a reopen are found again (they are in the recent tier).
    await money.commit(streams.map((id) => step(id, 61)), 61);
    db.close();
    ({ db, ledger, money, streamStore } = open());
    expect(await money.listUnsettled()).toEqual(expect.arrayContaining(streams));
    expect(await money.settle(streams, 999)).toBe(3);
    expect(await money.listUnsettled()).toEqual([]);
    const before = balanceOf((await ledger.getAccount('stream:st_b'))!);
    for (const seq of [1, 7, 30, 59, 60]) {
      const [again] = await money.commit([{ ...step('st_b', seq), seq: 1000 + seq }], 1000);
      expect(again).toMatchObject({ kind: 'replay', first: { seq, amountMsat: BigInt(seq), refused: null } });
      expect(await money.findByRef('st_b', `c:st_b-${seq}`)).toMatchObject({ seq });
    }
    expect(balanceOf((await ledger.getAccount('stream:st_b'))!)).toBe(before);
    expect(before).toBe(-BigInt((61 * 62) / 2));
    for (const id of streams) {
      expect((await money.listBetween(id, 0, 100, 1000)).map((r) => r.seq)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
      expect((await money.listBetween(id, 10, 20, 5)).map((r) => r.seq)).toEqual([11, 12, 13, 14, 15]);
      expect(await money.maxSeq(id)).toBe(61);
    }
    // Settle the tiers: keep committing until no merge is under way, then reopen once more.
    for (let seq = 62; money.tiers().merging || seq <= 62; seq += 1) {
      await money.commit([step('st_a', seq)], seq);
      await money.settle(['st_a'], seq);
    }
    db.close();
    ({ db, ledger, money, streamStore } = open());
    expect((await money.listBetween('st_a', 0, 1000, 1000)).length).toBeGreaterThan(61);
    expect((await money.listBetween('st_c', 0, 100, 1000)).map((r) => r.seq)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
    expect(await ledger.sumOfBalances()).toBe(0n);
    expect(recentOnDisk(db)).toBe(money.tiers().recent);
    db.close();
  });

  it('refuses a step written out of seq order (the sweeps count on the order), and writes nothing of its batch', async () => {
    const { db, ledger, money, streamStore } = open();
    const id = 'st_order';
    expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
    await streamStore.insertStream(streamRow(id, 'app_t', 10n ** 12n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    const step = (seq: number): MoneyStep => ({ streamId: id, accountId: `stream:${id}`, appId: 'app_t', seq, ref: `c:${seq}`, name: 'hit', amountMsat: msat(1n), at: seq });
    await money.commit([step(5)], 5);
    await expect(money.commit([step(3)], 6)).rejects.toThrow(/out of order/);
    await expect(money.commit([step(7), step(6)], 7)).rejects.toThrow(/out of order/);
    expect(await money.maxSeq(id)).toBe(5);
    expect(await money.listUnsettled()).toContain(id);
    expect(await money.unsettledMsat(id)).toBe(1n);
    // Settled, so its row does not hold back the next test's merges (only settled rows merge).
    expect(await money.settle([id], 8)).toBe(1);
    db.close();
  });

  it('a reopen at any point of a handover to the archive finds every row once', async () => {
    const chunked = () => {
      const db = openSqlite({ path: file });
      migrateSqliteLedger(db);
      const ledger = createSqliteLedgerStore(db);
      const streamStore = createSqliteStreamStore(db);
      const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now), { compactAt: 4, deleteChunkRows: 2 });
      return { db, ledger, money, streamStore };
    };
    let { db, ledger, money, streamStore } = chunked();
    const id = 'st_long';
    expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
    await streamStore.insertStream(streamRow(id, 'app_t', 10n ** 12n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    const step = (seq: number): MoneyStep => ({ streamId: id, accountId: `stream:${id}`, appId: 'app_t', seq, ref: `c:${seq}`, name: 'hit', amountMsat: msat(1n), at: seq });
    let midDelete = false;
    for (let seq = 1; seq <= 60; seq += 1) {
      await money.commit([step(seq)], seq);
      await money.settle([id], seq);
      // Reopened while the worker may hold a generation, or once it answered (the deletes then
      // under way, two rows per commit), or not at all.
      if (seq % 3 === 1) await money.archived();
      if (seq % 3 !== 2) {
        midDelete ||= db.prepare('SELECT 1 FROM stream_money_merge').get() !== undefined;
        db.close();
        ({ db, ledger, money, streamStore } = chunked());
      }
      expect(await money.maxSeq(id)).toBe(seq);
      expect((await money.listBetween(id, 0, 100, 1000)).map((r) => r.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    }
    expect(midDelete).toBe(true);
    const [again] = await money.commit([{ ...step(3), seq: 61 }], 61);
    expect(again).toMatchObject({ kind: 'replay', first: { seq: 3 } });
    expect(balanceOf((await ledger.getAccount(`stream:${id}`))!)).toBe(-60n);
    await money.archived();
    const archive = openSqlite({ path: path.join(dir, 'money.money.sqlite') });
    const archived = Number((archive.prepare('SELECT COUNT(*) AS n FROM stream_money WHERE stream_id = ?').get(id) as { n: bigint }).n);
    const recent = recentOnDisk(db, id);
    expect(archived).toBeGreaterThan(40);
    expect(archived + recent).toBeGreaterThanOrEqual(60);
    archive.close();
    money.close();
    db.close();
  });

  it('many streams interleaved leave memory in small chunks: every row is found once, in either tier, at every step', async () => {
    // Each chunk of 5 rows holds a row of most streams: each stream's rows leave from the front
    // of its list, a row or two at a time, and the list is cut once half of it has left (the
    // `first` index in money-store-sqlite.ts). 130 commits take st_i0 (a row each) past 64
    // rows gone, the cut's threshold.
    const dbFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-interleaved-')), 'money.sqlite');
    const db = openSqlite({ path: dbFile });
    migrateSqliteLedger(db);
    const ledger = createSqliteLedgerStore(db);
    const streamStore = createSqliteStreamStore(db);
    const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now), { compactAt: 40, deleteChunkRows: 5, deleteChunkGapMs: 0 });
    const streams = ['st_i0', 'st_i1', 'st_i2', 'st_i3'];
    expect((await ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' })).ok).toBe(true);
    for (const id of streams) {
      expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
      await streamStore.insertStream(streamRow(id, 'app_t', 10n ** 12n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    }
    const step = (streamId: string, seq: number): MoneyStep => ({
      streamId, accountId: `stream:${streamId}`, appId: 'app_t', seq, ref: `c:${seq}`, name: 'hit', amountMsat: msat(1n), at: seq,
    });
    for (let seq = 1; seq <= 130; seq += 1) {
      // One stream charges twice as often as the others: lists of different lengths.
      const charging = seq % 2 === 0 ? streams : streams.slice(0, 1);
      await money.commit(charging.map((id) => step(id, seq)), seq);
      await money.settle(charging, seq);
      if (seq % 10 === 0) await money.archived();
      if (seq % 13 === 0) {
        for (const id of streams) {
          const seqs = (await money.listBetween(id, 0, 1000, 1000)).map((r) => r.seq);
          const expected = Array.from({ length: seq }, (_, i) => i + 1).filter((n) => id === 'st_i0' || n % 2 === 0);
          expect(seqs, id).toEqual(expected);
          expect(await money.maxSeq(id)).toBe(expected[expected.length - 1]);
        }
      }
    }
    await money.archived();
    for (const id of streams) {
      for (const seq of [2, 64, 66, 128, 130]) {
        const [again] = await money.commit([{ ...step(id, seq), seq: 1000 }], 1000);
        expect(again, `${id} ${seq}`).toMatchObject({ kind: 'replay', first: { seq } });
      }
    }
    expect(money.tiers().recent).toBe(recentOnDisk(db));
    expect(money.tiers().recent).toBeLessThan(130 + 65 * 3);
    money.close();
    db.close();
  });
});

describe('stream_money_log rows (encodeLogRows, decodeLogRows)', () => {
  it('round-trip any rows, and a malformed row is refused, never guessed at', () => {
    fc.assert(fc.property(fc.array(fc.record({
      streamId: fc.string({ minLength: 1 }), seq: fc.nat(), ref: fc.string({ minLength: 1 }), name: fc.string({ minLength: 1 }),
      amountMsat: fc.bigInt({ min: 1n, max: (1n << 63n) - 1n }).map((amount) => msat(amount)), at: fc.nat(), refused: fc.option(fc.string(), { nil: null }),
    })), (rows) => {
      expect(decodeLogRows(encodeLogRows(rows))).toEqual(rows);
    }));
    for (const bad of ['{}', '[1]', '[["st",1,"c:1","hit",1000,1,null]]', '[["st",1,"c:1","hit","0",1,null]]', '[["st",1.5,"c:1","hit","1",1,null]]', '[["st",1,"c:1","hit","1",1,7]]']) {
      expect(() => decodeLogRows(bad), bad).toThrow(/stream_money_log/);
    }
  });
});

// The handover's rules: rows reach the archive only once synced in the main database; an
// archive that does not match the database fails the generation loudly and loses nothing;
// rows merged into the main database before the archive existed are still found.
describe('stream money store on sqlite: the archive', () => {
  const fresh = (options: Parameters<typeof createSqliteStreamMoneyStore>[2] = {}) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-archive-'));
    const file = path.join(dir, 'money.sqlite');
    const db = openSqlite({ path: file });
    migrateSqliteLedger(db);
    const ledger = createSqliteLedgerStore(db);
    const streamStore = createSqliteStreamStore(db);
    const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now), options);
    const archiveFile = path.join(dir, 'money.money.sqlite');
    const archivedRows = (): number => {
      const archive = openSqlite({ path: archiveFile });
      try {
        return Number((archive.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint }).n);
      } finally {
        archive.close();
      }
    };
    const addStream = async (id: string) => {
      expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
      await streamStore.insertStream(streamRow(id, 'app_t', 10n ** 12n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    };
    const step = (id: string, seq: number, ref = `c:${seq}`): MoneyStep => ({ streamId: id, accountId: `stream:${id}`, appId: 'app_t', seq, ref, name: 'hit', amountMsat: msat(1n), at: seq });
    return { dir, file, db, ledger, money, archiveFile, archivedRows, addStream, step };
  };

  it('deletes an archived generation a chunk at a time, at most one chunk per deleteChunkGapMs unless the tier falls behind', async () => {
    const t = fresh({ compactAt: 4, deleteChunkRows: 1, deleteChunkGapMs: 60_000 });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_g');
    let seq = 0;
    const commitOne = async () => {
      seq += 1;
      await t.money.commit([t.step('st_g', seq)], seq);
      await t.money.settle(['st_g'], seq);
    };
    // Settled rows make a generation once four wait; a later commit hands it over.
    while (t.archivedRows() === 0) {
      await commitOne();
      await t.money.archived();
    }
    const generation = t.archivedRows();
    expect(generation).toBeGreaterThanOrEqual(3);
    const handedOver = recentOnDisk(t.db);
    // The next commit deletes one chunk (a row here), then the gap (a minute) holds the rest...
    await commitOne();
    expect(recentOnDisk(t.db)).toBe(handedOver);
    const trajectory: number[] = [];
    for (let i = 0; i < 12; i += 1) {
      await commitOne();
      trajectory.push(recentOnDisk(t.db));
      expect(t.money.tiers().recent).toBe(trajectory[i]);
    }
    // ...until the tier holds more than twice compactAt rows: then a chunk after every commit,
    // larger than what the commit wrote, while the generation lasts.
    // (Behind, a commit of one row deletes a chunk plus twice that: 3 rows, or what is left.)
    const grown = Array.from({ length: 8 - handedOver }, (_, i) => handedOver + 1 + i);
    expect(trajectory.slice(0, grown.length + 1)).toEqual([...grown, 9 - Math.min(generation - 1, 3)]);
    // Every row is found once, in whichever tier it is.
    expect((await t.money.listBetween('st_g', 0, 100, 100)).map((row) => row.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    t.money.close();
    t.db.close();
  });

  it('goes on with the archive while no commit comes: a tier left behind by a burst is archived and deleted by itself', async () => {
    const t = fresh({ compactAt: 8, deleteChunkRows: 4, deleteChunkGapMs: 0 });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_idle');
    // A burst: 60 rows in commits of 6, settled once at the end, then nothing.
    let seq = 0;
    for (let commit = 0; commit < 10; commit += 1) {
      await t.money.commit(Array.from({ length: 6 }, () => t.step('st_idle', (seq += 1))), seq);
    }
    await t.money.settle(['st_idle'], seq);
    expect(t.money.tiers().recent).toBe(60);
    // No commit from here on: generations start, are archived and leave, a step every 10 ms.
    const deadline = Date.now() + 10_000;
    while (t.money.tiers().merging || t.money.tiers().recent >= 8) {
      if (Date.now() > deadline) throw new Error(`the tier stayed at ${JSON.stringify(t.money.tiers())}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(t.archivedRows() + t.money.tiers().recent).toBe(60);
    expect(recentOnDisk(t.db)).toBe(t.money.tiers().recent);
    expect((await t.money.listBetween('st_idle', 0, 100, 100)).map((row) => row.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    t.money.close();
    t.db.close();
  });

  it('hands a tier that fell far behind to the archive in generations of at most generationMaxRows rows, whole commits each', async () => {
    const t = fresh({ compactAt: 2, generationMaxRows: 8, deleteChunkRows: 100, deleteChunkGapMs: 0 });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_c');
    // 20 charges in commits of 2 with no sweep: the oldest is unsettled, so no generation starts.
    let seq = 0;
    for (let commit = 0; commit < 10; commit += 1) {
      await t.money.commit([t.step('st_c', seq + 1), t.step('st_c', seq + 2)], seq + 2);
      seq += 2;
    }
    await t.money.archived();
    expect(t.archivedRows()).toBe(0);
    await t.money.settle(['st_c'], seq);
    // The next commit starts a generation: 8 rows, not the 20 settled.
    const sizes: number[] = [];
    while (t.archivedRows() < 20) {
      const before = t.archivedRows();
      seq += 1;
      await t.money.commit([t.step('st_c', seq)], seq);
      await t.money.archived();
      if (t.archivedRows() > before) sizes.push(t.archivedRows() - before);
      await t.money.settle(['st_c'], seq);
    }
    expect(sizes[0]).toBe(8);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(8);
    expect((await t.money.listBetween('st_c', 0, 100, 100)).map((row) => row.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    t.money.close();
    t.db.close();
  });

  it('archives only settled charges (and refusals and rewards), whatever the order of commits and sweeps over several streams', async () => {
    // A generation ends before the oldest charge not yet settled, found per stream from its
    // first row past the settled seq (money-store-sqlite.ts firstPastSettled).
    const action = fc.oneof(
      fc.record({ kind: fc.constant('charge' as const), stream: fc.nat(2), refused: fc.boolean() }),
      fc.record({ kind: fc.constant('reward' as const), stream: fc.nat(2) }),
      fc.record({ kind: fc.constant('settle' as const), stream: fc.nat(2) }),
    );
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 10, maxLength: 60 }), async (actions) => {
      const t = fresh({ compactAt: 3, deleteChunkRows: 2, deleteChunkGapMs: 0 });
      await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
      const ids = ['st_p0', 'st_p1', 'st_p2'];
      for (const id of ids) await t.addStream(id);
      const seqs = [0, 0, 0];
      let now = 1;
      const archive = openSqlite({ path: t.archiveFile });
      const archivedRows = archive.prepare('SELECT stream_id, seq, ref, refused FROM stream_money');
      const settledSeqs = t.db.prepare('SELECT id, charges_settled_seq FROM streams');
      // Checked after every action, against the settled seqs of that moment: a charge archived
      // before its sweep is caught even if a later sweep settles it.
      const check = async (): Promise<void> => {
        await t.money.archived();
        const settledSeq = new Map((settledSeqs.all() as { id: string; charges_settled_seq: number }[]).map((row) => [row.id, Number(row.charges_settled_seq)]));
        for (const row of archivedRows.all() as { stream_id: string; seq: number; ref: string; refused: string | null }[]) {
          const settled = Number(row.seq) <= (settledSeq.get(row.stream_id) ?? 0) || row.refused !== null || row.ref.startsWith('r:');
          expect(settled, `${row.stream_id} seq ${row.seq} archived unsettled`).toBe(true);
        }
      };
      try {
        for (const next of actions) {
          now += 1;
          const id = ids[next.stream] as string;
          if (next.kind === 'settle') {
            await t.money.settle([id], now);
          } else {
            const seq = (seqs[next.stream] as number) + 1;
            seqs[next.stream] = seq;
            const step: MoneyStep = next.kind === 'reward'
              ? t.step(id, seq, `r:${seq}`)
              : { ...t.step(id, seq), ...(next.refused ? { refused: 'LimitExceeded' as const } : {}) };
            await t.money.commit([step], now);
          }
          await check();
        }
      } finally {
        archive.close();
      }
      for (const [index, id] of ids.entries()) {
        expect((await t.money.listBetween(id, 0, 1000, 1000)).map((row) => row.seq)).toEqual(Array.from({ length: seqs[index] as number }, (_, i) => i + 1));
      }
      t.money.close();
      t.db.close();
    }), { numRuns: 25 });
  });

  it('once behind, deletes more after a commit than the commit wrote, so the tier shrinks whatever the commits\' size', async () => {
    const t = fresh({ compactAt: 4, deleteChunkRows: 1, deleteChunkGapMs: 60_000 });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    const ids = ['st_b0', 'st_b1', 'st_b2', 'st_b3', 'st_b4', 'st_b5'];
    for (const id of ids) await t.addStream(id);
    let seq = 0;
    const commitAll = async () => {
      seq += 1;
      await t.money.commit(ids.map((id) => t.step(id, seq)), seq);
      await t.money.settle(ids, seq);
    };
    // Commits of 6 rows, chunks of 1: behind from the first generation on.
    for (let i = 0; i < 3; i += 1) await commitAll();
    await t.money.archived();
    const sizes: number[] = [];
    for (let i = 0; i < 40; i += 1) {
      await commitAll();
      await t.money.archived();
      sizes.push(t.money.tiers().recent);
    }
    // Bounded, not growing: 17-24 rows here, a cycle of three commits. Deleting only a chunk
    // plus what each commit wrote, the tier grew by about 6 rows every 3 commits (36 after 12).
    expect(Math.max(...sizes.slice(20))).toBeLessThanOrEqual(Math.max(...sizes.slice(0, 20)));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(30);
    expect(sizes[sizes.length - 1]).toBe(recentOnDisk(t.db));
    expect((await t.money.listBetween('st_b3', 0, 100, 100)).map((row) => row.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    t.money.close();
    t.db.close();
  });

  it('hands a generation over only once its rows are synced in the main database', async () => {
    let hold: (() => void)[] | null = null;
    const syncFile = async (): Promise<void> => {
      if (hold) await new Promise<void>((resolve) => hold!.push(resolve));
    };
    const t = fresh({ compactAt: 2, syncFile });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_s');
    await t.money.commit([t.step('st_s', 1), t.step('st_s', 2)], 1);
    await t.money.settle(['st_s'], 1);
    hold = [];
    const committing = t.money.commit([t.step('st_s', 3)], 2);
    // The generation (seqs 1 and 2, settled) waits for the sync its commit waits for.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(t.money.tiers().merging).toBe(true);
    expect(t.archivedRows()).toBe(0);
    const held: (() => void)[] = hold;
    hold = null;
    for (const release of held) release();
    await committing;
    await t.money.archived();
    expect(t.archivedRows()).toBe(2);
    t.money.close();
    t.db.close();
  });

  it('fails a generation the archive holds other rows for, loudly, and loses nothing', async () => {
    const errors: unknown[] = [];
    const logger = { error: (...args: unknown[]) => errors.push(args), debug: () => {} } as unknown as import('pino').Logger;
    const t = fresh({ compactAt: 3, logger });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_x');
    // Another copy's archive: seq 2 of this stream under another ref.
    const foreign = openSqlite({ path: t.archiveFile });
    foreign.prepare("INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) VALUES ('st_x', 2, 'c:other', 'hit', 1, 2, NULL)").run();
    foreign.close();
    await t.money.commit([t.step('st_x', 1), t.step('st_x', 2), t.step('st_x', 3)], 1);
    await t.money.settle(['st_x'], 1);
    await t.money.commit([t.step('st_x', 4)], 2);
    expect(t.money.tiers().merging).toBe(true);
    await t.money.archived();
    expect(errors.length).toBe(1);
    expect(((errors[0] as [{ err: Error }])[0].err).message).toMatch(/another row for stream st_x at seq 2/);
    // Nothing left the recent tier; every ref still answers; money is unchanged.
    expect(t.money.tiers()).toMatchObject({ recent: 4, merging: false });
    expect(t.db.prepare('SELECT 1 FROM stream_money_merge').get()).toBeUndefined();
    for (const seq of [1, 2, 3, 4]) expect(await t.money.findByRef('st_x', `c:${seq}`)).toMatchObject({ seq });
    expect((await t.money.listBetween('st_x', 0, 10, 10)).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    // Within the retry pause no generation is handed over again.
    await t.money.commit([t.step('st_x', 5)], 3);
    expect(t.money.tiers().merging).toBe(false);
    t.money.close();
    t.db.close();
  });

  it('reads and archives the rows written one per row before the log (migration 5), with the log\'s rows after them, across reopens', async () => {
    const t = fresh();
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_mix');
    t.money.close();
    // As the store left them before the log: one row each in stream_money_recent, settled.
    const insertRecent = t.db.prepare('INSERT INTO stream_money_recent (stream_id, seq, ref, name, amount_msat, at, refused) VALUES (?, ?, ?, ?, ?, ?, NULL)');
    for (const seq of [1, 2, 3]) insertRecent.run('st_mix', seq, `c:${seq}`, 'hit', 1, seq);
    t.db.prepare("UPDATE streams SET charges_settled_seq = 3 WHERE id = 'st_mix'").run();
    // No generation before the test asks for one (compactAt 100), then at 6 recent rows.
    const reopen = (compactAt = 6) => createSqliteStreamMoneyStore(t.db, (tx, ops, now) => applySqliteOps(tx, ops, now), { compactAt, deleteChunkRows: 2 });
    let money = reopen(100);
    expect(money.tiers().recent).toBe(3);
    // Two commits of two rows each go to the log, after the old rows' rowids.
    await money.commit([t.step('st_mix', 4), t.step('st_mix', 5)], 4);
    expect(await money.commit([t.step('st_mix', 6), t.step('st_mix', 7, 'c:2')], 6)).toEqual([{ kind: 'written', refused: null }, { kind: 'replay', first: expect.objectContaining({ seq: 2 }) }]);
    expect(Number((t.db.prepare('SELECT COUNT(*) AS n FROM stream_money_log').get() as { n: bigint }).n)).toBe(2);
    money.close();
    money = reopen();
    expect(money.tiers().recent).toBe(6);
    expect((await money.listBetween('st_mix', 0, 10, 10)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    // Settled through 6, then a 6th recent row starts a generation: both kinds leave for the archive.
    expect(await money.settle(['st_mix'], 7)).toBe(1);
    await money.commit([t.step('st_mix', 7, 'c:7')], 7);
    await money.archived();
    expect(t.archivedRows()).toBe(6);
    // The deletes, two rowids per commit: the old rows one by one, the log's whole rows only.
    for (let seq = 8; money.tiers().merging; seq += 1) {
      await money.commit([t.step('st_mix', seq, `c:${seq}`)], seq);
      if (seq === 9) {
        money.close();
        money = reopen();
      }
    }
    expect(Number((t.db.prepare('SELECT COUNT(*) AS n FROM stream_money_recent').get() as { n: bigint }).n)).toBe(0);
    expect(recentOnDisk(t.db)).toBe(money.tiers().recent);
    money.close();
    money = reopen();
    const seqs = (await money.listBetween('st_mix', 0, 100, 100)).map((r) => r.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(seqs.length).toBeGreaterThanOrEqual(8);
    for (const seq of [1, 3, 4, 6]) expect(await money.findByRef('st_mix', `c:${seq}`)).toMatchObject({ seq });
    expect(t.archivedRows() + money.tiers().recent).toBe(seqs.length);
    money.close();
    t.db.close();
  });

  it("finds rows merged into the main database before the archive existed (ADR 0017's first form), and archives a cut-short merge again", async () => {
    const t = fresh({ compactAt: 1_000 });
    await t.ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' });
    await t.addStream('st_old');
    t.money.close();
    // As the first form left it: seqs 1-3 merged into stream_money; 3-5 still recent (3 both, the
    // merge cut short by a stop, its cursor naming the stream it had reached).
    const insertMerged = t.db.prepare('INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) VALUES (?, ?, ?, ?, ?, ?, NULL)');
    const insertRecent = t.db.prepare('INSERT INTO stream_money_recent (stream_id, seq, ref, name, amount_msat, at, refused) VALUES (?, ?, ?, ?, ?, ?, NULL)');
    for (const seq of [1, 2, 3]) insertMerged.run('st_old', seq, `c:o${seq}`, 'hit', 1, seq);
    for (const seq of [3, 4, 5]) insertRecent.run('st_old', seq, `c:o${seq}`, 'hit', 1, seq);
    t.db.prepare("UPDATE streams SET charges_settled_seq = 5 WHERE id = 'st_old'").run();
    t.db.prepare("INSERT INTO stream_money_merge (id, through_rowid, below_stream, below_seq) VALUES (1, 3, 'st_old', 4)").run();
    const money = createSqliteStreamMoneyStore(t.db, (tx, ops, now) => applySqliteOps(tx, ops, now), { compactAt: 3 });
    expect(money.tiers().recent).toBe(3);
    expect(await money.findByRef('st_old', 'c:o2')).toMatchObject({ seq: 2 });
    expect((await money.listBetween('st_old', 0, 10, 10)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(await money.maxSeq('st_old')).toBe(5);
    const [replay, written] = await money.commit([t.step('st_old', 6, 'c:o1'), t.step('st_old', 7, 'c:o7')], 7);
    expect(replay).toMatchObject({ kind: 'replay', first: { seq: 1 } });
    expect(written).toEqual({ kind: 'written', refused: null });
    // The cut-short generation went to the archive whole (seq 3 is in both: the same row).
    await money.archived();
    expect(t.archivedRows()).toBe(3);
    expect((await money.listBetween('st_old', 0, 10, 10)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 7]);
    money.close();
    t.db.close();
  });
});
