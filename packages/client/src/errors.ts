/**
 * Errors of the SDK: every failure of a request is one `SluiceError` with a stable `code`.
 * Codes that come from the server are listed in `SLUICE_ERROR_CODES` (the same list as the
 * server's `docs/errors.md`); a few codes are made by the SDK itself, never sent by a server,
 * and are listed in `SLUICE_CLIENT_ERROR_CODES`.
 */

/**
 * Every error code a Sluice server can answer with, in the order of `docs/errors.md`.
 * A test compares this list with the server's registry, so the two cannot drift.
 *
 * @example
 * ```ts
 * import { SLUICE_ERROR_CODES } from '@sluice/client';
 * SLUICE_ERROR_CODES.includes('insufficient_balance'); // true
 * ```
 */
export const SLUICE_ERROR_CODES = [
  'invalid_json',
  'invalid_request',
  'unknown_field',
  'invalid_amount',
  'body_too_large',
  'unsupported_media_type',
  'message_too_large',
  'unknown_type',
  'not_found',
  'method_not_allowed',
  'rate_limited',
  'unauthorized',
  'invalid_api_key',
  'forbidden',
  'idempotency_key_reused',
  'idempotency_key_invalid',
  'invoice_invalid',
  'invoice_wrong_network',
  'invoice_expired',
  'invoice_already_paid',
  'invoice_amount_required',
  'invoice_amount_mismatch',
  'description_too_long',
  'expiry_out_of_range',
  'insufficient_balance',
  'payment_to_self',
  'payment_in_flight',
  'invalid_pubkey',
  'payment_target_required',
  'keysend_amount_required',
  'stream_not_found',
  'stream_closed',
  'invalid_terms',
  'unknown_event',
  'charge_amount_required',
  'charge_too_large',
  'stream_limit_exceeded',
  'app_insufficient_balance',
  'meter_not_configured',
  'meter_state',
  'no_payout_requested',
  'payout_amount_mismatch',
  'overloaded',
  'payment_required',
  'upstream_timeout',
  'upstream_unavailable',
  'payment_service_unavailable',
  'webhook_url_invalid',
  'webhook_url_scheme',
  'webhook_url_not_public',
  'webhook_event_type_unknown',
  'webhook_endpoint_limit',
  'webhook_endpoint_not_found',
  'webhook_endpoint_disabled',
  'webhook_event_not_found',
  'webhook_delivery_not_found',
  'app_not_found',
  'api_key_not_found',
  'chain_malformed',
  'chain_unknown',
  'chain_unpaid',
  'chain_link_replayed',
  'chain_link_skipped',
  'chain_link_short',
  'chain_link_invalid',
  'chain_exhausted',
  'chain_expired',
  'chain_refunded',
  'chain_call_too_costly',
  'chain_nothing_to_refund',
  'chain_refund_unavailable',
  'refund_address_failed',
  'l402_malformed',
  'l402_invalid_macaroon',
  'l402_wrong_preimage',
  'l402_caveat_violated',
  'l402_expired',
  'l402_budget_exhausted',
  'plan_invalid',
  'plan_rate_invalid',
  'plan_increment_invalid',
  'plan_increment_exceeds_contract',
  'plan_prepayment_too_short',
  'plan_limit',
  'plan_not_found',
  'subscription_not_found',
  'subscription_ended',
  'subscription_pause_not_allowed',
  'subscription_not_paused',
  'subscription_nothing_to_refund',
  'subscription_refund_in_flight',
  'subscription_refund_amount_mismatch',
  'subscription_refund_destination_invalid',
  'subscription_refund_unavailable',
  'lightning_unavailable',
  'devnet_only',
  'devnet_payment_failed',
  'shutting_down',
  'internal_error',
] as const;

