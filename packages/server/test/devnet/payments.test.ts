/**
 * Devnet behaviour beyond the backend contract: routing fees across the hub, capacity,
 * fee limits, expiry on a manual clock, keysend, duplicates, invoice checks, and the
 * invoices themselves as an independent decoder (light-bolt11-decoder) reads them.
 */
import { decode as lightDecode } from 'light-bolt11-decoder';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeBolt11 } from '../../src/lightning/bolt11/index.js';
import { DEFAULT_TOPOLOGY, KEYSEND_RECORD_TYPE, type Devnet, type DevnetTopology } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';
import { balances, FEE_LIMIT, openTestDevnet, randomHex32, sha256Hex } from './support.js';

let opened: Devnet | null = null;
async function open(options: Parameters<typeof openTestDevnet>[0] = {}) {
  const result = await openTestDevnet(options);
  opened = result.devnet;
  return result;
}
afterEach(async () => {
  await opened?.close();
  opened = null;
});

const HUB_FEE = (amount: bigint) => 1000n + (amount * 100n) / 1_000_000n;

describe('devnet nodes', () => {
  it('has the sluice node, a hub and wallets, each labelled as fake money', async () => {
    const { devnet } = await open();
    expect(devnet.network).toBe('regtest');
    expect(devnet.nodeNames()).toEqual(DEFAULT_TOPOLOGY.nodes);
    for (const name of devnet.nodeNames()) {
      const info = await devnet.backendFor(name).getInfo();
      expect(info).toMatchObject({ backend: 'devnet', network: 'regtest', syncedToChain: true });
      expect(info.alias).toContain('devnet (fake money)');
      expect(info.alias).toContain(name);
      expect(info.pubkey).toBe(devnet.nodePubkey(name));
    }
    const pubkeys = new Set(devnet.nodeNames().map((name) => devnet.nodePubkey(name)));
    expect(pubkeys.size).toBe(devnet.nodeNames().length);
  });

  it('derives the same keys from the same seed and different keys otherwise', async () => {
    const { devnet: first } = await openTestDevnet({ seed: 'same' });
    const { devnet: second } = await openTestDevnet({ seed: 'same' });
    const { devnet: third } = await openTestDevnet({ seed: 'other' });
    expect(first.nodePubkey('sluice')).toBe(second.nodePubkey('sluice'));
    expect(first.nodePubkey('sluice')).not.toBe(third.nodePubkey('sluice'));
    await Promise.all([first.close(), second.close(), third.close()]);
  });

  it('mines a block per ten minutes of devnet clock', async () => {
    const { devnet, clock } = await open();
    const sluice = devnet.backendFor('sluice');
    const before = (await sluice.getInfo()).blockHeight;
    clock.advanceMs(25 * 60_000);
    expect((await sluice.getInfo()).blockHeight).toBe(before + 2);
  });

  it('refuses to give a backend for a node it does not have', async () => {
    const { devnet } = await open();
    expect(() => devnet.backendFor('mallory')).toThrow(/no node named/);
  });
});

