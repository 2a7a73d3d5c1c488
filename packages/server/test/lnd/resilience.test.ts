/**
 * What the lnd backend does when the link to LND breaks, end to end: the lnd backend ->
 * the LND stand-in -> the devnet node `sluice`, with `alice` paying and `bob` paid.
 * Payments never reject and never guess: a payment whose end we did not hear is
 * `unknown`, and lookupPayment (TrackPaymentV2) later tells the truth. The invoice watch
 * resumes from its settle index: no settlement missed, none handed over twice.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CreatedInvoice, PaymentFailureReason, PaymentLookup, SettledInvoice } from '../../src/lightning/backend.js';
import { msat } from '../../src/money/msat.js';
import { eventually, openLndOverDevnet, type LndOverDevnet } from './support.js';

const FEE_LIMIT = msat(10_000);

describe('lnd backend when the link to LND breaks', () => {
  let setup: LndOverDevnet;

  beforeEach(async () => {
    setup = await openLndOverDevnet('lnd-resilience');
  });
  afterEach(async () => {
    await setup.close();
  });

  const payFromAlice = async (invoice: CreatedInvoice) => {
    const outcome = await setup.devnet.backendFor('alice').payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(outcome.status).toBe('succeeded');
  };
  const bobInvoice = (amount: number) => setup.devnet.backendFor('bob').createInvoice({ amountMsat: msat(amount), description: 'bob', expiryS: 600 });

  /** lookupPayment until the payment is no longer in flight (the devnet finishes it promptly). */
  async function settledLookup(paymentHash: string): Promise<PaymentLookup> {
    let lookup = await setup.lnd.lookupPayment(paymentHash);
    for (let attempt = 0; lookup.status === 'unknown' && attempt < 200; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      lookup = await setup.lnd.lookupPayment(paymentHash);
    }
    return lookup;
  }

  it('the invoice watch resumes after dropped connections and an outage: no settlement missed, none repeated', async () => {
    const { lnd, standin } = setup;
    const invoices: CreatedInvoice[] = [];
    for (let index = 0; index < 7; index += 1) {
      invoices.push(await lnd.createInvoice({ amountMsat: msat(1_000 + index), description: `resume ${index}`, expiryS: 600 }));
    }
    const seen: SettledInvoice[] = [];
    const errors: unknown[] = [];
    const watch = lnd.watchInvoices({
      afterSettleIndex: '0',
      onSettled: async (invoice) => void seen.push(invoice),
      onError: (error) => void errors.push(error),
    });
    try {
      await payFromAlice(invoices[0] as CreatedInvoice);
      await eventually(() => seen.length === 1);

      // Down: the stream is cut and reconnecting fails while two invoices are paid.
      standin.setOutage(true);
      standin.dropStreams();
      await payFromAlice(invoices[1] as CreatedInvoice);
      await payFromAlice(invoices[2] as CreatedInvoice);
      await eventually(() => errors.length >= 2);
      standin.setOutage(false);
      await eventually(() => seen.length === 3);

      // Cut right after each payment, while the settlement may be on the wire, and wait
      // for the watch to subscribe again before the next one.
      const subscriptions = () => standin.requests.filter((request) => request.operationId === 'Lightning_SubscribeInvoices').length;
      for (const invoice of invoices.slice(3, 6)) {
        const before = subscriptions();
        await payFromAlice(invoice);
        standin.dropStreams();
        await eventually(() => subscriptions() > before && standin.openSubscriptionCount() === 1);
      }
      await eventually(() => seen.length === 6);

      // Still live after all that, and the last one is the only new one.
      await payFromAlice(invoices[6] as CreatedInvoice);
      await eventually(() => seen.length === 7);

      expect(seen.map((invoice) => invoice.paymentHash)).toEqual(invoices.map((invoice) => invoice.paymentHash));
      expect(seen.map((invoice) => invoice.amountPaidMsat)).toEqual(invoices.map((invoice) => invoice.amountMsat));
      const indexes = seen.map((invoice) => BigInt(invoice.settleIndex));
      for (let index = 1; index < indexes.length; index += 1) expect(indexes[index]! > indexes[index - 1]!).toBe(true);
      expect(errors.length).toBeGreaterThanOrEqual(5);
    } finally {
      await watch.stop();
    }
    expect(seen).toHaveLength(7);
  });

  it('a watch from settle index 0 first hands over what was settled before it started, in order', async () => {
    const { lnd } = setup;
    const before = [await lnd.createInvoice({ amountMsat: msat(2_001), description: 'a', expiryS: 600 }), await lnd.createInvoice({ amountMsat: msat(2_002), description: 'b', expiryS: 600 })];
    await payFromAlice(before[1] as CreatedInvoice);
    await payFromAlice(before[0] as CreatedInvoice);
    const seen: string[] = [];
    const watch = lnd.watchInvoices({ afterSettleIndex: '0', onSettled: async (invoice) => void seen.push(invoice.paymentHash) });
    try {
      await eventually(() => seen.length === 2);
      // Settle order, not creation order.
      expect(seen).toEqual([before[1]?.paymentHash, before[0]?.paymentHash]);
      const after = await lnd.createInvoice({ amountMsat: msat(2_003), description: 'c', expiryS: 600 });
      await payFromAlice(after);
      await eventually(() => seen.length === 3);
      expect(seen[2]).toBe(after.paymentHash);
    } finally {
      await watch.stop();
    }
  });

  it('a settlement landing before LND registers the first live subscription is found by listing again (nothing settled before)', async () => {
    const { lnd, standin } = setup;
    const invoice = await lnd.createInvoice({ amountMsat: msat(2_500), description: 'in the gap', expiryS: 600 });
    const release = standin.holdNextSubscription();
    const seen: string[] = [];
    const subscriptions = () => standin.requests.filter((request) => request.operationId === 'Lightning_SubscribeInvoices').length;
    const watch = lnd.watchInvoices({ afterSettleIndex: '0', onSettled: async (settled) => void seen.push(settled.paymentHash) });
    try {
      // The listing found nothing; the subscription is asked for but not registered yet.
      await eventually(() => subscriptions() === 1);
      await payFromAlice(invoice);
      release();
      await eventually(() => seen.length === 1);
      expect(seen).toEqual([invoice.paymentHash]);
    } finally {
      await watch.stop();
    }
  });

  it('a handler that throws gets the same settlement again, and the watch moves on once it is handled', async () => {
    const { lnd } = setup;
    const invoice = await lnd.createInvoice({ amountMsat: msat(3_000), description: 'retry', expiryS: 600 });
    let attempts = 0;
    const handled: string[] = [];
    const watch = lnd.watchInvoices({
      afterSettleIndex: '0',
      onSettled: async (settled) => {
        attempts += 1;
        if (attempts === 1) throw new Error('database busy');
        handled.push(settled.paymentHash);
      },
    });
    try {
      await payFromAlice(invoice);
      await eventually(() => handled.length === 1);
      expect(handled).toEqual([invoice.paymentHash]);
      expect(attempts).toBe(2);
    } finally {
      await watch.stop();
    }
  });

  it('payInvoice during an outage is unknown, and lookupPayment later says it was never sent', async () => {
    const invoice = await bobInvoice(5_000);
    setup.standin.setOutage(true);
    const outcome = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash });
    setup.standin.setOutage(false);
    expect(await setup.lnd.lookupPayment(invoice.paymentHash)).toEqual({ status: 'not_found', paymentHash: invoice.paymentHash });
    expect((await setup.devnet.backendFor('bob').lookupInvoice(invoice.paymentHash))?.state).toBe('open');
  });

  it('keysend during an outage is unknown, and lookupPayment later says it was never sent', async () => {
    setup.standin.setOutage(true);
    const preimage = 'ee'.repeat(32);
    const outcome = await setup.lnd.keysend({ destinationPubkey: setup.devnet.nodePubkey('bob'), amountMsat: msat(1_000), feeLimitMsat: FEE_LIMIT, timeoutS: 5, preimage });
    expect(outcome.status).toBe('unknown');
    setup.standin.setOutage(false);
    expect(await setup.lnd.lookupPayment(outcome.paymentHash)).toEqual({ status: 'not_found', paymentHash: outcome.paymentHash });
  });

  it('a connection cut after LND took the payment is unknown, and lookupPayment later says it succeeded', async () => {
    const invoice = await bobInvoice(6_000);
    setup.standin.dropNextPaymentAfterDispatch();
    const outcome = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash });
    const truth = await settledLookup(invoice.paymentHash);
    expect(truth).toMatchObject({ status: 'succeeded', paymentHash: invoice.paymentHash, amountMsat: 6_000n });
    expect((await setup.devnet.backendFor('bob').lookupInvoice(invoice.paymentHash))?.state).toBe('settled');
  });

  it('no final update before the deadline is unknown, and lookupPayment later tells the truth', async () => {
    const impatient = setup.connect({ timeoutMs: 200 });
    const invoice = await bobInvoice(7_000);
    setup.standin.holdNextPaymentStream();
    const outcome = await impatient.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 1 });
    expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash, detail: 'LND did not answer in time' });
    expect(await settledLookup(invoice.paymentHash)).toMatchObject({ status: 'succeeded', amountMsat: 7_000n });
  });

  it('closing the backend during a payment answers unknown, and another client later learns the truth', async () => {
    const closing = setup.connect();
    const invoice = await bobInvoice(7_500);
    setup.standin.holdNextPaymentStream();
    const pending = closing.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    // Wait until the payment has reached the node, so the close cuts a payment in progress.
    const node = setup.devnet.backendFor('sluice');
    for (let attempt = 0; (await node.lookupPayment(invoice.paymentHash)).status === 'not_found'; attempt += 1) {
      if (attempt > 500) throw new Error('the payment never reached the node');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await closing.close();
    expect(await pending).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash, detail: 'the LND backend is closed' });
    expect(await settledLookup(invoice.paymentHash)).toMatchObject({ status: 'succeeded', amountMsat: 7_500n });
  });

  it('an outcome the node itself does not know yet is unknown, and lookupPayment later tells the truth', async () => {
    const invoice = await bobInvoice(8_000);
    setup.devnet.faults.withholdOutcomeNext(1);
    const outcome = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash });
    expect(await settledLookup(invoice.paymentHash)).toMatchObject({ status: 'succeeded', amountMsat: 8_000n });
  });

  const reasons: PaymentFailureReason[] = ['no_route', 'insufficient_balance', 'timeout', 'incorrect_payment_details', 'error'];
  it.each(reasons)('a payment failed with %s comes back with that reason through LND’s failure_reason', async (reason) => {
    const invoice = await bobInvoice(9_000);
    setup.devnet.faults.failNextPayments(1, reason);
    const outcome = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(outcome).toMatchObject({ status: 'failed', paymentHash: invoice.paymentHash, reason });
    expect(await setup.lnd.lookupPayment(invoice.paymentHash)).toMatchObject({ status: 'failed', reason });
  });

  it('paying the same invoice twice is already_paid the second time (LND’s AlreadyExists)', async () => {
    const invoice = await bobInvoice(1_500);
    const first = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(first.status).toBe('succeeded');
    const second = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(second).toMatchObject({ status: 'failed', reason: 'already_paid', paymentHash: invoice.paymentHash });
  });

  it('an expired invoice is refused before sending as invoice_expired', async () => {
    const invoice = await setup.devnet.backendFor('bob').createInvoice({ amountMsat: msat(1_000), description: 'late', expiryS: 1 });
    setup.clock.advanceMs(2_000);
    const outcome = await setup.lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 5 });
    expect(outcome).toMatchObject({ status: 'failed', reason: 'invoice_expired', paymentHash: invoice.paymentHash });
    expect(await setup.lnd.lookupPayment(invoice.paymentHash)).toEqual({ status: 'not_found', paymentHash: invoice.paymentHash });
  });
});
