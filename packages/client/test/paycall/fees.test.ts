// Routing fees in the paying fetch's budget, against an in-memory 402 server (L402, or a
// Sluice-like chain offer) and fake wallets that report fees; and the wallet adapters reading
// the fee from LND's, the devnet's and WebLN providers' answers.
import { describe, expect, it } from 'vitest';
import { createPayingFetch, devnetWallet, lndRestWallet, SluiceError, weblnWallet, type PayingFetch, type WalletAdapter, type WalletPayment } from '../../src/index.js';
import type { PayCallBaseFetch, PayCallSpending } from '../../src/paycall/types.js';

const ORIGIN = 'http://api.test';
const PREIMAGE = 'ab'.repeat(32);
const PRICE_MSAT = 5000n;
const STEP_MSAT = 1000n;

/**
 * A BOLT 11-looking invoice for `amountMsat` (pico-bitcoin: 10 per msat); the fetch reads
 * only its amount. The n-th invoice is told apart by n x's (bech32 data never holds a '1').
 */
const invoiceFor = (amountMsat: bigint, n: number): string => `lnbcrt${amountMsat * 10n}p1fake${'x'.repeat(n)}`;

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

/**
 * A server whose `/paid/*` routes cost PRICE_MSAT. `l402`: a 402 with an L402 challenge whose
 * token pays one call. `chain`: a 402 with a chain offer (5 steps of 1000 msat a call) and the
 * chain routes under /chains, chains active once asked for after purchase.
 */
function fakeServer(scheme: 'l402' | 'chain'): PayCallBaseFetch {
  let invoices = 0;
  const chains = new Map<string, { steps: number; index: number }>();
  const view = (id: string, status: 'pending' | 'active', invoice: string | null) => {
    const chain = chains.get(id)!;
    return {
      chain_id: id, app_id: 'app_fees', steps: chain.steps, step_msat: STEP_MSAT.toString(), amount_msat: (BigInt(chain.steps) * STEP_MSAT).toString(), status,
      index: chain.index, remaining_steps: chain.steps - chain.index, remaining_msat: (BigInt(chain.steps - chain.index) * STEP_MSAT).toString(),
      expires_at: Math.floor(Date.now() / 1000) + 3600, invoice: invoice === null ? null : { payment_request: invoice, payment_hash: 'cd'.repeat(32) },
    };
  };
  return async (input, init) => {
    const url = new URL(input);
    const headers = new Headers(init?.headers);
    if (url.pathname === '/chains' && init?.method === 'POST') {
      const { steps } = JSON.parse(String(init.body)) as { steps: number };
      const id = `ch_${chains.size + 1}`;
      chains.set(id, { steps, index: 0 });
      return json(201, view(id, 'pending', invoiceFor(BigInt(steps) * STEP_MSAT, chains.size)));
    }
    if (url.pathname.startsWith('/chains/')) return json(200, view(url.pathname.slice('/chains/'.length), 'active', null));
    const link = headers.get('sluice-chain');
    if (link !== null) {
      const [id, index] = link.split(' ') as [string, string];
      const chain = chains.get(id)!;
      chain.index = Number(index);
      return json(200, { served: true }, { 'sluice-chain-balance': `steps=${chain.steps - chain.index}; msat=${BigInt(chain.steps - chain.index) * STEP_MSAT}; index=${chain.index}` });
    }
    if (headers.get('authorization')?.startsWith('L402 ')) return json(200, { served: true }, { 'sluice-l402-balance': 'msat=0' });
    invoices += 1;
    const challenge: Record<string, string> = scheme === 'l402'
      ? { 'www-authenticate': `L402 macaroon="mac${invoices}", invoice="${invoiceFor(PRICE_MSAT, invoices)}"` }
      : { 'sluice-chain-offer': `buy="${ORIGIN}/chains", app="app_fees", step_msat="${STEP_MSAT}", steps_per_call="5"` };
    return json(402, { error: { code: 'payment_required', message: 'pay' }, price_msat: PRICE_MSAT.toString() }, challenge);
  };
}

