/**
 * The SDK's paying fetch (`createPayingFetch` of @sluice/client) end to end: a real Sluice
 * (SQLite, devnet) with `sluice gateway` beside it in front of a small upstream, and a
 * Fastify server gated by L402 only. The fetch pays with the SDK's devnet wallet adapter
 * (Sluice's `POST /v1/devnet/pay` as node 'alice'), so every msat it reports is checked
 * against the devnet node balances and Sluice's ledger. The devnet charges routing fees (the
 * hub's 1 sat + 100 ppm) and reports them: spent().feesMsat counts them, to the msat.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPayingFetch, devnetWallet, SluiceError, type ChainStorage, type FetchFunction, type PaidCallReceipt, type WalletAdapter } from '@sluice/client';
import { appAccountId } from '../../../src/apps/service.js';
import { createManualClock } from '../../../src/clock.js';
import { msat } from '../../../src/money/msat.js';
import { balanceOf } from '../../../src/ledger/store.js';
import { createLogger } from '../../../src/logger.js';
import { chainAccountId } from '../../../src/paycall/chain/index.js';
import { createPayCallGate } from '../../../src/paycall/gate-combined.js';
import { validateGatewayConfig } from '../../../src/paycall/gateway/config.js';
import { startGatewayBeside, type StartedGateway } from '../../../src/paycall/gateway/index.js';
import { payCallFastify } from '../../../src/paycall/middleware/fastify.js';
import { ADMIN_KEY, startTestSluice, type TestSluice } from '../../support/sluice.js';

/** Sluice's clock: still unless a test moves it (chain expiry). */
const clock = createManualClock(Date.now());
/** Calls one L402 token pays for (a Sluice setting): shows token reuse. */
const L402_CALLS_PER_TOKEN = 3;

interface Upstream {
  url: string;
  bodies: string[];
  close(): Promise<void>;
}

