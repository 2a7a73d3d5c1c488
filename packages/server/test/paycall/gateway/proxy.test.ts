/**
 * The gateway's proxy mechanics in front of a real upstream HTTP server on an ephemeral
 * port, over real sockets. The gate uses the TEST-ONLY schemes of
 * ../middleware/test-scheme.ts; e2e-*.test.ts repeat the money paths with the real
 * chain and L402 schemes on the devnet.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { generate } from 'selfsigned';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createLogger } from '../../../src/logger.js';
import { createPayCallGate } from '../../../src/paycall/gate-combined.js';
import { validateGatewayConfig, type GatewayConfig } from '../../../src/paycall/gateway/config.js';
import { createGateway, type Gateway } from '../../../src/paycall/gateway/server.js';
import { createChallengeLimiter } from '../../../src/paycall/gateway/challenge-limit.js';
import { testAuthorizationScheme, testTokenScheme } from '../middleware/test-scheme.js';

const BIG_CHUNKS = 256;
const CHUNK = Buffer.alloc(64 * 1024, 7);

interface Upstream {
  url: string;
  port: number;
  /** Headers of the last upgrade request the upstream saw. */
  lastUpgradeHeaders: http.IncomingHttpHeaders | null;
  busyHits: number;
  flakyHits: number;
  close(): Promise<void>;
}

