// Money bugs a review found in the streams service, each reproduced here:
// 1. A fee budget lent for a refund and returned without a payout (the Lightning address
//    failed) was keyed by the payout count, so the next try's loan was a replay (nothing
//    lent) while its return was real: the payer lost the budget, and after a restart the
//    stream could not be loaded ("more fee budget returned than lent").
// 2. A refund could be sized while a charge submitted before the close was still
//    committing: the payer was paid what the charge then took (into debt, with a limit).
// 3. A payout outcome told at load, when the load could not return the fee budget, took the
//    route's fee off the loan a second time: that much of the app's budget went to the payer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appAccountId } from '../../src/apps/service.js';
import { openSqlite } from '../../src/db/sqlite.js';
import type { Ledger } from '../../src/ledger/group-commit.js';
import { balanceOf } from '../../src/ledger/store.js';
import { createLogger } from '../../src/logger.js';
import { msat } from '../../src/money/msat.js';
import { createStreamService, streamAccountId } from '../../src/streams/service.js';
import { createSqliteStreamStore } from '../../src/streams/store.js';
import { startLnurlService, type LnurlService } from '../support/lnurl-service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('streams: a refund retried after its Lightning address failed', () => {
  let t: TestSluice;
  let lnurl: LnurlService;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-fee-loans-'));
  beforeAll(async () => {
    t = await startTestSluice({ dataDir });
    lnurl = await startLnurlService({ wallet: t.sluice.devnet!.backendFor('erin'), description: 'Tips for erin (devnet)' });
  });
  afterAll(async () => {
    await t?.close();
    await lnurl?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('lends a new fee budget for the second try, pays the payer every msat, and loads again after a restart', async () => {
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '80000', payout: { lightning_address: `nobody@${lnurl.host}` } } });
    const id = created.body.id as string;
    const token = created.body.payer_token as string;
    const funding = (await t.call('GET', `/v1/streams/${id}/events`, { key: token })).body.events.find((e: { type: string }) => e.type === 'invoice');
    expect((await t.call('POST', '/v1/devnet/pay', { key: token, body: { payment_request: funding.payment_request, wallet: 'alice' } })).status).toBe(200);
    expect((await t.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', count: 20, ref: 'h1' } })).status).toBe(200);
    // The payer listens: the stream stays in memory (one epoch) across both tries.
    const events: { type: string }[] = [];
    const unsubscribe = t.sluice.streams.subscribe(id, (event) => events.push(event));
    // The app is paid for the charges in a sweep: settled now, so the figure below holds them.
    await t.sluice.streams.settleCharges();
    const appBefore = balanceOf((await t.sluice.ledger.getAccount(appAccountId(app.id)))!);
    const erinBefore = t.sluice.devnet!.nodeBalanceMsat('erin');
    expect((await t.call('POST', `/v1/streams/${id}/close`, { key: token })).status).toBe(200);
    for (let i = 0; i < 150 && !events.some((e) => e.type === 'payout_failed'); i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(events.some((e) => e.type === 'payout_failed')).toBe(true);
    // The payer names an address that works: the refund goes out again.
    expect(await t.sluice.streams.setPayoutDestination(id, { kind: 'lightning_address', address: `erin@${lnurl.host}` })).toMatchObject({ ok: true });
    for (let i = 0; i < 150 && !events.some((e) => e.type === 'settled'); i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(events.some((e) => e.type === 'settled')).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    unsubscribe();
    const stream = (await t.sluice.ledger.getAccount(streamAccountId(id)))!;
    const fee = appBefore - balanceOf((await t.sluice.ledger.getAccount(appAccountId(app.id)))!);
    // The payer got all 60,000 msat; the app paid only the route's fee; nothing is left behind.
    expect(t.sluice.devnet!.nodeBalanceMsat('erin') - erinBefore).toBe(60_000n);
    expect(balanceOf(stream)).toBe(0n);
    expect(stream.debitsPendingMsat).toBe(0n);
    expect(fee).toBeGreaterThanOrEqual(0n);
    expect(fee).toBeLessThan(10_000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
    // And the stream loads again after a restart.
    await t.close();
    t = await startTestSluice({ dataDir });
    expect(await t.sluice.streams.get(id, null)).toMatchObject({ id, status: 'closed' });
  });
});

describe('streams: the refund at close waits for the charges submitted before it', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());

  it('pays back only what the payer holds once those charges have committed', async () => {
    const { ledger: real, invoices, payments, clock } = t.sluice;
    // Charges take 300 ms to commit (a slow group commit), so one is in flight at the close.
    let delayCharges = false;
    const ledger: Ledger = Object.create(real);
    ledger.apply = async (op) => {
      if (delayCharges && op.kind === 'transfer' && typeof op.code === 'string' && op.code.startsWith('charge:')) await new Promise((r) => setTimeout(r, 300));
      return real.apply(op);
    };
    for (const key of ['getAccount', 'listTransfers', 'createAccount'] as const) (ledger as unknown as Record<string, unknown>)[key] = (real[key] as (...args: unknown[]) => unknown).bind(real);
    const store = createSqliteStreamStore(openSqlite({ path: ':memory:' }));
    const streams = createStreamService({ store, ledger, invoices, payments, clock, logger: createLogger('silent') });
    await streams.start();
    const app = await t.createApp();
    const alice = t.sluice.devnet!.nodePubkey('alice');
    const created = await streams.create(app.id, {
      prices: { hit: msat(1000n) }, rateMsatPerS: msat(0n), maximumMsat: msat(50_000n), settleThresholdMsat: msat(0n), settleToMsat: msat(100_000n),
      maxChargeMsat: msat(100_000n), payoutThresholdMsat: msat(0n), expiresAt: null, metadata: '', payoutDestination: { kind: 'keysend', pubkey: alice },
    });
    if (!created.ok) throw new Error(created.error);
    const id = created.stream.id;
    const invoice = (await store.listEventsAfter(id, 0, 100)).find((event) => event.type === 'invoice');
    await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.data.payment_request, wallet: 'carol' } });
    for (let i = 0; i < 100 && balanceOf((await real.getAccount(streamAccountId(id)))!) === 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    delayCharges = true;
    const charge = streams.charge(id, { event: 'hit', count: 40, ref: 'c1' });
    await new Promise((r) => setTimeout(r, 10));
    const close = streams.close(id, 'payer');
    await new Promise((r) => setTimeout(r, 10));
    // The payer names the destination again meanwhile: a payout is asked for before the close is saved.
    const named = streams.setPayoutDestination(id, { kind: 'keysend', pubkey: alice });
    expect(await charge).toMatchObject({ ok: true });
    expect(await close).toMatchObject({ ok: true });
    await named;
    const events = await store.listEventsAfter(id, 0, 100);
    for (let i = 0; i < 150 && !events.some((e) => e.type === 'settled'); i += 1) {
      await new Promise((r) => setTimeout(r, 20));
      events.splice(0, events.length, ...(await store.listEventsAfter(id, 0, 100)));
    }
    await streams.stop();
    const account = (await real.getAccount(streamAccountId(id)))!;
    // 100,000 funded, 40,000 charged before the close: 60,000 goes back, after the close.
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60_000n);
    expect(balanceOf(account)).toBe(0n);
    const types = events.map((event) => event.type);
    expect(types.indexOf('closed')).toBeLessThan(types.indexOf('settled'));
  });
});

