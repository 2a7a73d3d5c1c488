// Streams across a restart: what a stream was waiting for when the server stopped (a payout's
// outcome, the refund at its close, the routing-fee budget the app lent) is finished by the
// next start, to the msat. Each case lost money or an outcome before its fix.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();

type Event = { type: string; amount_msat?: string; fee_msat?: string; payment_hash?: string; reason?: string; payment_request?: string };

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`streams across a restart on ${store}`, () => {
  let t: TestSluice | null = null;
  let database: TestDatabase | null = null;
  afterEach(async () => {
    await t?.close();
    t = null;
    await database?.drop();
    database = null;
  });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
  const waitFor = async (what: string, predicate: () => Promise<boolean>) => {
    for (let i = 0; i < 200; i += 1) {
      if (await predicate()) return;
      await settle();
    }
    throw new Error(`gave up waiting for ${what}`);
  };

  /** Where the Sluice keeps its state across restarts: a data dir (the devnet's, and SQLite's) and, on postgres, a fresh database. */
  const newPlace = async (): Promise<{ dataDir: string; env: Record<string, string> }> => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-stream-restart-'));
    database = store === 'postgres' ? await createTestDatabase('sluice_stream_restart') : null;
    return { dataDir, env: database ? { SLUICE_DATABASE_URL: database.url } : {} };
  };
  /** A Sluice whose background reconciliation is off: a payout left unknown stays in flight until the next start. */
  const start = async (place: { dataDir: string; env: Record<string, string> }): Promise<TestSluice> => {
    t = await startTestSluice(place);
    await t.sluice.payments.stop();
    return t;
  };
  const restart = async (place: { dataDir: string; env: Record<string, string> }): Promise<TestSluice> => {
    await t?.close();
    t = await startTestSluice(place);
    return t;
  };

  /** An app with 1,000,000 msat to reward with, and a stream paying out to alice by keysend past `payoutThresholdMsat`. */
  const fundedApp = async (s: TestSluice, payoutThresholdMsat: string) => {
    const app = await s.createApp();
    const float = await s.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await s.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const created = await s.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: {
        prices: { hit: '1000' }, maximum_msat: '0', settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: payoutThresholdMsat, max_charge_msat: '100000',
        payout: { keysend: { pubkey: s.sluice.devnet!.nodePubkey('alice') } },
      },
    });
    expect(created.status).toBe(201);
    return { app, streamId: created.body.id as string };
  };
  const helpers = (s: () => TestSluice, apiKey: string, streamId: string) => ({
    asApp: (method: string, url: string, body?: unknown) => s().call(method, url, { key: apiKey, ...(body === undefined ? {} : { body }) }),
    events: async () => (await s().call('GET', `/v1/streams/${streamId}/events`, { key: apiKey })).body.events as Event[],
    stream: async () => (await s().call('GET', `/v1/streams/${streamId}`, { key: apiKey })).body as { balance_msat: string; held_msat: string; status: string },
    appBalance: async () => BigInt((await s().call('GET', '/v1/balance', { key: apiKey })).body.balance_msat),
  });

  it('records a payout outcome reconciled at start and then pays the refund that waited for it', async () => {
    const place = await newPlace();
    const first = await start(place);
    const { app, streamId } = await fundedApp(first, '50000');
    const { asApp, events, stream } = helpers(() => t!, app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    // The threshold payout reaches alice, but Sluice is not told: it stays in flight.
    first.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    await waitFor('the payout to be sent', async () => (await events()).some((e) => e.type === 'payout_requested'));
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '20000', ref: 'r2' })).status).toBe(200);
    // The close's refund waits for the payout that is out; the server stops before it resolves.
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(0);

    const second = await restart(place);
    await waitFor('the payout and the refund to settle', async () => (await events()).filter((e) => e.type === 'settled').length === 2);
    await waitFor('the balance to be 0', async () => (await stream()).balance_msat === '0');
    const settled = (await events()).filter((e) => e.type === 'settled');
    expect(settled[0]?.amount_msat).toBe('50000');
    expect(await stream()).toMatchObject({ status: 'closed', balance_msat: '0', held_msat: '0' });
    // Every msat rewarded reached alice but the first payout's routing fee (the refund's was lent by the app).
    expect(second.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(80000n - BigInt(settled[0]?.fee_msat ?? '0'));
    expect(await second.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it("gives the app back the unused fee budget it lent a close's refund that resolved across a restart", async () => {
    const place = await newPlace();
    const first = await start(place);
    const { app, streamId } = await fundedApp(first, '0');
    const { asApp, events, stream, appBalance } = helpers(() => t!, app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    const appAfterReward = await appBalance();
    // The refund at close: the app lends its routing-fee budget; the payout reaches alice unheard.
    first.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    await waitFor('the refund to be sent', async () => (await events()).some((e) => e.type === 'payout_requested'));
    expect(await appBalance()).toBeLessThan(appAfterReward);

    const second = await restart(place);
    await waitFor('the refund to settle', async () => (await events()).some((e) => e.type === 'settled'));
    await waitFor('the balance to be 0', async () => (await stream()).balance_msat === '0');
    await settle();
    const settled = (await events()).filter((e) => e.type === 'settled');
    expect(settled).toHaveLength(1);
    expect(settled[0]?.amount_msat).toBe('60000');
    // The payer got all 60,000; the app paid the route's fee and got the rest of its budget back.
    expect(second.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60000n);
    expect(await appBalance()).toBe(appAfterReward - BigInt(settled[0]?.fee_msat ?? '0'));
    expect(await stream()).toMatchObject({ balance_msat: '0', held_msat: '0' });
    expect(await second.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it('pays back at start what a closed stream still holds (its refund failed), once', async () => {
    const place = await newPlace();
    const first = await start(place);
    const { app, streamId } = await fundedApp(first, '0');
    const { asApp, events, stream, appBalance } = helpers(() => t!, app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    const appAfterReward = await appBalance();
    first.sluice.devnet!.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'alice' });
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    await waitFor('the refund to fail', async () => (await events()).some((e) => e.type === 'payout_failed'));
    await waitFor('the fee budget to go back', async () => (await appBalance()) === appAfterReward);
    expect(await stream()).toMatchObject({ status: 'closed', balance_msat: '60000', held_msat: '0' });

    const second = await restart(place);
    await waitFor('the refund to settle', async () => (await events()).some((e) => e.type === 'settled'));
    await waitFor('the balance to be 0', async () => (await stream()).balance_msat === '0');
    const fee = BigInt((await events()).find((e) => e.type === 'settled')?.fee_msat ?? '0');
    expect(second.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60000n);
    await waitFor('the unused fee budget to go back', async () => (await appBalance()) === appAfterReward - fee);

    // A later start finds nothing to do: no second payout.
    const third = await restart(place);
    await settle();
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60000n);
    expect(await appBalance()).toBe(appAfterReward - fee);
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it('tries again at start to pay back a late top-up of a closed stream an earlier start had found settled', async () => {
    // Keysend to a node the devnet does not know: every refund fails (no_route), so the money stays.
    const nowhere = '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798';
    const place = await newPlace();
    const first = await start(place);
    const app = await first.createApp();
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '100000', payout: { keysend: { pubkey: nowhere } } },
    });
    const streamId = created.body.id as string;
    const { asApp, events, stream } = helpers(() => t!, app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    expect(invoice).toBeDefined();
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    // Nothing to pay back: this start's sweep marks it settled.
    const second = await restart(place);
    // The old top-up invoice is paid now; its refund fails, and the server stops.
    const paid = await second.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    expect(paid.status, JSON.stringify(paid.body)).toBe(200);
    await waitFor('the refund to fail', async () => (await events()).some((e) => e.type === 'payout_failed'));
    expect((await stream()).balance_msat).toBe('100000');

    // The next start tries the refund again (it fails again: the destination is still nowhere).
    const third = await restart(place);
    await waitFor('the refund to be tried again', async () => (await events()).filter((e) => e.type === 'payout_failed').length === 2);
    expect((await stream()).balance_msat).toBe('100000');
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);
});
}
