/**
 * Every error code a client of Sluice can see: the stable `code`, its HTTP status and a
 * one-line meaning. `docs/errors.md` lists exactly these (a test keeps the two in sync),
 * and the SDK exports the same union.
 *
 * Codes are part of the API: never rename one; add a new code instead.
 */
export const ERROR_CODES = {
  // Request shape
  invalid_json: { status: 400, meaning: 'The body is not valid JSON.' },
  invalid_request: { status: 400, meaning: 'The request does not match the schema (missing or mistyped field).' },
  unknown_field: { status: 400, meaning: 'The body has a field this endpoint does not accept.' },
  invalid_amount: { status: 400, meaning: 'An amount is not a decimal string of digits between 0 and 2^63-1 msat, is zero where zero is not allowed, or is above what it may be (an invoice: 21 million BTC).' },
  body_too_large: { status: 413, meaning: 'The body exceeds the configured size limit.' },
  unsupported_media_type: { status: 415, meaning: 'The body is not application/json.' },
  message_too_large: { status: 413, meaning: 'A WebSocket message exceeds max_message_bytes; it was not read (the connection stays open).' },
  unknown_type: { status: 400, meaning: 'A WebSocket message has a type this server does not know (see docs/protocol.md).' },
  not_found: { status: 404, meaning: 'No such route, or no such object visible to this key.' },
  method_not_allowed: { status: 405, meaning: 'The route exists but not for this method; the Allow header lists the methods it answers.' },
  rate_limited: { status: 429, meaning: 'Too many requests for this key; retry after the Retry-After header.' },

  // Auth
  unauthorized: { status: 401, meaning: 'No API key was sent (Authorization: Bearer <key>).' },
  invalid_api_key: { status: 401, meaning: 'The API key is unknown or has been revoked.' },
  forbidden: { status: 403, meaning: 'This key may not use this route (admin-only, or devnet-only on another backend).' },

  // Idempotency
  idempotency_key_reused: { status: 409, meaning: 'This idempotency key was already used with different arguments.' },
  idempotency_key_invalid: { status: 400, meaning: 'The idempotency key is empty, too long or has characters outside [A-Za-z0-9._:-].' },

  // Invoices (incoming)
  invoice_invalid: { status: 400, meaning: 'The payment request is not a valid BOLT 11 invoice (bad encoding, checksum or signature).' },
  invoice_wrong_network: { status: 400, meaning: 'The invoice is for another network than this node.' },
  invoice_expired: { status: 409, meaning: 'The invoice has expired.' },
  invoice_already_paid: { status: 409, meaning: 'The invoice has already been paid.' },
  invoice_amount_required: { status: 400, meaning: 'The invoice has no amount: send amount_msat.' },
  invoice_amount_mismatch: { status: 400, meaning: 'amount_msat was sent but the invoice already names an amount.' },
  description_too_long: { status: 400, meaning: 'The description is longer than 639 bytes (the BOLT 11 limit).' },
  expiry_out_of_range: { status: 400, meaning: 'expiry_s is outside 60 .. 31536000 seconds.' },

  // Payments (outgoing)
  insufficient_balance: { status: 409, meaning: 'The account cannot cover the amount plus the maximum fee.' },
  payment_to_self: { status: 400, meaning: 'The invoice or keysend destination is this node itself.' },
  payment_in_flight: { status: 409, meaning: 'A payment for this payment hash is already in flight.' },
  invalid_pubkey: { status: 400, meaning: 'A node public key is not 33 bytes of compressed secp256k1 in hex.' },
  payment_target_required: { status: 400, meaning: 'Send exactly one of payment_request and keysend.' },
  keysend_amount_required: { status: 400, meaning: 'A keysend needs amount_msat.' },

  // Streams
  stream_not_found: { status: 404, meaning: 'No stream with this id visible to this key or payer token.' },
  stream_closed: { status: 409, meaning: 'The stream is closed: no more charges, rewards or meter changes.' },
  invalid_terms: { status: 400, meaning: 'The stream terms are inconsistent (the message says which).' },
  unknown_event: { status: 400, meaning: 'The charge names an event that has no price on this stream.' },
  charge_amount_required: { status: 400, meaning: 'A charge needs an event name or amount_msat.' },
  charge_too_large: { status: 400, meaning: "The charge or reward is above the stream's max_charge_msat." },
  stream_limit_exceeded: { status: 409, meaning: "The charge would take the payer past the stream's maximum_msat; the payer must top up." },
  app_insufficient_balance: { status: 409, meaning: "The app's balance cannot cover the reward." },
  meter_not_configured: { status: 400, meaning: 'The stream has no rate_msat_per_s, so it has no meter.' },
  meter_state: { status: 409, meaning: 'The meter cannot do that from its current state (e.g. resume a running meter).' },
  no_payout_requested: { status: 409, meaning: 'No payout invoice was asked for on this stream, or nothing is owed to the payer any more (the balance moved since the ask).' },
  payout_amount_mismatch: { status: 400, meaning: 'The payout invoice does not ask for exactly the amount Sluice asked for.' },
  overloaded: { status: 503, meaning: 'Too much in flight (the ledger queue, or requests on one WebSocket connection); nothing was applied. Retry with the same ref.' },

  // Pay per call: the gate, its middleware and the gateway
  payment_required: { status: 402, meaning: 'This route has a price and the request carries no payment credential; the 402 carries every scheme\'s challenge (Sluice-Chain-Offer, WWW-Authenticate) and price_msat.' },
  upstream_timeout: { status: 504, meaning: 'The gateway\'s upstream did not answer within the configured upstream timeout.' },
  upstream_unavailable: { status: 502, meaning: 'The gateway could not reach its upstream (connection refused or reset) or the upstream answered something that is not HTTP.' },
  payment_service_unavailable: { status: 503, meaning: 'The gateway could not reach the Sluice API beside it for /v1/paycall/* (buying, reading or refunding chains); the message says whether anything may have been done.' },

  // Webhooks
  webhook_url_invalid: { status: 400, meaning: 'The webhook URL is not an absolute URL, is longer than 2048 characters, or carries credentials or a #fragment.' },
  webhook_url_scheme: { status: 400, meaning: 'The webhook URL is not http or https.' },
  webhook_url_not_public: { status: 400, meaning: 'The webhook URL names a loopback, private or link-local address, and SLUICE_WEBHOOK_PRIVATE is block.' },
  webhook_event_type_unknown: { status: 400, meaning: 'event_types is empty or names a type Sluice does not send (see docs/webhooks.md).' },
  webhook_endpoint_limit: { status: 409, meaning: 'The app already has the most webhook endpoints allowed (16).' },
  webhook_endpoint_not_found: { status: 404, meaning: 'No webhook endpoint with this id for this app.' },
  webhook_endpoint_disabled: { status: 409, meaning: 'The webhook endpoint is disabled; enable it first (PATCH with enabled: true).' },
  webhook_event_not_found: { status: 404, meaning: 'No webhook event with this id for this app.' },
  webhook_delivery_not_found: { status: 404, meaning: 'No delivery with this id for this endpoint.' },

  // Apps
  app_not_found: { status: 404, meaning: 'No app with this id.' },
  api_key_not_found: { status: 404, meaning: 'No API key with this id for this app.' },

  // Pay per call: hash-chain tokens (docs/paycall.md)
  chain_malformed: { status: 401, meaning: 'The Sluice-Chain header is not "<chain_id> <index> <64 lowercase hex>".' },
  chain_unknown: { status: 401, meaning: 'No chain with this id.' },
  chain_unpaid: { status: 402, meaning: 'The chain\'s purchase invoice has not been paid yet.' },
  chain_link_replayed: { status: 401, meaning: 'The index is not above the chain\'s current index: this link was already spent.' },
  chain_link_skipped: { status: 401, meaning: 'The index is beyond current + the steps this call costs (the message names the index expected).' },
  chain_link_short: { status: 402, meaning: 'The index is above the current one but pays fewer steps than this call costs (the message names the index expected).' },
  chain_link_invalid: { status: 401, meaning: 'The link does not hash to the chain\'s last accepted link.' },
  chain_exhausted: { status: 402, meaning: 'The chain has fewer steps left than this call costs; buy a new chain.' },
  chain_expired: { status: 402, meaning: 'The chain is past its expires_at; calls are refused (a refund is still allowed).' },
  chain_refunded: { status: 402, meaning: 'The chain was refunded (or a refund is under way): it pays for nothing more.' },
  chain_call_too_costly: { status: 402, meaning: 'This call costs more than 65,536 steps at the chain\'s step price.' },
  chain_nothing_to_refund: { status: 409, meaning: 'Every step of the chain was spent: there is nothing to refund.' },
  chain_refund_unavailable: { status: 409, meaning: 'The app cannot lend the refund\'s routing-fee budget now; nothing changed, retry later.' },
  refund_address_failed: { status: 409, meaning: 'The Lightning address did not give an invoice for the refund (the message says why); nothing changed.' },

  // Pay per call: L402 (docs/l402.md)
  l402_malformed: { status: 401, meaning: 'The Authorization header uses L402 or LSAT but is not "<base64 macaroon>:<64 hex preimage>" (one macaroon).' },
  l402_invalid_macaroon: { status: 401, meaning: 'The macaroon cannot be read, is not a version 0 L402 macaroon, or its signature is not valid (tampered, or minted by another server).' },
  l402_wrong_preimage: { status: 401, meaning: 'The preimage does not hash to the payment hash in the macaroon: the invoice was not paid, or this is another token\'s preimage.' },
  l402_caveat_violated: { status: 401, meaning: 'A caveat of the macaroon does not allow this request (another service, a capability it lacks, an unreadable caveat).' },
  l402_expired: { status: 402, meaning: 'The token is past its valid_until; the 402 carries a fresh challenge.' },
  l402_budget_exhausted: { status: 402, meaning: 'The token has not enough budget (msat or calls) left for this call; the 402 carries a fresh challenge.' },

  // Subscriptions (docs/subscriptions.md)
  plan_invalid: { status: 400, meaning: 'The plan is inconsistent: a name, duration or minimum settlement out of range (the message says which).' },
  plan_rate_invalid: { status: 400, meaning: "The plan's rate is zero, negative, not whole msat, given twice (rate_msat_per_s and rate_msat_per_increment) or so large that one prepayment exceeds any invoice." },
  plan_increment_invalid: { status: 400, meaning: 'increment_s is not a whole number of seconds between 1 and 315360000.' },
  plan_increment_exceeds_contract: { status: 400, meaning: 'increment_s is longer than contract_s, or contract_s is not a whole number of increments.' },
  plan_prepayment_too_short: { status: 400, meaning: 'prepayment_s is shorter than one increment.' },
  plan_limit: { status: 409, meaning: 'The app already has the most plans allowed (1000).' },
  plan_not_found: { status: 404, meaning: 'No plan with this id for this app.' },
  subscription_not_found: { status: 404, meaning: 'No subscription with this id visible to this key or payer token.' },
  subscription_ended: { status: 409, meaning: 'The subscription is cancelled or expired (a second cancel, a payment for an ended subscription); nothing changed.' },
  subscription_pause_not_allowed: { status: 409, meaning: 'The plan does not allow pausing (max_pause_s is 0), or the subscription is not active.' },
  subscription_not_paused: { status: 409, meaning: 'Only a paused subscription can be resumed.' },
  subscription_nothing_to_refund: { status: 409, meaning: 'The subscription has no unused balance to refund, or has not ended yet (cancel it first; an expired one is refunded too).' },
  subscription_refund_in_flight: { status: 409, meaning: 'A refund payment of this subscription is in flight; wait for its outcome.' },
  subscription_refund_amount_mismatch: { status: 400, meaning: 'The refund invoice names an amount other than the exact unused balance (send an invoice without amount, or for exactly that amount).' },
  subscription_refund_destination_invalid: { status: 400, meaning: 'The refund destination is missing or unusable (an invalid, expired or already paid invoice).' },
  subscription_refund_unavailable: { status: 409, meaning: 'The refund could not be sent now (the app cannot lend the routing-fee budget, or the payment was refused); the balance is held, retry later.' },

  // Lightning and server
  lightning_unavailable: { status: 503, meaning: 'The Lightning backend did not answer; nothing was changed.' },
  devnet_only: { status: 404, meaning: 'This route exists only on the devnet backend.' },
  devnet_payment_failed: { status: 409, meaning: 'The devnet wallet could not pay the invoice (the message says why).' },
  shutting_down: { status: 503, meaning: 'The server is draining for shutdown; retry on another instance or later.' },
  internal_error: { status: 500, meaning: 'A bug or an unexpected failure; nothing acknowledged was lost. The log has details.' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The error body every route returns: {"error":{"code","message"}}. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/**
 * An error meant for the client. Thrown by route handlers and turned into the JSON body
 * by the server's error handler; anything else thrown is an internal_error.
 */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message?: string) {
    super(message ?? ERROR_CODES[code].meaning);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
  }
}

export function errorBody(code: ErrorCode, message?: string): ErrorBody {
  return { error: { code, message: message ?? ERROR_CODES[code].meaning } };
}
