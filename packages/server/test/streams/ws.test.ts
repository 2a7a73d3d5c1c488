// The sluice.v1 WebSocket protocol over real sockets (the `ws` client) against a real
// Sluice (SQLite, devnet): auth by API key, payer token and upgrade header; streams
// created, funded through the pushed invoice event, charged in a pipeline of 1,000 with
// exact balances; refs replayed; events to the payer; resume after a dropped connection
// with after_seq; a table of bad inputs, each refused with its code while the connection
// keeps working; limits (in flight, auth, frame size, slow readers), garbage, shutdown.
// Every message sent and received is checked against docs/protocol/*.schema.json (see
// ws-support.ts).
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StreamSocket, StreamSocketLimits } from '../../src/streams/ws.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { TestClient, type Reply } from './ws-support.js';

interface Harness {
  t: TestSluice;
  socket: StreamSocket;
  url: string;
  app: { id: string; apiKey: string };
  other: { id: string; apiKey: string };
}

async function startHarness(limits: Partial<StreamSocketLimits> = {}): Promise<Harness> {
  const t = await startTestSluice({ streamSocketLimits: limits });
  const socket = t.sluice.streamSocket;
  const address = await t.sluice.listen();
  return { t, socket, url: `${address.replace(/^http/, 'ws')}/v1/ws`, app: await t.createApp('game'), other: await t.createApp('other game') };
}

/** Connections opened by a suite, checked for schema violations and closed after each test. */
function clientPool(harness: () => Harness) {
  const clients: TestClient[] = [];
  afterEach(async () => {
    const open = clients.splice(0);
    for (const client of open) expect(client.violations).toEqual([]);
    await Promise.all(open.map((client) => client.close()));
  });
  const connect = async (options: Parameters<typeof TestClient.connect>[1] = {}) => {
    const client = await TestClient.connect(harness().url, options);
    clients.push(client);
    return client;
  };
  const authed = async (key: string) => {
    const client = await connect();
    await client.ok('auth', key.startsWith('pt_') ? { payer_token: key } : { api_key: key });
    return client;
  };
  /** A stream funded to settleToMsat by paying the invoice event from a devnet wallet. */
  const fundedStream = async (client: TestClient, terms: Record<string, unknown>) => {
    const created = await client.ok('stream.create', terms);
    const streamId = created.stream.id as string;
    await client.ok('subscribe', { stream_id: streamId, after_seq: 0 });
    await client.until(() => client.eventsOf(streamId, 'invoice').length > 0, 'the invoice event');
    const invoice = client.eventsOf(streamId, 'invoice')[0];
    const paid = await harness().t.call('POST', '/v1/devnet/pay', { key: harness().app.apiKey, body: { payment_request: invoice.payment_request, wallet: 'alice' } });
    expect(paid.status).toBe(200);
    await client.until(() => client.eventsOf(streamId, 'funded').length > 0, 'the funded event');
    return { streamId, payerToken: created.payer_token as string };
  };
  return { connect, authed, fundedStream };
}

