/**
 * The SQLite ledger's group commit killed (SIGKILL) mid-traffic while its machinery is all in
 * use: commits without fsync and a WAL sync on the thread pool, answers only after the sync,
 * WAL checkpoints in a worker thread. After a restart every acknowledged transfer is there
 * exactly once (its idempotency key replays it, never applies it again), and balances sum to
 * zero. SIGKILL keeps the page cache, so this checks the order of commit, sync and answer and
 * the checkpoints' crash safety, not the disk's flush itself (wal-sync tests cover the order
 * of the sync against the commit).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { createLedger } from '../../src/ledger/group-commit.js';
import { createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

const child = (dbPath: string) => `
  import { openSqlite } from ${JSON.stringify(path.join(src, 'db/sqlite.ts'))};
  import { createLedger } from ${JSON.stringify(path.join(src, 'ledger/group-commit.ts'))};
  import { checkpointerFor } from ${JSON.stringify(path.join(src, 'ledger/sqlite/checkpointer.ts'))};
  import { createSqliteLedgerStore, migrateSqliteLedger } from ${JSON.stringify(path.join(src, 'ledger/sqlite/store.ts'))};
  const db = openSqlite({ path: ${JSON.stringify(dbPath)} });
  migrateSqliteLedger(db);
  const store = createSqliteLedgerStore(db, { checkpoints: { startAtBytes: 128 * 1024, limitFrames: 300, intervalMs: 5 } });
  const ledger = createLedger({ store });
  await ledger.createAccount({ id: 'payer', ownerId: 'o', limitMsat: null, code: 'x' });
  await ledger.createAccount({ id: 'app', ownerId: 'o', limitMsat: null, code: 'x' });
  let next = 0;
  let reported = false;
  const sender = async () => {
    for (;;) {
      const key = 'k' + next++;
      const result = await ledger.apply({ kind: 'transfer', debitAccountId: 'payer', creditAccountId: 'app', amountMsat: 3n, code: 'charge', idempotencyKey: key });
      if (!result.ok) throw new Error('refused ' + result.error);
      process.stdout.write('ack ' + key + ' ' + result.transfer.id + '\\n');
      if (!reported && checkpointerFor(db)?.running) {
        reported = true;
        process.stdout.write('worker\\n');
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, sender));
`;

describe('SQLite ledger killed mid-traffic', () => {
  it('keeps every acknowledged transfer exactly once across SIGKILL and restart', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ledger-kill-'));
    const dbPath = path.join(dir, 'ledger.db');
    try {
      const acked = new Map<string, string>();
      let workerRunning = false;
      const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child(dbPath)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (chunk) => (stderr += chunk));
      let buffered = '';
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no traffic: ${stderr}`)), 60_000);
        proc.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString('utf8');
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          for (const line of lines) {
            const [word, key, id] = line.split(' ');
            if (word === 'ack' && key && id) acked.set(key, id);
            if (word === 'worker') workerRunning = true;
          }
          if (workerRunning && acked.size >= 6000) {
            clearTimeout(timer);
            resolve();
          }
        });
        proc.once('exit', (code) => reject(new Error(`child exited (${code}): ${stderr}`)));
      });
      proc.kill('SIGKILL');
      await exited;

      const db = openSqlite({ path: dbPath });
      try {
        migrateSqliteLedger(db);
        const store = createSqliteLedgerStore(db, { checkpoints: false });
        const count = db.prepare('SELECT COUNT(*) FROM ledger_transfers WHERE idempotency_key = ?').pluck();
        const idOf = db.prepare('SELECT id FROM ledger_transfers WHERE idempotency_key = ?').pluck();
        for (const [key, id] of acked) {
          expect(count.get(key)).toBe(1n);
          expect(idOf.get(key)).toBe(id);
        }
        const transfers = BigInt(db.prepare('SELECT COUNT(*) FROM ledger_transfers').pluck().get() as bigint);
        expect(transfers).toBeGreaterThanOrEqual(BigInt(acked.size));
        expect((await store.getAccount('app'))?.creditsPostedMsat).toBe(transfers * 3n);
        expect(await store.sumOfBalances()).toBe(0n);
        // Exactly once: an acknowledged key sent again replays its transfer, moves nothing.
        const ledger = createLedger({ store });
        const [someKey, someId] = [...acked][Math.floor(acked.size / 2)] as [string, string];
        const replay = await ledger.apply({ kind: 'transfer', debitAccountId: 'payer', creditAccountId: 'app', amountMsat: 3n as never, code: 'charge', idempotencyKey: someKey });
        expect(replay).toMatchObject({ ok: true, replayed: true, transfer: { id: someId } });
        expect((await store.getAccount('app'))?.creditsPostedMsat).toBe(transfers * 3n);
        await ledger.close();
      } finally {
        db.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
