// Hash-chain tokens with several Sluice processes on one PostgreSQL database, where the money
// follows the index in sweeps: each process's sweep pays only what the rows say, a refund in
// one process never takes another process's unsettled steps, a start never fails on a chain
// it cannot settle, and an index commit that names one chain twice fails closed.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../../src/clock.js';
import { applyOpsInTransaction as applyPostgresOps, migratePostgresLedger } from '../../../src/ledger/postgres/store.js';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainService, createPostgresChainStore, type ChainService, type ChainStore } from '../../../src/paycall/chain/index.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const usePostgres = await postgresAvailable();

describe.skipIf(!usePostgres)('hash-chain tokens, several processes on one PostgreSQL', () => {
  const clock = createManualClock(Date.now());
  let database: TestDatabase;
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  const services: ChainService[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('sluice_chain_processes');
    // Sweeps only when a test asks, or a refund or a start settles.
    t = await startTestSluice({ clock, env: { SLUICE_DATABASE_URL: database.url, SLUICE_CHAIN_SETTLE_INTERVAL_MS: '60000' } });
    app = await t.createApp('processes');
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
  });
  afterAll(async () => {
    for (const service of services) await service.stop().catch(() => undefined);
    await t?.close();
    await database?.drop();
  });

  const balance = async (accountId: string): Promise<bigint> => {
    const account = await t.sluice.ledger.getAccount(accountId);
    return account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
  };
  const realStore = () => createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));

  /** Another Sluice process's chain service on the same database (its store's calls wrapped by `hooks`). */
  async function process(hooks: Partial<ChainStore> = {}, options: { rescanMs?: number } = {}): Promise<ChainService> {
    const s = t.sluice;
    const service = createChainService({
      store: { ...(await realStore()), ...hooks }, ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock,
      logger: createLogger('silent'), defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, settleIntervalMs: 60_000, ...options,
    });
    await service.start();
    services.push(service);
    return service;
  }

  async function buy(steps: number) {
    const links = buildChain(randomBytes(32), steps);
    const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
    const id = bought.body.chain_id as string;
    for (let i = 0; i < 200 && (await t.sluice.chains.get(id))?.status !== 'active'; i += 1) await new Promise((r) => setTimeout(r, 5));
    return { id, links };
  }

  it('a refund right after another process accepted a call it has not swept yet: its fee return leaves that step for the sweep', async () => {
    const { id, links } = await buy(10);
    const call = { appId: app.id, priceMsat: msat(1000n) };
    const real = await realStore();
    const other = await process();
    let armed = false;
    // The refunding process: right after its refund's settle-first, the other process commits w_2.
    const refunder = await process({
      async settle(ids, now) {
        const settled = await real.settle(ids, now);
        if (armed && ids.includes(id)) {
          armed = false;
          expect(await other.spend(id, 2, links[2] as Buffer, call)).toMatchObject({ ok: true, index: 2 });
        }
        return settled;
      },
    });
    await t.sluice.chains.settleSpent();
    const appBefore = await balance(`app:${app.id}`);
    expect(await other.spend(id, 1, links[1] as Buffer, call)).toMatchObject({ ok: true, index: 1 });
    armed = true;
    const invoice = (await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '8000', wallet: 'carol' } })).body.payment_request as string;
    const refunded = await refunder.refund(id, { index: 3, link: links[3] as Buffer }, { kind: 'invoice', paymentRequest: invoice });
    expect(refunded).toMatchObject({ ok: true, amountMsat: 8_000n });
    const fee = refunded.ok ? BigInt(refunded.payment?.feeMsat ?? 0n) : 0n;
    // The other process's sweep pays its step 2; a fresh start finds nothing it cannot settle.
    await other.settleSpent();
    const row = await real.getChain(id);
    expect(row).toMatchObject({ index: 2, settledIndex: 2, status: 'refunded' });
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 2_000n - fee);
    expect(await real.listUnsettledChainIds()).not.toContain(id);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('steps a process accepted and never swept (it died first) are paid by another process\'s rescan', async () => {
    const { id, links } = await buy(10);
    await t.sluice.chains.settleSpent();
    const appBefore = await balance(`app:${app.id}`);
    // A live process that looks for unsettled chains often (started first: its start's own
    // look finds nothing).
    await process({}, { rescanMs: 30 });
    // A process that accepts two calls and whose sweep never comes (a minute away: it "dies").
    const dying = await process();
    for (let i = 1; i <= 2; i += 1) expect(await dying.spend(id, i, links[i] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true });
    for (let i = 0; i < 200 && (await balance(`app:${app.id}`)) === appBefore; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 2_000n);
    expect(await balance(`chain:${id}`)).toBe(8_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('a start does not fail on a chain it cannot settle: the chain stays due', async () => {
    let tries = 0;
    const service = await process({
      listUnsettledChainIds: async () => ['ch_cannot_settle'],
      async settle() {
        tries += 1;
        throw new Error('the settlement transfer was refused');
      },
    });
    expect(tries).toBeGreaterThanOrEqual(1);
    expect(await service.get('ch_unknown_here')).toBeNull();
  });

  it('an index commit naming one chain twice (two copies in memory) fails closed instead of retrying a conflict that names no chain', async () => {
    const db = await createTestDatabase('sluice_chain_twice');
    try {
      await migratePostgresLedger(db.sql);
      const store = await createPostgresChainStore(db.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
      const link = 'a'.repeat(64);
      await store.insertChain({ id: 'ch_twice', appId: 'app_x', anchor: link, steps: 10, stepMsat: msat(1000n), index: 3, settledIndex: 3, link, status: 'active', expiresAt: Date.now() + 1e6, accountId: 'chain:ch_twice', invoiceHash: link });
      // A stale copy (it thinks the row is at 1) and the current one (at 3), in one batch.
      await expect(store.commit([
        { id: 'ch_twice', fromIndex: 1, index: 2, link: 'b'.repeat(64) },
        { id: 'ch_twice', fromIndex: 3, index: 4, link: 'c'.repeat(64) },
      ])).rejects.toThrow(/named one chain twice/);
      expect((await store.getChain('ch_twice'))?.index).toBe(3);
    } finally {
      await db.drop();
    }
  });
});
