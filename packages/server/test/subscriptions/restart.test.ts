// Restart in the middle of a subscription's life (close and reopen on the same data dir or
// database): nothing lost, billing resumes where it stopped, no increment charged twice,
// and the devnet's own clock keeps its advance across the restart. Also: the demo
// businesses are seeded once, however often Sluice starts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { openSqlite } from '../../src/db/sqlite.js';
import { appAccountId } from '../../src/apps/service.js';
import { balanceOf } from '../../src/ledger/store.js';
import type { LightningBackend } from '../../src/lightning/backend.js';
import { msat } from '../../src/money/msat.js';
import { startLnurlService } from '../support/lnurl-service.js';
import { DEMO_BUSINESSES, seedDemoBusinesses } from '../../src/subscriptions/index.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

/**
 * Pays a subscription's invoice from a devnet wallet and waits until the subscription took
 * the money in (the invoice watcher may credit it before the route's own check does; the
 * subscription then hears of it a moment after the route answered).
 */
async function payAndWait(s: TestSluice, subscriptionId: string, paymentRequest: string, wallet?: string): Promise<void> {
  const paid = await s.call('POST', '/v1/devnet/pay', { body: { payment_request: paymentRequest, ...(wallet ? { wallet } : {}) } });
  expect(paid.status, JSON.stringify(paid.body)).toBe(200);
  for (let attempt = 0; attempt < 200; attempt += 1) {
    await s.sluice.subscriptions.idle();
    const sub = await s.sluice.subscriptions.get(subscriptionId, null);
    if (sub && sub.balanceMsat + sub.row.chargedMsat >= BigInt(paid.body.amount_msat)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`subscription ${subscriptionId} never took in the payment`);
}

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`subscriptions across a restart on ${store}`, () => {
  let database: TestDatabase | null = null;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-subs-restart-'));
  let t: TestSluice | null = null;
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const start = async (clock?: ReturnType<typeof createManualClock>) => {
    database ??= store === 'postgres' ? await createTestDatabase('sluice_subs_restart') : null;
    t = await startTestSluice({ dataDir, ...(clock ? { clock } : {}), env: database ? { SLUICE_DATABASE_URL: database.url } : {} });
    return t;
  };

  it('keeps every msat and the state machine across a close and reopen', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const app = await s.createApp('restart');
    const plan = (await s.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'hourly', rate_msat_per_increment: '50000', increment_s: 3600, prepayment_s: 5 * 3600, grace_s: 3600, min_settlement_msat: '1000' } })).body;
    const created = (await s.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id } })).body;
    const token = created.payer_token as string;
    await payAndWait(s, created.id, created.invoice.payment_request);
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 2 * 3600 + 1 } });
    const before = (await s.call('GET', `/v1/subscriptions/${created.id}`, { key: token })).body;
    expect(before).toMatchObject({ status: 'active', charged_msat: '150000', balance_msat: '100000' });
    await s.close();
    t = null;

    s = await start(clock);
    const after = (await s.call('GET', `/v1/subscriptions/${created.id}`, { key: token })).body;
    expect(after).toMatchObject({ status: 'active', charged_msat: '150000', balance_msat: '100000', paid_through: before.paid_through });
    // Two more increments start and are paid; the third finds the buffer empty: past_due, nothing charged twice.
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 3 * 3600 } });
    const later = (await s.call('GET', `/v1/subscriptions/${created.id}`, { key: token })).body;
    expect(later).toMatchObject({ status: 'past_due', charged_msat: '250000', balance_msat: '0', owed_msat: '50000' });
    const account = await s.sluice.ledger.getAccount(`sub:${created.id}`);
    expect(balanceOf(account!)).toBe(0n);
    const charges = (await s.sluice.ledger.listTransfers({ accountId: `sub:${created.id}`, limit: 100 })).filter((tr) => tr.code === 'subscription_charge');
    expect(charges.reduce((sum, tr) => sum + tr.amountMsat, 0n)).toBe(250_000n);
    await s.close();
    t = null;
  });

  it('a refund cut off by a crash before its payment was recorded is sent at the next start, exactly once', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const app = await s.createApp('refund crash');
    const plan = (await s.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'minutes', rate_msat_per_s: '10', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' } })).body;
    const created = (await s.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id } })).body;
    await payAndWait(s, created.id, created.invoice.payment_request);
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 300 } });
    // The process "dies" at the moment the refund would be sent: the payment is never begun.
    const payments = s.sluice.payments as { pay: unknown };
    payments.pay = async () => {
      throw new Error('simulated crash before the refund payment');
    };
    const devnet = s.sluice.devnet!;
    const bob = devnet.nodePubkey('bob');
    const cancelled = await s.call('POST', `/v1/subscriptions/${created.id}/cancel`, { key: created.payer_token, body: { refund: { keysend_pubkey: bob } } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(500);
    await s.close();
    t = null;

    s = await start(clock);
    await s.sluice.subscriptions.idle();
    const after = (await s.call('GET', `/v1/subscriptions/${created.id}`, { key: created.payer_token })).body;
    const refund = 36_000n - 6n * 600n;
    expect(after).toMatchObject({ status: 'cancelled', charged_msat: String(6n * 600n), refund: { status: 'succeeded', amount_msat: String(refund) } });
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${created.id}`))!)).toBe(0n);
    const sent = (await s.sluice.payments.listPayments(app.id, 100)).filter((payment) => payment.destination === bob);
    expect(sent.map((payment) => [payment.status, payment.amountMsat])).toEqual([['succeeded', refund]]);
    await s.close();
    t = null;
  });

  /** Runs `sql` (a statement ending in a parameter for the subscription id) on the data of the stopped Sluice. */
  const rewriteRow = async (sql: string, subscriptionId: string): Promise<void> => {
    if (database) {
      await database.sql.unsafe(`${sql}$1`, [subscriptionId]);
    } else {
      const db = openSqlite({ path: path.join(dataDir, 'sluice.sqlite') });
      db.prepare(`${sql}?`).run(subscriptionId);
      db.close();
    }
  };

  /** A pending attempt as a version before migration 3 left it: no saved invoice, budget or hash. */
  const asEarlierVersionsAttempt = (subscriptionId: string) =>
    rewriteRow('UPDATE subscriptions SET refund_max_fee_msat = NULL, refund_payment_request = NULL, refund_payment_hash = NULL WHERE id = ', subscriptionId);

  /** A funded per-minute subscription of a new app, 5 minutes in (6 increments charged). */
  const fundedSubscription = async (s: TestSluice, name: string) => {
    const app = await s.createApp(name);
    const plan = (await s.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'minutes', rate_msat_per_s: '10', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' } })).body;
    const created = (await s.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id } })).body;
    await payAndWait(s, created.id, created.invoice.payment_request);
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 300 } });
    return { app, id: created.id as string, token: created.payer_token as string, charged: 6n * 600n, refund: 36_000n - 6n * 600n };
  };

  /** What left the app's account for refunds: the routing fees of refund payments, nothing more. */
  const refundFeesPaid = async (s: TestSluice, appId: string, destination: string) =>
    (await s.sluice.payments.listPayments(appId, 100)).filter((p) => p.destination === destination && p.status === 'succeeded').reduce((sum, p) => sum + (p.feeMsat ?? 0n), 0n);

  it('a crash right after the app lent the refund fee budget: the customer gets the refund exactly, the loan goes back to the app', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const { app, id, token, charged, refund } = await fundedSubscription(s, 'loan crash');
    const bob = s.sluice.devnet!.nodePubkey('bob');
    // The process "dies" as soon as the loan is durable (if the loan is applied on its own),
    // and in any case before the refund payment is begun.
    const ledger = s.sluice.ledger as unknown as { apply: (op: { code?: string }) => Promise<unknown> };
    const apply = ledger.apply.bind(ledger);
    ledger.apply = async (op) => {
      const result = await apply(op);
      if (op.code === 'subscription_refund_fee_advance') throw new Error('simulated crash after the loan');
      return result;
    };
    (s.sluice.payments as { pay: unknown }).pay = async () => {
      throw new Error('simulated crash before the refund payment');
    };
    const cancelled = await s.call('POST', `/v1/subscriptions/${id}/cancel`, { key: token, body: { refund: { keysend_pubkey: bob } } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(500);
    await s.close();
    t = null;

    s = await start(clock);
    await s.sluice.subscriptions.idle();
    const before = s.sluice.devnet!.nodeBalanceMsat('bob');
    let sub = (await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body;
    // Whatever the start did, the customer may ask for the refund again.
    if (sub.refund.status !== 'succeeded') {
      await s.call('POST', `/v1/subscriptions/${id}/refund`, { key: token, body: { refund: { keysend_pubkey: bob } } });
      await s.sluice.subscriptions.idle();
      sub = (await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body;
    }
    const received = s.sluice.devnet!.nodeBalanceMsat('bob') - before;
    const sent = (await s.sluice.payments.listPayments(app.id, 100)).filter((payment) => payment.destination === bob && payment.status === 'succeeded');
    expect(sent.reduce((sum, payment) => sum + payment.amountMsat, 0n)).toBe(refund);
    expect(received === 0n || received === refund).toBe(true);
    expect(sub).toMatchObject({ status: 'cancelled', charged_msat: String(charged), refund: { status: 'succeeded', amount_msat: String(refund) } });
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(0n);
    expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(charged - (await refundFeesPaid(s, app.id, bob)));
    await s.close();
    t = null;
  });

  it('a fee loan an earlier version left without its attempt is returned to the app at start, once', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const { app, id, token, charged, refund } = await fundedSubscription(s, 'stray loan');
    const held = (await s.call('POST', `/v1/subscriptions/${id}/cancel`, { key: token, body: {} })).body;
    expect(held.refund).toMatchObject({ status: 'held', amount_msat: String(refund) });
    // What the old order left after a crash: attempt 1's loan applied, the row still held
    // (the app lends what it has: 3,600 msat of revenue here).
    const lent = await s.sluice.ledger.apply({
      kind: 'transfer', debitAccountId: appAccountId(app.id), creditAccountId: `sub:${id}`, amountMsat: msat(3_000n),
      code: 'subscription_refund_fee_advance', reference: `${id}/refund/1`, idempotencyKey: `sub:${id}:refund:1:fee`,
    });
    expect(lent.ok).toBe(true);
    await s.close();
    t = null;

    for (let restart = 0; restart < 2; restart += 1) {
      s = await start(clock);
      await s.sluice.subscriptions.idle();
      expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(charged);
      expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(refund);
      expect((await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body.refund).toMatchObject({ status: 'held', amount_msat: String(refund) });
      if (restart === 0) {
        await s.close();
        t = null;
      }
    }
    const bob = s.sluice.devnet!.nodePubkey('bob');
    const paid = await s.call('POST', `/v1/subscriptions/${id}/refund`, { key: token, body: { refund: { keysend_pubkey: bob } } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    await s.sluice.subscriptions.idle();
    const sent = (await s.sluice.payments.listPayments(app.id, 100)).filter((payment) => payment.destination === bob);
    expect(sent.map((payment) => [payment.status, payment.amountMsat])).toEqual([['succeeded', refund]]);
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(0n);
    expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(charged - (await refundFeesPaid(s, app.id, bob)));
    await s.close();
    t = null;
  });

  /**
   * A subscription refunding to erin's Lightning address (a local LNURL-pay service whose
   * invoices erin's devnet wallet issues, in whichever Sluice runs now), cancelled with the
   * refund payment cut off by a "crash"; `begin` says whether the payment had begun.
   */
  const lightningAddressRefundCut = async (clock: ReturnType<typeof createManualClock>, begin: boolean, beforeCancel?: (s: TestSluice, appId: string) => Promise<void>) => {
    let s = await start(clock);
    // Erin's wallet of the Sluice running now; between a close and the next start's return
    // (when its devnet exists) an invoice request waits for it.
    let setWallet = (_wallet: LightningBackend): void => undefined;
    let wallet = Promise.resolve(s.sluice.devnet!.backendFor('erin'));
    const lnurl = await startLnurlService({ wallet: { createInvoice: async (args: never) => (await wallet).createInvoice(args) } as unknown as LightningBackend, minSendableMsat: 1 });
    try {
      const app = await s.createApp(`address crash ${begin}`);
      const plan = (await s.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'bike', rate_msat_per_s: '300', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' } })).body;
      const created = (await s.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id, refund: { lightning_address: `erin@${lnurl.host}` } } })).body;
      await payAndWait(s, created.id, created.invoice.payment_request, 'alice');
      await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 25 * 60 } });
      const erinBefore = s.sluice.devnet!.nodeBalanceMsat('erin');
      // The payment settles at erin's node but Sluice is not told (as when the connection
      // drops): it stays in flight in this run, so only the next start can learn its outcome.
      if (begin) s.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'erin' });
      const payments = s.sluice.payments as { pay: (...args: never[]) => Promise<unknown> };
      const pay = payments.pay.bind(payments);
      payments.pay = async (...args: never[]) => {
        if (begin) await pay(...args);
        throw new Error('simulated crash before the refund payment was recorded');
      };
      await beforeCancel?.(s, app.id);
      const cancelled = await s.call('POST', `/v1/subscriptions/${created.id}/cancel`, { key: app.apiKey, body: {} });
      expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(500);
      await s.close();
      t = null;
      const refund = 300n * 3600n - 26n * 300n * 60n;
      return {
        app, id: created.id as string, refund, erinBefore,
        /** The refund reached erin exactly once, and the subscription's account is empty. */
        expectPaidOnce: async (sluice: TestSluice) => {
          const sub = (await sluice.call('GET', `/v1/subscriptions/${created.id}`, { key: app.apiKey })).body;
          expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'succeeded', amount_msat: String(refund) });
          const sent = (await sluice.sluice.payments.listPayments(app.id, 100)).filter((payment) => payment.status !== 'failed');
          expect(sent.map((payment) => [payment.status, payment.amountMsat])).toEqual([['succeeded', refund]]);
          expect(sluice.sluice.devnet!.nodeBalanceMsat('erin') - erinBefore).toBe(refund);
          expect(balanceOf((await sluice.sluice.ledger.getAccount(`sub:${created.id}`))!)).toBe(0n);
        },
        restart: async () => {
          wallet = new Promise((resolve) => { setWallet = resolve; });
          s = await start(clock);
          setWallet(s.sluice.devnet!.backendFor('erin'));
          await s.sluice.subscriptions.idle();
          return s;
        },
        closeLnurl: () => lnurl.close(),
      };
    } catch (error) {
      await lnurl.close();
      throw error;
    }
  };

  it('a Lightning-address refund whose payment began before a crash is reconciled at the next start, never paid twice', async () => {
    const clock = createManualClock(Date.now());
    const cut = await lightningAddressRefundCut(clock, true);
    try {
      for (let restart = 0; restart < 2; restart += 1) {
        const s = await cut.restart();
        await cut.expectPaidOnce(s);
        await s.close();
        t = null;
      }
    } finally {
      await cut.closeLnurl();
    }
  });

  it('a Lightning-address refund cut off before its payment, whose invoice expired by the restart: the attempt fails and a fresh one pays once', async () => {
    const clock = createManualClock(Date.now());
    const cut = await lightningAddressRefundCut(clock, false);
    try {
      clock.advanceMs(3600_000);
      const s = await cut.restart();
      await cut.expectPaidOnce(s);
      await s.close();
      t = null;
    } finally {
      await cut.closeLnurl();
    }
  });

  it('a refund invoice the merchant paid itself while the attempt was cut off: the attempt is not taken for paid, the balance stays the customer\'s', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const { app, id, token, charged, refund } = await fundedSubscription(s, 'merchant paid the invoice');
    // The app holds money of its own (an invoice a customer paid), enough to pay the refund invoice.
    const own = (await s.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '100000' } })).body;
    expect((await s.call('POST', '/v1/devnet/pay', { body: { payment_request: own.payment_request, wallet: 'alice' } })).status).toBe(200);
    const invoice = (await s.call('POST', '/v1/devnet/invoices', { body: { amount_msat: String(refund), wallet: 'carol' } })).body;
    const pay = s.sluice.payments.pay.bind(s.sluice.payments);
    (s.sluice.payments as { pay: unknown }).pay = async () => {
      throw new Error('simulated crash before the refund payment');
    };
    const cancelled = await s.call('POST', `/v1/subscriptions/${id}/cancel`, { key: token, body: { refund: { payment_request: invoice.payment_request } } });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(500);
    // Before the restart, the merchant pays the customer's refund invoice from its own balance.
    const merchant = await pay(app.id, { target: { kind: 'invoice', paymentRequest: invoice.payment_request, amountMsat: null }, maxFeeMsat: null, idempotencyKey: 'merchant-pays' });
    expect(merchant.ok && merchant.payment.status).toBe('succeeded');
    const appAfterMerchant = balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!);
    const loan = balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!) - refund;
    expect(loan).toBeGreaterThan(0n);
    await s.close();
    t = null;

    s = await start(clock);
    await s.sluice.subscriptions.idle();
    const sub = (await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body;
    // The attempt could not be sent (the invoice is paid): it failed, nothing left the account, the loan went back.
    expect(sub).toMatchObject({ status: 'cancelled', charged_msat: String(charged), refund: { status: 'failed', amount_msat: String(refund) } });
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(refund);
    expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(appAfterMerchant + loan);
    await s.close();
    t = null;
  });

  it('an earlier version\'s Lightning-address attempt that lent nothing, cut off after its payment began and ended: found by its key at the next start, not left pending; a later refund pays once', async () => {
    const clock = createManualClock(Date.now());
    // The app has nothing to lend (its revenue moved elsewhere), so the attempt has no loan
    // transfer to find it by; its payment is found by the attempt's idempotency key.
    const cut = await lightningAddressRefundCut(clock, true, async (s, appId) => {
      const elsewhere = await s.sluice.ledger.createAccount({ id: `test:drain:${appId}`, ownerId: 'system', limitMsat: null, code: 'test' });
      expect(elsewhere.ok).toBe(true);
      const revenue = balanceOf((await s.sluice.ledger.getAccount(appAccountId(appId)))!);
      const drained = await s.sluice.ledger.apply({ kind: 'transfer', debitAccountId: appAccountId(appId), creditAccountId: `test:drain:${appId}`, amountMsat: msat(revenue), code: 'test' });
      expect(drained.ok).toBe(true);
    });
    try {
      await asEarlierVersionsAttempt(cut.id);
      const s = await cut.restart();
      // With no fee budget the payment found no route: its end is recorded, nothing was paid.
      const sub = (await s.call('GET', `/v1/subscriptions/${cut.id}`, { key: cut.app.apiKey })).body;
      expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'failed', amount_msat: String(cut.refund) });
      expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${cut.id}`))!)).toBe(cut.refund);
      expect(s.sluice.devnet!.nodeBalanceMsat('erin') - cut.erinBefore).toBe(0n);
      // The app's revenue comes back; a refund to the kept address pays once.
      const back = await s.sluice.ledger.apply({ kind: 'transfer', debitAccountId: `test:drain:${cut.app.id}`, creditAccountId: appAccountId(cut.app.id), amountMsat: msat(50_000n), code: 'test' });
      expect(back.ok).toBe(true);
      const paid = await s.call('POST', `/v1/subscriptions/${cut.id}/refund`, { key: cut.app.apiKey, body: {} });
      expect(paid.status, JSON.stringify(paid.body)).toBe(200);
      await s.sluice.subscriptions.idle();
      await cut.expectPaidOnce(s);
      await s.close();
      t = null;
    } finally {
      await cut.closeLnurl();
    }
  });

  it('an earlier version\'s Lightning-address attempt cut off before its payment, the address unreachable at the next start: the attempt fails with nothing sent, not left pending; a later refund pays once', async () => {
    const clock = createManualClock(Date.now());
    const cut = await lightningAddressRefundCut(clock, false);
    await cut.closeLnurl();
    await asEarlierVersionsAttempt(cut.id);
    const s = await cut.restart();
    let sub = (await s.call('GET', `/v1/subscriptions/${cut.id}`, { key: cut.app.apiKey })).body;
    expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'failed', amount_msat: String(cut.refund) });
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${cut.id}`))!)).toBe(cut.refund);
    expect(s.sluice.devnet!.nodeBalanceMsat('erin') - cut.erinBefore).toBe(0n);
    expect((await s.sluice.payments.listPayments(cut.app.id, 100)).filter((payment) => payment.status !== 'failed')).toEqual([]);
    // The loan went back: the app holds what it charged.
    expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(cut.app.id)))!)).toBe(BigInt(sub.charged_msat));
    const bob = s.sluice.devnet!.nodePubkey('bob');
    const before = s.sluice.devnet!.nodeBalanceMsat('bob');
    const paid = await s.call('POST', `/v1/subscriptions/${cut.id}/refund`, { key: cut.app.apiKey, body: { refund: { keysend_pubkey: bob } } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    await s.sluice.subscriptions.idle();
    sub = (await s.call('GET', `/v1/subscriptions/${cut.id}`, { key: cut.app.apiKey })).body;
    expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'succeeded', amount_msat: String(cut.refund) });
    expect(s.sluice.devnet!.nodeBalanceMsat('bob') - before).toBe(cut.refund);
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${cut.id}`))!)).toBe(0n);
    await s.close();
    t = null;
  });

  // An attempt of a version before migration 3 saved neither its budget nor its invoice. A
  // payment arriving while it was in flight is the customer's: the attempt's end gives back
  // only its loan (read from the ledger), not everything beyond the refund. Such versions also
  // wrote the whole balance into refund_msat on a late payment ('inflated').
  for (const [outcome, inflated] of [['succeeded', false], ['failed', false], ['succeeded', true], ['failed', true]] as const) {
    it(`an earlier version's refund in flight at the upgrade, a payment arriving meanwhile, the refund ${outcome}${inflated ? ' (refund_msat as that version wrote it)' : ''}: the new money stays the customer's, the loan goes back`, async () => {
      const clock = createManualClock(Date.now());
      let s = await start(clock);
      const { app, id, token, charged, refund } = await fundedSubscription(s, `legacy in flight ${outcome} ${inflated}`);
      const topUp = (await s.call('POST', `/v1/subscriptions/${id}/pay`, { key: token, body: { amount_msat: '5000' } })).body.invoice;
      const devnet = s.sluice.devnet!;
      const bob = devnet.nodePubkey('bob');
      const bobBefore = devnet.nodeBalanceMsat('bob');
      // The refund reaches its end at the node; Sluice learns it only at the next start.
      if (outcome === 'failed') devnet.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'bob' });
      devnet.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'bob' });
      const cancelled = await s.call('POST', `/v1/subscriptions/${id}/cancel`, { key: token, body: { refund: { keysend_pubkey: bob } } });
      expect(cancelled.body.refund, JSON.stringify(cancelled.body)).toMatchObject({ status: 'pending', amount_msat: String(refund) });
      await payAndWait(s, id, topUp.payment_request, 'alice');
      const loan = balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!) - refund - 5000n;
      expect(loan).toBeGreaterThan(0n);
      await s.close();
      t = null;
      const inflate = inflated ? `, refund_msat = ${refund + loan + 5000n}` : '';
      await rewriteRow(`UPDATE subscriptions SET refund_max_fee_msat = NULL, refund_payment_request = NULL${inflate} WHERE id = `, id);

      s = await start(clock);
      await s.sluice.subscriptions.idle();
      let sub = (await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body;
      if (outcome === 'succeeded') {
        // The new money went on to the keysend key after the refund ended.
        expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
      } else {
        expect(sub.refund, JSON.stringify(sub.refund)).toMatchObject({ status: 'failed', amount_msat: String(refund + 5000n) });
        expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(refund + 5000n);
        expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(charged);
        const retried = await s.call('POST', `/v1/subscriptions/${id}/refund`, { key: token, body: {} });
        expect(retried.status, JSON.stringify(retried.body)).toBe(200);
        await s.sluice.subscriptions.idle();
        sub = (await s.call('GET', `/v1/subscriptions/${id}`, { key: token })).body;
        expect(sub.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund + 5000n) });
      }
      expect(s.sluice.devnet!.nodeBalanceMsat('bob') - bobBefore).toBe(refund + 5000n);
      expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${id}`))!)).toBe(0n);
      expect(balanceOf((await s.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(charged - (await refundFeesPaid(s, app.id, bob)));
      await s.close();
      t = null;
    });
  }

  it('a subscription that expired with balance under a version that offered no refund holds it when first read, and pays it once', async () => {
    const clock = createManualClock(Date.now());
    let s = await start(clock);
    const app = await s.createApp('legacy expiry');
    const plan = (await s.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'ten minutes', rate_msat_per_s: '7', increment_s: 60, prepayment_s: 3600, contract_s: 600, min_settlement_msat: '1000' } })).body;
    const created = (await s.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id } })).body;
    await payAndWait(s, created.id, created.invoice.payment_request);
    const topUp = (await s.call('POST', `/v1/subscriptions/${created.id}/pay`, { key: created.payer_token, body: { amount_msat: '5000' } })).body;
    await payAndWait(s, created.id, topUp.invoice.payment_request);
    for (let attempt = 0; (await s.sluice.subscriptions.get(created.id, null))!.balanceMsat < 5000n + 9n * 420n; attempt += 1) {
      expect(attempt).toBeLessThan(200);
      await new Promise((resolve) => setTimeout(resolve, 10));
      await s.sluice.subscriptions.idle();
    }
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 11 * 60 } });
    expect((await s.call('GET', `/v1/subscriptions/${created.id}`, { key: app.apiKey })).body).toMatchObject({ status: 'expired', refund: { status: 'held', amount_msat: '5000' } });
    await s.close();
    t = null;
    // What an earlier version wrote at the expiry: no refund.
    await rewriteRow("UPDATE subscriptions SET refund_status = 'none', refund_msat = 0 WHERE id = ", created.id);

    s = await start(clock);
    const read = (await s.call('GET', `/v1/subscriptions/${created.id}`, { key: created.payer_token })).body;
    expect(read).toMatchObject({ status: 'expired', balance_msat: '5000', refund: { status: 'held', amount_msat: '5000' } });
    const bob = s.sluice.devnet!.nodePubkey('bob');
    const before = s.sluice.devnet!.nodeBalanceMsat('bob');
    const paid = await s.call('POST', `/v1/subscriptions/${created.id}/refund`, { key: created.payer_token, body: { refund: { keysend_pubkey: bob } } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    await s.sluice.subscriptions.idle();
    expect((await s.call('GET', `/v1/subscriptions/${created.id}`, { key: created.payer_token })).body.refund).toMatchObject({ status: 'succeeded', amount_msat: '5000' });
    expect(s.sluice.devnet!.nodeBalanceMsat('bob') - before).toBe(5000n);
    expect(balanceOf((await s.sluice.ledger.getAccount(`sub:${created.id}`))!)).toBe(0n);
    await s.close();
    t = null;
  });

  it('the devnet clock keeps its advance across a restart, and demo businesses are seeded once', async () => {
    let s = await start();
    const before = s.sluice.clock.now();
    await s.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 10 * 86_400 } });
    expect(await seedDemoBusinesses({ apps: s.sluice.apps, subscriptions: s.sluice.subscriptions })).toEqual({
      apps: DEMO_BUSINESSES.length, plans: DEMO_BUSINESSES.reduce((sum, business) => sum + business.plans.length, 0),
    });
    await s.close();
    t = null;
    s = await start();
    expect(s.sluice.clock.now() - before).toBeGreaterThanOrEqual(10 * 86_400_000);
    expect(await seedDemoBusinesses({ apps: s.sluice.apps, subscriptions: s.sluice.subscriptions })).toEqual({ apps: 0, plans: 0 });
    const echelon = (await s.sluice.apps.listApps()).find((row) => row.name === 'Echelon Mobile');
    const plans = await s.sluice.subscriptions.listPlans(echelon!.id);
    expect(plans[0]).toMatchObject({ incrementS: 3600, prepaymentS: 86_400, contractS: 30 * 86_400 });
  });
});
}
