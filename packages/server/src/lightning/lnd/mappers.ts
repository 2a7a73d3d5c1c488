/**
 * Mappers between Sluice's Lightning types and LND's REST JSON, named by direction
 * (`invoiceFromLndInvoice`, `lndSendRequestFromPayInvoice`): an LND API change touches
 * one function here. Responses arrive already shape-checked by `schemas.ts`; these
 * functions check meaning (hashes match preimages, amounts are money, indexes are set
 * where they must be) and throw `invalid_response` on a lie.
 */
import type {
  CreateInvoiceRequest,
  CreatedInvoice,
  InvoiceRecord,
  InvoiceState,
  KeysendRequest,
  Network,
  NodeInfo,
  PayInvoiceRequest,
  PaymentFailureReason,
  PaymentOutcome,
} from '../backend.js';
import { formatMsat, parseMsat, type Msat } from '../../money/msat.js';
import { base64FromHex, hexFromBase64, sha256Hex } from './encoding.js';
import { GRPC_CODE, LndError } from './errors.js';
import type { PaymentRequestSummary } from './payment-request.js';
import type { LndAddInvoiceResponse, LndGetInfoResponse, LndInvoice, LndPayment, LndRpcStatus } from './schemas.js';

/** The TLV record type that carries a keysend preimage (LND's `record.KeySendType`). */
export const KEYSEND_RECORD_TYPE = '5482373484';

/** Body of POST /v1/invoices (lnrpc.Invoice), only the fields we set. */
export interface LndAddInvoiceRequest {
  value_msat: string;
  expiry: string;
  memo?: string;
  description_hash?: string;
  r_preimage?: string;
}

/** Body of POST /v2/router/send (routerrpc.SendPaymentRequest), only the fields we set. */
export interface LndSendPaymentRequest {
  payment_request?: string;
  dest?: string;
  amt_msat?: string;
  payment_hash?: string;
  dest_custom_records?: Record<string, string>;
  fee_limit_msat: string;
  timeout_seconds: number;
  /** Only the final update: we have no use for the in-flight ones. */
  no_inflight_updates: boolean;
}

// ---- Sluice -> LND ----

export function lndAddInvoiceRequestFromCreateInvoice(request: CreateInvoiceRequest): LndAddInvoiceRequest {
  const body: LndAddInvoiceRequest = { value_msat: formatMsat(request.amountMsat), expiry: String(request.expiryS) };
  if (request.description !== undefined) body.memo = request.description;
  if (request.descriptionHash !== undefined) body.description_hash = base64FromHex(request.descriptionHash);
  if (request.preimage !== undefined) body.r_preimage = base64FromHex(request.preimage);
  return body;
}

export function lndSendRequestFromPayInvoice(request: PayInvoiceRequest): LndSendPaymentRequest {
  const body: LndSendPaymentRequest = {
    payment_request: request.paymentRequest,
    fee_limit_msat: formatMsat(request.feeLimitMsat),
    timeout_seconds: request.timeoutS,
    no_inflight_updates: true,
  };
  if (request.amountMsat !== undefined) body.amt_msat = formatMsat(request.amountMsat);
  return body;
}

export function lndSendRequestFromKeysend(request: KeysendRequest): LndSendPaymentRequest {
  return {
    dest: base64FromHex(request.destinationPubkey),
    amt_msat: formatMsat(request.amountMsat),
    payment_hash: base64FromHex(sha256Hex(request.preimage)),
    dest_custom_records: { [KEYSEND_RECORD_TYPE]: base64FromHex(request.preimage) },
    fee_limit_msat: formatMsat(request.feeLimitMsat),
    timeout_seconds: request.timeoutS,
    no_inflight_updates: true,
  };
}

// ---- LND -> Sluice ----

const NETWORKS: Record<string, Network> = {
  mainnet: 'mainnet',
  testnet: 'testnet',
  testnet4: 'testnet',
  signet: 'signet',
  regtest: 'regtest',
};

