// Money edge cases of hash-chain tokens found in review, each on a real Sluice sharing its
// PostgreSQL database with a second chain service whose store can be made to misbehave
// (a commit that throws after it wrote, a read held back): an unknown commit outcome, a
// refund racing a cold spend, and an unknown chain id asked again and again.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../../src/clock.js';
import { applyOpsInTransaction as applyPostgresOps } from '../../../src/ledger/postgres/store.js';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainService, createPostgresChainStore, type ChainService, type ChainStore } from '../../../src/paycall/chain/index.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const usePostgres = await postgresAvailable();

describe.skipIf(!usePostgres)('hash-chain tokens: review findings', () => {
  const clock = createManualClock(Date.now());
  let database: TestDatabase;
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  const services: ChainService[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('sluice_chain_review');
    t = await startTestSluice({ clock, env: { SLUICE_DATABASE_URL: database.url } });
    app = await t.createApp('review');
    // A float on the app's account: refunds borrow their routing-fee budget from it.
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
  });
  afterAll(async () => {
    for (const service of services) await service.stop();
    await t?.close();
    await database?.drop();
  });

  /** A balance once every spent step is settled (chains pay their apps in sweeps). */
  const balance = async (accountId: string): Promise<bigint> => {
    for (const service of [t.sluice.chains, ...services]) await service.settleSpent();
    const account = await t.sluice.ledger.getAccount(accountId);
    return account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
  };

  /** Buys a chain through the Sluice's API and pays it (amount: the invoice's, or more). */
  async function buy(steps: number, options: { payMsat?: bigint } = {}) {
    const links = buildChain(randomBytes(32), steps);
    const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps } });
    expect(bought.status, JSON.stringify(bought.body)).toBe(201);
    const pay = { payment_request: bought.body.invoice.payment_request, wallet: 'alice', ...(options.payMsat ? { amount_msat: options.payMsat.toString() } : {}) };
    const paid = await t.call('POST', '/v1/devnet/pay', { body: pay });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    const id = bought.body.chain_id as string;
    for (let i = 0; i < 200 && (await t.sluice.chains.get(id))?.status === 'pending'; i += 1) await new Promise((r) => setTimeout(r, 5));
    return { id, links, preimage: paid.body.preimage as string };
  }

  /** A second chain service on the same database; `hooks` wrap its store's calls. */
  async function secondService(hooks: Partial<ChainStore> = {}): Promise<ChainService> {
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const store: ChainStore = { ...real, ...hooks };
    const s = t.sluice;
    const service = createChainService({
      store, ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600,
    });
    await service.start();
    services.push(service);
    return service;
  }

  it('a commit whose outcome is unknown (it wrote, then the connection was lost) fails closed: the chain is re-read before the next call', async () => {
    const { id, links } = await buy(10);
    let loseConnectionAfterCommit = false;
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const service = await secondService({
      async commit(writes) {
        const result = await real.commit(writes);
        if (loseConnectionAfterCommit) {
          loseConnectionAfterCommit = false;
          throw Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), { code: 'CONNECTION_CLOSED' });
        }
        return result;
      },
    });
    const call = (index: number) => service.spend(id, index, links[index] as Buffer, { appId: app.id, priceMsat: msat(1000n) });
    const appBefore = await balance(`app:${app.id}`);
    expect(await call(1)).toMatchObject({ ok: true, index: 1 });
    loseConnectionAfterCommit = true;
    const lost = await call(2);
    // Not served, and not told that nothing was spent: nobody knows yet.
    expect(lost).toMatchObject({ ok: false, error: 'Overloaded' });
    expect(lost.ok === false && lost.detail).toMatch(/unknown/);
    // What the service shows is what the database holds (the commit did happen), not its old copy.
    expect(await service.get(id)).toMatchObject({ index: 2, remainingSteps: 8 });
    // The same link again is a replay; the next one is accepted; the money follows the index.
    expect(await call(2)).toMatchObject({ ok: false, error: 'Replayed' });
    expect(await call(3)).toMatchObject({ ok: true, index: 3, remainingSteps: 7 });
    expect(await balance(`chain:${id}`)).toBe(7000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 3000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('a batch where one chain conflicts: that chain is refused, the others are written in the next batch with the calls accepted meanwhile', async () => {
    const a = await buy(5);
    const b = await buy(5);
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    let duringFirstCommit: Promise<unknown> | null = null;
    let commits = 0;
    const service = await secondService({
      async commit(writes) {
        commits += 1;
        // A call on chain b accepted while the first batch is in flight.
        if (commits === 1) duringFirstCommit = service.spend(b.id, 2, b.links[2] as Buffer, { appId: app.id, priceMsat: msat(1000n) });
        return real.commit(writes);
      },
    });
    // The Sluice's own service moves chain a in the database: the second service's copy is stale.
    expect(await t.sluice.chains.spend(a.id, 1, a.links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true });
    const [onA, onB] = await Promise.all([
      service.spend(a.id, 1, a.links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) }),
      service.spend(b.id, 1, b.links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) }),
    ]);
    expect(onA).toMatchObject({ ok: false, error: 'Replayed' });
    expect(onB).toMatchObject({ ok: true, index: 1 });
    expect(await duringFirstCommit).toMatchObject({ ok: true, index: 2 });
    expect(commits).toBe(2);
    expect(await balance(`chain:${a.id}`)).toBe(4000n);
    expect(await balance(`chain:${b.id}`)).toBe(3000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  /** A devnet invoice for a refund to carol: exactly `amountMsat`. */
  const refundInvoice = async (amountMsat: bigint): Promise<string> =>
    (await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: amountMsat.toString(), wallet: 'carol' } })).body.payment_request as string;

  it('a refund racing a spend of the same chain loaded cold: no step is both spent and refunded', async () => {
    const { id, links } = await buy(10);
    const appBefore = await balance(`app:${app.id}`);
    let spendSettled: Promise<unknown> = Promise.resolve();
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const service = await secondService({
      // Starts holding nothing: every chain is cold in this service.
      listUnrefundedChains: async () => [],
      // The refund's status write waits for the racing spend to be answered (or 500 ms, if
      // the spend is itself waiting for the refund): the worst order for the refund.
      async setStatus(chainId, from, to, atIndex) {
        if (to === 'refunded') await Promise.race([spendSettled, new Promise((r) => setTimeout(r, 500))]);
        return real.setStatus(chainId, from, to, atIndex);
      },
    });
    const refunding = service.refund(id, { index: 1, link: links[1] as Buffer }, { kind: 'invoice', paymentRequest: await refundInvoice(10_000n) });
    const spending = service.spend(id, 1, links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) });
    spendSettled = spending;
    const [refunded, spent] = await Promise.all([refunding, spending]);
    // The refund started first: it pays all ten steps back, and the call is refused.
    expect(refunded).toMatchObject({ ok: true, amountMsat: 10_000n });
    expect(spent).toMatchObject({ ok: false, error: 'Refunded' });
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await balance(`app:${app.id}`)).toBeLessThanOrEqual(appBefore);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('a refund in one process while another process accepts a call on the chain: nothing is refunded that was spent', async () => {
    const { id, links } = await buy(10);
    const appBefore = await balance(`app:${app.id}`);
    const call = { appId: app.id, priceMsat: msat(1000n) };
    const real = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    // Another Sluice on the same database.
    const other = await secondService();
    let spentMeanwhile: Promise<unknown> | null = null;
    const refunder = await secondService({
      // Right before the refund's status write (its unused steps already counted), the other
      // process accepts w_1: the worst moment for the refund.
      async setStatus(chainId, from, to, atIndex) {
        if (to === 'refunded' && spentMeanwhile === null) {
          spentMeanwhile = other.spend(id, 1, links[1] as Buffer, call);
          await spentMeanwhile;
        }
        return real.setStatus(chainId, from, to, atIndex);
      },
    });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const refused = await refunder.refund(id, { index: 1, link: links[1] as Buffer }, { kind: 'invoice', paymentRequest: await refundInvoice(10_000n) });
    expect(await spentMeanwhile).toMatchObject({ ok: true, index: 1 });
    // Nothing was paid out: the ten steps counted are nine now.
    expect(refused).toMatchObject({ ok: false, error: 'Replayed' });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore);
    expect(await balance(`chain:${id}`)).toBe(9_000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 1_000n);
    // Asked again with the next link: the nine unused steps, exactly.
    const refunded = await refunder.refund(id, { index: 2, link: links[2] as Buffer }, { kind: 'invoice', paymentRequest: await refundInvoice(9_000n) });
    expect(refunded).toMatchObject({ ok: true, amountMsat: 9_000n });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 9_000n);
    const fee = refunded.ok ? BigInt(refunded.payment?.feeMsat ?? 0n) : 0n;
    for (let i = 0; i < 50 && (await balance(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 1_000n - fee);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('an overpaid chain whose every step is spent refunds the overpayment, proved by the purchase preimage', async () => {
    // 5 steps of 1,000 msat, paid 7,000: 2,000 above the invoice.
    const { id, links, preimage } = await buy(5, { payMsat: 7000n });
    const appBefore = await balance(`app:${app.id}`);
    for (let index = 1; index <= 5; index += 1) {
      expect(await t.sluice.chains.spend(id, index, links[index] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true, index });
    }
    expect(await balance(`chain:${id}`)).toBe(2000n);
    const refund = (body: Record<string, unknown>) => t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body });
    // No next link exists; the last one was revealed on the wire, so it proves nothing.
    const byLink = await refund({ index: 5, link: (links[5] as Buffer).toString('hex'), invoice: await refundInvoice(2000n) });
    expect(byLink.status).toBe(409);
    expect(byLink.body.error).toMatchObject({ code: 'chain_nothing_to_refund', message: expect.stringMatching(/preimage/) });
    const wrong = await refund({ preimage: randomBytes(32).toString('hex'), invoice: await refundInvoice(2000n) });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('chain_link_invalid');
    const both = await refund({ preimage, index: 6, link: (links[5] as Buffer).toString('hex'), invoice: await refundInvoice(2000n) });
    expect(both.status).toBe(400);
    expect(await balance(`chain:${id}`)).toBe(2000n);

    const invoice = await refundInvoice(2000n);
    const refunded = await refund({ preimage, invoice });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    expect(refunded.body).toMatchObject({ status: 'refunded', index: 5, refund: { amount_msat: '2000', payment: { status: 'succeeded' } } });
    // Asked again: the same refund, never a second payment.
    const again = await refund({ preimage, invoice });
    expect(again.body).toMatchObject({ refund: { amount_msat: '2000', payment: { payment_hash: refunded.body.refund.payment.payment_hash } } });
    expect(await balance(`chain:${id}`)).toBe(0n);
    // The app keeps the five steps and pays only the refund's routing fee.
    const fee = BigInt(refunded.body.refund.payment.fee_msat);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 5000n - fee);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('the purchase preimage is not a proof while steps are left, nor for a spent-out chain paid exactly', async () => {
    const partly = await buy(3);
    expect(await t.sluice.chains.spend(partly.id, 1, partly.links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true });
    const early = await t.call('POST', `/v1/paycall/chains/${partly.id}/refund`, { key: null, body: { preimage: partly.preimage, invoice: await refundInvoice(2000n) } });
    expect(early.status).toBe(401);
    expect(early.body.error).toMatchObject({ code: 'chain_link_invalid', message: expect.stringMatching(/index 2/) });
    const exact = await buy(1);
    expect(await t.sluice.chains.spend(exact.id, 1, exact.links[1] as Buffer, { appId: app.id, priceMsat: msat(1000n) })).toMatchObject({ ok: true });
    const nothing = await t.call('POST', `/v1/paycall/chains/${exact.id}/refund`, { key: null, body: { preimage: exact.preimage, invoice: await refundInvoice(1000n) } });
    expect(nothing.status).toBe(409);
    expect(nothing.body.error.code).toBe('chain_nothing_to_refund');
    expect((await t.sluice.chains.get(exact.id))?.status).toBe('exhausted');
  });
});
