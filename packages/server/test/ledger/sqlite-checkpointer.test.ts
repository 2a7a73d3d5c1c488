/**
 * WAL checkpoints in a worker thread (checkpointer.ts): once the WAL has grown, the main
 * connection stops checkpointing inside its commits, the worker copies the WAL into the
 * database file, the WAL still starts over (bounded), nothing committed is lost, and the
 * worker stops when the connection closes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { createLedger } from '../../src/ledger/group-commit.js';
import { checkpointerFor } from '../../src/ledger/sqlite/checkpointer.js';
import { createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { createFixture, transfer } from './contract.js';
import { openTempSqlite, type TempSqlite } from './temp-sqlite.js';

const waitFor = async (what: string, predicate: () => boolean) => {
  for (let i = 0; i < 200 && !predicate(); i += 1) await new Promise((resolve) => setTimeout(resolve, 25));
  if (!predicate()) throw new Error(`gave up waiting for ${what}`);
};

describe('SQLite ledger: checkpoints in a worker thread', () => {
  let temp: TempSqlite | null = null;
  afterEach(() => {
    temp?.remove();
    temp = null;
  });

  it('takes over checkpoints once the WAL has grown, keeps the WAL bounded, and loses nothing', async () => {
    temp = openTempSqlite();
    migrateSqliteLedger(temp.db);
    const options = { checkpoints: { startAtBytes: 256 * 1024, limitFrames: 400, intervalMs: 10 } };
    const store = createSqliteLedgerStore(temp.db, options);
    const f = await createFixture(store, 10_000_000n);
    const ledger = createLedger({ store });
    const checkpointer = checkpointerFor(temp.db);
    expect(checkpointer?.running).toBe(false);
    expect(temp.db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000n);
    let moved = 0n;
    for (let round = 0; round < 400; round += 1) {
      const results = await Promise.all(Array.from({ length: 20 }, () => ledger.apply(transfer(f.alice, f.bob, 1))));
      expect(results.every((r) => r.ok)).toBe(true);
      moved += 20n;
      if (round % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 15));
    }
    expect(checkpointer?.running).toBe(true);
    expect(checkpointer?.failure).toBeNull();
    // The main connection no longer checkpoints inside its commits.
    expect(temp.db.pragma('wal_autocheckpoint', { simple: true })).toBe(0n);
    await waitFor('the worker to checkpoint', () => (checkpointer?.workerCheckpoints ?? 0) > 0);
    // The WAL started over instead of growing with every commit (limitFrames 400: ~1.6 MiB).
    const walBytes = fs.statSync(`${temp.path}-wal`).size;
    expect(walBytes).toBeLessThan(4 * 1024 * 1024);
    expect((await ledger.getAccount(f.bob))?.creditsPostedMsat).toBe(moved);
    await ledger.close();

    // Everything is in the file after a restart, and the worker stops with the connection.
    temp.db.close();
    await waitFor('the worker to stop', () => checkpointer?.running === false);
    const reopened = openSqlite({ path: temp.path });
    try {
      const again = createSqliteLedgerStore(reopened, { checkpoints: false });
      expect((await again.getAccount(f.bob))?.creditsPostedMsat).toBe(moved);
      expect(await again.sumOfBalances()).toBe(0n);
    } finally {
      reopened.close();
    }
  });

  it('does not keep the process alive: a process whose database is still open exits when its work is done', () => {
    const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
    const script = `
      import fs from 'node:fs';
      import os from 'node:os';
      import path from 'node:path';
      import { openSqlite } from ${JSON.stringify(path.join(src, 'db/sqlite.ts'))};
      import { createSqliteLedgerStore, migrateSqliteLedger } from ${JSON.stringify(path.join(src, 'ledger/sqlite/store.ts'))};
      import { checkpointerFor } from ${JSON.stringify(path.join(src, 'ledger/sqlite/checkpointer.ts'))};
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-checkpointer-exit-'));
      const db = openSqlite({ path: path.join(dir, 'l.db') });
      migrateSqliteLedger(db);
      const store = createSqliteLedgerStore(db, { checkpoints: { startAtBytes: 64 * 1024 } });
      await store.createAccount({ id: 'a', ownerId: 'o', limitMsat: null, code: 'x' });
      await store.createAccount({ id: 'b', ownerId: 'o', limitMsat: null, code: 'x' });
      for (let i = 0; i < 300; i += 1) await store.applyOps([{ kind: 'transfer', debitAccountId: 'a', creditAccountId: 'b', amountMsat: 1n, code: 'c' }]);
      process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const checkpointer = checkpointerFor(db);
      console.log(checkpointer?.running && checkpointer.workerCheckpoints > 0 ? 'worker running' : 'no worker: ' + checkpointer?.failure);
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('worker running');
    expect(child.status).toBe(0);
  });
});
