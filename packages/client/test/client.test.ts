// The SDK against a real Sluice (SQLite in a temp dir, devnet backend with fake money) over a
// real socket: every route, amounts as bigint, times as Date, and the error codes a caller
// branches on. Client-side failures (network, timeout, malformed answers) use a fake fetch.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSluice, type Sluice } from '../../server/src/app.js';
import { loadConfig } from '../../server/src/config.js';
import { createLogger } from '../../server/src/logger.js';
import {
  SluiceClient,
  SluiceError,
  isSluiceError,
  newIdempotencyKey,
  stringifyJson,
  type FetchFunction,
  type PayRequest,
} from '../src/index.js';

const ADMIN_KEY = 'test-admin-key-0123456789';

let sluice: Sluice;
let dataDir: string;
let baseUrl: string;
let admin: SluiceClient;
let app: SluiceClient;
let appId: string;

async function expectSluiceError(promise: Promise<unknown>, code: string, status: number): Promise<SluiceError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected ${code}, but the call succeeded`);
    },
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(SluiceError);
  expect((error as SluiceError).code).toBe(code);
  expect((error as SluiceError).status).toBe(status);
  return error as SluiceError;
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sdk-'));
  const loaded = loadConfig({ SLUICE_DATA_DIR: dataDir, PORT: '0', SLUICE_ADMIN_KEY: ADMIN_KEY, LOG_LEVEL: 'silent', SLUICE_DEVNET_SEED: 'sdk-tests' });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  sluice = await createSluice(loaded.config, { logger: createLogger('silent') });
  baseUrl = await sluice.listen();
  admin = new SluiceClient({ baseUrl, apiKey: ADMIN_KEY });
  const created = await admin.createApp({ name: 'sdk test app' });
  appId = created.id;
  app = new SluiceClient({ baseUrl: baseUrl + '/', apiKey: created.api_key });
});

afterAll(async () => {
  await sluice?.close();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('health', () => {
  it('answers without a key and says the devnet is fake money', async () => {
    const health = await new SluiceClient({ baseUrl }).health();
    expect(health).toEqual({
      status: 'ok',
      lightning: { backend: 'devnet', network: 'regtest', pubkey: sluice.nodeInfo.pubkey, fake_money: true },
      store: 'sqlite',
    });
  });
});

describe('apps and keys (admin)', () => {
  it('creates an app whose key works, lists it, and revokes it', async () => {
    const created = await admin.createApp({ name: 'short-lived' });
    expect(created.api_key).toMatch(/^sk_/);
    expect(created.name).toBe('short-lived');
    expect(created.created_at).toBeInstanceOf(Date);

    const listed = (await admin.listApps()).find((candidate) => candidate.id === created.id);
    expect(listed).toMatchObject({ id: created.id, name: 'short-lived', revoked_at: null });

    const itsClient = new SluiceClient({ baseUrl, apiKey: created.api_key });
    expect((await itsClient.balance()).balance_msat).toBe(0n);

    const revoked = await admin.revokeApp(created.id);
    expect(revoked.revoked_at).toBeInstanceOf(Date);
    await expectSluiceError(itsClient.balance(), 'invalid_api_key', 401);
  });

  it('adds, lists and revokes API keys', async () => {
    const key = await admin.createApiKey(appId);
    expect(key.api_key.startsWith(key.prefix)).toBe(true);
    const keys = await admin.listApiKeys(appId);
    expect(keys.map((listed) => listed.id)).toContain(key.id);
    expect(JSON.stringify(keys)).not.toContain(key.api_key);

    const extra = new SluiceClient({ baseUrl, apiKey: key.api_key });
    await extra.balance();
    const revoked = await admin.revokeApiKey(appId, key.id);
    expect(revoked.revoked_at).toBeInstanceOf(Date);
    await expectSluiceError(extra.balance(), 'invalid_api_key', 401);
  });

  it('answers app_not_found and api_key_not_found', async () => {
    await expectSluiceError(admin.revokeApp('app_nope'), 'app_not_found', 404);
    await expectSluiceError(admin.listApiKeys('app_nope'), 'app_not_found', 404);
    await expectSluiceError(admin.revokeApiKey(appId, 'key_nope'), 'api_key_not_found', 404);
  });
});

describe('money in and out, as bigint msat', () => {
  it('creates an invoice, a devnet wallet pays it, and the balance shows it', async () => {
    const invoice = await app.createInvoice({ amount_msat: 21_000n, description: 'a coffee', expiry_s: 600 });
    expect(invoice.amount_msat).toBe(21_000n);
    expect(invoice.status).toBe('open');
    expect(invoice.payment_request).toMatch(/^lnbcrt/);
    expect(invoice.expires_at.getTime() - invoice.created_at.getTime()).toBe(600_000);
    expect(invoice.paid_at).toBeNull();

    const paid = await app.devnetPay({ payment_request: invoice.payment_request, wallet: 'alice' });
    expect(paid.payment_hash).toBe(invoice.payment_hash);
    expect(paid.amount_msat).toBe(21_000n);
    expect(typeof paid.fee_msat).toBe('bigint');
    expect(createHash('sha256').update(Buffer.from(paid.preimage, 'hex')).digest('hex')).toBe(invoice.payment_hash);

    const after = await app.getInvoice(invoice.payment_hash);
    expect(after.status).toBe('paid');
    expect(after.amount_paid_msat).toBe(21_000n);
    expect(after.paid_at).toBeInstanceOf(Date);

    expect(await app.balance()).toEqual({ balance_msat: 21_000n, held_msat: 0n, available_msat: 21_000n });
    expect((await app.listInvoices({ limit: 5 })).map((listed) => listed.payment_hash)).toContain(invoice.payment_hash);
  });

  it('pays a devnet invoice from the balance; a retry with the same key returns the same payment', async () => {
    const before = await app.balance();
    const target = await app.devnetInvoice({ amount_msat: 5_000n, wallet: 'bob', description: 'payout' });
    expect(target.amount_msat).toBe(5_000n);
    expect(target.wallet).toBe('bob');
    expect(target.expires_at).toBeInstanceOf(Date);

    const request: PayRequest = { payment_request: target.payment_request, max_fee_msat: 2_000n, idempotency_key: newIdempotencyKey() };
    const payment = await app.pay(request);
    expect(payment.status).toBe('succeeded');
    expect(payment.kind).toBe('invoice');
    expect(payment.amount_msat).toBe(5_000n);
    expect(payment.max_fee_msat).toBe(2_000n);
    const fee = payment.fee_msat as bigint;
    expect(typeof fee).toBe('bigint');
    expect(fee <= 2_000n).toBe(true);
    expect(createHash('sha256').update(Buffer.from(payment.preimage as string, 'hex')).digest('hex')).toBe(target.payment_hash);

    const again = await app.pay(request);
    expect(again.id).toBe(payment.id);
    expect(await app.balance()).toEqual({
      balance_msat: before.balance_msat - 5_000n - fee,
      held_msat: 0n,
      available_msat: before.balance_msat - 5_000n - fee,
    });

    expect((await app.getPayment(target.payment_hash)).id).toBe(payment.id);
    expect((await app.listPayments()).map((listed) => listed.id)).toContain(payment.id);
    const wallets = await app.devnetWallets();
    expect(wallets.fake_money).toBe(true);
    expect(wallets.wallets.find((wallet) => wallet.name === 'bob')?.balance_msat).toBeTypeOf('bigint');
  });

  it('refuses an idempotency key reused with other arguments', async () => {
    const first = await app.devnetInvoice({ amount_msat: 1_000n });
    const second = await app.devnetInvoice({ amount_msat: 1_000n });
    const idempotency_key = newIdempotencyKey();
    await app.pay({ payment_request: first.payment_request, idempotency_key, max_fee_msat: 1_000n });
    await expectSluiceError(app.pay({ payment_request: second.payment_request, idempotency_key, max_fee_msat: 1_000n }), 'idempotency_key_reused', 409);
  });

  it('answers insufficient_balance, invoice_invalid and not_found', async () => {
    const big = await app.devnetInvoice({ amount_msat: 10_000_000n });
    await expectSluiceError(app.pay({ payment_request: big.payment_request, idempotency_key: newIdempotencyKey() }), 'insufficient_balance', 409);
    await expectSluiceError(app.pay({ payment_request: 'lnbcrt1nonsense', idempotency_key: newIdempotencyKey() }), 'invoice_invalid', 400);
    await expectSluiceError(app.getInvoice('00'.repeat(32)), 'not_found', 404);
    await expectSluiceError(app.getPayment('00'.repeat(32)), 'not_found', 404);
  });
});

describe('error codes from the server', () => {
  const rows: { description: string; call: () => Promise<unknown>; code: string; status: number }[] = [
    { description: 'unknown key', call: () => new SluiceClient({ baseUrl, apiKey: 'sk_not-a-key' }).balance(), code: 'invalid_api_key', status: 401 },
    { description: 'no key', call: () => new SluiceClient({ baseUrl }).balance(), code: 'unauthorized', status: 401 },
    { description: 'app key on an admin route', call: () => app.listApps(), code: 'forbidden', status: 403 },
    { description: 'admin key on an app route', call: () => admin.balance(), code: 'forbidden', status: 403 },
    { description: 'zero amount', call: () => app.createInvoice({ amount_msat: 0n }), code: 'invalid_amount', status: 400 },
    { description: 'negative amount', call: () => app.createInvoice({ amount_msat: -1n }), code: 'invalid_amount', status: 400 },
    { description: 'amount above 2^63-1', call: () => app.createInvoice({ amount_msat: 1n << 63n }), code: 'invalid_amount', status: 400 },
    { description: 'expiry too short', call: () => app.createInvoice({ amount_msat: 1n, expiry_s: 1 }), code: 'expiry_out_of_range', status: 400 },
    { description: 'bad idempotency key', call: () => app.pay({ payment_request: 'x', idempotency_key: 'has spaces' }), code: 'idempotency_key_invalid', status: 400 },
    { description: 'unknown devnet wallet', call: () => app.devnetInvoice({ amount_msat: 1n, wallet: 'mallory' }), code: 'invalid_request', status: 400 },
  ];
  for (const row of rows) {
    it(row.description, async () => {
      await expectSluiceError(row.call(), row.code, row.status);
    });
  }
});

describe('arguments refused before anything is sent', () => {
  let calls = 0;
  const counting: FetchFunction = (input, init) => {
    calls += 1;
    return fetch(input, init);
  };
  const rows: { description: string; call: (client: SluiceClient) => Promise<unknown> }[] = [
    { description: 'a number amount', call: (client) => client.createInvoice({ amount_msat: 1500 as unknown as bigint }) },
    { description: 'a string amount', call: (client) => client.createInvoice({ amount_msat: '1500' as unknown as bigint }) },
    { description: 'a number max fee', call: (client) => client.pay({ payment_request: 'x', max_fee_msat: 1 as unknown as bigint, idempotency_key: 'k' }) },
    { description: 'a payment without idempotency key', call: (client) => client.pay({ payment_request: 'x' } as unknown as PayRequest) },
    { description: 'a limit out of range', call: (client) => client.listPayments({ limit: 0 }) },
    { description: 'an empty payment hash', call: (client) => client.getPayment('') },
  ];
  for (const row of rows) {
    it(row.description, async () => {
      calls = 0;
      const client = new SluiceClient({ baseUrl, apiKey: 'sk_whatever', fetch: counting });
      await expect(row.call(client)).rejects.toBeInstanceOf(TypeError);
      expect(calls).toBe(0);
    });
  }

  it('a baseUrl that is not an http URL', () => {
    expect(() => new SluiceClient({ baseUrl: 'localhost:8402' })).toThrow(TypeError);
    expect(() => new SluiceClient({ baseUrl: 'ftp://example.test' })).toThrow(TypeError);
  });
});

describe('failures the SDK names itself', () => {
  const answer = (status: number, body: string): FetchFunction => async () => new Response(body, { status, headers: { 'content-type': 'application/json' } });

  it('network_error when nothing listens', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as net.AddressInfo;
        server.close(() => resolve(free));
      });
    });
    const error = await expectSluiceError(new SluiceClient({ baseUrl: `http://127.0.0.1:${port}` }).health(), 'network_error', 0);
    expect(error.serverCode).toBeNull();
  });

  it('timeout when no answer comes in time', async () => {
    const never: FetchFunction = (_input, init) =>
      new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason)));
    await expectSluiceError(new SluiceClient({ baseUrl, fetch: never, timeoutMs: 20 }).health(), 'timeout', 0);
  });

  it('invalid_response for a proxy page, a bad amount or a missing field', async () => {
    await expectSluiceError(new SluiceClient({ baseUrl, fetch: answer(502, '<html>bad gateway</html>') }).health(), 'invalid_response', 502);
    await expectSluiceError(new SluiceClient({ baseUrl, fetch: answer(200, 'not json') }).health(), 'invalid_response', 200);
    const amounts = ['1.5', '-1', '01', '', '9223372036854775808'];
    for (const bad of amounts) {
      const body = JSON.stringify({ balance_msat: bad, held_msat: '0', available_msat: '0' });
      await expectSluiceError(new SluiceClient({ baseUrl, fetch: answer(200, body) }).balance(), 'invalid_response', 200);
    }
    const numeric = JSON.stringify({ balance_msat: 5, held_msat: '0', available_msat: '0' });
    await expectSluiceError(new SluiceClient({ baseUrl, fetch: answer(200, numeric) }).balance(), 'invalid_response', 200);
    await expectSluiceError(new SluiceClient({ baseUrl, fetch: answer(200, '{"apps":[{"id":"a"}]}') }).listApps(), 'invalid_response', 200);
  });

  it('unknown_error keeps a code from a newer server', async () => {
    const error = await expectSluiceError(
      new SluiceClient({ baseUrl, fetch: answer(418, '{"error":{"code":"brand_new_code","message":"from the future"}}') }).health(),
      'unknown_error',
      418,
    );
    expect(error.serverCode).toBe('brand_new_code');
    expect(error.message).toBe('from the future');
    expect(isSluiceError(error)).toBe(true);
    expect(isSluiceError(error, 'unknown_error')).toBe(true);
    expect(isSluiceError(new Error('x'))).toBe(false);
  });

  it('sends the key only as a bearer header', async () => {
    let seen: RequestInit | undefined;
    const spy: FetchFunction = async (_input, init) => {
      seen = init;
      return new Response('{"balance_msat":"1","held_msat":"0","available_msat":"1"}', { status: 200 });
    };
    await new SluiceClient({ baseUrl, apiKey: 'sk_secret', fetch: spy }).balance();
    expect((seen?.headers as Record<string, string>).authorization).toBe('Bearer sk_secret');
  });
});

describe('helpers', () => {
  it('newIdempotencyKey makes distinct keys the server accepts', () => {
    const keys = new Set(Array.from({ length: 100 }, () => newIdempotencyKey()));
    expect(keys.size).toBe(100);
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
  });

  it('stringifyJson writes amounts as decimal strings and times as ISO 8601', () => {
    expect(stringifyJson({ amount_msat: 9_223_372_036_854_775_807n, at: new Date(0), none: null })).toBe(
      '{"amount_msat":"9223372036854775807","at":"1970-01-01T00:00:00.000Z","none":null}',
    );
  });
});