async function startUpstream(): Promise<Upstream> {
  const bodies: string[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      bodies.push(body);
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: request.url, method: request.method, body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('createPayingFetch against a real Sluice (gateway, devnet wallet)', () => {
  let t: TestSluice;
  let sluiceUrl: string;
  let upstream: Upstream;
  let gateway: StartedGateway;
  let l402Only: FastifyInstance;
  let l402OnlyUrl: string;
  /** Routing fees alice paid, read from the devnet pay answers the wallet adapter received (checked against spent().feesMsat). */
  let feesMsat = 0n;
  let wallet: WalletAdapter;

  const alice = () => t.sluice.devnet!.nodeBalanceMsat('alice');
  /** A balance once every spent chain step is settled (the app is paid in sweeps). */
  const ledgerBalance = async (accountId: string) => {
    await t.sluice.chains.settleSpent();
    const account = await t.sluice.ledger.getAccount(accountId);
    return account === null ? 0n : balanceOf(account);
  };

  beforeAll(async () => {
    t = await startTestSluice({ clock, env: { HOST: '127.0.0.1', SLUICE_L402_CALLS_PER_TOKEN: String(L402_CALLS_PER_TOKEN) } });
    sluiceUrl = await t.sluice.listen();
    upstream = await startUpstream();
    const config = validateGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: upstream.url,
      routes: [
        { path: '/free/*', price_msat: '0' },
        { path: '/cheap/*', price_msat: '1500' },
        { path: '/paid/*', price_msat: '5000' },
        { path: '/mixed/cheap', price_msat: '1000' },
        { path: '/mixed/free', price_msat: '0' },
        { path: '/mixed/*', price_msat: '3000' },
      ],
      chain_step_msat: '1000',
      service: 'jokes',
    });
    if (!config.ok) throw new Error(config.errors.join('\n'));
    gateway = await startGatewayBeside(t.sluice, config.config, { logger: createLogger('silent') });

    // A server of its own, gated by L402 alone (no chain offer in its 402s).
    l402Only = Fastify();
    await l402Only.register(payCallFastify, { gate: createPayCallGate([t.sluice.l402.scheme]), appId: gateway.appId, routes: [{ path: '/api/*', price_msat: '2000' }], service: 'weather' });
    l402Only.get('/api/forecast', async () => ({ forecast: 'sunny' }));
    l402OnlyUrl = (await l402Only.listen({ host: '127.0.0.1', port: 0 })).replace('localhost', '127.0.0.1');

    const recordingFetch: FetchFunction = async (input, init) => {
      const response = await fetch(input, init);
      if (input.endsWith('/v1/devnet/pay') && response.ok) feesMsat += BigInt(((await response.clone().json()) as { fee_msat: string }).fee_msat);
      return response;
    };
    wallet = devnetWallet({ baseUrl: sluiceUrl, key: ADMIN_KEY, wallet: 'alice', fetch: recordingFetch });
  });
  afterAll(async () => {
    await l402Only?.close();
    await gateway?.gateway.close();
    await upstream?.close();
    await t?.close();
  });

  it('buys a chain on the first 402, reuses it, sees the balance fall per call, buys another when spent; spent() is exact', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 100_000n, chain: { steps: 12 } });
    // It can stand wherever a fetch is expected.
    const asFetch: typeof fetch = paidFetch;
    expect(asFetch).toBe(paidFetch);
    const payments: bigint[] = [];
    paidFetch.on('payment', (payment) => payments.push(payment.amountMsat));
    const aliceBefore = alice();
    const feesBefore = feesMsat;
    const appBefore = await ledgerBalance(appAccountId(gateway.appId));

    const receipts: PaidCallReceipt[] = [];
    for (let call = 1; call <= 4; call += 1) {
      // The first call is a POST with a body: sent plain, refused with a 402, then sent again paid.
      const response = call === 1
        ? await paidFetch(`${gateway.url}/paid/joke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ call }) })
        : call === 2
          ? await paidFetch(new Request(`${gateway.url}/paid/joke?n=2`, { method: 'PUT', body: 'from a Request' }))
          : await paidFetch(`${gateway.url}/paid/joke?n=${call}`);
      expect(response.status).toBe(200);
      const body = (await response.json()) as { path: string; body: string };
      if (call === 1) expect(body.body).toBe('{"call":1}');
      if (call === 2) expect(body.body).toBe('from a Request');
      receipts.push(paidFetch.receipt(response)!);
    }
    // 12 steps at 1000 msat, 5 steps a call: two calls per chain, then a new chain.
    expect(receipts.map((receipt) => receipt.scheme)).toEqual(['chain', 'chain', 'chain', 'chain']);
    expect(receipts.map((receipt) => receipt.costMsat)).toEqual([5000n, 5000n, 5000n, 5000n]);
    expect(receipts.map((receipt) => receipt.paidMsat)).toEqual([12_000n, 0n, 12_000n, 0n]);
    expect(receipts.map((receipt) => receipt.chain?.remainingSteps)).toEqual([7, 2, 7, 2]);
    expect(receipts.map((receipt) => receipt.chain?.remainingMsat)).toEqual([7000n, 2000n, 7000n, 2000n]);
    const [first, , third] = receipts;
    expect(first?.chain?.chainId).not.toBe(third?.chain?.chainId);
    expect(payments).toEqual([12_000n, 12_000n]);

    // Two payments through the hub, each charged its fee: spent() counts them.
    const fees = feesMsat - feesBefore;
    expect(fees).toBe(2n * (1000n + (12_000n * 100n) / 1_000_000n));
    expect(paidFetch.spent()).toEqual({ budgetMsat: 100_000n, paidMsat: 24_000n, feesMsat: fees, remainingBudgetMsat: 76_000n - fees, usedMsat: 20_000n, refundedMsat: 0n, paidCalls: 4 });
    expect(receipts.map((receipt) => receipt.feesMsat)).toEqual([fees / 2n, 0n, fees / 2n, 0n]);
    // The wallet paid exactly what spent() says: the invoices and the routing fees.
    expect(aliceBefore - alice()).toBe(paidFetch.spent().paidMsat + paidFetch.spent().feesMsat);
    // The ledger agrees: the app earned the steps spent; each chain keeps its unspent 2 steps.
    expect((await ledgerBalance(appAccountId(gateway.appId))) - appBefore).toBe(20_000n);
    for (const receipt of [first, third]) expect(await ledgerBalance(chainAccountId(receipt!.chain!.chainId))).toBe(2000n);
    const held = paidFetch.chains();
    expect(held.map((chain) => [chain.remainingSteps, chain.inUse])).toEqual([[2, false], [2, true]]);

    // A free route costs nothing and sends no credential.
    const free = await paidFetch(`${gateway.url}/free/joke`);
    expect(free.status).toBe(200);
    expect(paidFetch.receipt(free)).toMatchObject({ scheme: null, costMsat: 0n, paidMsat: 0n });
  });

  it('buys what fits the budget, then refuses with budget_exceeded before the wallet is asked (the devnet wallet declares no fee limit: the last fee passes the budget)', async () => {
    const feesBefore = feesMsat;
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 11_000n, chain: { steps: 100 } });
    // 100 steps do not fit: it buys the 11 that do (two calls of 5 steps).
    for (let call = 0; call < 2; call += 1) expect((await paidFetch(`${gateway.url}/paid/budget`)).status).toBe(200);
    expect(paidFetch.chains().map((chain) => chain.steps)).toEqual([11]);
    const aliceBefore = alice();
    const refused = await paidFetch(`${gateway.url}/paid/budget`).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SluiceError);
    expect((refused as SluiceError).code).toBe('budget_exceeded');
    expect(alice()).toBe(aliceBefore);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 11_000n, feesMsat: feesMsat - feesBefore, remainingBudgetMsat: 0n, usedMsat: 10_000n, paidCalls: 2 });
    expect(feesMsat - feesBefore).toBeGreaterThan(0n);
  });

  it('counts the routing fees the devnet reports against the budget: an invoice that fits by amounts alone is refused before the wallet is asked', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 30_000n, chain: false });
    const feesBefore = feesMsat;
    // One L402 token (15,000 msat) pays 3 calls; the fourth needs another 15,000. 15,000 + 15,000
    // fits the 30,000 budget, but not with the first invoice's routing fee.
    for (let call = 0; call < 3; call += 1) expect((await paidFetch(`${gateway.url}/paid/fees`)).status).toBe(200);
    const fee = feesMsat - feesBefore;
    expect(fee).toBe(1000n + (15_000n * 100n) / 1_000_000n);
    const aliceBefore = alice();
    await expect(paidFetch(`${gateway.url}/paid/fees`)).rejects.toMatchObject({ code: 'budget_exceeded' });
    expect(alice()).toBe(aliceBefore);
    expect(feesMsat - feesBefore).toBe(fee);
    expect(paidFetch.spent()).toEqual({ budgetMsat: 30_000n, paidMsat: 15_000n, feesMsat: fee, remainingBudgetMsat: 15_000n - fee, usedMsat: 15_000n, refundedMsat: 0n, paidCalls: 3 });
  });

  it('pays with L402 when chains are off, reusing a token while the server accepts it', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: false });
    const aliceBefore = alice();
    const feesBefore = feesMsat;
    const receipts: PaidCallReceipt[] = [];
    for (let call = 0; call < 4; call += 1) {
      const response = await paidFetch(`${gateway.url}/paid/l402`);
      expect(response.status).toBe(200);
      receipts.push(paidFetch.receipt(response)!);
    }
    // One token pays for 3 calls of 5000 msat (a 15000 msat invoice); the fourth buys another.
    expect(receipts.map((receipt) => receipt.scheme)).toEqual(['l402', 'l402', 'l402', 'l402']);
    expect(receipts.map((receipt) => receipt.paidMsat)).toEqual([15_000n, 0n, 0n, 15_000n]);
    expect(receipts.map((receipt) => receipt.costMsat)).toEqual([5000n, 5000n, 5000n, 5000n]);
    expect(receipts.map((receipt) => receipt.l402RemainingMsat)).toEqual([10_000n, 5000n, 0n, 10_000n]);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 30_000n, feesMsat: feesMsat - feesBefore, usedMsat: 20_000n, paidCalls: 4 });
    expect(aliceBefore - alice()).toBe(30_000n + (feesMsat - feesBefore));
    expect(paidFetch.chains()).toEqual([]);
  });

  it('pays with L402 a server that offers no chain (chains on)', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n });
    const response = await paidFetch(`${l402OnlyUrl}/api/forecast`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ forecast: 'sunny' });
    expect(paidFetch.receipt(response)).toMatchObject({ scheme: 'l402', paidMsat: 6000n, costMsat: 2000n, l402RemainingMsat: 4000n });
    const again = await paidFetch(`${l402OnlyUrl}/api/forecast`);
    expect(paidFetch.receipt(again)).toMatchObject({ scheme: 'l402', paidMsat: 0n, costMsat: 2000n });
  });

  it('concurrent calls on one chain take distinct indexes in order and are each served once', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 200_000n, chain: { steps: 60 } });
    // /cheap costs 1500 msat: 2 steps a call. The first call learns the offer and buys.
    expect((await paidFetch(`${gateway.url}/cheap/warm-up`)).status).toBe(200);
    const responses = await Promise.all(Array.from({ length: 24 }, (_, i) => paidFetch(`${gateway.url}/cheap/${i}`, { method: 'POST', body: `call ${i}` })));
    expect(responses.map((response) => response.status)).toEqual(responses.map(() => 200));
    const indexes = responses.map((response) => paidFetch.receipt(response)!.chain!.index).sort((a, b) => a - b);
    expect(indexes).toEqual(Array.from({ length: 24 }, (_, i) => 4 + 2 * i));
    const bodies = await Promise.all(responses.map(async (response) => ((await response.json()) as { body: string }).body));
    expect(bodies.sort()).toEqual(Array.from({ length: 24 }, (_, i) => `call ${i}`).sort());
    const [chain] = paidFetch.chains();
    expect(chain).toMatchObject({ index: 50, remainingSteps: 10 });
    expect((await t.call('GET', `/v1/paycall/chains/${chain!.chainId}`, { key: null })).body).toMatchObject({ index: 50, status: 'active' });
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 60_000n, usedMsat: 50_000n, paidCalls: 25 });
  });

  it('concurrent first calls share one chain purchase, charged to one receipt', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 100_000n, chain: { steps: 40 } });
    const payments: string[] = [];
    paidFetch.on('payment', (payment) => payments.push(payment.kind));
    const responses = await Promise.all(Array.from({ length: 6 }, (_, i) => paidFetch(`${gateway.url}/paid/cold/${i}`)));
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(payments).toEqual(['chain_purchase']);
    const paid = responses.map((response) => paidFetch.receipt(response)!.paidMsat).sort((a, b) => Number(a - b));
    expect(paid).toEqual([0n, 0n, 0n, 0n, 0n, 40_000n]);
    expect(paidFetch.chains()).toMatchObject([{ index: 30, remainingSteps: 10 }]);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 40_000n, usedMsat: 30_000n, paidCalls: 6 });
  });

  it('guesses the price of a new route from its directory; a wrong guess costs a round trip, never money', async () => {
    const sent: { path: string; chain: boolean; status: number }[] = [];
    const counting = async (input: string, init?: RequestInit): Promise<Response> => {
      const response = await fetch(input, init);
      const path = new URL(input).pathname;
      if (path.startsWith('/mixed/')) sent.push({ path, chain: new Headers(init?.headers).has('sluice-chain'), status: response.status });
      return response;
    };
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 100_000n, chain: { steps: 30 }, fetch: counting });
    const costs: [string, number, string | null, bigint][] = [];
    for (const path of ['/mixed/a', '/mixed/b', '/mixed/cheap', '/mixed/free', '/mixed/c', '/mixed/cheap']) {
      const response = await paidFetch(`${gateway.url}${path}`);
      const receipt = paidFetch.receipt(response)!;
      costs.push([path, response.status, receipt.scheme, receipt.costMsat]);
    }
    expect(costs).toEqual([
      ['/mixed/a', 200, 'chain', 3000n],
      ['/mixed/b', 200, 'chain', 3000n],
      ['/mixed/cheap', 200, 'chain', 1000n],
      ['/mixed/free', 200, null, 0n],
      ['/mixed/c', 200, 'chain', 3000n],
      ['/mixed/cheap', 200, 'chain', 1000n],
    ]);
    // /mixed/b went paid at once (no 402); /mixed/cheap's guess of 3 steps was refused as
    // skipped twice, then learned from a 402; the second /mixed/cheap went paid at once.
    expect(sent.filter((entry) => entry.path === '/mixed/b').map((entry) => entry.status)).toEqual([200]);
    expect(sent.filter((entry) => entry.path === '/mixed/cheap').map((entry) => entry.status)).toEqual([401, 401, 402, 200, 200]);
    const [chain] = paidFetch.chains();
    expect(chain).toMatchObject({ index: 3 + 3 + 1 + 3 + 1 });
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 30_000n, usedMsat: 11_000n, paidCalls: 5 });
  });

  it('links that reach the server out of order are refused as skipped, resynced and sent again: each call served once', async () => {
    // The network reorders: the call holding index 10 is held back 150 ms, so 15 and 20 arrive first.
    const sent: { index: number; status: number; code: string | null }[] = [];
    const reordering = async (input: string, init?: RequestInit): Promise<Response> => {
      const header = new Headers(init?.headers).get('sluice-chain');
      const index = header === null ? null : Number(header.split(' ')[1]);
      if (index === 10 && !sent.some((entry) => entry.index === 10)) await new Promise((resolve) => setTimeout(resolve, 150));
      const response = await fetch(input, init);
      if (index !== null) {
        const code = response.status === 200 ? null : ((await response.clone().json()) as { error: { code: string } }).error.code;
        sent.push({ index, status: response.status, code });
      }
      return response;
    };
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 25 }, fetch: reordering });
    expect((await paidFetch(`${gateway.url}/paid/order`)).status).toBe(200);
    const responses = await Promise.all([0, 1, 2].map((i) => paidFetch(`${gateway.url}/paid/order/${i}`)));
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200]);
    expect(responses.map((response) => paidFetch.receipt(response)!.chain!.index).sort((a, b) => a - b)).toEqual([10, 15, 20]);
    // Refusals happened, and were skipped links, never double spends.
    expect(sent.filter((entry) => entry.status !== 200).map((entry) => entry.code)).toContain('chain_link_skipped');
    expect(sent.filter((entry) => entry.status === 200).map((entry) => entry.index).sort((a, b) => a - b)).toEqual([5, 10, 15, 20]);
    expect(paidFetch.chains()).toMatchObject([{ index: 20, remainingSteps: 5 }]);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 25_000n, usedMsat: 20_000n, paidCalls: 4 });
  });

  it('40 concurrent calls with random network delays: every call served once, the indexes a gapless sequence', async () => {
    const reordering = async (input: string, init?: RequestInit): Promise<Response> => {
      if (new Headers(init?.headers).has('sluice-chain')) await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 25)));
      return fetch(input, init);
    };
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 200_000n, chain: { steps: 100 }, fetch: reordering });
    expect((await paidFetch(`${gateway.url}/cheap/random`)).status).toBe(200);
    const responses = await Promise.all(Array.from({ length: 40 }, () => paidFetch(`${gateway.url}/cheap/random`)));
    const failed = await Promise.all(responses.filter((response) => response.status !== 200).map(async (response) => `${response.status} ${await response.text()}`));
    expect(failed).toEqual([]);
    const indexes = responses.map((response) => paidFetch.receipt(response)!.chain!.index).sort((a, b) => a - b);
    expect(indexes).toEqual(Array.from({ length: 40 }, (_, i) => 4 + 2 * i));
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 100_000n, usedMsat: 82_000n, paidCalls: 41 });
  });

  it('an answer lost after the server took the link: the call fails, the next one asks the server first and spent() counts the lost call', async () => {
    let loseNext = false;
    const lossy = async (input: string, init?: RequestInit): Promise<Response> => {
      const response = await fetch(input, init);
      if (loseNext && new Headers(init?.headers).has('sluice-chain')) {
        loseNext = false;
        await response.body?.cancel();
        throw new TypeError('fetch failed (connection reset)');
      }
      return response;
    };
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 30 }, fetch: lossy });
    expect((await paidFetch(`${gateway.url}/paid/lossy`)).status).toBe(200);
    loseNext = true;
    await expect(paidFetch(`${gateway.url}/paid/lossy`)).rejects.toThrow(/connection reset/);
    const after = await paidFetch(`${gateway.url}/paid/lossy`);
    expect(paidFetch.receipt(after)).toMatchObject({ scheme: 'chain', costMsat: 5000n, chain: { index: 15 } });
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 30_000n, usedMsat: 15_000n });
  });

  it('two fetches sharing one stored chain: refused links (replayed) resync from the server, never corrupt the index', async () => {
    const saved = new Map<string, string>();
    const storage: ChainStorage = { getItem: (key) => saved.get(key) ?? null, setItem: (key, value) => void saved.set(key, value) };
    const a = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 30, storage } });
    expect((await a(`${gateway.url}/paid/shared`)).status).toBe(200);
    expect(JSON.parse(saved.values().next().value as string)).toHaveLength(1);

    // Another session restores the same chain from storage and spends the next link.
    const b = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 30, storage } });
    await b.restore();
    expect(b.chains()).toMatchObject([{ index: 5, inUse: true }]);
    const fromB = await b(`${gateway.url}/paid/shared`);
    expect(b.receipt(fromB)).toMatchObject({ scheme: 'chain', paidMsat: 0n, chain: { index: 10 } });

    // a still thinks the chain is at 5: its link 10 is refused as replayed, it resyncs and pays with 15.
    const fromA = await a(`${gateway.url}/paid/shared`);
    expect(fromA.status).toBe(200);
    expect(a.receipt(fromA)).toMatchObject({ scheme: 'chain', paidMsat: 0n, costMsat: 5000n, chain: { index: 15, remainingSteps: 15 } });
    const fromB2 = await b(`${gateway.url}/paid/shared`);
    expect(b.receipt(fromB2)).toMatchObject({ chain: { index: 20 } });
    expect(a.spent().paidMsat).toBe(30_000n);
    expect(b.spent().paidMsat).toBe(0n);
  });

  it('a new session spends every stored chain with steps left before buying another', async () => {
    const saved = new Map<string, string>();
    const storage: ChainStorage = { getItem: (key) => saved.get(key) ?? null, setItem: (key, value) => void saved.set(key, value) };
    const first = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 7, storage } });
    // 7 steps, 5 a call: each call leaves 2 steps on its chain and the next call buys another.
    for (let call = 0; call < 2; call += 1) expect((await first(`${gateway.url}/paid/stored`)).status).toBe(200);
    expect((JSON.parse(saved.get('sluice.paycall.chains') as string) as unknown[]).length).toBe(2);

    // /cheap costs 2 steps: the next session pays two calls with the leftovers, then buys.
    const next = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 7, storage } });
    const receipts: PaidCallReceipt[] = [];
    for (let call = 0; call < 3; call += 1) receipts.push(next.receipt(await next(`${gateway.url}/cheap/stored`))!);
    expect(receipts.map((receipt) => [receipt.paidMsat, receipt.chain?.remainingSteps])).toEqual([[0n, 0], [0n, 0], [7000n, 5]]);
    expect(new Set(receipts.map((receipt) => receipt.chain?.chainId)).size).toBe(3);
    // Spent chains leave the storage; the new one is in it.
    expect((JSON.parse(saved.get('sluice.paycall.chains') as string) as { chain_id: string }[]).map((stored) => stored.chain_id)).toEqual([receipts[2]!.chain!.chainId]);
  });

  it('refunds the unused steps of its chains to an invoice the wallet makes, then buys anew', async () => {
    // The app lends the refund's routing-fee budget: give it a float first.
    const appKey = gateway.createdAppKey as string;
    const float = await t.call('POST', '/v1/invoices', { key: appKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);

    const paidFetch = createPayingFetch({ wallet, budgetMsat: 100_000n, chain: { steps: 23 } });
    for (let call = 0; call < 3; call += 1) expect((await paidFetch(`${gateway.url}/paid/refund`)).status).toBe(200);
    const [chain] = paidFetch.chains();
    expect(chain).toMatchObject({ index: 15, remainingSteps: 8, remainingMsat: 8000n });

    const aliceBefore = alice();
    const refunds = await paidFetch.refund();
    expect(refunds).toEqual([{ chainId: chain!.chainId, amountMsat: 8000n, paymentHash: expect.stringMatching(/^[0-9a-f]{64}$/), status: 'succeeded' }]);
    expect(alice() - aliceBefore).toBe(8000n);
    expect(await ledgerBalance(chainAccountId(chain!.chainId))).toBe(0n);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 23_000n, usedMsat: 15_000n, refundedMsat: 8000n });
    expect(paidFetch.chains()).toMatchObject([{ chainId: chain!.chainId, status: 'refunded', remainingSteps: 0, inUse: false }]);
    // Nothing left to refund; the next call buys a new chain.
    expect(await paidFetch.refund()).toEqual([]);
    const next = await paidFetch(`${gateway.url}/paid/refund`);
    expect(paidFetch.receipt(next)).toMatchObject({ scheme: 'chain', paidMsat: 23_000n });

    // The new chain's 18 unused steps, to an invoice someone else made for exactly that.
    const newChain = paidFetch.receipt(next)!.chain!.chainId;
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '18000', wallet: 'carol' } });
    const carolBefore = t.sluice.devnet!.nodeBalanceMsat('carol');
    expect(await paidFetch.refund({ chainId: newChain, invoice: invoice.body.payment_request })).toMatchObject([{ chainId: newChain, amountMsat: 18_000n, status: 'succeeded' }]);
    expect(t.sluice.devnet!.nodeBalanceMsat('carol') - carolBefore).toBe(18_000n);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 46_000n, usedMsat: 20_000n, refundedMsat: 26_000n });
  });

  it('refunds to a Lightning address (LNURL-pay served on loopback, paid to devnet node erin)', async () => {
    const erin = t.sluice.devnet!.backendFor('erin');
    const metadata = JSON.stringify([['text/plain', 'Refunds for erin (devnet)']]);
    let host = '';
    const lnurl = http.createServer((request, response) => {
      void (async () => {
        const url = new URL(request.url ?? '/', 'http://x');
        response.writeHead(200, { 'content-type': 'application/json' });
        if (url.pathname === '/.well-known/lnurlp/erin') {
          response.end(JSON.stringify({ tag: 'payRequest', callback: `http://${host}/lnurlp/erin/callback`, minSendable: 1000, maxSendable: 1_000_000_000, metadata }));
        } else {
          const invoice = await erin.createInvoice({ amountMsat: msat(BigInt(url.searchParams.get('amount') ?? '0')), descriptionHash: createHash('sha256').update(metadata).digest('hex'), expiryS: 600 });
          response.end(JSON.stringify({ pr: invoice.paymentRequest, routes: [] }));
        }
      })();
    });
    await new Promise<void>((resolve) => lnurl.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(lnurl.address() as AddressInfo).port}`;
    try {
      const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 16 } });
      expect((await paidFetch(`${gateway.url}/cheap/address`)).status).toBe(200);
      const erinBefore = t.sluice.devnet!.nodeBalanceMsat('erin');
      expect(await paidFetch.refund({ lightningAddress: `erin@${host}` })).toMatchObject([{ amountMsat: 14_000n, status: 'succeeded' }]);
      expect(t.sluice.devnet!.nodeBalanceMsat('erin') - erinBefore).toBe(14_000n);
    } finally {
      await new Promise((resolve) => lnurl.close(resolve));
    }
  });

  it('an expired chain is dropped for a new one, and its unused steps are still refunded (runs last: it moves the clock 30 days)', async () => {
    const appKey = gateway.createdAppKey as string;
    const float = await t.call('POST', '/v1/invoices', { key: appKey, body: { amount_msat: '30000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'bob' } })).status).toBe(200);
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 100_000n, chain: { steps: 20 } });
    const before = await paidFetch(`${gateway.url}/paid/expiry`);
    const old = paidFetch.receipt(before)!.chain!.chainId;
    clock.advanceMs(30 * 24 * 3600 * 1000 + 1000);
    const after = await paidFetch(`${gateway.url}/paid/expiry`);
    expect(after.status).toBe(200);
    expect(paidFetch.receipt(after)).toMatchObject({ scheme: 'chain', paidMsat: 20_000n, chain: { index: 5 } });
    expect(paidFetch.receipt(after)!.chain!.chainId).not.toBe(old);
    expect(paidFetch.chains().map((chain) => [chain.chainId === old, chain.status, chain.inUse])).toEqual([[true, 'expired', false], [false, 'active', true]]);
    const aliceBefore = alice();
    expect(await paidFetch.refund({ chainId: old })).toMatchObject([{ chainId: old, amountMsat: 15_000n, status: 'succeeded' }]);
    expect(alice() - aliceBefore).toBe(15_000n);
    // The chain in use was not touched.
    expect((await paidFetch(`${gateway.url}/paid/expiry`)).status).toBe(200);
    expect(paidFetch.spent()).toMatchObject({ paidMsat: 40_000n, usedMsat: 15_000n, refundedMsat: 15_000n });
  });

  it('a wallet that certainly failed frees the budget; one whose outcome is unknown keeps it counted and the chain is used once the server says it is paid', async () => {
    const saved = new Map<string, string>();
    const storage: ChainStorage = { getItem: (key) => saved.get(key) ?? null, setItem: (key, value) => void saved.set(key, value) };
    const broke: WalletAdapter = { name: 'broke', payInvoice: async () => { throw new SluiceError('devnet_payment_failed', 'no route'); } };
    const failing = createPayingFetch({ wallet: broke, budgetMsat: 50_000n, chain: { steps: 10, storage } });
    await expect(failing(`${gateway.url}/paid/wallets`)).rejects.toMatchObject({ code: 'devnet_payment_failed' });
    expect(failing.spent().paidMsat).toBe(0n);
    expect(JSON.parse(saved.get('sluice.paycall.chains') as string)).toEqual([]);

    // Pays, then loses the answer: the fetch cannot know, asks the server, and goes on.
    const flaky: WalletAdapter = {
      name: 'flaky',
      async payInvoice(paymentRequest) {
        await wallet.payInvoice(paymentRequest);
        throw new SluiceError('network_error', 'the answer was lost');
      },
    };
    const unknown = createPayingFetch({ wallet: flaky, budgetMsat: 50_000n, chain: { steps: 10 } });
    const response = await unknown(`${gateway.url}/paid/wallets`);
    expect(response.status).toBe(200);
    expect(unknown.receipt(response)).toMatchObject({ scheme: 'chain', paidMsat: 10_000n, chain: { index: 5 } });
    expect(unknown.spent().paidMsat).toBe(10_000n);
  });

  it('a 402 it may not pay is handed back whole, and nothing is paid', async () => {
    const nothing = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: false, l402: false });
    const unpaid = await nothing(`${gateway.url}/paid/unpayable`);
    expect(unpaid.status).toBe(402);
    expect(await unpaid.json()).toMatchObject({ error: { code: 'payment_required' }, price_msat: '5000' });
    expect(unpaid.headers.get('www-authenticate')).toMatch(/^L402 /);
    expect(nothing.receipt(unpaid)).toMatchObject({ scheme: null, costMsat: 0n, paidMsat: 0n, status: 402 });
    // A call with its own Authorization (meant for the API) is not paid with L402 either.
    const ownAuthorization = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: false });
    const bearer = await ownAuthorization(`${gateway.url}/paid/unpayable`, { headers: { authorization: 'Bearer api-key' } });
    expect(bearer.status).toBe(402);
    expect(nothing.spent().paidMsat + ownAuthorization.spent().paidMsat).toBe(0n);
  });

  it('refuses a streamed body clearly, before anything is sent', async () => {
    const paidFetch = createPayingFetch({ wallet, budgetMsat: 10_000n });
    const stream = new ReadableStream({ start: (controller) => controller.close() });
    await expect(paidFetch(`${gateway.url}/paid/stream`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit)).rejects.toThrow(/streamed body/);
    expect(paidFetch.spent().paidMsat).toBe(0n);
  });
});
