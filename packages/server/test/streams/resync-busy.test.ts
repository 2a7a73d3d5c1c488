// A stream's cached balance is read again from the ledger when a delta cannot be trusted (a
// commit that threw, a payout told before pay() returned). The read needs a moment with no step
// of the stream under way; on a stream charged without pause there was none, and after 100
// tries the read gave up and kept the stale figure for good. It now holds the stream's new
// steps back for that moment (resyncBalance's gate).
import { describe, expect, it } from 'vitest';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { streamAccountId } from '../../src/streams/service.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { commitThenThrowOnce } from '../support/stream-faults.js';

const usePostgres = await postgresAvailable();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `loops` callers charging the stream without pause until stop() (each waits for its ack, then charges again). */
const chargeWithoutPause = (t: TestSluice, streamId: string, loops: number) => {
  let running = true;
  let next = 0;
  let acked = 0;
  const done = Promise.all(Array.from({ length: loops }, async () => {
    while (running) {
      const ack = await t.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: `busy-${next++}` }).catch(() => null);
      if (ack?.ok) acked += 1;
    }
  }));
  return {
    acked: () => acked,
    async stop() {
      running = false;
      await done;
    },
  };
};

/**
 * An app with 20,000,000 msat (a reward is its money) and a stream charged 1,000 msat a hit,
 * deep in credit, paid out by keysend to the devnet's alice past 1,000,000 msat.
 */
const payoutStream = async (t: TestSluice): Promise<{ app: { apiKey: string }; streamId: string }> => {
  const app = await t.createApp();
  const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '20000000', description: 'float' } });
  expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
  const created = await t.call('POST', '/v1/streams', {
    key: app.apiKey,
    body: {
      prices: { hit: '1000' }, maximum_msat: '100000000000', max_charge_msat: '10000000', settle_to_msat: '0', settle_threshold_msat: '0',
      payout_threshold_msat: '1000000', payout: { keysend: { pubkey: t.sluice.devnet!.nodePubkey('alice') } },
    },
  });
  expect(created.status).toBe(201);
  return { app, streamId: created.body.id as string };
};

