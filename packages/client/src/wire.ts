/**
 * The edge between the wire (JSON: amounts as decimal strings, times as ISO 8601 strings)
 * and the SDK's types (bigint, Date). Everything the server answers is checked here, like
 * any input: a malformed answer becomes `invalid_response`, never a wrong number.
 */
import { SluiceError } from './errors.js';
import type {
  ApiKey,
  App,
  Balance,
  CreatedApiKey,
  CreatedApp,
  DevnetInvoice,
  DevnetPayment,
  DevnetWallets,
  Health,
  Invoice,
  Payment,
} from './types.js';

type Json = Record<string, unknown>;

const AMOUNT = /^(0|[1-9][0-9]*)$/;
const AMOUNT_MAX = (1n << 63n) - 1n;

function bad(what: string): SluiceError {
  return new SluiceError('invalid_response', `the server's answer is malformed: ${what}`);
}

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`${what} is not an object`);
  return value as Json;
}

function string(body: Json, field: string): string {
  const value = body[field];
  if (typeof value !== 'string') throw bad(`${field} is not a string`);
  return value;
}

function amount(body: Json, field: string): bigint {
  const value = body[field];
  if (typeof value !== 'string' || !AMOUNT.test(value)) throw bad(`${field} is not a decimal string of msat`);
  const parsed = BigInt(value);
  if (parsed > AMOUNT_MAX) throw bad(`${field} is above 2^63-1 msat`);
  return parsed;
}

function amountOrNull(body: Json, field: string): bigint | null {
  return body[field] === null ? null : amount(body, field);
}

function time(body: Json, field: string): Date {
  const value = string(body, field);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw bad(`${field} is not an ISO 8601 time`);
  return date;
}

function timeOrNull(body: Json, field: string): Date | null {
  return body[field] === null ? null : time(body, field);
}

function oneOf<T extends string>(body: Json, field: string, allowed: readonly T[]): T {
  const value = string(body, field);
  if (!(allowed as readonly string[]).includes(value)) throw bad(`${field} is ${JSON.stringify(value)}`);
  return value as T;
}

function array(body: Json, field: string): unknown[] {
  const value = body[field];
  if (!Array.isArray(value)) throw bad(`${field} is not an array`);
  return value;
}

/** The wire form of an amount the caller passes in. A number is a bug in the caller: refuse it rather than guess. */
export function amountToWire(value: unknown, field: string): string {
  if (typeof value !== 'bigint') {
    throw new TypeError(`${field} must be a bigint of msat (e.g. 1500n), got ${typeof value}`);
  }
  return value.toString();
}

export function healthFromWire(value: unknown): Health {
  const body = object(value, 'health');
  const lightning = object(body.lightning, 'lightning');
  if (body.status !== 'ok') throw bad('status is not "ok"');
  if (typeof lightning.fake_money !== 'boolean') throw bad('lightning.fake_money is not a boolean');
  return {
    status: 'ok',
    lightning: {
      backend: string(lightning, 'backend'),
      network: string(lightning, 'network'),
      pubkey: string(lightning, 'pubkey'),
      fake_money: lightning.fake_money,
    },
    store: oneOf(body, 'store', ['sqlite', 'postgres'] as const),
  };
}

export function appFromWire(value: unknown): App {
  const body = object(value, 'app');
  return { id: string(body, 'id'), name: string(body, 'name'), created_at: time(body, 'created_at'), revoked_at: timeOrNull(body, 'revoked_at') };
}

export function createdAppFromWire(value: unknown): CreatedApp {
  const body = object(value, 'app');
  return {
    id: string(body, 'id'),
    name: string(body, 'name'),
    api_key: string(body, 'api_key'),
    key_id: string(body, 'key_id'),
    created_at: time(body, 'created_at'),
  };
}

export function appsFromWire(value: unknown): App[] {
  return array(object(value, 'app list'), 'apps').map(appFromWire);
}

