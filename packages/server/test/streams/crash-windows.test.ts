// Streams across a crash that falls between two durable steps of different modules: what one
// module committed (an invoice's credit, a payout's outcome) reaches the stream at the next
// start, to the msat and once. The crash is played by making the step after the commit throw,
// then starting a new Sluice on the same data. Each case failed before its fix.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const usePostgres = await postgresAvailable();

type Event = { type: string; amount_msat?: string; fee_msat?: string; payment_hash?: string; reason?: string; payment_request?: string };
type Place = { dataDir: string; env: Record<string, string> };

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`streams across a crash window on ${store}`, () => {
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
  const newPlace = async (): Promise<Place> => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-stream-crash-window-'));
    database = store === 'postgres' ? await createTestDatabase('sluice_stream_crash_window') : null;
    return { dataDir, env: database ? { SLUICE_DATABASE_URL: database.url } : {} };
  };
  const restart = async (place: Place): Promise<TestSluice> => {
    await t?.close();
    t = await startTestSluice(place);
    return t;
  };
  /** An app with 1,000,000 msat (it lends the refund's routing-fee budget). */
  const fundedApp = async (s: TestSluice) => {
    const app = await s.createApp();
    const float = await s.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '1000000', description: 'float' } });
    expect((await s.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    return app;
  };
  const helpers = (apiKey: string, streamId: string) => ({
    asApp: (method: string, url: string, body?: unknown) => t!.call(method, url, { key: apiKey, ...(body === undefined ? {} : { body }) }),
    events: async () => (await t!.call('GET', `/v1/streams/${streamId}/events`, { key: apiKey })).body.events as Event[],
    accountBalance: async () => {
      const account = await t!.sluice.ledger.getAccount(`stream:${streamId}`);
      return account ? account.creditsPostedMsat - account.debitsPostedMsat : null;
    },
  });

  /** Runs `then` inside each invoice settlement, once its credit committed: before the invoice service tells anyone. */
  const afterCreditCommits = (s: TestSluice, then: (result: Awaited<ReturnType<TestSluice['sluice']['records']['settleInvoice']>>) => Promise<void>): void => {
    const records = s.sluice.records;
    const settleInvoice = records.settleInvoice.bind(records);
    records.settleInvoice = async (...args) => {
      const result = await settleInvoice(...args);
      await then(result);
      return result;
    };
  };
  /** The credit commits and the process dies before anyone is told. */
  const crashAfterCredit = (s: TestSluice): void => afterCreditCommits(s, async (result) => {
    if (result.ok) throw new Error('crash: the credit is durable, nobody was told');
  });

  it('pays back a late top-up credited to a settled closed stream just before a crash, once', async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await fundedApp(first);
    const alice = first.sluice.devnet!.nodePubkey('alice');
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '100000', payout: { keysend: { pubkey: alice } } },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    expect(invoice?.payment_request).toBeDefined();
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    // Nothing to pay back: this start's sweep marks the stream settled.
    const second = await restart(place);
    const aliceBefore = second.sluice.devnet!.nodeBalanceMsat('alice');

    // The old top-up invoice is paid; the credit commits and the process dies before anyone is told.
    crashAfterCredit(second);
    await second.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    await waitFor('the credit', async () => (await accountBalance()) === 100000n);
    // (Reading the events loads the evicted stream, and that load may record the funding
    // already: unrecordedFundings. Either way it is recorded once, below.)

    // The next start pays the top-up back to alice, and the funding is recorded.
    const third = await restart(place);
    await waitFor('the top-up to be paid back', async () => (await accountBalance()) === 0n);
    await waitFor('the settled event', async () => (await events()).some((e) => e.type === 'settled'));
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(100000n);
    expect((await events()).filter((e) => e.type === 'funded')).toEqual([expect.objectContaining({ amount_msat: '100000', payment_hash: invoice?.payment_hash })]);

    // And only once: a later start finds nothing to pay.
    const fourth = await restart(place);
    await settle();
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect((await events()).filter((e) => e.type === 'funded')).toHaveLength(1);
    expect(fourth.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(100000n);
    expect(await accountBalance()).toBe(0n);
    expect(await fourth.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it("records a top-up's payment credited to an open stream just before a crash at the next start, once, and the payer can spend it", async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await first.createApp();
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '0', settle_to_msat: '50000' },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    expect(invoice?.payment_request).toBeDefined();
    // Prepaid and not paid yet: a charge is refused.
    expect((await asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref: 'before' })).body.error?.code).toBe('stream_limit_exceeded');

    crashAfterCredit(first);
    await first.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    await waitFor('the credit', async () => (await accountBalance()) === 50000n);
    await settle();
    expect((await events()).some((e) => e.type === 'funded')).toBe(false);

    // The next start loads the open stream and records the funding, with the balance it brought.
    await restart(place);
    await waitFor('the funded event', async () => (await events()).some((e) => e.type === 'funded'));
    expect((await events()).filter((e) => e.type === 'funded')).toEqual([
      expect.objectContaining({ amount_msat: '50000', payment_hash: invoice?.payment_hash, balance_msat: '50000' }),
    ]);
    const charged = await asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref: 'after' });
    expect(charged.status).toBe(200);
    expect(charged.body.balance_msat).toBe('49000');

    // A later start finds it recorded.
    await restart(place);
    await settle();
    expect((await events()).filter((e) => e.type === 'funded')).toHaveLength(1);
    const balance = await asApp('GET', `/v1/streams/${streamId}`);
    expect(balance.body.balance_msat).toBe('49000');
  }, 30_000);

  it('records a late top-up once when a load of the closed stream finds it paid before the invoice service tells it', async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await fundedApp(first);
    const alice = first.sluice.devnet!.nodePubkey('alice');
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '100000', payout: { keysend: { pubkey: alice } } },
    });
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    const second = await restart(place);
    const aliceBefore = second.sluice.devnet!.nodeBalanceMsat('alice');
    // The credit commits; before the listener hears of it, a read loads the (evicted) stream,
    // which finds the invoice paid and records it.
    afterCreditCommits(second, async () => {
      expect((await asApp('GET', `/v1/streams/${streamId}`)).status).toBe(200);
    });
    await second.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    await waitFor('the top-up to be paid back', async () => (await accountBalance()) === 0n);
    await waitFor('the settled event', async () => (await events()).some((e) => e.type === 'settled'));
    await settle();
    expect((await events()).filter((e) => e.type === 'funded')).toHaveLength(1);
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect(second.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(100000n);
  }, 30_000);

  it('counts a late top-up once in a closed stream\'s balance when a load between the credit and the listener read the balance with it', async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await first.createApp();
    // No payout destination: the late top-up stays on the stream, where its balance shows.
    const created = await first.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '100000' } });
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    const second = await restart(place);
    // The credit commits; before the listener hears of it, a subscriber loads the (evicted)
    // stream and keeps it in memory. That load read the invoice just before the credit (still
    // open) and the ledger just after it (the balance holds it).
    const records = second.sluice.records;
    const listPaidInvoices = records.listPaidInvoices.bind(records);
    let unsubscribe: (() => void) | null = null;
    afterCreditCommits(second, async () => {
      records.listPaidInvoices = async (hashes) => (await listPaidInvoices(hashes)).filter((row) => row.paymentHash !== invoice?.payment_hash);
      unsubscribe = second.sluice.streams.subscribe(streamId, () => undefined);
      expect((await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat).toBe('100000');
      records.listPaidInvoices = listPaidInvoices;
    });
    await second.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    await waitFor('the funded event', async () => (await events()).some((e) => e.type === 'funded'));
    await settle();
    expect(await accountBalance()).toBe(100000n);
    expect((await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat).toBe('100000');
    expect((await events()).filter((e) => e.type === 'funded')).toEqual([expect.objectContaining({ amount_msat: '100000', balance_msat: '100000' })]);
    (unsubscribe as (() => void) | null)?.();
  }, 30_000);

  it('records top-ups found paid and unrecorded at load in the order they were paid, ties in the order the log announced them', async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await first.createApp();
    // No payout destination: the late top-ups stay on the stream. A debt limit lets a charge
    // go through unfunded, and each start's first charge asks for a top-up again: three
    // announced (A, B, C), none paid.
    const created = await first.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '10000', settle_to_msat: '100000' } });
    const streamId = created.body.id as string;
    const { asApp, events } = helpers(app.apiKey, streamId);
    for (const ref of ['h1', 'h2']) {
      await restart(place);
      expect((await asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref })).status).toBe(200);
      await waitFor('the next top-up', async () => (await events()).filter((e) => e.type === 'invoice').length === Number(ref[1]) + 1);
    }
    const [a, b, c] = (await events()).filter((e) => e.type === 'invoice');
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);

    // Paid C, B, A, each credit committed and the process dying before anyone is told; A is
    // paid at the same time as B (its paid_at made B's).
    const s = await restart(place);
    const records = s.sluice.records;
    const settleInvoice = records.settleInvoice.bind(records);
    let paidAtOfB: number | null = null;
    records.settleInvoice = async (hash, paid, credit) => {
      const result = await settleInvoice(hash, hash === a?.payment_hash && paidAtOfB !== null ? { ...paid, paidAt: paidAtOfB } : paid, credit);
      if (result.ok && hash === b?.payment_hash) paidAtOfB = result.invoice.paidAt;
      if (result.ok) throw new Error('crash: the credit is durable, nobody was told');
      return result;
    };
    for (const invoice of [c, b, a]) {
      await s.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
      await waitFor('the credit', async () => (await records.getInvoice(invoice!.payment_hash!))?.status === 'paid');
      await settle();
    }
    const paidAt = async (invoice: Event | undefined) => (await records.getInvoice(invoice!.payment_hash!))?.paidAt ?? 0;
    expect(await paidAt(c)).toBeLessThan(await paidAt(b));
    expect(await paidAt(a)).toBe(await paidAt(b));

    // The closed stream left memory, so nobody recorded them. The records answer in any order:
    // here the log's, backwards. The load that reading the events makes records the three.
    expect(s.sluice.streams.liveStreams()).toBe(0);
    const listPaidInvoices = records.listPaidInvoices.bind(records);
    const announced = [a, b, c].map((invoice) => invoice?.payment_hash);
    records.listPaidInvoices = async (hashes) => (await listPaidInvoices(hashes)).sort((x, y) => announced.indexOf(y.paymentHash) - announced.indexOf(x.paymentHash));
    await waitFor('the funded events', async () => (await events()).filter((e) => e.type === 'funded').length === 3);
    expect((await events()).filter((e) => e.type === 'funded').map((e) => e.payment_hash)).toEqual([c, a, b].map((invoice) => invoice?.payment_hash));
  }, 30_000);

  it('counts a top-up once, and asks for the next, when two credit attempts of the payment overlap on an open stream', async () => {
    const place = await newPlace();
    const s = await restart(place);
    const app = await s.createApp();
    const created = await s.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, settle_to_msat: '100000', settle_threshold_msat: '50000' } });
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const invoice = (await events()).find((e) => e.type === 'invoice');
    // Attempt A (the devnet's pay) credits; attempt B (as the watcher would) runs beside it,
    // finds the invoice paid (AlreadyPaid) and ends before A's listener is told.
    const records = s.sluice.records;
    const settleInvoice = records.settleInvoice.bind(records);
    let calls = 0;
    let reachedB!: () => void;
    const bAtSettle = new Promise<void>((resolve) => (reachedB = resolve));
    let releaseB!: () => void;
    const bGate = new Promise<void>((resolve) => (releaseB = resolve));
    records.settleInvoice = async (hash, paid, credit) => {
      calls += 1;
      if (calls === 1) {
        const attemptB = s.sluice.invoices.handleSettled({ paymentHash: hash, amountPaidMsat: paid.amountPaidMsat, settledAt: paid.paidAt, settleIndex: '0', state: 'settled' } as never);
        await bAtSettle;
        const result = await settleInvoice(hash, paid, credit);
        releaseB();
        await attemptB;
        return result;
      }
      if (calls === 2) {
        reachedB();
        await bGate;
      }
      return settleInvoice(hash, paid, credit);
    };
    await s.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.payment_request, wallet: 'carol' } });
    await waitFor('the funded event', async () => (await events()).some((e) => e.type === 'funded'));
    expect(calls).toBeGreaterThanOrEqual(2); // and the watcher may see it too
    expect(await accountBalance()).toBe(100000n);
    expect((await asApp('GET', `/v1/streams/${streamId}`)).body.balance_msat).toBe('100000');
    // Spent under the threshold: the next top-up is asked for (the paid one is not awaited any more).
    for (let i = 0; i < 60; i += 1) expect((await asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref: `h${i}` })).status).toBe(200);
    await waitFor('the next top-up', async () => (await events()).filter((e) => e.type === 'invoice').length >= 2);
    await settle();
    // One: a charge while it was being created asked for no second (two were asked for on PostgreSQL).
    expect((await events()).filter((e) => e.type === 'invoice')).toHaveLength(2);
    expect((await events()).filter((e) => e.type === 'funded')).toHaveLength(1);
  }, 30_000);

  /**
   * Makes the payments service's save of an outcome commit and then throw: the process dies
   * before any stream is told. Returns the function that puts the store's own save back (the
   * process goes on as a new one would).
   */
  const crashAfterOutcomeSaved = (s: TestSluice): (() => void) => {
    const records = s.sluice.records;
    const finishPayment = records.finishPayment.bind(records);
    records.finishPayment = async (...args) => {
      await finishPayment(...args);
      throw new Error('crash: the outcome is durable, nobody was told');
    };
    return () => {
      records.finishPayment = finishPayment;
    };
  };

  /**
   * A stream whose threshold payout to alice is answered inside pay() (so no payout_requested
   * is ever recorded) and whose outcome is saved just before a crash, then `chargesAfter`
   * charges committed and swept after it. The process goes on as a new one would.
   */
  const lostThresholdPayout = async (first: TestSluice, options: { chargesAfter: number; maximumMsat?: string }) => {
    const app = await fundedApp(first);
    const alice = first.sluice.devnet!.nodePubkey('alice');
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, maximum_msat: options.maximumMsat ?? '0', settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000', payout: { keysend: { pubkey: alice } } },
    });
    const streamId = created.body.id as string;
    const streamHelpers = helpers(app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    const recovered = crashAfterOutcomeSaved(first);
    expect((await streamHelpers.asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    await waitFor('the payout to reach alice', async () => first.sluice.devnet!.nodeBalanceMsat('alice') > aliceBefore);
    recovered();
    const [payout] = await first.sluice.payments.listPayments(app.id, 10);
    expect(payout).toMatchObject({ status: 'succeeded', amountMsat: first.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore });
    for (let i = 0; i < options.chargesAfter; i += 1) expect((await streamHelpers.asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref: `h${i}` })).status).toBe(200);
    await first.sluice.streams.settleCharges();
    await settle();
    return { app, streamId, aliceBefore, payout: payout!, ...streamHelpers };
  };

  it("records a payout's outcome saved just before a crash at the next start, once", async () => {
    const place = await newPlace();
    const first = await restart(place);
    await first.sluice.payments.stop(); // outcomes only when the test reconciles
    const app = await fundedApp(first);
    const alice = first.sluice.devnet!.nodePubkey('alice');
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, settle_to_msat: '0', settle_threshold_msat: '0', payout_threshold_msat: '50000', max_charge_msat: '100000', payout: { keysend: { pubkey: alice } } },
    });
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    // The threshold payout reaches alice unheard (in flight); reconciled, its outcome is saved and the process dies.
    first.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    await waitFor('the payout to be sent', async () => (await events()).some((e) => e.type === 'payout_requested'));
    crashAfterOutcomeSaved(first);
    await first.sluice.payments.reconcileInFlight();
    await settle();
    expect((await events()).some((e) => e.type === 'settled')).toBe(false);
    const paid = first.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore;
    expect(paid).toBeGreaterThan(0n);

    await restart(place);
    await waitFor('the settled event', async () => (await events()).some((e) => e.type === 'settled'));
    const payoutHash = (await events()).find((e) => e.type === 'payout_requested')?.payment_hash;
    expect((await events()).find((e) => e.type === 'settled')).toMatchObject({ amount_msat: paid.toString(), payment_hash: payoutHash });

    const third = await restart(place);
    await third.sluice.streams.get(streamId, null);
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect(await accountBalance()).toBe(60000n - paid - BigInt((await events()).find((e) => e.type === 'settled')?.fee_msat ?? '0'));
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(paid);
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it("records a payout answered before pay() returned and saved just before a crash at the next start, once, when charges committed after it", async () => {
    const place = await newPlace();
    const first = await restart(place);
    // Charges commit after the lost payout and are swept to the app: its transfer is no longer
    // among those after the stream's newest money step.
    const { streamId, events, accountBalance, aliceBefore, payout } = await lostThresholdPayout(first, { chargesAfter: 3 });
    const paid = payout.amountMsat;
    expect((await events()).some((e) => e.type === 'settled' || e.type === 'payout_requested')).toBe(false);

    await restart(place);
    await waitFor('the settled event', async () => (await events()).some((e) => e.type === 'settled'));
    expect((await events()).filter((e) => e.type === 'settled')).toEqual([
      expect.objectContaining({ amount_msat: paid.toString(), fee_msat: (payout.feeMsat ?? 0n).toString(), payment_hash: payout.paymentHash }),
    ]);

    const third = await restart(place);
    await third.sluice.streams.get(streamId, null);
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect(await accountBalance()).toBe(60000n - paid - (payout.feeMsat ?? 0n) - 3000n);
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(paid);
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  // The old payout's transfer is older than the newest money step (charges after it), or not
  // (none: it is among the transfers the loan's walk reads), on a prepaid stream or a postpaid one
  // (where the ledger would let an early return of the loan through).
  it.each([
    { chargesAfter: 3, maximumMsat: '0' },
    { chargesAfter: 0, maximumMsat: '1000000' },
  ])("returns a closed stream's refund fee budget once, when its refund resolves, though the load first records an older payout's lost outcome ($chargesAfter charges after it, maximum $maximumMsat)", async ({ chargesAfter, maximumMsat }) => {
    const place = await newPlace();
    const first = await restart(place);
    const { app, streamId, asApp, events, accountBalance, aliceBefore, payout: old } = await lostThresholdPayout(first, { chargesAfter, maximumMsat });
    const appBalance = async () => {
      const account = await t!.sluice.ledger.getAccount(`app:${app.id}`);
      return account!.creditsPostedMsat - account!.debitsPostedMsat;
    };
    const streamTransfers = async (code: string) => (await t!.sluice.ledger.listTransfers({ accountId: `stream:${streamId}`, limit: 1000 })).filter((transfer) => transfer.code === code);
    expect(old.feeMsat).toBeGreaterThan(0n);
    const payerBalance = await accountBalance();
    expect(payerBalance).toBe(60000n - old.amountMsat - old.feeMsat! - BigInt(chargesAfter) * 1000n);

    // The close's refund goes out with a fee budget the app lends it, and stays pending across the restart.
    await first.sluice.payments.stop();
    first.sluice.devnet!.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'alice' });
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    await waitFor('the refund to be sent', async () => (await events()).some((e) => e.type === 'payout_requested'));
    const [loan] = await streamTransfers('refund_fee_advance');
    expect(loan).toBeDefined();
    const appBefore = await appBalance();
    expect((await events()).some((e) => e.type === 'settled')).toBe(false);

    // The restart's sweep loads the closed stream, telling the old payout, before payments reconcile the refund.
    await restart(place);
    const refundHash = (await events()).find((e) => e.type === 'payout_requested')?.payment_hash;
    await waitFor('both settled events', async () => (await events()).filter((e) => e.type === 'settled').length >= 2);
    await settle();
    const refund = (await t!.sluice.payments.listPayments(app.id, 10)).find((payment) => payment.paymentHash === refundHash);
    expect(refund).toMatchObject({ status: 'succeeded', amountMsat: payerBalance });
    // The loan came back once, less the refund's own fee; the payer got every msat of theirs, and nothing more.
    expect((await streamTransfers('refund_fee_return')).map((transfer) => transfer.amountMsat)).toEqual([loan!.amountMsat - refund!.feeMsat!]);
    expect(await appBalance()).toBe(appBefore + loan!.amountMsat - refund!.feeMsat!);
    expect(await accountBalance()).toBe(0n);
    expect(t!.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(old.amountMsat + payerBalance!);
    // Each payout's settled once, the old one's too.
    expect((await events()).filter((e) => e.type === 'settled').map((e) => e.payment_hash)).toEqual([old.paymentHash, refundHash]);

    const third = await restart(place);
    await third.sluice.streams.get(streamId, null);
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(2);
    expect(await streamTransfers('refund_fee_return')).toHaveLength(1);
    expect(await appBalance()).toBe(appBefore + loan!.amountMsat - refund!.feeMsat!);
    expect(await accountBalance()).toBe(0n);
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(old.amountMsat + payerBalance!);
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it("records a close's refund answered before pay() returned and saved just before a crash, once, and pays nothing more", async () => {
    const place = await newPlace();
    const first = await restart(place);
    const app = await fundedApp(first);
    const alice = first.sluice.devnet!.nodePubkey('alice');
    const created = await first.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { prices: { hit: '1000' }, settle_to_msat: '0', settle_threshold_msat: '0', max_charge_msat: '100000', payout: { keysend: { pubkey: alice } } },
    });
    const streamId = created.body.id as string;
    const { asApp, events, accountBalance } = helpers(app.apiKey, streamId);
    const aliceBefore = first.sluice.devnet!.nodeBalanceMsat('alice');
    expect((await asApp('POST', `/v1/streams/${streamId}/reward`, { amount_msat: '60000', ref: 'r1' })).status).toBe(200);
    // The refund at close succeeds at once; saving that outcome commits and the process dies.
    crashAfterOutcomeSaved(first);
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    await waitFor('the refund to reach alice', async () => first.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore === 60000n);
    await settle();
    expect((await events()).some((e) => e.type === 'settled' || e.type === 'payout_requested')).toBe(false);

    await restart(place);
    await waitFor('the settled event', async () => (await events()).some((e) => e.type === 'settled'));
    expect((await events()).find((e) => e.type === 'settled')).toMatchObject({ amount_msat: '60000' });

    const third = await restart(place);
    await third.sluice.streams.get(streamId, null);
    await settle();
    expect((await events()).filter((e) => e.type === 'settled')).toHaveLength(1);
    expect(await accountBalance()).toBe(0n);
    expect(third.sluice.devnet!.nodeBalanceMsat('alice') - aliceBefore).toBe(60000n);
    expect(await third.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);
});
}
