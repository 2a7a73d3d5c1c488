/**
 * What the archive's worker does to everyone else's syncs (ADR 0025): while it archives one
 * generation of stream money rows over 1,000 streams (written straight into the main
 * database's log, as the money store writes them), a probe thread writes 4 KB and calls
 * `fdatasync` in a loop, in the same directory, as the main database's WAL sync does after
 * each commit. Printed: the probe's syncs (median, 99th percentile, slowest, and the time
 * spent in those over 5 ms) during the handover, and the handover's time.
 *
 *   npx tsx packages/server/bench/streams-archive-sync.ts [--rows 262080] [--prefill 1000000]
 *     [--slice-rows 4096] [--rounds 3]
 *
 * --prefill: rows archived first, in generations of 65,520 (an archive after a long run, whose
 * B-trees are deep and whose pages a generation writes are spread out). --rows: the
 * generation timed (65,520 is a steady generation; 262,080 the largest, after a burst).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { openSqlite } from '../src/db/sqlite.js';
import { migrateSqliteLedger } from '../src/ledger/sqlite/store.js';
import { msat } from '../src/money/msat.js';
import { DEFAULT_ARCHIVE_SLICE_ROWS, openMoneyArchive } from '../src/streams/money-archive.js';
import { encodeLogRows } from '../src/streams/money-store-sqlite.js';
import type { MoneyRow } from '../src/streams/money-store.js';
import { createSqliteStreamStore } from '../src/streams/store.js';

const STREAMS = 1000;
const ROWS_PER_COMMIT = 20;
const PREFILL_GENERATION = 65_520;

const args = process.argv.slice(2);
const wholeNumber = (name: string, fallback: number, least: number): number => {
  const index = args.indexOf(name);
  const value = index >= 0 ? Number(args[index + 1]) : fallback;
  if (!Number.isSafeInteger(value) || value < least) throw new Error(`${name} takes a whole number >= ${least}`);
  return value;
};
const rows = wholeNumber('--rows', 262_080, ROWS_PER_COMMIT);
const prefill = wholeNumber('--prefill', 1_000_000, 0);
const sliceRows = wholeNumber('--slice-rows', DEFAULT_ARCHIVE_SLICE_ROWS, 1);
const rounds = wholeNumber('--rounds', 3, 1);

// CommonJS, evaluated in the probe thread: a blocking loop of write + fdatasync, so that its
// timings are the disk's and not the event loop's; it answers 'stop' with its latencies.
const PROBE_SOURCE = `
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const fd = fs.openSync(workerData.file, 'w');
const page = Buffer.alloc(4096, 1);
const latencies = [];
let written = 0;
let stop = false;
parentPort.on('message', () => { stop = true; });
const batch = () => {
  for (let k = 0; k < 20; k += 1) {
    fs.writeSync(fd, page, 0, page.length, (written++ % 256) * page.length);
    const start = performance.now();
    fs.fdatasyncSync(fd);
    latencies.push(performance.now() - start);
  }
  if (stop) {
    fs.closeSync(fd);
    parentPort.postMessage(latencies);
  } else setImmediate(batch);
};
batch();
`;

type LogRow = MoneyRow & { streamId: string };

async function oneRound(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-archive-sync-'));
  const db = openSqlite({ path: path.join(dir, 'sluice.sqlite') });
  migrateSqliteLedger(db);
  createSqliteStreamStore(db);
  const archive = openMoneyArchive(db, path.join(dir, 'sluice.money.sqlite'), { sliceRows });
  // The archive's worker never keeps the process alive (money-archive.ts): this does, meanwhile.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    const insertLog = db.prepare('INSERT INTO stream_money_log (first_rowid, last_rowid, rows) VALUES (?, ?, ?)');
    const seqs = new Array<number>(STREAMS).fill(0);
    let nextRowid = 1;
    /** `count` rows over the streams in a random order, in commits of 20 (as log rows); returns the last rowid. */
    const writeRows = db.transaction((count: number): number => {
      for (let done = 0; done < count; done += ROWS_PER_COMMIT) {
        const commit: LogRow[] = [];
        for (let k = 0; k < ROWS_PER_COMMIT; k += 1) {
          const stream = Math.floor(Math.random() * STREAMS);
          const seq = (seqs[stream] as number) + 1;
          seqs[stream] = seq;
          const streamId = `st_${stream.toString(16).padStart(12, '0')}${'A'.repeat(16)}`;
          commit.push({ streamId, seq, ref: `c:bench-${nextRowid + k}`, name: 'hit', amountMsat: msat(1000n), at: 1_795_000_000_000 + nextRowid + k, refused: null });
        }
        insertLog.run(nextRowid, nextRowid + commit.length - 1, encodeLogRows(commit));
        nextRowid += commit.length;
      }
      return nextRowid - 1;
    });
    let through = 0;
    for (let done = 0; done < prefill; done += PREFILL_GENERATION) {
      const after = through;
      through = writeRows(Math.min(PREFILL_GENERATION, prefill - done));
      await archive.archive(after, through);
    }
    const after = through;
    through = writeRows(rows);
    // What the setup wrote is on disk before the probe starts.
    db.pragma('wal_checkpoint(TRUNCATE)');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const probe = new Worker(PROBE_SOURCE, { eval: true, workerData: { file: path.join(dir, 'probe') } });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const startedAt = performance.now();
    const archived = await archive.archive(after, through);
    const ms = performance.now() - startedAt;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const latencies = await new Promise<number[]>((resolve) => {
      probe.once('message', resolve);
      probe.postMessage('stop');
    });
    await probe.terminate();
    latencies.sort((a, b) => a - b);
    const at = (q: number) => (latencies[Math.floor(q * (latencies.length - 1))] as number).toFixed(2);
    const slowMs = latencies.filter((ms) => ms > 5).reduce((sum, ms) => sum + ms, 0);
    return `a generation of ${archived} rows (slices of ${sliceRows}, ${prefill} archived before) in ${ms.toFixed(0)} ms; `
      + `meanwhile ${latencies.length} syncs of 4 KB: median ${at(0.5)} ms, p99 ${at(0.99)} ms, slowest ${at(1)} ms, ${slowMs.toFixed(0)} ms in syncs over 5 ms`;
  } finally {
    clearInterval(keepAlive);
    archive.close();
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

for (let round = 1; round <= rounds; round += 1) process.stdout.write(`round ${round}: ${await oneRound()}\n`);
