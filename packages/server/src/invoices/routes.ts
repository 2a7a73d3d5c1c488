/** /v1/invoices: an app asks for an invoice, then watches it get paid. */
import { Type } from 'typebox';
import { ApiError, type ErrorCode } from '../errors/codes.js';
import { appOf, type SluiceFastify } from '../http/server.js';
import { AmountSchema, errorResponses, HexHashSchema, IdempotencyKeySchema, isoTime, parseAmount, parseIdempotencyKey } from '../http/wire.js';
import type { CreateInvoiceResult, InvoiceService, InvoiceView } from './service.js';

export const InvoiceSchema = Type.Object({
  payment_hash: Type.String(),
  payment_request: Type.String(),
  amount_msat: Type.String(),
  description: Type.String(),
  status: Type.Union([Type.Literal('open'), Type.Literal('paid'), Type.Literal('expired')]),
  created_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  paid_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  amount_paid_msat: Type.Union([Type.String(), Type.Null()]),
});

export const invoiceJson = (invoice: InvoiceView) => ({
  payment_hash: invoice.paymentHash,
  payment_request: invoice.paymentRequest,
  amount_msat: invoice.amountMsat.toString(),
  description: invoice.description,
  status: invoice.status,
  created_at: isoTime(invoice.createdAt) as string,
  expires_at: isoTime(invoice.expiresAt) as string,
  paid_at: isoTime(invoice.paidAt),
  amount_paid_msat: invoice.amountPaidMsat === null ? null : invoice.amountPaidMsat.toString(),
});

const ERROR_FOR: Record<Exclude<CreateInvoiceResult, { ok: true }>['error'], ErrorCode> = {
  IdempotencyConflict: 'idempotency_key_reused',
  DescriptionTooLong: 'description_too_long',
  AmountTooLarge: 'invalid_amount',
  LightningUnavailable: 'lightning_unavailable',
};

export const EXPIRY_MIN_S = 60;
export const EXPIRY_MAX_S = 31_536_000;

export function registerInvoiceRoutes(app: SluiceFastify, deps: { invoices: InvoiceService; defaultExpiryS: number }): void {
  app.post('/v1/invoices', {
    config: { auth: 'app' },
    schema: {
      summary: 'Create a Lightning invoice that credits the calling app when paid',
      tags: ['invoices'],
      body: Type.Object({
        amount_msat: AmountSchema,
        description: Type.Optional(Type.String()),
        expiry_s: Type.Optional(Type.Integer()),
        idempotency_key: Type.Optional(IdempotencyKeySchema),
      }, { additionalProperties: false }),
      response: { 200: InvoiceSchema, 201: InvoiceSchema, ...errorResponses(400, 401, 403, 409, 503) },
    },
  }, async (request, reply) => {
    const body = request.body;
    const amountMsat = parseAmount(body.amount_msat, 'amount_msat');
    const expiryS = body.expiry_s ?? deps.defaultExpiryS;
    if (expiryS < EXPIRY_MIN_S || expiryS > EXPIRY_MAX_S) throw new ApiError('expiry_out_of_range');
    const result = await deps.invoices.createInvoice(appOf(request).id, {
      amountMsat,
      description: body.description ?? '',
      expiryS,
      idempotencyKey: parseIdempotencyKey(body.idempotency_key),
    });
    if (!result.ok) throw new ApiError(ERROR_FOR[result.error], result.detail);
    return reply.code(result.replayed ? 200 : 201).send(invoiceJson(result.invoice));
  });

  app.get('/v1/invoices', {
    config: { auth: 'app' },
    schema: {
      summary: "The calling app's invoices, newest first",
      tags: ['invoices'],
      querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ invoices: Type.Array(InvoiceSchema) }), ...errorResponses(400, 401, 403) },
    },
  }, async (request) => {
    const limit = Math.min(Number(request.query.limit ?? '100'), 1000);
    return { invoices: (await deps.invoices.listInvoices(appOf(request).id, limit)).map(invoiceJson) };
  });

  app.get('/v1/invoices/:payment_hash', {
    config: { auth: 'app' },
    schema: {
      summary: 'One invoice of the calling app',
      tags: ['invoices'],
      params: Type.Object({ payment_hash: HexHashSchema }),
      response: { 200: InvoiceSchema, ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    const invoice = await deps.invoices.getInvoice(appOf(request).id, request.params.payment_hash);
    if (!invoice) throw new ApiError('not_found', 'no invoice with this payment hash for this app');
    return invoiceJson(invoice);
  });
}
