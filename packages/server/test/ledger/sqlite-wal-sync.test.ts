/**
 * The SQLite store's own batches commit without fsync and are made durable by a WAL sync off
 * the event loop (wal-sync.ts). Checked here: the sync starts only after the commit (another
 * connection already sees the batch), nobody is answered before it returns, every other
 * transaction on the connection keeps synchronous=FULL, syncs coalesce, and a failed sync
 * answers nobody and stops the store.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { createLedger } from '../../src/ledger/group-commit.js';
import { createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { WalSyncFailedError, type SyncFile } from '../../src/ledger/sqlite/wal-sync.js';
import { createFixture, transfer } from './contract.js';
import { openTempSqlite, type TempSqlite } from './temp-sqlite.js';

const settled = () => new Promise((resolve) => setTimeout(resolve, 20));

/** A syncFile that records each call (with what a second connection sees then) and waits to be released. */
function heldSync(temp: TempSqlite) {
  const reader = new Database(temp.path, { readonly: true });
  const calls: { transfersVisible: number; release: (error?: Error) => void }[] = [];
  const syncFile: SyncFile = (path) => {
    expect(path).toBe(`${temp.path}-wal`);
    const transfersVisible = Number((reader.prepare('SELECT COUNT(*) AS n FROM ledger_transfers').get() as { n: number }).n);
    return new Promise<void>((resolve, reject) => {
      calls.push({ transfersVisible, release: (error) => (error ? reject(error) : resolve()) });
    });
  };
  return { calls, syncFile, close: () => reader.close() };
}