/** A wallet that pays anything, reporting `fee` (a value, or a function of the invoice), and records what it was asked and what the fetch counted meanwhile. */
function feeWallet(options: { fee?: unknown; maxFeeMsat?: bigint; fail?: SluiceError }) {
  const asked: string[] = [];
  const spentWhilePaying: PayCallSpending[] = [];
  let paidFetch: PayingFetch | null = null;
  const wallet: WalletAdapter = {
    name: 'fees',
    ...(options.maxFeeMsat === undefined ? {} : { maxFeeMsat: options.maxFeeMsat }),
    async payInvoice(paymentRequest) {
      asked.push(paymentRequest);
      if (paidFetch !== null) spentWhilePaying.push(paidFetch.spent());
      if (options.fail) throw options.fail;
      return ('fee' in options ? { preimage: PREIMAGE, feeMsat: options.fee } : { preimage: PREIMAGE }) as WalletPayment;
    },
  };
  return { wallet, asked, spentWhilePaying, attach: (fetch: PayingFetch) => void (paidFetch = fetch) };
}

async function payingFetchWith(scheme: 'l402' | 'chain', wallet: ReturnType<typeof feeWallet>, budgetMsat: bigint, chainSteps = 100): Promise<PayingFetch> {
  const paidFetch = createPayingFetch({ wallet: wallet.wallet, budgetMsat, fetch: fakeServer(scheme), chain: scheme === 'chain' ? { steps: chainSteps } : false, l402: scheme === 'l402' });
  wallet.attach(paidFetch);
  return paidFetch;
}

const refusal = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => 'served', (error: unknown) => (error instanceof SluiceError ? error.code : error));

