// Second review of ADR 0017 (stream money steps as rows, charges settled in sweeps): each
// case here was reproduced before it was reported.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { appAccountId } from '../../src/apps/service.js';
import { streamAccountId } from '../../src/streams/service.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { commitThenThrowOnce, type CommitFn } from '../support/stream-faults.js';

const usePostgres = await postgresAvailable();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


for (const dialect of ['sqlite', 'postgres'] as const) {
describe.skipIf(dialect === 'postgres' && !usePostgres)(`money review 2 on ${dialect}`, () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let database: TestDatabase | null = null;
  beforeAll(async () => {
    if (dialect === 'postgres') database = await createTestDatabase('sluice_money_review_2');
    t = await startTestSluice({ clock, ...(database ? { env: { SLUICE_DATABASE_URL: database.url } } : {}) });
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const fundedApp = async () => {
    const app = await t.createApp();
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    return app;
  };
  const appBalance = async (apiKey: string): Promise<bigint> => {
    const read = await t.call('GET', '/v1/balance', { key: apiKey });
    expect(read.status).toBe(200);
    return BigInt(read.body.balance_msat as string);
  };

  it('does not charge the same metered seconds twice when a tick\'s commit wrote its row and then threw', async () => {
    const app = await fundedApp();
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { rate_msat_per_s: '1000', maximum_msat: '100000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    expect((await t.sluice.streams.meter(streamId, 'start', 'app')).ok).toBe(true);
    clock.advanceMs(5000);
    const restore = commitThenThrowOnce(t);
    try {
      await t.sluice.streams.tick(); // seconds 0-5: written, answered with an error
    } finally {
      restore();
    }
    clock.advanceMs(2000);
    await t.sluice.streams.tick(); // seconds 5-7 are all that is due
    await sleep(50);
    await t.sluice.streams.settleCharges();
    const account = await t.sluice.ledger.getAccount(streamAccountId(streamId));
    // 7 seconds ran at 1,000 msat/s.
    expect(balanceOf(account!)).toBe(-7000n);
  });

  it("counts a charge acknowledged on its retry (its first commit wrote the row, then threw) in the app's GET /v1/balance", async () => {
    const app = await fundedApp();
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '100000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    const streamId = created.body.id as string;
    const before = await appBalance(app.apiKey);
    const restore = commitThenThrowOnce(t);
    try {
      await expect(t.sluice.streams.charge(streamId, { amountMsat: msat(5000n), ref: 'c1' })).rejects.toThrow();
    } finally {
      restore();
    }
    // The client retries with the same ref: the first answer, a charge that moved.
    const retried = await t.sluice.streams.charge(streamId, { amountMsat: msat(5000n), ref: 'c1' });
    expect(retried).toMatchObject({ ok: true, replayed: true });
    await sleep(600); // more than the sweep interval
    // GET /v1/balance sweeps what is due first: the acknowledged charge is in it.
    expect(await appBalance(app.apiKey)).toBe(before + 5000n);
  });

  it('closes with charges still committing and unswept: the payer gets back exactly what the acknowledged charges left, the app every charge once', async () => {
    const app = await fundedApp();
    const alice = t.sluice.devnet!.nodePubkey('alice');
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '0', max_charge_msat: '100000', settle_to_msat: '100000', settle_threshold_msat: '0', payout: { keysend: { pubkey: alice } } },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    const token = created.body.payer_token as string;
    const events = (await t.call('GET', `/v1/streams/${streamId}/events`, { key: token })).body.events;
    const invoice = events.find((e: { type: string }) => e.type === 'invoice');
    expect((await t.call('POST', '/v1/devnet/pay', { key: token, body: { payment_request: invoice.payment_request, wallet: 'bob' } })).status).toBe(200);
    for (let i = 0; i < 100 && (await t.sluice.streams.get(streamId, null))!.balanceMsat !== 100_000n; i += 1) await sleep(10);
    const appBefore = await appBalance(app.apiKey);
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    // A slow disk: the charges are still committing when the close comes.
    const store = t.sluice.streamMoney.store as { commit: CommitFn };
    const commit = store.commit.bind(store);
    store.commit = async (steps, now) => {
      await sleep(100);
      return commit(steps, now);
    };
    let results: Awaited<ReturnType<typeof t.sluice.streams.charge>>[];
    try {
      const charges = Array.from({ length: 40 }, (_, i) => t.sluice.streams.charge(streamId, { amountMsat: msat(3000n), ref: `c${i}` }));
      const closed = t.sluice.streams.close(streamId, 'payer');
      results = await Promise.all(charges);
      expect(await closed).toMatchObject({ ok: true });
    } finally {
      store.commit = commit;
    }
    const charged = BigInt(results.filter((r) => r.ok).length) * 3000n;
    expect(charged).toBe(99_000n); // 33 fit in 100,000
    for (let i = 0; i < 200 && t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore < 100_000n - charged; i += 1) await sleep(20);
    await sleep(300);
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(100_000n - charged);
    await t.sluice.streams.settleCharges();
    expect(balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!)).toBe(0n);
    const appGain = (await appBalance(app.apiKey)) - appBefore;
    // The app has every charge once, less at most the refund's routing fee.
    expect(appGain).toBeLessThanOrEqual(charged);
    expect(appGain).toBeGreaterThan(charged - 5000n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it("covers a reward with the charges the same stream submitted just before it (they are the app's money)", async () => {
    const app = await t.createApp(); // nothing in its balance but what this stream pays it
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '100000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    const streamId = created.body.id as string;
    const store = t.sluice.streamMoney.store as { commit: CommitFn };
    const commit = store.commit.bind(store);
    store.commit = async (steps, now) => {
      await sleep(100);
      return commit(steps, now);
    };
    try {
      const charged = t.sluice.streams.charge(streamId, { amountMsat: msat(10_000n), ref: 'c1' });
      const rewarded = t.sluice.streams.reward(streamId, { amountMsat: msat(5000n), ref: 'r1' });
      expect(await charged).toMatchObject({ ok: true });
      // The charge (seq before the reward's) paid the app 10,000: the reward of 5,000 is covered.
      const reward = await rewarded;
      expect(reward.ok ? 'ok' : reward.error).toBe('ok');
    } finally {
      store.commit = commit;
    }
  });
});
}

describe('money review 2: a refund while the sweeps fail, then a restart (sqlite)', () => {
  it('waits for the sweep before the refund and its fee advance, and returns the fee budget to the app after a restart', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-review2-'));
    let t = await startTestSluice({ dataDir });
    const app = await t.createApp();
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const alice = t.sluice.devnet!.nodePubkey('alice');
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '0', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0', payout: { keysend: { pubkey: alice } } },
    });
    const streamId = created.body.id as string;
    expect(await t.sluice.streams.reward(streamId, { amountMsat: msat(60_000n), ref: 'r1' })).toMatchObject({ ok: true });
    const appBefore = balanceOf((await t.sluice.ledger.getAccount(appAccountId(app.id)))!);
    const aliceBefore = t.sluice.devnet!.nodeBalanceMsat('alice');
    // The sweeps fail for a while (a busy database): the close's refund is sized without them.
    const store = t.sluice.streamMoney.store as { settle: (ids: readonly string[], now: number) => Promise<number> };
    const settle = store.settle.bind(store);
    let failSweeps = true;
    store.settle = async (ids, now) => {
      if (failSweeps) throw new Error('database is locked');
      return settle(ids, now);
    };
    expect(await t.sluice.streams.charge(streamId, { amountMsat: msat(10_000n), ref: 'c1' })).toMatchObject({ ok: true });
    // The refund is paid; saving its outcome commits and "the process dies" (nobody is told).
    const records = t.sluice.records;
    const finishPayment = records.finishPayment.bind(records);
    records.finishPayment = async (...args) => {
      await finishPayment(...args);
      records.finishPayment = finishPayment;
      throw new Error('crash: the outcome is durable, nobody was told');
    };
    expect(await t.sluice.streams.close(streamId, 'payer')).toMatchObject({ ok: true });
    // The refund (and the fee budget the app lends it) waits for the charge's sweep: a sweep
    // landing after the advance would hide the advance from the next load.
    await sleep(300);
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(0n);
    // The database is back: the clock's tick tries the refund again, after the sweep.
    failSweeps = false;
    for (let i = 0; i < 150 && t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore !== 50_000n; i += 1) await sleep(20);
    expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(50_000n);
    await sleep(300);
    await t.close();
    t = await startTestSluice({ dataDir });
    try {
      for (let i = 0; i < 50; i += 1) await sleep(20);
      await t.sluice.streams.settleCharges();
      const stream = (await t.sluice.ledger.getAccount(streamAccountId(streamId)))!;
      const routeFee = appBefore + 10_000n - balanceOf((await t.sluice.ledger.getAccount(appAccountId(app.id)))!);
      // alice got the 50,000 once; the stream holds nothing; the app has the charge, less only the route's fee.
      expect(t.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(50_000n);
      expect(balanceOf(stream)).toBe(0n);
      expect(routeFee).toBeGreaterThanOrEqual(0n);
      expect(routeFee).toBeLessThan(5_000n);
    } finally {
      await t.close();
    }
  });
});

describe.skipIf(!usePostgres)('money review 2: two processes on one PostgreSQL', () => {
  let a: TestSluice;
  let b: TestSluice;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_money_review_2_shared');
    a = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
    b = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await database?.drop();
  });

  it("answers GET /v1/balance from either process with every charge acknowledged so far (the ADR's exact read)", async () => {
    const app = await a.createApp();
    const created = await a.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '100000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    const before = BigInt((await b.call('GET', '/v1/balance', { key: app.apiKey })).body.balance_msat as string);
    expect(await a.sluice.streams.charge(streamId, { amountMsat: msat(7000n), ref: 'c1' })).toMatchObject({ ok: true });
    // Acknowledged by process a; the app reads its balance through process b (a load balancer's choice).
    const read = await b.call('GET', '/v1/balance', { key: app.apiKey });
    expect(BigInt(read.body.balance_msat as string)).toBe(before + 7000n);
  });

  it("pays a stream's charges once when both processes sweep it at the same time (the other's rescan)", async () => {
    const app = await a.createApp();
    const created = await a.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '10000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    const streamId = created.body.id as string;
    for (let round = 0; round < 5; round += 1) {
      const charges = await Promise.all(Array.from({ length: 20 }, (_, i) => a.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: `c${round}.${i}` })));
      expect(charges.every((c) => c.ok)).toBe(true);
      await Promise.all([
        a.sluice.streams.settleCharges(),
        b.sluice.streamMoney.store.settle([streamId], Date.now()),
        b.sluice.streamMoney.store.settle([streamId], Date.now()),
      ]);
    }
    expect(balanceOf((await a.sluice.ledger.getAccount(streamAccountId(streamId)))!)).toBe(-100_000n);
    expect(balanceOf((await a.sluice.ledger.getAccount(appAccountId(app.id)))!)).toBe(100_000n);
    expect(await b.sluice.streamMoney.store.unsettledMsat(streamId)).toBe(0n);
  });
});

