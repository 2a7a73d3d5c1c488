/**
 * `SluiceClient`: one method per route of the HTTP API. It runs in browsers and in Node 20+
 * (it needs only the global `fetch`, `AbortSignal.timeout` and `crypto`).
 *
 * Threat model: the API key is a bearer secret; the client sends it only in the
 * Authorization header of requests to `baseUrl` and never logs it. The server's answers
 * are checked before they become typed values (see wire.ts). Money never passes through a
 * float: amounts are bigint in, decimal strings on the wire, bigint out.
 *
 * The client never retries by itself. A request that moves money (`pay`) carries an
 * idempotency key chosen by the caller, so that the caller can retry after a network error
 * or a timeout with the same key and get the first result instead of paying twice.
 */
import { isSluiceServerErrorCode, SluiceError } from './errors.js';
import type {
  ApiKey,
  App,
  Balance,
  CreatedApiKey,
  CreatedApp,
  CreateInvoiceRequest,
  DevnetInvoice,
  DevnetInvoiceRequest,
  DevnetPayment,
  DevnetPayRequest,
  DevnetWallets,
  Health,
  Invoice,
  ListOptions,
  Payment,
  PayRequest,
} from './types.js';
import {
  amountToWire,
  apiKeyFromWire,
  apiKeysFromWire,
  appFromWire,
  appsFromWire,
  balanceFromWire,
  createdApiKeyFromWire,
  createdAppFromWire,
  devnetInvoiceFromWire,
  devnetPaymentFromWire,
  devnetWalletsFromWire,
  healthFromWire,
  invoiceFromWire,
  invoicesFromWire,
  paymentFromWire,
  paymentsFromWire,
} from './wire.js';

/**
 * The `fetch` the client calls: the global one by default, or any compatible function
 * (a test double, a fetch with a proxy agent).
 *
 * @example
 * ```ts
 * const logged: FetchFunction = (input, init) => {
 *   console.log(init?.method, input);
 *   return fetch(input, init);
 * };
 * ```
 */
export type FetchFunction = (input: string, init?: RequestInit) => Promise<Response>;

/**
 * How to reach a Sluice server.
 *
 * @example
 * ```ts
 * const options: SluiceClientOptions = { baseUrl: 'http://127.0.0.1:8402', apiKey: process.env.SLUICE_API_KEY };
 * const client = new SluiceClient(options);
 * ```
 */
export interface SluiceClientOptions {
  /** The server's address, e.g. `http://127.0.0.1:8402` (a trailing slash is fine). */
  baseUrl: string;
  /** An app key (`sk_...`) or the admin key (`sa_...`); omit it for `health()` only. */
  apiKey?: string | undefined;
  /** Replaces the global fetch. */
  fetch?: FetchFunction | undefined;
  /** How long one request may take before it fails with `timeout`; default 120000, 0 for none. */
  timeoutMs?: number | undefined;
}

/** Default request timeout: above the server's default payment timeout (60 s) with room to spare. */
const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * A new idempotency key: a random UUID. Make one per payment, keep it with the payment's
 * record, and send the same key again on every retry of that payment.
 *
 * @example
 * ```ts
 * import { newIdempotencyKey } from '@sluice/client';
 * const idempotency_key = newIdempotencyKey();
 * await client.pay({ payment_request, idempotency_key });
 * ```
 */
export function newIdempotencyKey(): string {
  const crypto = globalThis.crypto;
  if (crypto === undefined) throw new Error('newIdempotencyKey needs the Web Crypto API (globalThis.crypto)');
  // randomUUID exists only in secure contexts in browsers; getRandomValues everywhere.
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * `JSON.stringify` for the SDK's values: bigint amounts become decimal strings and Dates ISO
 * 8601 strings, which gives back exactly the wire JSON the server sent.
 *
 * @example
 * ```ts
 * import { stringifyJson } from '@sluice/client';
 * stringifyJson({ amount_msat: 1500n }); // '{"amount_msat":"1500"}'
 * ```
 */
export function stringifyJson(value: unknown, space?: number): string {
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item), space);
}

function checkLimit(options: ListOptions): string {
  if (options.limit === undefined) return '';
  const { limit } = options;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new TypeError(`limit must be an integer from 1 to 1000, got ${String(limit)}`);
  return `?limit=${limit}`;
}

function checkIdempotencyKey(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError('idempotency_key is required: make one with newIdempotencyKey() and reuse it when you retry');
  }
  return value;
}

