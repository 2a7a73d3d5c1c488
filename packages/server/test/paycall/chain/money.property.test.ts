// Property (fast-check): for any step price (sub-satoshi included), any chain length and any
// sequence of calls (honest, replayed, skipped, forged, several copies racing) followed or
// not by a refund, the money is exact to the msat:
//   chain account + app revenue (+ refund paid out + routing fee) = amount paid,
// and at every point chain account = (steps - index) x step_msat. Real Sluice on SQLite
// with the devnet; every purchase is paid by a devnet wallet.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../../src/money/msat.js';
import { buildChain } from '../../../src/paycall/chain/index.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

type Call = { variant: 'honest' | 'replay' | 'skip' | 'forged'; k: number; copies: number; under: number };

describe('chain money is exact (property)', () => {
  let t: TestSluice;
  let app: { id: string; apiKey: string };

  beforeAll(async () => {
    t = await startTestSluice();
    app = await t.createApp('property');
    // The app lends routing-fee budgets for refunds: give it something to lend.
    const invoice = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '10000000', description: 'float' } });
    expect(invoice.status, JSON.stringify(invoice.body)).toBe(201);
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: invoice.body.payment_request, wallet: 'alice' } })).status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** A balance once every spent step is settled (chains pay their apps in sweeps). */
  const balance = async (accountId: string): Promise<bigint> => {
    await t.sluice.chains.settleSpent();
    const account = await t.sluice.ledger.getAccount(accountId);
    return account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
  };

  const callArbitrary: fc.Arbitrary<Call> = fc.record({
    variant: fc.constantFrom('honest', 'honest', 'honest', 'replay', 'skip', 'forged'),
    k: fc.integer({ min: 1, max: 4 }),
    copies: fc.integer({ min: 1, max: 3 }),
    under: fc.nat(),
  });

  it('chain account + revenue + refund = paid, to the msat', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 30 }),
        fc.array(callArbitrary, { maxLength: 15 }),
        fc.boolean(),
        async (stepPrice, steps, calls, refundAtEnd) => {
          const step = BigInt(stepPrice);
          t.sluice.chains.setStepMsat(app.id, msat(step));
          const links = buildChain(randomBytes(32), steps);
          const bought = await t.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps } });
          expect(bought.status).toBe(201);
          const paidMsat = BigInt(bought.body.amount_msat);
          expect(paidMsat).toBe(BigInt(steps) * step);
          const appBefore = await balance(`app:${app.id}`);
          expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
          const id = bought.body.chain_id as string;
          for (let i = 0; i < 100 && (await t.sluice.chains.get(id))?.status === 'pending'; i += 1) await new Promise((r) => setTimeout(r, 5));

          let index = 0;
          for (const call of calls) {
            // A price that costs exactly k steps: anything in ((k-1) x step, k x step].
            const priceMsat = msat(BigInt(call.k) * step - BigInt(call.under) % step);
            const target = call.variant === 'replay' ? index : call.variant === 'skip' ? index + call.k + 1 : index + call.k;
            const link = call.variant === 'forged' ? randomBytes(32) : target >= 0 && target <= steps ? (links[target] as Buffer) : randomBytes(32);
            const results = await Promise.all(Array.from({ length: call.copies }, () =>
              t.sluice.chains.spend(id, Math.max(target, 1), link, { appId: app.id, priceMsat })));
            const served = results.filter((result) => result.ok).length;
            if (call.variant === 'honest' && index + call.k <= steps) {
              expect(served).toBe(1);
              index += call.k;
            } else {
              expect(served).toBe(0);
            }
            expect(await balance(`chain:${id}`)).toBe(BigInt(steps - index) * step);
          }
          const revenue = (await balance(`app:${app.id}`)) - appBefore;
          expect(revenue).toBe(BigInt(index) * step);
          expect(revenue + (await balance(`chain:${id}`))).toBe(paidMsat);

          if (refundAtEnd && index < steps) {
            const unused = BigInt(steps - index) * step;
            const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: unused.toString(), wallet: 'carol' } });
            const refunded = await t.call('POST', `/v1/paycall/chains/${id}/refund`, {
              key: null, body: { index: index + 1, link: (links[index + 1] as Buffer).toString('hex'), invoice: invoice.body.payment_request },
            });
            expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
            expect(refunded.body.refund.payment.status).toBe('succeeded');
            const fee = BigInt(refunded.body.refund.payment.fee_msat);
            for (let i = 0; i < 100 && (await balance(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 5));
            expect(await balance(`chain:${id}`)).toBe(0n);
            const appAfter = (await balance(`app:${app.id}`)) - appBefore;
            // Paid = revenue kept by the app + refund to the payer + the routing fee (the app's cost).
            expect(appAfter + fee + BigInt(refunded.body.refund.amount_msat)).toBe(paidMsat);
            expect(BigInt(refunded.body.refund.amount_msat)).toBe(unused);
          }
          expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