describe('money review 2: a top-up credit told while a balance re-read runs (sqlite)', () => {
  it("counts a top-up once when the stream's balance is re-read between the credit's commit and its listener", async () => {
    const t = await startTestSluice();
    try {
      const app = await t.createApp();
      const created = await t.call('POST', '/v1/streams', {
        key: app.apiKey,
        body: { prices: { hit: '1000' }, maximum_msat: '10000', max_charge_msat: '100000', settle_to_msat: '50000', settle_threshold_msat: '0' },
      });
      const streamId = created.body.id as string;
      const token = created.body.payer_token as string;
      const events = (await t.call('GET', `/v1/streams/${streamId}/events`, { key: token })).body.events;
      const invoice = events.find((e: { type: string }) => e.type === 'invoice');
      // The credit commits; its listeners are told a little later (a slow sync, say).
      const records = t.sluice.records;
      const settleInvoice = records.settleInvoice.bind(records);
      records.settleInvoice = async (...args) => {
        const result = await settleInvoice(...args);
        await sleep(200);
        return result;
      };
      const paid = t.call('POST', '/v1/devnet/pay', { key: token, body: { payment_request: invoice.payment_request, wallet: 'bob' } });
      await sleep(80);
      // Meanwhile a charge's commit writes its row and throws: the stream's balance is re-read from the ledger.
      const restore = commitThenThrowOnce(t);
      try {
        await t.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: 'c1' }).catch(() => undefined);
      } finally {
        restore();
      }
      await sleep(50);
      await paid;
      await sleep(300);
      await t.sluice.streams.settleCharges();
      const ledgerBalance = balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!);
      expect(ledgerBalance).toBe(49_000n);
      // The payer's balance on the stream (which admits charges) is the ledger's, the top-up once.
      expect((await t.sluice.streams.get(streamId, null))!.balanceMsat).toBe(ledgerBalance);
    } finally {
      await t.close();
    }
  });
});

