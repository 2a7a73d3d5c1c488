/** /v1/payments: an app pays an invoice or sends a keysend from its balance. */
import { Type } from 'typebox';
import { ApiError, type ErrorCode } from '../errors/codes.js';
import { appOf, type SluiceFastify } from '../http/server.js';
import { AmountSchema, errorResponses, HexHashSchema, IdempotencyKeySchema, isoTime, parseAmount, parseIdempotencyKey } from '../http/wire.js';
import type { PayError, PaymentService, PaymentTarget, PaymentView } from './service.js';

export const PaymentSchema = Type.Object({
  id: Type.String(),
  payment_hash: Type.String(),
  kind: Type.Union([Type.Literal('invoice'), Type.Literal('keysend')]),
  destination: Type.String(),
  amount_msat: Type.String(),
  max_fee_msat: Type.String(),
  fee_msat: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
  failure_reason: Type.Union([Type.String(), Type.Null()]),
  preimage: Type.Optional(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  resolved_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const paymentJson = (payment: PaymentView) => ({
  id: payment.id,
  payment_hash: payment.paymentHash,
  kind: payment.kind,
  destination: payment.destination,
  amount_msat: payment.amountMsat.toString(),
  max_fee_msat: payment.maxFeeMsat.toString(),
  fee_msat: payment.feeMsat === null ? null : payment.feeMsat.toString(),
  status: payment.status,
  failure_reason: payment.failureReason,
  ...(payment.preimage === null ? {} : { preimage: payment.preimage }),
  created_at: isoTime(payment.createdAt) as string,
  resolved_at: isoTime(payment.resolvedAt),
});

const ERROR_FOR: Record<PayError, ErrorCode> = {
  InvoiceInvalid: 'invoice_invalid',
  InvoiceWrongNetwork: 'invoice_wrong_network',
  InvoiceExpired: 'invoice_expired',
  InvoiceAlreadyPaid: 'invoice_already_paid',
  InvoiceAmountRequired: 'invoice_amount_required',
  InvoiceAmountMismatch: 'invoice_amount_mismatch',
  PaymentToSelf: 'payment_to_self',
  PaymentInFlight: 'payment_in_flight',
  InsufficientBalance: 'insufficient_balance',
  IdempotencyConflict: 'idempotency_key_reused',
  InvalidAmount: 'invalid_amount',
};

const PUBKEY = /^0[23][0-9a-f]{64}$/;

export function registerPaymentRoutes(app: SluiceFastify, deps: { payments: PaymentService }): void {
  app.post('/v1/payments', {
    config: { auth: 'app' },
    schema: {
      summary: "Pay a BOLT 11 invoice or send a keysend from the calling app's balance",
      description: 'Exactly one of payment_request and keysend. Answers 200 when the outcome is final (succeeded or failed), 202 while it is pending.',
      tags: ['payments'],
      body: Type.Object({
        payment_request: Type.Optional(Type.String({ maxLength: 8192 })),
        keysend: Type.Optional(Type.Object({ pubkey: Type.String() }, { additionalProperties: false })),
        amount_msat: Type.Optional(AmountSchema),
        max_fee_msat: Type.Optional(AmountSchema),
        idempotency_key: IdempotencyKeySchema,
      }, { additionalProperties: false }),
      response: { 200: PaymentSchema, 202: PaymentSchema, ...errorResponses(400, 401, 403, 409) },
    },
  }, async (request, reply) => {
    const body = request.body;
    const idempotencyKey = parseIdempotencyKey(body.idempotency_key) as string;
    const amountMsat = body.amount_msat === undefined ? null : parseAmount(body.amount_msat, 'amount_msat');
    const maxFeeMsat = body.max_fee_msat === undefined ? null : parseAmount(body.max_fee_msat, 'max_fee_msat', { allowZero: true });
    if ((body.payment_request === undefined) === (body.keysend === undefined)) throw new ApiError('payment_target_required');
    let target: PaymentTarget;
    if (body.keysend !== undefined) {
      const pubkey = body.keysend.pubkey.toLowerCase();
      if (!PUBKEY.test(pubkey)) throw new ApiError('invalid_pubkey');
      if (amountMsat === null) throw new ApiError('keysend_amount_required');
      target = { kind: 'keysend', destinationPubkey: pubkey, amountMsat };
    } else {
      target = { kind: 'invoice', paymentRequest: (body.payment_request as string).trim(), amountMsat };
    }
    const result = await deps.payments.pay(appOf(request).id, { target, maxFeeMsat, idempotencyKey });
    if (!result.ok) throw new ApiError(ERROR_FOR[result.error], result.detail);
    return reply.code(result.payment.status === 'pending' ? 202 : 200).send(paymentJson(result.payment));
  });

  app.get('/v1/payments', {
    config: { auth: 'app' },
    schema: {
      summary: "The calling app's payments, newest first",
      tags: ['payments'],
      querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ payments: Type.Array(PaymentSchema) }), ...errorResponses(400, 401, 403) },
    },
  }, async (request) => {
    const limit = Math.min(Number(request.query.limit ?? '100'), 1000);
    return { payments: (await deps.payments.listPayments(appOf(request).id, limit)).map(paymentJson) };
  });

  app.get('/v1/payments/:payment_hash', {
    config: { auth: 'app' },
    schema: {
      summary: 'The latest payment attempt of the calling app for a payment hash',
      tags: ['payments'],
      params: Type.Object({ payment_hash: HexHashSchema }),
      response: { 200: PaymentSchema, ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    const payment = await deps.payments.getPayment(appOf(request).id, request.params.payment_hash);
    if (!payment) throw new ApiError('not_found', 'no payment with this payment hash for this app');
    return paymentJson(payment);
  });
}
