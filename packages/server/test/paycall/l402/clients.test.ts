// Real L402 clients (@getalby/lightning-tools fetchWithL402 and lsat-js) against a real
// Sluice over HTTP, paying its invoices with the devnet wallet of node 'alice'.
//
// The priced route is a TEST HARNESS: a small Fastify server that asks the Sluice's `l402`
// scheme directly (claims / authorize / challenge), standing in for the pay-per-call
// middleware, which is built and tested separately.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import Fastify, { type FastifyInstance } from 'fastify';
import { fetchWithL402 } from '@getalby/lightning-tools/402/l402';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appAccountId } from '../../../src/apps/service.js';
import { createManualClock } from '../../../src/clock.js';
import { balanceOf } from '../../../src/ledger/store.js';
import { msat } from '../../../src/money/msat.js';
import type { GateOutcome, GateRequest } from '../../../src/paycall/gate.js';
import { createPayCallGate } from '../../../src/paycall/gate-combined.js';
import { payCallFastify } from '../../../src/paycall/middleware/fastify.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const require = createRequire(import.meta.url);
const { Lsat } = require('lsat-js') as {
  Lsat: {
    fromHeader(header: string): { invoice: string; invoiceAmount: number; paymentHash: string; setPreimage(preimage: string): void; toToken(): string };
  };
};

const PRICE_MSAT = 5000n;

interface Harness {
  url: string;
  close(): Promise<void>;
}

/** TEST HARNESS: one priced route gated by the l402 scheme alone. */
async function startHarness(test: TestSluice, appId: string): Promise<Harness> {
  const server: FastifyInstance = Fastify();
  const scheme = test.sluice.l402.scheme;
  server.get('/paid/hello', async (request, reply) => {
    const gateRequest: GateRequest = { method: request.method, path: request.url.split('?')[0] as string, headers: request.headers };
    const price = { priceMsat: msat(PRICE_MSAT), appId, service: 'hello' };
    const outcome: GateOutcome = scheme.claims(gateRequest)
      ? await scheme.authorize(gateRequest, price)
      : { kind: 'refused', status: 402, code: 'payment_required', message: 'pay', responseHeaders: await scheme.challenge(gateRequest, price) };
    for (const [name, value] of Object.entries(outcome.responseHeaders)) reply.header(name, value);
    if (outcome.kind === 'refused') return reply.code(outcome.status).send({ error: { code: outcome.code, message: outcome.message } });
    return { hello: 'world', charged_msat: outcome.chargedMsat.toString() };
  });
  const address = await server.listen({ port: 0, host: '127.0.0.1' });
  return { url: `${address}/paid/hello`, close: () => server.close() };
}

/** A wallet as both clients want it: pays with the devnet node 'alice'. */
function aliceWallet(test: TestSluice) {
  const alice = test.sluice.devnet!.backendFor('alice');
  const paid: string[] = [];
  return {
    paid,
    async payInvoice({ invoice }: { invoice: string }): Promise<{ preimage: string }> {
      const outcome = await alice.payInvoice({ paymentRequest: invoice, feeLimitMsat: msat(1_000_000n), timeoutS: 30 });
      if (outcome.status !== 'succeeded') throw new Error(`devnet payment ${outcome.status}: ${'detail' in outcome ? outcome.detail : ''}`);
      paid.push(outcome.paymentHash);
      return { preimage: outcome.preimage };
    },
  };
}