function segment(value: string, name: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name} must be a non-empty string`);
  return encodeURIComponent(value);
}

function errorFromAnswer(status: number, body: unknown): SluiceError {
  const error = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const message = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : undefined;
  if (typeof code !== 'string') {
    return new SluiceError('invalid_response', `the server answered HTTP ${status} without a Sluice error body`, { status });
  }
  const text = typeof message === 'string' ? message : code;
  if (!isSluiceServerErrorCode(code)) return new SluiceError('unknown_error', text, { status, serverCode: code });
  return new SluiceError(code, text, { status });
}

/**
 * A client of one Sluice server. Create one per key: an app client with an app key for
 * invoices, payments and the balance; an admin client with the admin key to manage apps.
 *
 * Every method resolves to typed values (amounts as bigint msat, times as Date) or rejects
 * with a `SluiceError`. Arguments of the wrong type (an amount that is a number, a missing
 * idempotency key) throw a `TypeError` before anything is sent.
 *
 * @example
 * ```ts
 * import { SluiceClient, newIdempotencyKey } from '@sluice/client';
 *
 * const client = new SluiceClient({ baseUrl: 'http://127.0.0.1:8402', apiKey: 'sk_...' });
 * const invoice = await client.createInvoice({ amount_msat: 21_000n, description: 'a coffee' });
 * console.log(invoice.payment_request);
 * const payment = await client.pay({ payment_request: 'lnbcrt...', idempotency_key: newIdempotencyKey() });
 * console.log(payment.status);
 * ```
 */
export class SluiceClient {
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: FetchFunction;
  readonly #timeoutMs: number;

  constructor(options: SluiceClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new TypeError(`baseUrl is not a URL: ${JSON.stringify(options.baseUrl)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`baseUrl must be http or https, got ${url.protocol}`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0) throw new TypeError('timeoutMs must be a non-negative integer');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiKey = options.apiKey === '' ? undefined : options.apiKey;
    // Looked up at call time, so a fetch installed after the client was made is used.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = timeoutMs;
  }

  async #request<T>(method: 'GET' | 'POST', path: string, decode: (json: unknown) => T, body?: Record<string, unknown>): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    const init: RequestInit = { method, headers };
    if (method === 'POST') {
      // Always a JSON body on POST: an empty body with a JSON content type is refused.
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body ?? {});
    }
    const signal = this.#timeoutMs > 0 ? AbortSignal.timeout(this.#timeoutMs) : undefined;
    if (signal) init.signal = signal;

    let status: number;
    let text: string;
    try {
      const response = await this.#fetch(this.baseUrl + path, init);
      status = response.status;
      text = await response.text();
    } catch (cause) {
      if (signal?.aborted) {
        throw new SluiceError('timeout', `no answer from ${this.baseUrl} within ${this.#timeoutMs} ms; the outcome is unknown`, { cause });
      }
      const detail = cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause);
      throw new SluiceError('network_error', `could not reach ${this.baseUrl}: ${detail}`, { cause });
    }

    let json: unknown;
    let isJson = true;
    try {
      json = JSON.parse(text);
    } catch {
      isJson = false;
    }
    if (status < 200 || status > 299) throw errorFromAnswer(status, isJson ? json : undefined);
    if (!isJson) throw new SluiceError('invalid_response', `the server answered HTTP ${status} with a body that is not JSON`, { status });
    try {
      return decode(json);
    } catch (error) {
      // The mappers do not know the status; the caller should.
      if (error instanceof SluiceError) throw new SluiceError(error.code, error.message, { status });
      throw error;
    }
  }

  /**
   * `GET /v1/health`: whether the server is up and what it runs on. Needs no key.
   *
   * @example
   * ```ts
   * const health = await client.health();
   * console.log(health.lightning.backend, health.store);
   * ```
   */
  async health(): Promise<Health> {
    return this.#request('GET', '/v1/health', healthFromWire);
  }

  /**
   * `POST /v1/apps` (admin key): a new app and its first API key, shown only here.
   *
   * @example
   * ```ts
   * const admin = new SluiceClient({ baseUrl, apiKey: adminKey });
   * const app = await admin.createApp({ name: 'my game' });
   * console.log(app.id, app.api_key);
   * ```
   */
  async createApp(options: { name?: string } = {}): Promise<CreatedApp> {
    const body = options.name === undefined ? {} : { name: options.name };
    return this.#request('POST', '/v1/apps', createdAppFromWire, body);
  }

  /**
   * `GET /v1/apps` (admin key): every app, revoked ones included.
   *
   * @example
   * ```ts
   * for (const app of await admin.listApps()) console.log(app.id, app.name);
   * ```
   */
  async listApps(): Promise<App[]> {
    return this.#request('GET', '/v1/apps', appsFromWire);
  }

  /**
   * `POST /v1/apps/{app_id}/revoke` (admin key): revokes the app and all its keys.
   *
   * @example
   * ```ts
   * const revoked = await admin.revokeApp('app_...');
   * console.log(revoked.revoked_at);
   * ```
   */
  async revokeApp(appId: string): Promise<App> {
    return this.#request('POST', `/v1/apps/${segment(appId, 'appId')}/revoke`, appFromWire);
  }

  /**
   * `POST /v1/apps/{app_id}/keys` (admin key): one more API key for an app, shown only here.
   *
   * @example
   * ```ts
   * const key = await admin.createApiKey('app_...');
   * console.log(key.api_key);
   * ```
   */
  async createApiKey(appId: string): Promise<CreatedApiKey> {
    return this.#request('POST', `/v1/apps/${segment(appId, 'appId')}/keys`, createdApiKeyFromWire);
  }

  /**
   * `GET /v1/apps/{app_id}/keys` (admin key): an app's keys, without their secrets.
   *
   * @example
   * ```ts
   * const keys = await admin.listApiKeys('app_...');
   * console.log(keys.map((key) => key.prefix));
   * ```
   */
  async listApiKeys(appId: string): Promise<ApiKey[]> {
    return this.#request('GET', `/v1/apps/${segment(appId, 'appId')}/keys`, apiKeysFromWire);
  }

  /**
   * `POST /v1/apps/{app_id}/keys/{key_id}/revoke` (admin key): revokes one key.
   *
   * @example
   * ```ts
   * await admin.revokeApiKey('app_...', 'key_...');
   * ```
   */
  async revokeApiKey(appId: string, keyId: string): Promise<ApiKey> {
    return this.#request('POST', `/v1/apps/${segment(appId, 'appId')}/keys/${segment(keyId, 'keyId')}/revoke`, apiKeyFromWire);
  }

  /**
   * `GET /v1/balance` (app key): the app's balance in msat.
   *
   * @example
   * ```ts
   * const { available_msat } = await client.balance();
   * console.log(`${available_msat} msat available`);
   * ```
   */
  async balance(): Promise<Balance> {
    return this.#request('GET', '/v1/balance', balanceFromWire);
  }

  /**
   * `POST /v1/invoices` (app key): an invoice that credits the app when paid.
   *
   * @example
   * ```ts
   * const invoice = await client.createInvoice({ amount_msat: 21_000n, description: 'a coffee', expiry_s: 600 });
   * showQrCode(invoice.payment_request);
   * ```
   */
  async createInvoice(request: CreateInvoiceRequest): Promise<Invoice> {
    const body: Record<string, unknown> = { amount_msat: amountToWire(request.amount_msat, 'amount_msat') };
    if (request.description !== undefined) body.description = request.description;
    if (request.expiry_s !== undefined) body.expiry_s = request.expiry_s;
    if (request.idempotency_key !== undefined) body.idempotency_key = request.idempotency_key;
    return this.#request('POST', '/v1/invoices', invoiceFromWire, body);
  }

  /**
   * `GET /v1/invoices/{payment_hash}` (app key): one of the app's invoices.
   *
   * @example
   * ```ts
   * const invoice = await client.getInvoice(paymentHash);
   * if (invoice.status === 'paid') deliverTheCoffee();
   * ```
   */
  async getInvoice(paymentHash: string): Promise<Invoice> {
    return this.#request('GET', `/v1/invoices/${segment(paymentHash, 'paymentHash')}`, invoiceFromWire);
  }

  /**
   * `GET /v1/invoices` (app key): the app's invoices, newest first.
   *
   * @example
   * ```ts
   * const open = (await client.listInvoices({ limit: 50 })).filter((invoice) => invoice.status === 'open');
   * ```
   */
  async listInvoices(options: ListOptions = {}): Promise<Invoice[]> {
    return this.#request('GET', `/v1/invoices${checkLimit(options)}`, invoicesFromWire);
  }

  /**
   * `POST /v1/payments` (app key): pays a BOLT 11 invoice or sends a keysend from the app's
   * balance. The idempotency key is required: after a `network_error` or `timeout`, call
   * again with the same key; the server returns the first attempt instead of paying twice.
   * A `pending` payment is not failed: ask again later with `getPayment`.
   *
   * @example
   * ```ts
   * const idempotency_key = newIdempotencyKey(); // store it with your order first
   * const payment = await client.pay({ payment_request: 'lnbcrt...', max_fee_msat: 5_000n, idempotency_key });
   * if (payment.status === 'succeeded') console.log('paid, proof:', payment.preimage);
   * ```
   */
  async pay(request: PayRequest): Promise<Payment> {
    const body: Record<string, unknown> = { idempotency_key: checkIdempotencyKey(request.idempotency_key) };
    if ('keysend' in request && request.keysend !== undefined) body.keysend = { pubkey: request.keysend.pubkey };
    if ('payment_request' in request && request.payment_request !== undefined) body.payment_request = request.payment_request;
    if (request.amount_msat !== undefined) body.amount_msat = amountToWire(request.amount_msat, 'amount_msat');
    if (request.max_fee_msat !== undefined) body.max_fee_msat = amountToWire(request.max_fee_msat, 'max_fee_msat');
    return this.#request('POST', '/v1/payments', paymentFromWire, body);
  }

  /**
   * `GET /v1/payments/{payment_hash}` (app key): the app's latest payment attempt for a hash.
   *
   * @example
   * ```ts
   * const payment = await client.getPayment(paymentHash);
   * console.log(payment.status, payment.fee_msat);
   * ```
   */
  async getPayment(paymentHash: string): Promise<Payment> {
    return this.#request('GET', `/v1/payments/${segment(paymentHash, 'paymentHash')}`, paymentFromWire);
  }

  /**
   * `GET /v1/payments` (app key): the app's payments, newest first.
   *
   * @example
   * ```ts
   * const pending = (await client.listPayments()).filter((payment) => payment.status === 'pending');
   * ```
   */
  async listPayments(options: ListOptions = {}): Promise<Payment[]> {
    return this.#request('GET', `/v1/payments${checkLimit(options)}`, paymentsFromWire);
  }

  /**
   * `GET /v1/devnet/wallets` (any key; devnet only): the simulated wallets and their
   * balances. FAKE MONEY. Fails with `devnet_only` on a real backend.
   *
   * @example
   * ```ts
   * const { wallets } = await client.devnetWallets();
   * console.log(wallets.map((wallet) => `${wallet.name}: ${wallet.balance_msat}`));
   * ```
   */
  async devnetWallets(): Promise<DevnetWallets> {
    return this.#request('GET', '/v1/devnet/wallets', devnetWalletsFromWire);
  }

  /**
   * `POST /v1/devnet/pay` (any key; devnet only): a devnet wallet pays an invoice, e.g. one
   * of the app's own, to credit the app with fake money in tests and demos.
   *
   * @example
   * ```ts
   * const invoice = await client.createInvoice({ amount_msat: 10_000n });
   * await client.devnetPay({ payment_request: invoice.payment_request, wallet: 'alice' });
   * ```
   */
  async devnetPay(request: DevnetPayRequest): Promise<DevnetPayment> {
    const body: Record<string, unknown> = { payment_request: request.payment_request };
    if (request.wallet !== undefined) body.wallet = request.wallet;
    if (request.amount_msat !== undefined) body.amount_msat = amountToWire(request.amount_msat, 'amount_msat');
    return this.#request('POST', '/v1/devnet/pay', devnetPaymentFromWire, body);
  }

  /**
   * `POST /v1/devnet/invoices` (any key; devnet only): a devnet wallet issues an invoice,
   * e.g. for the app to pay out to. FAKE MONEY.
   *
   * @example
   * ```ts
   * const invoice = await client.devnetInvoice({ amount_msat: 5_000n, wallet: 'bob' });
   * await client.pay({ payment_request: invoice.payment_request, idempotency_key: newIdempotencyKey() });
   * ```
   */
  async devnetInvoice(request: DevnetInvoiceRequest): Promise<DevnetInvoice> {
    const body: Record<string, unknown> = { amount_msat: amountToWire(request.amount_msat, 'amount_msat') };
    if (request.description !== undefined) body.description = request.description;
    if (request.expiry_s !== undefined) body.expiry_s = request.expiry_s;
    if (request.wallet !== undefined) body.wallet = request.wallet;
    return this.#request('POST', '/v1/devnet/invoices', devnetInvoiceFromWire, body);
  }
}
