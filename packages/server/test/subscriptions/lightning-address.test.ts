// A subscription's refund to the Lightning address given at creation (LUD-16 / LNURL-pay):
// a local LNURL-pay service backed by the devnet wallet erin issues the invoice, the cancel
// needs no destination, and erin receives exactly the unused balance.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { msat } from '../../src/money/msat.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('subscription refund to a Lightning address', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let server: http.Server;
  let host: string;
  const metadata = JSON.stringify([['text/plain', 'Refunds for erin (devnet)']]);

  beforeAll(async () => {
    t = await startTestSluice({ clock });
    const erin = t.sluice.devnet!.backendFor('erin');
    server = http.createServer(async (request, response) => {
      const url = new URL(request.url ?? '/', 'http://x');
      const send = (status: number, body: unknown) => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(body));
      };
      if (url.pathname === '/.well-known/lnurlp/erin') {
        send(200, { tag: 'payRequest', callback: `http://${host}/lnurlp/erin/callback`, minSendable: 1, maxSendable: 1_000_000_000, metadata });
      } else if (url.pathname === '/lnurlp/erin/callback') {
        const invoice = await erin.createInvoice({ amountMsat: msat(BigInt(url.searchParams.get('amount') ?? '0')), descriptionHash: createHash('sha256').update(metadata).digest('hex'), expiryS: 600 });
        send(200, { pr: invoice.paymentRequest, routes: [] });
      } else {
        send(404, { status: 'ERROR', reason: 'no such user' });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('cancel by the merchant refunds the unused balance to the address kept since creation', async () => {
    const app = await t.createApp('rental');
    const plan = (await t.call('POST', '/v1/plans', { key: app.apiKey, body: { name: 'bike', rate_msat_per_s: '300', increment_s: 60, prepayment_s: 3600, grace_s: 300, contract_s: 86_400 } })).body;
    const created = await t.call('POST', '/v1/subscriptions', { key: app.apiKey, body: { plan_id: plan.id, refund: { lightning_address: `erin@${host}` } } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.refund.destination).toEqual({ lightning_address: `erin@${host}` });
    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: created.body.invoice.payment_request, wallet: 'alice' } });
    expect(BigInt(paid.body.amount_msat)).toBe(300n * 3600n);
    await t.sluice.subscriptions.idle();
    await t.call('POST', '/v1/devnet/clock/advance', { body: { seconds: 25 * 60 } });
    const devnet = t.sluice.devnet!;
    const before = devnet.nodeBalanceMsat('erin');
    const cancelled = await t.call('POST', `/v1/subscriptions/${created.body.id}/cancel`, { key: app.apiKey, body: {} });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body.ended_by).toBe('merchant');
    await t.sluice.subscriptions.idle();
    const refund = 300n * 3600n - 26n * 300n * 60n;
    expect(devnet.nodeBalanceMsat('erin') - before).toBe(refund);
    expect((await t.call('GET', `/v1/subscriptions/${created.body.id}`, { key: app.apiKey })).body.refund).toMatchObject({ status: 'succeeded', amount_msat: String(refund) });
  });
});
