/** Failure injection: fail-next, seeded failure rate, latency and timeouts, withheld outcomes. */
import { afterEach, describe, expect, it } from 'vitest';
import { createSeededRandom } from '../../src/lightning/devnet/faults.js';
import type { Devnet } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';
import type { PaymentOutcome } from '../../src/lightning/backend.js';
import { balances, FEE_LIMIT, openTestDevnet } from './support.js';

let opened: Devnet[] = [];
async function open(options: Parameters<typeof openTestDevnet>[0] = {}) {
  const result = await openTestDevnet(options);
  opened.push(result.devnet);
  return result;
}
afterEach(async () => {
  await Promise.all(opened.map((devnet) => devnet.close()));
  opened = [];
});

async function payOnce(devnet: Devnet, timeoutS = 30): Promise<{ outcome: PaymentOutcome; paymentHash: string }> {
  const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
  const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS });
  return { outcome, paymentHash: created.paymentHash };
}

describe('devnet faults', () => {
  it('fails the next N payments with the given reason, records them, then lets payments through', async () => {
    const { devnet } = await open();
    devnet.faults.failNextPayments(2, 'timeout', { detail: 'test says so' });
    const before = balances(devnet);
    const first = await payOnce(devnet);
    const second = await payOnce(devnet);
    const third = await payOnce(devnet);
    expect(first.outcome).toMatchObject({ status: 'failed', reason: 'timeout', detail: 'test says so' });
    expect(second.outcome).toMatchObject({ status: 'failed', reason: 'timeout' });
    expect(third.outcome.status).toBe('succeeded');
    expect(await devnet.backendFor('alice').lookupPayment(first.paymentHash)).toMatchObject({ status: 'failed', reason: 'timeout' });
    expect(balances(devnet)['sluice']! - before['sluice']!).toBe(1000n);
  });

  it('takes fail-next from the options too', async () => {
    const { devnet } = await open({ faults: { failNext: { count: 1, reason: 'no_route' } } });
    expect((await payOnce(devnet)).outcome).toMatchObject({ status: 'failed', reason: 'no_route' });
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
  });

  it('lets a failed payment be retried', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    const request = { paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 };
    devnet.faults.failNextPayments(1, 'error');
    expect((await devnet.backendFor('alice').payInvoice(request)).status).toBe('failed');
    expect((await devnet.backendFor('alice').payInvoice(request)).status).toBe('succeeded');
    expect(await devnet.backendFor('alice').lookupPayment(created.paymentHash)).toMatchObject({ status: 'succeeded' });
  });

  it('fails a seeded share of payments, the same ones on every run', async () => {
    const statuses = async (seed: string) => {
      const { devnet } = await open();
      devnet.faults.setFailureRate(0.5, seed);
      const results: string[] = [];
      for (let index = 0; index < 20; index++) results.push((await payOnce(devnet)).outcome.status);
      return results;
    };
    const first = await statuses('seed-a');
    expect(await statuses('seed-a')).toEqual(first);
    expect(first).toContain('failed');
    expect(first).toContain('succeeded');
    const expected = (() => {
      const random = createSeededRandom('seed-a');
      return first.map(() => (random() < 0.5 ? 'failed' : 'succeeded'));
    })();
    expect(first).toEqual(expected);
  });

  it('clears every run-time fault', async () => {
    const { devnet } = await open();
    devnet.faults.setFailureRate(1, 'x');
    devnet.faults.failNextPayments(5, 'error');
    devnet.faults.withholdOutcomeNext(5);
    devnet.faults.clear();
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
  });

  it('waits the injected latency, and fails with timeout when it outlasts the request', async () => {
    const { devnet } = await open({ faults: { latencyMs: 1_500 } });
    const before = balances(devnet);
    const { outcome, paymentHash } = await payOnce(devnet, 1);
    expect(outcome).toMatchObject({ status: 'failed', reason: 'timeout' });
    expect(await devnet.backendFor('alice').lookupPayment(paymentHash)).toMatchObject({ status: 'failed', reason: 'timeout' });
    expect(balances(devnet)).toEqual(before);
    devnet.faults.setLatencyMs(20);
    expect((await payOnce(devnet, 1)).outcome.status).toBe('succeeded');
  });

  it('answers unknown while the payment really settles, and lookupPayment tells the truth', async () => {
    const { devnet } = await open();
    devnet.faults.withholdOutcomeNext(1);
    const before = balances(devnet);
    const { outcome, paymentHash } = await payOnce(devnet);
    expect(outcome).toMatchObject({ status: 'unknown', paymentHash });
    expect(await devnet.backendFor('alice').lookupPayment(paymentHash)).toMatchObject({ status: 'succeeded' });
    expect(balances(devnet)['sluice']! - before['sluice']!).toBe(1000n);
  });

  it('leaves a scoped fault to the payments in its scope: others go through and do not use it up', async () => {
    const { devnet } = await open();
    // Sluice pays bob; alice pays sluice. Only the payments to bob are in the scope.
    const payBob = async () => {
      const created = await devnet.backendFor('bob').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
      return (await devnet.backendFor('sluice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status;
    };
    devnet.faults.failNextPayments(1, 'no_route', { payee: 'bob' });
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
    expect(await payBob()).toBe('failed');
    expect(await payBob()).toBe('succeeded');
    devnet.faults.withholdOutcomeNext(1, { payer: 'sluice', payee: 'bob' });
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
    expect(await payBob()).toBe('unknown');
    expect(await payBob()).toBe('succeeded');
  });

  it('takes a scoped withheld outcome from the options too', async () => {
    const { devnet } = await open({ faults: { withholdOutcomeNext: { count: 1, payer: 'bob' } } });
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    expect((await devnet.backendFor('bob').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status).toBe('unknown');
    expect((await payOnce(devnet)).outcome.status).toBe('succeeded');
  });

  it('refuses nonsense fault settings', async () => {
    const { devnet } = await open();
    expect(() => devnet.faults.setFailureRate(1.5, 'x')).toThrow(RangeError);
    expect(() => devnet.faults.setLatencyMs(-1)).toThrow(RangeError);
    expect(() => devnet.faults.failNextPayments(0.5, 'error')).toThrow(RangeError);
  });
});