describe('money review 2: stop and start with charges not yet swept (sqlite)', () => {
  it('pays the app every acknowledged charge exactly once across a stop that could not sweep (as a crash) and the next start', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-review2-stop-'));
    // Sweeps would come only after a minute: the stop (and then the start) must make them.
    const env = { SLUICE_STREAM_SETTLE_INTERVAL_MS: '60000' };
    let t = await startTestSluice({ dataDir, env });
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: '100000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    const streamId = created.body.id as string;
    const charges = await Promise.all(Array.from({ length: 50 }, (_, i) => t.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: `a${i}` })));
    expect(charges.every((c) => c.ok)).toBe(true);
    // The process "dies" before any sweep: the stop's sweep moves nothing.
    (t.sluice.streamMoney.store as { settle: (ids: readonly string[], now: number) => Promise<number> }).settle = async () => 0;
    await t.close();
    t = await startTestSluice({ dataDir, env });
    try {
      const more = await Promise.all(Array.from({ length: 50 }, (_, i) => t.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: `b${i}` })));
      expect(more.every((c) => c.ok)).toBe(true);
      // Replays of the first run's refs move nothing.
      expect(await t.sluice.streams.charge(streamId, { amountMsat: msat(1000n), ref: 'a7' })).toMatchObject({ ok: true, replayed: true });
      const read = await t.call('GET', '/v1/balance', { key: app.apiKey });
      expect(BigInt(read.body.balance_msat as string)).toBe(100_000n);
      expect(balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!)).toBe(-100_000n);
      expect((await t.sluice.streams.get(streamId, null))!.balanceMsat).toBe(-100_000n);
    } finally {
      await t.close();
    }
  });
});