describe('streams: a payout outcome told at load when the load could not return the fee budget', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());

  it('takes the route fee off the loan once: the app loses only that fee, the payer gets nothing of the app\'s budget', async () => {
    const { ledger: real, invoices, payments, clock, records } = t.sluice;
    const app = await t.createApp();
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const store = createSqliteStreamStore(openSqlite({ path: ':memory:' }));
    const first = createStreamService({ store, ledger: real, invoices, payments, clock, logger: createLogger('silent') });
    await first.start();
    const alice = t.sluice.devnet!.nodePubkey('alice');
    const created = await first.create(app.id, {
      prices: { hit: msat(1000n) }, rateMsatPerS: msat(0n), maximumMsat: msat(0n), settleThresholdMsat: msat(0n), settleToMsat: msat(0n),
      maxChargeMsat: msat(100_000n), payoutThresholdMsat: msat(0n), expiresAt: null, metadata: '', payoutDestination: { kind: 'keysend', pubkey: alice },
    });
    if (!created.ok) throw new Error(created.error);
    const id = created.stream.id;
    expect(await first.reward(id, { amountMsat: msat(60_000n), ref: 'r1' })).toMatchObject({ ok: true });
    const appBefore = balanceOf((await real.getAccount(appAccountId(app.id)))!);
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    // The refund at close is paid; saving its outcome commits and "the process dies" (nobody is told).
    const finishPayment = records.finishPayment.bind(records);
    records.finishPayment = async (...args) => {
      await finishPayment(...args);
      records.finishPayment = finishPayment;
      throw new Error('crash: the outcome is durable, nobody was told');
    };
    expect(await first.close(id, 'payer')).toMatchObject({ ok: true });
    for (let i = 0; i < 100 && t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore !== 60_000n; i += 1) await new Promise((r) => setTimeout(r, 20));
    await first.stop();
    // The next process: its load's return of the fee budget is refused once (the ledger overloaded).
    let refuseReturn = true;
    const ledger: Ledger = Object.create(real);
    ledger.apply = async (op) => {
      if (refuseReturn && op.kind === 'transfer' && op.code === 'refund_fee_return') {
        refuseReturn = false;
        return { ok: false, error: 'Overloaded', replayed: false };
      }
      return real.apply(op);
    };
    for (const key of ['getAccount', 'listTransfers', 'createAccount', 'getTransfer'] as const) (ledger as unknown as Record<string, unknown>)[key] = (real[key] as (...args: unknown[]) => unknown).bind(real);
    const second = createStreamService({ store, ledger, invoices, payments, clock, logger: createLogger('silent') });
    await second.start();
    for (let i = 0; i < 100 && !(await store.listEventsAfter(id, 0, 100)).some((e) => e.type === 'settled'); i += 1) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    await second.stop();
    const stream = (await real.getAccount(streamAccountId(id)))!;
    const routeFee = appBefore - balanceOf((await real.getAccount(appAccountId(app.id)))!);
    // alice got the 60,000 once; the stream holds nothing; the app is short only the route's fee.
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60_000n);
    expect(balanceOf(stream)).toBe(0n);
    expect(routeFee).toBeGreaterThanOrEqual(0n);
    expect(routeFee).toBeLessThan(5_000n);
    expect(await real.sumOfBalances()).toBe(0n);
  });
});
