// Payments whose outcome is unknown stay in flight, holding their funds, until the node
// gives a final answer; the background reconciliation then posts or voids them. Driven by
// the devnet's "withhold outcome" fault (the payment really happens, the caller is told
// `unknown`) and by a node that keeps answering `unknown` to look-ups.
import { afterEach, describe, expect, it } from 'vitest';
import type { LightningBackend, PaymentLookup } from '../../src/lightning/backend.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

let t: TestSluice | null = null;
afterEach(async () => {
  await t?.close();
  t = null;
});

async function fundedApp(sluice: TestSluice, amountMsat: string) {
  const app = await sluice.createApp();
  const invoice = await sluice.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: amountMsat } });
  await sluice.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice.body.payment_request } });
  return app;
}

describe('payments with an unknown outcome', () => {
  it('answer pending (202), hold the funds, and settle once the node tells the truth', async () => {
    t = await startTestSluice();
    const app = await fundedApp(t, '500000');
    const payout = await t.call('POST', '/v1/devnet/invoices', { key: app.apiKey, body: { amount_msat: '100000', wallet: 'dave' } });
    t.sluice.devnet?.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'dave' });

    const sent = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'unknown-1' } });
    expect(sent.status).toBe(202);
    expect(sent.body.status).toBe('pending');
    const held = (await t.call('GET', '/v1/balance', { key: app.apiKey })).body;
    expect(held.held_msat).toBe(String(100000n + BigInt(sent.body.max_fee_msat)));
    expect(held.balance_msat).toBe('500000');

    // A retry while pending returns the same pending payment, never a second one.
    const retry = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'unknown-1' } });
    expect(retry.body.id).toBe(sent.body.id);
    const another = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'unknown-2' } });
    expect(another.body.error.code).toBe('payment_in_flight');

    expect(await t.sluice.payments.reconcileInFlight()).toEqual({ resolved: 1, stillUnknown: 0 });
    const settled = (await t.call('GET', `/v1/payments/${payout.body.payment_hash}`, { key: app.apiKey })).body;
    expect(settled.status).toBe('succeeded');
    const balance = (await t.call('GET', '/v1/balance', { key: app.apiKey })).body;
    expect(balance).toEqual({ balance_msat: String(400000n - BigInt(settled.fee_msat)), held_msat: '0', available_msat: String(400000n - BigInt(settled.fee_msat)) });
  });

  it('are never refunded while the node keeps saying unknown', async () => {
    t = await startTestSluice();
    const app = await fundedApp(t, '500000');
    const payout = await t.call('POST', '/v1/devnet/invoices', { key: app.apiKey, body: { amount_msat: '100000', wallet: 'erin' } });
    t.sluice.devnet?.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'erin' });
    const sent = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'silent-1' } });
    expect(sent.body.status).toBe('pending');

    // The node goes silent about this payment: every look-up answers unknown.
    const backend = t.sluice.backend as LightningBackend & { lookupPayment(hash: string): Promise<PaymentLookup> };
    const truthful = backend.lookupPayment.bind(backend);
    backend.lookupPayment = async (hash) => ({ status: 'unknown', paymentHash: hash, detail: 'node silent (test)' });
    for (let round = 0; round < 5; round += 1) {
      expect(await t.sluice.payments.reconcileInFlight()).toEqual({ resolved: 0, stillUnknown: 1 });
    }
    expect((await t.call('GET', '/v1/balance', { key: app.apiKey })).body.held_msat).not.toBe('0');
    expect((await t.call('GET', `/v1/payments/${payout.body.payment_hash}`, { key: app.apiKey })).body.status).toBe('pending');

    backend.lookupPayment = truthful;
    expect(await t.sluice.payments.reconcileInFlight()).toEqual({ resolved: 1, stillUnknown: 0 });
    expect((await t.call('GET', `/v1/payments/${payout.body.payment_hash}`, { key: app.apiKey })).body.status).toBe('succeeded');
  });

  it('release the hold when the node says the payment failed', async () => {
    t = await startTestSluice();
    const app = await fundedApp(t, '500000');
    const payout = await t.call('POST', '/v1/devnet/invoices', { key: app.apiKey, body: { amount_msat: '100000', wallet: 'bob' } });
    t.sluice.devnet?.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'bob' });
    const failed = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'fail-1' } });
    expect(failed.status).toBe(200);
    expect(failed.body).toMatchObject({ status: 'failed', failure_reason: 'no_route', fee_msat: null });
    expect((await t.call('GET', '/v1/balance', { key: app.apiKey })).body).toEqual({ balance_msat: '500000', held_msat: '0', available_msat: '500000' });
    // A failed attempt does not block a new one with a new key.
    const second = await t.call('POST', '/v1/payments', { key: app.apiKey, body: { payment_request: payout.body.payment_request, idempotency_key: 'fail-2' } });
    expect(second.body.status).toBe('succeeded');
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });
});
