/**
 * The gateway end to end with Sluice's real schemes on the devnet: a real Sluice (SQLite,
 * devnet), the gateway beside it, and a real upstream HTTP server. A client reads the
 * chain offer from a 402, buys a chain through the gateway, pays its invoice with a devnet
 * wallet, then calls with links and sees the balance fall per call; another client pays
 * with L402 through @getalby/lightning-tools' fetchWithL402.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchWithL402 } from '@getalby/lightning-tools/402/l402';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { appAccountId } from '../../../src/apps/service.js';
import { balanceOf } from '../../../src/ledger/store.js';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { buildChain, formatChainHeader } from '../../../src/paycall/chain/index.js';
import { validateGatewayConfig } from '../../../src/paycall/gateway/config.js';
import { startGatewayBeside, type StartedGateway } from '../../../src/paycall/gateway/index.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';
import { ADMIN_KEY, startTestSluice, type TestSluice } from '../../support/sluice.js';

const usePostgres = await postgresAvailable();

const PRICE_MSAT = 5000n;
const STEP_MSAT = 1000n;
const STEPS = 25;

interface Upstream {
  url: string;
  seen: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

async function startUpstream(): Promise<Upstream> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((request, response) => {
    seen.push(request.headers);
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ joke: 'a satoshi walks into a bar', path: request.url }));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, request) => {
    seen.push(request.headers);
    ws.on('message', (data) => ws.send(`echo:${data.toString()}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function parseOffer(header: string | null): Record<string, string> {
  const offer: Record<string, string> = {};
  for (const match of (header ?? '').matchAll(/(\w+)="([^"]*)"/g)) offer[match[1] as string] = match[2] as string;
  return offer;
}

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`gateway end to end on ${store} (real chain and L402 schemes, devnet)`, () => {
  let database: TestDatabase | null = null;
  let test: TestSluice;
  let upstream: Upstream;
  let started: StartedGateway;
  let sluiceUrl: string;

  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_gateway') : null;
    test = await startTestSluice({ env: { HOST: '127.0.0.1', ...(database ? { SLUICE_DATABASE_URL: database.url } : {}) } });
    sluiceUrl = await test.sluice.listen();
    upstream = await startUpstream();
    const config = validateGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      upstream: upstream.url,
      routes: [{ path: '/free/*', price_msat: '0' }, { path: '/paid/*', price_msat: PRICE_MSAT.toString() }],
      chain_step_msat: STEP_MSAT.toString(),
      service: 'jokes',
    });
    if (!config.ok) throw new Error(config.errors.join('\n'));
    started = await startGatewayBeside(test.sluice, config.config, { logger: createLogger('silent') });
  });
  afterAll(async () => {
    await started?.gateway.close();
    await upstream?.close();
    await test?.close();
    await database?.drop();
  });

  it('creates the gateway app on first start and reuses it after', async () => {
    expect(started.appId).toMatch(/^app_/);
    expect(started.createdAppKey).toMatch(/^sk_/);
    expect(await test.sluice.records.getMeta('gateway_app_id')).toBe(started.appId);
  });

  it('a 402 offers both schemes; a chain bought through the gateway pays calls and the balance falls per call', async () => {
    const unpaid = await fetch(`${started.url}/paid/joke`);
    expect(unpaid.status).toBe(402);
    expect((await unpaid.json()).price_msat).toBe('5000');
    expect(unpaid.headers.get('www-authenticate')).toMatch(/^L402 version="0", token="/);
    const offer = parseOffer(unpaid.headers.get('sluice-chain-offer'));
    expect(offer).toMatchObject({ buy: `${started.url}/v1/paycall/chains`, app: started.appId, step_msat: '1000', steps_per_call: '5' });

    // Buy through the gateway (it forwards /v1/paycall/* to the Sluice API), pay on the devnet.
    const links = buildChain(randomBytes(32), STEPS);
    const bought = await fetch(offer.buy as string, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ app_id: offer.app, anchor: (links[0] as Buffer).toString('hex'), steps: STEPS }),
    });
    expect(bought.status).toBe(201);
    const chain = await bought.json();
    expect(chain).toMatchObject({ status: 'pending', amount_msat: '25000', step_msat: '1000' });
    const paid = await fetch(`${sluiceUrl}/v1/devnet/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify({ payment_request: chain.invoice.payment_request, wallet: 'alice' }),
    });
    expect(paid.status).toBe(200);
    // The chain becomes active once its invoice is credited (a moment after the wallet paid).
    const deadline = Date.now() + 10_000;
    let status = await (await fetch(`${offer.buy}/${chain.chain_id}`)).json();
    while (status.status === 'pending' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      status = await (await fetch(`${offer.buy}/${chain.chain_id}`)).json();
    }
    expect(status.status).toBe('active');

    const appBefore = balanceOf((await test.sluice.ledger.getAccount(appAccountId(started.appId)))!);
    const balances: string[] = [];
    for (let call = 1; call <= 3; call++) {
      const index = call * 5;
      const response = await fetch(`${started.url}/paid/joke?n=${call}`, {
        headers: { 'sluice-chain': formatChainHeader({ chainId: chain.chain_id, index, link: links[index] as Buffer }) },
      });
      expect(response.status).toBe(200);
      expect((await response.json()).path).toBe(`/paid/joke?n=${call}`);
      balances.push(response.headers.get('sluice-chain-balance') as string);
    }
    expect(balances).toEqual(['steps=20; msat=20000; index=5', 'steps=15; msat=15000; index=10', 'steps=10; msat=10000; index=15']);
    // The app is paid for the spent steps by the next sweep (at most SLUICE_CHAIN_SETTLE_INTERVAL_MS later).
    await test.sluice.chains.settleSpent();
    const appAfter = balanceOf((await test.sluice.ledger.getAccount(appAccountId(started.appId)))!);
    expect(appAfter - appBefore).toBe(15_000n);
    // The upstream never saw a chain link.
    expect(upstream.seen.every((headers) => headers['sluice-chain'] === undefined)).toBe(true);

    // A replayed link is refused and not forwarded.
    const seenBefore = upstream.seen.length;
    const replay = await fetch(`${started.url}/paid/joke`, {
      headers: { 'sluice-chain': formatChainHeader({ chainId: chain.chain_id, index: 15, link: links[15] as Buffer }) },
    });
    expect(replay.status).toBe(401);
    expect((await replay.json()).error.code).toBe('chain_link_replayed');
    expect(upstream.seen.length).toBe(seenBefore);

    // Three requests racing with the same link through the gateway: exactly one is served.
    const racing = await Promise.all([1, 2, 3].map(() => fetch(`${started.url}/paid/joke`, {
      headers: { 'sluice-chain': formatChainHeader({ chainId: chain.chain_id, index: 20, link: links[20] as Buffer }) },
    })));
    expect(racing.map((response) => response.status).sort()).toEqual([200, 401, 401]);
    expect(upstream.seen.length).toBe(seenBefore + 1);

    // The last 5 steps pay for a WebSocket upgrade; the 101 carries the balance.
    const ws = new WebSocket(`${started.url.replace('http', 'ws')}/paid/ws`, {
      headers: { 'sluice-chain': formatChainHeader({ chainId: chain.chain_id, index: 25, link: links[25] as Buffer }) },
    });
    const upgraded = new Promise<string>((resolve, reject) => {
      ws.on('upgrade', (response) => resolve(response.headers['sluice-chain-balance'] as string));
      ws.on('error', reject);
    });
    const opened = new Promise((resolve) => ws.once('open', resolve));
    expect(await upgraded).toBe('steps=0; msat=0; index=25');
    await opened;
    const echoed = await new Promise<string>((resolve) => {
      ws.once('message', (data) => resolve(data.toString()));
      ws.send('ping');
    });
    expect(echoed).toBe('echo:ping');
    ws.close();

    // Nothing left: the next call is refused as exhausted.
    const exhausted = await fetch(`${started.url}/paid/joke`, {
      headers: { 'sluice-chain': formatChainHeader({ chainId: chain.chain_id, index: 25, link: links[25] as Buffer }) },
    });
    expect([401, 402]).toContain(exhausted.status);
  });

  it('fetchWithL402 pays the L402 challenge through the gateway and is served; the upstream never sees the token', async () => {
    const alice = test.sluice.devnet!.backendFor('alice');
    const wallet = {
      async payInvoice({ invoice }: { invoice: string }): Promise<{ preimage: string }> {
        const outcome = await alice.payInvoice({ paymentRequest: invoice, feeLimitMsat: msat(1_000_000n), timeoutS: 30 });
        if (outcome.status !== 'succeeded') throw new Error(`devnet payment ${outcome.status}`);
        return { preimage: outcome.preimage };
      },
    };
    const response = await fetchWithL402(`${started.url}/paid/l402-joke`, {}, { wallet });
    expect(response.status).toBe(200);
    expect((await response.json()).joke).toBe('a satoshi walks into a bar');
    const last = upstream.seen[upstream.seen.length - 1] as http.IncomingHttpHeaders;
    expect(last.authorization).toBeUndefined();
    expect(last['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('forwards only /v1/paycall/* to the Sluice API, never a path that climbs out of it', async () => {
    const { port } = new URL(started.url);
    const net = await import('node:net');
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => socket.write('GET /v1/paycall/%2e%2e/apps HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${started.url}/v1/apps`)).status).toBe(404); // not a gateway route, not forwarded
  });

  it('free routes pass, and the health check reports the upstream and the Lightning backend', async () => {
    expect((await fetch(`${started.url}/free/joke`)).status).toBe(200);
    const health = await (await fetch(`${started.url}/_sluice/health`)).json();
    expect(health).toMatchObject({ status: 'ok', upstream: { reachable: true }, lightning: { backend: 'devnet' }, app_id: started.appId });
  });
});
}
