// The SDK's streams part (SluiceApp, SluicePayer, devnet wallet) against a real Sluice
// (SQLite, devnet) over real sockets: the server's sluice.v1 endpoint (registerStreamSocket)
// on a listening Sluice, the `ws` package as the WebSocket class. Covers create, charge,
// reward and events with exact balances; typed errors; top-ups paid automatically within
// the allowance and refused beyond it (per stream, per hour, no wallet, paused); close
// with the refund paid to the payer's devnet wallet; backpressure; and resume after the
// server drops the connection, without lost or repeated events.
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerStreamSocket, type StreamSocket } from '../../server/src/streams/ws.js';
import { startTestSluice, type TestSluice } from '../../server/test/support/sluice.js';
import {
  devnetWallet,
  SluiceApp,
  SluiceClient,
  SluiceError,
  SluicePayer,
  storageSpendLog,
  SPEND_LOG_STORAGE_KEY,
  type StreamEvent,
  type WalletAdapter,
  type WebSocketConstructor,
} from '../src/index.js';

/** The `ws` class, remembering each socket's local port so the test can find the server's end of it. */
const opened: WebSocket[] = [];
class TrackedWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
    opened.push(this);
  }
}
const WS: WebSocketConstructor = TrackedWebSocket;

interface Harness {
  t: TestSluice;
  socket: StreamSocket | null;
  baseUrl: string;
  apiKey: string;
  /** Server-side TCP sockets by the client's port. */
  serverSockets: Map<number, Socket>;
}

let h: Harness;

beforeAll(async () => {
  const t = await startTestSluice();
  // app.ts may already serve sluice.v1 (then it closes with Sluice); otherwise serve it here.
  const wired = t.sluice.http.server.listenerCount('upgrade') > 0;
  const socket = wired ? null : registerStreamSocket(t.sluice.http, { streams: t.sluice.streams, apps: t.sluice.apps, logger: t.sluice.http.log });
  const serverSockets = new Map<number, Socket>();
  t.sluice.http.server.on('connection', (tcp: Socket) => {
    if (tcp.remotePort !== undefined) serverSockets.set(tcp.remotePort, tcp);
  });
  const baseUrl = await t.sluice.listen();
  const app = await t.createApp('sdk game');
  h = { t, socket, baseUrl, apiKey: app.apiKey, serverSockets };
});

afterAll(async () => {
  await h?.socket?.close();
  await h?.t.close();
});

