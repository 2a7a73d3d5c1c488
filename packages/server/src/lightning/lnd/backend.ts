/**
 * The `lnd` LightningBackend: LND over its REST gateway.
 *
 * Threat model (beyond backend.ts): the link to LND is authenticated both ways (pinned
 * TLS certificate, macaroon), and everything LND answers is checked like user input
 * (schemas.ts for shapes, mappers.ts for meaning). Payments never reject: a payment
 * whose final state we did not hear is `unknown`, and `lookupPayment` (TrackPaymentV2)
 * is how the caller learns the truth later.
 *
 * REST calls used (all described in LND's lightning/router swagger):
 *   GET  /v1/getinfo                       getInfo
 *   POST /v1/invoices                      createInvoice
 *   GET  /v1/invoice/{r_hash_str}          lookupInvoice
 *   GET  /v1/invoices                      watchInvoices (catch-up from settle index 0)
 *   GET  /v1/invoices/subscribe            watchInvoices (streamed)
 *   POST /v2/router/send                   payInvoice, keysend (streamed)
 *   GET  /v2/router/track/{payment_hash}   lookupPayment (streamed; first update only)
 */
import { systemClock } from '../../clock.js';
import { isMsat } from '../../money/msat.js';
import type {
  CreateInvoiceRequest,
  CreatedInvoice,
  InvoiceRecord,
  InvoiceWatch,
  KeysendRequest,
  LightningBackend,
  NodeInfo,
  PayInvoiceRequest,
  PaymentLookup,
  PaymentOutcome,
  WatchInvoicesOptions,
} from '../backend.js';
import { resolveLndOptions, type LndBackendOptions } from './config.js';
import { base64UrlFromHex, isHex32, isPubkeyHex, sha256Hex } from './encoding.js';
import { GRPC_CODE, LndError, describeError } from './errors.js';
import { startInvoiceWatch } from './invoice-watch.js';
import { silentLndLogger } from './logger.js';
import {
  createdInvoiceFromLndAddInvoice,
  invoiceFromLndInvoice,
  lndAddInvoiceRequestFromCreateInvoice,
  lndSendRequestFromKeysend,
  lndSendRequestFromPayInvoice,
  nodeInfoFromLndGetInfo,
  paymentOutcomeFromLndPayment,
  paymentOutcomeFromLndSendError,
  type LndSendPaymentRequest,
} from './mappers.js';
import { summarizePaymentRequest } from './payment-request.js';
import {
  LndAddInvoiceResponseSchema,
  LndGetInfoResponseSchema,
  LndInvoiceSchema,
  LndPaymentStreamLineSchema,
  parseLndResponse,
} from './schemas.js';
import { createLndTransport, rpcError } from './transport.js';

/** LND's timeout_seconds is an int32. */
const MAX_PAYMENT_TIMEOUT_S = 2_147_483_647;

