// Streams under concurrent steps: the clock's meter charge racing a pause, stop or close,
// and payouts sized while money is moving. Each case charged or paid twice before its fix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { balanceOf } from '../../src/ledger/store.js';
import { streamAccountId } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('stream meter races', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
  });
  afterAll(async () => t?.close());

  const meteredStream = async (): Promise<string> => {
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { rate_msat_per_s: '1000', maximum_msat: '100000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    expect(created.status).toBe(201);
    return created.body.id as string;
  };

  const ledgerBalance = async (streamId: string): Promise<bigint> => {
    await t.sluice.streams.settleCharges();
    const account = await t.sluice.ledger.getAccount(streamAccountId(streamId));
    return balanceOf(account!);
  };

  for (const action of ['pause', 'stop', 'close'] as const) {
    it(`charges each second once when a ${action} lands during the clock's charge`, async () => {
      const streamId = await meteredStream();
      expect((await t.sluice.streams.meter(streamId, 'start', 'app')).ok).toBe(true);
      clock.advanceMs(3500);
      // The tick's charge for 3 whole seconds is committing when the payer's step arrives;
      // the step's own final charge must count only what the tick did not.
      const tick = t.sluice.streams.tick();
      const step = action === 'close' ? t.sluice.streams.close(streamId, 'payer') : t.sluice.streams.meter(streamId, action, 'payer');
      const [, result] = await Promise.all([tick, step]);
      expect(result.ok).toBe(true);
      expect(await ledgerBalance(streamId)).toBe(-3500n);
      const metered = (await t.sluice.streams.eventsAfter(streamId, 0)).filter((event) => event.type === 'metered');
      expect(metered.reduce((sum, event) => sum + BigInt(event.data.amount_msat as string), 0n)).toBe(3500n);
    });
  }

  it('refuses a meter step queued behind a close', async () => {
    const streamId = await meteredStream();
    await t.sluice.streams.meter(streamId, 'start', 'app');
    clock.advanceMs(1200);
    const [closed, paused] = await Promise.all([t.sluice.streams.close(streamId, 'app'), t.sluice.streams.meter(streamId, 'pause', 'payer')]);
    expect(closed.ok).toBe(true);
    expect(paused).toMatchObject({ ok: false, error: 'StreamClosed' });
    expect(await ledgerBalance(streamId)).toBe(-1200n);
  });
});

describe('stream payouts while money moves', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  /**
   * An app with money to reward with, and a stream paying out to alice by keysend past 50,000
   * msat; the first payout's outcome is withheld, so it stays pending (its hold out) until the
   * payments service reconciles it. Rewards 60,000 and waits for that payout to be sent.
   */
  async function streamWithPayoutOut(maximumMsat: string, fault: () => void = () => t.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' })) {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', {
      prices: { hit: '1000' }, maximum_msat: maximumMsat, settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000',
      payout: { keysend: { pubkey: t.sluice.devnet!.nodePubkey('alice') } },
    });
    const streamId = created.body.id as string;
    const events = async () => (await t.call('GET', `/v1/streams/${streamId}/events`, { key: app.apiKey })).body.events as { type: string; amount_msat?: string; fee_msat?: string }[];
    fault();
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    return { asApp, streamId, events, aliceBefore };
  }

  const untilRequested = async (events: () => Promise<{ type: string }[]>) => {
    for (let i = 0; i < 50 && !(await events()).some((e) => e.type === 'payout_requested'); i += 1) await settle();
  };
  const untilSettled = async (events: () => Promise<{ type: string }[]>, count: number) => {
    for (let i = 0; i < 200 && (await events()).filter((e) => e.type === 'settled').length < count; i += 1) await settle();
  };

  it('sends no second payout while the first one is in flight', async () => {
    const { asApp, streamId, events, aliceBefore } = await streamWithPayoutOut('500000');
    await untilRequested(events);
    // More money moves while that payout is in flight: each step asks whether a payout is due.
    for (let i = 0; i < 5; i += 1) expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '1', ref: `small${i}` })).status).toBe(200);
    await settle();
    await settle();
    const requested = (await events()).filter((e) => e.type === 'payout_requested');
    expect(requested).toHaveLength(1);
    // The withheld payout reached alice's node (only its outcome is hidden from Sluice); a
    // second one would have too. Alice got exactly the one.
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(BigInt(requested[0]?.amount_msat ?? '0'));
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('refunds what is left at a close once the payout that was out has resolved', async () => {
    const { asApp, streamId, events, aliceBefore } = await streamWithPayoutOut('0');
    await untilRequested(events);
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '20000', ref: 'r2' })).status).toBe(200);
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    // The payout resolves by reconciliation; then the rest goes back to the payer.
    await untilSettled(events, 2);
    const settled = (await events()).filter((e) => e.type === 'settled');
    expect(settled).toHaveLength(2);
    for (let i = 0; i < 50 && (await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat !== '0'; i += 1) await settle();
    expect((await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat).toBe('0');
    // Every msat the app rewarded reached the payer's node but the routing fee of the first
    // payout (a threshold payout's fee is the payer's; the close's refund fee is lent by the app).
    const firstFee = BigInt(settled[0]?.fee_msat ?? '0');
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(80000n - firstFee);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it('refunds at a close that lands while a payout is still being sent (its outcome told before pay() returns)', async () => {
    // The payout takes 400 ms to answer, with its final outcome: the close's refund is skipped
    // while it is being sent, and must run once it has ended.
    const { asApp, streamId, events, aliceBefore } = await streamWithPayoutOut('0', () => t.sluice.devnet!.faults.setLatencyMs(400));
    try {
      await settle();
      expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '20000', ref: 'r2' })).status).toBe(200);
      expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
      await untilSettled(events, 2);
    } finally {
      t.sluice.devnet!.faults.setLatencyMs(0);
    }
    const settled = (await events()).filter((e) => e.type === 'settled');
    expect(settled).toHaveLength(2);
    for (let i = 0; i < 50 && (await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat !== '0'; i += 1) await settle();
    expect((await asApp('GET', `/v1/streams/${streamId}`)).body).toMatchObject({ balance_msat: '0', held_msat: '0' });
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(80000n - BigInt(settled[0]?.fee_msat ?? '0'));
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it('refunds at a close once the payout that was out has failed', async () => {
    // The first payout fails at its end, and Sluice hears it only by reconciliation.
    const { asApp, streamId, events, aliceBefore } = await streamWithPayoutOut('0', () => {
      t.sluice.devnet!.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'alice' });
      t.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    });
    await untilRequested(events);
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    for (let i = 0; i < 200 && !(await events()).some((e) => e.type === 'payout_failed'); i += 1) await settle();
    await untilSettled(events, 1);
    const settled = (await events()).filter((e) => e.type === 'settled');
    expect(settled).toHaveLength(1);
    // The whole 60,000 goes back at the close (the app lends the refund's fee).
    expect(settled[0]?.amount_msat).toBe('60000');
    for (let i = 0; i < 50 && (await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat !== '0'; i += 1) await settle();
    expect((await asApp('GET', `/v1/streams/${streamId}`)).body).toMatchObject({ balance_msat: '0', held_msat: '0' });
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);
});
