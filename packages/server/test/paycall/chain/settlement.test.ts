// Spent steps reach the app in sweeps (settler.ts), not in the call's commit: a contract
// suite on SQLite AND PostgreSQL. The app is paid exactly once for every step the rows say
// was spent: by the timer's sweep, by a refund (which settles first, so the payer gets the
// unused steps and the app the spent ones), and by a process that starts over rows an
// earlier one left unsettled. (A SIGKILL before any sweep is in crash.test.ts.)
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainService, createPostgresChainStore, type ChainService } from '../../../src/paycall/chain/index.js';
import { applyOpsInTransaction as applyPostgresOps } from '../../../src/ledger/postgres/store.js';
import { createLogger } from '../../../src/logger.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';

const usePostgres = await postgresAvailable();

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`chain settlement sweeps on ${store}`, () => {
  let t: TestSluice;
  let database: TestDatabase | null = null;
  let app: { id: string; apiKey: string };
  const extra: ChainService[] = [];

  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_chain_settle') : null;
    // A long interval: nothing is swept unless a test asks (or a refund or a start-up does).
    t = await startTestSluice({ env: { SLUICE_CHAIN_SETTLE_INTERVAL_MS: '60000', ...(database ? { SLUICE_DATABASE_URL: database.url } : {}) } });
    app = await t.createApp('settled');
    // A float, from which the app lends a refund's routing-fee budget.
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
  });
  afterAll(async () => {
    for (const service of extra) await service.stop();
    await t?.close();
    await database?.drop();
  });

  /** The ledger's balance as it is now: no sweep first. */
  const balanceNow = async (accountId: string): Promise<bigint> => {
    const account = await t.sluice.ledger.getAccount(accountId);
    return account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
  };

  async function buy(steps: number) {
    const links = buildChain(randomBytes(32), steps);
    const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps } });
    expect(bought.status, JSON.stringify(bought.body)).toBe(201);
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
    const id = bought.body.chain_id as string;
    for (let i = 0; i < 200 && (await t.sluice.chains.get(id))?.status !== 'active'; i += 1) await new Promise((r) => setTimeout(r, 5));
    return { id, links };
  }

  const spend = (service: ChainService, id: string, links: Buffer[], index: number) =>
    service.spend(id, index, links[index] as Buffer, { appId: app.id, priceMsat: msat(1000n) });

  it('a call waits only for its index; the sweep pays the app for every spent step, once', async () => {
    const { id, links } = await buy(10);
    const appBefore = await balanceNow(`app:${app.id}`);
    for (let i = 1; i <= 3; i += 1) expect(await spend(t.sluice.chains, id, links, i)).toMatchObject({ ok: true, index: i });
    // Durable and answered, not yet paid to the app: the chain account still holds the steps.
    expect(await t.sluice.chains.get(id)).toMatchObject({ index: 3, remainingSteps: 7 });
    expect(await balanceNow(`chain:${id}`)).toBe(10_000n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore);
    await t.sluice.chains.settleSpent();
    expect(await balanceNow(`chain:${id}`)).toBe(7_000n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 3_000n);
    // Swept again with nothing new: nothing moves.
    await t.sluice.chains.settleSpent();
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 3_000n);
    expect(await spend(t.sluice.chains, id, links, 4)).toMatchObject({ ok: true });
    await t.sluice.chains.settleSpent();
    expect(await balanceNow(`chain:${id}`)).toBe(6_000n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 4_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('a refund settles the spent steps first: the payer gets the unused ones, the app the spent ones', async () => {
    const { id, links } = await buy(10);
    await t.sluice.chains.settleSpent();
    const appBefore = await balanceNow(`app:${app.id}`);
    for (let i = 1; i <= 4; i += 1) expect(await spend(t.sluice.chains, id, links, i)).toMatchObject({ ok: true });
    expect(await balanceNow(`chain:${id}`)).toBe(10_000n);
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '6000', wallet: 'carol' } });
    const refunded = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 5, link: (links[5] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    expect(refunded.body.refund).toMatchObject({ amount_msat: '6000', payment: { status: 'succeeded' } });
    const fee = BigInt(refunded.body.refund.payment.fee_msat);
    for (let i = 0; i < 50 && (await balanceNow(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balanceNow(`chain:${id}`)).toBe(0n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 4_000n - fee);
    // Nothing is left for a later sweep to pay.
    await t.sluice.chains.settleSpent();
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 4_000n - fee);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  // Two processes share a database only on PostgreSQL (a SIGKILL before any sweep on SQLite is in crash.test.ts).
  if (store === 'postgres') it('a process that starts over unsettled rows settles them, and the first one then finds nothing to pay', async () => {
    if (!database) throw new Error('no test database');
    const { id, links } = await buy(10);
    await t.sluice.chains.settleSpent();
    const appBefore = await balanceNow(`app:${app.id}`);
    for (let i = 1; i <= 5; i += 1) expect(await spend(t.sluice.chains, id, links, i)).toMatchObject({ ok: true });
    // A second Sluice process on the same database starts: the rows say 5 steps unsettled.
    const s = t.sluice;
    const second = createChainService({
      store: await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now)),
      ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock: s.clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, settleIntervalMs: 60_000,
    });
    extra.push(second);
    await second.start();
    expect(await balanceNow(`chain:${id}`)).toBe(5_000n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 5_000n);
    // The first process's own sweep of the same chain pays nothing twice.
    await t.sluice.chains.settleSpent();
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 5_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  if (store === 'postgres') it('a sweep that fails keeps its chains due: the next sweep pays them, once', async () => {
    if (!database) throw new Error('no test database');
    const { id, links } = await buy(10);
    await t.sluice.chains.settleSpent();
    const appBefore = await balanceNow(`app:${app.id}`);
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    let failNext = false;
    const s = t.sluice;
    const service = createChainService({
      store: {
        ...real,
        async settle(ids, now) {
          if (failNext) {
            failNext = false;
            throw Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), { code: 'CONNECTION_CLOSED' });
          }
          return real.settle(ids, now);
        },
      },
      ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock: s.clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, settleIntervalMs: 20,
    });
    extra.push(service);
    await service.start();
    // This process holds no copy of the chain: its first call reads the row (the Sluice's copy is at index 0 too).
    failNext = true;
    for (let i = 1; i <= 2; i += 1) expect(await spend(service, id, links, i)).toMatchObject({ ok: true });
    // The timer's first sweep fails; a later one (the chains stayed due) pays them.
    for (let i = 0; i < 100 && (await balanceNow(`app:${app.id}`)) === appBefore; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(failNext).toBe(false);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 2_000n);
    expect(await balanceNow(`chain:${id}`)).toBe(8_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  if (store === 'postgres') it('a chain that cannot be settled holds up no other: the others are paid, it stays due', async () => {
    if (!database) throw new Error('no test database');
    const a = await buy(10);
    const b = await buy(10);
    await t.sluice.chains.settleSpent();
    const appBefore = await balanceNow(`app:${app.id}`);
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    let poisoned = true;
    const s = t.sluice;
    const service = createChainService({
      store: {
        ...real,
        async settle(ids, now) {
          if (poisoned && ids.includes(a.id)) throw new Error(`chain ${a.id} cannot be settled now`);
          return real.settle(ids, now);
        },
      },
      ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock: s.clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, settleIntervalMs: 20,
    });
    extra.push(service);
    await service.start();
    // One sweep holds both chains (their calls commit together); chain a's settlement fails.
    const [onA, onB] = await Promise.all([spend(service, a.id, a.links, 1), spend(service, b.id, b.links, 1)]);
    expect(onA).toMatchObject({ ok: true });
    expect(onB).toMatchObject({ ok: true });
    for (let i = 0; i < 100 && (await balanceNow(`app:${app.id}`)) === appBefore; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 1_000n);
    expect(await balanceNow(`chain:${b.id}`)).toBe(9_000n);
    expect(await balanceNow(`chain:${a.id}`)).toBe(10_000n);
    // Once it can be, the next sweep pays chain a too.
    poisoned = false;
    for (let i = 0; i < 100 && (await balanceNow(`chain:${a.id}`)) === 10_000n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balanceNow(`chain:${a.id}`)).toBe(9_000n);
    expect(await balanceNow(`app:${app.id}`)).toBe(appBefore + 2_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });
});
}

describe('chain settlement on the default interval', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice({ env: { SLUICE_CHAIN_SETTLE_INTERVAL_MS: '50' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('credits the app within the interval without being asked', async () => {
    const app = await t.createApp('timer');
    const links = buildChain(randomBytes(32), 5);
    const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 5 } });
    await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } });
    const id = bought.body.chain_id as string;
    for (let i = 0; i < 200 && (await t.sluice.chains.get(id))?.status !== 'active'; i += 1) await new Promise((r) => setTimeout(r, 5));
    for (let i = 1; i <= 2; i += 1) expect(await t.sluice.chains.spend(id, i, links[i] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true });
    let appBalance = -1n;
    for (let i = 0; i < 100 && appBalance !== 2_000n; i += 1) {
      await new Promise((r) => setTimeout(r, 10));
      const account = await t.sluice.ledger.getAccount(`app:${app.id}`);
      appBalance = account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
    }
    expect(appBalance).toBe(2_000n);
  });
});
