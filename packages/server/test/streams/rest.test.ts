// Streams over REST on a real Sluice (SQLite, devnet, manual clock): funding, charges and
// rewards both ways with exact sub-satoshi amounts, idempotent refs, limits, per-second
// metering, top-up invoices, close and refund payout, and who may do what.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`streams over REST on ${store}`, () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let database: TestDatabase | null = null;
  let app: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };
  let alicePubkey: string;

  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_streams') : null;
    t = await startTestSluice({ clock, env: database ? { SLUICE_DATABASE_URL: database.url } : {} });
    app = await t.createApp('game');
    other = await t.createApp('other');
    alicePubkey = t.sluice.devnet?.nodePubkey('alice') as string;
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
  const as = (key: string, method: string, url: string, body?: unknown) => t.call(method, url, { key, ...(body === undefined ? {} : { body }) });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  async function fundedStream(terms: Record<string, unknown>) {
    const created = await asApp('POST', '/v1/streams', terms);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const token = created.body.payer_token as string;
    const events = (await as(token, 'GET', `/v1/streams/${created.body.id}/events`)).body.events;
    const invoice = events.find((e: { type: string }) => e.type === 'invoice');
    expect(invoice.amount_msat).toBe(terms.settle_to_msat);
    const paid = await as(token, 'POST', '/v1/devnet/pay', { payment_request: invoice.payment_request, wallet: 'alice' });
    expect(paid.status).toBe(200);
    await settle();
    return { id: created.body.id as string, token };
  }

  it('creates a stream, is funded by the payer, charges and rewards exactly, and replays refs', async () => {
    const { id, token } = await fundedStream({
      prices: { hit: '10000', ammo: '1' }, settle_to_msat: '100000', settle_threshold_msat: '20000', max_charge_msat: '50000',
      payout: { keysend: { pubkey: alicePubkey } },
    });
    expect((await as(token, 'GET', `/v1/streams/${id}`)).body).toMatchObject({ balance_msat: '100000', status: 'open', prices: { hit: '10000', ammo: '1' } });

    const hit = await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', count: 3, ref: 'hit-1' });
    expect(hit.body).toMatchObject({ amount_msat: '30000', balance_msat: '70000', replayed: false });
    const ammo = await asApp('POST', `/v1/streams/${id}/charge`, { event: 'ammo', ref: 'ammo-1' });
    expect(ammo.body).toMatchObject({ amount_msat: '1', balance_msat: '69999' });
    expect(ammo.body.seq).toBeGreaterThan(hit.body.seq);

    const replay = await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', count: 3, ref: 'hit-1' });
    expect(replay.body).toMatchObject({ seq: hit.body.seq, amount_msat: '30000', balance_msat: '69999', replayed: true });
    const conflict = await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', count: 2, ref: 'hit-1' });
    expect(conflict.body.error.code).toBe('idempotency_key_reused');

    const reward = await asApp('POST', `/v1/streams/${id}/reward`, { amount_msat: '5000', ref: 'bonus-1' });
    expect(reward.body).toMatchObject({ amount_msat: '5000', balance_msat: '74999' });
    expect((await asApp('GET', '/v1/balance')).body.balance_msat).toBe(String(30001n - 5000n));
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('names streams with ids that sort by creation time (the sweeps rely on it for locality)', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const created = await asApp('POST', '/v1/streams', { prices: { hit: '100' } });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      ids.push(created.body.id as string);
      clock.advanceMs(1);
    }
    for (const id of ids) expect(id).toMatch(/^st_[0-9a-f]{12}[A-Za-z0-9_-]{16}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(ids[0]!.slice(3, 15)).toBe((clock.now() - 3).toString(16).padStart(12, '0'));
  });

  it('refuses what the terms forbid, and changes nothing', async () => {
    const { id, token } = await fundedStream({ prices: { hit: '10000' }, settle_to_msat: '20000', max_charge_msat: '15000' });
    const before = (await asApp('GET', `/v1/streams/${id}`)).body;
    const rows: [string, unknown, string][] = [
      ['unknown event', { event: 'kick', ref: 'r1' }, 'unknown_event'],
      ['too large', { amount_msat: '15001', ref: 'r2' }, 'charge_too_large'],
      ['no amount', { ref: 'r3' }, 'charge_amount_required'],
      ['zero', { amount_msat: '0', ref: 'r4' }, 'invalid_amount'],
      ['bad ref', { amount_msat: '1', ref: 'has space' }, 'invalid_request'],
    ];
    for (const [description, body, code] of rows) {
      const refused = await asApp('POST', `/v1/streams/${id}/charge`, body);
      expect(refused.body.error?.code, description).toBe(code);
    }
    await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'ok-1' });
    await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'ok-2' });
    const pastLimit = await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'ok-3' });
    expect(pastLimit.status).toBe(409);
    expect(pastLimit.body.error.code).toBe('stream_limit_exceeded');
    expect((await as(token, 'POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'payer' })).body.error.code).toBe('forbidden');
    expect((await as(other.apiKey, 'GET', `/v1/streams/${id}`)).body.error.code).toBe('stream_not_found');
    expect((await as(other.apiKey, 'POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'x' })).body.error.code).toBe('stream_not_found');
    const after = (await asApp('GET', `/v1/streams/${id}`)).body;
    expect(after.balance_msat).toBe(String(BigInt(before.balance_msat) - 20000n));
    expect((await asApp('POST', '/v1/streams', { prices: { hit: '100' }, max_charge_msat: '10' })).body.error.code).toBe('invalid_terms');
    // price x count beyond 2^63-1 is refused as too large, not a crash.
    const huge = await asApp('POST', '/v1/streams', { prices: { big: '9223372036854775807' }, max_charge_msat: '9223372036854775807' });
    expect((await asApp('POST', `/v1/streams/${huge.body.id}/charge`, { event: 'big', count: 2, ref: 'overflow' })).body.error?.code).toBe('charge_too_large');
    expect((await asApp('POST', '/v1/streams', { settle_to_msat: '1', settle_threshold_msat: '2' })).body.error.code).toBe('invalid_terms');
  });

  it('sends a top-up invoice when the balance falls under the threshold', async () => {
    const { id, token } = await fundedStream({ prices: { hit: '10000' }, settle_to_msat: '50000', settle_threshold_msat: '25000' });
    await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', count: 3, ref: 'big' });
    // The top-up invoice is made after the charge is answered: wait for it (a loaded machine may take a while).
    const topUpEvent = async () => (await as(token, 'GET', `/v1/streams/${id}/events?after_seq=2`)).body.events.find((e: { type: string }) => e.type === 'invoice');
    for (let i = 0; i < 100 && (await topUpEvent()) === undefined; i += 1) await settle();
    const topUp = await topUpEvent();
    expect(topUp.amount_msat).toBe('30000');
    await as(token, 'POST', '/v1/devnet/pay', { payment_request: topUp.payment_request, wallet: 'bob' });
    await settle();
    expect((await asApp('GET', `/v1/streams/${id}`)).body.balance_msat).toBe('50000');
  });

  it('meters by the second on the injected clock; the payer pauses; the part second is pro rata', async () => {
    const { id, token } = await fundedStream({ rate_msat_per_s: '1000', settle_to_msat: '100000', max_charge_msat: '100000' });
    expect((await asApp('POST', `/v1/streams/${id}/meter`, { action: 'start' })).body.meter).toBe('running');
    clock.advanceMs(3500);
    await t.sluice.streams.tick();
    expect((await asApp('GET', `/v1/streams/${id}`)).body.balance_msat).toBe('97000');
    const paused = await as(token, 'POST', `/v1/streams/${id}/meter`, { action: 'pause' });
    expect(paused.body).toMatchObject({ meter: 'paused', balance_msat: '96500' });
    clock.advanceMs(10_000);
    await t.sluice.streams.tick();
    expect((await asApp('GET', `/v1/streams/${id}`)).body.balance_msat).toBe('96500');
    expect((await as(token, 'POST', `/v1/streams/${id}/meter`, { action: 'pause' })).body.error.code).toBe('meter_state');
    await as(token, 'POST', `/v1/streams/${id}/meter`, { action: 'resume' });
    clock.advanceMs(2000);
    await t.sluice.streams.tick();
    expect((await asApp('GET', `/v1/streams/${id}`)).body.balance_msat).toBe('94500');
    const types = (await as(token, 'GET', `/v1/streams/${id}/events`)).body.events.map((e: { type: string }) => e.type);
    expect(types).toEqual(expect.arrayContaining(['created', 'invoice', 'funded', 'meter_started', 'metered', 'paused', 'resumed']));
    const noMeter = await fundedStream({ prices: { hit: '1' }, settle_to_msat: '1000' });
    expect((await asApp('POST', `/v1/streams/${noMeter.id}/meter`, { action: 'start' })).body.error.code).toBe('meter_not_configured');
  });

  it('closes on the payer\'s word and pays the balance back to the payer over Lightning', async () => {
    const { id, token } = await fundedStream({
      prices: { hit: '10000' }, settle_to_msat: '200000', payout: { keysend: { pubkey: alicePubkey } },
    });
    await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'one' });
    const aliceBefore = t.sluice.devnet?.nodeBalanceMsat('alice') as bigint;
    const appBefore = BigInt((await asApp('GET', '/v1/balance')).body.balance_msat);
    const closed = await as(token, 'POST', `/v1/streams/${id}/close`);
    expect(closed.body.status).toBe('closed');
    for (let i = 0; i < 50 && t.sluice.devnet?.nodeBalanceMsat('alice') === aliceBefore; i += 1) await settle();
    // The settled event is recorded once the payment's outcome is back (after the fee advance returns).
    const settledEvent = async () => (await as(token, 'GET', `/v1/streams/${id}/events`)).body.events.find((e: { type: string }) => e.type === 'settled');
    for (let i = 0; i < 50 && (await settledEvent()) === undefined; i += 1) await settle();
    const settled = await settledEvent();
    expect(settled).toBeDefined();
    const refunded = BigInt(settled.amount_msat);
    expect(t.sluice.devnet?.nodeBalanceMsat('alice')).toBe(aliceBefore + refunded);
    // The payer gets every msat back; the app lent the routing-fee budget and paid the fee.
    expect(refunded).toBe(190000n);
    for (let i = 0; i < 50 && (await asApp('GET', `/v1/streams/${id}`)).body.balance_msat !== '0'; i += 1) await settle();
    expect((await asApp('GET', `/v1/streams/${id}`)).body.balance_msat).toBe('0');
    expect(BigInt((await asApp('GET', '/v1/balance')).body.balance_msat)).toBe(appBefore - BigInt(settled.fee_msat));
    expect((await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'late' })).body.error.code).toBe('stream_closed');
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('two closes at once (app and payer, the meter running): one closed event, one refund', async () => {
    const { id, token } = await fundedStream({ rate_msat_per_s: '500', settle_to_msat: '100000', payout: { keysend: { pubkey: alicePubkey } } });
    await asApp('POST', `/v1/streams/${id}/meter`, { action: 'start' });
    clock.advanceMs(3000);
    const [byApp, byPayer] = await Promise.all([asApp('POST', `/v1/streams/${id}/close`), as(token, 'POST', `/v1/streams/${id}/close`)]);
    for (const answer of [byApp, byPayer]) expect(answer.status === 200 || answer.body.error?.code === 'stream_closed', JSON.stringify(answer.body)).toBe(true);
    const settledEvents = async () => (await as(token, 'GET', `/v1/streams/${id}/events`)).body.events.filter((e: { type: string }) => e.type === 'settled');
    for (let i = 0; i < 50 && (await settledEvents()).length === 0; i += 1) await settle();
    await settle();
    const events = (await as(token, 'GET', `/v1/streams/${id}/events`)).body.events as { type: string; amount_msat?: string }[];
    expect(events.filter((e) => e.type === 'closed')).toHaveLength(1);
    expect(await settledEvents()).toHaveLength(1);
    // 3 seconds at 500 msat were charged once: the refund is the rest of the 100,000.
    expect((await settledEvents())[0].amount_msat).toBe('98500');
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('asks the payer for an invoice when no payout destination is set', async () => {
    const { id, token } = await fundedStream({ prices: { hit: '1000' }, settle_to_msat: '100000' });
    await as(token, 'POST', `/v1/streams/${id}/close`);
    await settle();
    const asked = (await as(token, 'GET', `/v1/streams/${id}/events`)).body.events.find((e: { type: string }) => e.type === 'payout_invoice_needed');
    expect(asked).toBeDefined();
    const wrong = await as(token, 'POST', '/v1/devnet/invoices', { amount_msat: '1', wallet: 'carol' });
    expect((await as(token, 'POST', `/v1/streams/${id}/payout`, { payment_request: wrong.body.payment_request })).body.error.code).toBe('payout_amount_mismatch');
    const right = await as(token, 'POST', '/v1/devnet/invoices', { amount_msat: asked.amount_msat, wallet: 'carol' });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    expect((await as(token, 'POST', `/v1/streams/${id}/payout`, { payment_request: right.body.payment_request })).status).toBe(200);
    await settle();
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + BigInt(asked.amount_msat));
    expect((await as(token, 'POST', `/v1/streams/${id}/payout`, { payment_request: right.body.payment_request })).body.error.code).toBe('no_payout_requested');
  });
});
}