describe('sluice.v1 over WebSocket', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ authTimeoutMs: 60_000 });
  });
  afterAll(async () => {
    await h?.socket.close();
    await h?.t.close();
  });
  const { connect, authed, fundedStream } = clientPool(() => h);

  it('authenticates an app, creates a stream, is funded through the invoice event, charges and rewards exactly', async () => {
    const client = await connect();
    expect(await client.ok('auth', { api_key: h.app.apiKey })).toMatchObject({ role: 'app', app_id: h.app.id, limits: { max_in_flight: 1000 } });
    const { streamId } = await fundedStream(client, { prices: { hit: '1000', ammo: '1' }, settle_to_msat: '100000', max_charge_msat: '50000' });
    expect(client.eventsOf(streamId).map((event) => event.type)).toEqual(['created', 'invoice', 'balance', 'funded']);
    const hit = await client.ok('charge', { stream_id: streamId, event: 'hit', count: 2, ref: 'c1' });
    expect(hit).toMatchObject({ amount_msat: '2000', balance_msat: '98000', replayed: false });
    const ammo = await client.ok('charge', { stream_id: streamId, amount_msat: '1', ref: 'c2' });
    expect(ammo).toMatchObject({ amount_msat: '1', balance_msat: '97999' });
    expect(ammo.seq).toBeGreaterThan(hit.seq);
    const reward = await client.ok('reward', { stream_id: streamId, amount_msat: '500', ref: 'r1' });
    expect(reward).toMatchObject({ amount_msat: '500', balance_msat: '98499' });
    await client.until(() => client.eventsOf(streamId, 'rewarded').length === 1, 'the rewarded event');
    expect(client.eventsOf(streamId, 'charged').map((event) => [event.seq, event.event, event.amount_msat, event.balance_msat]))
      .toEqual([[hit.seq, 'hit', '2000', '98000'], [ammo.seq, 'amount', '1', '97999']]);
    expect((await client.ok('stream.get', { stream_id: streamId })).stream).toMatchObject({ id: streamId, balance_msat: '98499', status: 'open' });
    expect(await h.t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('authenticates with Authorization: Bearer on the upgrade (app key and payer token), and refuses bad upgrades with HTTP errors', async () => {
    const byHeader = await connect({ headers: { authorization: `Bearer ${h.app.apiKey}` } });
    const created = await byHeader.ok('stream.create', { prices: { hit: '1' } });
    expect((await byHeader.request('auth', { api_key: h.app.apiKey })).error?.code).toBe('invalid_request');
    const payer = await connect({ headers: { authorization: `Bearer ${created.payer_token}` } });
    expect((await payer.ok('stream.get')).stream.id).toBe(created.stream.id);

    const rows: { description: string; path?: string; protocols?: string[]; headers?: Record<string, string>; status: number; code: string }[] = [
      { description: 'wrong key', headers: { authorization: 'Bearer sk_wrong' }, status: 401, code: 'invalid_api_key' },
      { description: 'wrong payer token', headers: { authorization: 'Bearer pt_wrong' }, status: 401, code: 'invalid_api_key' },
      { description: 'not a bearer header', headers: { authorization: 'Basic abc' }, status: 401, code: 'unauthorized' },
      { description: 'the admin key', headers: { authorization: 'Bearer sa_test-admin-key-0123456789' }, status: 403, code: 'forbidden' },
      { description: 'another subprotocol', protocols: ['sluice.v0'], status: 400, code: 'invalid_request' },
      { description: 'no subprotocol', protocols: [], status: 400, code: 'invalid_request' },
      { description: 'another path', path: '/v1/wss', status: 404, code: 'not_found' },
    ];
    for (const row of rows) {
      const target = row.path ? h.url.replace('/v1/ws', row.path) : h.url;
      const refused = await TestClient.connect(target, { ...(row.protocols ? { protocols: row.protocols } : {}), headers: row.headers ?? {} }).then(
        () => { throw new Error(`${row.description}: connected`); },
        (error: { status: number; body: { error: { code: string } } }) => error,
      );
      expect([refused.status, refused.body.error.code], row.description).toEqual([row.status, row.code]);
    }
  });

  it('applies 1,000 pipelined charges once each, in the order sent, with exact balances; the payer sees every one', async () => {
    const client = await authed(h.app.apiKey);
    const { streamId, payerToken } = await fundedStream(client, { prices: { tick: '7' }, settle_to_msat: '10000000' });
    const payer = await authed(payerToken);
    await payer.ok('subscribe');
    await payer.until(() => payer.eventsOf(streamId, 'balance').length === 1, 'the balance event');
    const pending: Promise<Reply>[] = [];
    for (let i = 0; i < 1000; i += 1) pending.push(client.request('charge', { stream_id: streamId, event: 'tick', ref: `tick-${i}` }));
    const acks = await Promise.all(pending);
    expect(acks.filter((ack) => ack.type !== 'ok')).toEqual([]);
    const replies = client.received.filter((message) => message.type !== 'event');
    expect(new Set(replies.map((reply) => reply.id)).size).toBe(replies.length);
    for (let i = 0; i < acks.length; i += 1) {
      expect(acks[i]?.balance_msat).toBe(String(10_000_000 - 7 * (i + 1)));
      if (i > 0) expect(acks[i]?.seq).toBeGreaterThan(acks[i - 1]?.seq);
    }
    await payer.until(() => payer.eventsOf(streamId, 'charged').length === 1000, '1,000 charged events');
    const seen = payer.eventsOf(streamId, 'charged').map((event) => event.seq);
    expect(seen).toEqual(acks.map((ack) => ack.seq));
    expect(payer.eventsOf(streamId, 'charged').at(-1).balance_msat).toBe(String(10_000_000 - 7000));
    expect(await h.t.sluice.ledger.sumOfBalances()).toBe(0n);
  }, 30_000);

  it('answers a charge sent again with the same ref with the first seq, and moves nothing', async () => {
    const client = await authed(h.app.apiKey);
    const { streamId } = await fundedStream(client, { prices: { hit: '100' }, settle_to_msat: '10000' });
    const first = await client.ok('charge', { stream_id: streamId, event: 'hit', ref: 'once' });
    const again = await client.request('charge', { stream_id: streamId, event: 'hit', ref: 'once' });
    expect(again).toMatchObject({ type: 'ok', seq: first.seq, amount_msat: '100', balance_msat: '9900', replayed: true });
    const conflict = await client.request('charge', { stream_id: streamId, event: 'hit', count: 2, ref: 'once' });
    expect(conflict.error?.code).toBe('idempotency_key_reused');
  });

  it('refuses bad input with a code, one reply each, and the connection keeps working', async () => {
    const client = await authed(h.app.apiKey);
    const { streamId, payerToken } = await fundedStream(client, { prices: { hit: '10000' }, settle_to_msat: '20000', max_charge_msat: '15000' });
    const unfunded = (await client.ok('stream.create', { prices: { hit: '1' } })).stream.id;
    const closed = (await client.ok('stream.create', { prices: { hit: '1' }, maximum_msat: '100' })).stream.id;
    await client.ok('close', { stream_id: closed });
    const others = await authed(h.other.apiKey);
    const othersStream = (await others.ok('stream.create', { prices: { hit: '1' } })).stream.id;
    const payer = await authed(payerToken);
    const stranger = await connect();

    type Row = { description: string; client?: TestClient; raw?: string | Buffer; binary?: boolean; message?: Record<string, unknown>; code: string };
    const charge = (fields: Record<string, unknown>) => ({ type: 'charge', stream_id: streamId, ref: `r-${Math.random().toString(36).slice(2)}`, ...fields });
    const rows: Row[] = [
      { description: 'malformed JSON', raw: '{"type":"ping",', code: 'invalid_json' },
      { description: 'oversized', raw: JSON.stringify({ type: 'ping', id: 'big', pad: 'x'.repeat(70 * 1024) }), code: 'message_too_large' },
      { description: 'binary frame', raw: Buffer.from('{"type":"ping","id":"b"}'), binary: true, code: 'invalid_json' },
      { description: 'not an object', raw: '[1,2,3]', code: 'invalid_request' },
      { description: 'missing id', raw: '{"type":"ping"}', code: 'invalid_request' },
      { description: 'numeric id', raw: '{"type":"ping","id":7}', code: 'invalid_request' },
      { description: 'unknown type', message: { type: 'teleport' }, code: 'unknown_type' },
      { description: 'missing type', message: {}, code: 'invalid_request' },
      { description: 'unknown field', message: charge({ event: 'hit', colour: 'red' }), code: 'unknown_field' },
      { description: 'amount as a number', message: charge({ amount_msat: 1000 }), code: 'invalid_amount' },
      { description: 'amount with a decimal point', message: charge({ amount_msat: '1.5' }), code: 'invalid_amount' },
      { description: 'zero amount', message: charge({ amount_msat: '0' }), code: 'invalid_amount' },
      { description: 'ref with a space', message: charge({ event: 'hit', ref: 'a b' }), code: 'invalid_request' },
      { description: 'no event nor amount', message: charge({}), code: 'charge_amount_required' },
      { description: 'unknown event', message: charge({ event: 'kick' }), code: 'unknown_event' },
      { description: 'above max_charge_msat', message: charge({ amount_msat: '15001' }), code: 'charge_too_large' },
      { description: 'missing stream_id', message: { type: 'charge', event: 'hit', ref: 'x' }, code: 'invalid_request' },
      { description: 'another app\'s stream', message: charge({ stream_id: othersStream, event: 'hit' }), code: 'stream_not_found' },
      { description: 'no such stream', message: charge({ stream_id: 'st_nope', event: 'hit' }), code: 'stream_not_found' },
      { description: 'charge on a closed stream', message: charge({ stream_id: closed, event: 'hit' }), code: 'stream_closed' },
      { description: 'a payer who never paid (prepaid, unfunded)', message: charge({ stream_id: unfunded, event: 'hit' }), code: 'stream_limit_exceeded' },
      { description: 'app: stream.get without stream_id', message: { type: 'stream.get' }, code: 'invalid_request' },
      { description: 'app: payout.set', message: { type: 'payout.set', stream_id: streamId, destination: { invoice: true } }, code: 'forbidden' },
      { description: 'app: auth again', message: { type: 'auth', api_key: h.app.apiKey }, code: 'invalid_request' },
      { description: 'meter without a rate', message: { type: 'meter', stream_id: streamId, action: 'start' }, code: 'meter_not_configured' },
      { description: 'bad meter action', message: { type: 'meter', stream_id: streamId, action: 'rewind' }, code: 'invalid_request' },
      { description: 'payer: charge', client: payer, message: charge({ event: 'hit' }), code: 'forbidden' },
      { description: 'payer: reward', client: payer, message: { type: 'reward', stream_id: streamId, amount_msat: '1', ref: 'x' }, code: 'forbidden' },
      { description: 'payer: create', client: payer, message: { type: 'stream.create' }, code: 'forbidden' },
      { description: 'payer: another stream', client: payer, message: { type: 'stream.get', stream_id: othersStream }, code: 'stream_not_found' },
      { description: 'payer: start the meter', client: payer, message: { type: 'meter', action: 'start' }, code: 'meter_not_configured' },
      { description: 'payer: invoice nobody asked for', client: payer, message: { type: 'payout.invoice', payment_request: 'lnbcrt1' }, code: 'no_payout_requested' },
      { description: 'payer: destination with two kinds', client: payer, message: { type: 'payout.set', destination: { invoice: true, lightning_address: 'a@b.co' } }, code: 'invalid_request' },
      { description: 'payer: bad pubkey', client: payer, message: { type: 'payout.set', destination: { keysend: { pubkey: '02' } } }, code: 'invalid_request' },
      { description: 'unauthenticated: charge', client: stranger, message: charge({ event: 'hit' }), code: 'unauthorized' },
      { description: 'unauthenticated: subscribe', client: stranger, message: { type: 'subscribe', stream_id: streamId }, code: 'unauthorized' },
      { description: 'auth with both credentials', client: stranger, message: { type: 'auth', api_key: 'sk_x', payer_token: 'pt_x' }, code: 'invalid_request' },
      { description: 'auth with neither', client: stranger, message: { type: 'auth' }, code: 'invalid_request' },
      { description: 'auth with a wrong key', client: stranger, message: { type: 'auth', api_key: 'sk_wrong' }, code: 'invalid_api_key' },
      { description: 'auth with a wrong payer token', client: stranger, message: { type: 'auth', payer_token: 'pt_wrong' }, code: 'invalid_api_key' },
    ];
    let n = 0;
    for (const row of rows) {
      const target = row.client ?? client;
      const reply = row.raw !== undefined
        ? await target.sendRaw(row.raw, { binary: row.binary ?? false })
        : await target.requestUnchecked({ id: `bad-${(n += 1)}`, ...row.message });
      expect([reply.type, reply.error?.code], row.description).toEqual(['error', row.code]);
      expect(reply.error?.message.length, row.description).toBeGreaterThan(0);
      expect((await target.request('ping')).type, `${row.description}: still answering`).toBe('ok');
    }
    // Past the limit: two hits of 10000 empty the prepaid 20000; the third is refused.
    await client.ok('charge', { stream_id: streamId, event: 'hit', ref: 'ok-1' });
    await client.ok('charge', { stream_id: streamId, event: 'hit', ref: 'ok-2' });
    expect((await client.request('charge', { stream_id: streamId, event: 'hit', ref: 'ok-3' })).error?.code).toBe('stream_limit_exceeded');
    expect((await client.ok('stream.get', { stream_id: streamId })).stream.balance_msat).toBe('0');
    expect((await client.ok('stream.get', { stream_id: unfunded })).stream.balance_msat).toBe('0');
    expect(await h.t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('resumes after a dropped connection: after_seq brings exactly the missed events, then the balance', async () => {
    const app = await authed(h.app.apiKey);
    const { streamId, payerToken } = await fundedStream(app, { prices: { hit: '100' }, settle_to_msat: '100000' });
    const payer = await authed(payerToken);
    await payer.ok('subscribe');
    for (let i = 0; i < 3; i += 1) await app.ok('charge', { stream_id: streamId, event: 'hit', ref: `before-${i}` });
    await payer.until(() => payer.eventsOf(streamId, 'charged').length === 3, 'three charges');
    const lastSeen = Math.max(...payer.eventsOf(streamId).map((event) => event.seq));
    payer.ws.terminate(); // the connection drops without a close handshake

    const missed: Reply[] = [];
    for (let i = 0; i < 5; i += 1) missed.push(await app.ok('charge', { stream_id: streamId, event: 'hit', ref: `missed-${i}` }));
    missed.push(await app.ok('reward', { stream_id: streamId, amount_msat: '50', ref: 'missed-reward' }));

    const again = await authed(payerToken);
    await again.ok('subscribe', { after_seq: lastSeen });
    await again.until(() => again.eventsOf(streamId, 'balance').length === 1, 'the balance event');
    const replayed = again.eventsOf(streamId).filter((event) => event.type !== 'balance');
    expect(replayed.map((event) => event.seq)).toEqual(missed.map((ack) => ack.seq));
    expect(replayed.map((event) => event.type)).toEqual(['charged', 'charged', 'charged', 'charged', 'charged', 'rewarded']);
    const balance = again.eventsOf(streamId, 'balance')[0];
    expect(balance).toMatchObject({ seq: missed.at(-1)?.seq, balance_msat: String(100000 - 800 + 50) });
    // Live again: the next charge arrives once.
    const next = await app.ok('charge', { stream_id: streamId, event: 'hit', ref: 'after' });
    await again.until(() => again.eventsOf(streamId).some((event) => event.seq === next.seq), 'the live charge');
    expect(again.eventsOf(streamId).filter((event) => event.seq === next.seq)).toHaveLength(1);
  });

  it('subscribing with after_seq while charges stream in loses nothing and repeats nothing', async () => {
    const app = await authed(h.app.apiKey);
    const { streamId, payerToken } = await fundedStream(app, { prices: { hit: '1' }, settle_to_msat: '1000000' });
    const pending: Promise<Reply>[] = [];
    for (let i = 0; i < 300; i += 1) {
      pending.push(app.request('charge', { stream_id: streamId, event: 'hit', ref: `h-${i}` }));
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const payer = await authed(payerToken);
    const subscribed = payer.ok('subscribe', { after_seq: 0 });
    for (let i = 300; i < 600; i += 1) pending.push(app.request('charge', { stream_id: streamId, event: 'hit', ref: `h-${i}` }));
    await subscribed;
    const acks = await Promise.all(pending);
    expect(acks.every((ack) => ack.type === 'ok')).toBe(true);
    await payer.until(() => payer.eventsOf(streamId, 'charged').length >= 600, 'all 600 charges');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const seqs = payer.eventsOf(streamId).filter((event) => event.type !== 'balance').map((event) => event.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(payer.eventsOf(streamId, 'charged').map((event) => event.seq).sort((a, b) => a - b)).toEqual(acks.map((ack) => ack.seq).sort((a, b) => a - b));
    expect(payer.eventsOf(streamId, 'balance')).toHaveLength(1);
  }, 30_000);

  it('lets the payer pause the meter, name a payout destination and close; the refund arrives as a settled event', async () => {
    const app = await authed(h.app.apiKey);
    const { streamId, payerToken } = await fundedStream(app, { prices: { hit: '10000' }, rate_msat_per_s: '1', settle_to_msat: '200000' });
    await app.ok('charge', { stream_id: streamId, event: 'hit', ref: 'one' });
    expect((await app.ok('meter', { stream_id: streamId, action: 'start' })).stream.meter).toBe('running');
    const payer = await authed(payerToken);
    await payer.ok('subscribe', { after_seq: 0 });
    expect((await payer.ok('meter', { action: 'pause' })).stream.meter).toBe('paused');
    expect((await payer.request('meter', { action: 'pause' })).error?.code).toBe('meter_state');
    const alice = h.t.sluice.devnet?.nodePubkey('alice') as string;
    expect((await payer.ok('payout.set', { destination: { keysend: { pubkey: alice } } })).stream.payout).toEqual({ keysend: { pubkey: alice } });
    const closed = await payer.ok('close');
    expect(closed.stream.status).toBe('closed');
    await payer.until(() => payer.eventsOf(streamId, 'settled').length === 1, 'the settled event');
    expect(payer.eventsOf(streamId, 'closed')[0]).toMatchObject({ seq: closed.seq, by: 'payer' });
    await app.until(() => app.eventsOf(streamId, 'settled').length === 1, 'the app sees the payout too');
    expect((await app.request('charge', { stream_id: streamId, event: 'hit', ref: 'late' })).error?.code).toBe('stream_closed');
    expect((await payer.ok('unsubscribe')).stream_id).toBe(streamId);
  });

  it('survives garbage: every text message gets exactly one reply and the server keeps serving', async () => {
    const client = await authed(h.app.apiKey);
    const messages = fc.sample(fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json(),
      fc.record({ type: fc.constantFrom('charge', 'reward', 'meter', 'close', 'subscribe', 'stream.get', 'auth', 'nope'), id: fc.string({ minLength: 1, maxLength: 8 }), stream_id: fc.string(), amount_msat: fc.anything(), ref: fc.string() }, { requiredKeys: ['type'] }).map((value) => JSON.stringify(value)),
    ), { numRuns: 500, seed: 42 });
    const before = client.received.length;
    for (const text of messages) client.ws.send(text);
    await client.until(() => client.received.length - before === messages.length, 'one reply per message');
    expect(client.received.slice(before).every((message) => message.type === 'error' || message.type === 'ok')).toBe(true);
    // Replies to the garbage that carried an id answer no request of the client: expected here.
    const unexpected = client.violations.filter((problem) => !problem.startsWith('a reply to no request'));
    client.violations.splice(0);
    expect(unexpected).toEqual([]);
    expect((await client.request('ping')).type).toBe('ok');
    const fresh = await authed(h.app.apiKey);
    expect((await fresh.request('ping')).type).toBe('ok');
  }, 30_000);
});

describe('sluice.v1 limits', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      maxInFlight: 5, maxAuthFailures: 2, authTimeoutMs: 300, maxMessageBytes: 1024, maxFrameBytes: 4096, maxBufferedBytes: 64 * 1024, maxSubscriptions: 1,
    });
  });
  afterAll(async () => {
    await h?.socket.close();
    await h?.t.close();
  });
  const { connect, authed, fundedStream } = clientPool(() => h);

  it('refuses requests past max_in_flight with overloaded and applies none of them', async () => {
    const client = await authed(h.app.apiKey);
    const { streamId } = await fundedStream(client, { prices: { hit: '1' }, settle_to_msat: '1000' });
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => client.request('charge', { stream_id: streamId, event: 'hit', ref: `r${i}` })));
    const accepted = replies.filter((reply) => reply.type === 'ok');
    const refused = replies.filter((reply) => reply.type === 'error');
    expect(accepted.length).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((reply) => reply.error?.code === 'overloaded')).toBe(true);
    expect((await client.ok('stream.get', { stream_id: streamId })).stream.balance_msat).toBe(String(1000 - accepted.length));
    expect((await client.request('subscribe', { stream_id: (await client.ok('stream.create')).stream.id })).error?.code).toBe('invalid_request');
  });

  it('closes a connection that does not authenticate in time (4001) or fails too often (4002)', async () => {
    const silent = await connect();
    await silent.until(() => silent.closeInfo !== null, 'the close');
    expect(silent.closeInfo?.code).toBe(4001);
    const guesser = await connect();
    expect((await guesser.request('auth', { api_key: 'sk_guess1' })).error?.code).toBe('invalid_api_key');
    expect((await guesser.request('auth', { api_key: 'sk_guess2' })).error?.code).toBe('invalid_api_key');
    await guesser.until(() => guesser.closeInfo !== null, 'the close');
    expect(guesser.closeInfo?.code).toBe(4002);
  });

  it('answers a message over max_message_bytes with message_too_large, and closes on a frame over the frame limit (1009)', async () => {
    const client = await authed(h.app.apiKey);
    expect((await client.sendRaw(`{"type":"ping","id":"1","pad":"${'x'.repeat(2000)}"}`)).error?.code).toBe('message_too_large');
    expect((await client.request('ping')).type).toBe('ok');
    client.ws.send('x'.repeat(5000));
    await client.until(() => client.closeInfo !== null, 'the close');
    expect(client.closeInfo?.code).toBe(1009);
    expect((await (await authed(h.app.apiKey)).request('ping')).type).toBe('ok');
  });

  it('closes a client that does not read (4008); it can come back', async () => {
    const client = await authed(h.app.apiKey);
    // Created over REST: its terms are larger than this suite's max_message_bytes.
    const created = await h.t.call('POST', '/v1/streams', {
      key: h.app.apiKey,
      body: { prices: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`event-number-${i}`, '1000'])), metadata: 'm'.repeat(1024) },
    });
    const streamId = created.body.id as string;
    const tcp = (client.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    tcp.pause();
    const before = h.socket.connectionCount();
    // Each stream.get reply is about 4 KB; a few thousand fill the kernel's buffers and then ours.
    for (let round = 0; round < 2000 && h.socket.connectionCount() >= before; round += 1) {
      for (let i = 0; i < 5; i += 1) client.ws.send(JSON.stringify({ type: 'stream.get', id: `g${round}-${i}`, stream_id: streamId }));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(h.socket.connectionCount()).toBe(before - 1);
    tcp.resume();
    await client.until(() => client.closeInfo !== null, 'the close');
    expect(client.closeInfo?.code).toBe(4008);
    client.violations.splice(0); // replies to the unchecked requests above
    expect((await (await authed(h.app.apiKey)).request('ping')).type).toBe('ok');
  }, 30_000);

  it('closes every connection with 1001 on shutdown and refuses new ones', async () => {
    const client = await authed(h.app.apiKey);
    await h.socket.close();
    await client.until(() => client.closeInfo !== null, 'the close');
    expect(client.closeInfo?.code).toBe(1001);
    expect(h.socket.connectionCount()).toBe(0);
    await expect(TestClient.connect(h.url)).rejects.toThrow();
  });
});
