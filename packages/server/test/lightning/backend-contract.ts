/**
 * The contract every LightningBackend keeps, as one suite run against each implementation
 * (the devnet in test/devnet/contract.test.ts, LND in its own test). Invoices are checked
 * with two independent decoders (`light-bolt11-decoder` for fields, `bolt11` for the
 * signature and payee key), never with Sluice's own codec.
 *
 * A fixture provides the backend under test and two other nodes on the same network: a
 * payer that can pay the backend's invoices, and a payee whose invoices (and keysends)
 * the backend can pay. For LND, a stand-in backed by a devnet node satisfies it: give the
 * LND backend as `backend` and devnet wallets (`devnet.backendFor('alice')`) as payer and
 * payee.
 *
 * Tests run one at a time with a fresh fixture each, and only assume about the nodes what
 * they did themselves (other settled invoices may exist on a shared node).
 */
import { createHash, randomBytes } from 'node:crypto';
import bolt11 from 'bolt11';
import { decode as lightDecode } from 'light-bolt11-decoder';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { msat, type Msat } from '../../src/money/msat.js';
import type { InvoiceState, LightningBackend, SettledInvoice } from '../../src/lightning/backend.js';

export interface ContractFixture {
  /** The backend under test. */
  backend: LightningBackend;
  /** Another node with a route to `backend`: pays its invoices. */
  payer: LightningBackend;
  /** Another node `backend` has a route to: issues invoices for it to pay and receives its keysends. */
  payee: LightningBackend;
  /**
   * Makes `ms` of time pass for invoice expiry on all three nodes (a devnet fixture moves its
   * manual clock). Absent: the suite sleeps for real, which only the expiry test does.
   */
  passTime?(ms: number): Promise<void>;
  /** A fee limit generous enough for any route between the fixture's nodes. Default 10 000 msat. */
  feeLimitMsat?: Msat;
  teardown(): Promise<void>;
}

const HEX32 = /^[0-9a-f]{64}$/;
const PUBKEY = /^0[23][0-9a-f]{64}$/;
const PREFIX_BY_NETWORK = { mainnet: 'lnbc', testnet: 'lntb', signet: 'lntbs', regtest: 'lnbcrt' } as const;

function sha256Hex(hex: string): string {
  return createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
}

function randomHex32(): string {
  return randomBytes(32).toString('hex');
}

type LightSection = ReturnType<typeof lightDecode>['sections'][number];

function section<N extends LightSection['name']>(request: string, name: N): Extract<LightSection, { name: N }> | undefined {
  return lightDecode(request).sections.find((candidate) => candidate.name === name) as Extract<LightSection, { name: N }> | undefined;
}