export function nodeInfoFromLndGetInfo(response: LndGetInfoResponse): NodeInfo {
  const chain = response.chains[0];
  if (chain === undefined) throw invalid('getinfo lists no chain');
  const network = NETWORKS[chain.network];
  if (network === undefined) throw invalid(`getinfo names an unsupported network ${JSON.stringify(chain.network)}`);
  return {
    backend: 'lnd',
    network,
    pubkey: response.identity_pubkey,
    alias: response.alias,
    blockHeight: response.block_height,
    syncedToChain: response.synced_to_chain,
  };
}

/**
 * AddInvoice answers with the hash and the payment request only; the rest comes from the
 * payment request itself, checked against what we asked for so a node that made a
 * different invoice (another amount, another hash) is caught before anyone pays it.
 */
export function createdInvoiceFromLndAddInvoice(
  response: LndAddInvoiceResponse,
  request: CreateInvoiceRequest,
  summary: PaymentRequestSummary,
): CreatedInvoice {
  const paymentHash = hash32FromBase64(response.r_hash, 'AddInvoice r_hash');
  if (summary.paymentHash !== paymentHash) throw invalid('AddInvoice returned a payment request for another payment hash');
  if (request.preimage !== undefined && sha256Hex(request.preimage) !== paymentHash) {
    throw invalid('AddInvoice returned a payment hash that is not the hash of our preimage');
  }
  const expectedAmountMsat = request.amountMsat === 0n ? null : request.amountMsat;
  if (summary.amountMsat !== expectedAmountMsat) throw invalid('AddInvoice returned a payment request for another amount');
  if (summary.expiryS !== request.expiryS) throw invalid('AddInvoice returned a payment request with another expiry');
  const createdAt = summary.timestampS * 1000;
  return {
    paymentHash,
    paymentRequest: response.payment_request,
    amountMsat: request.amountMsat,
    createdAt,
    expiresAt: createdAt + summary.expiryS * 1000,
  };
}

export function invoiceStateFromLndInvoice(invoice: LndInvoice, expiresAt: number, nowMs: number): InvoiceState {
  switch (invoice.state) {
    case 'SETTLED':
      return 'settled';
    // Held HTLCs: not paid yet, and no longer subject to expiry.
    case 'ACCEPTED':
      return 'open';
    // LND cancels invoices when they expire; until its watcher does, they are still OPEN.
    case 'OPEN':
      return nowMs >= expiresAt ? 'expired' : 'open';
    case 'CANCELED':
      return nowMs >= expiresAt ? 'expired' : 'canceled';
  }
}

export function invoiceFromLndInvoice(invoice: LndInvoice, nowMs: number): InvoiceRecord {
  const paymentHash = hash32FromBase64(invoice.r_hash, 'invoice r_hash');
  const createdAt = secondsToMs(invoice.creation_date, 'invoice creation_date');
  const expiresAt = createdAt + secondsToMs(invoice.expiry, 'invoice expiry');
  const amountMsat = money(invoice.value_msat, 'invoice value_msat');
  const state = invoiceStateFromLndInvoice(invoice, expiresAt, nowMs);
  const base = { paymentHash, paymentRequest: invoice.payment_request, amountMsat, createdAt, expiresAt };
  if (state !== 'settled') {
    // LND also returns the preimage of unpaid invoices; it is a secret until paid.
    return { ...base, state, amountPaidMsat: null, settledAt: null, settleIndex: null, preimage: null };
  }
  const preimage = hash32FromBase64(invoice.r_preimage, 'settled invoice r_preimage');
  if (sha256Hex(preimage) !== paymentHash) throw invalid('a settled invoice has a preimage that does not hash to its payment hash');
  if (!/^[1-9][0-9]*$/.test(invoice.settle_index)) throw invalid('a settled invoice has no settle_index');
  return {
    ...base,
    state,
    amountPaidMsat: money(invoice.amt_paid_msat, 'invoice amt_paid_msat'),
    settledAt: secondsToMs(invoice.settle_date, 'invoice settle_date'),
    settleIndex: invoice.settle_index,
    preimage,
  };
}

