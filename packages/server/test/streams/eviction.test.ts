// Closed streams leave the stream service's memory once nothing can still act on them, so
// memory holds open streams, not every stream ever closed; an evicted stream is loaded again
// from the store when asked for (and refuses charges: stream_closed), a listener keeps it in
// memory, and a payment that lands after eviction is still recorded and refunded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../src/money/msat.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { TestClient } from './ws-support.js';

describe('eviction of closed streams', () => {
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  let url: string;
  beforeAll(async () => {
    t = await startTestSluice();
    app = await t.createApp('game');
    url = `${(await t.sluice.listen()).replace(/^http/, 'ws')}/v1/ws`;
  });
  afterAll(async () => {
    await t?.sluice.streamSocket.close();
    await t?.close();
  });

  const asApp = (method: string, path: string, body?: unknown) => t.call(method, path, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
  /** Postpaid: no invoices, so a closed stream has nothing left to settle. */
  const postpaid = async () => {
    const created = await asApp('POST', '/v1/streams', { prices: { hit: '1000' }, maximum_msat: '1000000000' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return { id: created.body.id as string, token: created.body.payer_token as string };
  };
  const waitFor = async (what: string, predicate: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 200; i += 1) {
      if (await predicate()) return;
      await settle();
    }
    throw new Error(`gave up waiting for ${what}`);
  };

  it('keeps memory bounded over many open, charge, close cycles, with charges racing the close', async () => {
    const streams = t.sluice.streams;
    const baseline = streams.liveStreams();
    const appBefore = BigInt((await asApp('GET', '/v1/balance')).body.balance_msat);
    let acked = 0n;
    for (let cycle = 0; cycle < 300; cycle += 1) {
      const { id } = await postpaid();
      // Charges in flight while the close runs: each is acknowledged or refused, never lost.
      const charges = Array.from({ length: 5 }, (_, i) => streams.charge(id, { event: 'hit', ref: `c${i}` }));
      const closing = streams.close(id, cycle % 2 === 0 ? 'app' : 'payer');
      const late = streams.charge(id, { event: 'hit', ref: 'late' });
      for (const result of await Promise.all([...charges, late])) {
        if (result.ok) acked += result.amountMsat;
        else expect(result.error).toBe('StreamClosed');
      }
      expect((await closing).ok).toBe(true);
      // A view of the closed stream loads it again, and lets it go again.
      expect((await streams.get(id, null))?.status).toBe('closed');
    }
    await waitFor('closed streams to leave memory', () => streams.liveStreams() === baseline);
    expect(acked).toBeGreaterThan(0n);
    expect(BigInt((await asApp('GET', '/v1/balance')).body.balance_msat)).toBe(appBefore + acked);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('refuses a charge on an evicted closed stream with stream_closed, from the store, over every interface', async () => {
    const { id } = await postpaid();
    expect((await t.sluice.streams.charge(id, { event: 'hit', ref: 'one' })).ok).toBe(true);
    const baseline = t.sluice.streams.liveStreams();
    expect((await t.sluice.streams.close(id, 'app')).ok).toBe(true);
    await waitFor('the stream to leave memory', () => t.sluice.streams.liveStreams() === baseline - 1);
    expect(await t.sluice.streams.charge(id, { event: 'hit', ref: 'two' })).toEqual({ ok: false, error: 'StreamClosed' });
    expect(await t.sluice.streams.charge(id, { event: 'hit', ref: 'one' })).toEqual({ ok: false, error: 'StreamClosed' });
    expect((await asApp('POST', `/v1/streams/${id}/charge`, { event: 'hit', ref: 'three' })).body.error.code).toBe('stream_closed');
    const client = await TestClient.connect(url, { headers: { authorization: `Bearer ${app.apiKey}` } });
    try {
      const reply = await client.request('charge', { stream_id: id, event: 'hit', ref: 'four' });
      expect(reply.error?.code).toBe('stream_closed');
      expect(client.violations).toEqual([]);
    } finally {
      await client.close();
    }
    const stream = await asApp('GET', `/v1/streams/${id}`);
    expect(stream.body).toMatchObject({ status: 'closed', balance_msat: '-1000' });
    await waitFor('the stream to leave memory again', () => t.sluice.streams.liveStreams() === baseline - 1);
  });

  it('keeps a closed stream in memory while someone listens, and lets it go after', async () => {
    const { id } = await postpaid();
    const baseline = t.sluice.streams.liveStreams();
    const seen: string[] = [];
    const unsubscribe = t.sluice.streams.subscribe(id, (event) => seen.push(event.type));
    expect((await t.sluice.streams.close(id, 'payer')).ok).toBe(true);
    await settle();
    expect(seen).toContain('closed');
    expect(t.sluice.streams.liveStreams()).toBe(baseline);
    unsubscribe();
    expect(t.sluice.streams.liveStreams()).toBe(baseline - 1);
  });

  it('records and refunds a top-up paid after its stream was closed and evicted', async () => {
    const alicePubkey = t.sluice.devnet?.nodePubkey('alice') as string;
    const created = await asApp('POST', '/v1/streams', { prices: { hit: '1000' }, settle_to_msat: '100000', payout: { keysend: { pubkey: alicePubkey } } });
    const id = created.body.id as string;
    const token = created.body.payer_token as string;
    const payer = (method: string, path: string, body?: unknown) => t.call(method, path, { key: token, ...(body === undefined ? {} : { body }) });
    const invoice = (await payer('GET', `/v1/streams/${id}/events`)).body.events.find((e: { type: string }) => e.type === 'invoice');
    expect(invoice).toBeDefined();
    const baseline = t.sluice.streams.liveStreams();
    expect((await payer('POST', `/v1/streams/${id}/close`)).body.status).toBe('closed');
    await waitFor('the stream to leave memory', () => t.sluice.streams.liveStreams() === baseline - 1);
    const aliceBefore = t.sluice.devnet?.nodeBalanceMsat('alice') as bigint;
    // Pay the old invoice now: the stream account is credited, the stream is loaded again.
    expect((await payer('POST', '/v1/devnet/pay', { payment_request: invoice.payment_request, wallet: 'carol' })).status).toBe(200);
    await waitFor('the late top-up to be refunded', async () => {
      const events = (await payer('GET', `/v1/streams/${id}/events`)).body.events as { type: string }[];
      return events.some((e) => e.type === 'funded') && events.some((e) => e.type === 'settled');
    });
    expect(t.sluice.devnet?.nodeBalanceMsat('alice')).toBe(aliceBefore + msat(100_000n));
    await waitFor('the balance to be 0', async () => (await asApp('GET', `/v1/streams/${id}`)).body.balance_msat === '0');
    await waitFor('the stream to leave memory again', () => t.sluice.streams.liveStreams() === baseline - 1);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });
});
