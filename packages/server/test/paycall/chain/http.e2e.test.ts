// End to end over real sockets: a Sluice listening on an ephemeral port (devnet), a paid
// API (plain node:http) that asks the `chain` scheme before serving, and a client that
// only speaks HTTP: it buys a chain, has the devnet wallet pay the invoice through Sluice's
// devnet route, pays three calls with links, races two requests with one link, and asks
// for its refund. Nothing here calls a service directly.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainScheme } from '../../../src/paycall/chain/index.js';
import { ADMIN_KEY, startTestSluice, type TestSluice } from '../../support/sluice.js';

describe('hash-chain tokens end to end over HTTP', () => {
  let t: TestSluice;
  let sluiceUrl: string;
  let api: http.Server;
  let apiUrl: string;
  let app: { id: string; apiKey: string };

  beforeAll(async () => {
    t = await startTestSluice();
    sluiceUrl = (await t.sluice.listen()).replace('[::1]', '127.0.0.1');
    app = await t.createApp('weather api');
    const scheme = createChainScheme(t.sluice.chains, { buyUrl: `${sluiceUrl}/v1/paycall/chains` });
    const price = { priceMsat: msat(2000n), appId: app.id, service: 'weather' };
    api = http.createServer((request, response) => {
      const gateRequest = { method: request.method ?? 'GET', path: request.url ?? '/', headers: request.headers };
      void (async () => {
        if (!scheme.claims(gateRequest)) {
          response.writeHead(402, { 'content-type': 'application/json', ...(await scheme.challenge(gateRequest, price)) });
          response.end(JSON.stringify({ error: { code: 'payment_required', message: 'pay' }, price_msat: '2000' }));
          return;
        }
        const outcome = await scheme.authorize(gateRequest, price);
        if (outcome.kind === 'refused') {
          response.writeHead(outcome.status, { 'content-type': 'application/json', ...outcome.responseHeaders });
          response.end(JSON.stringify({ error: { code: outcome.code, message: outcome.message } }));
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json', ...outcome.responseHeaders });
        response.end(JSON.stringify({ forecast: 'sunny' }));
      })();
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => api?.close(resolve));
    await t?.close();
  });

  const json = async (url: string, init: RequestInit = {}) => {
    const response = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...(init.headers ?? {}) } });
    return { status: response.status, headers: response.headers, body: await response.json() as any };
  };

  it('buys, pays on the devnet, spends three calls, loses a race, and is refunded', async () => {
    // The 402 tells the client where to buy and at what price.
    const challenge = await fetch(`${apiUrl}/forecast`);
    expect(challenge.status).toBe(402);
    const offer = challenge.headers.get('sluice-chain-offer') as string;
    expect(offer).toBe(`buy="${sluiceUrl}/v1/paycall/chains", app="${app.id}", step_msat="1000", steps_per_call="2"`);
    const buyUrl = /buy="([^"]+)"/.exec(offer)?.[1] as string;

    const links = buildChain(randomBytes(32), 20);
    const bought = await json(buyUrl, { method: 'POST', body: JSON.stringify({ app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 20 }) });
    expect(bought.status).toBe(201);
    expect(bought.body).toMatchObject({ status: 'pending', amount_msat: '20000' });
    const id = bought.body.chain_id as string;

    const paid = await json(`${sluiceUrl}/v1/devnet/pay`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` }, body: JSON.stringify({ payment_request: bought.body.invoice.payment_request, wallet: 'alice' }),
    });
    expect(paid.status).toBe(200);
    let status = 'pending';
    for (let i = 0; i < 100 && status === 'pending'; i += 1) {
      status = (await json(`${sluiceUrl}/v1/paycall/chains/${id}`)).body.status;
      if (status === 'pending') await new Promise((r) => setTimeout(r, 10));
    }
    expect(status).toBe('active');

    for (const index of [2, 4, 6]) {
      const call = await json(`${apiUrl}/forecast`, { headers: { 'sluice-chain': `${id} ${index} ${(links[index] as Buffer).toString('hex')}` } });
      expect(call.status).toBe(200);
      expect(call.body).toEqual({ forecast: 'sunny' });
      expect(call.headers.get('sluice-chain-balance')).toBe(`steps=${20 - index}; msat=${(20 - index) * 1000}; index=${index}`);
    }

    // Two requests racing with the same link over two sockets: exactly one is served.
    const header = { 'sluice-chain': `${id} 8 ${(links[8] as Buffer).toString('hex')}` };
    const race = await Promise.all([json(`${apiUrl}/forecast`, { headers: header }), json(`${apiUrl}/forecast`, { headers: header })]);
    expect(race.map((r) => r.status).sort()).toEqual([200, 401]);
    expect(race.find((r) => r.status === 401)?.body.error.code).toBe('chain_link_replayed');

    const forged = await json(`${apiUrl}/forecast`, { headers: { 'sluice-chain': `${id} 10 ${randomBytes(32).toString('hex')}` } });
    expect(forged.status).toBe(401);
    expect(forged.body.error.code).toBe('chain_link_invalid');
    expect((await json(`${sluiceUrl}/v1/paycall/chains/${id}`)).body).toMatchObject({ status: 'active', index: 8, remaining_steps: 12, remaining_msat: '12000' });

    // The app lends the refund's routing-fee budget (at least 10 sat): give it a float first.
    const float = await json(`${sluiceUrl}/v1/invoices`, { method: 'POST', headers: { authorization: `Bearer ${app.apiKey}` }, body: JSON.stringify({ amount_msat: '50000', description: 'float' }) });
    expect((await json(`${sluiceUrl}/v1/devnet/pay`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` }, body: JSON.stringify({ payment_request: float.body.payment_request, wallet: 'alice' }),
    })).status).toBe(200);
    const refundInvoice = await json(`${sluiceUrl}/v1/devnet/invoices`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` }, body: JSON.stringify({ amount_msat: '12000', wallet: 'carol' }),
    });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const refunded = await json(`${sluiceUrl}/v1/paycall/chains/${id}/refund`, {
      method: 'POST', body: JSON.stringify({ index: 9, link: (links[9] as Buffer).toString('hex'), invoice: refundInvoice.body.payment_request }),
    });
    expect(refunded.status).toBe(200);
    expect(refunded.body).toMatchObject({ status: 'refunded', refund: { amount_msat: '12000', payment: { status: 'succeeded' } } });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 12_000n);

    const after = await json(`${apiUrl}/forecast`, { headers: { 'sluice-chain': `${id} 10 ${(links[10] as Buffer).toString('hex')}` } });
    expect(after.status).toBe(402);
    expect(after.body.error.code).toBe('chain_refunded');
    expect(after.headers.get('sluice-chain-offer')).toContain('steps_per_call="2"');
  });
});
