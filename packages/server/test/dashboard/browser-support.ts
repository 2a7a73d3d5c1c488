/** Chromium for the dashboards' browser tests: Debian's /usr/bin/chromium through playwright-core. */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from './support.js';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = fs.existsSync(CHROMIUM);
export const SHOTS_DIR = path.join(REPO_ROOT, 'test-results', 'dashboard');

export async function launchChromium(): Promise<Browser> {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** A page that records script errors and CSP violations (the tests expect none). */
export async function openPage(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    // A refused API call shows as a failed resource load in the console: those are asserted on the page instead.
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) errors.push(message.text());
  });
  await page.goto(url);
  return { page, errors };
}

export const msatAttr = async (page: Page, selector: string): Promise<bigint> => BigInt((await page.locator(selector).first().getAttribute('data-msat')) ?? 'NaN');