async function appBalance(test: TestSluice, appId: string): Promise<bigint> {
  const account = await test.sluice.ledger.getAccount(appAccountId(appId));
  return account ? balanceOf(account) : 0n;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('fetchWithL402 (@getalby/lightning-tools) against Sluice', () => {
  let test: TestSluice;
  let harness: Harness;
  let appId: string;
  beforeAll(async () => {
    test = await startTestSluice();
    appId = (await test.createApp('l402 api')).id;
    harness = await startHarness(test, appId);
  });
  afterAll(async () => {
    await harness?.close();
    await test?.close();
  });

  it('pays the challenge, is served, and the app is credited', async () => {
    const wallet = aliceWallet(test);
    const before = await appBalance(test, appId);
    const response = await fetchWithL402(harness.url, {}, { wallet });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ hello: 'world', charged_msat: '5000' });
    expect(response.headers.get('sluice-l402-balance')).toBe('msat=0');
    expect(response.payment).toMatchObject({ paid: true, amountSat: 5 });
    expect(wallet.paid).toHaveLength(1);
    await eventually(async () => (await appBalance(test, appId)) === before + PRICE_MSAT);

    // The token bought one call (SLUICE_L402_CALLS_PER_TOKEN=1): reusing it gets a 402
    // with a fresh challenge, and fetchWithL402 does not pay again for reused credentials.
    const again = await fetchWithL402(harness.url, {}, { wallet, credentials: response.payment!.credentials });
    expect(again.status).toBe(402);
    expect((await again.json()).error.code).toBe('l402_budget_exhausted');
    expect(again.headers.get('www-authenticate')).toMatch(/^L402 version="0", token="[^"]+", macaroon="[^"]+", invoice="lnbcrt/);
    expect(wallet.paid).toHaveLength(1);
  });

  it('a plain 402 carries both challenges (L402 and LSAT) for the same macaroon and invoice', async () => {
    const response = await fetch(harness.url);
    expect(response.status).toBe(402);
    // fetch joins the two header lines with ", ", as fetchWithL402 then reads them.
    const joined = response.headers.get('www-authenticate') as string;
    const match = /^L402 version="0", token="([^"]+)", macaroon="([^"]+)", invoice="([^"]+)", LSAT macaroon="([^"]+)", invoice="([^"]+)"$/.exec(joined);
    expect(match).not.toBeNull();
    expect(new Set([match![1], match![2], match![4]]).size).toBe(1);
    expect(match![3]).toBe(match![5]);
  });

  it('two racing requests with a one-call token: exactly one is served', async () => {
    const wallet = aliceWallet(test);
    const first = await fetch(harness.url);
    const challenge = first.headers.get('www-authenticate') as string;
    const token = /token="([^"]+)"/.exec(challenge)![1] as string;
    const invoice = /invoice="([^"]+)"/.exec(challenge)![1] as string;
    const { preimage } = await wallet.payInvoice({ invoice });
    const authorization = `L402 ${token}:${preimage}`;
    const responses = await Promise.all([1, 2, 3].map(() => fetch(harness.url, { headers: { authorization } })));
    expect(responses.map((response) => response.status).sort()).toEqual([200, 402, 402]);
  });

  it('forged credentials are 401 with a code and no challenge; nothing is served', async () => {
    const wallet = aliceWallet(test);
    const challenge = (await fetch(harness.url)).headers.get('www-authenticate') as string;
    const token = /token="([^"]+)"/.exec(challenge)![1] as string;
    const invoice = /invoice="([^"]+)"/.exec(challenge)![1] as string;
    // Unpaid: any preimage but the right one.
    const unpaid = await fetch(harness.url, { headers: { authorization: `L402 ${token}:${'ab'.repeat(32)}` } });
    expect(unpaid.status).toBe(401);
    expect((await unpaid.json()).error.code).toBe('l402_wrong_preimage');
    expect(unpaid.headers.get('www-authenticate')).toBeNull();
    const { preimage } = await wallet.payInvoice({ invoice });
    const bytes = Buffer.from(token, 'base64');
    bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 1;
    const tampered = await fetch(harness.url, { headers: { authorization: `L402 ${bytes.toString('base64')}:${preimage}` } });
    expect(tampered.status).toBe(401);
    expect((await tampered.json()).error.code).toBe('l402_invalid_macaroon');
    const malformed = await fetch(harness.url, { headers: { authorization: `L402 ${token}` } });
    expect(malformed.status).toBe(401);
    expect((await malformed.json()).error.code).toBe('l402_malformed');
    // The genuine credential still works: the refusals consumed nothing.
    expect((await fetch(harness.url, { headers: { authorization: `LSAT ${token}:${preimage}` } })).status).toBe(200);
  });
  it('works the same through the pay-per-call Fastify middleware (the real delivery, not the harness)', async () => {
    const server = Fastify();
    await server.register(payCallFastify, { gate: createPayCallGate([test.sluice.l402.scheme]), appId, routes: [{ path: '/paid/*', price_msat: '5000' }] });
    server.get('/paid/joke', async (request) => ({ joke: 'knock knock', paid_with: request.paycall?.scheme, authorization: request.headers.authorization ?? null }));
    const address = await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const wallet = aliceWallet(test);
      const response = await fetchWithL402(`${address}/paid/joke`, {}, { wallet });
      expect(response.status).toBe(200);
      // The credential was stripped before the handler ran.
      expect(await response.json()).toEqual({ joke: 'knock knock', paid_with: 'l402', authorization: null });
      const again = await fetchWithL402(`${address}/paid/joke`, {}, { wallet, credentials: response.payment!.credentials });
      expect(again.status).toBe(402);
      expect((await again.json()).error.code).toBe('l402_budget_exhausted');
    } finally {
      await server.close();
    }
  });
});

