/**
 * One generation of stream money rows handed to the archive's worker (streams/money-archive.ts):
 * 1,000 streams charged in a random order, in commits of 20 rows, until the recent tier holds
 * 65,536 rows (a sweep every 2,000 rows, so they are settled); then the time from the
 * handover to the archive's commit, and the CPU the process spent meanwhile. The main thread
 * only waits then, so that CPU is the worker's, about. On a 2-core machine under load it is
 * taken from the event loop and the load generator (docs/benchmarks.md, "Seventh session").
 *
 *   npx tsx packages/server/bench/streams-archive.ts [--rounds 3]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSqlite } from '../src/db/sqlite.js';
import { applyOpsInTransaction, createSqliteLedgerStore, migrateSqliteLedger } from '../src/ledger/sqlite/store.js';
import { msat } from '../src/money/msat.js';
import { defaultArchivePath } from '../src/streams/money-archive.js';
import type { MoneyStep } from '../src/streams/money-store.js';
import { createSqliteStreamMoneyStore } from '../src/streams/money-store-sqlite.js';
import { createSqliteStreamStore } from '../src/streams/store.js';
import { moneyStreamRow } from '../test/support/stream-rows.js';

const STREAMS = 1000;
const COMPACT_AT = 65_536;
const ROWS_PER_COMMIT = 20;
const SWEEP_EVERY_ROWS = 2000;

const roundsAt = process.argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(process.argv[roundsAt + 1]) : 3;
if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error('--rounds takes a whole number >= 1');

async function oneRound(): Promise<{ ms: number; cpuMs: number; rows: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-archive-'));
  const db = openSqlite({ path: path.join(dir, 'sluice.sqlite') });
  try {
    migrateSqliteLedger(db);
    const ledger = createSqliteLedgerStore(db);
    const streamStore = createSqliteStreamStore(db);
    const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now), { compactAt: COMPACT_AT });
    await ledger.createAccount({ id: 'app:app_b', ownerId: 'app_b', limitMsat: msat(0n), code: 'app' });
    const ids: string[] = [];
    for (let index = 0; index < STREAMS; index += 1) {
      // Ids in creation order, as timeOrderedId makes them.
      const id = `st_${index.toString(16).padStart(12, '0')}${'A'.repeat(16)}`;
      ids.push(id);
      await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_b', limitMsat: msat(10n ** 15n), code: 'stream' });
      await streamStore.insertStream(moneyStreamRow(id, 'app_b', 10n ** 15n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    }
    const seqs = new Map<string, number>();
    let written = 0;
    while (!money.tiers().merging) {
      if (written > 2 * COMPACT_AT) throw new Error('no generation was handed over');
      const steps: MoneyStep[] = [];
      for (let k = 0; k < ROWS_PER_COMMIT; k += 1, written += 1) {
        const id = ids[Math.floor(Math.random() * STREAMS)] as string;
        const seq = (seqs.get(id) ?? 0) + 1;
        seqs.set(id, seq);
        steps.push({ streamId: id, accountId: `stream:${id}`, appId: 'app_b', seq, ref: `c:bench-${written}`, name: 'hit', amountMsat: msat(1000n), at: written });
      }
      await money.commit(steps, written);
      if (written % SWEEP_EVERY_ROWS < ROWS_PER_COMMIT) await money.settle(ids, written);
    }
    // The commit that started the generation returned: from here on the worker has it.
    const startedAt = performance.now();
    const cpu = process.cpuUsage();
    // The worker never keeps the process alive (money-archive.ts): this does, meanwhile.
    const keepAlive = setInterval(() => undefined, 1000);
    await money.archived();
    clearInterval(keepAlive);
    const used = process.cpuUsage(cpu);
    money.close();
    const archive = openSqlite({ path: defaultArchivePath(db.name) });
    const rows = Number((archive.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint | number }).n);
    archive.close();
    return { ms: performance.now() - startedAt, cpuMs: (used.user + used.system) / 1000, rows };
  } finally {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

for (let round = 1; round <= rounds; round += 1) {
  const { ms, cpuMs, rows } = await oneRound();
  process.stdout.write(`round ${round}: a generation of ${rows} rows archived in ${ms.toFixed(0)} ms, ${cpuMs.toFixed(0)} ms of CPU\n`);
}
