// The archive's worker (streams/money-archive.ts) on its own, fed recent rows written straight
// into the main database: it sorts a generation (the log rows' joined JSON) in (stream, seq)
// order and writes it in slices, a transaction each; a generation handed over twice is checked
// and skipped; a row that differs fails its slice and the generation (the slices before it
// stay archived, and the generation handed over again fails the same way); a log row whose
// array does not match its rowids fails it, named; a stream whose rows are out of seq order
// (written by a build that did not refuse it) is still archived whole.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite, type SqliteDatabase } from '../../src/db/sqlite.js';
import { migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { msat } from '../../src/money/msat.js';
import { openMoneyArchive, type MoneyArchive } from '../../src/streams/money-archive.js';
import { encodeLogRows } from '../../src/streams/money-store-sqlite.js';
import type { MoneyRow } from '../../src/streams/money-store.js';
import { createSqliteStreamStore } from '../../src/streams/store.js';

type LogRow = MoneyRow & { streamId: string };

const open: { db: SqliteDatabase; archive: MoneyArchive }[] = [];
afterEach(() => {
  for (const { db, archive } of open.splice(0)) {
    archive.close();
    db.close();
  }
});

function fresh(sliceRows?: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-archive-worker-'));
  const db = openSqlite({ path: path.join(dir, 'main.sqlite') });
  migrateSqliteLedger(db);
  createSqliteStreamStore(db);
  const archivePath = path.join(dir, 'main.money.sqlite');
  const archive = openMoneyArchive(db, archivePath, sliceRows === undefined ? {} : { sliceRows });
  open.push({ db, archive });
  let nextRowid = 1;
  /** One commit's rows as one log row, as the money store writes them. */
  const writeLog = (rows: LogRow[]): number => {
    db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)').run(nextRowid, nextRowid + rows.length - 1, encodeLogRows(rows));
    nextRowid += rows.length;
    return nextRowid - 1;
  };
  const archived = () => archive.db.prepare('SELECT stream_id, seq, ref FROM stream_money ORDER BY stream_id, seq').all() as { stream_id: string; seq: bigint | number; ref: string }[];
  return { db, archive, writeLog, archived };
}

const row = (streamId: string, seq: number, ref = `c:${seq}`): LogRow => ({ streamId, seq, ref, name: 'hit', amountMsat: msat(1000n + BigInt(seq)), at: 1_700_000_000_000 + seq, refused: null });

