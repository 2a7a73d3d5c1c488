// A subscription's refund to the Lightning address given at creation (LUD-16 / LNURL-pay):
// a local LNURL-pay service backed by the devnet wallet erin issues the invoice, the cancel
// needs no destination, and erin receives exactly the unused balance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { msat } from '../../src/money/msat.js';
import { startLnurlService, type LnurlService } from '../support/lnurl-service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('subscription refund to a Lightning address', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let lnurl: LnurlService;
  let host: string;

  beforeAll(async () => {
    t = await startTestSluice({ clock });
    lnurl = await startLnurlService({ wallet: t.sluice.devnet!.backendFor('erin'), description: 'Refunds for erin (devnet)', minSendableMsat: 1 });
    host = lnurl.host;
  });
  afterAll(async () => {
    await t?.close();
    await lnurl?.close();
  });

  it('cancel by the merchant refunds the unused balance to the address kept since creation', async () => {
    const app = await t.createApp('rental');
    const plan = (await t.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'bike', rate_msat_per_s: '300', increment_s: 60, prepayment_s: 3600, grace_s: 300, contract_s: 86_400 } })).body;
    const created = await t.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id, refund: { lightning_address: `erin@${host}` } } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.refund.destination).toEqual({ lightning_address: `erin@${host}` });
    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: created.body.invoice.payment_request, wallet: 'alice' } });
    expect(BigInt(paid.body.amount_msat)).toBe(300n * 3600n);
    // The invoice watcher may credit the payment a moment after the route answered.
    for (let attempt = 0; (await t.sluice.subscriptions.get(created.body.id, null))?.row.status !== 'active'; attempt += 1) {
      expect(attempt, 'the payment never reached the subscription').toBeLessThan(200);
      await new Promise((resolve) => setTimeout(resolve, 10));
      await t.sluice.subscriptions.idle();
    }
    await t.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 25 * 60 } });
    const devnet = t.sluice.devnet!;
    const before = devnet.nodeBalanceMsat('erin');
    const cancelled = await t.call('POST', `/v1/subscriptions/${created.body.id}/cancel`, { key: app.apiKey, body: {} });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body.ended_by).toBe('merchant');
    await t.sluice.subscriptions.idle();
    const refund = 300n * 3600n - 26n * 300n * 60n;
    expect(devnet.nodeBalanceMsat('erin') - before).toBe(refund);
    expect((await t.call('GET', `/v1/subscriptions/${created.body.id}`, { key: app.apiKey })).body.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund) });
  });
});
