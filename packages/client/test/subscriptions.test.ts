// The SDK's SluiceSubscriber against a real Sluice (SQLite, devnet, over a real socket):
// the first prepayment paid automatically within the allowance, later invoices paid as the
// devnet clock moves, an invoice beyond the allowance left for a person, an extra top-up,
// and a cancel whose refund reaches a devnet wallet exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../server/src/clock.js';
import { startTestSluice, type TestSluice } from '../../server/test/support/sluice.js';
import { devnetWallet, SluiceSubscriber, type SluiceSubscriberEvents } from '../src/index.js';

describe('SluiceSubscriber', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let baseUrl: string;
  let app: { id: string; apiKey: string };
  let planId: string;

  beforeAll(async () => {
    t = await startTestSluice({ clock });
    baseUrl = await t.sluice.listen();
    app = await t.createApp('webflix');
    const plan = await t.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'per minute', rate_msat_per_s: '50', increment_s: 60, prepayment_s: 6 * 3600, grace_s: 600 } });
    planId = plan.body.id;
  });
  afterAll(async () => {
    await t?.close();
  });

  const subscribe = async () => {
    const created = await t.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: planId } });
    return { subscriptionId: created.body.id as string, payerToken: created.body.payer_token as string };
  };
  const advance = (seconds: number) => t.call('POST', '/v1/devnet/clock/advance', { body: { seconds } });

  it('pays prepayments within the allowance as time passes, and cancels with an exact refund', async () => {
    const { subscriptionId, payerToken } = await subscribe();
    const wallet = devnetWallet({ baseUrl, key: app.apiKey, wallet: 'alice' });
    const subscriber = await SluiceSubscriber.open({
      baseUrl, subscriptionId, payerToken, wallet, pollIntervalMs: 0, now: () => clock.now(),
      allowance: { perSubscriptionMsat: 10_000_000n, perHourMsat: 2_000_000n },
    });
    await t.sluice.subscriptions.idle();
    let s = await subscriber.refresh();
    expect(s.status).toBe('active');
    expect(s.balance_msat).toBe(1_080_000n - 3000n);

    // Five hours: the buffer fell by less than the 1,000 sat minimum settlement, no invoice yet.
    await advance(5 * 3600);
    s = await subscriber.refresh();
    expect(s).toMatchObject({ status: 'active', charged_msat: 301n * 3000n, balance_msat: 177_000n, invoice: null });
    // Forty minutes more: an invoice for the buffer's refill, paid within the allowance.
    await advance(40 * 60);
    await subscriber.refresh();
    await t.sluice.subscriptions.idle();
    s = await subscriber.refresh();
    expect(s).toMatchObject({ status: 'active', charged_msat: 341n * 3000n, balance_msat: 1_080_000n, invoice: null });

    const devnet = t.sluice.devnet!;
    const before = devnet.nodeBalanceMsat('bob');
    const cancelled = await subscriber.cancel({ keysend_pubkey: devnet.nodePubkey('bob') });
    expect(cancelled.status).toBe('cancelled');
    await t.sluice.subscriptions.idle();
    expect(devnet.nodeBalanceMsat('bob') - before).toBe(cancelled.refund.amount_msat);
    expect(cancelled.refund.amount_msat).toBe(s.balance_msat);
  });

  it('leaves an invoice beyond the allowance for a person, and pays an extra top-up asked for', async () => {
    const { subscriptionId, payerToken } = await subscribe();
    const exceeded: SluiceSubscriberEvents['allowance_exceeded'][] = [];
    const subscriber = await SluiceSubscriber.open({ baseUrl, subscriptionId, payerToken, pollIntervalMs: 0, now: () => clock.now() });
    subscriber.on('allowance_exceeded', (event) => exceeded.push(event));
    await subscriber.refresh();
    expect(exceeded.at(-1)?.reason).toBe('no_wallet');
    expect(subscriber.subscription.status).toBe('created');

    const wallet = devnetWallet({ baseUrl, key: app.apiKey, wallet: 'alice' });
    const small = await SluiceSubscriber.open({
      baseUrl, subscriptionId, payerToken, wallet, pollIntervalMs: 0, now: () => clock.now(),
      allowance: { perSubscriptionMsat: 5_000_000n, perHourMsat: 500_000n },
    });
    const reasons: string[] = [];
    small.on('allowance_exceeded', ({ reason }) => reasons.push(reason));
    await small.refresh();
    expect(reasons).toEqual(['per_hour']);
    expect(small.subscription.status).toBe('created');
    await small.requestInvoice(400_000n);
    await t.sluice.subscriptions.idle();
    // 400 sat activate it: the first minute is billed at once.
    expect(await small.refresh()).toMatchObject({ status: 'active', balance_msat: 397_000n });
    small.close();
    subscriber.close();
  });
});
