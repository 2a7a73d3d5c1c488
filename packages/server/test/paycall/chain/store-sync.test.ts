// The SQLite chain store's index commits are made durable by a WAL sync off the event loop
// (ledger/sqlite/wal-sync.ts), as the ledger's own batches can be: the commit is visible to
// another connection before the sync starts, the store answers only once the sync returns,
// the connection stays synchronous=FULL for everything else (the sweeps included), and a
// failed sync answers nobody and refuses every later commit (the flusher fails it closed).
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteChainStore } from '../../../src/paycall/chain/store.js';
import type { ChainRow } from '../../../src/paycall/chain/model.js';
import type { SyncFile } from '../../../src/ledger/sqlite/wal-sync.js';
import { msat } from '../../../src/money/msat.js';
import { openTempSqlite, type TempSqlite } from '../../ledger/temp-sqlite.js';

const row = (id: string): ChainRow => ({
  id, appId: 'app_1', anchor: 'a'.repeat(64), steps: 10, stepMsat: msat(1000n), index: 0, settledIndex: 0, link: 'a'.repeat(64),
  status: 'active', expiresAt: Date.now() + 60_000, accountId: `chain:${id}`, invoiceHash: `${id}`.padEnd(64, '0'),
});

describe('SQLite chain store: index commits synced off the event loop', () => {
  let temp: TempSqlite | null = null;
  afterEach(() => {
    temp?.remove();
    temp = null;
  });

  function setup() {
    temp = openTempSqlite();
    const reader = new Database(temp.path, { readonly: true });
    const syncs: { indexSeen: number; release: (error?: Error) => void }[] = [];
    const syncFile: SyncFile = (path) => {
      expect(path).toBe(`${temp!.path}-wal`);
      const seen = reader.prepare("SELECT current_index FROM paycall_chains WHERE id = 'ch_a'").get() as { current_index: number };
      return new Promise<void>((resolve, reject) => {
        syncs.push({ indexSeen: Number(seen.current_index), release: (error) => (error ? reject(error) : resolve()) });
      });
    };
    const store = createSqliteChainStore(temp.db, () => [], { syncOffLoop: true, syncFile });
    return { db: temp.db, store, syncs, close: () => reader.close() };
  }

  it('answers a commit only after the WAL sync that follows it; the connection stays FULL', async () => {
    const { db, store, syncs, close } = setup();
    await store.insertChain(row('ch_a'));
    let answered = false;
    const committed = store.commit([{ id: 'ch_a', fromIndex: 0, index: 3, link: 'b'.repeat(64) }]).then((result) => {
      answered = true;
      return result;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Committed (another connection sees it) and syncing, but nobody is answered yet.
    expect(syncs).toHaveLength(1);
    expect(syncs[0]?.indexSeen).toBe(3);
    expect(answered).toBe(false);
    expect(Number(db.pragma('synchronous', { simple: true }))).toBe(2);
    syncs[0]?.release();
    expect(await committed).toEqual({ ok: true });
    close();
  });

  it('a failed sync answers nobody, and every later commit is refused', async () => {
    const { store, syncs, close } = setup();
    await store.insertChain(row('ch_a'));
    const first = store.commit([{ id: 'ch_a', fromIndex: 0, index: 1, link: 'b'.repeat(64) }]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    syncs[0]?.release(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await expect(first).rejects.toThrow(/could not be synced/);
    await expect(store.commit([{ id: 'ch_a', fromIndex: 1, index: 2, link: 'c'.repeat(64) }])).rejects.toThrow(/could not be synced/);
    close();
  });
});