export function apiKeyFromWire(value: unknown): ApiKey {
  const body = object(value, 'key');
  return { id: string(body, 'id'), prefix: string(body, 'prefix'), created_at: time(body, 'created_at'), revoked_at: timeOrNull(body, 'revoked_at') };
}

export function apiKeysFromWire(value: unknown): ApiKey[] {
  return array(object(value, 'key list'), 'keys').map(apiKeyFromWire);
}

export function createdApiKeyFromWire(value: unknown): CreatedApiKey {
  const body = object(value, 'key');
  return { id: string(body, 'id'), api_key: string(body, 'api_key'), prefix: string(body, 'prefix'), created_at: time(body, 'created_at') };
}

export function balanceFromWire(value: unknown): Balance {
  const body = object(value, 'balance');
  return { balance_msat: amount(body, 'balance_msat'), held_msat: amount(body, 'held_msat'), available_msat: amount(body, 'available_msat') };
}

export function invoiceFromWire(value: unknown): Invoice {
  const body = object(value, 'invoice');
  return {
    payment_hash: string(body, 'payment_hash'),
    payment_request: string(body, 'payment_request'),
    amount_msat: amount(body, 'amount_msat'),
    description: string(body, 'description'),
    status: oneOf(body, 'status', ['open', 'paid', 'expired'] as const),
    created_at: time(body, 'created_at'),
    expires_at: time(body, 'expires_at'),
    paid_at: timeOrNull(body, 'paid_at'),
    amount_paid_msat: amountOrNull(body, 'amount_paid_msat'),
  };
}

export function invoicesFromWire(value: unknown): Invoice[] {
  return array(object(value, 'invoice list'), 'invoices').map(invoiceFromWire);
}

export function paymentFromWire(value: unknown): Payment {
  const body = object(value, 'payment');
  const payment: Payment = {
    id: string(body, 'id'),
    payment_hash: string(body, 'payment_hash'),
    kind: oneOf(body, 'kind', ['invoice', 'keysend'] as const),
    destination: string(body, 'destination'),
    amount_msat: amount(body, 'amount_msat'),
    max_fee_msat: amount(body, 'max_fee_msat'),
    fee_msat: amountOrNull(body, 'fee_msat'),
    status: oneOf(body, 'status', ['pending', 'succeeded', 'failed'] as const),
    failure_reason: body.failure_reason === null ? null : string(body, 'failure_reason'),
    created_at: time(body, 'created_at'),
    resolved_at: timeOrNull(body, 'resolved_at'),
  };
  if (body.preimage !== undefined) payment.preimage = string(body, 'preimage');
  return payment;
}

export function paymentsFromWire(value: unknown): Payment[] {
  return array(object(value, 'payment list'), 'payments').map(paymentFromWire);
}

export function devnetWalletsFromWire(value: unknown): DevnetWallets {
  const body = object(value, 'devnet wallets');
  if (body.fake_money !== true) throw bad('fake_money is not true');
  return {
    fake_money: true,
    wallets: array(body, 'wallets').map((item) => {
      const wallet = object(item, 'wallet');
      return { name: string(wallet, 'name'), balance_msat: amount(wallet, 'balance_msat') };
    }),
  };
}

export function devnetPaymentFromWire(value: unknown): DevnetPayment {
  const body = object(value, 'devnet payment');
  return {
    payment_hash: string(body, 'payment_hash'),
    preimage: string(body, 'preimage'),
    amount_msat: amount(body, 'amount_msat'),
    fee_msat: amount(body, 'fee_msat'),
    wallet: string(body, 'wallet'),
  };
}

export function devnetInvoiceFromWire(value: unknown): DevnetInvoice {
  const body = object(value, 'devnet invoice');
  return {
    payment_hash: string(body, 'payment_hash'),
    payment_request: string(body, 'payment_request'),
    amount_msat: amount(body, 'amount_msat'),
    expires_at: time(body, 'expires_at'),
    wallet: string(body, 'wallet'),
  };
}
