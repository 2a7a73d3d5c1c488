/**
 * The pay-per-call middleware in Fastify, Express and plain node:http, each serving over a
 * real socket: the same table of cases runs against all three. The schemes are the
 * TEST-ONLY ones from test-scheme.ts (mechanics only; the real schemes are exercised by
 * the gateway's end-to-end tests).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPayCallGate } from '../../../src/paycall/gate-combined.js';
import { payCallExpress } from '../../../src/paycall/middleware/express.js';
import { payCallFastify } from '../../../src/paycall/middleware/fastify.js';
import { withPayCall } from '../../../src/paycall/middleware/node-http.js';
import type { PayCallOptions } from '../../../src/paycall/middleware/core.js';
import { testAuthorizationScheme, testTokenScheme } from './test-scheme.js';

const ROUTES = [
  { path: '/free/*', price_msat: '0' },
  { path: '/paid/*', price_msat: '5000', service: 'jokes' },
];

/** What every handler answers: what it saw of the request, so tests can check stripping. */
function echo(request: { url?: string; headers: http.IncomingHttpHeaders; paycall?: unknown }): string {
  return JSON.stringify({ url: request.url, headers: request.headers, paycall: request.paycall ?? null }, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
}

interface Served {
  name: string;
  url: string;
  close(): Promise<void>;
}

function options(): PayCallOptions {
  return { gate: createPayCallGate([testTokenScheme({ balance: 10 }), testAuthorizationScheme()]), appId: 'app_test', routes: ROUTES };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function serveFastify(): Promise<Served> {
  const app = Fastify();
  await app.register(payCallFastify, options());
  app.all('/*', async (request, reply) => reply.type('application/json').send(echo({ url: request.url, headers: request.headers, paycall: request.paycall })));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { name: 'fastify', url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
}

async function serveExpress(): Promise<Served> {
  const app = express();
  app.use(payCallExpress(options()));
  app.use((request, response) => void response.type('application/json').send(echo({ url: request.originalUrl, headers: request.headers, paycall: (request as { paycall?: unknown }).paycall })));
  const server = http.createServer(app);
  const url = await listen(server);
  return { name: 'express', url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function serveNodeHttp(): Promise<Served> {
  const server = http.createServer(
    withPayCall(options(), (request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(echo(request));
    }),
  );
  const url = await listen(server);
  return { name: 'node:http', url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe.each([
  ['fastify', serveFastify],
  ['express', serveExpress],
  ['node:http', serveNodeHttp],
] as const)('pay-per-call middleware: %s', (_name, serve) => {
  let served: Served;
  beforeAll(async () => {
    served = await serve();
  });
  afterAll(async () => {
    await served.close();
  });

  it('serves a free route and a route no rule prices without asking for money', async () => {
    const free = await fetch(served.url + '/free/thing', { headers: { 'test-token': 'never-judged' } });
    expect(free.status).toBe(200);
    expect((await free.json()).paycall).toEqual({ scheme: 'free', chargedMsat: '0', priceMsat: '0', route: '/free/*' });
    const unpriced = await fetch(served.url + '/elsewhere');
    expect(unpriced.status).toBe(200);
    expect((await unpriced.json()).paycall).toBeNull();
  });

  it('refuses a path the framework would decode onto a priced route (an encoded letter or slash): 400, the handler never runs', async () => {
    for (const path of ['/pai%64/joke', '/free/..%2fpaid/joke', '/free%2fpaid/joke']) {
      const response = await fetch(served.url + path);
      expect(response.status, path).toBe(400);
      const body = await response.json();
      expect(body.error.code, path).toBe('invalid_request');
      expect(body.paycall, path).toBeUndefined();
    }
  });

  it('answers a priced route without credential with 402, every challenge and price_msat; the handler never runs', async () => {
    const response = await fetch(served.url + '/paid/joke?x=1');
    expect(response.status).toBe(402);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('test-offer')).toBe('price="5000", app="app_test", service="jokes"');
    expect(response.headers.get('www-authenticate')).toBe('TESTPAY realm="test"');
    const body = await response.json();
    expect(body).toEqual({ error: { code: 'payment_required', message: expect.any(String) }, price_msat: '5000' });
  });

  it('serves a paid call with the scheme response headers, and strips the credential before the handler', async () => {
    const response = await fetch(served.url + '/paid/joke', { headers: { 'test-token': 'ok', authorization: 'Bearer app-own-key' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('test-balance')).toMatch(/^\d+$/);
    const seen = await response.json();
    expect(seen.headers['test-token']).toBeUndefined();
    expect(seen.headers.authorization).toBe('Bearer app-own-key');
    expect(seen.paycall).toEqual({ scheme: 'chain', chargedMsat: '5000', priceMsat: '5000', route: '/paid/*' });
  });

  it('strips an Authorization that held the payment', async () => {
    const response = await fetch(served.url + '/paid/joke', { headers: { authorization: 'TESTPAY ok' } });
    expect(response.status).toBe(200);
    expect((await response.json()).headers.authorization).toBeUndefined();
  });

  it('refuses a bad credential with the scheme status and code, and the price', async () => {
    const response = await fetch(served.url + '/paid/joke', { method: 'POST', headers: { 'test-token': 'forged', 'content-type': 'application/json' }, body: '{"a":1}' });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: { code: 'chain_link_invalid', message: 'test token refused' }, price_msat: '5000' });
  });
});