for (const dialect of ['sqlite', 'postgres'] as const) {
describe.skipIf(dialect === 'postgres' && !usePostgres)(`a balance re-read on a stream charged without pause (${dialect})`, () => {
  let database: TestDatabase | null = null;
  const start = async (): Promise<TestSluice> => {
    database = dialect === 'postgres' ? await createTestDatabase('sluice_resync_busy') : null;
    return startTestSluice(database ? { env: { SLUICE_DATABASE_URL: database.url } } : {});
  };
  const stop = async (t: TestSluice): Promise<void> => {
    await t.close();
    await database?.drop();
    database = null;
  };

  it('takes the charges of a commit that wrote its rows and then threw into the cached balance, while other charges keep coming', async () => {
    const t = await start();
    try {
      const app = await t.createApp();
      const created = await t.call('POST', '/v1/streams', {
        key: app.apiKey,
        body: { prices: { hit: '1000' }, maximum_msat: '100000000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
      });
      expect(created.status).toBe(201);
      const streamId = created.body.id as string;
      const load = chargeWithoutPause(t, streamId, 8);
      await sleep(100);
      const restore = commitThenThrowOnce(t);
      // The re-read starts after the failed commit and must find its moment while the load goes on.
      await sleep(1000);
      restore();
      await load.stop();
      expect(load.acked()).toBeGreaterThan(100);
      await sleep(100);
      await t.sluice.streams.settleCharges();
      const ledgerBalance = balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!);
      // Every charge written is in the ledger, the failed commit's too (it wrote its rows).
      expect(ledgerBalance).toBeLessThanOrEqual(-BigInt(load.acked()) * 1000n);
      // The balance that admits charges is the ledger's: the failed commit's charges are in it.
      expect((await t.sluice.streams.get(streamId, null))!.balanceMsat).toBe(ledgerBalance);
    } finally {
      await stop(t);
    }
  });

  it("takes a payout answered before pay() returned into the cached balance, while other charges keep coming", async () => {
    const t = await start();
    try {
      const { streamId } = await payoutStream(t);
      const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
      const load = chargeWithoutPause(t, streamId, 8);
      await sleep(100);
      // Over the payout threshold: the devnet's keysend is final before pay() returns, so its
      // outcome is told first and the balance is read again from the ledger.
      expect(await t.sluice.streams.reward(streamId, { amountMsat: msat(10_000_000n), ref: 'r1' })).toMatchObject({ ok: true });
      await sleep(1000);
      await load.stop();
      expect(load.acked()).toBeGreaterThan(100);
      const paid = t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore;
      expect(paid).toBeGreaterThan(0n);
      await sleep(100);
      await t.sluice.streams.settleCharges();
      const ledgerBalance = balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!);
      expect(ledgerBalance).toBeLessThan(10_000_000n - paid);
      expect((await t.sluice.streams.get(streamId, null))!.balanceMsat).toBe(ledgerBalance);
    } finally {
      await stop(t);
    }
  });

  it("does not count a payout's hold twice when the balance is re-read while pay() has made the hold and not yet returned", async () => {
    const t = await start();
    try {
      await t.sluice.payments.stop(); // the payout's outcome only when the test reconciles
      const { app, streamId } = await payoutStream(t);
      // The payout stays pending (its outcome withheld), and pay() returns 300 ms after its hold committed.
      t.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
      const records = t.sluice.records;
      const beginPayment = records.beginPayment.bind(records);
      let holdMade = false;
      records.beginPayment = async (...args) => {
        const begun = await beginPayment(...args);
        holdMade = true;
        await sleep(300);
        return begun;
      };
      const load = chargeWithoutPause(t, streamId, 8);
      await sleep(100);
      expect(await t.sluice.streams.reward(streamId, { amountMsat: msat(10_000_000n), ref: 'r1' })).toMatchObject({ ok: true });
      for (let i = 0; i < 100 && !holdMade; i += 1) await sleep(5);
      expect(holdMade).toBe(true);
      // A commit throws while pay() is out: the balance is read again.
      const restore = commitThenThrowOnce(t);
      await sleep(1000);
      restore();
      await load.stop();
      records.beginPayment = beginPayment;
      const pending = await t.sluice.streams.get(streamId, null);
      // The hold once: amount + fee budget of the one payout out.
      const account = (await t.sluice.ledger.getAccount(streamAccountId(streamId)))!;
      expect(account.debitsPendingMsat).toBeGreaterThan(0n);
      expect(pending!.heldMsat).toBe(account.debitsPendingMsat);
      // Its outcome releases it: nothing held, and the balance is the ledger's.
      await t.sluice.payments.reconcileInFlight();
      await sleep(200);
      await t.sluice.streams.settleCharges();
      const after = await t.sluice.streams.get(streamId, null);
      expect(after!.heldMsat).toBe(0n);
      // The payer heard of it in order: requested, then settled.
      const events: { type: string; seq: number }[] = [];
      for (let page = 0; page < 100; page += 1) {
        const after = events.length === 0 ? 0 : events[events.length - 1]!.seq;
        const got = (await t.call('GET', `/v1/streams/${streamId}/events?after_seq=${after}`, { key: app.apiKey })).body.events as { type: string; seq: number }[];
        if (got.length === 0) break;
        events.push(...got);
      }
      const requested = events.filter((e) => e.type === 'payout_requested');
      const settled = events.filter((e) => e.type === 'settled');
      expect(requested).toHaveLength(1);
      expect(settled).toHaveLength(1);
      expect(requested[0]!.seq).toBeLessThan(settled[0]!.seq);
      expect(after!.balanceMsat).toBe(balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!));
    } finally {
      await stop(t);
    }
  });
});
}
