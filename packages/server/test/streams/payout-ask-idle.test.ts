// A closed stream that asks its payer for an invoice (payout_invoice_needed) and gets no answer
// does not stay in memory for good: once the ask has waited PAYOUT_ASK_IDLE_MS with nobody
// listening, it is dropped (the app's fee budget goes back) and the stream leaves memory. The
// money stays on the stream: the payer's answer later is sized afresh and paid. Before the fix
// such a stream stayed in memory forever (asked again, and kept, at every start).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { PAYOUT_ASK_IDLE_MS } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('a payout ask nobody answers', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
  });
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
  const waitFor = async (what: string, predicate: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 100; i += 1) {
      if (await predicate()) return;
      await settle();
    }
    throw new Error(`gave up waiting for ${what}`);
  };

  /** A stream with no payout destination, rewarded 60,000 msat and closed: it asks its payer for an invoice. */
  async function closedAskingStream() {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await asApp('POST', '/v1/devnet/pay', { payment_request: float.body.payment_request, wallet: 'bob' })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', { prices: { hit: '1000' }, settle_to_msat: '0', settle_threshold_msat: '0', max_charge_msat: '100000' });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const token = created.body.payer_token as string;
    const asPayer = (method: string, url: string, body?: unknown) => t.call(method, url, { key: token, ...(body === undefined ? {} : { body }) });
    const events = async () => (await asPayer('GET', `/v1/streams/${id}/events`)).body.events as { type: string; amount_msat?: string }[];
    const appBalance = async () => BigInt((await asApp('GET', '/v1/balance')).body.balance_msat);
    expect((await asApp('POST', `/v1/streams/${id}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    const appAfterReward = await appBalance();
    expect((await asPayer('POST', `/v1/streams/${id}/close`)).status).toBe(200);
    await waitFor('the ask', async () => (await events()).some((e) => e.type === 'payout_invoice_needed'));
    return { id, asApp, asPayer, events, appBalance, appAfterReward };
  }

  it('drops the ask and the stream from memory once idle, and pays the answer that comes after', async () => {
    const streams = t.sluice.streams;
    const baseline = streams.liveStreams();
    const { id, asApp, asPayer, events, appBalance, appAfterReward } = await closedAskingStream();
    expect(streams.liveStreams()).toBe(baseline + 1);
    // The app lent the refund's routing-fee budget: the payer is asked for every msat.
    expect((await events()).filter((e) => e.type === 'payout_invoice_needed').map((e) => e.amount_msat)).toEqual(['60000']);
    expect(await appBalance()).toBeLessThan(appAfterReward);

    clock.advanceMs(PAYOUT_ASK_IDLE_MS - 1000);
    await streams.tick();
    expect(streams.liveStreams()).toBe(baseline + 1);
    clock.advanceMs(1000);
    await streams.tick();
    await waitFor('the stream to leave memory', () => streams.liveStreams() === baseline);
    expect(await appBalance()).toBe(appAfterReward);
    expect((await asApp('GET', `/v1/streams/${id}`)).body).toMatchObject({ status: 'closed', balance_msat: '60000', held_msat: '0' });

    // The payer answers the ask later: the stream is loaded, the amount sized afresh, and paid.
    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    const invoice = (await asPayer('POST', '/v1/devnet/invoices', { amount_msat: '60000', wallet: 'carol' })).body.payment_request as string;
    const answered = await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: invoice });
    expect(answered.status, JSON.stringify(answered.body)).toBe(200);
    await waitFor('the payout to settle', async () => (await events()).some((e) => e.type === 'settled'));
    expect(t.sluice.devnet!.nodeBalanceMsat('carol') - carolBefore).toBe(60000n);
    await waitFor('the balance to be 0', async () => (await asApp('GET', `/v1/streams/${id}`)).body.balance_msat === '0');
    const fee = BigInt(((await events()).find((e) => e.type === 'settled') as { fee_msat?: string } | undefined)?.fee_msat ?? '0');
    await waitFor('the unused fee budget to go back', async () => (await appBalance()) === appAfterReward - fee);
    await waitFor('the stream to leave memory again', () => streams.liveStreams() === baseline);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('keeps the ask while the payer listens, and refuses a late answer for the wrong amount with a new ask', async () => {
    const streams = t.sluice.streams;
    const baseline = streams.liveStreams();
    const { id, asPayer, events } = await closedAskingStream();
    const unsubscribe = streams.subscribe(id, () => {});
    try {
      clock.advanceMs(PAYOUT_ASK_IDLE_MS);
      await streams.tick();
      expect(streams.liveStreams()).toBe(baseline + 1);
    } finally {
      unsubscribe();
    }
    clock.advanceMs(1);
    await streams.tick();
    await waitFor('the stream to leave memory', () => streams.liveStreams() === baseline);
    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    const invoice = (await asPayer('POST', '/v1/devnet/invoices', { amount_msat: '50000', wallet: 'carol' })).body.payment_request as string;
    const answered = await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: invoice });
    expect(answered.body.error?.code).toBe('payout_amount_mismatch');
    expect((await events()).filter((e) => e.type === 'payout_invoice_needed').map((e) => e.amount_msat)).toEqual(['60000', '60000']);
    await settle();
    expect(t.sluice.devnet!.nodeBalanceMsat('carol')).toBe(carolBefore);
  });
});

describe('a payout ask nobody answered, across a restart', () => {
  let t: TestSluice | null = null;
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('is not asked again (nor held in memory) at the next start, and its late answer is paid', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-payout-ask-'));
    t = await startTestSluice({ dataDir });
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t!.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await asApp('POST', '/v1/devnet/pay', { payment_request: float.body.payment_request, wallet: 'bob' })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', { prices: { hit: '1000' }, settle_to_msat: '0', settle_threshold_msat: '0', max_charge_msat: '100000' });
    const id = created.body.id as string;
    const token = created.body.payer_token as string;
    const asPayer = (method: string, url: string, body?: unknown) => t!.call(method, url, { key: token, ...(body === undefined ? {} : { body }) });
    const asks = async () => ((await asPayer('GET', `/v1/streams/${id}/events`)).body.events as { type: string; amount_msat?: string }[]).filter((e) => e.type === 'payout_invoice_needed');
    expect((await asApp('POST', `/v1/streams/${id}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    expect((await asPayer('POST', `/v1/streams/${id}/close`)).status).toBe(200);
    for (let i = 0; i < 50 && (await asks()).length === 0; i += 1) await settle();
    expect((await asks()).map((e) => e.amount_msat)).toEqual(['60000']);

    await t.close();
    t = await startTestSluice({ dataDir });
    await settle();
    expect(t.sluice.streams.liveStreams()).toBe(0);
    expect((await asks()).map((e) => e.amount_msat)).toEqual(['60000']);

    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    const invoice = (await asPayer('POST', '/v1/devnet/invoices', { amount_msat: '60000', wallet: 'carol' })).body.payment_request as string;
    const answered = await asPayer('POST', `/v1/streams/${id}/payout`, { payment_request: invoice });
    expect(answered.status, JSON.stringify(answered.body)).toBe(200);
    for (let i = 0; i < 50 && t.sluice.devnet!.nodeBalanceMsat('carol') === carolBefore; i += 1) await settle();
    expect(t.sluice.devnet!.nodeBalanceMsat('carol') - carolBefore).toBe(60000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);
});