describe('the stream money archive worker', () => {
  it.each([
    ['in one slice', undefined],
    ['in slices of 7 rows', 7],
    ['in slices of one row', 1],
  ])('archives a generation of several log rows in (stream, seq) order %s, and the same generation again changes nothing', async (_, sliceRows) => {
    const t = fresh(sliceRows);
    const streams = ['st_c', 'st_a', 'st_b'];
    let through = 0;
    // 3 streams x 100 seqs, interleaved, in commits of 30 rows: 300 rows, several chunks of 64.
    const all: LogRow[] = [];
    for (let seq = 1; seq <= 100; seq += 1) for (const id of streams) all.push(row(id, seq));
    for (let from = 0; from < all.length; from += 30) through = t.writeLog(all.slice(from, from + 30));
    expect(await t.archive.archive(0, through)).toBe(300);
    const expected = ['st_a', 'st_b', 'st_c'].flatMap((id) => Array.from({ length: 100 }, (_, i) => ({ stream_id: id, seq: i + 1, ref: `c:${i + 1}` })));
    const normalize = (rows: { stream_id: string; seq: bigint | number; ref: string }[]) => rows.map((r) => ({ ...r, seq: Number(r.seq) }));
    expect(normalize(t.archived())).toEqual(expected);
    const money = t.archive.db.prepare('SELECT amount_msat, at FROM stream_money WHERE stream_id = ? AND seq = ?').get('st_b', 77) as { amount_msat: bigint | number; at: bigint | number };
    expect(BigInt(money.amount_msat)).toBe(1077n);
    expect(BigInt(money.at)).toBe(1_700_000_000_077n);
    // Handed over again (a crash before the cursor was recorded): nothing is inserted, and
    // every row is found equal.
    expect(await t.archive.archive(0, through)).toBe(300);
    expect(normalize(t.archived())).toEqual(expected);
  });

  it('fails a generation that meets a different row, and writes none of it', async () => {
    const t = fresh();
    const first = t.writeLog(Array.from({ length: 64 }, (_, i) => row('st_x', i + 1)));
    expect(await t.archive.archive(0, first)).toBe(64);
    // Another database's rows for the same stream and seqs, and new ones after them.
    const through = t.writeLog([...Array.from({ length: 64 }, (_, i) => row('st_x', i + 1, `c:other-${i + 1}`)), ...Array.from({ length: 64 }, (_, i) => row('st_x', 65 + i))]);
    await expect(t.archive.archive(first, through)).rejects.toThrow(/does not belong to this database/);
    expect(t.archived()).toHaveLength(64);
  });

  it('fails a generation at the slice with a different row: the slices before it stay archived, and handed over again it fails the same way', async () => {
    const t = fresh(10);
    const first = t.writeLog(Array.from({ length: 5 }, (_, i) => row('st_m', i + 1)));
    expect(await t.archive.archive(0, first)).toBe(5);
    // Sorted, the next generation is st_a 1..20 (slices 1 and 2), then st_m 1..10 (slice 3:
    // seq 3 holds another ref), then st_m 11..20 (slice 4).
    const rows = [
      ...Array.from({ length: 20 }, (_, i) => row('st_m', i + 1, i + 1 === 3 ? 'c:other-3' : `c:${i + 1}`)),
      ...Array.from({ length: 20 }, (_, i) => row('st_a', i + 1)),
    ];
    const through = t.writeLog(rows);
    const refused = /the archive holds another row for stream st_m at seq 3 or ref "c:other-3".*does not belong to this database/;
    await expect(t.archive.archive(first, through)).rejects.toThrow(refused);
    const held = () => t.archived().map((r) => `${r.stream_id}:${Number(r.seq)}`);
    const firstFive = Array.from({ length: 5 }, (_, i) => `st_m:${i + 1}`);
    expect(held()).toEqual([...Array.from({ length: 20 }, (_, i) => `st_a:${i + 1}`), ...firstFive]);
    await expect(t.archive.archive(first, through)).rejects.toThrow(refused);
    expect(held()).toHaveLength(25);
  });

  it('refuses a slice size that is not a positive whole number', () => {
    const t = fresh();
    for (const sliceRows of [0, -1, 1.5, Number.NaN]) {
      expect(() => openMoneyArchive(t.db, `${t.db.name}.other`, { sliceRows })).toThrow(/sliceRows must be a positive integer/);
    }
  });

  it('archives a stream whose recent rows are out of seq order whole, instead of failing the generation', async () => {
    const t = fresh();
    const through = t.writeLog([row('st_o', 3), row('st_p', 1), row('st_o', 1), row('st_o', 2), row('st_p', 2)]);
    expect(await t.archive.archive(0, through)).toBe(5);
    expect(t.archived().map((r) => `${r.stream_id}:${Number(r.seq)}`)).toEqual(['st_o:1', 'st_o:2', 'st_o:3', 'st_p:1', 'st_p:2']);
  });

  it('fails a generation whose rows are partly archived when one of them holds another ref, and writes none of it', async () => {
    const t = fresh();
    const first = t.writeLog([row('st_y', 1), row('st_y', 2)]);
    expect(await t.archive.archive(0, first)).toBe(2);
    // Seq 2 again with the same values (skipped), seq 3 new, seq 4 reusing seq 1's ref: kept out by the ref index.
    const through = t.writeLog([row('st_y', 2), row('st_y', 3), row('st_y', 4, 'c:1')]);
    await expect(t.archive.archive(first, through)).rejects.toThrow(/stream st_y at seq 4 or ref "c:1".*does not belong to this database/);
    expect(t.archived().map((r) => Number(r.seq))).toEqual([1, 2]);
  });

  it('fails a generation with a log row whose array does not match its rowids, naming the row', async () => {
    const t = fresh();
    t.writeLog([row('st_z', 1), row('st_z', 2)]);
    // Rowids 3..5 hold two rows.
    t.db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)').run(3, 5, encodeLogRows([row('st_z', 3), row('st_z', 4)]));
    await expect(t.archive.archive(0, 5)).rejects.toThrow('stream_money_log row 3 holds 2 rows for rowids 3..5');
    // And a row that is not JSON at all.
    t.db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)').run(6, 6, '[["st_z", 5, "c:5"');
    await expect(t.archive.archive(5, 6)).rejects.toThrow(/stream_money_log row 6 is not a JSON array/);
    // Bracketed, but not JSON inside.
    t.db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)').run(7, 7, '[["st_z", 5, "c:5", "hit", "1000", 1, nul]]');
    await expect(t.archive.archive(6, 7)).rejects.toThrow('stream_money_log row 7 is not a JSON array of rows');
    expect(t.archived()).toHaveLength(0);
  });
});
