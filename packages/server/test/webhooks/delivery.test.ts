// Webhooks on a real Sluice (devnet, manual clock) with a real HTTP receiver, on SQLite
// and PostgreSQL: invoice.paid end to end (a devnet wallet pays, the receiver gets a
// signed POST that an independent Python snippet verifies), payment and stream events, a
// receiver down for hours, manual redelivery, secret rotation (two signatures), a restart
// mid-retry, and the catch-up of an event lost between its cause's commit and its write.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { openSqlite } from '../../src/db/sqlite.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { startReceiver, verifyWithPython, type Receiver } from './support.js';

const usePostgres = await postgresAvailable();
const HOUR = 3_600_000;

async function waitUntil<T>(probe: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const store of ['sqlite', 'postgres'] as const) {
  describe.skipIf(store === 'postgres' && !usePostgres)(`webhooks on ${store}`, () => {
    const clock = createManualClock(Date.now());
    let t: TestSluice;
    let database: TestDatabase | null = null;
    let app: { id: string; apiKey: string };
    let receiver: Receiver;
    const env = (): Record<string, string> => (database ? { SLUICE_DATABASE_URL: database.url } : {});
    const start = async (dataDir?: string) => startTestSluice({ clock, env: env(), ...(dataDir ? { dataDir } : {}) });

    beforeAll(async () => {
      database = store === 'postgres' ? await createTestDatabase('sluice_webhooks_api') : null;
      t = await start();
      app = await t.createApp('shop');
      receiver = await startReceiver(200);
    });
    afterAll(async () => {
      await t?.close();
      await receiver?.close();
      await database?.drop();
    });

    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    const deliveries = async (endpointId: string, query = '') => (await asApp('GET', `/v1/webhooks/${endpointId}/deliveries${query}`)).body.deliveries;

    async function createEndpoint(types: string[], url = receiver.url) {
      const created = await asApp('POST', '/v1/webhooks', { url, event_types: types, description: 'test' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      return created.body as { id: string; secret: string };
    }

    /** An invoice of the app paid by the devnet wallet alice; resolves with its payment hash once its event exists. */
    async function paidInvoice(amountMsat = '250000'): Promise<string> {
      const invoice = await asApp('POST', '/v1/invoices', { amount_msat: amountMsat, description: 'webhook test' });
      expect(invoice.status).toBe(201);
      const paid = await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice.body.payment_request, wallet: 'alice' } });
      expect(paid.status, JSON.stringify(paid.body)).toBe(200);
      const hash = invoice.body.payment_hash as string;
      await waitUntil(async () => (await asApp('GET', '/v1/webhooks/events?type=invoice.paid')).body.events.find((e: any) => e.data.payment_hash === hash), 'the invoice.paid event');
      return hash;
    }

    it('delivers invoice.paid end to end, signed so that an independent Python snippet verifies it', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
      const before = receiver.received.length;
      const hash = await paidInvoice('250000');
      await t.sluice.webhooks.dispatchDue();
      const [request] = (await receiver.waitFor(before + 1)).slice(before);
      const body = JSON.parse(request!.body);
      expect(body).toMatchObject({
        type: 'invoice.paid',
        app: app.id,
        data: { payment_hash: hash, amount_msat: '250000', amount_paid_msat: '250000', status: 'paid', description: 'webhook test' },
      });
      expect(body.id).toMatch(/^evt_[0-9a-f]{24}$/);
      // The data is the API's answer for the invoice, field for field (the same serializer).
      expect(body.data).toEqual((await asApp('GET', `/v1/invoices/${hash}`)).body);
      expect(request!.headers['sluice-webhook-id']).toBe(body.id);
      expect(request!.headers['content-type']).toBe('application/json');
      const timestamp = Number(request!.headers['sluice-webhook-timestamp']);
      expect(timestamp).toBe(Math.floor(clock.now() / 1000));
      const header = request!.headers['sluice-signature'] as string;
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(verifyWithPython({ secret: endpoint.secret, header, body: request!.body, nowS: timestamp })).toBe('ok');
      // The same snippet refuses a tampered body, a wrong secret, and a replay outside its window.
      expect(verifyWithPython({ secret: endpoint.secret, header, body: request!.body.replace('250000', '250001'), nowS: timestamp })).toBe('mismatch');
      expect(verifyWithPython({ secret: 'whsec_wrong', header, body: request!.body, nowS: timestamp })).toBe('mismatch');
      expect(verifyWithPython({ secret: endpoint.secret, header, body: request!.body, nowS: timestamp + 301 })).toBe('outside the replay window');

      const [log] = await deliveries(endpoint.id);
      expect(log).toMatchObject({ event_id: body.id, status: 'delivered', attempts: 1, last_status_code: 200, manual: false });
      expect(log.attempt_log).toEqual([expect.objectContaining({ attempt: 1, status_code: 200, error: null, response: 'ok' })]);
      expect((await asApp('GET', `/v1/webhooks/events/${body.id}`)).body).toEqual(body);
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('emits payment.succeeded and stream.closed', async () => {
      const endpoint = await createEndpoint(['payment.succeeded', 'stream.closed']);
      await paidInvoice('2000000');
      const target = await t.call('POST', '/v1/devnet/invoices', { key: app.apiKey, body: { amount_msat: '10000', wallet: 'bob' } });
      const paid = await asApp('POST', '/v1/payments', { payment_request: target.body.payment_request, idempotency_key: 'pay-1' });
      expect(paid.body.status).toBe('succeeded');
      const nowhere = await asApp('POST', '/v1/payments', { keysend: { pubkey: '02' + 'ab'.repeat(32) }, amount_msat: '5000', idempotency_key: 'pay-2' });
      expect(nowhere.body.status).toBe('failed');
      const stream = await asApp('POST', '/v1/streams', { prices: { hit: '10' }, maximum_msat: '1000', metadata: 'level 1' });
      expect(stream.status).toBe(201);
      expect((await asApp('POST', `/v1/streams/${stream.body.id}/close`)).status).toBe(200);
      const events = await waitUntil(async () => {
        const list = (await asApp('GET', '/v1/webhooks/events')).body.events as any[];
        return ['stream.closed', 'payment.succeeded', 'payment.failed'].every((type) => list.some((e) => e.type === type)) ? list : null;
      }, 'payment and stream events');
      expect(events.find((e) => e.type === 'payment.failed').data).toMatchObject({ id: nowhere.body.id, status: 'failed', failure_reason: nowhere.body.failure_reason });
      expect(events.find((e) => e.type === 'payment.failed').data.preimage).toBeUndefined();
      expect(events.find((e) => e.type === 'payment.succeeded').data).toMatchObject({ id: paid.body.id, amount_msat: '10000', status: 'succeeded', preimage: paid.body.preimage });
      expect(events.find((e) => e.type === 'stream.closed').data).toMatchObject({ stream_id: stream.body.id, closed_by: 'app', metadata: 'level 1' });
      // A payment event's data is the API's answer for the payment, field for field.
      for (const type of ['payment.succeeded', 'payment.failed']) {
        const data = events.find((e) => e.type === type).data;
        expect(data, type).toEqual((await asApp('GET', `/v1/payments/${data.payment_hash}`)).body);
      }
      await t.sluice.webhooks.dispatchDue();
      const log = await deliveries(endpoint.id);
      expect(log.map((d: any) => d.status)).toEqual(['delivered', 'delivered']);
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('keeps retrying a receiver down for hours, then delivers once with the same event id', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      receiver.mode = 'down';
      await paidInvoice();
      await t.sluice.webhooks.dispatchDue();
      // Five hours of outage: dropped connections, then "503 come back later".
      for (let elapsed = 0; elapsed < 5 * HOUR; elapsed += HOUR / 4) {
        if (elapsed >= 3 * HOUR) receiver.mode = 503;
        clock.advanceMs(HOUR / 4);
        await t.sluice.webhooks.dispatchDue();
      }
      const [pending] = await deliveries(endpoint.id);
      expect(pending.status).toBe('pending');
      expect(pending.attempts).toBeGreaterThanOrEqual(8);
      expect(pending.attempt_log.every((a: any) => a.status_code !== 200)).toBe(true);
      expect(pending.attempt_log.slice(0, 2).every((a: any) => a.status_code === null && a.error)).toBe(true);
      expect(pending.attempt_log.at(-1)).toMatchObject({ status_code: 503, response: 'not now' });
      // Backoff: the gaps grow and never pass the one-hour cap.
      const gaps = pending.attempt_log.slice(1).map((a: any, i: number) => Date.parse(a.at) - Date.parse(pending.attempt_log[i].at));
      expect(Math.max(...gaps)).toBeLessThanOrEqual(HOUR + HOUR / 4);
      expect((await asApp('GET', `/v1/webhooks/${endpoint.id}`)).body).toMatchObject({ status: 'enabled', consecutive_failures: pending.attempts });

      receiver.mode = 200;
      const seen = receiver.received.length;
      clock.advanceMs(HOUR);
      await t.sluice.webhooks.dispatchDue();
      clock.advanceMs(HOUR);
      await t.sluice.webhooks.dispatchDue();
      const successes = receiver.received.slice(seen).filter((r) => r.headers['sluice-webhook-id'] === pending.event_id);
      expect(successes).toHaveLength(1);
      const sameId = receiver.received.filter((r) => JSON.parse(r.body).id === pending.event_id);
      expect(new Set(sameId.map((r) => r.headers['sluice-webhook-id']))).toEqual(new Set([pending.event_id]));
      const [done] = await deliveries(endpoint.id);
      expect(done).toMatchObject({ status: 'delivered', attempts: pending.attempts + 1, last_status_code: 200 });
      expect((await asApp('GET', `/v1/webhooks/${endpoint.id}`)).body.consecutive_failures).toBe(0);
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('redelivers an event by hand, as a new delivery with the same event id', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      await paidInvoice();
      await t.sluice.webhooks.dispatchDue();
      const [first] = await deliveries(endpoint.id);
      expect(first.status).toBe('delivered');
      const seen = receiver.received.length;
      const again = await asApp('POST', `/v1/webhooks/${endpoint.id}/redeliver`, { event_id: first.event_id });
      expect(again.status).toBe(202);
      expect(again.body).toMatchObject({ event_id: first.event_id, status: 'pending', manual: true, attempts: 0 });
      await t.sluice.webhooks.dispatchDue();
      const [request] = (await receiver.waitFor(seen + 1)).slice(seen);
      expect(request!.headers['sluice-webhook-id']).toBe(first.event_id);
      expect((await asApp('GET', `/v1/webhooks/${endpoint.id}/deliveries/${again.body.id}`)).body).toMatchObject({ status: 'delivered', manual: true });
      expect(await deliveries(endpoint.id, `?event_id=${first.event_id}`)).toHaveLength(2);
      // An event of another app is not this app's to redeliver.
      const other = await t.createApp('other');
      const foreign = await t.call('POST', `/v1/webhooks/${endpoint.id}/redeliver`, { key: other.apiKey, body: { event_id: first.event_id } });
      expect(foreign.body.error.code).toBe('webhook_endpoint_not_found');
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('signs with both secrets during a rotation, then with the new one only', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      const rotated = await asApp('POST', `/v1/webhooks/${endpoint.id}/rotate-secret`, { previous_secret_ttl_s: 3600 });
      expect(rotated.status).toBe(200);
      expect(rotated.body.secret).not.toBe(endpoint.secret);
      expect(rotated.body.previous_secret_expires_at).toBe(new Date(clock.now() + HOUR).toISOString());
      const seen = receiver.received.length;
      await paidInvoice();
      await t.sluice.webhooks.dispatchDue();
      const [during] = (await receiver.waitFor(seen + 1)).slice(seen);
      const header = during!.headers['sluice-signature'] as string;
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
      const nowS = Number(during!.headers['sluice-webhook-timestamp']);
      for (const secret of [endpoint.secret, rotated.body.secret]) expect(verifyWithPython({ secret, header, body: during!.body, nowS })).toBe('ok');

      clock.advanceMs(HOUR + 1000);
      await paidInvoice();
      await t.sluice.webhooks.dispatchDue();
      const [after] = (await receiver.waitFor(seen + 2)).slice(seen + 1);
      const single = after!.headers['sluice-signature'] as string;
      expect(single).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      const afterS = Number(after!.headers['sluice-webhook-timestamp']);
      expect(verifyWithPython({ secret: rotated.body.secret, header: single, body: after!.body, nowS: afterS })).toBe('ok');
      expect(verifyWithPython({ secret: endpoint.secret, header: single, body: after!.body, nowS: afterS })).toBe('mismatch');
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('resumes a retry after a restart, and delivers it once', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      receiver.mode = 500;
      await paidInvoice();
      await t.sluice.webhooks.dispatchDue();
      const [pending] = await deliveries(endpoint.id);
      expect(pending).toMatchObject({ status: 'pending', attempts: 1, last_status_code: 500 });
      await t.close();

      receiver.mode = 200;
      t = await start(t.dataDir);
      const seen = receiver.received.length;
      clock.advanceMs(HOUR);
      await t.sluice.webhooks.dispatchDue();
      const delivered = receiver.received.slice(seen).filter((r) => r.headers['sluice-webhook-id'] === pending.event_id);
      expect(delivered).toHaveLength(1);
      const [done] = await deliveries(endpoint.id);
      expect(done).toMatchObject({ id: pending.id, status: 'delivered', attempts: 2 });
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    it('writes at start an event whose cause committed but whose write was lost (a crash in between)', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      receiver.mode = 503;
      const hash = await paidInvoice();
      const events = (await asApp('GET', '/v1/webhooks/events?type=invoice.paid')).body.events as any[];
      const lost = events.find((e) => e.data.payment_hash === hash);
      await t.close();
      // What a crash right after the invoice's commit leaves: the paid invoice, no event.
      const erase = [
        `DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE event_id = '${lost.id}')`,
        `DELETE FROM webhook_deliveries WHERE event_id = '${lost.id}'`,
        `DELETE FROM webhook_events WHERE id = '${lost.id}'`,
      ];
      if (database) {
        for (const statement of erase) await database.sql.unsafe(statement);
      } else {
        const db = openSqlite({ path: path.join(t.dataDir, 'sluice.sqlite') });
        for (const statement of erase) db.exec(statement);
        db.close();
      }
      receiver.mode = 200;
      const seen = receiver.received.length;
      t = await start(t.dataDir);
      const restored = (await asApp('GET', `/v1/webhooks/events/${lost.id}`)).body;
      expect(restored).toEqual(lost);
      await t.sluice.webhooks.dispatchDue();
      expect(receiver.received.slice(seen).filter((r) => r.headers['sluice-webhook-id'] === lost.id)).toHaveLength(1);
      // A second start finds nothing missing.
      expect(await t.sluice.webhooks.catchUp()).toBe(0);
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });

    // Only PostgreSQL runs the periodic catch-up (several processes share it); not a skip on SQLite.
    (store === 'postgres' ? it : () => undefined)('finds, every 10 minutes while running, an event another process lost (PostgreSQL)', async () => {
      const endpoint = await createEndpoint(['invoice.paid']);
      receiver.mode = 503;
      const hash = await paidInvoice();
      const lost = ((await asApp('GET', '/v1/webhooks/events?type=invoice.paid')).body.events as any[]).find((e) => e.data.payment_hash === hash);
      // Let the first attempt (503) finish and be recorded: the clock stands still, so no other
      // attempt starts, and none can insert a row between the deletes below.
      await waitUntil(async () => (await deliveries(endpoint.id)).find((d: any) => d.event_id === lost.id && d.last_status_code === 503), 'the first attempt');
      // As if another process had committed the payment and died before writing the event.
      await database!.sql.unsafe(`DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE event_id = '${lost.id}')`);
      await database!.sql.unsafe(`DELETE FROM webhook_deliveries WHERE event_id = '${lost.id}'`);
      await database!.sql.unsafe(`DELETE FROM webhook_events WHERE id = '${lost.id}'`);
      expect((await asApp('GET', `/v1/webhooks/events/${lost.id}`)).status).toBe(404);
      receiver.mode = 200;
      clock.advanceMs(11 * 60_000);
      const restored = await waitUntil(async () => {
        const answer = await asApp('GET', `/v1/webhooks/events/${lost.id}`);
        return answer.status === 200 ? answer.body : null;
      }, 'the periodic catch-up', 5000);
      expect(restored).toEqual(lost);
      await t.sluice.webhooks.dispatchDue();
      await waitUntil(async () => (await deliveries(endpoint.id)).find((d: any) => d.event_id === lost.id && d.status === 'delivered'), 'the delivery');
      await asApp('DELETE', `/v1/webhooks/${endpoint.id}`);
    });
  });
}

describe('webhook endpoints over REST: management and bad input', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let app: { id: string; apiKey: string };
  let receiver: Receiver;
  beforeAll(async () => {
    t = await startTestSluice({ clock, env: { SLUICE_WEBHOOK_DISABLE_AFTER_FAILURES: '3', SLUICE_WEBHOOK_DISABLE_AFTER_S: '600' } });
    app = await t.createApp('shop');
    receiver = await startReceiver(200);
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });
  const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });

  it('creates, lists, gets, updates and deletes endpoints; the secret is shown only when made', async () => {
    const created = await asApp('POST', '/v1/webhooks', { url: receiver.url, event_types: ['payment.failed', 'invoice.paid', 'invoice.paid'] });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ url: receiver.url, event_types: ['invoice.paid', 'payment.failed'], status: 'enabled', description: '', consecutive_failures: 0 });
    const id = created.body.id as string;
    expect(id).toMatch(/^we_[0-9a-f]{16}$/);
    const listed = await asApp('GET', '/v1/webhooks');
    expect(listed.body.endpoints.map((e: any) => e.id)).toEqual([id]);
    expect(JSON.stringify(listed.body)).not.toContain('whsec_');
    expect(JSON.stringify((await asApp('GET', `/v1/webhooks/${id}`)).body)).not.toContain('whsec_');

    const updated = await asApp('PATCH', `/v1/webhooks/${id}`, { event_types: ['*'], description: 'all of it', url: receiver.url + '?v=2' });
    expect(updated.body).toMatchObject({ event_types: ['*'], description: 'all of it', url: receiver.url + '?v=2' });
    expect((await asApp('PATCH', `/v1/webhooks/${id}`, { enabled: false })).body).toMatchObject({ status: 'disabled', disabled_reason: 'manual' });
    expect((await asApp('PATCH', `/v1/webhooks/${id}`, { enabled: true })).body).toMatchObject({ status: 'enabled', disabled_reason: null });

    const other = await t.createApp('other');
    expect((await t.call('GET', `/v1/webhooks/${id}`, { key: other.apiKey })).body.error.code).toBe('webhook_endpoint_not_found');
    expect((await t.call('GET', '/v1/webhooks', { key: null })).status).toBe(401);

    expect((await asApp('DELETE', `/v1/webhooks/${id}`)).body).toEqual({ id, deleted: true });
    expect((await asApp('DELETE', `/v1/webhooks/${id}`)).body.error.code).toBe('webhook_endpoint_not_found');
    expect((await asApp('GET', '/v1/webhooks')).body.endpoints).toEqual([]);
  });

  const bad: { description: string; method: string; path: string; body: unknown; code: string; status: number }[] = [
    { description: 'not a URL', method: 'POST', path: '/v1/webhooks', body: { url: 'not a url', event_types: ['*'] }, code: 'webhook_url_invalid', status: 400 },
    { description: 'ftp', method: 'POST', path: '/v1/webhooks', body: { url: 'ftp://example.com/x', event_types: ['*'] }, code: 'webhook_url_scheme', status: 400 },
    { description: 'credentials in the URL', method: 'POST', path: '/v1/webhooks', body: { url: 'https://user:pw@example.com/x', event_types: ['*'] }, code: 'webhook_url_invalid', status: 400 },
    { description: 'a fragment', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/x#y', event_types: ['*'] }, code: 'webhook_url_invalid', status: 400 },
    { description: 'a URL too long', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/' + 'x'.repeat(2100), event_types: ['*'] }, code: 'invalid_request', status: 400 },
    { description: 'an unknown type', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/x', event_types: ['invoice.created'] }, code: 'webhook_event_type_unknown', status: 400 },
    { description: 'no types', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/x', event_types: [] }, code: 'invalid_request', status: 400 },
    { description: 'types missing', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/x' }, code: 'invalid_request', status: 400 },
    { description: 'an unknown field', method: 'POST', path: '/v1/webhooks', body: { url: 'https://example.com/x', event_types: ['*'], secret: 'mine' }, code: 'unknown_field', status: 400 },
    { description: 'an unknown endpoint', method: 'PATCH', path: '/v1/webhooks/we_nope', body: { enabled: true }, code: 'webhook_endpoint_not_found', status: 404 },
    { description: 'a rotation TTL too long', method: 'POST', path: '/v1/webhooks/we_nope/rotate-secret', body: { previous_secret_ttl_s: 99_999_999 }, code: 'invalid_request', status: 400 },
    { description: 'redelivery of an unknown endpoint', method: 'POST', path: '/v1/webhooks/we_nope/redeliver', body: { event_id: 'evt_x' }, code: 'webhook_endpoint_not_found', status: 404 },
    { description: 'an unknown event', method: 'GET', path: '/v1/webhooks/events/evt_nope', body: undefined, code: 'webhook_event_not_found', status: 404 },
  ];
  for (const row of bad) {
    it(`refuses ${row.description} with ${row.code}, changing nothing`, async () => {
      const before = (await asApp('GET', '/v1/webhooks')).body.endpoints;
      const answer = await asApp(row.method, row.path, row.body);
      expect(answer.status).toBe(row.status);
      expect(answer.body.error.code).toBe(row.code);
      expect((await asApp('GET', '/v1/webhooks')).body.endpoints).toEqual(before);
    });
  }

  it('refuses a bad patch and redelivery of unknown events and deliveries', async () => {
    const created = await asApp('POST', '/v1/webhooks', { url: receiver.url, event_types: ['*'] });
    const id = created.body.id;
    expect((await asApp('PATCH', `/v1/webhooks/${id}`, { url: 'gopher://x' })).body.error.code).toBe('webhook_url_scheme');
    expect((await asApp('PATCH', `/v1/webhooks/${id}`, { event_types: ['nope'] })).body.error.code).toBe('webhook_event_type_unknown');
    expect((await asApp('GET', `/v1/webhooks/${id}`)).body).toMatchObject({ url: receiver.url, event_types: ['*'] });
    expect((await asApp('POST', `/v1/webhooks/${id}/redeliver`, { event_id: 'evt_nope' })).body.error.code).toBe('webhook_event_not_found');
    expect((await asApp('GET', `/v1/webhooks/${id}/deliveries/wd_nope`)).body.error.code).toBe('webhook_delivery_not_found');
    await asApp('DELETE', `/v1/webhooks/${id}`);
  });

  it('allows at most 16 endpoints per app', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 16; i += 1) ids.push((await asApp('POST', '/v1/webhooks', { url: `${receiver.url}?n=${i}`, event_types: ['*'] })).body.id);
    const refused = await asApp('POST', '/v1/webhooks', { url: receiver.url, event_types: ['*'] });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('webhook_endpoint_limit');
    for (const id of ids) await asApp('DELETE', `/v1/webhooks/${id}`);
  });

  it('disables an endpoint after repeated failure over the period, refuses redelivery to it, and resumes its queue when enabled', async () => {
    const down = await startReceiver(500);
    const created = await asApp('POST', '/v1/webhooks', { url: down.url, event_types: ['stream.closed'] });
    const id = created.body.id;
    const { event } = await t.sluice.webhooks.emit(app.id, 'stream.closed', { stream_id: 'st_test' });
    await t.sluice.webhooks.dispatchDue();
    for (let i = 0; i < 12; i += 1) {
      clock.advanceMs(120_000);
      await t.sluice.webhooks.dispatchDue();
    }
    const endpoint = (await asApp('GET', `/v1/webhooks/${id}`)).body;
    expect(endpoint).toMatchObject({ status: 'disabled', disabled_reason: 'failing' });
    expect(endpoint.consecutive_failures).toBeGreaterThanOrEqual(3);
    const attemptsWhenDisabled = down.received.length;
    clock.advanceMs(10 * HOUR);
    await t.sluice.webhooks.dispatchDue();
    expect(down.received.length).toBe(attemptsWhenDisabled);
    const [parked] = (await asApp('GET', `/v1/webhooks/${id}/deliveries`)).body.deliveries;
    expect(parked).toMatchObject({ status: 'pending', next_attempt_at: null });
    expect((await asApp('POST', `/v1/webhooks/${id}/redeliver`, { event_id: event.id })).body.error.code).toBe('webhook_endpoint_disabled');

    down.mode = 200;
    expect((await asApp('PATCH', `/v1/webhooks/${id}`, { enabled: true })).body).toMatchObject({ status: 'enabled', consecutive_failures: 0 });
    await t.sluice.webhooks.dispatchDue();
    const [done] = (await asApp('GET', `/v1/webhooks/${id}/deliveries`)).body.deliveries;
    expect(done.status).toBe('delivered');
    expect(down.received.filter((r) => r.headers['sluice-webhook-id'] === event.id).at(-1)).toBeDefined();
    await down.close();
  });

  it('fails a delivery when the retry window closes', async () => {
    const down = await startReceiver(500);
    const created = await asApp('POST', '/v1/webhooks', { url: down.url, event_types: ['payment.failed'] });
    await t.sluice.webhooks.emit(app.id, 'payment.failed', {});
    await t.sluice.webhooks.dispatchDue();
    // The endpoint is re-enabled along the way so the disable rule does not stop the retries.
    for (let hours = 0; hours < 80; hours += 1) {
      clock.advanceMs(HOUR);
      await asApp('PATCH', `/v1/webhooks/${created.body.id}`, { enabled: true });
      await t.sluice.webhooks.dispatchDue();
    }
    const [failed] = (await asApp('GET', `/v1/webhooks/${created.body.id}/deliveries`)).body.deliveries;
    expect(failed.status).toBe('failed');
    expect(Date.parse(failed.attempt_log.at(-1).at)).toBeLessThanOrEqual(Date.parse(failed.retry_until));
    await down.close();
  });
});

describe('webhooks with private addresses blocked', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice({ env: { SLUICE_WEBHOOK_PRIVATE: 'block' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('refuses loopback, private and link-local endpoints with webhook_url_not_public', async () => {
    const app = await t.createApp('shop');
    for (const url of ['http://127.0.0.1:8080/x', 'http://localhost/x', 'https://10.1.2.3/x', 'http://169.254.169.254/latest', 'http://[::1]/x', 'https://app.localhost/x']) {
      const answer = await t.call('POST', '/v1/webhooks', { key: app.apiKey, body: { url, event_types: ['*'] } });
      expect(answer.body.error?.code, url).toBe('webhook_url_not_public');
    }
    const publicOne = await t.call('POST', '/v1/webhooks', { key: app.apiKey, body: { url: 'https://example.com/hook', event_types: ['*'] } });
    expect(publicOne.status).toBe(201);
  });
});

// Keeps the fixture files this suite relies on next to it.
it('ships the Python verification snippet', () => {
  expect(fs.existsSync(path.resolve(__dirname, 'verify_signature.py'))).toBe(true);
});
