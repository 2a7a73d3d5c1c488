// The dashboards' server side: the pages and their CSP, the compiled modules, who a key is,
// and a payer's own top-up invoice (paid on the devnet, it funds the stream).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestSluice, type TestSluice } from '../support/sluice.js';
import { openLndOverDevnet, type LndOverDevnet } from '../lnd/support.js';
import { buildDashboard, REPO_ROOT } from './support.js';

describe('dashboard routes', () => {
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  beforeAll(async () => {
    buildDashboard();
    t = await startTestSluice();
    app = await t.createApp('Shop');
  });
  afterAll(async () => {
    await t?.close();
  });

  const newStream = async () => {
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, metadata: 'game 1' } });
    expect(created.status).toBe(201);
    return created.body as { id: string; payer_token: string };
  };

  it('serves both pages with a CSP that allows only this origin and no inline code', async () => {
    for (const url of ['/dashboard/', '/me/']) {
      const page = await t.call('GET', url, { key: null });
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      const csp = String(page.headers['content-security-policy']);
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).toContain("frame-ancestors 'none'");
      expect(page.headers['referrer-policy']).toBe('no-referrer');
      expect(page.headers['x-content-type-options']).toBe('nosniff');
      // No inline script or style for the CSP to have to allow.
      expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(page.body).not.toMatch(/\sstyle=|<style/);
    }
    expect((await t.call('GET', '/dashboard', { key: null })).headers.location).toBe('/dashboard/');
    const home = await t.call('GET', '/', { key: null });
    expect(home.body).toContain('href="/dashboard/"');
    expect(home.body).toContain('href="/me/"');
    expect((await t.call('GET', '/me', { key: null })).headers.location).toBe('/me/');
  });

  it('serves the compiled modules and nothing outside their folder', async () => {
    for (const name of ['merchant.js', 'customer.js', 'dom.js', 'api.js']) {
      const file = await t.call('GET', `/dashboard/assets/${name}`, { key: null });
      expect(file.status, name).toBe(200);
      expect(file.headers['content-type']).toBe('text/javascript; charset=utf-8');
    }
    expect((await t.call('GET', '/dashboard/assets/style.css', { key: null })).headers['content-type']).toBe('text/css; charset=utf-8');
    for (const name of ['..%2Froutes.js', 'tsconfig.tsbuildinfo', 'merchant.d.ts', 'nothing.js', '%2E%2E%2F%2E%2E%2Fpackage.json']) {
      expect((await t.call('GET', `/dashboard/assets/${name}`, { key: null })).status, name).toBe(404);
    }
    const qr = await t.call('GET', '/dashboard/qr.svg?data=lightning%3Alnbcrt1', { key: null });
    expect(qr.status).toBe(200);
    expect(qr.body).toMatch(/^<svg/);
  });

  it('never builds HTML from strings in the browser code', () => {
    const dir = path.join(REPO_ROOT, 'packages/server/src/dashboard/web');
    for (const name of fs.readdirSync(dir).filter((file) => file.endsWith('.ts'))) {
      const source = fs.readFileSync(path.join(dir, name), 'utf8');
      expect(source, name).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
    }
  });

  it('tells who a key is', async () => {
    const admin = await t.call('GET', '/dashboard/api/session', { key: ADMIN_KEY });
    expect(admin.body).toMatchObject({ kind: 'admin', devnet: true, app: null, stream_id: null, subscription_id: null });
    const asApp = await t.call('GET', '/dashboard/api/session', { key: app.apiKey });
    expect(asApp.body).toMatchObject({ kind: 'app', devnet: true, app: { id: app.id, name: 'Shop' }, stream_id: null, subscription_id: null });
    const stream = await newStream();
    const payer = await t.call('GET', '/dashboard/api/session', { key: stream.payer_token });
    expect(payer.body).toMatchObject({ kind: 'payer', devnet: true, app: { id: app.id, name: 'Shop' }, stream_id: stream.id, subscription_id: null });
    expect(admin.body.devnet_wallets.map((wallet: { name: string }) => wallet.name)).toEqual(['alice', 'bob', 'carol', 'dave', 'erin']);
    expect(admin.body.devnet_wallets[0]).toMatchObject({ pubkey: t.sluice.devnet?.nodePubkey('alice'), balance_msat: String(t.sluice.devnet?.nodeBalanceMsat('alice')) });
    expect((await t.call('GET', '/dashboard/api/session', { key: null })).body.error.code).toBe('unauthorized');
    expect((await t.call('GET', '/dashboard/api/session', { key: 'sk_nope' })).body.error.code).toBe('invalid_api_key');
    expect((await t.call('GET', '/dashboard/api/session', { key: 'pt_nope' })).body.error.code).toBe('invalid_api_key');
    expect((await t.call('GET', '/dashboard/api/session', { key: 'spt_nope' })).body.error.code).toBe('invalid_api_key');
    const basic = await t.sluice.http.inject({ method: 'GET', url: '/dashboard/api/session', headers: { authorization: 'Basic abc' } });
    expect(JSON.parse(basic.body).error.code).toBe('invalid_api_key');
    // A revoked app's key is nobody.
    const gone = await t.createApp('Gone');
    expect((await t.call('POST', `/v1/apps/${gone.id}/revoke`)).status).toBe(200);
    const revoked = await t.call('GET', '/dashboard/api/session', { key: gone.apiKey });
    expect([revoked.status, revoked.body.error.code]).toEqual([401, 'invalid_api_key']);
  });

  it("knows a subscription's payer token, and lets it pay from a devnet wallet", async () => {
    const plan = await t.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'hourly', rate_msat_per_s: '30', increment_s: 3600, prepayment_s: 7200, grace_s: 600, min_settlement_msat: '1000' } });
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    const subscription = await t.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.body.id } });
    expect(subscription.status, JSON.stringify(subscription.body)).toBe(201);
    const token = subscription.body.payer_token as string;
    expect(token).toMatch(/^spt_/);
    const who = await t.call('GET', '/dashboard/api/session', { key: token });
    expect(who.body).toMatchObject({ kind: 'payer', app: { id: app.id, name: 'Shop' }, stream_id: null, subscription_id: subscription.body.id });
    // The shared devnet route does not take this token; the dashboard's does.
    expect((await t.call('POST', '/v1/devnet/pay', { key: token, body: { payment_request: subscription.body.invoice.payment_request } })).body.error.code).toBe('invalid_api_key');
    const aliceBefore = t.sluice.devnet?.nodeBalanceMsat('alice') as bigint;
    const paid = await t.call('POST', '/dashboard/api/devnet/pay', { key: token, body: { payment_request: subscription.body.invoice.payment_request } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    expect(paid.body).toMatchObject({ amount_msat: '216000', wallet: 'alice' });
    expect(aliceBefore - (t.sluice.devnet?.nodeBalanceMsat('alice') as bigint)).toBe(216_000n + BigInt(paid.body.fee_msat));
    await t.sluice.subscriptions.idle();
    expect((await t.call('GET', `/v1/subscriptions/${subscription.body.id}`, { key: token })).body).toMatchObject({ status: 'active', balance_msat: '108000' });
    const again = await t.call('POST', '/dashboard/api/devnet/pay', { key: token, body: { payment_request: subscription.body.invoice.payment_request } });
    expect(again.body.error.code).toBe('invoice_already_paid');
    // A bad invoice gets the code /v1/devnet/pay gives it (the same function answers both).
    for (const paymentRequest of ['garbage', 'lnbcrt1notaninvoice']) {
      const viaDashboard = await t.call('POST', '/dashboard/api/devnet/pay', { key: token, body: { payment_request: paymentRequest } });
      const viaApi = await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: paymentRequest } });
      expect([viaDashboard.status, viaDashboard.body.error.code], paymentRequest).toEqual([400, 'invoice_invalid']);
      expect([viaApi.status, viaApi.body.error.code], paymentRequest).toEqual([400, 'invoice_invalid']);
    }
    const badWallet = await t.call('POST', '/dashboard/api/devnet/pay', { key: token, body: { payment_request: 'lnbcrt1', wallet: 'hub' } });
    expect(badWallet.body.error.code).toBe('invalid_request');
    expect((await t.call('POST', '/dashboard/api/devnet/pay', { key: null, body: { payment_request: 'lnbcrt1' } })).body.error.code).toBe('unauthorized');
    expect((await t.call('POST', '/dashboard/api/devnet/pay', { key: 'spt_nope', body: { payment_request: 'lnbcrt1' } })).body.error.code).toBe('invalid_api_key');
  });

  it("creates the payer's own top-up invoice, which funds the stream when paid", async () => {
    const stream = await newStream();
    const appBalanceBefore = (await t.call('GET', '/v1/balance', { key: app.apiKey })).body.balance_msat;
    const created = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '25500', idempotency_key: 'k1' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ amount_msat: '25500', status: 'open', description: `Top-up for stream ${stream.id}` });
    const replay = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '25500', idempotency_key: 'k1' } });
    expect(replay.status).toBe(200);
    expect(replay.body.payment_hash).toBe(created.body.payment_hash);
    const paid = await t.call('POST', '/v1/devnet/pay', { key: stream.payer_token, body: { payment_request: created.body.payment_request } });
    expect(paid.status).toBe(200);
    await expect.poll(async () => (await t.call('GET', `/v1/streams/${stream.id}`, { key: stream.payer_token })).body.balance_msat, { timeout: 30_000 }).toBe('25500');
    // The app's invoice list shows it; the app's own balance is untouched (the money is the payer's).
    const invoice = await t.call('GET', `/v1/invoices/${created.body.payment_hash}`, { key: app.apiKey });
    expect(invoice.body.status).toBe('paid');
    expect((await t.call('GET', '/v1/balance', { key: app.apiKey })).body.balance_msat).toBe(appBalanceBefore);
  });

  it('refuses top-ups that are not the payer\'s or not possible', async () => {
    const stream = await newStream();
    const asApp = await t.call('POST', '/dashboard/api/top-up', { key: app.apiKey, body: { amount_msat: '1000' } });
    expect([asApp.status, asApp.body.error.code]).toEqual([403, 'forbidden']);
    const zero = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '0' } });
    expect(zero.body.error.code).toBe('invalid_amount');
    const huge = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '1000000001' } });
    expect(huge.body.error.code).toBe('invalid_amount');
    const extra = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '1000', to: 'x' } });
    expect(extra.body.error.code).toBe('unknown_field');
    expect((await t.call('POST', `/v1/streams/${stream.id}/close`, { key: stream.payer_token })).status).toBe(200);
    const closed = await t.call('POST', '/dashboard/api/top-up', { key: stream.payer_token, body: { amount_msat: '1000' } });
    expect([closed.status, closed.body.error.code]).toEqual([409, 'stream_closed']);
  });
});