/** Cuts the TCP connection of a client socket from the server's side, as a network failure or a crashed proxy would. */
function dropFromServer(client: WebSocket): void {
  const port = (client as unknown as { _socket?: Socket })._socket?.localPort;
  const tcp = port === undefined ? undefined : h.serverSockets.get(port);
  expect(tcp).toBeDefined();
  tcp?.destroy();
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const connectApp = (options: Partial<Parameters<typeof SluiceApp.connect>[0]> = {}) =>
  SluiceApp.connect({ baseUrl: h.baseUrl, apiKey: h.apiKey, WebSocket: WS, ...options });

async function walletBalance(name: string): Promise<bigint> {
  const wallets = await new SluiceClient({ baseUrl: h.baseUrl, apiKey: h.apiKey }).devnetWallets();
  return wallets.wallets.find((wallet) => wallet.name === name)?.balance_msat ?? -1n;
}

/** Funds the app's own balance (rewards come from it) by paying an app invoice from a devnet wallet. */
async function fundApp(amountMsat: bigint): Promise<void> {
  const client = new SluiceClient({ baseUrl: h.baseUrl, apiKey: h.apiKey });
  const invoice = await client.createInvoice({ amount_msat: amountMsat, description: 'house money' });
  await client.devnetPay({ payment_request: invoice.payment_request, wallet: 'bob' });
}

describe('SluiceApp', () => {
  it('creates a stream, is funded, charges and rewards with exact balances, and hears every event once', async () => {
    await fundApp(100_000n);
    const app = await connectApp();
    const events: StreamEvent[] = [];
    app.on('event', (event) => events.push(event));
    const { stream, payer_token } = await app.createStream({ prices: { shot: 200n, hit: 1_000n }, settle_to_msat: 50_000n, metadata: 'player-1' });
    expect(stream).toMatchObject({ status: 'open', balance_msat: 0n, prices: { shot: 200n, hit: 1_000n }, settle_to_msat: 50_000n, metadata: 'player-1' });
    expect(payer_token).toMatch(/^pt_/);
    await app.subscribe(stream.id, { afterSeq: 0 });
    await until(() => events.some((event) => event.type === 'invoice'), 'the invoice event');
    const invoice = events.find((event) => event.type === 'invoice');
    if (invoice?.type !== 'invoice') throw new Error('no invoice');
    expect(invoice.amount_msat).toBe(50_000n);
    await devnetWallet({ baseUrl: h.baseUrl, key: payer_token }).payInvoice(invoice.payment_request);
    await until(() => events.some((event) => event.type === 'funded'), 'the funded event');

    const shots = await app.charge(stream.id, { event: 'shot', count: 3, ref: 'shots-1' });
    expect(shots).toMatchObject({ amount_msat: 600n, balance_msat: 49_400n, replayed: false, ref: 'shots-1' });
    const byAmount = await app.charge(stream.id, { amount_msat: 400n });
    expect(byAmount.balance_msat).toBe(49_000n);
    expect(byAmount.ref).toMatch(/^[A-Za-z0-9._:-]+$/);
    const reward = await app.reward(stream.id, { amount_msat: 2_500n });
    expect(reward.balance_msat).toBe(51_500n);
    expect((await app.getStream(stream.id)).balance_msat).toBe(51_500n);

    await until(() => events.some((event) => event.type === 'rewarded'), 'the rewarded event');
    expect(events.map((event) => event.type)).toEqual(['created', 'invoice', 'balance', 'funded', 'charged', 'charged', 'rewarded']);
    const money = events.filter((event) => event.type === 'charged' || event.type === 'rewarded');
    expect(money.map((event) => [event.type, 'amount_msat' in event ? event.amount_msat : null, event.balance_msat])).toEqual([
      ['charged', 600n, 49_400n], ['charged', 400n, 49_000n], ['rewarded', 2_500n, 51_500n],
    ]);
    const seqs = events.filter((event) => event.type !== 'balance').map((event) => event.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(app.lastSeq(stream.id)).toBe(seqs[seqs.length - 1]);
    app.close();
  });

  it('rejects with typed errors, and the connection keeps working', async () => {
    const app = await connectApp();
    const { stream } = await app.createStream({ prices: { shot: 200n }, max_charge_msat: 5_000n });
    const rows: { description: string; run: () => Promise<unknown>; code: string }[] = [
      { description: 'an unknown event', run: () => app.charge(stream.id, { event: 'laser' }), code: 'unknown_event' },
      { description: 'more than the prepaid balance', run: () => app.charge(stream.id, { event: 'shot' }), code: 'stream_limit_exceeded' },
      { description: 'above max_charge_msat', run: () => app.charge(stream.id, { amount_msat: 5_001n }), code: 'charge_too_large' },
      { description: 'a stream of nobody', run: () => app.getStream('st_nope'), code: 'stream_not_found' },
      { description: 'bad terms', run: () => app.createStream({ settle_threshold_msat: 10n, settle_to_msat: 5n }), code: 'invalid_terms' },
    ];
    for (const row of rows) {
      const error = await row.run().then(() => null, (caught: unknown) => caught);
      expect(error, row.description).toBeInstanceOf(SluiceError);
      expect((error as SluiceError).code, row.description).toBe(row.code);
    }
    await expect(app.charge(stream.id, { amount_msat: 5 as unknown as bigint })).rejects.toThrow(TypeError);
    expect((await app.getStream(stream.id)).status).toBe('open');
    app.close();
    await expect(app.getStream(stream.id)).rejects.toMatchObject({ code: 'network_error' });
  });

  it('refuses a bad key with invalid_api_key and an unreachable server with network_error', async () => {
    await expect(SluiceApp.connect({ baseUrl: h.baseUrl, apiKey: 'sk_wrong', WebSocket: WS })).rejects.toMatchObject({ code: 'invalid_api_key' });
    await expect(SluiceApp.connect({ baseUrl: 'http://127.0.0.1:9', apiKey: 'sk_x', WebSocket: WS })).rejects.toMatchObject({ code: 'network_error' });
    // Node 20 has no global WebSocket: the SDK says what to pass.
    if (!('WebSocket' in globalThis)) await expect(SluiceApp.connect({ baseUrl: h.baseUrl, apiKey: h.apiKey })).rejects.toThrow(/ws/);
  });

  it('bounds requests in flight: waits (all go through, never more than the bound out) or rejects with overloaded', async () => {
    const waiting = await connectApp({ maxInFlight: 4 });
    const { stream } = await waiting.createStream({ prices: { tick: 1n }, maximum_msat: 1_000_000n });
    let highest = 0;
    const steps = Array.from({ length: 60 }, (_, index) => {
      const step = waiting.charge(stream.id, { event: 'tick', ref: `w-${index}` });
      highest = Math.max(highest, waiting.pressure.inFlight);
      return step;
    });
    const results = await Promise.all(steps);
    expect(highest).toBeLessThanOrEqual(4);
    expect(results.map((result) => result.balance_msat)).toEqual(results.map((_, index) => BigInt(-(index + 1))));

    const rejecting = await connectApp({ maxInFlight: 4, whenBusy: 'reject' });
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, index) => rejecting.charge(stream.id, { event: 'tick', ref: `r-${index}` })));
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(4);
    const refused = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    expect(refused.map((outcome) => (outcome.reason as SluiceError).code)).toEqual(Array(6).fill('overloaded'));
    expect((await waiting.getStream(stream.id)).balance_msat).toBe(-64n);
    waiting.close();
    rejecting.close();
  });

  it('resumes after the server drops the connection: no event lost or delivered twice', async () => {
    const app = await connectApp({ reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const appSockets = () => opened.filter((socket) => socket !== chargerSocket);
    const charger = await connectApp({ reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const chargerSocket = opened[opened.length - 1] as WebSocket;
    const { stream } = await app.createStream({ prices: { tick: 1n }, maximum_msat: 10_000_000n });
    const events: StreamEvent[] = [];
    const states: string[] = [];
    app.on('event', (event) => events.push(event));
    app.on('connection', (state) => states.push(state));
    await app.subscribe(stream.id);
    const total = 300;
    const charges: Promise<{ replayed: boolean }>[] = [];
    for (let index = 0; index < total; index += 1) {
      charges.push(charger.charge(stream.id, { event: 'tick', ref: `t-${index}` }));
      if (index === 100 || index === 200) {
        // The app's socket: events pushed meanwhile come again on resume and are delivered once.
        const reconnects = states.filter((state) => state === 'open').length;
        dropFromServer(appSockets()[appSockets().length - 1] as WebSocket);
        await until(() => states.filter((state) => state === 'open').length > reconnects, 'the app reconnected');
      }
    }
    const results = await Promise.all(charges);
    expect((await app.getStream(stream.id)).balance_msat).toBe(-BigInt(total));
    await until(() => events.filter((event) => event.type === 'charged').length >= total, `${total} charged events`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const charged = events.filter((event) => event.type === 'charged');
    expect(charged).toHaveLength(total);
    expect(new Set(charged.map((event) => event.seq)).size).toBe(total);
    expect(states.filter((state) => state === 'connecting')).toHaveLength(2);
    expect(app.connectionState).toBe('open');
    expect(results).toHaveLength(total);
    app.close();
    charger.close();
  });

  it('re-sends charges whose replies were lost with the same ref: each applied once', async () => {
    const charger = await connectApp({ reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const socket = opened[opened.length - 1] as WebSocket;
    const { stream } = await charger.createStream({ prices: { tick: 1n }, maximum_msat: 10_000_000n });
    const states: string[] = [];
    charger.on('connection', (state) => states.push(state));
    const total = 400;
    const charges = Array.from({ length: total }, (_, index) => charger.charge(stream.id, { event: 'tick', ref: `lost-${index}` }));
    // When the first reply arrives the server is working through the rest: cut the line then.
    void (charges[0] as Promise<unknown>).then(() => dropFromServer(socket));
    const results = await Promise.all(charges);
    expect(states).toContain('connecting');
    expect((await charger.getStream(stream.id)).balance_msat).toBe(-BigInt(total));
    expect(new Set(results.map((result) => result.seq)).size).toBe(total);
    charger.close();
  });
});

describe('SluicePayer', () => {
  const topUpTerms = { prices: { shot: 10_000n }, settle_threshold_msat: 20_000n, settle_to_msat: 50_000n };

  it('pays top-ups automatically within the allowance per stream, then leaves the next one for a person', async () => {
    const app = await connectApp();
    const { stream, payer_token } = await app.createStream(topUpTerms);
    const wallet = devnetWallet({ baseUrl: h.baseUrl, key: payer_token, wallet: 'carol' });
    const exceeded: { reason: string; amount: bigint }[] = [];
    const paid: bigint[] = [];
    const payer = await SluicePayer.connect({
      baseUrl: h.baseUrl, payerToken: payer_token, wallet, WebSocket: WS, allowance: { perStreamMsat: 120_000n, perHourMsat: 1_000_000n },
    });
    payer.on('allowance_exceeded', ({ invoice, reason }) => exceeded.push({ reason, amount: invoice.amount_msat }));
    payer.on('invoice_paid', ({ invoice }) => paid.push(invoice.amount_msat));
    expect(payer.streamId).toBe(stream.id);
    await until(() => payer.balanceMsat === 50_000n, 'the first top-up');

    await app.charge(stream.id, { event: 'shot', count: 4 }); // 10 000 left: under the threshold
    await until(() => payer.balanceMsat === 50_000n, 'the second top-up (90 000 of 120 000 used)');
    expect(payer.spentOnStreamMsat).toBe(90_000n);

    await app.charge(stream.id, { event: 'shot', count: 4 });
    await until(() => exceeded.length > 0, 'allowance_exceeded');
    expect(exceeded).toEqual([{ reason: 'per_stream', amount: 40_000n }]);
    expect(payer.balanceMsat).toBe(10_000n);
    expect(payer.pendingInvoice?.amount_msat).toBe(40_000n);

    await payer.payInvoice(); // a person decided
    await until(() => payer.balanceMsat === 50_000n, 'the top-up paid by hand');
    expect(payer.pendingInvoice).toBeNull();
    expect(paid).toEqual([50_000n, 40_000n, 40_000n]); // automatically, automatically, by hand
    payer.disconnect();
    app.close();
  });

  it('shares one hourly allowance between payers through a storage spend log, and keeps it across a reload', async () => {
    const app = await connectApp();
    const now = Date.now();
    const items = new Map<string, string>();
    const storage = { getItem: (key: string) => items.get(key) ?? null, setItem: (key: string, value: string) => void items.set(key, value) };
    const allowance = { perStreamMsat: 1_000_000n, perHourMsat: 60_000n };
    const first = await app.createStream(topUpTerms);
    const wallet = devnetWallet({ baseUrl: h.baseUrl, key: first.payer_token, wallet: 'carol' });
    const one = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: first.payer_token, wallet, WebSocket: WS, now: () => now, allowance, spendLog: storageSpendLog(storage) });
    await until(() => one.balanceMsat === 50_000n, 'the first stream funded');
    expect(JSON.parse(items.get(SPEND_LOG_STORAGE_KEY) as string)).toEqual([{ at: now, amount_msat: '50000', id: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    one.disconnect();

    // A reload: a new payer on another stream, the same storage. 50,000 of 60,000 msat are spent this hour.
    const second = await app.createStream(topUpTerms);
    const reasons: string[] = [];
    const two = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: second.payer_token, wallet, WebSocket: WS, now: () => now, allowance, spendLog: storageSpendLog(storage) });
    two.on('allowance_exceeded', ({ reason }) => reasons.push(reason));
    expect(two.spentThisHourMsat).toBe(50_000n);
    await until(() => two.pendingInvoice !== null, 'the second funding invoice left for a person');
    expect(two.balanceMsat).toBe(0n);
    expect(two.pendingInvoice?.amount_msat).toBe(50_000n);
    two.disconnect();
    app.close();
  });

  it('checks the hourly allowance and records the payment under the shared log\'s lock (another tab cannot interleave)', async () => {
    const app = await connectApp();
    const now = Date.now();
    const items = new Map<string, string>();
    // Every read and write of the shared log, and whether the log's lock was held at the time.
    const accesses: string[] = [];
    let held = false;
    const storage = {
      getItem: (key: string) => {
        accesses.push(`read${held ? ' locked' : ''}`);
        return items.get(key) ?? null;
      },
      setItem: (key: string, value: string) => {
        accesses.push(`write${held ? ' locked' : ''}`);
        items.set(key, value);
      },
    };
    const names: string[] = [];
    const locks = {
      async request<T>(name: string, callback: () => T | Promise<T>): Promise<T> {
        names.push(name);
        // A lock granted later, as the browser's are (another tab may hold it now).
        await new Promise((resolve) => setTimeout(resolve, 5));
        held = true;
        try {
          return await callback();
        } finally {
          held = false;
        }
      },
    };
    const { payer_token } = await app.createStream(topUpTerms);
    const wallet = devnetWallet({ baseUrl: h.baseUrl, key: payer_token, wallet: 'carol' });
    const payer = await SluicePayer.connect({
      baseUrl: h.baseUrl, payerToken: payer_token, wallet, WebSocket: WS, now: () => now,
      allowance: { perStreamMsat: 1_000_000n, perHourMsat: 60_000n }, spendLog: storageSpendLog(storage, 'tabs', { locks }),
    });
    await until(() => payer.balanceMsat === 50_000n, 'the first top-up paid automatically');
    expect(names[0]).toBe('sluice-spend-log:tabs');
    // The decision's reads (the allowance) and its write (the record) were all made under the lock.
    const write = accesses.indexOf('write locked');
    expect(write).toBeGreaterThan(0);
    expect(accesses.slice(0, write)).toContain('read locked');
    expect(accesses.filter((access) => access.startsWith('write'))).toEqual(['write locked']);
    expect(JSON.parse(items.get('tabs') as string)).toEqual([{ at: now, amount_msat: '50000', id: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    payer.disconnect();
    app.close();
  });

  it('counts automatic payments per hour, honours pause, and pays nothing without an allowance or a wallet', async () => {
    const app = await connectApp();
    let now = Date.now();
    const { stream, payer_token } = await app.createStream(topUpTerms);
    const wallet = devnetWallet({ baseUrl: h.baseUrl, key: payer_token, wallet: 'carol' });
    const reasons: string[] = [];
    const payer = await SluicePayer.connect({
      baseUrl: h.baseUrl, payerToken: payer_token, wallet, WebSocket: WS, now: () => now,
      allowance: { perStreamMsat: 1_000_000n, perHourMsat: 60_000n },
    });
    payer.on('allowance_exceeded', ({ reason }) => reasons.push(reason));
    await until(() => payer.balanceMsat === 50_000n, 'the first top-up');
    expect(payer.spentThisHourMsat).toBe(50_000n);
    await app.charge(stream.id, { event: 'shot', count: 4 });
    await until(() => reasons.length === 1, 'per_hour');
    expect(reasons).toEqual(['per_hour']);
    now += 3_600_001; // an hour later the first payment no longer counts
    await payer.pause();
    payer.setAllowance({ perStreamMsat: 1_000_000n, perHourMsat: 60_000n }); // looks again: paused
    expect(reasons).toEqual(['per_hour', 'paused']);
    await payer.resume();
    await until(() => payer.balanceMsat === 50_000n, 'the top-up once the hour passed');
    payer.disconnect();

    // No allowance (the default) and no wallet: the invoice waits for a person.
    const second = await app.createStream(topUpTerms);
    const unfunded = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: second.payer_token, wallet, WebSocket: WS });
    expect(unfunded.pendingInvoice?.amount_msat).toBe(50_000n);
    expect(unfunded.balanceMsat).toBe(0n);
    unfunded.disconnect();
    const noWallet = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: second.payer_token, WebSocket: WS, allowance: { perStreamMsat: 1_000_000n, perHourMsat: 1_000_000n } });
    await expect(noWallet.payInvoice()).rejects.toMatchObject({ code: 'invalid_request' });
    noWallet.disconnect();
    app.close();
  });

  it('never pays an invoice twice: a payer that reconnects, or a second payer, sees it funded in the history', async () => {
    const app = await connectApp();
    const { payer_token } = await app.createStream(topUpTerms);
    let payments = 0;
    const base = devnetWallet({ baseUrl: h.baseUrl, key: payer_token, wallet: 'carol' });
    const counting: WalletAdapter = { name: 'counting', payInvoice: (request) => ((payments += 1), base.payInvoice(request)) };
    const allowance = { perStreamMsat: 1_000_000n, perHourMsat: 1_000_000n };
    const first = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: payer_token, wallet: counting, WebSocket: WS, allowance, reconnect: { initialDelayMs: 10 } });
    await until(() => first.balanceMsat === 50_000n, 'the top-up');
    first.reconnect();
    await until(() => first.connectionState === 'open', 'reconnected');
    const second = await SluicePayer.connect({ baseUrl: h.baseUrl, payerToken: payer_token, wallet: counting, WebSocket: WS, allowance });
    expect(second.balanceMsat).toBe(50_000n);
    expect(second.pendingInvoice).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(payments).toBe(1);
    first.disconnect();
    second.disconnect();
    app.close();
  });

  it('closes the stream and receives the refund in its devnet wallet', async () => {
    const app = await connectApp();
    const { stream, payer_token } = await app.createStream(topUpTerms);
    const payer = await SluicePayer.connect({
      baseUrl: h.baseUrl, payerToken: payer_token, wallet: devnetWallet({ baseUrl: h.baseUrl, key: payer_token, wallet: 'dave' }), WebSocket: WS,
      allowance: { perStreamMsat: 50_000n, perHourMsat: 50_000n },
    });
    await until(() => payer.balanceMsat === 50_000n, 'funded');
    await app.charge(stream.id, { event: 'shot' });
    const events: StreamEvent[] = [];
    payer.on('event', (event) => events.push(event));
    const before = await walletBalance('dave');
    const closed = await payer.close();
    expect(closed.status).toBe('closed');
    await until(() => events.some((event) => event.type === 'settled'), 'the refund');
    const settled = events.find((event) => event.type === 'settled');
    if (settled?.type !== 'settled') throw new Error('no settled event');
    // 40 000 on the stream, refunded to the msat: the app lends the routing-fee budget.
    expect(settled.amount_msat).toBe(40_000n);
    expect((await walletBalance('dave')) - before).toBe(40_000n);
    expect(events.map((event) => event.type).filter((type) => type !== 'payout_requested')).toEqual(['closed', 'payout_invoice_needed', 'settled']);
    payer.disconnect();
    app.close();
  });
});
