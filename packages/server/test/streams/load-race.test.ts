// A closed stream loaded by two steps at once, while its refund's outcome lands: the load
// reads back the routing-fee budget the app lent (recoverFeeAdvance), and two loads reading
// the ledger on either side of the outcome each saw a different budget. Before loads were
// single-flight, the one that read it before the outcome was kept, the other had already given
// the budget back, and the outcome gave it back a second time (from the payer's balance).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { balanceOf, type ListTransfersQuery } from '../../src/ledger/store.js';
import { createLogger } from '../../src/logger.js';
import { msat } from '../../src/money/msat.js';
import { appAccountId } from '../../src/apps/service.js';
import { createSqliteStreamStore } from '../../src/streams/store.js';
import { createStreamService, streamAccountId } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('loading a closed stream while its refund resolves', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
    await t.sluice.payments.stop(); // outcomes only when the test reconciles
  });
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it("returns the app's unused fee budget once", async () => {
    const { ledger, invoices, payments, clock, devnet } = t.sluice;
    const logger = createLogger('silent');
    const store = createSqliteStreamStore(openSqlite({ path: ':memory:' }));
    const app = await t.createApp();
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);

    // The first run: a stream with a debt limit, rewarded 60,000 and closed; its refund (fee
    // budget lent by the app) reaches alice, but the answer is lost: it stays in flight.
    const first = createStreamService({ store, ledger, invoices, payments, clock, logger });
    const created = await first.create(app.id, {
      prices: { hit: msat(1000n) }, rateMsatPerS: msat(0n), maximumMsat: msat(100_000n), settleThresholdMsat: msat(0n), settleToMsat: msat(0n),
      maxChargeMsat: msat(100_000n), payoutThresholdMsat: msat(0n), expiresAt: null, metadata: '',
      payoutDestination: { kind: 'keysend', pubkey: devnet!.nodePubkey('alice') },
    });
    if (!created.ok) throw new Error(created.error);
    const id = created.stream.id;
    expect((await first.reward(id, { amountMsat: msat(60_000n), ref: 'r1' })).ok).toBe(true);
    const appBefore = balanceOf((await ledger.getAccount(appAccountId(app.id)))!);
    const aliceBefore = devnet!.nodeBalanceMsat('alice');
    devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    expect((await first.close(id, 'payer')).ok).toBe(true);
    for (let i = 0; i < 50 && !(await store.listEventsAfter(id, 0, 100)).some((e) => e.type === 'payout_requested'); i += 1) await settle();
    const lent = appBefore - balanceOf((await ledger.getAccount(appAccountId(app.id)))!);
    expect(lent).toBe(10_000n);

    // The next run loads the stream (its start's sweep); the stream account's transfers are
    // read, then held back until released, so the outcome lands while the load is under way.
    const gates: (() => void)[] = [];
    const listTransfers = ledger.listTransfers.bind(ledger);
    ledger.listTransfers = async (query: ListTransfersQuery) => {
      const read = await listTransfers(query);
      if (query.accountId === streamAccountId(id) && gates.length < 2) await new Promise<void>((resolve) => gates.push(resolve));
      return read;
    };
    const second = createStreamService({ store, ledger, invoices, payments, clock, logger });
    try {
      const started = second.start();
      await settle();
      expect(gates).toHaveLength(1);
      await payments.reconcileInFlight(); // the refund succeeded: its outcome reaches the second run
      await settle();
      gates[0]?.();
      await settle();
      gates[1]?.();
      await started;
      for (let i = 0; i < 50 && !(await store.listEventsAfter(id, 0, 100)).some((e) => e.type === 'settled'); i += 1) await settle();
      await settle();
    } finally {
      ledger.listTransfers = listTransfers;
      for (const release of gates) release();
      await second.stop();
      await first.stop();
    }
    const settled = (await store.listEventsAfter(id, 0, 100)).filter((e) => e.type === 'settled');
    expect(settled).toHaveLength(1);
    const feeMsat = BigInt(settled[0]?.data.fee_msat as string);
    expect(devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60_000n);
    expect(balanceOf((await ledger.getAccount(appAccountId(app.id)))!)).toBe(appBefore - feeMsat);
    expect(balanceOf((await ledger.getAccount(streamAccountId(id)))!)).toBe(0n);
    expect(await ledger.sumOfBalances()).toBe(0n);
  }, 30_000);
});