describe('devnet invoices', () => {
  it('are regtest invoices with a payment secret and the usual features', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(2_500_000), description: 'fake coffee', expiryS: 3600 });
    expect(created.paymentRequest.startsWith('lnbcrt25u1')).toBe(true);
    const sections = lightDecode(created.paymentRequest).sections;
    const byName = Object.fromEntries(sections.map((section) => [section.name, section]));
    expect(byName['coin_network']).toMatchObject({ letters: 'bcrt' });
    expect(byName['amount']).toMatchObject({ value: '2500000' });
    expect(byName['payment_hash']).toMatchObject({ value: created.paymentHash });
    expect(byName['payment_secret']?.['value' as never]).toMatch(/^[0-9a-f]{64}$/);
    expect(byName['feature_bits']).toMatchObject({ value: { var_onion_optin: 'required', payment_secret: 'required' } });
  });

  it('never shows the preimage of an unpaid invoice', async () => {
    const { devnet } = await open();
    const preimage = randomHex32();
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 60, preimage });
    expect((await devnet.backendFor('sluice').lookupInvoice(created.paymentHash))?.preimage).toBeNull();
  });

  it('refuses a second invoice with the same payment hash on one node', async () => {
    const { devnet } = await open();
    const preimage = randomHex32();
    await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 60, preimage });
    await expect(devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 60, preimage })).rejects.toThrow(/already has an invoice/);
  });

  const badRequests = [
    { description: 'zero expiry', request: { amountMsat: msat(1), expiryS: 0 } },
    { description: 'fractional expiry', request: { amountMsat: msat(1), expiryS: 1.5 } },
    { description: 'expiry over a year', request: { amountMsat: msat(1), expiryS: 366 * 86400 } },
    { description: 'both descriptions', request: { amountMsat: msat(1), expiryS: 60, description: 'a', descriptionHash: 'ab'.repeat(32) } },
    { description: 'short preimage', request: { amountMsat: msat(1), expiryS: 60, preimage: 'abcd' } },
    { description: 'upper-case preimage', request: { amountMsat: msat(1), expiryS: 60, preimage: 'AB'.repeat(32) } },
  ];
  for (const row of badRequests) {
    it(`rejects a bad request: ${row.description}`, async () => {
      const { devnet } = await open();
      await expect(devnet.backendFor('sluice').createInvoice(row.request)).rejects.toThrow(RangeError);
    });
  }
});

