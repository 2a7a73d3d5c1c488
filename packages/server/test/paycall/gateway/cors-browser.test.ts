/**
 * The gateway's CORS in a real browser (playwright-core driving Debian's Chromium): a page
 * served from another origin (its own HTTP server, another port) pays through the gateway
 * with the SDK's paying fetch: preflights, the 402 challenge read cross-origin, the chain
 * bought through the gateway's /v1/paycall/* on the devnet, the balance header read. A
 * gateway that does not list the page's origin is refused by the browser.
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
if (!hasChromium) console.warn(`${CHROMIUM} is missing: the gateway CORS browser test is skipped (apt-get install -y chromium)`);

const PAGE = `<!doctype html><meta charset="utf-8"><title>cross-origin paying fetch</title>
<script type="module">
import { createPayingFetch, weblnWallet } from '/sdk/index.js';
const provider = { enable: async () => {}, sendPayment: async (invoice) => ({ preimage: await window.devnetPay(invoice) }) };
window.run = async (gateway) => {
  const challenge = await fetch(gateway + '/paid/joke');
  const offer = challenge.headers.get('sluice-chain-offer');
  const paidFetch = createPayingFetch({ wallet: weblnWallet(provider), budgetMsat: 30000n, chain: { steps: 20 } });
  const response = await paidFetch(gateway + '/paid/joke?n=1');
  return { challenge: challenge.status, offer, status: response.status, balance: response.headers.get('sluice-chain-balance'), body: await response.json() };
};
window.refused = async (gateway) => {
  try { await fetch(gateway + '/paid/joke'); return 'read'; } catch (error) { return error.name; }
};
document.body.dataset.ready = 'yes';
</script>`;

describe.skipIf(!hasChromium)('gateway CORS in Chromium', () => {
  let t: TestSluice;
  let browser: Browser;
  let gateway: StartedGateway;
  let closedGateway: StartedGateway;
  let upstream: http.Server;
  let pages: http.Server;
  let pageOrigin: string;

  beforeAll(async () => {
    const sdkDir = buildSdk();
    pages = http.createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://pages');
      if (url.pathname === '/page.html') return void response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      const file = path.join(sdkDir, ...url.pathname.slice('/sdk/'.length).split('/').filter((part) => /^[\w.-]+$/.test(part) && part !== '..'));
      if (!url.pathname.startsWith('/sdk/') || !file.endsWith('.js') || !fs.existsSync(file)) return void response.writeHead(404).end();
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(fs.readFileSync(file));
    });
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
    upstream = http.createServer((request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ joke: 'a satoshi walks into a bar', path: request.url }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t = await startTestSluice({ env: { HOST: '127.0.0.1' } });
    await t.sluice.listen();
    const start = async (cors: unknown): Promise<StartedGateway> => {
      const config = validateGatewayConfig({
        listen: { host: '127.0.0.1', port: 0 },
        upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
        routes: [{ path: '/paid/*', price_msat: '5000' }],
        cors,
      });
      if (!config.ok) throw new Error(config.errors.join('\n'));
      return startGatewayBeside(t.sluice, config.config, { logger: createLogger('silent') });
    };
    gateway = await start({ origins: [pageOrigin] });
    closedGateway = await start({ origins: ['https://elsewhere.example'] });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.gateway.close();
    await closedGateway?.gateway.close();
    for (const server of [upstream, pages]) {
      server?.closeAllConnections();
      await new Promise((resolve) => server?.close(resolve));
    }
    await t?.close();
  });

  it('lets a page on another origin read the 402 challenge, buy a chain through the gateway and pay a call', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const alice = t.sluice.devnet!.backendFor('alice');
    await page.exposeFunction('devnetPay', async (invoice: string) => {
      const outcome = await alice.payInvoice({ paymentRequest: invoice, feeLimitMsat: msat(100_000n), timeoutS: 30 });
      if (outcome.status !== 'succeeded') throw new Error(`devnet payment ${outcome.status}`);
      return outcome.preimage;
    });
    await page.goto(`${pageOrigin}/page.html`);
    await page.waitForSelector('body[data-ready="yes"]', { state: 'attached' });
    expect(new URL(gateway.url).origin).not.toBe(pageOrigin);
    const result = await page.evaluate((url) => (window as unknown as { run(url: string): Promise<any> }).run(url), gateway.url);
    expect(errors).toEqual([]);
    expect(result.challenge).toBe(402);
    expect(result.offer).toMatch(/^buy="http:\/\/127\.0\.0\.1:\d+\/v1\/paycall\/chains"/);
    expect(result.status).toBe(200);
    expect(result.balance).toBe('steps=15; msat=15000; index=5');
    expect(result.body.path).toBe('/paid/joke?n=1');
    // A gateway that does not list the page's origin: the browser refuses the page the answer.
    const refused = await page.evaluate((url) => (window as unknown as { refused(url: string): Promise<string> }).refused(url), closedGateway.url);
    expect(refused).toBe('TypeError');
  });
});
