// Subscription events reach a merchant's endpoint: a real local HTTP receiver gets
// subscription.created, activated, payment_succeeded, balance_low, past_due, suspended,
// resumed and cancelled, each signed (checked with the verification the docs show) and
// each event id once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { verifySignature } from '../../src/webhooks/index.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { startReceiver, type Receiver } from '../webhooks/support.js';

describe('subscription webhooks to a local receiver', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let receiver: Receiver;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
    receiver = await startReceiver(200);
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });

  it('delivers every transition, signed', async () => {
    const app = await t.createApp('insurer');
    const as = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const types = ['created', 'activated', 'renewed', 'payment_succeeded', 'balance_low', 'past_due', 'suspended', 'resumed', 'cancelled', 'expired'].map((type) => `subscription.${type}`);
    const endpoint = await as('POST', '/v1/webhooks', { url: receiver.url, event_types: types });
    expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
    const secret = endpoint.body.secret as string;

    const plan = (await as('POST', '/v1/plans', { name: 'daily', rate_msat_per_increment: '5000000', increment_s: 86_400, prepayment_s: 86_400, grace_s: 86_400 })).body;
    const sub = (await as('POST', '/v1/subscriptions', { plan_id: plan.id })).body;
    const pay = async () => {
      const current = (await as('GET', `/v1/subscriptions/${sub.id}`)).body;
      expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: current.invoice.payment_request } })).status).toBe(200);
      // The subscription has taken the payment in once that invoice is no longer its open one
      // (the invoice watcher may credit it a moment after the route answered).
      for (let attempt = 0; ; attempt += 1) {
        await t.sluice.subscriptions.idle();
        if ((await t.sluice.subscriptions.get(sub.id, null))?.row.invoiceHash !== current.invoice.payment_hash) break;
        expect(attempt, 'the payment never reached the subscription').toBeLessThan(200);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    await pay(); // activated; the one-day buffer is spent at once: balance_low
    await t.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 86_400 } }); // past_due
    await t.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 86_400 } }); // suspended
    expect((await as('GET', `/v1/subscriptions/${sub.id}`)).body.status).toBe('suspended');
    await as('POST', `/v1/subscriptions/${sub.id}/pay`, {});
    await pay(); // resumed
    expect((await as('POST', `/v1/subscriptions/${sub.id}/cancel`, {})).status).toBe(200);

    const wanted = ['subscription.created', 'subscription.activated', 'subscription.payment_succeeded', 'subscription.balance_low', 'subscription.past_due', 'subscription.suspended', 'subscription.resumed', 'subscription.cancelled'];
    const deadline = Date.now() + 10_000;
    for (;;) {
      await t.sluice.webhooks.dispatchDue();
      const seen = new Set(receiver.received.map((request) => JSON.parse(request.body).type));
      if (wanted.every((type) => seen.has(type))) break;
      if (Date.now() > deadline) throw new Error(`received only ${[...seen].join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const ids = new Set<string>();
    for (const request of receiver.received) {
      const header = request.headers['sluice-signature'] as string;
      expect(verifySignature({ secret, header, body: request.body, nowS: Math.floor(clock.now() / 1000), toleranceS: 10 * 86_400 }).ok).toBe(true);
      const event = JSON.parse(request.body);
      expect(event.data.subscription_id).toBe(sub.id);
      expect(ids.has(event.id)).toBe(false);
      ids.add(event.id);
    }
    const pastDue = receiver.received.map((request) => JSON.parse(request.body)).find((event) => event.type === 'subscription.past_due');
    expect(pastDue.data).toMatchObject({ status: 'past_due', plan_id: plan.id });
  });
});
