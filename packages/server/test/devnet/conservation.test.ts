/**
 * Money is conserved on the devnet, whatever happens: over random sequences of invoice
 * payments, keysends, repeated payments, injected failures and clock moves, on a small
 * network where many payments fail for lack of balance,
 *   - the sum of all channel balances never changes;
 *   - each node's balance moves exactly as the outcomes say (payer -amount-fee, payee
 *     +amount, forwarders +their fees, nobody else);
 *   - a failed payment moves nothing, and no invoice is paid twice.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DevnetTopology } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';
import { balances, openTestDevnet, randomHex32 } from './support.js';

const NODES = ['sluice', 'hub', 'alice', 'bob'] as const;
type NodeName = (typeof NODES)[number];

const hubPolicy = { baseMsat: msat(100), ppm: 1_000n };
const bobPolicy = { baseMsat: msat(7), ppm: 50_000n };
const none = { baseMsat: msat(0), ppm: 0n };

/** Small balances and two routes between alice and sluice (via hub, or via bob). */
const TOPOLOGY: DevnetTopology = {
  nodes: [...NODES],
  channels: [
    { nodes: ['hub', 'sluice'], balancesMsat: [msat(200_000), msat(200_000)], policies: [hubPolicy, none] },
    { nodes: ['hub', 'alice'], balancesMsat: [msat(100_000), msat(300_000)], policies: [hubPolicy, none] },
    { nodes: ['hub', 'bob'], balancesMsat: [msat(100_000), msat(100_000)], policies: [hubPolicy, bobPolicy] },
    { nodes: ['alice', 'bob'], balancesMsat: [msat(50_000), msat(50_000)], policies: [none, bobPolicy] },
    { nodes: ['bob', 'sluice'], balancesMsat: [msat(80_000), msat(20_000)], policies: [bobPolicy, none] },
  ],
};

const node = fc.constantFrom<NodeName>(...NODES);
const amount = fc.oneof(fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 450_000 }));
const feeLimit = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 30_000 }));

const operation = fc.oneof(
  fc.record({ kind: fc.constant('invoice' as const), payer: node, payee: node, amount, feeLimit, payTwice: fc.boolean() }),
  fc.record({ kind: fc.constant('keysend' as const), payer: node, payee: node, amount, feeLimit }),
  fc.record({ kind: fc.constant('failNext' as const), count: fc.integer({ min: 1, max: 2 }) }),
  fc.record({ kind: fc.constant('advanceClock' as const), ms: fc.integer({ min: 0, max: 120_000 }) }),
);

describe('devnet conservation of money', () => {
  it('keeps the total constant and every balance explained by the outcomes', async () => {
    // Tallied across runs, to show the property met successes and each kind of failure.
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 25 }), async (operations) => {
        const { devnet, clock } = await openTestDevnet({ topology: TOPOLOGY, seed: 'conservation' });
        try {
          const total = devnet.totalBalanceMsat();
          const expected = balances(devnet);
          const settleOf = (payer: NodeName, payee: NodeName, delivered: bigint, fee: bigint) => {
            expected[payer]! -= delivered + fee;
            expected[payee]! += delivered;
            // Forwarders: whoever else gained is checked against the fee below.
            return fee;
          };
          let feesPaid = 0n;
          for (const op of operations) {
            if (op.kind === 'failNext') {
              devnet.faults.failNextPayments(op.count, 'error');
              continue;
            }
            if (op.kind === 'advanceClock') {
              clock.advanceMs(op.ms);
              continue;
            }
            const before = balances(devnet);
            const payer = devnet.backendFor(op.payer);
            const base = { feeLimitMsat: msat(op.feeLimit), timeoutS: 30 };
            const outcomes =
              op.kind === 'invoice'
                ? await (async () => {
                    const created = await devnet.backendFor(op.payee).createInvoice({ amountMsat: msat(op.amount), expiryS: 60 });
                    const first = await payer.payInvoice({ paymentRequest: created.paymentRequest, ...base });
                    if (!op.payTwice) return [first];
                    const second = await payer.payInvoice({ paymentRequest: created.paymentRequest, ...base });
                    if (first.status === 'succeeded') expect(second).toMatchObject({ status: 'failed', reason: 'already_paid' });
                    const record = await devnet.backendFor(op.payee).lookupInvoice(created.paymentHash);
                    const paidCount = [first, second].filter((outcome) => outcome.status === 'succeeded').length;
                    expect(paidCount).toBe(record?.state === 'settled' ? 1 : 0);
                    return [first, second];
                  })()
                : [await payer.keysend({ destinationPubkey: devnet.nodePubkey(op.payee), amountMsat: msat(op.amount), preimage: randomHex32(), ...base })];

            let feeThisOp = 0n;
            for (const outcome of outcomes) {
              const label = outcome.status === 'failed' ? outcome.reason : outcome.status;
              seen.set(label, (seen.get(label) ?? 0) + 1);
              expect(outcome.status).not.toBe('unknown');
              if (outcome.status !== 'succeeded') continue;
              expect(outcome.amountMsat).toBe(BigInt(op.amount));
              expect(outcome.feeMsat <= BigInt(op.feeLimit)).toBe(true);
              feeThisOp += settleOf(op.payer, op.payee, outcome.amountMsat, outcome.feeMsat);
            }
            feesPaid += feeThisOp;
            const after = balances(devnet);
            // Forwarders (neither payer nor payee) gained exactly the fees paid in this step.
            let forwarderGain = 0n;
            for (const name of NODES) {
              if (name === op.payer || name === op.payee) continue;
              const gain = after[name]! - before[name]!;
              expect(gain >= 0n).toBe(true);
              forwarderGain += gain;
              expected[name] = after[name]!;
            }
            expect(forwarderGain).toBe(feeThisOp);
            expect(devnet.totalBalanceMsat()).toBe(total);
            expect(after[op.payer]).toBe(expected[op.payer]);
            expect(after[op.payee]).toBe(expected[op.payee]);
          }
          const sum = NODES.reduce((acc, name) => acc + devnet.nodeBalanceMsat(name), 0n);
          expect(sum).toBe(total);
          expect(feesPaid >= 0n).toBe(true);
        } finally {
          await devnet.close();
        }
      }),
      { numRuns: 60 },
    );
    for (const label of ['succeeded', 'no_route', 'insufficient_balance', 'already_paid', 'error']) {
      expect(seen.get(label) ?? 0, label).toBeGreaterThan(0);
    }
  });
});