export function createLndBackend(options: LndBackendOptions): LightningBackend {
  const resolved = resolveLndOptions(options);
  if (!resolved.ok) throw new Error(`invalid LND configuration (${resolved.error}): ${resolved.message}`);
  const config = resolved.value;
  const logger = options.logger ?? silentLndLogger;
  const clock = options.clock ?? systemClock;
  const transport = createLndTransport(config);
  const watches = new Set<InvoiceWatch>();

  async function getInfo(): Promise<NodeInfo> {
    const raw = await transport.unary({ method: 'GET', path: '/v1/getinfo' });
    return nodeInfoFromLndGetInfo(parseLndResponse(LndGetInfoResponseSchema, raw, 'getinfo answer'));
  }

  async function createInvoice(request: CreateInvoiceRequest): Promise<CreatedInvoice> {
    assertCreateInvoiceRequest(request);
    const raw = await transport.unary({ method: 'POST', path: '/v1/invoices', body: lndAddInvoiceRequestFromCreateInvoice(request) });
    const response = parseLndResponse(LndAddInvoiceResponseSchema, raw, 'AddInvoice answer');
    const summary = summarizePaymentRequest(response.payment_request);
    if (!summary.ok) throw new LndError('invalid_response', `LND returned a payment request we cannot read (${summary.error})`);
    return createdInvoiceFromLndAddInvoice(response, request, summary.value);
  }

  async function lookupInvoice(paymentHash: string): Promise<InvoiceRecord | null> {
    assertHash(paymentHash, 'paymentHash');
    let raw: unknown;
    try {
      raw = await transport.unary({ method: 'GET', path: `/v1/invoice/${paymentHash}` });
    } catch (error) {
      if (isInvoiceNotFound(error)) return null;
      throw error;
    }
    const record = invoiceFromLndInvoice(parseLndResponse(LndInvoiceSchema, raw, 'invoice'), clock.now());
    if (record.paymentHash !== paymentHash) throw new LndError('invalid_response', 'LND answered an invoice look-up with another invoice');
    return record;
  }

  function watchInvoices(watchOptions: WatchInvoicesOptions): InvoiceWatch {
    const watch = startInvoiceWatch(
      {
        transport,
        clock,
        logger,
        retry: options.watchRetry ?? { initialDelayMs: 250, maxDelayMs: 10_000 },
        listPageSize: 1000,
        listMaxPages: 1_000,
        emptyRelist: options.watchEmptyRelist ?? { initialDelayMs: 1000, maxDelayMs: 300_000 },
      },
      watchOptions,
    );
    const tracked: InvoiceWatch = {
      async stop() {
        watches.delete(tracked);
        await watch.stop();
      },
    };
    watches.add(tracked);
    return tracked;
  }

  async function payInvoice(request: PayInvoiceRequest): Promise<PaymentOutcome> {
    const summary = summarizePaymentRequest(request.paymentRequest);
    if (!summary.ok) {
      return { status: 'failed', paymentHash: '', reason: 'incorrect_payment_details', detail: `not sent: cannot read the payment request (${summary.error})` };
    }
    const paymentHash = summary.value.paymentHash;
    const problem = payInvoiceProblem(request);
    if (problem !== null) return { status: 'failed', paymentHash, reason: 'error', detail: `not sent: ${problem}` };
    return sendPayment(lndSendRequestFromPayInvoice(request), paymentHash, request.timeoutS);
  }

  async function keysend(request: KeysendRequest): Promise<PaymentOutcome> {
    const preimageOk = typeof request.preimage === 'string' && isHex32(request.preimage);
    const paymentHash = preimageOk ? sha256Hex(request.preimage) : '';
    const problem = keysendProblem(request);
    if (problem !== null) return { status: 'failed', paymentHash, reason: 'error', detail: `not sent: ${problem}` };
    return sendPayment(lndSendRequestFromKeysend(request), paymentHash, request.timeoutS);
  }

  /**
   * Reads SendPaymentV2's updates until a final one. LND's own timeout_seconds bounds the
   * path finding; HTLCs already out can take longer, so we wait `timeoutMs` beyond it
   * and then answer `unknown` rather than guess.
   */
  async function sendPayment(body: LndSendPaymentRequest, paymentHash: string, timeoutS: number): Promise<PaymentOutcome> {
    const deadline = AbortSignal.timeout(timeoutS * 1000 + config.timeoutMs);
    let updates = 0;
    try {
      for await (const raw of transport.stream({ method: 'POST', path: '/v2/router/send', body }, deadline)) {
        const line = parseLndResponse(LndPaymentStreamLineSchema, raw, 'payment update');
        if (line.error !== undefined) {
          if (updates > 0) return unknownPayment(paymentHash, `LND: ${line.error.message}`);
          return logOutcome(paymentOutcomeFromLndSendError(line.error, paymentHash));
        }
        if (line.result === undefined) throw new LndError('invalid_response', 'LND sent a payment update with neither result nor error');
        updates += 1;
        const outcome = paymentOutcomeFromLndPayment(line.result, paymentHash);
        if (outcome !== null) return logOutcome(outcome);
      }
      return unknownPayment(paymentHash, 'LND closed the payment stream before a final update');
    } catch (error) {
      if (error instanceof LndError && error.kind === 'rpc' && error.grpcCode !== null && error.rpcMessage !== null && updates === 0) {
        return logOutcome(paymentOutcomeFromLndSendError({ code: error.grpcCode, message: error.rpcMessage }, paymentHash));
      }
      return unknownPayment(paymentHash, describeError(error));
    }
  }

  function unknownPayment(paymentHash: string, detail: string): PaymentOutcome {
    return logOutcome({ status: 'unknown', paymentHash, detail });
  }

  function logOutcome(outcome: PaymentOutcome): PaymentOutcome {
    if (outcome.status === 'unknown') logger.warn({ paymentHash: outcome.paymentHash, detail: outcome.detail }, 'LND payment outcome unknown');
    else logger.debug({ paymentHash: outcome.paymentHash, status: outcome.status }, 'LND payment finished');
    return outcome;
  }

  async function lookupPayment(paymentHash: string): Promise<PaymentLookup> {
    assertHash(paymentHash, 'paymentHash');
    const signal = AbortSignal.timeout(config.timeoutMs);
    const path = `/v2/router/track/${base64UrlFromHex(paymentHash)}`;
    try {
      // TrackPaymentV2 sends the current state first; one update is all we need.
      for await (const raw of transport.stream({ method: 'GET', path }, signal)) {
        const line = parseLndResponse(LndPaymentStreamLineSchema, raw, 'payment update');
        if (line.error !== undefined) throw rpcError(line.error, 'GET /v2/router/track');
        if (line.result === undefined) throw new LndError('invalid_response', 'LND sent a payment update with neither result nor error');
        const outcome = paymentOutcomeFromLndPayment(line.result, paymentHash);
        return outcome ?? { status: 'unknown', paymentHash, detail: `LND reports the payment ${line.result.status}` };
      }
      throw new LndError('transport', 'LND closed the payment tracking stream without an update');
    } catch (error) {
      if (isPaymentNotFound(error)) return { status: 'not_found', paymentHash };
      throw error;
    }
  }

  async function close(): Promise<void> {
    await Promise.all([...watches].map((watch) => watch.stop()));
    transport.close();
  }

  return { kind: 'lnd', getInfo, createInvoice, lookupInvoice, watchInvoices, payInvoice, keysend, lookupPayment, close };
}