async function startUpstream(): Promise<Upstream> {
  const state = { lastUpgradeHeaders: null as http.IncomingHttpHeaders | null, busyHits: 0, flakyHits: 0 };
  const server = http.createServer((request, response) => {
    const url = request.url ?? '/';
    if (url.startsWith('/free/big') || url.startsWith('/paid/big')) {
      // A large response written chunk by chunk with backpressure: the gateway must stream it.
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      let sent = 0;
      const writeMore = (): void => {
        while (sent < BIG_CHUNKS) {
          sent += 1;
          if (!response.write(CHUNK)) return void response.once('drain', writeMore);
        }
        response.end();
      };
      writeMore();
      return;
    }
    if (url.startsWith('/free/slow')) return; // never answers: the gateway times out
    if (url.startsWith('/free/busy')) {
      state.busyHits += 1;
      response.writeHead(503, { 'retry-after': '0' }).end('busy');
      return;
    }
    if (url.startsWith('/free/flaky')) {
      // Every other request: the connection is cut before any answer (a keep-alive race).
      state.flakyHits += 1;
      if (state.flakyHits % 2 === 1) return void request.socket.destroy();
      response.writeHead(200).end('second try');
      return;
    }
    const hash = createHash('sha256');
    let length = 0;
    request.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    request.on('end', () => {
      const body = JSON.stringify({ method: request.method, url, headers: request.headers, body_sha256: hash.digest('hex'), body_length: length });
      response.writeHead(200, { 'content-type': 'application/json', 'test-balance': 'upstream-must-not-win' }).end(body);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (request, socket, head) => {
    state.lastUpgradeHeaders = request.headers;
    if (request.url?.startsWith('/free/no-ws')) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno');
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get lastUpgradeHeaders() {
      return state.lastUpgradeHeaders;
    },
    get busyHits() {
      return state.busyHits;
    },
    get flakyHits() {
      return state.flakyHits;
    },
    close: async () => {
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function gatewayConfig(upstream: string, extra: Record<string, unknown> = {}): GatewayConfig {
  const result = validateGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    upstream,
    routes: [
      { path: '/free/*', price_msat: '0' },
      { path: '/paid/*', price_msat: '5000' },
    ],
    upstream_timeout_ms: 400,
    ...extra,
  });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.config;
}

describe('gateway proxy (test schemes)', () => {
  let upstream: Upstream;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    gateway = await createGateway({
      config: gatewayConfig(upstream.url),
      gate: createPayCallGate([testTokenScheme({ balance: 1000 }), testAuthorizationScheme()]),
      appId: 'app_gw',
      logger: createLogger('silent'),
    });
    url = await gateway.listen();
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('passes a free route to the upstream with X-Forwarded-* set and the query kept', async () => {
    const response = await fetch(`${url}/free/echo?q=1&r=two`, { headers: { 'x-forwarded-for': '6.6.6.6', 'x-custom': 'kept' } });
    expect(response.status).toBe(200);
    const seen = await response.json();
    expect(seen.url).toBe('/free/echo?q=1&r=two');
    expect(seen.headers['x-custom']).toBe('kept');
    // Not trusted by default: the client's own X-Forwarded-For is replaced, not appended to.
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe(new URL(url).host);
  });

  it('does not forward hop-by-hop headers, nor those Connection names', async () => {
    const raw = await rawRequest(url, [
      'GET /free/echo HTTP/1.1', 'host: gw', 'connection: close, x-hop', 'x-hop: 1', 'keep-alive: timeout=5', 'te: trailers',
      'upgrade: foo', 'proxy-connection: keep-alive', 'proxy-authorization: Basic eA==', 'x-end-to-end: kept', '', '',
    ].join('\r\n'));
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    // The body may come chunked: the JSON is between the first "{" and the last "}".
    const seen = JSON.parse(raw.slice(raw.indexOf('{'), raw.lastIndexOf('}') + 1));
    for (const name of ['x-hop', 'keep-alive', 'te', 'upgrade', 'proxy-connection', 'proxy-authorization']) expect(seen.headers[name], name).toBeUndefined();
    expect(seen.headers['x-end-to-end']).toBe('kept');
    // Nor back: the upstream's own keep-alive does not override the client's "close".
    expect(raw).not.toMatch(/keep-alive: timeout=5/i);
    expect(raw).toMatch(/\r\nconnection: close\r\n/i);
  });

  it('answers a priced route without credential with 402, the challenges and price_msat, and forwards nothing', async () => {
    const response = await fetch(`${url}/paid/echo`);
    expect(response.status).toBe(402);
    expect(response.headers.get('test-offer')).toBe('price="5000", app="app_gw", service="gateway"');
    expect(response.headers.get('www-authenticate')).toBe('TESTPAY realm="test"');
    expect(await response.json()).toEqual({ error: { code: 'payment_required', message: expect.any(String) }, price_msat: '5000' });
  });

  it('forwards a paid call without the payment credential, keeps an upstream Bearer key, adds the balance header', async () => {
    const response = await fetch(`${url}/paid/echo`, { headers: { 'test-token': 'ok', authorization: 'Bearer for-upstream' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('test-balance')).toMatch(/^\d+$/);
    const seen = await response.json();
    expect(seen.headers['test-token']).toBeUndefined();
    expect(seen.headers.authorization).toBe('Bearer for-upstream');
    const l402 = await fetch(`${url}/paid/echo`, { headers: { authorization: 'TESTPAY ok' } });
    expect(l402.status).toBe(200);
    expect((await l402.json()).headers.authorization).toBeUndefined();
  });

  it('refuses a bad credential with the scheme code, never forwarding', async () => {
    const response = await fetch(`${url}/paid/echo`, { headers: { 'test-token': 'forged' } });
    expect(response.status).toBe(401);
    expect((await response.json()).error.code).toBe('chain_link_invalid');
  });

  it('answers 404 for a path no rule names, and 400 for an ambiguous path', async () => {
    const unnamed = await fetch(`${url}/elsewhere`);
    expect(unnamed.status).toBe(404);
    expect((await unnamed.json()).error.code).toBe('not_found');
    // Raw request lines: fetch would normalise dot segments away before sending.
    for (const path of ['/free/..%2fpaid/echo', '/free/%2e%2e/paid/echo', '/free/../paid/echo', '/%70aid/echo', '//paid/echo']) {
      const raw = await rawRequest(url, `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
      expect(raw, path).toMatch(/^HTTP\/1\.1 400/);
      expect(raw).toContain('"code":"invalid_request"');
    }
  });

  it("keeps the status of Fastify's own refusals, with the registry's code, in Sluice's error shape", async () => {
    const rows = [
      { description: 'an unreadable Content-Type', request: 'POST /free/echo HTTP/1.1\r\nhost: x\r\ncontent-type: ;;;\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx', status: 415, code: 'unsupported_media_type' },
      { description: 'a URL the router cannot decode', request: 'GET /free/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', status: 400, code: 'invalid_request' },
    ];
    for (const row of rows) {
      const raw = await rawRequest(url, row.request);
      expect(raw, row.description).toMatch(new RegExp(`^HTTP/1\\.1 ${row.status} `));
      const body = JSON.parse(raw.slice(raw.indexOf('{'), raw.lastIndexOf('}') + 1));
      expect(body, row.description).toEqual({ error: { code: row.code, message: expect.any(String) } });
    }
  });

  it('streams a large response body intact', async () => {
    const response = await fetch(`${url}/free/big`);
    expect(response.status).toBe(200);
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      length += chunk.length;
    }
    const expected = createHash('sha256');
    for (let i = 0; i < BIG_CHUNKS; i++) expected.update(CHUNK);
    expect(length).toBe(BIG_CHUNKS * CHUNK.length);
    expect(hash.digest('hex')).toBe(expected.digest('hex'));
  });

  it('streams a large request body (chunked, no content-length) to the upstream intact', async () => {
    const total = 8 * 1024 * 1024;
    const piece = Buffer.alloc(1024 * 1024, 3);
    const expected = createHash('sha256');
    for (let i = 0; i < total / piece.length; i++) expected.update(piece);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < total / piece.length; i++) controller.enqueue(piece);
        controller.close();
      },
    });
    const response = await fetch(`${url}/paid/upload`, { method: 'POST', headers: { 'test-token': 'ok', 'content-type': 'application/octet-stream' }, body, duplex: 'half' } as RequestInit);
    expect(response.status).toBe(200);
    const seen = await response.json();
    expect(seen.body_length).toBe(total);
    expect(seen.body_sha256).toBe(expected.digest('hex'));
  });

  it('passes an upstream 503 on as it is, asked once', async () => {
    const before = upstream.busyHits;
    const response = await fetch(`${url}/free/busy`);
    expect(response.status).toBe(503);
    expect(await response.text()).toBe('busy');
    expect(upstream.busyHits - before).toBe(1);
  });

  it('tries an idempotent request once more when the upstream cuts the connection before answering; not a POST', async () => {
    const get = await fetch(`${url}/free/flaky`);
    expect(get.status).toBe(200);
    expect(await get.text()).toBe('second try');
    const post = await fetch(`${url}/free/flaky`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(502);
    expect((await post.json()).error.code).toBe('upstream_unavailable');
  });

  it('answers 504 upstream_timeout when the upstream is too slow', async () => {
    const response = await fetch(`${url}/free/slow`);
    expect(response.status).toBe(504);
    expect((await response.json()).error.code).toBe('upstream_timeout');
  });

  it('answers its health check with the upstream reachable, without forwarding it', async () => {
    const response = await fetch(`${url}/_sluice/health`);
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body).toMatchObject({ status: 'ok', gateway: 'ok', upstream: { reachable: true, status: 200 } });
  });

  it('answers another method on its health check with 405 method_not_allowed and Allow', async () => {
    const response = await fetch(`${url}/_sluice/health`, { method: 'POST', body: 'x' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, HEAD');
    expect((await response.json()).error.code).toBe('method_not_allowed');
  });

  it('proxies a paid WebSocket upgrade: priced like a request, then piped both ways', async () => {
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/paid/ws`);
      ws.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      ws.on('open', () => reject(new Error('an unpaid upgrade was accepted')));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(402);

    const ws = new WebSocket(`${url.replace('http', 'ws')}/paid/ws`, { headers: { 'test-token': 'ok' } });
    const balance = new Promise<string | undefined>((resolve, reject) => {
      ws.on('upgrade', (response) => resolve(response.headers['test-balance'] as string | undefined));
      ws.on('error', reject);
    });
    const opened = new Promise((resolve) => ws.once('open', resolve));
    expect(await balance).toMatch(/^\d+$/);
    await opened;
    const echoed = await new Promise<string>((resolve) => {
      ws.once('message', (data) => resolve(data.toString()));
      ws.send('hello through the gateway');
    });
    expect(echoed).toBe('hello through the gateway');
    ws.close();
    expect(upstream.lastUpgradeHeaders?.['test-token']).toBeUndefined();
    expect(upstream.lastUpgradeHeaders?.['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('relays an upstream that refuses the upgrade', async () => {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/free/no-ws`);
      ws.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(403);
  });
});

describe('gateway proxy: upstream down', () => {
  it('answers 502 upstream_unavailable and a 503 health check', async () => {
    const upstream = await startUpstream();
    const deadUrl = upstream.url;
    await upstream.close();
    const gateway = await createGateway({
      config: gatewayConfig(deadUrl, { trust_forwarded_headers: true }),
      gate: createPayCallGate([testTokenScheme()]),
      appId: 'app_gw',
      logger: createLogger('silent'),
    });
    const url = await gateway.listen();
    try {
      const response = await fetch(`${url}/free/echo`);
      expect(response.status).toBe(502);
      expect((await response.json()).error.code).toBe('upstream_unavailable');
      const health = await fetch(`${url}/_sluice/health`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ status: 'upstream_unreachable', upstream: { reachable: false, code: 'upstream_unavailable' } });
      const ws = await new Promise<number>((resolve) => {
        const socket = new WebSocket(`${url.replace('http', 'ws')}/free/ws`);
        socket.on('unexpected-response', (_request, res) => resolve(res.statusCode ?? 0));
        socket.on('error', () => undefined);
      });
      expect(ws).toBe(502);
    } finally {
      await gateway.close();
    }
  });
});

describe('gateway proxy: the Sluice API beside it down', () => {
  it('answers /v1/paycall/* with 503 payment_service_unavailable when the API refuses the connection', async () => {
    const upstream = await startUpstream();
    const deadApi = await startUpstream();
    await deadApi.close();
    const gateway = await createGateway({
      config: gatewayConfig(upstream.url),
      gate: createPayCallGate([testTokenScheme()]),
      appId: 'app_gw',
      logger: createLogger('silent'),
      paycallApiOrigin: deadApi.url,
    });
    const url = await gateway.listen();
    try {
      const response = await fetch(`${url}/v1/paycall/chains`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(response.status).toBe(503);
      const body = await response.json();
      expect(body.error.code).toBe('payment_service_unavailable');
      expect(body.error.message).toContain('nothing was done');
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

async function rawRequest(base: string, text: string): Promise<string> {
  const { port } = new URL(base);
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(text));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('gateway proxy: upstream base path, HEAD and methods', () => {
  it('puts the upstream path in front of every forwarded path, and prices by method', async () => {
    const upstream = await startUpstream();
    const config = validateGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: `${upstream.url}/base/`,
      routes: [{ path: '/api/*', price_msat: '7', methods: ['POST'] }, { path: '/api/*', price_msat: '0' }],
    });
    if (!config.ok) throw new Error(config.errors.join('\n'));
    const gateway = await createGateway({ config: config.config, gate: createPayCallGate([testTokenScheme()]), appId: 'app_gw', logger: createLogger('silent') });
    const url = await gateway.listen();
    try {
      const get = await fetch(`${url}/api/items?page=2`);
      expect(get.status).toBe(200);
      expect((await get.json()).url).toBe('/base/api/items?page=2');
      const head = await fetch(`${url}/api/items`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      const post = await fetch(`${url}/api/items`, { method: 'POST', body: 'x' });
      expect(post.status).toBe(402);
      expect((await post.json()).price_msat).toBe('7');
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('gateway proxy: https upstream', () => {
  it('checks the upstream certificate: a self-signed one is refused (502), never trusted silently', async () => {
    const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    const server = https.createServer({ key: pems.private, cert: pems.cert }, (_request, response) => response.end('secret'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const config = validateGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
      routes: [{ path: '/*', price_msat: '0' }],
    });
    if (!config.ok) throw new Error(config.errors.join('\n'));
    const gateway = await createGateway({ config: config.config, gate: createPayCallGate([testTokenScheme()]), appId: 'app_gw', logger: createLogger('silent') });
    const url = await gateway.listen();
    try {
      const response = await fetch(`${url}/x`);
      expect(response.status).toBe(502);
      expect((await response.json()).error.code).toBe('upstream_unavailable');
    } finally {
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('gateway: 402 challenges are limited per client address', () => {
  it('counts only priced requests without a credential, per fixed minute window, with bounded memory', () => {
    let now = 1_000_000;
    const limiter = createChallengeLimiter({ perMinute: 2, maxAddresses: 2, nowMs: () => now });
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([true, true, false]);
    expect(limiter.retryAfterS()).toBe(60);
    expect(limiter.take('b')).toBe(true);
    expect(limiter.take('c')).toBe(true); // 'a' is forgotten to keep two addresses
    expect(limiter.take('a')).toBe(true);
    now += 60_000;
    expect([limiter.take('b'), limiter.take('b'), limiter.take('b')]).toEqual([true, true, false]);
  });

  it('answers 429 rate_limited with Retry-After past the limit; paid and free calls are not counted', async () => {
    const upstream = await startUpstream();
    const gateway = await createGateway({
      config: gatewayConfig(upstream.url, { challenges_per_minute: 2 }),
      gate: createPayCallGate([testTokenScheme()]),
      appId: 'app_gw',
      logger: createLogger('silent'),
    });
    const url = await gateway.listen();
    try {
      expect((await fetch(`${url}/paid/x`)).status).toBe(402);
      expect((await fetch(`${url}/paid/x`)).status).toBe(402);
      const limited = await fetch(`${url}/paid/x`);
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await limited.json()).error.code).toBe('rate_limited');
      expect((await fetch(`${url}/paid/x`, { headers: { 'test-token': 'ok' } })).status).toBe(200);
      expect((await fetch(`${url}/free/x`)).status).toBe(200);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});
