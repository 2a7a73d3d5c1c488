// The payer's invoice for a payout asked of it (payout_invoice_needed) is paid for what is
// owed when it arrives, not for what was owed at the ask: money moves in between (the app
// charges), and the old amount could pay out more than the payer holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('payout invoices after the balance moved', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  /** An open stream with no payout destination that pays out past 50,000 msat; rewarded 60,000, so it asks for an invoice of 50,000 (10,000 kept for the fee). */
  async function askedStream() {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await asApp('POST', '/v1/devnet/pay', { payment_request: float.body.payment_request, wallet: 'bob' })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', {
      prices: { hit: '1000' }, maximum_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000',
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const token = created.body.payer_token as string;
    const asPayer = (method: string, url: string, body?: unknown) => t.call(method, url, { key: token, ...(body === undefined ? {} : { body }) });
    const asked = async () => ((await asPayer('GET', `/v1/streams/${id}/events`)).body.events as { type: string; amount_msat: string }[]).filter((e) => e.type === 'payout_invoice_needed');
    expect((await asApp('POST', `/v1/streams/${id}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    for (let i = 0; i < 50 && (await asked()).length === 0; i += 1) await settle();
    expect((await asked()).map((e) => e.amount_msat)).toEqual(['50000']);
    const invoice = async (amountMsat: string) => (await asPayer('POST', '/v1/devnet/invoices', { amount_msat: amountMsat, wallet: 'carol' })).body.payment_request as string;
    return { id, asApp, asPayer, asked, invoice };
  }

  it('refuses the invoice when nothing is owed any more (the app charged below the threshold), and pays nothing', async () => {
    const { id, asApp, asPayer, invoice } = await askedStream();
    expect((await asApp('POST', `/v1/streams/${id}/charge`, { amount_msat: '20000', ref: 'c1' })).status).toBe(200);
    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    const answer = await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: await invoice('50000') });
    expect(answer.body.error?.code).toBe('no_payout_requested');
    await settle();
    expect(t.sluice.devnet!.nodeBalanceMsat('carol')).toBe(carolBefore);
    expect((await asApp('GET', `/v1/streams/${id}`)).body).toMatchObject({ balance_msat: '40000', held_msat: '0' });
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('refuses an invoice for the old amount, asks again for what is owed now, and pays that', async () => {
    const { id, asApp, asPayer, asked, invoice } = await askedStream();
    expect((await asApp('POST', `/v1/streams/${id}/charge`, { amount_msat: '5000', ref: 'c1' })).status).toBe(200);
    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    const stale = await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: await invoice('50000') });
    expect(stale.status).toBe(400);
    expect(stale.body.error.code).toBe('payout_amount_mismatch');
    // 55,000 held now: 45,000 out, 10,000 kept for the fee.
    expect((await asked()).map((e) => e.amount_msat)).toEqual(['50000', '45000']);
    expect(t.sluice.devnet!.nodeBalanceMsat('carol')).toBe(carolBefore);
    expect((await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: await invoice('45000') })).status).toBe(200);
    await settle();
    expect(t.sluice.devnet!.nodeBalanceMsat('carol')).toBe(carolBefore + 45000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });
});
