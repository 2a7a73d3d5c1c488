/**
 * The three public chain routes of a Sluice (docs/paycall.md sections 2, 3 and 5), reached
 * at the offer's `buy` URL: purchase, status and refund. No API key: the buyer is whoever
 * pays the invoice and the owner is whoever holds the seed. Answers are checked before use.
 */
import { isSluiceServerErrorCode, SluiceError } from '../errors.js';

/** The fetch the paying fetch sends everything through. */
export type BaseFetch = (input: string, init?: RequestInit) => Promise<Response>;

/** A chain as the server describes it (the fields the SDK reads). */
export interface ChainView {
  chainId: string;
  appId: string;
  steps: number;
  stepMsat: bigint;
  amountMsat: bigint;
  status: 'pending' | 'active' | 'exhausted' | 'expired' | 'refunded';
  index: number;
  remainingSteps: number;
  remainingMsat: bigint;
  expiresAt: Date;
  /** Only in the purchase answer. */
  invoice: { paymentRequest: string; paymentHash: string } | null;
}

/** A refund's answer: the amount and the payment's state. */
export interface RefundView {
  chain: ChainView;
  amountMsat: bigint;
  paymentHash: string;
  paymentStatus: 'pending' | 'succeeded' | 'failed';
  feeMsat: bigint | null;
}

const STATUSES = new Set(['pending', 'active', 'exhausted', 'expired', 'refunded']);

function bad(what: string): SluiceError {
  return new SluiceError('invalid_response', `the chain API answered without a valid ${what}`);
}

function field(body: Record<string, unknown>, name: string): unknown {
  return body[name];
}

function decimal(value: unknown, name: string): bigint {
  if (typeof value !== 'string' || !/^(?:0|[1-9][0-9]*)$/.test(value)) throw bad(name);
  return BigInt(value);
}

function count(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(name);
  return value;
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') throw bad(name);
  return value;
}

function object(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(name);
  return value as Record<string, unknown>;
}

/** Checks and converts a chain's JSON. */
export function chainFromWire(json: unknown): ChainView {
  const body = object(json, 'chain');
  const status = text(field(body, 'status'), 'status');
  if (!STATUSES.has(status)) throw bad('status');
  const invoiceJson = field(body, 'invoice');
  let invoice: ChainView['invoice'] = null;
  if (invoiceJson !== undefined && invoiceJson !== null) {
    const found = object(invoiceJson, 'invoice');
    invoice = { paymentRequest: text(found.payment_request, 'invoice.payment_request'), paymentHash: text(found.payment_hash, 'invoice.payment_hash') };
  }
  return {
    chainId: text(field(body, 'chain_id'), 'chain_id'),
    appId: text(field(body, 'app_id'), 'app_id'),
    steps: count(field(body, 'steps'), 'steps'),
    stepMsat: decimal(field(body, 'step_msat'), 'step_msat'),
    amountMsat: decimal(field(body, 'amount_msat'), 'amount_msat'),
    status: status as ChainView['status'],
    index: count(field(body, 'index'), 'index'),
    remainingSteps: count(field(body, 'remaining_steps'), 'remaining_steps'),
    remainingMsat: decimal(field(body, 'remaining_msat'), 'remaining_msat'),
    expiresAt: new Date(count(field(body, 'expires_at'), 'expires_at') * 1000),
    invoice,
  };
}

/** The error a Sluice JSON error answer stands for. */
export function errorFromAnswer(status: number, json: unknown): SluiceError {
  const error = typeof json === 'object' && json !== null ? (json as { error?: unknown }).error : undefined;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const message = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : undefined;
  if (typeof code !== 'string') return new SluiceError('invalid_response', `the server answered HTTP ${status} without a Sluice error body`, { status });
  const detail = typeof message === 'string' ? message : code;
  if (!isSluiceServerErrorCode(code)) return new SluiceError('unknown_error', detail, { status, serverCode: code });
  return new SluiceError(code, detail, { status });
}

/** JSON request to the chain API; a non-2xx answer rejects with its SluiceError. */
async function requestJson(fetch: BaseFetch, method: 'GET' | 'POST', url: string, body?: unknown): Promise<unknown> {
  let response: Response;
  const init: RequestInit = { method, headers: { accept: 'application/json' }, signal: AbortSignal.timeout(120_000) };
  if (body !== undefined) {
    init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  let answer: string;
  try {
    response = await fetch(url, init);
    answer = await response.text();
  } catch (cause) {
    const detail = cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause);
    throw new SluiceError('network_error', `could not reach ${new URL(url).origin}: ${detail}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(answer);
  } catch {
    throw new SluiceError('invalid_response', `${method} ${url} answered HTTP ${response.status} with a body that is not JSON`, { status: response.status });
  }
  if (response.status < 200 || response.status > 299) throw errorFromAnswer(response.status, json);
  return json;
}

/** `POST {buy}`: a pending chain and its invoice. */
export async function buyChain(fetch: BaseFetch, buyUrl: string, request: { appId: string; anchorHex: string; steps: number }): Promise<ChainView> {
  const view = chainFromWire(await requestJson(fetch, 'POST', buyUrl, { app_id: request.appId, anchor: request.anchorHex, steps: request.steps }));
  if (view.invoice === null) throw bad('invoice');
  return view;
}

/** `GET {buy}/{id}`. */
export async function getChain(fetch: BaseFetch, buyUrl: string, chainId: string): Promise<ChainView> {
  return chainFromWire(await requestJson(fetch, 'GET', `${buyUrl}/${encodeURIComponent(chainId)}`));
}

/** `POST {buy}/{id}/refund` with the next link as proof. */
export async function refundChain(
  fetch: BaseFetch,
  buyUrl: string,
  chainId: string,
  request: { index: number; linkHex: string; invoice?: string; lightningAddress?: string },
): Promise<RefundView> {
  const body: Record<string, unknown> = { index: request.index, link: request.linkHex };
  if (request.invoice !== undefined) body.invoice = request.invoice;
  if (request.lightningAddress !== undefined) body.lightning_address = request.lightningAddress;
  const json = object(await requestJson(fetch, 'POST', `${buyUrl}/${encodeURIComponent(chainId)}/refund`, body), 'refund answer');
  const refund = object(json.refund, 'refund');
  const payment = object(refund.payment, 'refund.payment');
  const status = text(payment.status, 'refund.payment.status');
  if (status !== 'pending' && status !== 'succeeded' && status !== 'failed') throw bad('refund.payment.status');
  return {
    chain: chainFromWire(json),
    amountMsat: decimal(refund.amount_msat, 'refund.amount_msat'),
    paymentHash: text(payment.payment_hash, 'refund.payment.payment_hash'),
    paymentStatus: status,
    feeMsat: payment.fee_msat === null || payment.fee_msat === undefined ? null : decimal(payment.fee_msat, 'refund.payment.fee_msat'),
  };
}
