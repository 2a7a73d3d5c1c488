/**
 * The SQLite store's own batches commit without fsync and are made durable by a WAL sync off
 * the event loop (wal-sync.ts). Checked here: the sync starts only after the commit (another
 * connection already sees the batch), nobody is answered before it returns, every other
 * transaction on the connection keeps synchronous=FULL, syncs coalesce, and a failed sync
 * answers nobody and stops the store.
 */
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
});
