// Payouts to a Lightning address (LUD-16 / LNURL-pay, LUD-06): a local LNURL-pay service
// backed by a devnet wallet issues the invoices; Sluice checks amount and description hash
// before paying, and a stream's refund reaches the address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invoiceFromLightningAddress, lightningAddressUrl } from '../../src/lightning/lnurl.js';
import { msat } from '../../src/money/msat.js';
import { startLnurlService, type LnurlService } from '../support/lnurl-service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('Lightning address payouts', () => {
  let t: TestSluice;
  let lnurl: LnurlService;
  let host: string;
  // The LNURL service of these tests runs on loopback, which production refuses.
  const local = { allowPrivateAddresses: true };

  beforeAll(async () => {
    t = await startTestSluice();
    lnurl = await startLnurlService({
      wallet: t.sluice.devnet!.backendFor('erin'),
      description: 'Tips for erin (devnet)',
      // A service that misbehaves: an answer past the size limit, and a redirect.
      extra: (path, response, self) => {
        if (path === '/.well-known/lnurlp/huge') {
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(`{"padding":"${'x'.repeat(200_000)}"}`);
          return true;
        }
        if (path === '/.well-known/lnurlp/moved') {
          response.writeHead(302, { location: `http://${self}/.well-known/lnurlp/erin` });
          response.end();
          return true;
        }
        return false;
      },
    });
    host = lnurl.host;
  });
  afterAll(async () => {
    await t?.close();
    await lnurl?.close();
  });

  it('builds the LUD-16 URL: https, plain http only on loopback', () => {
    expect(lightningAddressUrl('Alice@Example.com')).toBe('https://example.com/.well-known/lnurlp/alice');
    expect(lightningAddressUrl('bob@127.0.0.1:8080')).toBe('http://127.0.0.1:8080/.well-known/lnurlp/bob');
    expect(lightningAddressUrl('not an address')).toBeNull();
    expect(lightningAddressUrl('a@b@c')).toBeNull();
  });

  it('fetches an invoice for the exact amount and checks what comes back', async () => {
    lnurl.cheat = 'none';
    expect(await invoiceFromLightningAddress(`erin@${host}`, msat(5000n), local)).toMatchObject({ ok: true });
    expect(await invoiceFromLightningAddress(`erin@${host}`, msat(10n), local)).toMatchObject({ ok: false, error: 'AmountOutOfRange' });
    expect(await invoiceFromLightningAddress(`nobody@${host}`, msat(5000n), local)).toMatchObject({ ok: false, error: 'BadResponse' });
    expect(await invoiceFromLightningAddress('erin@127.0.0.1:1', msat(5000n), local)).toMatchObject({ ok: false, error: 'Unreachable' });
    lnurl.cheat = 'amount';
    expect(await invoiceFromLightningAddress(`erin@${host}`, msat(5000n), local)).toMatchObject({ ok: false, error: 'InvoiceMismatch' });
    lnurl.cheat = 'hash';
    expect(await invoiceFromLightningAddress(`erin@${host}`, msat(5000n), local)).toMatchObject({ ok: false, error: 'InvoiceMismatch' });
    lnurl.cheat = 'none';
  });

  it('refuses loopback, private and link-local hosts unless allowed (SSRF)', async () => {
    // Literal addresses are checked before connecting; names are checked at DNS lookup.
    for (const address of [`erin@${host}`, 'erin@10.1.2.3', 'erin@169.254.169.254', `erin@localhost:${host.split(':')[1]}`]) {
      const result = await invoiceFromLightningAddress(address, msat(5000n), { timeoutMs: 2000 });
      expect(result, address).toMatchObject({ ok: false, error: 'Unreachable' });
      if (!result.ok) expect(result.detail, address).toMatch(/not a public address/);
    }
  });

  it('reads at most 64 KiB of an answer and follows no redirect', async () => {
    expect(await invoiceFromLightningAddress(`huge@${host}`, msat(5000n), local)).toMatchObject({ ok: false, error: 'BadResponse', detail: expect.stringMatching(/more than 65536 bytes/) });
    expect(await invoiceFromLightningAddress(`moved@${host}`, msat(5000n), local)).toMatchObject({ ok: false, error: 'BadResponse', detail: expect.stringMatching(/redirects/) });
  });

  it("pays a stream's refund to the payer's Lightning address", async () => {
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '80000', payout: { lightning_address: `erin@${host}` } } });
    const token = created.body.payer_token as string;
    const funding = (await t.call('GET', `/v1/streams/${created.body.id}/events`, { key: token })).body.events.find((e: { type: string }) => e.type === 'invoice');
    await t.call('POST', '/v1/devnet/pay', { key: token, body: { payment_request: funding.payment_request, wallet: 'alice' } });
    await t.call('POST', `/v1/streams/${created.body.id}/charge`, { key: app.apiKey, body: { event: 'hit', count: 20, ref: 'h1' } });
    const erinBefore = t.sluice.devnet!.nodeBalanceMsat('erin');
    await t.call('POST', `/v1/streams/${created.body.id}/close`, { key: token });
    let settled: { amount_msat: string } | undefined;
    for (let i = 0; i < 100 && !settled; i += 1) {
      settled = (await t.call('GET', `/v1/streams/${created.body.id}/events`, { key: token })).body.events.find((e: { type: string }) => e.type === 'settled');
      if (!settled) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(settled?.amount_msat).toBe('60000');
    expect(t.sluice.devnet!.nodeBalanceMsat('erin')).toBe(erinBefore + 60000n);
  });
});