function isInvoiceNotFound(error: unknown): boolean {
  if (!(error instanceof LndError) || error.kind !== 'rpc') return false;
  // Older LND versions said so with code 2 (Unknown) and these words.
  return error.grpcCode === GRPC_CODE.notFound || /unable to locate invoice|no existing invoices/i.test(error.rpcMessage ?? '');
}

function isPaymentNotFound(error: unknown): boolean {
  if (!(error instanceof LndError) || error.kind !== 'rpc') return false;
  return error.grpcCode === GRPC_CODE.notFound || /payment isn't initiated/i.test(error.rpcMessage ?? '');
}

function assertHash(value: string, name: string): void {
  if (typeof value !== 'string' || !isHex32(value)) throw new RangeError(`${name} must be 32 bytes of lowercase hex`);
}

function assertCreateInvoiceRequest(request: CreateInvoiceRequest): void {
  if (!isMsat(request.amountMsat)) throw new RangeError('amountMsat must be an Msat');
  if (!Number.isSafeInteger(request.expiryS) || request.expiryS <= 0) throw new RangeError('expiryS must be a positive integer');
  if (request.description !== undefined && request.descriptionHash !== undefined) {
    throw new RangeError('give description or descriptionHash, not both');
  }
  if (request.descriptionHash !== undefined) assertHash(request.descriptionHash, 'descriptionHash');
  if (request.preimage !== undefined) assertHash(request.preimage, 'preimage');
}

function paymentLimitsProblem(request: { feeLimitMsat: unknown; timeoutS: unknown }): string | null {
  if (!isMsat(request.feeLimitMsat)) return 'feeLimitMsat is not an Msat';
  const timeoutS = request.timeoutS;
  if (typeof timeoutS !== 'number' || !Number.isSafeInteger(timeoutS) || timeoutS <= 0 || timeoutS > MAX_PAYMENT_TIMEOUT_S) {
    return 'timeoutS must be a positive integer';
  }
  return null;
}

function payInvoiceProblem(request: PayInvoiceRequest): string | null {
  if (request.amountMsat !== undefined && (!isMsat(request.amountMsat) || request.amountMsat === 0n)) {
    return 'amountMsat must be a positive Msat';
  }
  return paymentLimitsProblem(request);
}

function keysendProblem(request: KeysendRequest): string | null {
  if (typeof request.preimage !== 'string' || !isHex32(request.preimage)) return 'preimage must be 32 bytes of lowercase hex';
  if (typeof request.destinationPubkey !== 'string' || !isPubkeyHex(request.destinationPubkey)) {
    return 'destinationPubkey must be a 33-byte compressed public key in lowercase hex';
  }
  if (!isMsat(request.amountMsat) || request.amountMsat === 0n) return 'amountMsat must be a positive Msat';
  return paymentLimitsProblem(request);
}
