// The HTTP API through Fastify's inject: the walkthrough's flow, auth, isolation,
// idempotency, and every kind of bad input (4xx with a documented code, nothing stored).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { ERROR_CODES } from '../../src/errors/codes.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const bolt11Spec = fs.readFileSync(path.resolve(__dirname, '../../../../../shared/reference/bolts/11-payment-encoding.md'), 'utf8');
/** A mainnet invoice from BOLT 11 "Examples" (wrong network for the devnet). */
const MAINNET_INVOICE = (/\b(lnbc[0-9a-z]{100,})\b/.exec(bolt11Spec) as RegExpExecArray)[1] as string;

const usePostgres = await postgresAvailable();

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`HTTP API on ${store} and the devnet`, () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let database: TestDatabase | null = null;
  let app: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };

  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_api') : null;
    t = await startTestSluice({ clock, env: database ? { SLUICE_DATABASE_URL: database.url } : {} });
    app = await t.createApp('game');
    other = await t.createApp('other');
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
  const balance = async () => (await asApp('GET', '/v1/balance')).body;
  const counts = async () => ({
    invoices: (await asApp('GET', '/v1/invoices')).body.invoices.length,
    payments: (await asApp('GET', '/v1/payments')).body.payments.length,
    balance: await balance(),
  });

  it('GET /v1/health names the backend, network, node and store', async () => {
    const health = await t.call('GET', '/v1/health', { key: null });
    expect(health.status).toBe(200);
    expect(health.body).toEqual({
      status: 'ok',
      lightning: { backend: 'devnet', network: 'regtest', pubkey: t.sluice.nodeInfo.pubkey, fake_money: true },
      store,
    });
    expect(health.body.lightning.pubkey).toMatch(/^0[23][0-9a-f]{64}$/);
  });

  it('serves the OpenAPI document with every route', async () => {
    const doc = await t.call('GET', '/openapi.json', { key: null });
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    for (const route of ['/v1/health', '/v1/apps', '/v1/invoices', '/v1/invoices/{payment_hash}', '/v1/payments', '/v1/payments/{payment_hash}', '/v1/balance', '/v1/devnet/pay', '/v1/devnet/invoices']) {
      expect(Object.keys(doc.body.paths)).toContain(route);
    }
  });

  it('runs the walkthrough: invoice, devnet pay, balance, payout', async () => {
    const invoice = await asApp('POST', '/v1/invoices', { amount_msat: '250000', description: 'ten hits', idempotency_key: 'walk-1' });
    expect(invoice.status).toBe(201);
    expect(invoice.body).toMatchObject({ amount_msat: '250000', status: 'open', description: 'ten hits' });
    expect(invoice.body.payment_request).toMatch(/^lnbcrt2500n1/);
    expect(invoice.body.payment_hash).toMatch(/^[0-9a-f]{64}$/);

    const paid = await asApp('POST', '/v1/devnet/pay', { payment_request: invoice.body.payment_request });
    expect(paid.status).toBe(200);
    expect(paid.body.payment_hash).toBe(invoice.body.payment_hash);
    expect(paid.body.wallet).toBe('alice'); // the default wallet, named in the answer

    const looked = await asApp('GET', `/v1/invoices/${invoice.body.payment_hash}`);
    expect(looked.body).toMatchObject({ status: 'paid', amount_paid_msat: '250000' });
    expect(await balance()).toEqual({ balance_msat: '250000', held_msat: '0', available_msat: '250000' });

    const payout = await asApp('POST', '/v1/devnet/invoices', { amount_msat: '100000', wallet: 'bob' });
    expect(payout.status).toBe(201);
    expect(payout.body.wallet).toBe('bob');
    const bobBefore = t.sluice.devnet?.nodeBalanceMsat('bob') as bigint;
    const payment = await asApp('POST', '/v1/payments', { payment_request: payout.body.payment_request, idempotency_key: 'payout-1' });
    expect(payment.status).toBe(200);
    expect(payment.body).toMatchObject({ status: 'succeeded', amount_msat: '100000', kind: 'invoice', payment_hash: payout.body.payment_hash });
    expect(payment.body.preimage).toMatch(/^[0-9a-f]{64}$/);
    const fee = BigInt(payment.body.fee_msat);
    expect(fee).toBeGreaterThan(0n); // routed through the hub, which charges a fee
    expect(t.sluice.devnet?.nodeBalanceMsat('bob')).toBe(bobBefore + 100000n);
    expect(await balance()).toEqual({ balance_msat: String(250000n - 100000n - fee), held_msat: '0', available_msat: String(250000n - 100000n - fee) });

    const again = await asApp('GET', `/v1/payments/${payout.body.payment_hash}`);
    expect(again.body).toEqual(payment.body);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('replays an idempotent invoice request and refuses the key with other arguments', async () => {
    const first = await asApp('POST', '/v1/invoices', { amount_msat: '1000', idempotency_key: 'same' });
    const replay = await asApp('POST', '/v1/invoices', { amount_msat: '1000', idempotency_key: 'same' });
    expect(first.status).toBe(201);
    expect(replay.status).toBe(200);
    expect(replay.body.payment_hash).toBe(first.body.payment_hash);
    const before = await counts();
    const conflict = await asApp('POST', '/v1/invoices', { amount_msat: '2000', idempotency_key: 'same' });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('idempotency_key_reused');
    expect(await counts()).toEqual(before);
  });

  it('replays a payment with the same key without paying twice', async () => {
    const payout = await asApp('POST', '/v1/devnet/invoices', { amount_msat: '5000', wallet: 'carol' });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const first = await asApp('POST', '/v1/payments', { payment_request: payout.body.payment_request, idempotency_key: 'pay-once' });
    const replay = await asApp('POST', '/v1/payments', { payment_request: payout.body.payment_request, idempotency_key: 'pay-once' });
    expect(first.body.status).toBe('succeeded');
    expect(replay.body).toEqual(first.body);
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 5000n);
    const before = await counts();
    const paidAgain = await asApp('POST', '/v1/payments', { payment_request: payout.body.payment_request, idempotency_key: 'pay-twice' });
    expect(paidAgain.status).toBe(409);
    expect(paidAgain.body.error.code).toBe('invoice_already_paid');
    const otherArgs = await asApp('POST', '/v1/payments', { payment_request: payout.body.payment_request, max_fee_msat: '1', idempotency_key: 'pay-once' });
    expect(otherArgs.body.error.code).toBe('idempotency_key_reused');
    expect(await counts()).toEqual(before);
  });

  it('sends a keysend to a devnet wallet', async () => {
    const wallets = await asApp('GET', '/v1/devnet/wallets');
    expect(wallets.body.fake_money).toBe(true);
    const carol = t.sluice.devnet?.nodePubkey('carol') as string;
    const before = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const sent = await asApp('POST', '/v1/payments', { keysend: { pubkey: carol }, amount_msat: '1234', idempotency_key: 'keysend-1' });
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ kind: 'keysend', status: 'succeeded', destination: carol, amount_msat: '1234' });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(before + 1234n);
  });

  it('refuses a payment the balance cannot cover, storing nothing', async () => {
    const big = await asApp('POST', '/v1/devnet/invoices', { amount_msat: '900000000', wallet: 'bob' });
    const before = await counts();
    const refused = await asApp('POST', '/v1/payments', { payment_request: big.body.payment_request, idempotency_key: 'too-big' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('insufficient_balance');
    expect(await counts()).toEqual(before);
  });

  it('refuses an expired invoice', async () => {
    const short = await asApp('POST', '/v1/devnet/invoices', { amount_msat: '1000', wallet: 'bob', expiry_s: 60 });
    clock.advanceMs(61_000);
    const before = await counts();
    const refused = await asApp('POST', '/v1/payments', { payment_request: short.body.payment_request, idempotency_key: 'expired-1' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('invoice_expired');
    expect(await counts()).toEqual(before);
    const ours = await asApp('POST', '/v1/invoices', { amount_msat: '1000', expiry_s: 60 });
    clock.advanceMs(61_000);
    expect((await asApp('GET', `/v1/invoices/${ours.body.payment_hash}`)).body.status).toBe('expired');
  });

  describe('auth and isolation', () => {
    it('needs a key, refuses unknown keys, keeps admin routes for the admin', async () => {
      expect((await t.call('GET', '/v1/balance', { key: null })).body.error.code).toBe('unauthorized');
      expect((await t.call('GET', '/v1/balance', { key: 'sk_nope' })).body.error.code).toBe('invalid_api_key');
      const forbidden = await t.call('GET', '/v1/apps', { key: app.apiKey });
      expect(forbidden.status).toBe(403);
      expect(forbidden.body.error.code).toBe('forbidden');
      expect((await t.call('GET', '/v1/balance')).body.error.code).toBe('forbidden');
      const list = await t.call('GET', '/v1/apps');
      expect(list.body.apps.map((a: { id: string }) => a.id)).toEqual(expect.arrayContaining([app.id, other.id]));
      expect(JSON.stringify(list.body)).not.toContain(app.apiKey);
    });

    it('shows an app only its own invoices and payments', async () => {
      const mine = await asApp('POST', '/v1/invoices', { amount_msat: '1000' });
      const theirs = await t.call('GET', `/v1/invoices/${mine.body.payment_hash}`, { key: other.apiKey });
      expect(theirs.status).toBe(404);
      expect(theirs.body.error.code).toBe('not_found');
      expect((await t.call('GET', '/v1/invoices', { key: other.apiKey })).body.invoices).toEqual([]);
      expect((await t.call('GET', '/v1/balance', { key: other.apiKey })).body.balance_msat).toBe('0');
    });

    it('revokes keys and apps', async () => {
      const victim = await t.createApp('short-lived');
      expect((await t.call('GET', '/v1/balance', { key: victim.apiKey })).status).toBe(200);
      const second = await t.call('POST', `/v1/apps/${victim.id}/keys`);
      expect(second.status).toBe(201);
      const keys = await t.call('GET', `/v1/apps/${victim.id}/keys`);
      expect(keys.body.keys).toHaveLength(2);
      const revokeOne = await t.call('POST', `/v1/apps/${victim.id}/keys/${second.body.id}/revoke`);
      expect(revokeOne.body.revoked_at).not.toBeNull();
      expect((await t.call('GET', '/v1/balance', { key: second.body.api_key })).body.error.code).toBe('invalid_api_key');
      expect((await t.call('GET', '/v1/balance', { key: victim.apiKey })).status).toBe(200);
      const revoked = await t.call('POST', `/v1/apps/${victim.id}/revoke`);
      expect(revoked.body.revoked_at).not.toBeNull();
      expect((await t.call('GET', '/v1/balance', { key: victim.apiKey })).body.error.code).toBe('invalid_api_key');
      expect((await t.call('POST', '/v1/apps/app_missing/revoke')).body.error.code).toBe('app_not_found');
    });
  });

  describe('bad input gets a documented 4xx code and changes nothing', () => {
    const rows: { description: string; method?: string; url: string; body?: unknown; rawBody?: string; contentType?: string; code: keyof typeof ERROR_CODES }[] = [
      { description: 'malformed JSON', url: '/v1/invoices', rawBody: '{"amount_msat": ', code: 'invalid_json' },
      { description: 'unknown field', url: '/v1/invoices', body: { amount_msat: '1000', colour: 'red' }, code: 'unknown_field' },
      { description: 'missing amount', url: '/v1/invoices', body: {}, code: 'invalid_request' },
      { description: 'fractional amount', url: '/v1/invoices', body: { amount_msat: '1.5' }, code: 'invalid_amount' },
      { description: 'negative amount', url: '/v1/invoices', body: { amount_msat: '-1' }, code: 'invalid_amount' },
      { description: 'exponent amount', url: '/v1/invoices', body: { amount_msat: '1e3' }, code: 'invalid_amount' },
      { description: 'empty amount', url: '/v1/invoices', body: { amount_msat: '' }, code: 'invalid_amount' },
      { description: 'amount over 2^63-1', url: '/v1/invoices', body: { amount_msat: '9223372036854775808' }, code: 'invalid_amount' },
      { description: 'zero amount', url: '/v1/invoices', body: { amount_msat: '0' }, code: 'invalid_amount' },
      { description: 'amount above 21 million BTC', url: '/v1/invoices', body: { amount_msat: '2100000000000000001' }, code: 'invalid_amount' },
      { description: 'devnet pay from the hub (not a wallet)', url: '/v1/devnet/pay', body: { payment_request: 'x', wallet: 'hub' }, code: 'invalid_request' },
      { description: 'unsafe JSON number', url: '/v1/invoices', rawBody: '{"amount_msat": 9007199254740993}', code: 'invalid_amount' },
      { description: 'fractional JSON number', url: '/v1/invoices', rawBody: '{"amount_msat": 1.5}', code: 'invalid_amount' },
      { description: 'amount as boolean', url: '/v1/invoices', body: { amount_msat: true }, code: 'invalid_amount' },
      { description: 'expiry too short', url: '/v1/invoices', body: { amount_msat: '1000', expiry_s: 5 }, code: 'expiry_out_of_range' },
      { description: 'description too long', url: '/v1/invoices', body: { amount_msat: '1000', description: 'x'.repeat(640) }, code: 'description_too_long' },
      { description: 'bad idempotency key', url: '/v1/invoices', body: { amount_msat: '1000', idempotency_key: 'has space' }, code: 'idempotency_key_invalid' },
      { description: 'not JSON', url: '/v1/invoices', rawBody: 'amount=1000', contentType: 'text/plain', code: 'unsupported_media_type' },
      { description: 'body too large', url: '/v1/invoices', rawBody: JSON.stringify({ amount_msat: '1', description: 'x'.repeat(70_000) }), code: 'body_too_large' },
      { description: 'payment without idempotency key', url: '/v1/payments', body: { payment_request: 'lnbcrt1' }, code: 'invalid_request' },
      { description: 'payment with no target', url: '/v1/payments', body: { idempotency_key: 'k1' }, code: 'payment_target_required' },
      { description: 'payment with both targets', url: '/v1/payments', body: { idempotency_key: 'k2', payment_request: 'x', keysend: { pubkey: '02' } }, code: 'payment_target_required' },
      { description: 'malformed invoice', url: '/v1/payments', body: { payment_request: 'lnbcrt1notaninvoice', idempotency_key: 'k3' }, code: 'invoice_invalid' },
      { description: 'wrong-network invoice', url: '/v1/payments', body: { payment_request: MAINNET_INVOICE, idempotency_key: 'k4' }, code: 'invoice_wrong_network' },
      { description: 'bad keysend pubkey', url: '/v1/payments', body: { keysend: { pubkey: '04abc' }, amount_msat: '1', idempotency_key: 'k5' }, code: 'invalid_pubkey' },
      { description: 'keysend without amount', url: '/v1/payments', body: { keysend: { pubkey: '02' + '11'.repeat(32) }, idempotency_key: 'k6' }, code: 'keysend_amount_required' },
      { description: 'bad max fee', url: '/v1/payments', body: { payment_request: 'x', max_fee_msat: '-5', idempotency_key: 'k7' }, code: 'invalid_amount' },
      { description: 'bad payment hash', method: 'GET', url: '/v1/invoices/xyz', code: 'invalid_request' },
      { description: 'unknown route', method: 'GET', url: '/v1/nothing', code: 'not_found' },
      { description: 'a URL the router cannot decode', method: 'GET', url: '/v1/invoices/%zz', code: 'invalid_request' },
      { description: 'devnet pay of garbage', url: '/v1/devnet/pay', body: { payment_request: 'garbage' }, code: 'invoice_invalid' },
    ];
    for (const row of rows) {
      it(row.description, async () => {
        const before = await counts();
        const response = await t.call(row.method ?? 'POST', row.url, {
          key: app.apiKey,
          ...(row.body === undefined ? {} : { body: row.body }),
          ...(row.rawBody === undefined ? {} : { rawBody: row.rawBody }),
          ...(row.contentType === undefined ? {} : { contentType: row.contentType }),
        });
        expect(response.body?.error?.code, JSON.stringify(response.body)).toBe(row.code);
        expect(response.status).toBe(ERROR_CODES[row.code].status);
        expect(typeof response.body.error.message).toBe('string');
        expect(await counts()).toEqual(before);
      });
    }

    it('paying the walkthrough invoice twice (our own, already paid)', async () => {
      const invoices = (await asApp('GET', '/v1/invoices')).body.invoices;
      const paid = invoices.find((invoice: { status: string }) => invoice.status === 'paid');
      const again = await asApp('POST', '/v1/devnet/pay', { payment_request: paid.payment_request });
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe('invoice_already_paid');
    });
  });
});
}

describe('rate limits', () => {
  it('answers 429 rate_limited past the per-key limit', async () => {
    const t = await startTestSluice({ env: { SLUICE_RATE_LIMIT_PER_MINUTE: '3' } });
    try {
      const app = await t.createApp();
      const statuses: number[] = [];
      for (let i = 0; i < 4; i += 1) statuses.push((await t.call('GET', '/v1/balance', { key: app.apiKey })).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const limited = await t.call('GET', '/v1/balance', { key: app.apiKey });
      expect(limited.body.error.code).toBe('rate_limited');
      // Another key has its own budget.
      expect((await t.call('GET', '/v1/health', { key: null })).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('counts requests without a key per client behind a trusted proxy, and per proxy otherwise', async () => {
    const statusesFrom = async (t: TestSluice, clients: string[]) => {
      const statuses: number[] = [];
      for (const client of clients) {
        // inject's socket address is 127.0.0.1: the proxy.
        statuses.push((await t.sluice.http.inject({ method: 'GET', url: '/v1/health', headers: { 'x-forwarded-for': client } })).statusCode);
      }
      return statuses;
    };
    const trusting = await startTestSluice({ env: { SLUICE_RATE_LIMIT_PER_MINUTE: '2', SLUICE_TRUSTED_PROXIES: '127.0.0.1, 10.0.0.0/8' } });
    try {
      expect(await statusesFrom(trusting, ['203.0.113.7', '203.0.113.7', '203.0.113.7', '198.51.100.2'])).toEqual([200, 200, 429, 200]);
    } finally {
      await trusting.close();
    }
    const direct = await startTestSluice({ env: { SLUICE_RATE_LIMIT_PER_MINUTE: '2' } });
    try {
      // Not trusted: the header is the client's word, and every request counts against 127.0.0.1.
      expect(await statusesFrom(direct, ['203.0.113.7', '198.51.100.2', '192.0.2.9'])).toEqual([200, 200, 429]);
    } finally {
      await direct.close();
    }
  });

  it('refuses a malformed SLUICE_TRUSTED_PROXIES at start', () => {
    for (const value of ['localhost', '10.0.0.0/33', '1.2.3.4/8/1', '::1/129']) {
      const loaded = loadConfig({ SLUICE_TRUSTED_PROXIES: value });
      expect(loaded.ok, value).toBe(false);
      if (!loaded.ok) expect(loaded.errors.join(' ')).toMatch(/SLUICE_TRUSTED_PROXIES/);
    }
    const good = loadConfig({ SLUICE_TRUSTED_PROXIES: '127.0.0.1,::1, 10.0.0.0/8,fd00::/8' });
    expect(good.ok && good.config.trustedProxies).toEqual(['127.0.0.1', '::1', '10.0.0.0/8', 'fd00::/8']);
  });
});