const FAILURE_REASONS: Record<string, PaymentFailureReason> = {
  FAILURE_REASON_TIMEOUT: 'timeout',
  FAILURE_REASON_NO_ROUTE: 'no_route',
  FAILURE_REASON_ERROR: 'error',
  FAILURE_REASON_INCORRECT_PAYMENT_DETAILS: 'incorrect_payment_details',
  FAILURE_REASON_INSUFFICIENT_BALANCE: 'insufficient_balance',
  FAILURE_REASON_CANCELED: 'error',
};

/** A FAILED payment stays failed whatever the reason says; reasons we do not know are `error`. */
export function paymentFailureReasonFromLndFailureReason(reason: string): PaymentFailureReason {
  return FAILURE_REASONS[reason] ?? 'error';
}

/**
 * A payment update as an outcome, or null while it is not final (INITIATED, IN_FLIGHT).
 * The update must be about the payment we asked for.
 */
export function paymentOutcomeFromLndPayment(payment: LndPayment, expectedPaymentHash: string): PaymentOutcome | null {
  if (payment.payment_hash !== expectedPaymentHash) throw invalid('a payment update is about another payment hash');
  const paymentHash = expectedPaymentHash;
  switch (payment.status) {
    case 'SUCCEEDED': {
      const preimage = payment.payment_preimage;
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== paymentHash) {
        throw invalid('a succeeded payment has a preimage that does not hash to its payment hash');
      }
      return {
        status: 'succeeded',
        paymentHash,
        preimage,
        amountMsat: money(payment.value_msat, 'payment value_msat'),
        feeMsat: money(payment.fee_msat, 'payment fee_msat'),
      };
    }
    case 'FAILED':
      return {
        status: 'failed',
        paymentHash,
        reason: paymentFailureReasonFromLndFailureReason(payment.failure_reason),
        detail: `LND: ${payment.failure_reason}`,
      };
    case 'UNKNOWN':
    case 'IN_FLIGHT':
    case 'INITIATED':
      return null;
  }
}

/**
 * SendPaymentV2 refused before sending any update. Only refusals that LND makes while
 * checking the request, before it records a payment, become `failed`; anything else
 * (including "payment is in transition") is `unknown` and left to lookupPayment.
 */
export function paymentOutcomeFromLndSendError(status: LndRpcStatus, paymentHash: string): PaymentOutcome {
  const detail = `LND: ${status.message}`;
  if (status.code === GRPC_CODE.alreadyExists && /already paid|already succeeded/i.test(status.message)) {
    return { status: 'failed', paymentHash, reason: 'already_paid', detail };
  }
  if (/invoice expired/i.test(status.message)) return { status: 'failed', paymentHash, reason: 'invoice_expired', detail };
  if (/amount must (not )?be specified|not for current active network/i.test(status.message)) {
    return { status: 'failed', paymentHash, reason: 'incorrect_payment_details', detail };
  }
  if (status.code === GRPC_CODE.invalidArgument) return { status: 'failed', paymentHash, reason: 'error', detail };
  return { status: 'unknown', paymentHash, detail };
}

// ---- checks shared by the mappers ----

function invalid(message: string): LndError {
  return new LndError('invalid_response', `LND sent an invalid answer: ${message}`);
}

function hash32FromBase64(text: string, what: string): string {
  const hex = hexFromBase64(text);
  if (hex === null || hex.length !== 64) throw invalid(`${what} is not 32 bytes of base64`);
  return hex;
}

function money(text: string, what: string): Msat {
  const parsed = parseMsat(text);
  if (!parsed.ok) throw invalid(`${what} is not an amount (${parsed.error})`);
  return parsed.value;
}

/** Seconds since the epoch (or a duration in seconds) to ms, refusing values past year 9999. */
function secondsToMs(text: string, what: string): number {
  const seconds = Number(text);
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > 253_402_300_799) throw invalid(`${what} is out of range`);
  return seconds * 1000;
}