/**
 * Codes the SDK makes itself; a server never sends them. Their `status` is 0 unless the
 * server did answer (then it is that answer's HTTP status).
 *
 * - `network_error`: the request could not be sent or its answer not received (connection
 *   refused, DNS, TLS, reset). For a request that moves money the outcome is unknown: retry
 *   with the same idempotency key.
 * - `timeout`: no answer within `timeoutMs`; the outcome is unknown, as for `network_error`.
 * - `invalid_response`: the server answered something that is not Sluice's JSON (a proxy's
 *   HTML page, a malformed amount, a missing field).
 * - `unknown_error`: the server answered an error code this version of the SDK does not know
 *   (a newer server); `serverCode` holds it.
 * - `budget_exceeded`: the paying fetch (`createPayingFetch`) refused to pay an invoice
 *   because it would pass the budget the caller set; nothing was paid.
 *
 * @example
 * ```ts
 * import { SLUICE_CLIENT_ERROR_CODES } from '@sluice/client';
 * SLUICE_CLIENT_ERROR_CODES.includes('network_error'); // true
 * ```
 */
export const SLUICE_CLIENT_ERROR_CODES = ['network_error', 'timeout', 'invalid_response', 'unknown_error', 'budget_exceeded'] as const;

/**
 * A code a Sluice server sends (see `SLUICE_ERROR_CODES`).
 *
 * @example
 * ```ts
 * import type { SluiceServerErrorCode } from '@sluice/client';
 * const code: SluiceServerErrorCode = 'invoice_expired';
 * ```
 */
export type SluiceServerErrorCode = (typeof SLUICE_ERROR_CODES)[number];

/**
 * A code the SDK makes itself (see `SLUICE_CLIENT_ERROR_CODES`).
 *
 * @example
 * ```ts
 * import type { SluiceClientErrorCode } from '@sluice/client';
 * const code: SluiceClientErrorCode = 'network_error';
 * ```
 */
export type SluiceClientErrorCode = (typeof SLUICE_CLIENT_ERROR_CODES)[number];

/**
 * Every code a `SluiceError` can carry: the server's codes and the SDK's own. A `switch`
 * over it is checked for exhaustiveness by the compiler.
 *
 * @example
 * ```ts
 * import type { SluiceErrorCode } from '@sluice/client';
 * function explain(code: SluiceErrorCode): string {
 *   return code === 'insufficient_balance' ? 'top up first' : code;
 * }
 * ```
 */
export type SluiceErrorCode = SluiceServerErrorCode | SluiceClientErrorCode;

const SERVER_CODES: ReadonlySet<string> = new Set(SLUICE_ERROR_CODES);

/**
 * Whether a string is one of the codes a Sluice server sends.
 *
 * @example
 * ```ts
 * import { isSluiceServerErrorCode } from '@sluice/client';
 * isSluiceServerErrorCode('invalid_api_key'); // true
 * isSluiceServerErrorCode('network_error'); // false: made by the SDK
 * ```
 */
export function isSluiceServerErrorCode(value: string): value is SluiceServerErrorCode {
  return SERVER_CODES.has(value);
}

/**
 * The one error type the SDK throws for a failed request. Branch on `code`, never on
 * `message` (which is for people and may change).
 *
 * @example
 * ```ts
 * import { SluiceError } from '@sluice/client';
 * try {
 *   await client.pay({ payment_request, idempotency_key });
 * } catch (error) {
 *   if (error instanceof SluiceError && error.code === 'insufficient_balance') {
 *     console.log('top up first');
 *   } else {
 *     throw error;
 *   }
 * }
 * ```
 */
export class SluiceError extends Error {
  /** Stable code: one of `SLUICE_ERROR_CODES` or `SLUICE_CLIENT_ERROR_CODES`. */
  readonly code: SluiceErrorCode;
  /** HTTP status of the answer; 0 when no answer arrived (network_error, timeout). */
  readonly status: number;
  /** The code exactly as the server sent it (differs from `code` only for `unknown_error`); null when the server sent none. */
  readonly serverCode: string | null;

  constructor(code: SluiceErrorCode, message: string, options: { status?: number; serverCode?: string | null; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.status = options.status ?? 0;
    this.serverCode = options.serverCode ?? (isSluiceServerErrorCode(code) ? code : null);
  }
}

/**
 * Whether a value is a `SluiceError`, optionally with a given code.
 *
 * @example
 * ```ts
 * import { isSluiceError } from '@sluice/client';
 * try {
 *   await client.getInvoice(paymentHash);
 * } catch (error) {
 *   if (isSluiceError(error, 'not_found')) return null;
 *   throw error;
 * }
 * ```
 */
export function isSluiceError(value: unknown, code?: SluiceErrorCode): value is SluiceError {
  return value instanceof SluiceError && (code === undefined || value.code === code);
}