describe('lsat-js against Sluice (3 calls per token, restart, expiry)', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-l402-e2e-'));
  const clock = createManualClock(Date.now());
  const env = { SLUICE_L402_CALLS_PER_TOKEN: '3', SLUICE_L402_TOKEN_TTL_S: '3600' };
  let test: TestSluice;
  let harness: Harness;
  let appId: string;
  beforeAll(async () => {
    test = await startTestSluice({ dataDir, env, clock });
    appId = (await test.createApp('lsat api')).id;
    harness = await startHarness(test, appId);
  });
  afterAll(async () => {
    await harness?.close();
    await test?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('parses the challenge, pays, spends three calls, survives a restart, then expires', async () => {
    const challenged = await fetch(harness.url);
    expect(challenged.status).toBe(402);
    const lsat = Lsat.fromHeader(challenged.headers.get('www-authenticate') as string);
    expect(lsat.invoiceAmount).toBe(15);
    const { preimage } = await aliceWallet(test).payInvoice({ invoice: lsat.invoice });
    lsat.setPreimage(preimage);
    const authorization = lsat.toToken();
    expect(authorization.startsWith('LSAT ')).toBe(true);
    const call = () => fetch(harness.url, { headers: { authorization } });

    const first = await call();
    expect(first.status).toBe(200);
    expect(first.headers.get('sluice-l402-balance')).toBe('msat=10000');

    // Restart: the root key and the token's use survive.
    await harness.close();
    await test.close();
    test = await startTestSluice({ dataDir, env, clock });
    harness = await startHarness(test, appId);
    const second = await call();
    expect(second.status).toBe(200);
    expect(second.headers.get('sluice-l402-balance')).toBe('msat=5000');

    clock.advanceMs(3_600_000);
    const expired = await call();
    expect(expired.status).toBe(402);
    expect((await expired.json()).error.code).toBe('l402_expired');
    expect(expired.headers.get('www-authenticate')).toMatch(/^L402 version="0", token=/);
  });

  it('spends exactly the budget', async () => {
    const lsat = Lsat.fromHeader((await fetch(harness.url)).headers.get('www-authenticate') as string);
    lsat.setPreimage((await aliceWallet(test).payInvoice({ invoice: lsat.invoice })).preimage);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) statuses.push((await fetch(harness.url, { headers: { authorization: lsat.toToken() } })).status);
    expect(statuses).toEqual([200, 200, 200, 402]);
  });

  it('an old token asking again gets the same pending challenge, not an invoice per request; a new one once it is paid', async () => {
    const lsat = Lsat.fromHeader((await fetch(harness.url)).headers.get('www-authenticate') as string);
    lsat.setPreimage((await aliceWallet(test).payInvoice({ invoice: lsat.invoice })).preimage);
    const call = () => fetch(harness.url, { headers: { authorization: lsat.toToken() } });
    for (let i = 0; i < 3; i += 1) expect((await call()).status).toBe(200);
    const invoicesBefore = await test.sluice.records.listInvoices(appId, 1000);
    const refusals = await Promise.all(Array.from({ length: 5 }, call));
    const challenges = refusals.map((refusal) => refusal.headers.get('www-authenticate'));
    expect(refusals.map((refusal) => refusal.status)).toEqual([402, 402, 402, 402, 402]);
    expect(new Set(challenges).size).toBe(1);
    for (let i = 0; i < 3; i += 1) expect((await call()).headers.get('www-authenticate')).toBe(challenges[0]);
    const invoicesAfter = await test.sluice.records.listInvoices(appId, 1000);
    expect(invoicesAfter.length - invoicesBefore.length).toBe(1);

    // The renewal works as any challenge (lsat-js parses and pays it); once it is paid, the
    // old token asking again gets a new one.
    const renewal = Lsat.fromHeader(challenges[0] as string);
    renewal.setPreimage((await aliceWallet(test).payInvoice({ invoice: renewal.invoice })).preimage);
    expect((await fetch(harness.url, { headers: { authorization: renewal.toToken() } })).status).toBe(200);
    await eventually(async () => (await call()).headers.get('www-authenticate') !== challenges[0]);
    const next = (await call()).headers.get('www-authenticate');
    expect(next).not.toBe(challenges[0]);
    expect((await call()).headers.get('www-authenticate')).toBe(next);

    // Expired: the same, one pending challenge for the old token.
    clock.advanceMs(3_600_000);
    const expired = await Promise.all([call(), call(), call()]);
    expect(expired.map((response) => response.status)).toEqual([402, 402, 402]);
    expect((await expired[0]!.json()).error.code).toBe('l402_expired');
    expect(new Set(expired.map((response) => response.headers.get('www-authenticate'))).size).toBe(1);
  });
});
