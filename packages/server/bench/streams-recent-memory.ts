/**
 * The heap one recent row of the SQLite stream money store holds (money-store-sqlite.ts): 60,000
 * charges over 1,000 streams (or --streams N), in commits of 50, each step's ref and event name taken from a
 * parsed message as the WebSocket path takes them; the heap after a full collection, before
 * and after, divided by the rows, and the same for the memory of ArrayBuffers (outside the
 * heap: the rows' cells). Every recent row stays in memory until its generation is archived,
 * so its heap is what scavenges copy and full collections trace under load (docs/benchmarks.md,
 * ninth and tenth sessions).
 *
 *   node --expose-gc --import tsx packages/server/bench/streams-recent-memory.ts [--streams 1000]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSqlite } from '../src/db/sqlite.js';
import { applyOpsInTransaction, createSqliteLedgerStore, migrateSqliteLedger } from '../src/ledger/sqlite/store.js';
import { msat } from '../src/money/msat.js';
import { CHARGE_REF, type MoneyStep } from '../src/streams/money-store.js';
import { createSqliteStreamMoneyStore } from '../src/streams/money-store-sqlite.js';
import { createSqliteStreamStore } from '../src/streams/store.js';
import { moneyStreamRow } from '../test/support/stream-rows.js';

const streamsAt = process.argv.indexOf('--streams');
/** --streams N: the rows spread over N streams (60,000 / N rows each). */
const STREAMS = streamsAt >= 0 ? Number(process.argv[streamsAt + 1]) : 1000;
if (!Number.isSafeInteger(STREAMS) || STREAMS < 1) throw new Error('--streams takes a whole number >= 1');
const ROWS = 60_000;
const PER_COMMIT = 50;

const collect = (globalThis as { gc?: () => void }).gc;
if (!collect) throw new Error('run with node --expose-gc');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-recent-'));
const db = openSqlite({ path: path.join(dir, 'sluice.sqlite') });
try {
  migrateSqliteLedger(db);
  const ledger = createSqliteLedgerStore(db);
  const streamStore = createSqliteStreamStore(db);
  // No generation leaves during the run (compactAt above ROWS); the WAL synced inline.
  const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now), { compactAt: 1 << 20, syncOffLoop: false });
  await ledger.createAccount({ id: 'app:app_b', ownerId: 'app_b', limitMsat: msat(0n), code: 'app' });
  const ids: string[] = [];
  for (let index = 0; index < STREAMS; index += 1) {
    // As timeOrderedId makes them: st_, 12 hex digits of time, 16 base64url characters.
    const id = `st_${(1_763_950_000_000 + index).toString(16).padStart(12, '0')}Ab-_Cd9xYz01QwEr`;
    ids.push(id);
    await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_b', limitMsat: msat(10n ** 15n), code: 'stream' });
    await streamStore.insertStream(moneyStreamRow(id, 'app_b', 10n ** 15n), { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
  }
  const price = msat(1000n);
  const seqs = new Map<string, number>();
  collect();
  collect();
  const before = process.memoryUsage();
  for (let written = 0; written < ROWS; written += PER_COMMIT) {
    const steps: MoneyStep[] = [];
    for (let k = 0; k < PER_COMMIT; k += 1) {
      const id = ids[(written + k * 7) % STREAMS] as string;
      const seq = (seqs.get(id) ?? 1) + 1;
      seqs.set(id, seq);
      const message = JSON.parse(`{"type":"charge","id":${written + k},"stream_id":"${id}","event":"hit","ref":"charge-${written + k}-7f3a9c"}`) as { event: string; ref: string };
      steps.push({ streamId: id, accountId: `stream:${id}`, appId: 'app_b', seq, ref: CHARGE_REF + message.ref, name: message.event, amountMsat: price, at: Date.now() });
    }
    await money.commit(steps, Date.now());
  }
  collect();
  collect();
  const after = process.memoryUsage();
  const perRow = (field: 'heapUsed' | 'arrayBuffers'): string => ((after[field] - before[field]) / ROWS).toFixed(0);
  process.stdout.write(`${money.tiers().recent} recent rows over ${STREAMS} streams: ${perRow('heapUsed')} bytes of heap and ${perRow('arrayBuffers')} of ArrayBuffers per row (Node ${process.version})\n`);
  money.close();
} finally {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
