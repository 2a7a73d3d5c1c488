// The SQLite stream money store finds a recent row by ref through its stream's index, keyed by
// 30 bits of the ref's hash (money-store-sqlite.ts, StreamRecent.index). Refs whose keys are
// the same must each still find their own row: below the index (a search of the stream's
// rows), with the index built over them or built before them, after they leave memory for the
// archive, and after a reopen builds everything again from the log.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { hashKey } from '../../src/ledger/sqlite/key-filter.js';
import { applyOpsInTransaction, createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { msat } from '../../src/money/msat.js';
import type { MoneyStep } from '../../src/streams/money-store.js';
import { createSqliteStreamMoneyStore } from '../../src/streams/money-store-sqlite.js';
import { createSqliteStreamStore } from '../../src/streams/store.js';
import { moneyStreamRow } from '../support/stream-rows.js';

const INDEX_KEY_MASK = 0x3fff_ffff;

/** Two refs of this stream whose hashes share their index key (found by search: about 2^15 tries). */
function refsSharingKey(streamId: string, prefix: string): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i += 1) {
    const ref = `c:${prefix}${i}`;
    const key = hashKey(streamId, ref)[0] & INDEX_KEY_MASK;
    const other = seen.get(key);
    if (other !== undefined) return [other, ref];
    seen.set(key, ref);
  }
}

const streamRow = (id: string) => moneyStreamRow(id, 'app_t', 10n ** 12n);

