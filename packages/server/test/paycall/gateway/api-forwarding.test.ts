/**
 * `/v1/paycall/*` through `sluice gateway` (startGatewayBeside, a real Sluice on the devnet):
 * the API's answers, its refusals included, reach the client as the API gave them, and its
 * per-address rate limit (SLUICE_RATE_LIMIT_PER_MINUTE, unauthenticated routes such as
 * buying a chain) counts each client apart, not every purchase as the gateway's 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.js';
import { buildChain } from '../../../src/paycall/chain/index.js';
import { validateGatewayConfig } from '../../../src/paycall/gateway/config.js';
import { startGatewayBeside, type StartedGateway } from '../../../src/paycall/gateway/index.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const RATE_LIMIT_PER_MINUTE = 3;

/**
 * `sluice gateway` beside `test`'s Sluice, trusting X-Forwarded-For: the test's requests all
 * come from 127.0.0.1, so the test poses as a proxy naming the clients.
 */
async function startGateway(test: TestSluice, upstream: string): Promise<StartedGateway> {
  const config = validateGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstream,
    routes: [{ path: '/paid/*', price_msat: '5000' }],
    trust_forwarded_headers: true,
  });
  if (!config.ok) throw new Error(config.errors.join('\n'));
  return startGatewayBeside(test.sluice, config.config, { logger: createLogger('silent') });
}

/** A chain purchase's body (a new 4-step chain of the gateway's app). */
const purchaseBody = (appId: string): string =>
  JSON.stringify({ app_id: appId, anchor: (buildChain(randomBytes(32), 4)[0] as Buffer).toString('hex'), steps: 4 });

describe('gateway: /v1/paycall/* handed to the Sluice API beside it', () => {
  let test: TestSluice;
  let upstream: http.Server;
  let started: StartedGateway;

  beforeAll(async () => {
    test = await startTestSluice({ env: { HOST: '127.0.0.1', SLUICE_RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT_PER_MINUTE) } });
    await test.sluice.listen();
    upstream = http.createServer((_request, response) => response.end('upstream'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    started = await startGateway(test, `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
  });
  afterAll(async () => {
    await started?.gateway.close();
    upstream?.closeAllConnections();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
    await test?.close();
  });

  const buy = (client: string): Promise<Response> =>
    fetch(`${started.url}/v1/paycall/chains`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.99, ${client}` },
      body: purchaseBody(started.appId),
    });

  it('limits chain purchases per client address, not for all clients of the gateway at once', async () => {
    for (let purchase = 0; purchase < RATE_LIMIT_PER_MINUTE; purchase++) expect((await buy('198.51.100.1')).status).toBe(201);
    const limited = await buy('198.51.100.1');
    expect(limited.status).toBe(429);
    expect((await limited.json()).error.code).toBe('rate_limited');
    // Another client of the same gateway still buys.
    expect((await buy('198.51.100.2')).status).toBe(201);
  });

  it("passes the API's refusals on with their own status and code", async () => {
    const rows: { description: string; init: RequestInit; path: string; status: number; code: string }[] = [
      { description: 'an unknown chain', init: { headers: { 'x-forwarded-for': '198.51.100.3' } }, path: '/v1/paycall/chains/chain_nope', status: 404, code: 'not_found' },
      {
        description: 'a body with an unknown field',
        init: { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.4' }, body: JSON.stringify({ app_id: 'x', anchor: 'a', steps: 1, extra: 1 }) },
        path: '/v1/paycall/chains',
        status: 400,
        code: 'unknown_field',
      },
      {
        description: 'a body that is not JSON',
        init: { method: 'POST', headers: { 'content-type': 'text/plain', 'x-forwarded-for': '198.51.100.5' }, body: 'hello' },
        path: '/v1/paycall/chains',
        status: 415,
        code: 'unsupported_media_type',
      },
    ];
    for (const row of rows) {
      const response = await fetch(`${started.url}${row.path}`, row.init);
      expect(response.status, row.description).toBe(row.status);
      expect((await response.json()).error.code, row.description).toBe(row.code);
    }
  });

  it('streams a chunked request body (no content-length) to the API', async () => {
    const body = purchaseBody(started.appId);
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.request(`${started.url}/v1/paycall/chains`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.6' } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      request.write(body.slice(0, 10));
      setTimeout(() => request.end(body.slice(10)), 20);
    });
    expect(status).toBe(201);
  });
});

describe('gateway: the client address the API beside it sees cannot be chosen by the client', () => {
  let test: TestSluice;
  let started: StartedGateway;

  beforeAll(async () => {
    // The API trusts proxies in the clients' own range: it must still count the address the
    // gateway decided, not entries of X-Forwarded-For the client wrote itself.
    test = await startTestSluice({ env: { HOST: '127.0.0.1', SLUICE_RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT_PER_MINUTE), SLUICE_TRUSTED_PROXIES: '127.0.0.1, 198.51.100.0/24' } });
    // No upstream: only /v1/paycall/* is asked for.
    started = await startGateway(test, 'http://127.0.0.1:9');
  });
  afterAll(async () => {
    await started?.gateway.close();
    await test?.close();
  });

  it('limits one client however it fills X-Forwarded-For before the proxy entry', async () => {
    const statuses: number[] = [];
    for (let purchase = 0; purchase <= RATE_LIMIT_PER_MINUTE; purchase++) {
      const answer = await fetch(`${started.url}/v1/paycall/chains`, {
        method: 'POST',
        // A different made-up address each time, then the (trusted) proxy's entry: the client is 198.51.100.7.
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `192.0.2.${purchase + 1}, 198.51.100.7` },
        body: purchaseBody(started.appId),
      });
      statuses.push(answer.status);
    }
    expect(statuses).toEqual([...Array.from({ length: RATE_LIMIT_PER_MINUTE }, () => 201), 429]);
  });
});