describe('devnet payments', () => {
  it('routes a wallet payment to sluice through the hub, which earns its fee', async () => {
    const { devnet } = await open();
    const before = balances(devnet);
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1_000_000), description: 'game credit', expiryS: 600 });
    const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    const fee = HUB_FEE(1_000_000n);
    expect(outcome).toMatchObject({ status: 'succeeded', amountMsat: 1_000_000n, feeMsat: fee });
    const after = balances(devnet);
    expect(after['alice']! - before['alice']!).toBe(-(1_000_000n + fee));
    expect(after['hub']! - before['hub']!).toBe(fee);
    expect(after['sluice']! - before['sluice']!).toBe(1_000_000n);
    expect(after['bob']).toBe(before['bob']);
  });

  it('pays out from sluice to a wallet invoice the same way', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('carol').createInvoice({ amountMsat: msat(42_000_000), description: 'payout', expiryS: 600 });
    const outcome = await devnet.backendFor('sluice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(outcome).toMatchObject({ status: 'succeeded', feeMsat: HUB_FEE(42_000_000n) });
  });

  it('fails with no_route when the fee would exceed the limit, and records it', async () => {
    const { devnet } = await open();
    const before = balances(devnet);
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1_000_000), expiryS: 600 });
    const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: msat(1099), timeoutS: 30 });
    expect(outcome).toMatchObject({ status: 'failed', reason: 'no_route' });
    expect(await devnet.backendFor('alice').lookupPayment(created.paymentHash)).toMatchObject({ status: 'failed', reason: 'no_route' });
    expect(balances(devnet)).toEqual(before);
    // The same payment, retried with a fee limit that covers the hub, goes through.
    const retried = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: msat(1100), timeoutS: 30 });
    expect(retried.status).toBe('succeeded');
  });

  const small: DevnetTopology = {
    nodes: ['sluice', 'hub', 'alice'],
    channels: [
      { nodes: ['hub', 'sluice'], balancesMsat: [msat(50_000), msat(0)], policies: [{ baseMsat: msat(1), ppm: 0n }, { baseMsat: msat(0), ppm: 0n }] },
      { nodes: ['hub', 'alice'], balancesMsat: [msat(0), msat(1_000_000)] },
    ],
  };

  it('fails with no_route when a channel on the way lacks the balance', async () => {
    const { devnet } = await open({ topology: small });
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(50_001), expiryS: 600 });
    const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(outcome).toMatchObject({ status: 'failed', reason: 'no_route' });
    const fits = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(50_000), expiryS: 600 });
    expect((await devnet.backendFor('alice').payInvoice({ paymentRequest: fits.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status).toBe('succeeded');
  });

  it('fails with insufficient_balance when the payer does not hold the amount', async () => {
    const { devnet } = await open({ topology: small });
    const created = await devnet.backendFor('alice').createInvoice({ amountMsat: msat(10), expiryS: 600 });
    const outcome = await devnet.backendFor('sluice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(outcome).toMatchObject({ status: 'failed', reason: 'insufficient_balance' });
  });

  it('lets an invoice expire on the devnet clock, for the payer and the payee', async () => {
    const { devnet, clock } = await open();
    const sluice = devnet.backendFor('sluice');
    const alice = devnet.backendFor('alice');
    const early = await sluice.createInvoice({ amountMsat: msat(1000), expiryS: 60 });
    const late = await sluice.createInvoice({ amountMsat: msat(1000), expiryS: 60 });
    clock.advanceMs(59_999);
    expect((await alice.payInvoice({ paymentRequest: early.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status).toBe('succeeded');
    clock.advanceMs(1);
    expect(await alice.payInvoice({ paymentRequest: late.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).toMatchObject({
      status: 'failed',
      reason: 'invoice_expired',
    });
    expect(await sluice.lookupInvoice(late.paymentHash)).toMatchObject({ state: 'expired', amountPaidMsat: null });
    expect(await sluice.lookupInvoice(early.paymentHash)).toMatchObject({ state: 'settled' });
  });

  it('refuses an invoice another node has already paid as already_paid', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(5000), expiryS: 600 });
    const request = { paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 };
    expect((await devnet.backendFor('alice').payInvoice(request)).status).toBe('succeeded');
    const before = balances(devnet);
    expect(await devnet.backendFor('bob').payInvoice(request)).toMatchObject({ status: 'failed', reason: 'already_paid' });
    expect(await devnet.backendFor('alice').payInvoice(request)).toMatchObject({ status: 'failed', reason: 'already_paid' });
    expect(balances(devnet)).toEqual(before);
    expect(await devnet.backendFor('bob').lookupPayment(created.paymentHash)).toMatchObject({ status: 'not_found' });
  });

  it('refuses an invoice for another network without recording a payment', async () => {
    const { devnet } = await open();
    const request = encodeBolt11(
      { network: 'mainnet', amountMsat: msat(1000), timestamp: 1_767_225_600, paymentHash: randomHex32(), paymentSecret: randomHex32(), description: 'real money', expiryS: 600 },
      new Uint8Array(32).fill(7),
    );
    const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: request, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(outcome).toMatchObject({ status: 'failed', reason: 'incorrect_payment_details' });
    if (outcome.status === 'failed') expect(outcome.detail).toMatch(/mainnet/);
  });

  it('fails with no_route for a regtest invoice of a node outside the devnet', async () => {
    const { devnet, clock } = await open();
    const request = encodeBolt11(
      { network: 'regtest', amountMsat: msat(1000), timestamp: Math.floor(clock.now() / 1000), paymentHash: randomHex32(), paymentSecret: randomHex32(), description: 'stranger', expiryS: 600 },
      new Uint8Array(32).fill(9),
    );
    expect(await devnet.backendFor('alice').payInvoice({ paymentRequest: request, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).toMatchObject({
      status: 'failed',
      reason: 'no_route',
    });
  });

  const amountRows = [
    { description: 'below the invoice amount', invoice: 10_000, pay: 9_999, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'more than twice the amount', invoice: 10_000, pay: 20_001, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'overpaid within twice', invoice: 10_000, pay: 15_000, expected: { status: 'succeeded', amountMsat: 15_000n } },
    { description: 'no amount anywhere', invoice: 0, pay: undefined, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'zero amount for an open invoice', invoice: 0, pay: 0, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
  ];
  for (const row of amountRows) {
    it(`checks the amount: ${row.description}`, async () => {
      const { devnet } = await open();
      const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(row.invoice), expiryS: 600 });
      const outcome = await devnet.backendFor('alice').payInvoice({
        paymentRequest: created.paymentRequest,
        feeLimitMsat: FEE_LIMIT,
        timeoutS: 30,
        ...(row.pay === undefined ? {} : { amountMsat: msat(row.pay) }),
      });
      expect(outcome).toMatchObject(row.expected);
    });
  }

  it('refuses to pay its own invoice', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('alice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    expect(await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).toMatchObject({
      status: 'failed',
      reason: 'no_route',
    });
  });

  it('refuses bad request parameters as failed, without rejecting', async () => {
    const { devnet } = await open();
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    const alice = devnet.backendFor('alice');
    expect(await alice.payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: -1n as never, timeoutS: 30 })).toMatchObject({ status: 'failed', reason: 'error' });
    expect(await alice.payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 0 })).toMatchObject({ status: 'failed', reason: 'error' });
    expect(await alice.lookupPayment(created.paymentHash)).toMatchObject({ status: 'not_found' });
  });
});