describe('stream money store on sqlite: refs whose index keys are the same', () => {
  it('each finds its own row, in the recent tier and its index, in the archive, and after a reopen', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-index-')), 'money.sqlite');
    const open = () => {
      const db = openSqlite({ path: file });
      migrateSqliteLedger(db);
      const ledger = createSqliteLedgerStore(db);
      const streamStore = createSqliteStreamStore(db);
      const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now), { compactAt: 40, deleteChunkRows: 5, deleteChunkGapMs: 0 });
      return { db, ledger, streamStore, money };
    };
    let { db, ledger, streamStore, money } = open();
    const id = 'st_keys';
    expect((await ledger.createAccount({ id: 'app:app_t', ownerId: 'app_t', limitMsat: msat(0n), code: 'app' })).ok).toBe(true);
    expect((await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_t', limitMsat: msat(10n ** 12n), code: 'stream' })).ok).toBe(true);
    await streamStore.insertStream(streamRow(id), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });

    // Pair a: both written before the stream has an index (it is built over them at its 8th
    // row). Pair b: the first written after, the second later still.
    const [a1, a2] = refsSharingKey(id, 'a');
    const [b1, b2] = refsSharingKey(id, 'b');
    expect(hashKey(id, a1)[0] & INDEX_KEY_MASK).toBe(hashKey(id, a2)[0] & INDEX_KEY_MASK);
    const refAt = new Map<number, string>([[2, a1], [4, a2], [12, b1], [30, b2]]);
    const refOf = (seq: number): string => refAt.get(seq) ?? `c:plain-${seq}`;
    const step = (seq: number, ref = refOf(seq)): MoneyStep => ({
      streamId: id, accountId: `stream:${id}`, appId: 'app_t', seq, ref, name: 'hit', amountMsat: msat(BigInt(seq)), at: seq,
    });
    let seq = 0;
    const expectEachFound = async (): Promise<void> => {
      for (const [at, ref] of refAt) {
        if (at > seq) continue;
        expect(await money.findByRef(id, ref), ref).toMatchObject({ seq: at, ref, amountMsat: BigInt(at) });
        // Retried under a new seq, it is answered with its first step, and nothing is written.
        const [again] = await money.commit([step(10_000 + at, ref)], 10_000);
        expect(again, ref).toMatchObject({ kind: 'replay', first: { seq: at, ref } });
      }
      expect(await money.findByRef(id, 'c:never-written')).toBeNull();
      expect(await money.maxSeq(id)).toBe(seq);
    };
    for (seq = 1; seq <= 35; seq += 1) {
      expect(await money.commit([step(seq)], seq)).toMatchObject([{ kind: 'written' }]);
      if (refAt.has(seq) || seq === 7 || seq === 8) await expectEachFound();
    }
    seq -= 1;
    await expectEachFound();

    // Settled and archived: the generation leaves memory a chunk at a time, after each commit.
    expect(await money.settle([id], 100)).toBe(1);
    await money.archived();
    for (let more = 0; more < 20; more += 1) {
      seq += 1;
      await money.commit([step(seq)], seq);
      await money.settle([id], seq);
      await money.archived();
      await expectEachFound();
    }
    expect(money.tiers().recent).toBeLessThan(seq);
    // The keys the pairs shared left the index with their rows: one key per live row.
    expect(money.tiers().indexKeys).toBe(money.tiers().recent);

    // A reopen reads the recent tier back from the log and builds the index again.
    money.close();
    db.close();
    ({ db, ledger, streamStore, money } = open());
    await expectEachFound();
    expect((await money.listBetween(id, 0, seq, 1000)).map((row) => row.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    expect((await money.listBetween(id, 0, seq, 1000)).filter((row) => row.ref !== refOf(row.seq))).toEqual([]);
    money.close();
    db.close();
  });

  it('reads a row back from a log row in another JSON form, and refuses one the database no longer holds as written', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-readback-')), 'money.sqlite');
    const db = openSqlite({ path: file });
    migrateSqliteLedger(db);
    const streamStore = createSqliteStreamStore(db);
    await streamStore.insertStream(streamRow('st_form'), { streamId: 'st_form', seq: 1, type: 'created', data: {}, at: 1 });
    // Valid JSON, not encodeLogRows' exact text (spaces): memory cannot know where each entry
    // is, and reads the whole log row back instead.
    const spaced = '[ ["st_form", 2, "c:one", "hit", "1000", 5, null], ["st_form", 3, "c:two", "hit", "2000", 6, "insufficient_funds"] ]';
    db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (1, 2, ?)').run(spaced);
    const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now));
    expect(await money.findByRef('st_form', 'c:one')).toEqual({ seq: 2, ref: 'c:one', name: 'hit', amountMsat: 1000n, at: 5, refused: null });
    expect(await money.findByRef('st_form', 'c:two')).toEqual({ seq: 3, ref: 'c:two', name: 'hit', amountMsat: 2000n, at: 6, refused: 'insufficient_funds' });
    expect((await money.listBetween('st_form', 0, 10, 10)).map((row) => row.ref)).toEqual(['c:one', 'c:two']);
    // Its rows written after these are found where the commit put them.
    const [written] = await money.commit([{ streamId: 'st_form', accountId: 'stream:st_form', appId: 'app_t', seq: 4, ref: 'c:three', name: 'hit', amountMsat: msat(3000n), at: 7 }], 7);
    expect(written).toEqual({ kind: 'written', refused: null });
    expect(await money.findByRef('st_form', 'c:three')).toMatchObject({ seq: 4, amountMsat: 3000n });
    // A character past U+FFFF (two UTF-16 units, one character for SQLite) before a row in its
    // log row: the row's offsets do not hold in SQLite's count, and it is read whole instead.
    const wide = await money.commit([
      { streamId: 'st_form', accountId: 'stream:st_form', appId: 'app_t', seq: 5, ref: 'c:wide', name: 'hit \u{1F600}', amountMsat: msat(5000n), at: 8 },
      { streamId: 'st_form', accountId: 'stream:st_form', appId: 'app_t', seq: 6, ref: 'c:after-wide', name: 'hit', amountMsat: msat(6000n), at: 9 },
    ], 9);
    expect(wide).toEqual([{ kind: 'written', refused: null }, { kind: 'written', refused: null }]);
    expect(await money.findByRef('st_form', 'c:after-wide')).toEqual({ seq: 6, ref: 'c:after-wide', name: 'hit', amountMsat: 6000n, at: 9, refused: null });
    expect(await money.findByRef('st_form', 'c:wide')).toMatchObject({ seq: 5, name: 'hit \u{1F600}' });
    expect((await money.listBetween('st_form', 0, 10, 10)).map((row) => row.seq)).toEqual([2, 3, 4, 5, 6]);
    expect((await money.listBetween('st_form', 2, 10, 2)).map((row) => row.seq)).toEqual([3, 4]);
    // The log row changed underneath (another seq): never answered as if it were the row.
    db.prepare('UPDATE stream_money_log SET rows = ? WHERE first_rowid = 1').run(spaced.replace('"st_form", 2,', '"st_form", 9,'));
    await expect(money.findByRef('st_form', 'c:one')).rejects.toThrow(/recent row 1 is not in the database as it was written/);
    money.close();
    db.close();
  });
});