describe('createPayingFetch counts routing fees', () => {
  it('a wallet without a fee limit: fees paid count before the next payment, which is refused before the wallet is asked', async () => {
    const wallet = feeWallet({ fee: 100n });
    // 5000 + 100 paid; a second 5000 would bring it to 10,100 > 10,050 (fees not counted: 10,000, and it would pay).
    const paidFetch = await payingFetchWith('l402', wallet, 10_050n);
    const first = await paidFetch(`${ORIGIN}/paid/a`);
    expect(first.status).toBe(200);
    expect(paidFetch.receipt(first)).toMatchObject({ scheme: 'l402', paidMsat: 5000n, feesMsat: 100n });
    expect(await refusal(paidFetch(`${ORIGIN}/paid/b`))).toBe('budget_exceeded');
    expect(wallet.asked).toHaveLength(1);
    expect(paidFetch.spent()).toEqual({ budgetMsat: 10_050n, paidMsat: 5000n, feesMsat: 100n, remainingBudgetMsat: 4950n, usedMsat: 5000n, refundedMsat: 0n, paidCalls: 1 });
  });

  it('spent() is exact over several payments, and the refusal message names the fees', async () => {
    const wallet = feeWallet({ fee: 1001n });
    const paidFetch = await payingFetchWith('l402', wallet, 20_000n);
    for (const path of ['a', 'b', 'c']) expect((await paidFetch(`${ORIGIN}/paid/${path}`)).status).toBe(200);
    expect(paidFetch.spent()).toEqual({ budgetMsat: 20_000n, paidMsat: 15_000n, feesMsat: 3003n, remainingBudgetMsat: 1997n, usedMsat: 15_000n, refundedMsat: 0n, paidCalls: 3 });
    await expect(paidFetch(`${ORIGIN}/paid/d`)).rejects.toThrow(/needs 5000 msat but only 1997 msat of the 20000 msat budget is left \(15000 msat paid, 3003 msat in routing fees\)/);
    expect(wallet.asked).toHaveLength(3);
  });

  it('without a declared fee limit the last payment\'s own fee can pass the budget (documented); remainingBudgetMsat stays at 0', async () => {
    const wallet = feeWallet({ fee: 100n });
    const paidFetch = await payingFetchWith('l402', wallet, 5000n);
    expect((await paidFetch(`${ORIGIN}/paid/a`)).status).toBe(200);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 5000n, feesMsat: 100n, remainingBudgetMsat: 0n });
    expect(await refusal(paidFetch(`${ORIGIN}/paid/b`))).toBe('budget_exceeded');
    expect(wallet.asked).toHaveLength(1);
  });

  it('a declared fee limit is kept free before each payment, then replaced by the reported fee: the budget is never passed', async () => {
    const wallet = feeWallet({ fee: 100n, maxFeeMsat: 300n });
    const paidFetch = await payingFetchWith('l402', wallet, 10_350n);
    expect((await paidFetch(`${ORIGIN}/paid/a`)).status).toBe(200);
    // While the wallet paid, the reserve was counted as the fee.
    expect(wallet.spentWhilePaying[0]).toMatchObject({ paidMsat: 5000n, feesMsat: 300n, remainingBudgetMsat: 5050n });
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 5000n, feesMsat: 100n, remainingBudgetMsat: 5250n });
    // 5100 counted + 5000 + the 300 fee limit = 10,400 > 10,350: refused (10,200 would fit, but its fee might not).
    await expect(paidFetch(`${ORIGIN}/paid/b`)).rejects.toThrow(/needs 5000 msat plus up to 300 msat of routing fee \(the wallet's fee limit\)/);
    expect(wallet.asked).toHaveLength(1);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 5000n, feesMsat: 100n });
  });

  const unreported: { description: string; fee: unknown; maxFeeMsat?: bigint; expectedFeesMsat: bigint }[] = [
    { description: 'no fee reported, a fee limit declared: the limit counts (the most it can be)', fee: undefined, maxFeeMsat: 300n, expectedFeesMsat: 300n },
    { description: 'no fee reported, no limit: nothing counted', fee: undefined, expectedFeesMsat: 0n },
    { description: 'a negative fee is not a fee: the limit counts', fee: -5n, maxFeeMsat: 300n, expectedFeesMsat: 300n },
    { description: 'a fee that is not a bigint is not a fee: the limit counts', fee: 100, maxFeeMsat: 300n, expectedFeesMsat: 300n },
    { description: 'a reported zero fee counts as zero', fee: 0n, maxFeeMsat: 300n, expectedFeesMsat: 0n },
    { description: 'a reported fee above the declared limit counts as reported', fee: 450n, maxFeeMsat: 300n, expectedFeesMsat: 450n },
  ];
  for (const row of unreported) {
    it(row.description, async () => {
      const wallet = feeWallet({ ...(row.fee === undefined ? {} : { fee: row.fee }), ...(row.maxFeeMsat === undefined ? {} : { maxFeeMsat: row.maxFeeMsat }) });
      const paidFetch = await payingFetchWith('l402', wallet, 50_000n);
      const response = await paidFetch(`${ORIGIN}/paid/a`);
      expect(paidFetch.receipt(response)).toMatchObject({ paidMsat: 5000n, feesMsat: row.expectedFeesMsat });
      expect(paidFetch.spent()).toMatchObject({ paidMsat: 5000n, feesMsat: row.expectedFeesMsat, remainingBudgetMsat: 45_000n - row.expectedFeesMsat });
    });
  }

  it('a payment that certainly failed frees its amount and fee reserve; one whose outcome is unknown keeps both counted', async () => {
    const failed = feeWallet({ maxFeeMsat: 300n, fail: new SluiceError('invalid_request', 'no route') });
    const failing = await payingFetchWith('l402', failed, 50_000n);
    expect(await refusal(failing(`${ORIGIN}/paid/a`))).toBe('invalid_request');
    expect(failing.spent()).toMatchObject({ paidMsat: 0n, feesMsat: 0n, remainingBudgetMsat: 50_000n });

    const lost = feeWallet({ maxFeeMsat: 300n, fail: new SluiceError('network_error', 'the answer was lost') });
    const unknown = await payingFetchWith('l402', lost, 50_000n);
    expect(await refusal(unknown(`${ORIGIN}/paid/a`))).toBe('network_error');
    expect(unknown.spent()).toMatchObject({ paidMsat: 5000n, feesMsat: 300n, remainingBudgetMsat: 44_700n });
  });

  it('a chain purchase is sized to what the budget pays after fees paid and the fee limit; its fee is on the buying call\'s receipt', async () => {
    const wallet = feeWallet({ fee: 50n, maxFeeMsat: 3000n });
    const paidFetch = await payingFetchWith('chain', wallet, 20_000n);
    const first = await paidFetch(`${ORIGIN}/paid/a`);
    expect(first.status).toBe(200);
    // 100 steps do not fit: (20,000 - 3000 kept for the fee) / 1000 = 17 steps.
    expect(paidFetch.chains().map((chain) => chain.steps)).toEqual([17]);
    expect(paidFetch.receipt(first)).toMatchObject({ scheme: 'chain', paidMsat: 17_000n, feesMsat: 50n });
    for (const path of ['b', 'c']) expect(paidFetch.receipt(await paidFetch(`${ORIGIN}/paid/${path}`))).toMatchObject({ scheme: 'chain', paidMsat: 0n, feesMsat: 0n });
    // 2 steps left, 5 needed: a new chain would need 5000 + 3000 but 20,000 - 17,050 = 2950 is left.
    await expect(paidFetch(`${ORIGIN}/paid/d`)).rejects.toThrow(/a chain for one call needs 5000 msat plus up to 3000 msat of routing fee/);
    expect(wallet.asked).toHaveLength(1);
    expect(paidFetch.spent()).toEqual({ budgetMsat: 20_000n, paidMsat: 17_000n, feesMsat: 50n, remainingBudgetMsat: 2950n, usedMsat: 15_000n, refundedMsat: 0n, paidCalls: 3 });
  });

  it('a chain purchase counts the fees already paid (no fee limit declared)', async () => {
    const wallet = feeWallet({ fee: 1500n });
    const paidFetch = await payingFetchWith('chain', wallet, 16_000n, 10);
    expect((await paidFetch(`${ORIGIN}/paid/a`)).status).toBe(200);
    expect((await paidFetch(`${ORIGIN}/paid/b`)).status).toBe(200);
    // 10,000 + 1500 paid: 4500 left, less than one call's 5000 (fees not counted, 6000 would buy 6 steps).
    expect(await refusal(paidFetch(`${ORIGIN}/paid/c`))).toBe('budget_exceeded');
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 10_000n, feesMsat: 1500n, remainingBudgetMsat: 4500n });
    expect(wallet.asked).toHaveLength(1);
  });

  it('refuses a wallet whose maxFeeMsat is not a non-negative bigint', () => {
    for (const maxFeeMsat of [-1n, 100, '100']) {
      const wallet = { name: 'bad', maxFeeMsat, payInvoice: async () => ({ preimage: PREIMAGE }) } as unknown as WalletAdapter;
      expect(() => createPayingFetch({ wallet, budgetMsat: 1000n })).toThrow(TypeError);
    }
  });
});

