/**
 * The paying fetch in a real browser (playwright-core driving Debian's Chromium): a page
 * served through `sluice gateway` (a free route of the upstream) imports the compiled SDK,
 * pays with `weblnWallet` over a WebLN provider whose `sendPayment` is the devnet node
 * 'alice', buys a chain through the gateway's /v1/paycall/* with Web Crypto, and sees the
 * balance fall per call. Same origin: the gateway sends no CORS headers (docs/sdk-fetch.md).
 * Without /usr/bin/chromium this test says so and skips itself.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { validateGatewayConfig } from '../../../src/paycall/gateway/config.js';
import { startGatewayBeside, type StartedGateway } from '../../../src/paycall/gateway/index.js';
import { buildSdk } from '../../demo/support.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium) console.warn(`${CHROMIUM} is missing: the paying fetch browser test is skipped (apt-get install -y chromium)`);

const PAGE = `<!doctype html><meta charset="utf-8"><title>paying fetch</title>
<script type="module">
import { createPayingFetch, weblnWallet } from '/free/sdk/index.js';
// Like Alby, the provider adds the route's total fees, in whole sats.
const provider = { enable: async () => {}, sendPayment: async (invoice) => { const paid = await window.devnetPay(invoice); return { preimage: paid.preimage, route: { total_fees: paid.feeSat } }; } };
window.run = async () => {
  const paidFetch = createPayingFetch({ wallet: weblnWallet(provider), budgetMsat: 30000n, chain: { steps: 20 } });
  const calls = [];
  for (let i = 0; i < 3; i++) {
    const response = await paidFetch('/paid/joke?n=' + i);
    const receipt = paidFetch.receipt(response);
    calls.push({ status: response.status, balance: response.headers.get('sluice-chain-balance'), scheme: receipt.scheme, cost: String(receipt.costMsat), paid: String(receipt.paidMsat), body: await response.json() });
  }
  let refused = null;
  try { await createPayingFetch({ wallet: weblnWallet(provider), budgetMsat: 4000n })('/paid/joke'); } catch (error) { refused = error.code; }
  const spent = paidFetch.spent();
  return { calls, paid: String(spent.paidMsat), fees: String(spent.feesMsat), used: String(spent.usedMsat), refused };
};
document.body.dataset.ready = 'yes';
</script>`;

describe.skipIf(!hasChromium)('the paying fetch in Chromium', () => {
  let t: TestSluice;
  let browser: Browser;
  let gateway: StartedGateway;
  let upstream: http.Server;

  beforeAll(async () => {
    const sdkDir = buildSdk();
    upstream = http.createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://upstream');
      if (url.pathname === '/free/page.html') return void response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      if (url.pathname.startsWith('/free/sdk/')) {
        // The compiled SDK, as a static file server would give it (no path tricks: names only).
        const file = path.join(sdkDir, ...url.pathname.slice('/free/sdk/'.length).split('/').filter((part) => /^[\w.-]+$/.test(part) && part !== '..'));
        if (!file.endsWith('.js') || !fs.existsSync(file)) return void response.writeHead(404).end();
        return void response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(fs.readFileSync(file));
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ joke: 'a satoshi walks into a bar', path: request.url }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t = await startTestSluice({ env: { HOST: '127.0.0.1' } });
    await t.sluice.listen();
    const config = validateGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      routes: [{ path: '/free/*', price_msat: '0' }, { path: '/paid/*', price_msat: '5000' }],
    });
    if (!config.ok) throw new Error(config.errors.join('\n'));
    gateway = await startGatewayBeside(t.sluice, config.config, { logger: createLogger('silent') });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.gateway.close();
    upstream?.closeAllConnections();
    await new Promise((resolve) => upstream?.close(resolve));
    await t?.close();
  });

  it('buys a chain with Web Crypto, pays three calls and refuses past the budget', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const alice = t.sluice.devnet!.backendFor('alice');
    const feesMsat: bigint[] = [];
    await page.exposeFunction('devnetPay', async (invoice: string) => {
      const outcome = await alice.payInvoice({ paymentRequest: invoice, feeLimitMsat: msat(100_000n), timeoutS: 30 });
      if (outcome.status !== 'succeeded') throw new Error(`devnet payment ${outcome.status}`);
      feesMsat.push(outcome.feeMsat);
      return { preimage: outcome.preimage, feeSat: Number(outcome.feeMsat / 1000n) };
    });
    await page.goto(`${gateway.url}/free/page.html`);
    await page.waitForSelector('body[data-ready="yes"]', { state: 'attached' });
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    const result = await page.evaluate(() => (window as unknown as { run(): Promise<any> }).run());
    expect(errors).toEqual([]);
    expect(result.calls.map((call: any) => [call.status, call.scheme, call.balance, call.cost, call.paid])).toEqual([
      [200, 'chain', 'steps=15; msat=15000; index=5', '5000', '20000'],
      [200, 'chain', 'steps=10; msat=10000; index=10', '5000', '0'],
      [200, 'chain', 'steps=5; msat=5000; index=15', '5000', '0'],
    ]);
    expect(result.calls[2].body.path).toBe('/paid/joke?n=2');
    // The hub's fee on 20,000 msat is 1002 msat; the provider says 1 sat, and that is what counts.
    expect(feesMsat).toEqual([1002n]);
    expect(result).toMatchObject({ paid: '20000', fees: '1000', used: '15000', refused: 'budget_exceeded' });
    expect(aliceBefore - t.sluice.devnet!.nodeBalanceMsat('alice')).toBe(20_000n + 1002n);
  });
});
