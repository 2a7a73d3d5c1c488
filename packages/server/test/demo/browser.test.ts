// The demo game played in a real browser (playwright-core driving Debian's Chromium):
// open the home page, follow the link to the game, start a game, fund it by paying the
// invoice shown with its QR code through the devnet button, set an allowance, shoot (hits
// and misses) until a top-up is paid automatically, watch both balances (the player's and
// the house's) move, close, and see the refund land in the player's devnet wallet. Every
// balance on the page is checked against the server. Screenshots go to test-results/demo/.
// Without /usr/bin/chromium this test says so and skips itself (CI installs Chromium).
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startDemoSluice, type DemoSluice } from './support.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium) console.warn(`${CHROMIUM} is missing: the demo browser test is skipped (apt-get install -y chromium)`);
const SHOTS_DIR = path.join(REPO_ROOT, 'test-results', 'demo');

describe.skipIf(!hasChromium)('the demo game in Chromium', () => {
  let d: DemoSluice;
  let browser: Browser;
  beforeAll(async () => {
    d = await startDemoSluice();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    fs.mkdirSync(SHOTS_DIR, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await d?.close();
  });

  const msatOf = async (page: Page, id: string): Promise<bigint> => BigInt((await page.locator(`#${id}`).getAttribute('data-msat')) ?? 'NaN');
  const walletMsat = async (name: string): Promise<bigint> => BigInt(d.t.sluice.devnet?.nodeBalanceMsat(name) ?? -1n);
  const houseMsat = async (): Promise<bigint> => BigInt((await (await fetch(`${d.baseUrl}/demo/api/house`)).json()).house_msat);

  it('funds, plays, tops up within the allowance, closes and receives the refund', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });

    await page.goto(d.baseUrl + '/');
    await expect(page.locator('a[href="/openapi.json"]').count()).resolves.toBe(1);
    await page.screenshot({ path: path.join(SHOTS_DIR, '1-home.png') });
    await page.click('a[href="/demo/"]');
    await page.waitForURL(/\/demo\/$/);
    await expect(page.locator('#fake-money').textContent()).resolves.toBe('devnet — fake money');

    // A new game: the invoice is shown with its QR code.
    await page.click('#new-game');
    await page.locator('#funding').waitFor({ state: 'visible' });
    const invoice = await page.locator('#invoice').inputValue();
    expect(invoice).toMatch(/^ln/);
    await page.waitForFunction(() => (document.getElementById('qr') as HTMLImageElement).naturalWidth > 0);
    const streamId = await page.evaluate(() => (window as any).demo.state.game.stream_id as string);
    const stream = () => d.t.sluice.streams.get(streamId, null);
    await page.screenshot({ path: path.join(SHOTS_DIR, '2-funding.png') });

    // Fund with the devnet button.
    const aliceBefore = await walletMsat('alice');
    await page.click('#pay-devnet');
    await page.waitForFunction(() => document.getElementById('balance')?.dataset.msat === '60000');
    await page.locator('#funding').waitFor({ state: 'hidden' });
    expect((await stream())?.balanceMsat).toBe(60_000n);
    expect(aliceBefore - (await walletMsat('alice'))).toBeGreaterThanOrEqual(60_000n);

    // Play: hits (aimed where the target is) and misses (the far side).
    const houseBefore = await houseMsat();
    const canvas = page.locator('#field');
    const box = await canvas.boundingBox();
    if (!box) throw new Error('no canvas');
    const shoot = async (hit: boolean) => {
      const before = await page.locator('#last-shot').textContent();
      const x = await page.evaluate(() => (window as any).demo.targetX() as number);
      const aim = hit ? x : x > 0.5 ? 0.02 : 0.98;
      await page.mouse.click(box.x + aim * box.width, box.y + box.height / 2);
      await page.waitForFunction((previous) => document.getElementById('last-shot')?.textContent !== previous, before);
      return (await page.locator('#last-shot').textContent()) ?? '';
    };
    const results: string[] = [];
    for (const hit of [true, false, true, false, true, false]) results.push(await shoot(hit));
    const hits = results.filter((line) => line.startsWith('Hit')).length;
    const shots = results.length;
    expect(hits).toBeGreaterThanOrEqual(1);
    expect(hits).toBeLessThan(shots);
    const expected = 60_000n - BigInt(shots) * 1_500n + BigInt(hits) * 4_000n;
    await page.waitForFunction((msat) => document.getElementById('balance')?.dataset.msat === msat, expected.toString());
    expect((await stream())?.balanceMsat).toBe(expected);
    expect((await houseMsat()) - houseBefore).toBe(BigInt(shots) * 1_500n - BigInt(hits) * 4_000n);
    expect(await msatOf(page, 'house')).toBe(await houseMsat());
    await page.screenshot({ path: path.join(SHOTS_DIR, '3-playing.png') });

    // An allowance, then misses until the balance falls under 20 sats: the top-up is paid automatically.
    await page.fill('#per-stream', '300');
    await page.fill('#per-hour', '200');
    await page.click('#apply-allowance');
    await expect(page.locator('#allowance-state').textContent()).resolves.toContain('up to 300 sats');
    let balance = await msatOf(page, 'balance');
    let misses = 0;
    while (balance >= 20_000n) {
      await shoot(false);
      misses += 1;
      balance -= 1_500n;
    }
    await page.locator('#events li', { hasText: 'automatic top-up' }).waitFor();
    await page.waitForFunction(() => document.getElementById('balance')?.dataset.msat === '60000');
    expect((await stream())?.balanceMsat).toBe(60_000n);
    expect(misses).toBeGreaterThan(0);
    // Counted in the browser's shared spend log, written under the page's Web Lock.
    const spent = await page.evaluate(() => ({ locks: typeof navigator.locks?.request, log: JSON.parse(localStorage.getItem('sluice.allowance.spent') ?? '[]') }));
    expect(spent.locks).toBe('function');
    expect(spent.log).toEqual([{ at: expect.any(Number), amount_msat: expect.stringMatching(/^[1-9][0-9]*$/), id: expect.stringMatching(/^[0-9a-f]{64}$/) }]);

    // Close: the rest comes back to alice's wallet.
    const aliceBeforeRefund = await walletMsat('alice');
    await page.click('#close');
    await page.locator('#refund').waitFor({ state: 'visible' });
    const refund = await msatOf(page, 'refund');
    expect(refund).toBeGreaterThan(0n);
    expect((await walletMsat('alice')) - aliceBeforeRefund).toBe(refund);
    await page.waitForFunction((msat) => document.getElementById('wallet-balance')?.dataset.msat === msat, (aliceBeforeRefund + refund).toString());
    expect((await stream())?.status).toBe('closed');
    await page.screenshot({ path: path.join(SHOTS_DIR, '4-refund.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });
});