describe('dashboard routes off the devnet (Sluice on LND, through the LND stand-in)', () => {
  let lnd: LndOverDevnet;
  let t: TestSluice;
  beforeAll(async () => {
    lnd = await openLndOverDevnet('dashboard-lnd');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dash-lnd-'));
    fs.writeFileSync(path.join(dir, 'admin.macaroon'), Buffer.from(lnd.standin.macaroonHex, 'hex'));
    fs.writeFileSync(path.join(dir, 'tls.cert'), lnd.standin.certPem);
    t = await startTestSluice({
      env: { SLUICE_LIGHTNING: 'lnd', LND_REST_URL: lnd.standin.url, LND_MACAROON_PATH: path.join(dir, 'admin.macaroon'), LND_TLS_CERT_PATH: path.join(dir, 'tls.cert') },
    });
  });
  afterAll(async () => {
    await t?.close();
    await lnd?.close();
  });

  it('offers no devnet wallets, refuses the devnet route, and still makes top-up invoices', async () => {
    const app = await t.createApp('Real shop');
    const session = await t.call('GET', '/dashboard/api/session', { key: app.apiKey });
    expect(session.body).toMatchObject({ kind: 'app', devnet: false, devnet_wallets: [] });
    const pay = await t.call('POST', '/dashboard/api/devnet/pay', { key: app.apiKey, body: { payment_request: 'lnbcrt1' } });
    expect([pay.status, pay.body.error.code]).toEqual([404, 'devnet_only']);
    const stream = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' } } });
    const topUp = await t.call('POST', '/dashboard/api/top-up', { key: stream.body.payer_token, body: { amount_msat: '5000' } });
    expect(topUp.status, JSON.stringify(topUp.body)).toBe(201);
    expect(topUp.body).toMatchObject({ amount_msat: '5000', status: 'open' });
    const home = await t.call('GET', '/me/', { key: null });
    expect(home.status).toBe(200);
  });
});
