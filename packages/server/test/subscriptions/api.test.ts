// Subscriptions over REST on a real Sluice (devnet Lightning, SQLite and PostgreSQL): a month
// of billing lived through the devnet clock advance with exact msat totals, past_due ->
// suspended -> resumed on payment, cancel with an exact refund to a devnet wallet, double
// cancel, cancel racing a billing pass, invalid plans, who may do what, and the webhook
// events written for every transition.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { appAccountId } from '../../src/apps/service.js';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();
const DAY = 86_400;

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`subscriptions over REST on ${store}`, () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let database: TestDatabase | null = null;
  let app: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };

  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_subs') : null;
    t = await startTestSluice({ clock, env: database ? { SLUICE_DATABASE_URL: database.url } : {} });
    app = await t.createApp('echelon');
    other = await t.createApp('other');
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
  const as = (key: string, method: string, url: string, body?: unknown) => t.call(method, url, { key, ...(body === undefined ? {} : { body }) });
  const advance = async (seconds: number) => {
    const moved = await t.call('POST', '/v1/devnet/clock/advance', { body: { seconds } });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
  };
  const settled = () => t.sluice.subscriptions.idle();
  const accountBalance = async (id: string) => balanceOf((await t.sluice.ledger.getAccount(id))!);

  async function createPlan(body: Record<string, unknown>) {
    const created = await asApp('POST', '/v1/plans', { name: 'plan', ...body });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return created.body as { id: string; price_msat_per_increment: string };
  }

  /** Pays the subscription's open invoice from a devnet wallet; returns the amount paid. */
  async function payOpenInvoice(id: string, token: string): Promise<bigint> {
    const sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
    expect(sub.invoice, JSON.stringify(sub)).not.toBeNull();
    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: sub.invoice.payment_request, wallet: 'alice' } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    await untilCredited(id, token, BigInt(sub.balance_msat) + BigInt(sub.charged_msat) + BigInt(paid.body.amount_msat));
    return BigInt(paid.body.amount_msat);
  }

  /**
   * Waits until the subscription has taken in `totalMsat` (charged + balance). The invoice
   * watcher may credit a devnet payment before the route's own check does; the subscription
   * then hears of it a moment after the route answered.
   */
  async function untilCredited(id: string, token: string, totalMsat: bigint): Promise<void> {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      await settled();
      const sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
      if (BigInt(sub.balance_msat) + BigInt(sub.charged_msat) >= totalMsat) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`subscription ${id} never took in ${totalMsat} msat`);
  }

  async function subscribe(planId: string, extra: Record<string, unknown> = {}) {
    const created = await asApp('POST', '/v1/subscriptions', { plan_id: planId, ...extra });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return { id: created.body.id as string, token: created.body.payer_token as string, body: created.body };
  }

  it('lives a month of an Echelon Mobile plan through the clock advance: exact totals, events in order, expiry', async () => {
    const plan = await createPlan({ name: 'Echelon: 1 month, hourly', rate_msat_per_s: '20', increment_s: 3600, prepayment_s: DAY, grace_s: DAY, contract_s: 30 * DAY });
    expect(plan.price_msat_per_increment).toBe('72000');
    const revenueBefore = await accountBalance(appAccountId(app.id));
    const { id, token, body } = await subscribe(plan.id);
    expect(body).toMatchObject({ status: 'created', paid_through: null, invoice: { amount_msat: '1728000' } });

    let paidTotal = await payOpenInvoice(id, token);
    let sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
    expect(sub).toMatchObject({ status: 'active', charged_msat: '72000', balance_msat: '1656000', time_left_s: 24 * 3600 });
    // An extra top-up of the customer's choosing, from the customer page.
    const topUp = await as(token, 'POST', `/v1/subscriptions/${id}/pay`, { amount_msat: '500000' });
    expect(topUp.body.invoice.amount_msat).toBe('500000');
    paidTotal += await payOpenInvoice(id, token);

    // 30 days in steps of 5 hours; the customer pays every prepayment invoice as it comes.
    for (let hours = 0; hours < 30 * 24; hours += 5) {
      await advance(5 * 3600);
      sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
      if (sub.status === 'expired') break;
      expect(sub.status, `after ${hours + 5} h: ${JSON.stringify(sub)}`).toBe('active');
      if (sub.invoice) paidTotal += await payOpenInvoice(id, token);
    }
    sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
    expect(sub.status).toBe('expired');
    expect(sub.charged_msat).toBe(String(720n * 72_000n));
    const remaining = BigInt(sub.balance_msat);
    expect(remaining).toBe(paidTotal - 720n * 72_000n);
    expect(await accountBalance(`sub:${id}`)).toBe(remaining);
    expect(await accountBalance(appAccountId(app.id)) - revenueBefore).toBe(720n * 72_000n);
    // Invoices never ask for more than the contract's rest (the extra top-up paid for time
    // too): the customer paid exactly the month, nothing is left to refund.
    expect(remaining).toBe(0n);
    expect(paidTotal).toBe(720n * 72_000n);
    const refund = await as(token, 'POST', `/v1/subscriptions/${id}/refund`, { refund: { keysend_pubkey: t.sluice.devnet!.nodePubkey('bob') } });
    expect(refund.body.error.code).toBe('subscription_nothing_to_refund');

    const events = (await t.sluice.webhooks.listEvents(app.id, 1000)).filter((e) => JSON.parse(e.payload).data.subscription_id === id);
    const types = events.map((e) => e.type);
    expect(types).toContain('subscription.created');
    expect(types).toContain('subscription.activated');
    expect(types).toContain('subscription.payment_succeeded');
    expect(types).toContain('subscription.balance_low');
    expect(types).toContain('subscription.renewed');
    expect(types).toContain('subscription.expired');
    expect(types).not.toContain('subscription.past_due');
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it('past_due when the buffer runs out, suspended after the grace, resumed on payment (the grace is paid)', async () => {
    const plan = await createPlan({ rate_msat_per_increment: '100000', increment_s: 3600, prepayment_s: 2 * 3600, grace_s: 3 * 3600, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    await payOpenInvoice(id, token);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body).toMatchObject({ status: 'active', balance_msat: '100000' });
    await advance(2 * 3600 + 60);
    let sub = (await asApp('GET', `/v1/subscriptions/${id}`)).body;
    expect(sub).toMatchObject({ status: 'past_due', owed_msat: '100000' });
    expect(sub.invoice).not.toBeNull();
    await advance(3 * 3600);
    sub = (await asApp('GET', `/v1/subscriptions/${id}`)).body;
    expect(sub).toMatchObject({ status: 'suspended', owed_msat: '300000' });
    // The open invoice may have expired meanwhile: ask for a fresh one from the customer page.
    const fresh = await as(token, 'POST', `/v1/subscriptions/${id}/pay`, {});
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(200);
    expect(fresh.body.invoice).not.toBeNull();
    await payOpenInvoice(id, token);
    sub = (await asApp('GET', `/v1/subscriptions/${id}`)).body;
    expect(sub.status).toBe('active');
    expect(sub.owed_msat).toBe('0');
    expect(BigInt(sub.charged_msat)).toBe(2n * 100_000n + 3n * 100_000n + 100_000n);
    const types = (await t.sluice.webhooks.listEvents(app.id, 1000))
      .filter((e) => JSON.parse(e.payload).data.subscription_id === id)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((e) => e.type)
      .filter((type) => ['subscription.past_due', 'subscription.suspended', 'subscription.resumed'].includes(type));
    expect(types).toEqual(['subscription.past_due', 'subscription.suspended', 'subscription.resumed']);
  });

  it('cancel by the customer refunds the unused prepaid balance exactly to a devnet wallet; a second cancel is refused', async () => {
    const plan = await createPlan({ rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, grace_s: 600, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    const paid = await payOpenInvoice(id, token);
    expect(paid).toBe(7n * 3600n);
    await advance(10 * 60 + 30);
    const devnet = t.sluice.devnet!;
    const before = devnet.nodeBalanceMsat('bob');
    const revenueBefore = await accountBalance(appAccountId(app.id));
    const cancelled = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { keysend_pubkey: devnet.nodePubkey('bob') } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    await settled();
    // 11 increments started (0 .. 10): the 11th is billed in full, the rest comes back.
    const charged = 11n * 7n * 60n;
    expect(cancelled.body).toMatchObject({ status: 'cancelled', ended_by: 'customer', charged_msat: String(charged), refund_error: null });
    expect(devnet.nodeBalanceMsat('bob') - before).toBe(paid - charged);
    expect(await accountBalance(`sub:${id}`)).toBe(0n);
    // The app paid the routing fee of the refund out of its revenue (devnet keysend fees may be 0).
    expect(await accountBalance(appAccountId(app.id))).toBeLessThanOrEqual(revenueBefore);

    const again = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, {});
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('subscription_ended');
    const byMerchant = await asApp('POST', `/v1/subscriptions/${id}/cancel`, {});
    expect(byMerchant.body.error.code).toBe('subscription_ended');
    const refundAgain = await as(token, 'POST', `/v1/subscriptions/${id}/refund`, { refund: { keysend_pubkey: devnet.nodePubkey('bob') } });
    expect(refundAgain.body.error.code).toBe('subscription_nothing_to_refund');
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund.status).toBe('succeeded');
  });

  it('a payment arriving after the refund was paid is held and sent on at once to the keysend key kept with the cancel', async () => {
    const plan = await createPlan({ rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    const paid = await payOpenInvoice(id, token);
    await advance(30 * 60 + 30);
    const charged = 31n * 7n * 60n;
    const topUp = (await as(token, 'POST', `/v1/subscriptions/${id}/pay`, { amount_msat: '5000' })).body.invoice;
    const devnet = t.sluice.devnet!;
    const bob = devnet.nodePubkey('bob');
    const before = devnet.nodeBalanceMsat('bob');
    const cancelled = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { keysend_pubkey: bob } });
    expect(cancelled.body.refund, JSON.stringify(cancelled.body)).toMatchObject({ status: 'succeeded', amount_msat: String(paid - charged) });
    const late = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: topUp.payment_request, wallet: 'alice' } });
    expect(late.status, JSON.stringify(late.body)).toBe(200);
    for (let attempt = 0; devnet.nodeBalanceMsat('bob') - before < paid - charged + 5000n; attempt += 1) {
      expect(attempt, 'the late payment was never sent on').toBeLessThan(200);
      await settled();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(devnet.nodeBalanceMsat('bob') - before).toBe(paid - charged + 5000n);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
    expect(await accountBalance(`sub:${id}`)).toBe(0n);
  });

  for (const outcome of ['succeeded', 'failed'] as const) {
    it(`a payment arriving while a refund is in flight (which then ${outcome === 'succeeded' ? 'succeeds' : 'fails'}): the refund keeps its amount, the new money is refunded too`, async () => {
      const plan = await createPlan({ rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' });
      const { id, token } = await subscribe(plan.id);
      const paid = await payOpenInvoice(id, token);
      // 31 increments: the app's revenue (13,020 msat) can lend the whole fee budget (10 sat).
      await advance(30 * 60 + 30);
      const charged = 31n * 7n * 60n;
      const refund = paid - charged;
      // The customer asks for a top-up invoice and pays it only after the cancel.
      const topUp = (await as(token, 'POST', `/v1/subscriptions/${id}/pay`, { amount_msat: '5000' })).body.invoice;
      const devnet = t.sluice.devnet!;
      const bob = devnet.nodePubkey('bob');
      const before = devnet.nodeBalanceMsat('bob');
      const revenueBefore = await accountBalance(appAccountId(app.id));
      const since = t.sluice.clock.now();
      // The refund reaches its end at the node, but Sluice learns it only when it asks again.
      if (outcome === 'failed') devnet.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'bob' });
      devnet.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'bob' });
      const cancelled = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { keysend_pubkey: bob } });
      expect(cancelled.body.refund, JSON.stringify(cancelled.body)).toMatchObject({ status: 'pending', amount_msat: String(refund) });
      const late = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: topUp.payment_request, wallet: 'alice' } });
      expect(late.status, JSON.stringify(late.body)).toBe(200);
      // The subscription took the late payment in when its payment_succeeded event is written.
      for (let attempt = 0; ; attempt += 1) {
        await settled();
        const events = await t.sluice.webhooks.listEvents(app.id, 1000);
        if (events.some((e) => e.type === 'subscription.payment_succeeded' && JSON.parse(e.payload).data.payment_hash === topUp.payment_hash)) break;
        expect(attempt, 'the late payment never reached the subscription').toBeLessThan(200);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund).toMatchObject({ status: 'pending', amount_msat: String(refund) });

      await t.sluice.payments.reconcileInFlight();
      await settled();
      let sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
      if (outcome === 'succeeded') {
        // The new money went on to the same keysend key after the refund ended.
        expect(sub.refund).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
      } else {
        // The failed refund and the new money are held together; the loan went back to the app.
        expect(sub.refund).toMatchObject({ status: 'failed', amount_msat: String(refund + 5000n) });
        expect(await accountBalance(`sub:${id}`)).toBe(refund + 5000n);
        expect(await accountBalance(appAccountId(app.id))).toBe(revenueBefore);
        const retried = await as(token, 'POST', `/v1/subscriptions/${id}/refund`, {});
        expect(retried.status, JSON.stringify(retried.body)).toBe(200);
        await settled();
        sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
        expect(sub.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund + 5000n) });
      }
      expect(devnet.nodeBalanceMsat('bob') - before).toBe(refund + 5000n);
      expect(await accountBalance(`sub:${id}`)).toBe(0n);
      const refunds = (await t.sluice.payments.listPayments(app.id, 1000)).filter((p) => p.destination === bob && p.status === 'succeeded' && p.createdAt >= since);
      const fees = refunds.filter((p) => [refund, 5000n, refund + 5000n].includes(p.amountMsat)).reduce((sum, p) => sum + (p.feeMsat ?? 0n), 0n);
      expect(await accountBalance(appAccountId(app.id))).toBe(revenueBefore - fees);
    });
  }

  for (const kept of [false, true]) {
    it(`a contract that expires with balance left holds it for a refund, as a cancel does (${kept ? 'sent at once to the keysend key kept since creation' : 'paid out on request'})`, async () => {
      const devnet = t.sluice.devnet!;
      const bob = devnet.nodePubkey('bob');
      const plan = await createPlan({ rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, contract_s: 600, min_settlement_msat: '1000' });
      const { id, token, body } = await subscribe(plan.id, kept ? { refund: { keysend_pubkey: bob } } : {});
      // The first invoice asks for the whole contract (10 increments); the customer also tops up 5,000 msat more than it will use.
      expect(body.invoice.amount_msat).toBe(String(10n * 420n));
      await payOpenInvoice(id, token);
      expect((await as(token, 'POST', `/v1/subscriptions/${id}/pay`, { amount_msat: '5000' })).status).toBe(200);
      await payOpenInvoice(id, token);
      const before = devnet.nodeBalanceMsat('bob');
      await advance(11 * 60);
      await settled();
      const sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
      expect(sub).toMatchObject({ status: 'expired', ended_by: 'contract', charged_msat: String(10n * 420n) });
      const expired = (await t.sluice.webhooks.listEvents(app.id, 1000)).map((e) => JSON.parse(e.payload)).find((e) => e.type === 'subscription.expired' && e.data.subscription_id === id);
      expect(expired.data.refund_msat).toBe('5000');
      if (kept) {
        expect(sub.refund).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
      } else {
        expect(sub).toMatchObject({ balance_msat: '5000', refund: { status: 'held', amount_msat: '5000' } });
        const paidOut = await as(token, 'POST', `/v1/subscriptions/${id}/refund`, { refund: { keysend_pubkey: bob } });
        expect(paidOut.status, JSON.stringify(paidOut.body)).toBe(200);
        await settled();
        expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
      }
      expect(devnet.nodeBalanceMsat('bob') - before).toBe(5000n);
      expect(await accountBalance(`sub:${id}`)).toBe(0n);
    });
  }

  it('a fee loan the ledger refuses (the app spent its balance meanwhile) changes nothing: the refund stays held, no loan, a later refund pays it', async () => {
    // About 10,000 sat prepaid; two increments (12,000 msat) charged: the fee budget of the
    // refund (0.5%, ~50,000 msat) is more than the app has, so it lends what it has.
    // An app of its own, whose only revenue is these charges.
    const own = await t.createApp('loan refused');
    const plan = (await as(own.apiKey, 'POST', '/v1/plans', { name: 'big', rate_msat_per_increment: '6000', increment_s: 60, prepayment_s: 100_000, min_settlement_msat: '1000' })).body;
    const created = (await as(own.apiKey, 'POST', '/v1/subscriptions', { plan_id: plan.id })).body;
    const { id, payer_token: token } = created as { id: string; payer_token: string };
    const paid = await payOpenInvoice(id, token);
    await advance(90);
    const refund = paid - 2n * 6000n;
    const bob = t.sluice.devnet!.nodePubkey('bob');
    const revenueBefore = await accountBalance(appAccountId(own.id));
    // The app's balance as read before the loan is larger than what the commit finds.
    const ledger = t.sluice.ledger as { getAccount: typeof t.sluice.ledger.getAccount };
    const getAccount = ledger.getAccount.bind(ledger);
    ledger.getAccount = async (accountId) => {
      const account = await getAccount(accountId);
      return account && accountId === appAccountId(own.id) ? { ...account, creditsPostedMsat: msat(account.creditsPostedMsat + 10n ** 12n) } : account;
    };
    let cancelled;
    try {
      cancelled = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { keysend_pubkey: bob } });
    } finally {
      ledger.getAccount = getAccount;
    }
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', refund: { status: 'held', amount_msat: String(refund) }, refund_error: { code: 'subscription_refund_unavailable' } });
    expect(await accountBalance(`sub:${id}`)).toBe(refund);
    expect(await accountBalance(appAccountId(own.id))).toBe(revenueBefore);
    const before = t.sluice.devnet!.nodeBalanceMsat('bob');
    const paidOut = await as(token, 'POST', `/v1/subscriptions/${id}/refund`, {});
    expect(paidOut.status, JSON.stringify(paidOut.body)).toBe(200);
    await settled();
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund) });
    expect(t.sluice.devnet!.nodeBalanceMsat('bob') - before).toBe(refund);
    expect(await accountBalance(`sub:${id}`)).toBe(0n);
  });

  it('an ended subscription offers no invoice to pay, though its last one is still open at the node', async () => {
    const plan = await createPlan({ rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, grace_s: 600, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.invoice).not.toBeNull();
    const cancelled = await asApp('POST', `/v1/subscriptions/${id}/cancel`, {});
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', invoice: null });
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body).toMatchObject({ status: 'cancelled', invoice: null });
  });

  it('cancel with a refund invoice: a wrong amount is refused with nothing changed, the exact amount is paid', async () => {
    const plan = await createPlan({ rate_msat_per_s: '5', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    const paid = await payOpenInvoice(id, token);
    await advance(90);
    const refund = paid - 2n * 300n;
    const wrong = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: String(refund + 1n), wallet: 'carol' } });
    const refused = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { payment_request: wrong.body.payment_request } });
    expect([refused.status, refused.body.error?.code]).toEqual([400, 'subscription_refund_amount_mismatch']);
    const garbage = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { payment_request: 'lnbc1notaninvoice' } });
    expect([garbage.status, garbage.body.error?.code]).toEqual([400, 'subscription_refund_destination_invalid']);
    const twoDestinations = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { payment_request: wrong.body.payment_request, keysend_pubkey: t.sluice.devnet!.nodePubkey('bob') } });
    expect(twoDestinations.body.error?.code).toBe('invalid_request');
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body).toMatchObject({ status: 'active', balance_msat: String(refund) });

    const exact = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: String(refund), wallet: 'carol' } });
    const before = t.sluice.devnet!.nodeBalanceMsat('carol');
    const cancelled = await as(token, 'POST', `/v1/subscriptions/${id}/cancel`, { refund: { payment_request: exact.body.payment_request } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    await settled();
    expect(t.sluice.devnet!.nodeBalanceMsat('carol') - before).toBe(refund);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund) });
  });

  it('a cancel racing a large billing pass: nothing charged after the cancel, refund paid once, totals exact', async () => {
    const plan = await createPlan({ rate_msat_per_s: '3', increment_s: 1, prepayment_s: 3600, grace_s: 60, min_settlement_msat: '1000' });
    const { id, token } = await subscribe(plan.id);
    const paid = await payOpenInvoice(id, token);
    const devnet = t.sluice.devnet!;
    const before = devnet.nodeBalanceMsat('carol');
    const [moved, cancelled] = await Promise.all([
      t.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 600 } }),
      asApp('POST', `/v1/subscriptions/${id}/cancel`, { refund: { keysend_pubkey: devnet.nodePubkey('carol') } }),
    ]);
    expect(moved.status).toBe(200);
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    await settled();
    await advance(600);
    const sub = (await asApp('GET', `/v1/subscriptions/${id}`)).body;
    expect(sub.status).toBe('cancelled');
    const charged = BigInt(sub.charged_msat);
    expect(charged === 3n || charged === 3n * 601n).toBe(true);
    expect(devnet.nodeBalanceMsat('carol') - before).toBe(paid - charged);
    expect(await accountBalance(`sub:${id}`)).toBe(0n);
    const refunds = (await t.sluice.payments.listPayments(app.id, 1000)).filter((p) => p.destination === devnet.nodePubkey('carol') && p.status === 'succeeded');
    expect(refunds.filter((p) => p.amountMsat === paid - charged)).toHaveLength(1);
  });

  it('a trial: active without payment until the trial ends, then billed from the buffer paid meanwhile', async () => {
    const plan = await createPlan({ rate_msat_per_increment: '40000', increment_s: 3600, prepayment_s: 3 * 3600, grace_s: 3600, trial_s: 2 * 3600, min_settlement_msat: '1000' });
    const { id, token, body } = await subscribe(plan.id);
    expect(body).toMatchObject({ status: 'trialing', invoice: { amount_msat: '120000' } });
    await payOpenInvoice(id, token);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body).toMatchObject({ status: 'trialing', balance_msat: '120000', charged_msat: '0' });
    await advance(2 * 3600 + 30);
    const sub = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
    expect(sub).toMatchObject({ status: 'active', balance_msat: '80000', charged_msat: '40000' });
    expect(sub.activated_at).toBe(sub.trial_ends_at);
  });

  it('pause and resume when the plan allows it: nothing billed while paused, a new increment at resume', async () => {
    const noPause = await createPlan({ rate_msat_per_increment: '10000', increment_s: 3600, prepayment_s: 10 * 3600, min_settlement_msat: '1000' });
    const fixed = await subscribe(noPause.id);
    await payOpenInvoice(fixed.id, fixed.token);
    const refused = await as(fixed.token, 'POST', `/v1/subscriptions/${fixed.id}/pause`, {});
    expect([refused.status, refused.body.error?.code]).toEqual([409, 'subscription_pause_not_allowed']);

    const plan = await createPlan({ rate_msat_per_increment: '10000', increment_s: 3600, prepayment_s: 10 * 3600, min_settlement_msat: '1000', max_pause_s: 7 * 24 * 3600 });
    const { id, token } = await subscribe(plan.id);
    await payOpenInvoice(id, token);
    expect((await as(token, 'POST', `/v1/subscriptions/${id}/resume`, {})).body.error.code).toBe('subscription_not_paused');
    const paused = await as(token, 'POST', `/v1/subscriptions/${id}/pause`, {});
    expect(paused.status, JSON.stringify(paused.body)).toBe(200);
    expect(paused.body).toMatchObject({ status: 'paused', charged_msat: '10000' });
    await advance(2 * 24 * 3600);
    expect((await as(token, 'GET', `/v1/subscriptions/${id}`)).body).toMatchObject({ status: 'paused', charged_msat: '10000', balance_msat: '90000' });
    const resumed = await asApp('POST', `/v1/subscriptions/${id}/resume`, {});
    expect(resumed.body).toMatchObject({ status: 'active', charged_msat: '20000', balance_msat: '80000' });
    const events = (await t.sluice.webhooks.listEvents(app.id, 1000))
      .map((e) => JSON.parse(e.payload))
      .filter((e) => e.data.subscription_id === id && ['subscription.suspended', 'subscription.resumed'].includes(e.type));
    expect(events.map((e) => [e.type, e.data.reason ?? e.data.from, e.data.by]).sort()).toEqual([
      ['subscription.resumed', 'paused', 'merchant'], ['subscription.suspended', 'paused', 'customer'],
    ]);
  });

  it('a top-up amount no invoice can carry is refused with invalid_amount (400) and changes nothing', async () => {
    const plan = await createPlan({ rate_msat_per_s: '1', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' });
    const { id, token, body } = await subscribe(plan.id);
    // 21 million BTC is the largest BOLT 11 amount; 1 msat more fits in an i64 but in no invoice.
    for (const amount of ['2100000000000000001', '9223372036854775807']) {
      const refused = await as(token, 'POST', `/v1/subscriptions/${id}/pay`, { amount_msat: amount });
      expect([refused.status, refused.body.error?.code], amount).toEqual([400, 'invalid_amount']);
    }
    const after = (await as(token, 'GET', `/v1/subscriptions/${id}`)).body;
    expect(after.invoice).toEqual(body.invoice);
  });

  it('refuses invalid plans with their codes and changes nothing', async () => {
    const base = { name: 'x', rate_msat_per_s: '1', increment_s: 60, prepayment_s: 3600 };
    const cases: [Record<string, unknown>, number, string][] = [
      [{ rate_msat_per_s: '0' }, 400, 'plan_rate_invalid'],
      [{ rate_msat_per_s: '-1' }, 400, 'plan_rate_invalid'],
      [{ increment_s: 7200, contract_s: 3600, prepayment_s: 7200 }, 400, 'plan_increment_exceeds_contract'],
      [{ prepayment_s: 30 }, 400, 'plan_prepayment_too_short'],
      [{ increment_s: 0 }, 400, 'plan_increment_invalid'],
      [{ grace_s: -5 }, 400, 'plan_invalid'],
      [{ increment_s: 'sixty' }, 400, 'invalid_request'],
      [{ color: 'red' }, 400, 'unknown_field'],
    ];
    const before = (await asApp('GET', '/v1/plans')).body.plans.length;
    for (const [args, status, code] of cases) {
      const refused = await asApp('POST', '/v1/plans', { ...base, ...args });
      expect([refused.status, refused.body.error?.code], JSON.stringify(args)).toEqual([status, code]);
    }
    expect((await asApp('GET', '/v1/plans')).body.plans.length).toBe(before);
  });

  it('who may do what: payer tokens see one subscription, other apps see nothing', async () => {
    const plan = await createPlan({ rate_msat_per_s: '1', increment_s: 60, prepayment_s: 3600 });
    const { id, token } = await subscribe(plan.id);
    expect((await as(other.apiKey, 'GET', `/v1/subscriptions/${id}`)).body.error.code).toBe('subscription_not_found');
    expect((await as(other.apiKey, 'POST', '/v1/subscriptions', { plan_id: plan.id })).body.error.code).toBe('plan_not_found');
    expect((await as(token, 'GET', '/v1/plans')).status).toBe(403);
    expect((await as(token, 'GET', '/v1/subscriptions')).status).toBe(403);
    expect((await as('spt_nope', 'GET', `/v1/subscriptions/${id}`)).body.error.code).toBe('invalid_api_key');
    expect((await t.call('GET', `/v1/subscriptions/${id}`, { key: null })).body.error.code).toBe('unauthorized');
    const list = (await asApp('GET', '/v1/subscriptions')).body.subscriptions;
    expect(list.some((s: { id: string }) => s.id === id)).toBe(true);
    expect((await asApp('GET', `/v1/plans/${plan.id}`)).body.id).toBe(plan.id);
    expect((await as(app.apiKey, 'POST', '/v1/devnet/clock/advance', { seconds: 1 })).status).toBe(403);
  });
});
}