describe('devnet keysend', () => {
  it('delivers the sender’s preimage in record 5482373484 and settles a keysend invoice at the payee', async () => {
    const { devnet } = await open();
    expect(KEYSEND_RECORD_TYPE).toBe(5482373484n);
    const preimage = randomHex32();
    const paymentHash = sha256Hex(preimage);
    const before = balances(devnet);
    const outcome = await devnet.backendFor('alice').keysend({
      destinationPubkey: devnet.nodePubkey('sluice'),
      amountMsat: msat(8_000),
      feeLimitMsat: FEE_LIMIT,
      timeoutS: 30,
      preimage,
    });
    expect(outcome).toEqual({ status: 'succeeded', paymentHash, preimage, amountMsat: 8_000n, feeMsat: HUB_FEE(8_000n) });
    expect(balances(devnet)['sluice']! - before['sluice']!).toBe(8_000n);
    const received = await devnet.backendFor('sluice').lookupInvoice(paymentHash);
    expect(received).toMatchObject({ state: 'settled', paymentRequest: '', amountPaidMsat: 8_000n, preimage, settleIndex: '1' });

    const again = await devnet.backendFor('bob').keysend({
      destinationPubkey: devnet.nodePubkey('sluice'),
      amountMsat: msat(8_000),
      feeLimitMsat: FEE_LIMIT,
      timeoutS: 30,
      preimage,
    });
    expect(again).toMatchObject({ status: 'failed', reason: 'already_paid' });
  });

  it('fails with no_route to an unknown pubkey and refuses a bad preimage', async () => {
    const { devnet } = await open();
    const alice = devnet.backendFor('alice');
    const unknownKey = await alice.keysend({ destinationPubkey: '02' + 'ab'.repeat(32), amountMsat: msat(1), feeLimitMsat: FEE_LIMIT, timeoutS: 30, preimage: randomHex32() });
    expect(unknownKey).toMatchObject({ status: 'failed', reason: 'no_route' });
    const badPreimage = await alice.keysend({ destinationPubkey: devnet.nodePubkey('sluice'), amountMsat: msat(1), feeLimitMsat: FEE_LIMIT, timeoutS: 30, preimage: 'xyz' });
    expect(badPreimage).toMatchObject({ status: 'failed', reason: 'error' });
  });
});

describe('devnet concurrency', () => {
  it('answers unknown to a second payment of a hash still in flight, and settles once', async () => {
    const { devnet } = await open({ faults: { latencyMs: 30 } });
    const before = balances(devnet);
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    const request = { paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 };
    const [first, second] = await Promise.all([devnet.backendFor('alice').payInvoice(request), devnet.backendFor('alice').payInvoice(request)]);
    expect(first.status).toBe('succeeded');
    expect(second).toMatchObject({ status: 'unknown' });
    expect(balances(devnet)['sluice']! - before['sluice']!).toBe(1000n);
  });

  it('never spends one balance twice when payments race', async () => {
    const { devnet } = await open({
      topology: {
        nodes: ['sluice', 'hub', 'alice'],
        channels: [
          { nodes: ['hub', 'sluice'], balancesMsat: [msat(1_000_000), msat(0)] },
          { nodes: ['alice', 'hub'], balancesMsat: [msat(25_000), msat(0)] },
        ],
      },
      faults: { latencyMs: 10 },
    });
    const invoices = await Promise.all(Array.from({ length: 10 }, () => devnet.backendFor('sluice').createInvoice({ amountMsat: msat(10_000), expiryS: 600 })));
    const outcomes = await Promise.all(
      invoices.map((invoice) => devnet.backendFor('alice').payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })),
    );
    expect(outcomes.filter((outcome) => outcome.status === 'succeeded')).toHaveLength(2);
    expect(devnet.nodeBalanceMsat('alice')).toBe(5_000n);
    expect(devnet.totalBalanceMsat()).toBe(1_025_000n);
  });
});
