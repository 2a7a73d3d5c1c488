// The negative cache of chain ids: a flood of calls with an unknown id costs one database
// read, the cache is bounded in size and time, and a chain created after its id was
// cached as absent still works. The service runs beside a real Sluice on a shared
// PostgreSQL database, with its store's reads counted; chain ids are planned in advance
// (timeOrderedId is wrapped) so that a test can ask for an id before its chain exists.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../../../src/clock.js';
import { applyOpsInTransaction as applyPostgresOps } from '../../../src/ledger/postgres/store.js';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainService, createPostgresChainStore, type ChainService, type ChainStore } from '../../../src/paycall/chain/index.js';
import { createUnknownChainIds } from '../../../src/paycall/chain/unknown-ids.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const plan = vi.hoisted(() => ({ chainIds: [] as string[] }));
vi.mock('../../../src/util/fingerprint.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../../src/util/fingerprint.js')>();
  return {
    ...original,
    timeOrderedId: (prefix: string, nowMs: number) => (prefix === 'ch_' && plan.chainIds.length > 0 ? (plan.chainIds.shift() as string) : original.timeOrderedId(prefix, nowMs)),
  };
});

describe('the unknown-id cache', () => {
  it('is bounded in size (oldest out first) and in time, and forgets an id on request', () => {
    const clock = createManualClock(1_000_000);
    const ids = createUnknownChainIds(clock, { max: 3, ttlMs: 1000 });
    for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
    expect(ids.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((id) => ids.has(id))).toEqual([false, true, true, true]);
    ids.delete('c');
    expect(ids.has('c')).toBe(false);
    clock.advanceMs(999);
    expect(ids.has('b')).toBe(true);
    clock.advanceMs(1);
    expect(ids.has('b')).toBe(false);
  });
});

const usePostgres = await postgresAvailable();

describe.skipIf(!usePostgres)('unknown chain ids reach the database once', () => {
  const clock = createManualClock(Date.now());
  let database: TestDatabase;
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  let service: ChainService;
  let reads = 0;
  let loseConnectionAfterCommit = false;

  beforeAll(async () => {
    database = await createTestDatabase('sluice_chain_unknown');
    t = await startTestSluice({ clock, env: { SLUICE_DATABASE_URL: database.url } });
    app = await t.createApp('unknown ids');
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const store: ChainStore = {
      ...real,
      async getChain(id) {
        reads += 1;
        return real.getChain(id);
      },
      async commit(writes) {
        const result = await real.commit(writes);
        if (loseConnectionAfterCommit) {
          loseConnectionAfterCommit = false;
          throw new Error('write CONNECTION_CLOSED');
        }
        return result;
      },
    };
    const s = t.sluice;
    service = createChainService({
      store, ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, unknownIds: { max: 100, ttlMs: 60_000 },
    });
    await service.start();
  });
  afterAll(async () => {
    await service?.stop();
    await t?.close();
    await database?.drop();
  });

  const call = (id: string, index: number, link: Buffer) => service.spend(id, index, link, { appId: app.id, priceMsat: msat(1000n) });

  it('refuses a repeated unknown id from memory, for calls and reads', async () => {
    const id = `ch_${randomBytes(12).toString('base64url')}`;
    const before = reads;
    for (let i = 0; i < 50; i += 1) expect(await call(id, 1, randomBytes(32))).toMatchObject({ ok: false, error: 'Unknown' });
    expect(await service.get(id)).toBeNull();
    expect(reads - before).toBe(1);
    // Past its time, the id is read again (once).
    clock.advanceMs(60_000);
    expect(await call(id, 1, randomBytes(32))).toMatchObject({ ok: false, error: 'Unknown' });
    expect(await call(id, 1, randomBytes(32))).toMatchObject({ ok: false, error: 'Unknown' });
    expect(reads - before).toBe(2);
  });

  it('a chain created after its id was cached as absent still works, also once it is read back from the database', async () => {
    const id = `ch_${randomBytes(12).toString('base64url')}`;
    expect(await call(id, 1, randomBytes(32))).toMatchObject({ ok: false, error: 'Unknown' });
    // The purchase draws exactly that id.
    plan.chainIds.push(id);
    const links = buildChain(randomBytes(32), 5);
    const bought = await service.purchase({ appId: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 5 });
    expect(bought).toMatchObject({ ok: true, chain: { id } });
    if (!bought.ok) return;
    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.invoice.paymentRequest, wallet: 'alice' } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    for (let i = 0; i < 200 && (await service.get(id))?.status === 'pending'; i += 1) await new Promise((r) => setTimeout(r, 5));
    expect(await call(id, 1, links[1] as Buffer)).toMatchObject({ ok: true, index: 1 });
    // A commit with an unknown outcome drops the chain from memory: the next call reads it back.
    loseConnectionAfterCommit = true;
    expect(await call(id, 2, links[2] as Buffer)).toMatchObject({ ok: false, error: 'Overloaded' });
    expect(await call(id, 3, links[3] as Buffer)).toMatchObject({ ok: true, index: 3, remainingSteps: 2 });
  });
});
