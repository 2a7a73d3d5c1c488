/**
 * The gateway's CORS over real sockets (node:http, so Origin and the preflight headers are
 * sent exactly as a browser sends them): preflights answered free, refusals and forwarded
 * answers carrying allow-origin and exposing the challenge headers, a disallowed origin
 * left without, the forwarded chain purchase (`/v1/paycall/*`) too. The gate uses the
 * TEST-ONLY schemes of ../middleware/test-scheme.ts; the stand-in "Sluice API" is a plain
 * HTTP server that sends CORS headers of its own, which the gateway must replace.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.js';
import { createPayCallGate } from '../../../src/paycall/gate-combined.js';
import { validateGatewayConfig, type GatewayConfig } from '../../../src/paycall/gateway/config.js';
import { createGateway, type Gateway } from '../../../src/paycall/gateway/server.js';
import { testAuthorizationScheme, testTokenScheme } from '../middleware/test-scheme.js';

const PAGE = 'https://app.example.com';
const EXPOSED = ['sluice-chain-offer', 'sluice-chain-balance', 'sluice-l402-balance', 'www-authenticate'];

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(new URL(path, base), { method, headers: { connection: 'close', ...headers } }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

interface Server {
  url: string;
  hits: string[];
  close(): Promise<void>;
}

/** Answers every request with its method and path, and CORS headers the gateway must not pass on. */
async function startServer(): Promise<Server> {
  const hits: string[] = [];
  const server = http.createServer((request, response) => {
    hits.push(`${request.method} ${request.url}`);
    response
      .writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': 'https://evil.example', vary: 'Accept-Encoding' })
      .end(JSON.stringify({ method: request.method, url: request.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function gatewayConfig(upstream: string, extra: Record<string, unknown>): GatewayConfig {
  const result = validateGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstream,
    routes: [
      { path: '/free/*', price_msat: '0' },
      { path: '/paid/*', price_msat: '5000' },
    ],
    ...extra,
  });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.config;
}

async function startGateway(upstream: Server, api: Server, extra: Record<string, unknown>): Promise<{ gateway: Gateway; url: string }> {
  const gateway = await createGateway({
    config: gatewayConfig(upstream.url, extra),
    gate: createPayCallGate([testTokenScheme({ balance: 1000 }), testAuthorizationScheme()]),
    appId: 'app_gw',
    logger: createLogger('silent'),
    paycallApiOrigin: api.url,
  });
  return { gateway, url: await gateway.listen() };
}

function expectExposed(answer: Answer): void {
  const exposed = String(answer.headers['access-control-expose-headers']).toLowerCase().split(',').map((name) => name.trim());
  expect(exposed).toEqual(expect.arrayContaining(EXPOSED));
}

describe('gateway CORS: a list of origins', () => {
  let upstream: Server;
  let api: Server;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startServer();
    api = await startServer();
    ({ gateway, url } = await startGateway(upstream, api, { cors: { origins: [PAGE, 'http://localhost:5173'], max_age_s: 120 }, challenges_per_minute: 2 }));
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
    await api.close();
  });

  it('answers a preflight for a priced route itself: 204, the paying headers allowed, never forwarded nor counted', async () => {
    const hitsBefore = upstream.hits.length;
    // More preflights than the challenge limit (2 a minute): none is counted.
    for (let index = 0; index < 4; index += 1) {
      const preflight = await call(url, 'OPTIONS', '/paid/echo', {
        origin: PAGE,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'sluice-chain, content-type, x-trace-id, bad header, x:y',
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe(PAGE);
      expect(preflight.headers['access-control-allow-methods']).toContain('POST');
      const allowed = String(preflight.headers['access-control-allow-headers']).toLowerCase().split(',').map((name) => name.trim());
      expect(allowed).toEqual(expect.arrayContaining(['sluice-chain', 'authorization', 'content-type', 'x-trace-id']));
      expect(allowed).not.toContain('bad header');
      expect(allowed).not.toContain('x:y');
      expect(allowed.length).toBe(new Set(allowed).size);
      expect(preflight.headers['access-control-max-age']).toBe('120');
      expect(preflight.headers.vary).toContain('Origin');
      expect(preflight.body).toBe('');
    }
    expect(upstream.hits.length).toBe(hitsBefore);
    // The limiter still has its two challenges: the preflights took none.
    expect((await call(url, 'GET', '/paid/echo', { origin: PAGE })).status).toBe(402);
    expect((await call(url, 'GET', '/paid/echo', { origin: PAGE })).status).toBe(402);
  });

  it('answers a preflight for a free route, and for a path no rule names, without forwarding', async () => {
    const hitsBefore = upstream.hits.length;
    for (const path of ['/free/echo', '/unrouted']) {
      const preflight = await call(url, 'OPTIONS', path, { origin: 'http://localhost:5173', 'access-control-request-method': 'GET' });
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    }
    expect(upstream.hits.length).toBe(hitsBefore);
  });

  it('puts allow-origin and the exposed challenge headers on a 402, a 401 and a 404', async () => {
    const challenged = await call(url, 'GET', '/paid/other', { origin: PAGE, 'test-token': 'ok' });
    expect(challenged.status).toBe(200);
    const refusals = [
      await call(url, 'GET', '/paid/echo', { origin: PAGE, 'test-token': 'forged' }),
      await call(url, 'GET', '/nothing-here', { origin: PAGE }),
    ];
    expect(refusals.map((answer) => answer.status)).toEqual([401, 404]);
    for (const answer of [challenged, ...refusals]) {
      expect(answer.headers['access-control-allow-origin']).toBe(PAGE);
      expect(answer.headers.vary).toContain('Origin');
      expectExposed(answer);
    }
  });

  it('answers 402 with allow-origin and exposes WWW-Authenticate and the offer', async () => {
    // A fresh gateway: the limiter of the one above is spent by now.
    const fresh = await startGateway(upstream, api, { cors: { origins: [PAGE] } });
    try {
      const answer = await call(fresh.url, 'GET', '/paid/echo', { origin: PAGE });
      expect(answer.status).toBe(402);
      expect(answer.headers['www-authenticate']).toBe('TESTPAY realm="test"');
      expect(answer.headers['access-control-allow-origin']).toBe(PAGE);
      expectExposed(answer);
    } finally {
      await fresh.gateway.close();
    }
  });

  it('replaces the upstream\'s own CORS headers on a forwarded answer, keeping its Vary', async () => {
    const answer = await call(url, 'GET', '/free/echo', { origin: PAGE });
    expect(answer.status).toBe(200);
    expect(answer.headers['access-control-allow-origin']).toBe(PAGE);
    expect(answer.headers.vary).toBe('Accept-Encoding, Origin');
    expectExposed(answer);
  });

  it('gives a disallowed origin no allow-origin, on a preflight or an answer', async () => {
    const preflight = await call(url, 'OPTIONS', '/paid/echo', { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    expect(preflight.headers['access-control-allow-headers']).toBeUndefined();
    const answer = await call(url, 'GET', '/free/echo', { origin: 'https://evil.example' });
    expect(answer.status).toBe(200);
    // Not even the upstream's own allow-origin gets through.
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(answer.headers['access-control-expose-headers']).toBeUndefined();
    expect(answer.headers.vary).toContain('Origin');
    const noOrigin = await call(url, 'GET', '/free/echo');
    expect(noOrigin.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('forwards an OPTIONS that is not a preflight (no Access-Control-Request-Method) like any request', async () => {
    const answer = await call(url, 'OPTIONS', '/free/echo', { origin: PAGE });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ method: 'OPTIONS', url: '/free/echo' });
    expect(answer.headers['access-control-allow-origin']).toBe(PAGE);
  });

  it('gives the chain purchase (/v1/paycall/*, forwarded to the Sluice API) the same CORS headers', async () => {
    const hitsBefore = api.hits.length;
    const preflight = await call(url, 'OPTIONS', '/v1/paycall/chains', {
      origin: PAGE,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type',
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(PAGE);
    expect(api.hits.length).toBe(hitsBefore);
    const bought = await call(url, 'POST', '/v1/paycall/chains', { origin: PAGE, 'content-type': 'application/json' });
    expect(bought.status).toBe(200);
    expect(JSON.parse(bought.body)).toEqual({ method: 'POST', url: '/v1/paycall/chains' });
    expect(bought.headers['access-control-allow-origin']).toBe(PAGE);
    expect(bought.headers.vary).toBe('Accept-Encoding, Origin');
    expectExposed(bought);
    const refused = await call(url, 'POST', '/v1/paycall/chains', { origin: 'https://evil.example' });
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('gateway CORS: any origin, and none configured', () => {
  let upstream: Server;
  let api: Server;

  beforeAll(async () => {
    upstream = await startServer();
    api = await startServer();
  });
  afterAll(async () => {
    await upstream.close();
    await api.close();
  });

  it('with origins "*" answers "*" to any page', async () => {
    const { gateway, url } = await startGateway(upstream, api, { cors: { origins: '*' } });
    try {
      const preflight = await call(url, 'OPTIONS', '/paid/echo', { origin: 'https://anyone.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'sluice-chain' });
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe('*');
      expect(preflight.headers['access-control-max-age']).toBe('600');
      const answer = await call(url, 'GET', '/paid/echo', { origin: 'https://anyone.example' });
      expect(answer.status).toBe(402);
      expect(answer.headers['access-control-allow-origin']).toBe('*');
      expectExposed(answer);
    } finally {
      await gateway.close();
    }
  });

  it('without cors sends no CORS headers and forwards a preflight like before', async () => {
    const { gateway, url } = await startGateway(upstream, api, {});
    try {
      const hitsBefore = upstream.hits.length;
      const preflight = await call(url, 'OPTIONS', '/free/echo', { origin: PAGE, 'access-control-request-method': 'GET' });
      expect(preflight.status).toBe(200);
      expect(upstream.hits.length).toBe(hitsBefore + 1);
      const answer = await call(url, 'GET', '/paid/echo', { origin: PAGE });
      expect(answer.status).toBe(402);
      expect(answer.headers['access-control-allow-origin']).toBeUndefined();
      expect(answer.headers['access-control-expose-headers']).toBeUndefined();
    } finally {
      await gateway.close();
    }
  });
});

describe('gateway CORS: config', () => {
  const minimal = { listen: { host: '127.0.0.1', port: 0 }, upstream: 'http://127.0.0.1:3000', routes: [{ path: '/paid/*', price_msat: '5000' }] };

  it('reads origins and max_age_s, defaults max_age_s to 600, and null when absent', () => {
    const listed = validateGatewayConfig({ ...minimal, cors: { origins: [PAGE, 'http://localhost:5173'], max_age_s: 60 } });
    expect(listed.ok && listed.config.cors).toEqual({ origins: [PAGE, 'http://localhost:5173'], maxAgeS: 60 });
    const any = validateGatewayConfig({ ...minimal, cors: { origins: '*' } });
    expect(any.ok && any.config.cors).toEqual({ origins: '*', maxAgeS: 600 });
    const absent = validateGatewayConfig(minimal);
    expect(absent.ok && absent.config.cors).toBeNull();
  });

  it('names every problem: unknown fields, bad origins, a bad max age, a missing list', () => {
    const result = validateGatewayConfig({
      ...minimal,
      cors: { origins: ['https://app.example.com/', 'ftp://files.example', 'app.example.com', 7, 'https://ok.example'], max_age_s: -1, credentials: true },
    });
    expect(result.ok).toBe(false);
    const errors = result.ok ? [] : result.errors;
    expect(errors).toEqual(expect.arrayContaining([
      'cors.credentials: unknown field (expected origins, max_age_s)',
      expect.stringMatching(/^cors\.origins\[0\]: must be an origin/),
      expect.stringMatching(/^cors\.origins\[1\]: must be an origin/),
      expect.stringMatching(/^cors\.origins\[2\]: must be an origin/),
      expect.stringMatching(/^cors\.origins\[3\]: must be an origin/),
      expect.stringMatching(/^cors\.max_age_s: must be an integer from 0 to 86400/),
    ]));
    expect(errors.some((error) => error.startsWith('cors.origins[4]'))).toBe(false);
    const missing = validateGatewayConfig({ ...minimal, cors: {} });
    expect(missing.ok ? [] : missing.errors).toEqual([expect.stringMatching(/^cors\.origins: required/)]);
    const notObject = validateGatewayConfig({ ...minimal, cors: '*' });
    expect(notObject.ok ? [] : notObject.errors).toEqual([expect.stringMatching(/^cors: must be an object/)]);
    const emptyList = validateGatewayConfig({ ...minimal, cors: { origins: [] } });
    expect(emptyList.ok).toBe(false);
  });
});