describe('wallet adapters report the routing fee', () => {
  const lndAnswer = (lines: unknown[]): typeof fetch => async () => new Response(lines.map((line) => JSON.stringify(line)).join('\n'), { status: 200 });

  const lndRows: { description: string; final: Record<string, unknown>; expected: WalletPayment }[] = [
    { description: 'fee_msat of the final update', final: { status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '1234', fee_sat: '1' }, expected: { preimage: PREIMAGE, feeMsat: 1234n } },
    { description: 'a zero fee', final: { status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '0' }, expected: { preimage: PREIMAGE, feeMsat: 0n } },
    { description: 'no fee_msat: not reported', final: { status: 'SUCCEEDED', payment_preimage: PREIMAGE }, expected: { preimage: PREIMAGE } },
    { description: 'a negative fee_msat: not reported', final: { status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '-5' }, expected: { preimage: PREIMAGE } },
    { description: 'a fee_msat that is not a number: not reported', final: { status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '12abc' }, expected: { preimage: PREIMAGE } },
  ];
  for (const row of lndRows) {
    it(`lndRestWallet: ${row.description}`, async () => {
      const wallet = lndRestWallet({ restUrl: 'https://lnd.test', macaroonHex: '00', fetch: lndAnswer([{ result: { status: 'IN_FLIGHT', fee_msat: '0' } }, { result: row.final }]) });
      expect(await wallet.payInvoice('lnbcrt10n1x')).toEqual(row.expected);
    });
  }

  it('lndRestWallet declares its fee limit and sends it to LND', async () => {
    const bodies: { fee_limit_msat: string }[] = [];
    const recording: typeof fetch = async (_input, init) => {
      bodies.push(JSON.parse(String(init?.body)) as { fee_limit_msat: string });
      return new Response(JSON.stringify({ result: { status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '7' } }));
    };
    expect(lndRestWallet({ restUrl: 'https://lnd.test', macaroonHex: '00' }).maxFeeMsat).toBe(10_000n);
    const wallet = lndRestWallet({ restUrl: 'https://lnd.test', macaroonHex: '00', maxFeeMsat: 2500n, fetch: recording });
    expect(wallet.maxFeeMsat).toBe(2500n);
    await wallet.payInvoice('lnbcrt10n1x');
    expect(bodies[0]?.fee_limit_msat).toBe('2500');
    expect(() => lndRestWallet({ restUrl: 'https://lnd.test', macaroonHex: '00', maxFeeMsat: -1n })).toThrow(TypeError);
  });

  it('devnetWallet: fee_msat of the devnet pay answer', async () => {
    const devnet: typeof fetch = async () => json(200, { payment_hash: 'cd'.repeat(32), preimage: PREIMAGE, amount_msat: '5000', fee_msat: '1000', wallet: 'alice' });
    const wallet = devnetWallet({ baseUrl: 'http://sluice.test', key: 'sk_test', fetch: devnet });
    expect(await wallet.payInvoice('lnbcrt50n1x')).toEqual({ preimage: PREIMAGE, feeMsat: 1000n });
    expect(wallet.maxFeeMsat).toBeUndefined();
  });

  const weblnRows: { description: string; answer: Record<string, unknown>; expected: WalletPayment }[] = [
    { description: 'route.total_fees in sats', answer: { preimage: PREIMAGE, route: { total_amt: 6, total_fees: 2 } }, expected: { preimage: PREIMAGE, feeMsat: 2000n } },
    { description: 'route.total_fees as a decimal string', answer: { preimage: PREIMAGE, route: { total_fees: '3' } }, expected: { preimage: PREIMAGE, feeMsat: 3000n } },
    { description: 'no route: not reported', answer: { preimage: PREIMAGE }, expected: { preimage: PREIMAGE } },
    { description: 'a negative total_fees: not reported', answer: { preimage: PREIMAGE, route: { total_fees: -1 } }, expected: { preimage: PREIMAGE } },
    { description: 'a fractional total_fees: not reported', answer: { preimage: PREIMAGE, route: { total_fees: 1.5 } }, expected: { preimage: PREIMAGE } },
    { description: 'a route that is not an object: not reported', answer: { preimage: PREIMAGE, route: 'fast' }, expected: { preimage: PREIMAGE } },
  ];
  for (const row of weblnRows) {
    it(`weblnWallet: ${row.description}`, async () => {
      const provider = { enable: async () => {}, sendPayment: async () => row.answer as { preimage: string } };
      const wallet = weblnWallet(provider);
      expect(await wallet.payInvoice('lnbcrt50n1x')).toEqual(row.expected);
      expect(wallet.maxFeeMsat).toBeUndefined();
    });
  }
});
