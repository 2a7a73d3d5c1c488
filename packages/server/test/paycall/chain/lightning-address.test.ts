// A chain's refund to a Lightning address (LNURL-pay): a local LNURL-pay service backed by
// the devnet wallet erin issues the invoice for exactly the unused part; a failing address
// is refused with refund_address_failed and changes nothing.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../../src/money/msat.js';
import { buildChain } from '../../../src/paycall/chain/index.js';
import { startLnurlService, type LnurlService } from '../../support/lnurl-service.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

describe('chain refund to a Lightning address', () => {
  let t: TestSluice;
  let lnurl: LnurlService;
  let host: string;

  beforeAll(async () => {
    t = await startTestSluice();
    lnurl = await startLnurlService({ wallet: t.sluice.devnet!.backendFor('erin'), description: 'Refunds for erin (devnet)' });
    host = lnurl.host;
  });
  afterAll(async () => {
    await t?.close();
    await lnurl?.close();
  });

  it('pays the unused steps to the address, exactly', async () => {
    const app = await t.createApp('api');
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } });
    t.sluice.chains.setStepMsat(app.id, msat(333n));
    const links = buildChain(randomBytes(32), 50);
    const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 50 } });
    await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } });
    const id = bought.body.chain_id as string;
    await new Promise((r) => setTimeout(r, 20));
    expect(await t.sluice.chains.spend(id, 7, links[7] as Buffer, { appId: app.id, priceMsat: msat(2000n) })).toMatchObject({ ok: true, steps: 7 });

    const proof = { index: 8, link: (links[8] as Buffer).toString('hex') };
    const failed = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { ...proof, lightning_address: `nobody@${host}` } });
    expect(failed.status).toBe(409);
    expect(failed.body.error.code).toBe('refund_address_failed');
    expect((await t.call('GET', `/v1/paycall/chains/${id}`, { key: null })).body).toMatchObject({ status: 'active', index: 7 });
    expect((await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { ...proof, lightning_address: 'not an address' } })).body.error.code).toBe('invalid_request');

    const erinBefore = t.sluice.devnet!.nodeBalanceMsat('erin');
    const refunded = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { ...proof, lightning_address: `erin@${host}` } });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    // 43 unused steps at 333 msat: 14,319 msat, not a whole satoshi, paid exactly.
    expect(refunded.body.refund).toMatchObject({ amount_msat: '14319', payment: { status: 'succeeded', amount_msat: '14319' } });
    expect(t.sluice.devnet!.nodeBalanceMsat('erin')).toBe(erinBefore + 14_319n);
  });
});
