/**
 * sluice.v1 JSON to the SDK's types and back. Everything the server sends is checked like
 * input: a malformed amount becomes `invalid_response`, never a wrong number.
 */
import { SluiceError } from '../errors.js';
import type { PayoutDestination, Stream, StreamEvent, StreamTerms } from './types.js';

export type Json = Record<string, unknown>;

const UNSIGNED = /^(0|[1-9][0-9]*)$/;
const SIGNED = /^(0|-?[1-9][0-9]*)$/;
const AMOUNT_MAX = (1n << 63n) - 1n;

export function bad(what: string): SluiceError {
  return new SluiceError('invalid_response', `the server's message is malformed: ${what}`);
}

export function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`${what} is not an object`);
  return value as Json;
}

export function string(body: Json, field: string): string {
  const value = body[field];
  if (typeof value !== 'string') throw bad(`${field} is not a string`);
  return value;
}

export function integer(body: Json, field: string): number {
  const value = body[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(`${field} is not a non-negative integer`);
  return value;
}

function parseAmount(value: unknown, field: string, signed: boolean): bigint {
  if (typeof value !== 'string' || !(signed ? SIGNED : UNSIGNED).test(value)) throw bad(`${field} is not a decimal string of msat`);
  const parsed = BigInt(value);
  if (parsed > AMOUNT_MAX || parsed < -AMOUNT_MAX) throw bad(`${field} is out of range`);
  return parsed;
}

export function amount(body: Json, field: string): bigint {
  return parseAmount(body[field], field, false);
}

export function signed(body: Json, field: string): bigint {
  return parseAmount(body[field], field, true);
}

function time(body: Json, field: string): Date {
  const date = new Date(string(body, field));
  if (Number.isNaN(date.getTime())) throw bad(`${field} is not an ISO 8601 time`);
  return date;
}

function timeOrNull(body: Json, field: string): Date | null {
  return body[field] === null || body[field] === undefined ? null : time(body, field);
}

function destinationFromWire(value: unknown): PayoutDestination | null {
  if (value === null || value === undefined) return null;
  const body = object(value, 'payout');
  if (body.keysend !== undefined) return { keysend: { pubkey: string(object(body.keysend, 'payout.keysend'), 'pubkey') } };
  if (body.lightning_address !== undefined) return { lightning_address: string(body, 'lightning_address') };
  if (body.invoice === true) return { invoice: true };
  throw bad('payout has no destination');
}

export function streamFromWire(value: unknown): Stream {
  const body = object(value, 'stream');
  const status = string(body, 'status');
  const meter = string(body, 'meter');
  if (status !== 'open' && status !== 'closed') throw bad(`status is ${JSON.stringify(status)}`);
  if (meter !== 'stopped' && meter !== 'running' && meter !== 'paused') throw bad(`meter is ${JSON.stringify(meter)}`);
  const prices: Record<string, bigint> = {};
  for (const [name, price] of Object.entries(object(body.prices, 'prices'))) prices[name] = parseAmount(price, `prices.${name}`, false);
  return {
    id: string(body, 'id'),
    status,
    meter,
    seq: integer(body, 'seq'),
    balance_msat: signed(body, 'balance_msat'),
    held_msat: amount(body, 'held_msat'),
    prices,
    rate_msat_per_s: amount(body, 'rate_msat_per_s'),
    maximum_msat: amount(body, 'maximum_msat'),
    settle_threshold_msat: amount(body, 'settle_threshold_msat'),
    settle_to_msat: amount(body, 'settle_to_msat'),
    max_charge_msat: amount(body, 'max_charge_msat'),
    payout_threshold_msat: amount(body, 'payout_threshold_msat'),
    expires_at: timeOrNull(body, 'expires_at'),
    payout: destinationFromWire(body.payout),
    metadata: string(body, 'metadata'),
    created_at: time(body, 'created_at'),
    closed_at: timeOrNull(body, 'closed_at'),
  };
}

/** An event, or null for an event type this SDK does not know (a newer server): its seq still counts. */
export function eventFromWire(value: unknown): StreamEvent | null {
  const body = object(value, 'event');
  const base = { stream_id: string(body, 'stream_id'), seq: integer(body, 'seq'), at: time(body, 'at') };
  const type = string(body, 'type');
  switch (type) {
    case 'created':
      return { ...base, type, balance_msat: signed(body, 'balance_msat') };
    case 'payout_requested':
      return { ...base, type, amount_msat: amount(body, 'amount_msat'), payment_hash: string(body, 'payment_hash'), balance_msat: signed(body, 'balance_msat') };
    case 'payout_destination_set':
      return { ...base, type, destination: string(body, 'destination'), balance_msat: signed(body, 'balance_msat') };
    case 'invoice':
      return {
        ...base, type, payment_request: string(body, 'payment_request'), payment_hash: string(body, 'payment_hash'),
        amount_msat: amount(body, 'amount_msat'), expires_at: time(body, 'expires_at'), balance_msat: signed(body, 'balance_msat'),
      };
    case 'funded':
      return { ...base, type, amount_msat: amount(body, 'amount_msat'), payment_hash: string(body, 'payment_hash'), balance_msat: signed(body, 'balance_msat') };
    case 'charged':
    case 'rewarded':
    case 'metered':
      return {
        ...base, type, event: string(body, 'event'), amount_msat: amount(body, 'amount_msat'),
        balance_msat: body.balance_msat === undefined ? null : signed(body, 'balance_msat'),
      };
    case 'meter_started':
    case 'paused':
    case 'resumed':
    case 'meter_stopped':
      return { ...base, type, reason: string(body, 'reason'), balance_msat: signed(body, 'balance_msat') };
    case 'payout_invoice_needed':
      return { ...base, type, amount_msat: amount(body, 'amount_msat'), balance_msat: signed(body, 'balance_msat') };
    case 'settled':
      return {
        ...base, type, amount_msat: amount(body, 'amount_msat'), fee_msat: amount(body, 'fee_msat'),
        payment_hash: string(body, 'payment_hash'), balance_msat: signed(body, 'balance_msat'),
      };
    case 'payout_failed':
      return { ...base, type, amount_msat: amount(body, 'amount_msat'), reason: string(body, 'reason'), balance_msat: signed(body, 'balance_msat') };
    case 'closed':
      return { ...base, type, by: string(body, 'by'), balance_msat: signed(body, 'balance_msat') };
    case 'balance':
      return { ...base, type, balance_msat: signed(body, 'balance_msat'), held_msat: amount(body, 'held_msat') };
    default:
      return null;
  }
}

/** An amount the caller passes in: a number is a bug in the caller, refused before anything is sent. */
export function amountToWire(value: unknown, field: string): string {
  if (typeof value !== 'bigint') throw new TypeError(`${field} must be a bigint of msat (e.g. 1500n), got ${typeof value}`);
  if (value < 0n) throw new TypeError(`${field} must not be negative`);
  return value.toString();
}

export function termsToWire(terms: StreamTerms): Json {
  const wire: Json = {};
  if (terms.prices !== undefined) {
    wire.prices = Object.fromEntries(Object.entries(terms.prices).map(([name, price]) => [name, amountToWire(price, `prices.${name}`)]));
  }
  for (const field of ['rate_msat_per_s', 'maximum_msat', 'settle_threshold_msat', 'settle_to_msat', 'max_charge_msat', 'payout_threshold_msat'] as const) {
    if (terms[field] !== undefined) wire[field] = amountToWire(terms[field], field);
  }
  if (terms.expires_in_s !== undefined) wire.expires_in_s = terms.expires_in_s;
  if (terms.payout !== undefined) wire.payout = terms.payout;
  if (terms.metadata !== undefined) wire.metadata = terms.metadata;
  return wire;
}
