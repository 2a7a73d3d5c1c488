// Review of ADR 0017 (stream money steps as rows, charges settled in sweeps): cases that
// lose or misplace money, each reproduced before it was reported.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { balanceOf } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import { streamAccountId } from '../../src/streams/service.js';
import type { MoneyOutcome, MoneyStep } from '../../src/streams/money-store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const dialect of ['sqlite', 'postgres'] as const) {
describe.skipIf(dialect === 'postgres' && !usePostgres)(`money review on ${dialect}: payouts and charges, sweeps the ledger refuses`, () => {
  let t: TestSluice;
  let database: TestDatabase | null = null;
  beforeAll(async () => {
    if (dialect === 'postgres') database = await createTestDatabase('sluice_money_review');
    t = await startTestSluice(database ? { env: { SLUICE_DATABASE_URL: database.url } } : {});
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  it('does not let a threshold payout take the balance a charge still committing was admitted against (payer past maximum_msat, sweep refused)', async () => {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', {
      prices: { hit: '1000' }, maximum_msat: '10000', settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000',
      payout: { keysend: { pubkey: t.sluice.devnet!.nodePubkey('alice') } },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    // A slow disk: each money commit takes 300 ms to be answered.
    const store = t.sluice.streamMoney.store as { commit: (steps: readonly MoneyStep[], now: number) => Promise<MoneyOutcome[]> };
    const commit = store.commit.bind(store);
    store.commit = async (steps, now) => {
      await sleep(300);
      return commit(steps, now);
    };
    try {
      const reward = await t.sluice.streams.reward(streamId, { amountMsat: msat(60_000n), ref: 'r1' });
      expect(reward.ok).toBe(true);
      // The reward started a threshold payout (60,000 past 50,000). In the same turn, a charge of
      // 70,000: 60,000 - 70,000 = -10,000, exactly the payer's limit, so it is admitted.
      const charged = t.sluice.streams.charge(streamId, { amountMsat: msat(70_000n), ref: 'c1' });
      const result = await charged;
      expect(result.ok).toBe(true);
      // The charge or the payout may win, never both.
      await sleep(500);
      // The acknowledged charge must reach the app: its sweep must not be refused by the ledger.
      const swept = await t.sluice.streams.settleCharges().then(() => 'ok', (error: unknown) => String(error));
      const view = await t.sluice.streams.get(streamId, null);
      const account = await t.sluice.ledger.getAccount(streamAccountId(streamId));
      expect(swept).toBe('ok');
      // And the ledger agrees with the stream: the acknowledged charge reached the app.
      expect(balanceOf(account!)).toBe(view!.balanceMsat);
    } finally {
      store.commit = commit;
    }
  });

  it("counts a payout's hold while the payout is in flight: a charge admitted then is acknowledged and never reaches the app", async () => {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const float = await asApp('POST', '/v1/invoices', { amount_msat: '1000000', description: 'float' });
    expect((await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const created = await asApp('POST', '/v1/streams', {
      prices: { hit: '1000' }, maximum_msat: '10000', settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000',
      payout: { keysend: { pubkey: t.sluice.devnet!.nodePubkey('alice') } },
    });
    const streamId = created.body.id as string;
    // The payout takes 600 ms to be answered (a slow route): its hold is in the ledger meanwhile.
    t.sluice.devnet!.faults.setLatencyMs(600);
    try {
      expect((await t.sluice.streams.reward(streamId, { amountMsat: msat(60_000n), ref: 'r1' })).ok).toBe(true);
      for (let i = 0; i < 100 && (await t.sluice.ledger.getAccount(streamAccountId(streamId)))!.debitsPendingMsat === 0n; i += 1) await sleep(5);
      const hold = (await t.sluice.ledger.getAccount(streamAccountId(streamId)))!.debitsPendingMsat;
      expect(hold).toBeGreaterThan(50_000n);
      // 60,000 on the stream, about 51,000 of it held by the payout: a charge of 70,000 would put
      // the payer at about -61,000, past the 10,000 limit. The ledger refused it before ADR 0017.
      const charge = await t.sluice.streams.charge(streamId, { amountMsat: msat(70_000n), ref: 'c1' });
      await sleep(800);
      const swept = await t.sluice.streams.settleCharges().then(() => 'ok', (error: unknown) => String(error));
      if (charge.ok) {
        // Acknowledged: the app must be paid for it.
        expect(swept).toBe('ok');
      } else {
        expect(charge).toMatchObject({ ok: false, error: 'LimitExceeded' });
      }
      const view = await t.sluice.streams.get(streamId, null);
      expect(view!.balanceMsat).toBeGreaterThanOrEqual(-10_000n);
    } finally {
      t.sluice.devnet!.faults.setLatencyMs(0);
    }
  });

  it("answers another app's GET /v1/balance when one stream's sweep is refused by the ledger", async () => {
    const appA = await t.createApp('a');
    const appB = await t.createApp('b');
    const created = await t.call('POST', '/v1/streams', { key: appA.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '10000' } });
    const streamId = created.body.id as string;
    // Rows and ledger disagreeing (as the payout races above leave them): a committed charge the
    // stream account's limit refuses when swept. Written straight to the group commit here.
    const row = await t.sluice.streams.get(streamId, null);
    const outcome = await t.sluice.streamMoney.submit({
      streamId, accountId: streamAccountId(streamId), appId: appA.id, seq: 1000, ref: 'c:bad', name: 'hit', amountMsat: msat(20_000n), at: Date.now(),
    });
    expect(outcome).toMatchObject({ kind: 'written', refused: null });
    expect(row).not.toBeNull();
    // The stream's own reads fail (logged, stays due) ...
    await t.sluice.streams.reward(streamId, { amountMsat: msat(1n), ref: 'r' }).catch(() => undefined);
    // ... but app B has nothing to do with that stream: its balance must still be answered.
    const balance = await t.call('GET', '/v1/balance', { key: appB.apiKey });
    expect(balance.status).toBe(200);
  });
});
}

// SQLite's two tiers under a random mix (charges, rewards, refusals, replays, sweeps of some
// streams only, reopens at any point of a handover to the archive): every row stays exactly once, every ref
// answers its first outcome, and the app is paid each charge exactly once.
describe('money review: sqlite tiers under a random mix of steps, sweeps and reopens', () => {
  for (const startSeed of [7, 42, 1234, 31337]) it(`keeps every row once and pays every charge once (seed ${startSeed})`, async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { openSqlite } = await import('../../src/db/sqlite.js');
    const { applyOpsInTransaction, createSqliteLedgerStore, migrateSqliteLedger } = await import('../../src/ledger/sqlite/store.js');
    const { createSqliteStreamMoneyStore } = await import('../../src/streams/money-store-sqlite.js');
    const { createSqliteStreamStore } = await import('../../src/streams/store.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-review-'));
    const file = path.join(dir, 'money.sqlite');
    const open = () => {
      const db = openSqlite({ path: file });
      migrateSqliteLedger(db);
      const ledger = createSqliteLedgerStore(db);
      const streamStore = createSqliteStreamStore(db);
      const money = createSqliteStreamMoneyStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now), { compactAt: 8 });
      return { db, ledger, money, streamStore };
    };
    let { db, ledger, money, streamStore } = open();
    const ids = ['s_a', 's_b', 's_c', 's_d'];
    await ledger.createAccount({ id: 'test:source', ownerId: 'system', limitMsat: null, code: 'test' });
    await ledger.createAccount({ id: 'app:app_r', ownerId: 'app_r', limitMsat: msat(0n), code: 'app' });
    await ledger.applyOps([{ kind: 'transfer', debitAccountId: 'test:source', creditAccountId: 'app:app_r', amountMsat: msat(1_000_000n), code: 'test' }]);
    for (const id of ids) {
      await ledger.createAccount({ id: `stream:${id}`, ownerId: 'app_r', limitMsat: msat(10n ** 12n), code: 'stream' });
      await streamStore.insertStream({
        id, appId: 'app_r', accountId: `stream:${id}`, payerTokenHash: `h-${id}`, prices: {}, rateMsatPerS: msat(0n), maximumMsat: msat(10n ** 12n),
        settleThresholdMsat: msat(0n), settleToMsat: msat(0n), maxChargeMsat: msat(10n ** 12n), payoutThresholdMsat: msat(0n), expiresAt: null,
        payoutDestination: null, status: 'open', meter: 'stopped', meterSegment: 0, meterSegmentStartedAt: null, meterSecondsCharged: 0,
        metadata: '', createdAt: 1, closedAt: null, moneyRows: true,
      }, { streamId: id, seq: 1, type: 'created', data: {}, at: 1 });
    }
    let seed = startSeed;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor(seed / 65536) % n;
    };
    const seqs = new Map(ids.map((id) => [id, 1]));
    /** ref -> first outcome, per stream */
    const firsts = new Map<string, { seq: number; amount: bigint; refused: boolean; reward: boolean }>();
    let chargesTotal = 0n;
    let rewardsTotal = 0n;
    for (let round = 0; round < 150; round += 1) {
      const steps: MoneyStep[] = [];
      const n = 1 + rand(6);
      for (let i = 0; i < n; i += 1) {
        const id = ids[rand(ids.length)] as string;
        const seq = (seqs.get(id) as number) + 1;
        seqs.set(id, seq);
        const known = [...firsts.keys()].filter((k) => k.startsWith(`${id}/`));
        const replay = known.length > 0 && rand(4) === 0 ? (known[rand(known.length)] as string) : null;
        if (replay) {
          const first = firsts.get(replay)!;
          steps.push({ streamId: id, accountId: `stream:${id}`, appId: 'app_r', seq, ref: replay.slice(id.length + 1), name: first.reward ? 'reward' : 'hit', amountMsat: msat(first.amount), at: seq });
          continue;
        }
        const kind = rand(10);
        const reward = kind === 0;
        const refused = kind === 1;
        const amount = BigInt(1 + rand(100));
        const ref = `${reward ? 'r:' : 'c:'}${round}-${i}`;
        steps.push({ streamId: id, accountId: `stream:${id}`, appId: 'app_r', seq, ref, name: reward ? 'reward' : 'hit', amountMsat: msat(amount), at: seq, ...(refused ? { refused: 'LimitExceeded' as const } : {}) });
      }
      const outcomes = await money.commit(steps, round);
      outcomes.forEach((outcome, i) => {
        const step = steps[i]!;
        const key = `${step.streamId}/${step.ref}`;
        if (outcome.kind === 'written') {
          expect(firsts.has(key)).toBe(false);
          firsts.set(key, { seq: step.seq, amount: step.amountMsat, refused: outcome.refused !== null, reward: step.ref.startsWith('r:') });
          if (outcome.refused === null) {
            if (step.ref.startsWith('r:')) rewardsTotal += step.amountMsat;
            else chargesTotal += step.amountMsat;
          }
        } else {
          const first = firsts.get(key);
          expect(first, key).toBeDefined();
          expect(outcome.first.seq).toBe(first!.seq);
          expect(outcome.first.refused !== null).toBe(first!.refused);
        }
      });
      if (rand(3) === 0) await money.settle(ids.filter(() => rand(3) !== 0), round);
      if (rand(9) === 0) {
        db.close();
        ({ db, ledger, money, streamStore } = open());
      }
    }
    db.close();
    ({ db, ledger, money, streamStore } = open());
    await money.settle(ids, 10_000);
    expect(await money.listUnsettled()).toEqual([]);
    const appBalance = balanceOf((await ledger.getAccount('app:app_r'))!);
    expect(appBalance).toBe(1_000_000n + chargesTotal - rewardsTotal);
    for (const id of ids) {
      const rows = await money.listBetween(id, 0, 1_000_000, 1_000_000);
      const expected = [...firsts.entries()].filter(([k]) => k.startsWith(`${id}/`)).map(([, v]) => v.seq).sort((a, b) => a - b);
      expect(rows.map((r) => r.seq)).toEqual(expected);
      for (const [key, first] of firsts) {
        if (!key.startsWith(`${id}/`)) continue;
        expect((await money.findByRef(id, key.slice(id.length + 1)))?.seq).toBe(first.seq);
      }
    }
    expect(await ledger.sumOfBalances()).toBe(0n);
    // The archive did take generations: rows reached its file.
    await money.archived();
    const archived = openSqlite({ path: path.join(dir, 'money.money.sqlite') });
    expect(Number((archived.prepare('SELECT COUNT(*) AS n FROM stream_money').get() as { n: bigint }).n)).toBeGreaterThan(0);
    archived.close();
    money.close();
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