describe('SQLite ledger: WAL sync after the commit, off the event loop', () => {
  let temp: TempSqlite | null = null;
  afterEach(() => {
    temp?.remove();
    temp = null;
  });

  const setup = async (makeSync?: (t: TempSqlite) => SyncFile) => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    const setupStore = createSqliteLedgerStore(temp.db);
    const f = await createFixture(setupStore, 1_000_000n);
    const store = createSqliteLedgerStore(temp.db, makeSync ? { syncFile: makeSync(temp) } : {});
    return { db: temp.db, f, ledger: createLedger({ store }), store };
  };

  it('syncs after the commit and answers only after the sync; the connection stays synchronous=FULL', async () => {
    let held!: ReturnType<typeof heldSync>;
    const { db, f, ledger } = await setup((t) => (held = heldSync(t)).syncFile);
    const before = Number((db.prepare('SELECT COUNT(*) AS n FROM ledger_transfers').get() as { n: bigint }).n);
    let answered = 0;
    const batch = Array.from({ length: 3 }, () => ledger.apply(transfer(f.alice, f.bob, 1)).then((r) => {
      answered += 1;
      return r;
    }));
    await settled();
    expect(held.calls).toHaveLength(1);
    // The sync began after the commit: another connection already reads the three transfers.
    expect(held.calls[0]?.transfersVisible).toBe(before + 3);
    expect(answered).toBe(0);
    // Every transaction but the store's own batches still fsyncs on commit.
    expect(db.pragma('synchronous', { simple: true })).toBe(2n);
    held.calls[0]?.release();
    expect((await Promise.all(batch)).every((r) => r.ok)).toBe(true);
    await ledger.close();
    held.close();
  });

  it('coalesces: commits made during a sync share the next one, started when it returns', async () => {
    let held!: ReturnType<typeof heldSync>;
    const { f, store } = await setup((t) => (held = heldSync(t)).syncFile);
    const first = await store.applyOpsStaged([transfer(f.alice, f.bob, 1)]);
    const second = await store.applyOpsStaged([transfer(f.alice, f.bob, 1)]);
    const third = await store.applyOpsStaged([transfer(f.alice, f.bob, 1)]);
    expect(held.calls).toHaveLength(1);
    let secondDurable = false;
    void second.durable?.then(() => (secondDurable = true));
    held.calls[0]?.release();
    await first.durable;
    await settled();
    expect(secondDurable).toBe(false); // its commit came after the running sync had started
    expect(held.calls).toHaveLength(2); // one more sync for both later commits
    expect(held.calls[1]?.transfersVisible).toBe((held.calls[0]?.transfersVisible ?? 0) + 2);
    held.calls[1]?.release();
    await Promise.all([second.durable, third.durable]);
    expect(held.calls).toHaveLength(2);
    held.close();
  });

  it('answers nobody when a sync fails, and refuses every batch after it', async () => {
    let held!: ReturnType<typeof heldSync>;
    const { f, ledger } = await setup((t) => (held = heldSync(t)).syncFile);
    const batch = Array.from({ length: 4 }, () => ledger.apply(transfer(f.alice, f.bob, 1)));
    await settled();
    held.calls[0]?.release(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    const outcomes = await Promise.allSettled(batch);
    expect(outcomes.map((o) => o.status)).toEqual(Array(4).fill('rejected'));
    expect((outcomes[0] as PromiseRejectedResult).reason).toBeInstanceOf(WalSyncFailedError);
    await expect(ledger.apply(transfer(f.alice, f.bob, 1))).rejects.toBeInstanceOf(WalSyncFailedError);
    expect(held.calls).toHaveLength(1);
    await ledger.close();
    held.close();
  });

  it('syncs with fdatasync by default, not at all with syncOffLoop false or for an in-memory database', async () => {
    const { f, ledger } = await setup();
    const results = await Promise.all(Array.from({ length: 50 }, () => ledger.apply(transfer(f.alice, f.bob, 1))));
    expect(results.every((r) => r.ok)).toBe(true);
    await ledger.close();

    // syncOffLoop: false commits with synchronous=FULL, nothing left to sync.
    const full = createSqliteLedgerStore(temp!.db, { syncOffLoop: false });
    const committed = await full.applyOpsStaged([transfer(f.alice, f.bob, 1)]);
    expect(committed.durable).toBeNull();
    expect(committed.results[0]?.ok).toBe(true);

    const memory = openSqlite({ path: ':memory:' });
    migrateSqliteLedger(memory);
    const store = createSqliteLedgerStore(memory);
    const g = await createFixture(store, 10n);
    const staged = await store.applyOpsStaged([transfer(g.alice, g.bob, 1)]);
    expect(staged.durable).toBeNull();
    expect(staged.results[0]?.ok).toBe(true);
    memory.close();
  });

  // The check that matters, seen from outside: the commits themselves do not fsync on the
  // event loop's thread (synchronous=NORMAL really applies to them); one fdatasync per commit
  // runs on another thread.
  const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  it.skipIf(strace.status !== 0)('fsyncs no commit on the main thread: the WAL syncs run on another thread (strace)', () => {
    const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-wal-strace-'));
    try {
      const script = `
        import { openSqlite } from ${JSON.stringify(path.join(src, 'db/sqlite.ts'))};
        import { createLedger } from ${JSON.stringify(path.join(src, 'ledger/group-commit.ts'))};
        import { createSqliteLedgerStore, migrateSqliteLedger } from ${JSON.stringify(path.join(src, 'ledger/sqlite/store.ts'))};
        const db = openSqlite({ path: ${JSON.stringify(path.join(dir, 'l.db'))} });
        migrateSqliteLedger(db);
        const ledger = createLedger({ store: createSqliteLedgerStore(db) });
        await ledger.createAccount({ id: 'a', ownerId: 'o', limitMsat: null, code: 'x' });
        await ledger.createAccount({ id: 'b', ownerId: 'o', limitMsat: null, code: 'x' });
        for (let i = 0; i < 200; i += 1) await ledger.apply({ kind: 'transfer', debitAccountId: 'a', creditAccountId: 'b', amountMsat: 1n, code: 'c' });
        console.log(process.pid);
      `;
      const trace = path.join(dir, 'strace.txt');
      const run = spawnSync('strace', ['-f', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
      if (run.status !== 0 && /ptrace|Operation not permitted/.test(run.stderr)) return; // tracing not allowed here
      expect(run.status, run.stderr).toBe(0);
      const mainThread = run.stdout.trim();
      const syncs = fs.readFileSync(trace, 'utf8').split('\n').filter((line) => /\b(fsync|fdatasync)\(/.test(line));
      const onMain = syncs.filter((line) => line.startsWith(`${mainThread} `)).length;
      const elsewhere = syncs.length - onMain;
      // Setup (migrations, two accounts) fsyncs on the main thread; the 200 commits do not.
      expect(onMain).toBeLessThan(50);
      expect(elsewhere).toBeGreaterThanOrEqual(200);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
