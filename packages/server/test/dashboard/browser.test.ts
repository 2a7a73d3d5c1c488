// The dashboards in a real browser (playwright-core driving Debian's Chromium) over a real
// Sluice on a socket with the devnet. The merchant signs in with the admin key, creates an
// app and keys, signs in as the app, watches a stream get funded (paid from the devnet
// panel) and charged, registers a webhook endpoint (a real local receiver), sees the
// delivery and redelivers it, and pays an invoice from a devnet wallet. The customer opens
// /me/ with the payer token, creates and pays a top-up, pauses the meter, closes and sees
// the refund land in the devnet wallet. Every number on the page is checked against the
// server. Screenshots go to test-results/dashboard/.
// Without /usr/bin/chromium this test says so and skips itself (CI installs Chromium).
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY } from '../support/sluice.js';
import { startDashboardSluice, type DashboardSluice } from './support.js';
import { CHROMIUM, hasChromium, launchChromium, msatAttr, openPage, SHOTS_DIR } from './browser-support.js';

if (!hasChromium) console.warn(`${CHROMIUM} is missing: the dashboard browser tests are skipped (apt-get install -y chromium)`);

interface Received {
  id: string;
  type: string;
  signature: string;
}

/** A webhook receiver on loopback that answers 200 and remembers what came. */
async function startReceiver(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      const event = JSON.parse(body) as { id: string; type: string };
      received.push({ id: event.id, type: event.type, signature: String(request.headers['sluice-signature'] ?? '') });
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hook`, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe.skipIf(!hasChromium)('the dashboards in Chromium', () => {
  let d: DashboardSluice;
  let browser: Browser;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  beforeAll(async () => {
    d = await startDashboardSluice();
    receiver = await startReceiver();
    browser = await launchChromium();
    fs.mkdirSync(SHOTS_DIR, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await receiver?.close();
    await d?.close();
  });

  const walletMsat = (name: string): bigint => d.t.sluice.devnet?.nodeBalanceMsat(name) ?? -1n;
  const rest = async (key: string, method: string, url: string, body?: unknown) => {
    const response = await fetch(d.baseUrl + url, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as any };
  };
  /** Waits until the page has refreshed its data after now (the pages poll every 2 s). */
  const refreshed = async (page: Page, global: 'dashboard' | 'customer') => {
    const since = await page.evaluate(() => Date.now());
    await page.waitForFunction(([name, after]) => ((window as any)[name as string]?.refreshedAt ?? 0) > (after as number), [global, since] as const);
  };

  let appKey = '';
  let appId = '';

  it('merchant: apps and keys, a stream funded and charged, webhooks with redelivery, a devnet wallet paying an invoice', async () => {
    // From the home page's link.
    const { page, errors } = await openPage(browser, d.baseUrl + '/');
    await page.click('a[href="/dashboard/"]');
    await page.waitForURL(/\/dashboard\/$/);
    await page.locator('#signin').waitFor();
    await page.screenshot({ path: path.join(SHOTS_DIR, '01-sign-in.png') });
    // Sections that wait for a key are not shown (the hidden attribute wins over the stylesheet).
    for (const id of ['admin', 'app', 'new-key', 'invoice-created', 'devnet']) expect(await page.locator(`#${id}`).isVisible(), id).toBe(false);

    // Admin: sign in, create an app; its key is shown once.
    await page.fill('#admin-key', ADMIN_KEY);
    await page.click('#admin-form button[type="submit"]');
    await page.locator('#admin').waitFor({ state: 'visible' });
    expect(page.url()).toBe(d.baseUrl + '/dashboard/');
    await page.fill('#app-name', 'Coffee <b>shop</b>');
    await page.click('#create-app-form button[type="submit"]');
    await page.locator('#new-key').waitFor({ state: 'visible' });
    appKey = (await page.locator('#new-key-value').textContent()) ?? '';
    expect(appKey).toMatch(/^sk_/);
    const row = page.locator('#apps tr[data-name="Coffee <b>shop</b>"]');
    appId = (await row.getAttribute('data-id')) ?? '';
    expect(appId).toMatch(/^app_/);
    // The name is text, not markup.
    expect(await row.locator('td').first().textContent()).toBe('Coffee <b>shop</b>');
    expect(await page.locator('#apps b').count()).toBe(0);

    // Sign in as the app with the key shown once: both sessions stay side by side.
    await page.click('#use-new-key');
    await page.locator('#app').waitFor({ state: 'visible' });
    await expect(page.locator('#who').textContent()).resolves.toContain(appId);
    await page.locator('#devnet').waitFor({ state: 'visible' });
    expect(await page.locator('#admin').isVisible()).toBe(true);
    expect(await page.evaluate(() => location.href)).not.toContain('sk_');
    expect(await page.evaluate(() => [sessionStorage.getItem('sluice.app')?.startsWith('sk_'), sessionStorage.getItem('sluice.admin')?.startsWith('sa_'), localStorage.length])).toEqual([true, true, 0]);

    // A second key, then revoke it: the API refuses it afterwards.
    await row.locator('button[data-action="new-key"]').click();
    await page.waitForFunction(() => document.querySelectorAll('#keys tbody tr[data-id]').length === 2);
    const secondKey = (await page.locator('#new-key-value').textContent()) ?? '';
    expect(secondKey).toMatch(/^sk_/);
    expect(secondKey).not.toBe(appKey);
    expect((await rest(secondKey, 'GET', '/v1/balance')).status).toBe(200);
    const secondKeyId = (await d.t.sluice.apps.listApiKeys(appId)).find((key) => secondKey.startsWith(key.prefix))?.id as string;
    await page.locator(`#keys tr[data-id="${secondKeyId}"] button[data-action="revoke"]`).click();
    await page.locator(`#keys tr[data-id="${secondKeyId}"] [data-state="revoked"]`).waitFor();
    expect((await rest(secondKey, 'GET', '/v1/balance')).body.error.code).toBe('invalid_api_key');
    expect((await rest(appKey, 'GET', '/v1/balance')).status).toBe(200);
    await page.screenshot({ path: path.join(SHOTS_DIR, '02-apps-and-keys.png'), fullPage: true });

    // A webhook endpoint first, so what follows is delivered to it.
    await page.fill('#webhook-url', receiver.url);
    await page.click('#webhook-form button[type="submit"]');
    await page.locator('#webhook-secret-box').waitFor({ state: 'visible' });
    expect(await page.locator('#webhook-secret').textContent()).toMatch(/^whsec_/);
    const endpointId = (await page.locator('#webhooks tbody tr[data-id]').first().getAttribute('data-id')) as string;

    // A stream made by the app's backend (REST), funded from the devnet panel, then charged.
    const stream = await rest(appKey, 'POST', '/v1/streams', { prices: { coffee: '2500' }, settle_threshold_msat: '5000', settle_to_msat: '20000', metadata: 'table 4' });
    expect(stream.status).toBe(201);
    const streamRow = page.locator(`#streams tr[data-id="${stream.body.id}"]`);
    await streamRow.waitFor();
    expect(await streamRow.getAttribute('data-msat')).toBe('0');
    const topUpRow = page.locator('#invoices tbody tr[data-status="open"]', { hasText: stream.body.id });
    await topUpRow.waitFor();
    const aliceBefore = walletMsat('alice');
    await topUpRow.locator('button[data-action="devnet-pay"]').click();
    await page.waitForFunction((id) => document.querySelector(`#streams tr[data-id="${id}"]`)?.getAttribute('data-msat') === '20000', stream.body.id);
    expect(aliceBefore - walletMsat('alice')).toBeGreaterThanOrEqual(20_000n);
    for (const ref of ['c1', 'c2', 'c3']) {
      expect((await rest(appKey, 'POST', `/v1/streams/${stream.body.id}/charge`, { event: 'coffee', ref })).status).toBe(200);
    }
    await page.waitForFunction((id) => document.querySelector(`#streams tr[data-id="${id}"]`)?.getAttribute('data-msat') === '12500', stream.body.id);
    expect((await d.t.sluice.streams.get(stream.body.id, appId))?.balanceMsat).toBe(12_500n);
    // The charges are the app's: its balance on the page is the server's.
    await page.waitForFunction(() => document.getElementById('balance')?.dataset.msat === '7500');
    expect((await rest(appKey, 'GET', '/v1/balance')).body.balance_msat).toBe('7500');
    await page.screenshot({ path: path.join(SHOTS_DIR, '03-stream-funded-and-charged.png'), fullPage: true });

    // The top-up's invoice.paid reached the receiver; the delivery log shows it; redeliver.
    await expect.poll(() => receiver.received.filter((event) => event.type === 'invoice.paid').length, { timeout: 30_000 }).toBeGreaterThanOrEqual(1);
    const paidEvent = receiver.received.find((event) => event.type === 'invoice.paid') as Received;
    expect(paidEvent.signature).toMatch(/v1=/);
    await page.locator(`#webhooks tr[data-id="${endpointId}"] button[data-action="deliveries"]`).click();
    const firstDelivery = page.locator(`#deliveries tr[data-event="${paidEvent.id}"][data-manual="false"]`);
    await firstDelivery.locator('[data-state="delivered"]').waitFor();
    await expect(firstDelivery.locator('td').nth(4).textContent()).resolves.toBe('HTTP 200');
    await firstDelivery.locator('button[data-action="redeliver"]').click();
    await page.locator(`#deliveries tr[data-event="${paidEvent.id}"][data-manual="true"] [data-state="delivered"]`).waitFor({ timeout: 30_000 });
    expect(receiver.received.filter((event) => event.id === paidEvent.id).length).toBe(2);
    await page.screenshot({ path: path.join(SHOTS_DIR, '04-webhook-redelivered.png'), fullPage: true });

    // An invoice made on the page (with its QR code), paid from the devnet wallet bob by pasting it.
    await page.fill('#invoice-amount', '42000');
    await page.fill('#invoice-description', 'A bag of beans');
    await page.click('#invoice-form button[type="submit"]');
    await page.locator('#invoice-created').waitFor({ state: 'visible' });
    await page.waitForFunction(() => (document.getElementById('invoice-qr') as HTMLImageElement).naturalWidth > 0);
    const paymentRequest = await page.locator('#invoice-request').inputValue();
    expect(paymentRequest).toMatch(/^lnbcrt/);
    const bobBefore = walletMsat('bob');
    await page.selectOption('#devnet-wallet', 'bob');
    await page.fill('#devnet-invoice', paymentRequest);
    await page.click('#devnet-pay-form button[type="submit"]');
    // The line still shows the top-up paid earlier until this payment's answer arrives: wait for it.
    await page.locator('#devnet-pay-result', { hasText: 'bob paid 42 sat' }).waitFor();
    await page.waitForFunction(() => document.getElementById('balance')?.dataset.msat === '49500');
    expect((await rest(appKey, 'GET', '/v1/balance')).body.balance_msat).toBe('49500');
    expect(bobBefore - walletMsat('bob')).toBeGreaterThanOrEqual(42_000n);
    await page.locator('#invoices tr[data-status="paid"]', { hasText: 'A bag of beans' }).waitFor();
    await page.waitForFunction((msat) => document.querySelector('#wallets tr[data-id="bob"]')?.getAttribute('data-msat') === msat, walletMsat('bob').toString());
    await page.screenshot({ path: path.join(SHOTS_DIR, '05-devnet-wallet-paid.png'), fullPage: true });

    // An app made elsewhere (REST) shows after signing in again; the admin revokes it after
    // confirming, and its key stops working at once.
    page.once('dialog', (dialog) => void dialog.accept());
    const doomed = await d.t.createApp('Closing down');
    await page.click('#sign-out');
    await page.waitForLoadState('load');
    await page.fill('#admin-key', ADMIN_KEY);
    await page.click('#admin-form button[type="submit"]');
    const doomedRow = page.locator(`#apps tr[data-id="${doomed.id}"]`);
    await doomedRow.locator('button[data-action="revoke"]').click();
    await doomedRow.locator('[data-state="revoked"]').waitFor();
    expect((await rest(doomed.apiKey, 'GET', '/v1/balance')).body.error.code).toBe('invalid_api_key');
    expect((await rest(appKey, 'GET', '/v1/balance')).status).toBe(200);

    // Sign out: no key is left in the tab.
    await page.click('#sign-out');
    await page.locator('#signin').waitFor();
    await page.waitForLoadState('load');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(await page.locator('#app').isHidden()).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000); // a browser on a busy 2-core CI machine: more than the default 30 s

  it('customer: a stream with its balance, a top-up paid through the devnet, pause, close and the refund', async () => {
    expect(appKey).toMatch(/^sk_/);
    const stream = await rest(appKey, 'POST', '/v1/streams', { prices: { song: '1200' }, rate_msat_per_s: '7', metadata: 'radio' });
    expect(stream.status).toBe(201);
    const token = stream.body.payer_token as string;

    const { page, errors } = await openPage(browser, d.baseUrl + '/me/');
    await page.fill('#payer-token', token);
    await page.click('#token-form button[type="submit"]');
    const card = page.locator(`section.item[data-id="${stream.body.id}"]`);
    await card.waitFor();
    await expect(card.locator('h2').textContent()).resolves.toContain('Coffee <b>shop</b>');
    expect(await card.locator('.balance').getAttribute('data-msat')).toBe('0');
    expect(await page.evaluate(() => location.href)).toBe(d.baseUrl + '/me/');

    // A top-up of the payer's choosing: invoice and QR code, paid from the devnet wallet alice.
    await card.locator('.top-up-amount').fill('30');
    await card.locator('.create-top-up').click();
    await card.locator('.top-up img.qr').waitFor();
    await page.waitForFunction(() => (document.querySelector('.top-up img.qr') as HTMLImageElement | null)?.naturalWidth! > 0);
    expect(await card.locator('.top-up-request').inputValue()).toMatch(/^lnbcrt300n/);
    await page.screenshot({ path: path.join(SHOTS_DIR, '06-customer-top-up.png'), fullPage: true });
    const aliceBefore = walletMsat('alice');
    await card.locator('.pay-devnet').click();
    await page.waitForFunction((id) => document.querySelector(`section.item[data-id="${id}"] .balance`)?.getAttribute('data-msat') === '30000', stream.body.id);
    expect(aliceBefore - walletMsat('alice')).toBeGreaterThanOrEqual(30_000n);
    await page.waitForFunction((id) => (document.querySelector(`section.item[data-id="${id}"] .top-up`) as HTMLElement).hidden, stream.body.id);
    expect(await card.locator('.top-up').isVisible()).toBe(false);

    // The app plays two songs and starts the meter; the payer sees the time left and pauses.
    for (const ref of ['s1', 's2']) expect((await rest(appKey, 'POST', `/v1/streams/${stream.body.id}/charge`, { event: 'song', ref })).status).toBe(200);
    expect((await rest(appKey, 'POST', `/v1/streams/${stream.body.id}/meter`, { action: 'start' })).status).toBe(200);
    await card.locator('.pause').waitFor({ state: 'visible' });
    await expect(card.locator('.time-left').textContent()).resolves.toMatch(/at 0\.007 sat\/s/);
    await card.locator('.pause').click();
    await expect.poll(async () => (await d.t.sluice.streams.get(stream.body.id, null))?.meter, { timeout: 30_000 }).toBe('paused');
    await expect.poll(async () => card.locator('.pause').textContent(), { timeout: 30_000 }).toBe('Resume');
    await refreshed(page, 'customer');
    const balanceAtClose = (await d.t.sluice.streams.get(stream.body.id, null))?.balanceMsat as bigint;
    expect(balanceAtClose).toBeLessThanOrEqual(30_000n - 2_400n);
    expect(balanceAtClose).toBeGreaterThan(27_000n);
    expect(await msatAttr(page, `section.item[data-id="${stream.body.id}"] .balance`)).toBe(balanceAtClose);
    await page.screenshot({ path: path.join(SHOTS_DIR, '07-customer-paused.png'), fullPage: true });

    // Close: the refund goes to alice (chosen at the top of the page), to the msat.
    const aliceBeforeRefund = walletMsat('alice');
    await card.locator('.close').click();
    await card.locator('.refund').waitFor({ state: 'visible', timeout: 30_000 });
    const refund = await msatAttr(page, `section.item[data-id="${stream.body.id}"] .refund`);
    expect(refund).toBe(balanceAtClose);
    expect(walletMsat('alice') - aliceBeforeRefund).toBe(refund);
    await card.locator('[data-state="closed"]').waitFor();
    expect((await d.t.sluice.streams.get(stream.body.id, null))?.status).toBe('closed');
    await page.screenshot({ path: path.join(SHOTS_DIR, '08-customer-refunded.png'), fullPage: true });

    // A second stream with the same merchant on the same page: its own top-up invoice (sent
    // by the stream when it opened) is shown and paid; closed with no refund destination, the
    // page asks for an invoice, and the refund pays the one pasted (from the wallet carol).
    const second = await rest(appKey, 'POST', '/v1/streams', { prices: { song: '1200' }, settle_threshold_msat: '5000', settle_to_msat: '15000', metadata: 'radio 2' });
    await page.fill('#payer-token', second.body.payer_token);
    await page.click('#token-form button[type="submit"]');
    const secondCard = page.locator(`section.item[data-id="${second.body.id}"]`);
    await secondCard.locator('.top-up .pay-devnet').waitFor();
    expect(await page.locator('section.item').count()).toBe(2);
    expect(await secondCard.locator('.top-up-request').inputValue()).toMatch(/^lnbcrt150n/);
    await secondCard.locator('.pay-devnet').click();
    await page.waitForFunction((id) => document.querySelector(`section.item[data-id="${id}"] .balance`)?.getAttribute('data-msat') === '15000', second.body.id);
    expect((await rest(appKey, 'POST', `/v1/streams/${second.body.id}/charge`, { event: 'song', ref: 'x1' })).status).toBe(200);
    await page.waitForFunction((id) => document.querySelector(`section.item[data-id="${id}"] .balance`)?.getAttribute('data-msat') === '13800', second.body.id);
    await page.selectOption('#refund-wallet', '');
    await secondCard.locator('.close').click();
    await secondCard.locator('.payout-invoice').waitFor({ state: 'visible', timeout: 30_000 });
    expect(await secondCard.locator('.payout-invoice').getAttribute('data-msat')).toBe('13800');
    const carolInvoice = await rest(token, 'POST', '/v1/devnet/invoices', { amount_msat: '13800', wallet: 'carol' });
    const carolBefore = walletMsat('carol');
    await secondCard.locator('.payout-request').fill(carolInvoice.body.payment_request);
    await secondCard.locator('.payout-invoice button').click();
    await secondCard.locator('.refund').waitFor({ state: 'visible', timeout: 30_000 });
    expect(await msatAttr(page, `section.item[data-id="${second.body.id}"] .refund`)).toBe(13_800n);
    expect(walletMsat('carol') - carolBefore).toBe(13_800n);
    await secondCard.locator('.payout-invoice').waitFor({ state: 'hidden' });
    await page.waitForFunction((id) => document.querySelector(`section.item[data-id="${id}"] .balance`)?.getAttribute('data-msat') === '0', second.body.id);
    await page.screenshot({ path: path.join(SHOTS_DIR, '09-customer-two-streams.png'), fullPage: true });

    // The tokens stay in this tab only: a reload shows both streams again without asking.
    await page.reload();
    await card.locator('[data-state="closed"]').waitFor();
    await secondCard.locator('[data-state="closed"]').waitFor();
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000); // a browser on a busy 2-core CI machine: more than the default 30 s
});
