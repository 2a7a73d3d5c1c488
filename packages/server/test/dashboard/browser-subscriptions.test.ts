// Subscriptions through both dashboards in Chromium, over a real Sluice with the devnet and
// the demo businesses seeded as `npm start` seeds them. The admin signs in, makes a key for
// a demo business and signs in as it, creates a plan, subscribes a customer; the customer
// opens /me/ with the payer token and pays the prepayment from a devnet wallet; the admin
// moves the devnet clock past the buffer (past_due) and the grace (suspended); the customer
// pays again (active), cancels and sees the refund land in the wallet, to the msat. Every
// state on the pages is checked against the API. Screenshots go to test-results/dashboard/.
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemoBusinesses, DEMO_BUSINESSES } from '../../src/subscriptions/index.js';
import { ADMIN_KEY } from '../support/sluice.js';
import { CHROMIUM, hasChromium, launchChromium, msatAttr, openPage, SHOTS_DIR } from './browser-support.js';
import { startDashboardSluice, type DashboardSluice } from './support.js';

if (!hasChromium) console.warn(`${CHROMIUM} is missing: the dashboard subscription browser test is skipped (apt-get install -y chromium)`);

describe.skipIf(!hasChromium)('subscriptions in the dashboards (Chromium)', () => {
  let d: DashboardSluice;
  let browser: Browser;
  beforeAll(async () => {
    d = await startDashboardSluice();
    await seedDemoBusinesses({ apps: d.t.sluice.apps, subscriptions: d.t.sluice.subscriptions });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await d?.close();
  });

  const walletMsat = (name: string): bigint => d.t.sluice.devnet?.nodeBalanceMsat(name) ?? -1n;
  const subscriptionOf = async (id: string, key: string) => {
    const response = await fetch(`${d.baseUrl}/v1/subscriptions/${id}`, { headers: { authorization: `Bearer ${key}` } });
    return (await response.json()) as any;
  };
  const waitAttr = (page: Page, selector: string, name: string, value: string) =>
    page.waitForFunction(([s, n, v]) => document.querySelector(s as string)?.getAttribute(n as string) === v, [selector, name, value] as const, { timeout: 30_000 });

  it('plan, subscribe, fund, clock past the buffer and the grace, suspended, pay, active, cancel, refund', async () => {
    const { page: merchant, errors: merchantErrors } = await openPage(browser, d.baseUrl + '/dashboard/');
    await merchant.fill('#admin-key', ADMIN_KEY);
    await merchant.click('#admin-form button[type="submit"]');
    for (const business of DEMO_BUSINESSES) await merchant.locator(`#apps tr[data-name="${business.app}"]`).waitFor();
    await merchant.locator('#devnet-clock').waitFor({ state: 'visible' });

    // A key for the bike rental, shown once; sign in as it: its seeded plan is there.
    await merchant.locator('#apps tr[data-name="Pedal Bike Rental"] button[data-action="new-key"]').click();
    await merchant.locator('#new-key').waitFor({ state: 'visible' });
    const appKey = (await merchant.locator('#new-key-value').textContent()) as string;
    await merchant.click('#use-new-key');
    await merchant.locator('#subscriptions-section').waitFor({ state: 'visible' });
    await merchant.locator('#plans tr[data-name="Bike rental: 1 day, billed per minute"]').waitFor();
    // The navigation lists what this session shows; its links are fragments, never keys.
    expect(await merchant.locator('#nav a:visible').allTextContents()).toEqual(['Apps and keys', 'Balance', 'Plans and subscriptions', 'Streams', 'Invoices', 'Payments', 'Webhooks', 'Devnet wallets']);
    await merchant.click('#nav a[href="#subscriptions-section"]');
    expect(merchant.url()).toBe(`${d.baseUrl}/dashboard/#subscriptions-section`);

    // A plan from the form: 30 msat/s billed hourly (108 sat an increment), 2 hours prepaid, 3 hours' grace.
    await merchant.fill('#plan-name', 'Night rides: hourly');
    await merchant.fill('#plan-rate', '30');
    await merchant.fill('#plan-increment', '3600');
    await merchant.fill('#plan-prepayment', '7200');
    await merchant.fill('#plan-grace', '10800');
    await merchant.fill('#plan-min-settlement', '1000');
    await merchant.click('#plan-form button[type="submit"]');
    const planRow = merchant.locator('#plans tr[data-name="Night rides: hourly"]');
    await planRow.waitFor();
    await planRow.locator('button[data-action="subscribe"]').click();
    await merchant.locator('#new-subscription').waitFor({ state: 'visible' });
    const token = (await merchant.locator('#new-subscription-token').textContent()) as string;
    const id = (await merchant.locator('#new-subscription-id').textContent()) as string;
    expect(token).toMatch(/^spt_/);
    const row = `#subscriptions tr[data-id="${id}"]`;
    await waitAttr(merchant, row, 'data-status', 'created');
    await merchant.screenshot({ path: path.join(SHOTS_DIR, '10-merchant-plan-and-subscription.png'), fullPage: true });

    // The customer opens /me/ with the token: the prepayment invoice and its QR code.
    const { page: customer, errors: customerErrors } = await openPage(browser, d.baseUrl + '/me/');
    await customer.fill('#payer-token', token);
    await customer.click('#token-form button[type="submit"]');
    const card = `section.item[data-id="${id}"]`;
    await customer.locator(`${card} .top-up img.qr`).waitFor();
    await customer.waitForFunction((selector) => (document.querySelector(selector) as HTMLImageElement | null)?.naturalWidth! > 0, `${card} .top-up img.qr`);
    expect(await customer.locator(`${card} .top-up-request`).inputValue()).toMatch(/^lnbcrt2160n/);
    await expect(customer.locator(`${card} h2`).textContent()).resolves.toContain('Night rides: hourly (Pedal Bike Rental)');
    await customer.screenshot({ path: path.join(SHOTS_DIR, '11-customer-subscription-invoice.png'), fullPage: true });

    // Fund from the devnet wallet alice: active, the first hour charged, paid through two hours.
    const aliceBefore = walletMsat('alice');
    await customer.locator(`${card} .pay-devnet`).click();
    await waitAttr(customer, `${card} [data-state]`, 'data-state', 'active');
    await waitAttr(customer, `${card} .balance`, 'data-msat', '108000');
    expect(aliceBefore - walletMsat('alice')).toBeGreaterThanOrEqual(216_000n);
    let api = await subscriptionOf(id, token);
    expect(api).toMatchObject({ status: 'active', balance_msat: '108000', charged_msat: '108000' });
    expect(await customer.locator(`${card} .paid-through`).getAttribute('data-at')).toBe(api.paid_through);
    await waitAttr(merchant, row, 'data-status', 'active');
    await waitAttr(merchant, row, 'data-msat', '108000');

    // The admin moves the devnet clock past the buffer: past_due; then past the grace: suspended.
    const advance = async (seconds: number) => {
      const before = await merchant.locator('#clock-result').textContent();
      await merchant.fill('#clock-seconds', String(seconds));
      await merchant.click('#clock-form button[type="submit"]');
      await merchant.waitForFunction((previous) => document.getElementById('clock-result')?.textContent !== previous, before);
    };
    await advance(7200 + 60);
    await waitAttr(merchant, row, 'data-status', 'past_due');
    await waitAttr(customer, `${card} [data-state]`, 'data-state', 'past_due');
    expect((await subscriptionOf(id, appKey)).status).toBe('past_due');
    await advance(3 * 3600);
    await waitAttr(merchant, row, 'data-status', 'suspended');
    await waitAttr(customer, `${card} [data-state]`, 'data-state', 'suspended');
    api = await subscriptionOf(id, token);
    expect(api).toMatchObject({ status: 'suspended', owed_msat: '324000' });
    await expect(customer.locator(`${card} .subscription-status`).textContent()).resolves.toContain('owes 324 sat');
    await merchant.screenshot({ path: path.join(SHOTS_DIR, '12-merchant-suspended.png'), fullPage: true });
    await customer.screenshot({ path: path.join(SHOTS_DIR, '13-customer-suspended.png'), fullPage: true });

    // The customer pays what is due (a fresh invoice on request): active again, nothing owed.
    await customer.locator(`${card} .create-top-up`).click();
    await customer.locator(`${card} .pay-devnet`).waitFor();
    await customer.locator(`${card} .pay-devnet`).click();
    await waitAttr(customer, `${card} [data-state]`, 'data-state', 'active');
    await waitAttr(merchant, row, 'data-status', 'active');
    api = await subscriptionOf(id, token);
    expect(api.owed_msat).toBe('0');
    await waitAttr(customer, `${card} .balance`, 'data-msat', api.balance_msat);

    // Cancel: the unused balance comes back to alice (chosen at the top of the page), to the msat.
    const balanceAtCancel = BigInt(api.balance_msat);
    const aliceBeforeRefund = walletMsat('alice');
    await customer.locator(`${card} .cancel`).click();
    await waitAttr(customer, `${card} [data-state]`, 'data-state', 'cancelled');
    await waitAttr(customer, `${card} .refund`, 'data-state', 'succeeded');
    const refund = await msatAttr(customer, `${card} .refund`);
    api = await subscriptionOf(id, token);
    expect(api.refund).toMatchObject({ status: 'succeeded', amount_msat: refund.toString() });
    expect(refund).toBeGreaterThan(0n);
    expect(refund).toBeLessThanOrEqual(balanceAtCancel);
    expect(walletMsat('alice') - aliceBeforeRefund).toBe(refund);
    expect(api.balance_msat).toBe('0');
    await waitAttr(merchant, row, 'data-status', 'cancelled');
    expect(await merchant.locator(`${row} button[data-action="cancel"]`).count()).toBe(0);
    await customer.screenshot({ path: path.join(SHOTS_DIR, '14-customer-cancelled-refunded.png'), fullPage: true });
    await merchant.screenshot({ path: path.join(SHOTS_DIR, '15-merchant-cancelled.png'), fullPage: true });

    // The merchant cancels another subscription (after confirming): the unused balance is held
    // for the customer, whose page asks where it goes; refunded to the wallet chosen there.
    await planRow.locator('button[data-action="subscribe"]').click();
    await merchant.waitForFunction((previous) => document.getElementById('new-subscription-id')?.textContent !== previous, id);
    const secondId = (await merchant.locator('#new-subscription-id').textContent()) as string;
    const secondToken = (await merchant.locator('#new-subscription-token').textContent()) as string;
    await customer.fill('#payer-token', secondToken);
    await customer.click('#token-form button[type="submit"]');
    const second = `section.item[data-id="${secondId}"]`;
    await customer.locator(`${second} .pay-devnet`).click();
    await waitAttr(customer, `${second} [data-state]`, 'data-state', 'active');
    await waitAttr(customer, `${second} .balance`, 'data-msat', '108000');
    merchant.once('dialog', (dialog) => void dialog.accept());
    await merchant.locator(`#subscriptions tr[data-id="${secondId}"] button[data-action="cancel"]`).click();
    await waitAttr(merchant, `#subscriptions tr[data-id="${secondId}"]`, 'data-status', 'cancelled');
    await waitAttr(customer, `${second} [data-state]`, 'data-state', 'cancelled');
    await customer.locator(`${second} .payout-invoice`).waitFor({ state: 'visible', timeout: 30_000 });
    const held = await subscriptionOf(secondId, secondToken);
    expect(held.refund.status).toBe('held');
    expect(held.ended_by).toBe('merchant');
    expect(await customer.locator(`${second} .payout-invoice`).getAttribute('data-msat')).toBe(held.refund.amount_msat);
    await customer.selectOption('#refund-wallet', 'carol');
    const carolBefore = walletMsat('carol');
    await customer.locator(`${second} .payout-invoice button.secondary`).click();
    await waitAttr(customer, `${second} .refund`, 'data-state', 'succeeded');
    expect(walletMsat('carol') - carolBefore).toBe(BigInt(held.refund.amount_msat));
    expect(await msatAttr(customer, `${second} .refund`)).toBe(BigInt(held.refund.amount_msat));
    await customer.locator(`${second} .payout-invoice`).waitFor({ state: 'hidden' });
    await customer.screenshot({ path: path.join(SHOTS_DIR, '16-customer-refund-after-merchant-cancel.png'), fullPage: true });

    expect(merchantErrors).toEqual([]);
    expect(customerErrors).toEqual([]);
    await customer.close();
    await merchant.close();
  }, 120_000); // a browser on a busy 2-core CI machine: more than the default 30 s
});