/** Waits until `condition` holds, checking after each event-loop turn; bounded so a broken watcher fails the test. */
async function eventually(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function describeLightningBackendContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`LightningBackend contract: ${name}`, () => {
    let fixture: ContractFixture;
    let backend: LightningBackend;
    let payer: LightningBackend;
    let payee: LightningBackend;
    let feeLimitMsat: Msat;

    beforeEach(async () => {
      fixture = await setup();
      ({ backend, payer, payee } = fixture);
      feeLimitMsat = fixture.feeLimitMsat ?? msat(10_000);
    });

    afterEach(async () => {
      await fixture.teardown();
    });

    const pay = (from: LightningBackend, paymentRequest: string, extra: { amountMsat?: Msat } = {}) =>
      from.payInvoice({ paymentRequest, feeLimitMsat, timeoutS: 30, ...extra });

    async function settledIndexOf(paymentHash: string): Promise<string> {
      const record = await backend.lookupInvoice(paymentHash);
      expect(record?.state).toBe('settled');
      expect(record?.settleIndex).toMatch(/^[1-9][0-9]*$/);
      return record?.settleIndex as string;
    }

    describe('getInfo', () => {
      it('names the backend kind, the network and a compressed pubkey', async () => {
        const info = await backend.getInfo();
        expect(info.backend).toBe(backend.kind);
        expect(['mainnet', 'testnet', 'signet', 'regtest']).toContain(info.network);
        expect(info.pubkey).toMatch(PUBKEY);
        expect(Number.isSafeInteger(info.blockHeight) && info.blockHeight >= 0).toBe(true);
        expect(typeof info.alias).toBe('string');
      });
    });

    describe('createInvoice', () => {
      it('issues a BOLT 11 invoice that independent decoders read back', async () => {
        const info = await backend.getInfo();
        const created = await backend.createInvoice({ amountMsat: msat(123_456), description: 'contract: coffee', expiryS: 900 });
        expect(created.paymentHash).toMatch(HEX32);
        expect(created.amountMsat).toBe(123_456n);
        expect(created.expiresAt - created.createdAt).toBe(900_000);

        const request = created.paymentRequest;
        expect(request.startsWith(PREFIX_BY_NETWORK[info.network])).toBe(true);
        expect(section(request, 'amount')?.value).toBe('123456');
        expect(section(request, 'payment_hash')?.value).toBe(created.paymentHash);
        expect(section(request, 'description')?.value).toBe('contract: coffee');
        expect(section(request, 'expiry')?.value).toBe(900);
        expect(section(request, 'payment_secret')?.value).toMatch(HEX32);
        expect(section(request, 'timestamp')?.value).toBe(Math.floor(created.createdAt / 1000));

        const verified = bolt11.decode(request);
        expect(verified.payeeNodeKey).toBe(info.pubkey);
        expect(verified.complete).toBe(true);
      });

      it('derives the payment hash from a preimage the caller chose', async () => {
        const preimage = randomHex32();
        const created = await backend.createInvoice({ amountMsat: msat(1_000), description: 'chosen preimage', expiryS: 600, preimage });
        expect(created.paymentHash).toBe(sha256Hex(preimage));
      });

      it('writes a description hash instead of a description', async () => {
        const descriptionHash = sha256Hex(Buffer.from('{"long":"metadata"}').toString('hex'));
        const created = await backend.createInvoice({ amountMsat: msat(2_000), descriptionHash, expiryS: 600 });
        const tags = bolt11.decode(created.paymentRequest).tags;
        expect(tags.find((tag) => tag.tagName === 'purpose_commit_hash')?.data).toBe(descriptionHash);
        expect(section(created.paymentRequest, 'description')).toBeUndefined();
      });

      it('issues an invoice without an amount for amountMsat 0', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(0), description: 'any amount', expiryS: 600 });
        expect(section(created.paymentRequest, 'amount')).toBeUndefined();
      });
    });

    describe('lookupInvoice', () => {
      it('returns null for a hash the node never issued', async () => {
        expect(await backend.lookupInvoice(randomHex32())).toBeNull();
      });

      it('shows an open invoice without its preimage', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(5_000), description: 'open', expiryS: 600 });
        const record = await backend.lookupInvoice(created.paymentHash);
        expect(record).toMatchObject({
          paymentHash: created.paymentHash,
          paymentRequest: created.paymentRequest,
          amountMsat: 5_000n,
          state: 'open',
          amountPaidMsat: null,
          settledAt: null,
          settleIndex: null,
          preimage: null,
        });
      });
    });

    describe('receiving', () => {
      it('settles an invoice paid by another node, with a preimage that hashes to the payment hash', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(21_000), description: 'receive', expiryS: 600 });
        const outcome = await pay(payer, created.paymentRequest);
        expect(outcome).toMatchObject({ status: 'succeeded', paymentHash: created.paymentHash, amountMsat: 21_000n });
        if (outcome.status !== 'succeeded') return;
        expect(sha256Hex(outcome.preimage)).toBe(created.paymentHash);

        const record = await backend.lookupInvoice(created.paymentHash);
        expect(record).toMatchObject({ state: 'settled', amountPaidMsat: 21_000n, preimage: outcome.preimage });
        expect(record?.settledAt).toEqual(expect.any(Number));
        expect(await payer.lookupPayment(created.paymentHash)).toMatchObject({ status: 'succeeded', preimage: outcome.preimage });
      });

      it('takes what the payer chooses on an invoice without an amount', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(0), description: 'tip jar', expiryS: 600 });
        const outcome = await pay(payer, created.paymentRequest, { amountMsat: msat(7_777) });
        expect(outcome.status).toBe('succeeded');
        expect(await backend.lookupInvoice(created.paymentHash)).toMatchObject({ state: 'settled', amountPaidMsat: 7_777n });
      });

      it('refuses a second payment of a settled invoice as already_paid', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(3_000), description: 'once', expiryS: 600 });
        const first = await pay(payer, created.paymentRequest);
        expect(first.status).toBe('succeeded');
        const second = await pay(payer, created.paymentRequest);
        expect(second).toMatchObject({ status: 'failed', paymentHash: created.paymentHash, reason: 'already_paid' });
        expect(await payer.lookupPayment(created.paymentHash)).toMatchObject({ status: 'succeeded' });
        expect(await backend.lookupInvoice(created.paymentHash)).toMatchObject({ amountPaidMsat: 3_000n });
      });

      it('refuses to pay less than the invoice amount', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(10_000), description: 'full price', expiryS: 600 });
        const outcome = await pay(payer, created.paymentRequest, { amountMsat: msat(9_999) });
        expect(outcome.status).toBe('failed');
        expect((await backend.lookupInvoice(created.paymentHash))?.state).toBe('open');
      });

      it('lets an invoice expire: it cannot be paid and reads as expired', async () => {
        const created = await backend.createInvoice({ amountMsat: msat(1_000), description: 'short-lived', expiryS: 1 });
        if (fixture.passTime) await fixture.passTime(2_000);
        else await new Promise((resolve) => setTimeout(resolve, 2_100));
        const outcome = await pay(payer, created.paymentRequest);
        expect(outcome).toMatchObject({ status: 'failed', reason: 'invoice_expired' });
        const state: InvoiceState | undefined = (await backend.lookupInvoice(created.paymentHash))?.state;
        expect(['expired', 'canceled']).toContain(state);
      });
    });

    describe('watchInvoices', () => {
      it('delivers settlements after the cursor in order, including those settled while nobody watched', async () => {
        const first = await backend.createInvoice({ amountMsat: msat(1_001), description: 'w1', expiryS: 600 });
        const second = await backend.createInvoice({ amountMsat: msat(1_002), description: 'w2', expiryS: 600 });
        const third = await backend.createInvoice({ amountMsat: msat(1_003), description: 'w3', expiryS: 600 });
        expect((await pay(payer, first.paymentRequest)).status).toBe('succeeded');
        const cursor = await settledIndexOf(first.paymentHash);
        // Settled before any watcher exists: must still be delivered.
        expect((await pay(payer, second.paymentRequest)).status).toBe('succeeded');

        const seen: SettledInvoice[] = [];
        const ours = new Set([first.paymentHash, second.paymentHash, third.paymentHash]);
        const watch = backend.watchInvoices({
          afterSettleIndex: cursor,
          onSettled: async (invoice) => {
            if (ours.has(invoice.paymentHash)) seen.push(invoice);
          },
        });
        try {
          expect((await pay(payer, third.paymentRequest)).status).toBe('succeeded');
          await eventually(() => seen.length >= 2);
          expect(seen.map((invoice) => invoice.paymentHash)).toEqual([second.paymentHash, third.paymentHash]);
          expect(seen.map((invoice) => invoice.amountPaidMsat)).toEqual([1_002n, 1_003n]);
          const indexes = seen.map((invoice) => BigInt(invoice.settleIndex));
          expect(indexes[0]! > BigInt(cursor)).toBe(true);
          expect(indexes[1]! > indexes[0]!).toBe(true);
          for (const invoice of seen) {
            expect(invoice.state).toBe('settled');
            expect(sha256Hex(invoice.preimage as string)).toBe(invoice.paymentHash);
          }
        } finally {
          await watch.stop();
        }
      });

      it('delivers nothing after stop()', async () => {
        const seen: string[] = [];
        const watch = backend.watchInvoices({ afterSettleIndex: '0', onSettled: async (invoice) => void seen.push(invoice.paymentHash) });
        await watch.stop();
        const created = await backend.createInvoice({ amountMsat: msat(1_000), description: 'after stop', expiryS: 600 });
        expect((await pay(payer, created.paymentRequest)).status).toBe('succeeded');
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(seen).not.toContain(created.paymentHash);
      });
    });

    describe('sending', () => {
      it('pays another node’s invoice within the fee limit and remembers the payment', async () => {
        const created = await payee.createInvoice({ amountMsat: msat(50_000), description: 'payout', expiryS: 600 });
        const outcome = await pay(backend, created.paymentRequest);
        expect(outcome).toMatchObject({ status: 'succeeded', paymentHash: created.paymentHash, amountMsat: 50_000n });
        if (outcome.status !== 'succeeded') return;
        expect(sha256Hex(outcome.preimage)).toBe(created.paymentHash);
        expect(outcome.feeMsat <= feeLimitMsat).toBe(true);
        expect(await backend.lookupPayment(created.paymentHash)).toEqual(outcome);
        expect(await payee.lookupInvoice(created.paymentHash)).toMatchObject({ state: 'settled', amountPaidMsat: 50_000n });
      });

      it('sends a keysend payment with the preimage the caller chose', async () => {
        const preimage = randomHex32();
        const destinationPubkey = (await payee.getInfo()).pubkey;
        const outcome = await backend.keysend({ destinationPubkey, amountMsat: msat(4_000), feeLimitMsat, timeoutS: 30, preimage });
        expect(outcome).toMatchObject({ status: 'succeeded', paymentHash: sha256Hex(preimage), preimage, amountMsat: 4_000n });
        expect(await backend.lookupPayment(sha256Hex(preimage))).toMatchObject({ status: 'succeeded', preimage });
      });

      it('answers not_found for a payment hash it never sent', async () => {
        const paymentHash = randomHex32();
        expect(await backend.lookupPayment(paymentHash)).toEqual({ status: 'not_found', paymentHash });
      });

      it('fails, without rejecting, on a payment request that is not an invoice', async () => {
        const outcome = await backend.payInvoice({ paymentRequest: 'lnbcrt1notaninvoice', feeLimitMsat, timeoutS: 30 });
        expect(outcome.status).toBe('failed');
      });

      it('refuses an invoice for another network and records nothing', async () => {
        const info = await backend.getInfo();
        const foreign = await payee.createInvoice({ amountMsat: msat(1_000), description: 'elsewhere', expiryS: 600 });
        // Re-encode the same fields under another network's prefix, signed by a random key.
        const decoded = bolt11.decode(foreign.paymentRequest);
        const otherNetwork = info.network === 'mainnet' ? { bech32: 'tb', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] } : { bech32: 'bc', pubKeyHash: 0, scriptHash: 5, validWitnessVersions: [0, 1] };
        const unsigned = bolt11.encode({
          network: otherNetwork,
          millisatoshis: '1000',
          timestamp: decoded.timestamp ?? Math.floor(Date.now() / 1000),
          tags: decoded.tags.filter((tag) => tag.tagName !== 'feature_bits'),
        });
        const signed = bolt11.sign(unsigned, randomBytes(32).toString('hex'));
        expect(signed.paymentRequest?.startsWith(info.network === 'mainnet' ? 'lntb' : 'lnbc1')).toBe(true);
        const outcome = await pay(backend, signed.paymentRequest as string);
        expect(outcome).toMatchObject({ status: 'failed', paymentHash: foreign.paymentHash });
        expect(await backend.lookupPayment(foreign.paymentHash)).toEqual({ status: 'not_found', paymentHash: foreign.paymentHash });
      });
    });
  });
}
