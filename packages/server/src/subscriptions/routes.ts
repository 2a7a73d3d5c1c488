/**
 * /v1/plans and /v1/subscriptions. The merchant (app key) creates plans and subscriptions,
 * reads and cancels them; the customer (the subscription's payer token, `spt_...`, as the
 * bearer key) reads its subscription, asks for an invoice, cancels and says where the
 * refund goes. Payer tokens are checked here, not by the shared auth hook: they open one
 * subscription, nothing else.
 */
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ApiError, type ErrorCode } from '../errors/codes.js';
import type { AppService } from '../apps/service.js';
import { requireBearerKey, type SluiceFastify } from '../http/server.js';
import { AmountSchema, errorResponses, isoTime, parseAmount } from '../http/wire.js';
import { lightningAddressUrl } from '../lightning/lnurl.js';
import { FINAL_STATUSES, type PlanRow, type RefundDestination } from './model.js';
import { prepaymentIncrements } from './billing.js';
import { MAX_METADATA_LENGTH, SUBSCRIPTION_TOKEN_PREFIX, type Fail, type SubscriptionError, type SubscriptionService, type SubscriptionView } from './service.js';

export const SUBSCRIPTION_ERROR_CODES: Record<SubscriptionError, ErrorCode> = {
  PlanInvalid: 'plan_invalid',
  PlanRateInvalid: 'plan_rate_invalid',
  PlanIncrementInvalid: 'plan_increment_invalid',
  PlanIncrementExceedsContract: 'plan_increment_exceeds_contract',
  PlanPrepaymentTooShort: 'plan_prepayment_too_short',
  PlanLimit: 'plan_limit',
  PlanNotFound: 'plan_not_found',
  SubscriptionNotFound: 'subscription_not_found',
  SubscriptionEnded: 'subscription_ended',
  PauseNotAllowed: 'subscription_pause_not_allowed',
  NotPaused: 'subscription_not_paused',
  NothingToRefund: 'subscription_nothing_to_refund',
  RefundInFlight: 'subscription_refund_in_flight',
  RefundAmountMismatch: 'subscription_refund_amount_mismatch',
  RefundInvoiceInvalid: 'subscription_refund_destination_invalid',
  RefundAddressFailed: 'refund_address_failed',
  RefundUnavailable: 'subscription_refund_unavailable',
  InvalidAmount: 'invalid_amount',
  LightningUnavailable: 'lightning_unavailable',
};

const failure = (fail: Fail): ApiError => new ApiError(SUBSCRIPTION_ERROR_CODES[fail.error], fail.detail);

export const planJson = (plan: PlanRow) => ({
  id: plan.id,
  name: plan.name,
  price_msat_per_increment: plan.priceMsat.toString(),
  /** Exact only when the plan was priced per second; otherwise the per-increment price over increment_s, rounded down. */
  rate_msat_per_s: (plan.priceMsat / BigInt(plan.incrementS)).toString(),
  rate_kind: plan.rateKind,
  increment_s: plan.incrementS,
  prepayment_s: plan.prepaymentS,
  prepayment_msat: (plan.priceMsat * BigInt(prepaymentIncrements(plan))).toString(),
  grace_s: plan.graceS,
  contract_s: plan.contractS,
  min_settlement_msat: plan.minSettlementMsat.toString(),
  trial_s: plan.trialS,
  max_pause_s: plan.maxPauseS,
  created_at: isoTime(plan.createdAt) as string,
});

const destinationJson = (destination: RefundDestination | null) =>
  destination === null ? null
    : destination.kind === 'keysend' ? { keysend_pubkey: destination.pubkey }
      : destination.kind === 'lightning_address' ? { lightning_address: destination.address }
        : { payment_request: destination.paymentRequest };

export const subscriptionJson = (view: SubscriptionView) => {
  const row = view.row;
  // An ended subscription asks for nothing: its last invoice may still be payable at the
  // node (a late payment is held for refund), but it is not offered to be paid.
  const invoiceOpen = !FINAL_STATUSES.has(row.status) && row.invoiceHash !== null && (row.invoiceExpiresAt ?? 0) > view.at;
  return {
    id: row.id,
    plan_id: row.planId,
    plan: planJson(view.plan),
    status: row.status,
    balance_msat: view.balanceMsat.toString(),
    owed_msat: view.owedMsat.toString(),
    charged_msat: row.chargedMsat.toString(),
    paid_through: isoTime(view.paidThrough),
    time_left_s: view.paidThrough === null ? null : Math.max(0, Math.floor((view.paidThrough - view.at) / 1000)),
    created_at: isoTime(row.createdAt) as string,
    trial_ends_at: isoTime(row.trialEndsAt),
    activated_at: isoTime(row.activatedAt),
    contract_ends_at: isoTime(row.contractEndsAt),
    past_due_since: isoTime(row.pastDueSince),
    grace_ends_at: isoTime(view.graceEndsAt),
    suspended_at: isoTime(row.suspendedAt),
    paused_at: isoTime(row.pausedAt),
    pause_ends_at: row.pausedAt === null ? null : isoTime(row.pausedAt + view.plan.maxPauseS * 1000),
    ended_at: isoTime(row.endedAt),
    ended_by: row.endedBy,
    invoice: invoiceOpen
      ? { payment_request: row.invoiceRequest, payment_hash: row.invoiceHash, amount_msat: String(row.invoiceAmountMsat), expires_at: isoTime(row.invoiceExpiresAt) }
      : null,
    refund: {
      status: row.refundStatus,
      amount_msat: row.refundMsat.toString(),
      payment_hash: row.refundPaymentHash,
      destination: destinationJson(row.refundDestination),
    },
    metadata: row.metadata,
    now: isoTime(view.at) as string,
  };
};

const DestinationSchema = Type.Object({
  payment_request: Type.Optional(Type.String({ maxLength: 8192, description: 'A BOLT 11 invoice without amount, or for exactly the refund.' })),
  lightning_address: Type.Optional(Type.String({ maxLength: 320 })),
  keysend_pubkey: Type.Optional(Type.String({ maxLength: 66 })),
}, { additionalProperties: false, description: 'Exactly one of payment_request, lightning_address, keysend_pubkey.' });

type DestinationBody = { payment_request?: string; lightning_address?: string; keysend_pubkey?: string };

export function parseRefundDestination(body: DestinationBody): RefundDestination {
  const given = [body.payment_request, body.lightning_address, body.keysend_pubkey].filter((value) => value !== undefined).length;
  if (given !== 1) throw new ApiError('invalid_request', 'refund needs exactly one of payment_request, lightning_address, keysend_pubkey');
  if (body.keysend_pubkey !== undefined) {
    const pubkey = body.keysend_pubkey.toLowerCase();
    if (!/^0[23][0-9a-f]{64}$/.test(pubkey)) throw new ApiError('invalid_pubkey');
    return { kind: 'keysend', pubkey };
  }
  if (body.lightning_address !== undefined) {
    if (lightningAddressUrl(body.lightning_address) === null) throw new ApiError('invalid_request', 'lightning_address must look like name@example.com');
    return { kind: 'lightning_address', address: body.lightning_address.toLowerCase() };
  }
  return { kind: 'invoice', paymentRequest: (body.payment_request as string).trim() };
}

const PlanBody = Type.Object({
  name: Type.String({ maxLength: 200 }),
  rate_msat_per_s: Type.Optional(AmountSchema),
  rate_msat_per_increment: Type.Optional(AmountSchema),
  increment_s: Type.Integer(),
  prepayment_s: Type.Integer(),
  grace_s: Type.Optional(Type.Integer()),
  contract_s: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  min_settlement_msat: Type.Optional(AmountSchema),
  trial_s: Type.Optional(Type.Integer()),
  max_pause_s: Type.Optional(Type.Integer()),
}, { additionalProperties: false });

const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const Open = Type.Object({}, { additionalProperties: true });

type Caller = { kind: 'app'; appId: string } | { kind: 'payer'; subscriptionId: string };

export function registerSubscriptionRoutes(app: SluiceFastify, deps: { subscriptions: SubscriptionService; apps: AppService }): void {
  const { subscriptions } = deps;

  const callerOf = async (request: FastifyRequest, allowPayer: boolean): Promise<Caller> => {
    const key = requireBearerKey(request);
    if (key.startsWith(SUBSCRIPTION_TOKEN_PREFIX)) {
      const found = await subscriptions.authenticatePayer(key);
      if (!found) throw new ApiError('invalid_api_key', 'the payer token is unknown');
      if (!allowPayer) throw new ApiError('forbidden', 'a payer token cannot use this route');
      return { kind: 'payer', subscriptionId: found.row.id };
    }
    const result = await deps.apps.authenticate(key);
    if (!result.ok) throw new ApiError('invalid_api_key');
    if (result.principal.kind !== 'app') throw new ApiError('forbidden', 'this route needs an app API key');
    return { kind: 'app', appId: result.principal.app.id };
  };

  const appOnly = async (request: FastifyRequest): Promise<string> => {
    const caller = await callerOf(request, false);
    if (caller.kind !== 'app') throw new ApiError('forbidden');
    return caller.appId;
  };

  /** The subscription, if the caller may see it: the owning app, or the payer holding its token. */
  const visible = async (request: FastifyRequest, id: string): Promise<{ caller: Caller; view: SubscriptionView }> => {
    const caller = await callerOf(request, true);
    const view = caller.kind === 'payer'
      ? (caller.subscriptionId === id ? await subscriptions.get(id, null) : null)
      : await subscriptions.get(id, caller.appId);
    if (!view) throw new ApiError('subscription_not_found');
    return { caller, view };
  };

  app.post('/v1/plans', {
    config: { auth: 'none' },
    schema: {
      summary: 'Create a plan (price per second or per increment, increment, prepayment, grace, contract, trial)',
      tags: ['subscriptions'],
      body: PlanBody,
      response: { 201: Open, ...errorResponses(400, 401, 403, 409) },
    },
  }, async (request, reply) => {
    const appId = await appOnly(request);
    const created = await subscriptions.createPlan(appId, request.body);
    if (!created.ok) throw failure(created);
    return reply.code(201).send(planJson(created.plan));
  });

  app.get('/v1/plans', {
    config: { auth: 'none' },
    schema: { summary: "The app's plans", tags: ['subscriptions'], response: { 200: Open, ...errorResponses(401, 403) } },
  }, async (request) => ({ plans: (await subscriptions.listPlans(await appOnly(request))).map(planJson) }));

  app.get('/v1/plans/:id', {
    config: { auth: 'none' },
    schema: { summary: 'One plan', tags: ['subscriptions'], params: IdParams, response: { 200: Open, ...errorResponses(401, 403, 404) } },
  }, async (request) => {
    const plan = await subscriptions.getPlan(await appOnly(request), request.params.id);
    if (!plan) throw new ApiError('plan_not_found');
    return planJson(plan);
  });

  app.post('/v1/subscriptions', {
    config: { auth: 'none' },
    schema: {
      summary: 'Subscribe a customer to a plan; the reply holds the payer token and the first prepayment invoice',
      tags: ['subscriptions'],
      body: Type.Object({
        plan_id: Type.String({ maxLength: 64 }),
        refund: Type.Optional(DestinationSchema),
        metadata: Type.Optional(Type.String({ maxLength: MAX_METADATA_LENGTH })),
      }, { additionalProperties: false }),
      response: { 201: Open, ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    const appId = await appOnly(request);
    const body = request.body;
    const created = await subscriptions.create(appId, {
      planId: body.plan_id,
      refundDestination: body.refund === undefined ? null : parseRefundDestination(body.refund),
      metadata: body.metadata ?? '',
    });
    if (!created.ok) throw failure(created);
    return reply.code(201).send({ ...subscriptionJson(created.subscription), payer_token: created.payerToken });
  });

  app.get('/v1/subscriptions', {
    config: { auth: 'none' },
    schema: {
      summary: "The app's subscriptions, newest first",
      tags: ['subscriptions'],
      querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })) }, { additionalProperties: false }),
      response: { 200: Open, ...errorResponses(401, 403) },
    },
  }, async (request) => {
    const appId = await appOnly(request);
    const limit = Math.max(1, Math.min(Number(request.query.limit ?? '100'), 1000));
    return { subscriptions: (await subscriptions.list(appId, limit)).map(subscriptionJson) };
  });

  app.get('/v1/subscriptions/:id', {
    config: { auth: 'none' },
    schema: { summary: 'One subscription as of now (app key or payer token); cheap enough to call on every request', tags: ['subscriptions'], params: IdParams, response: { 200: Open, ...errorResponses(401, 403, 404) } },
  }, async (request) => subscriptionJson((await visible(request, request.params.id)).view));

  app.post('/v1/subscriptions/:id/cancel', {
    config: { auth: 'none' },
    schema: {
      summary: 'Cancel now (customer or merchant); the unused balance is refunded to the destination given or kept',
      tags: ['subscriptions'],
      params: IdParams,
      body: Type.Optional(Type.Object({ refund: Type.Optional(DestinationSchema) }, { additionalProperties: false })),
      response: { 200: Open, ...errorResponses(400, 401, 403, 404, 409) },
    },
  }, async (request) => {
    const { caller } = await visible(request, request.params.id);
    const refund = request.body?.refund;
    const destination = refund === undefined ? null : parseRefundDestination(refund);
    const cancelled = await subscriptions.cancel(request.params.id, caller.kind === 'payer' ? 'customer' : 'merchant', destination);
    if (!cancelled.ok) throw failure(cancelled);
    const refundError = cancelled.refundError === null ? null : { code: SUBSCRIPTION_ERROR_CODES[cancelled.refundError.error], message: cancelled.refundError.detail ?? '' };
    return { ...subscriptionJson(cancelled.subscription), refund_error: refundError };
  });

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/v1/subscriptions/:id/${action}`, {
      config: { auth: 'none' },
      schema: {
        summary: action === 'pause'
          ? 'Pause now (customer or merchant; the plan must allow it): no increments start until resumed or the longest pause is over'
          : 'Resume a paused subscription now: a new increment starts and is billed at once',
        tags: ['subscriptions'],
        params: IdParams,
        body: Type.Optional(Type.Object({}, { additionalProperties: false })),
        response: { 200: Open, ...errorResponses(401, 403, 404, 409) },
      },
    }, async (request) => {
      const { caller } = await visible(request, request.params.id);
      const by = caller.kind === 'payer' ? 'customer' : 'merchant';
      const result = action === 'pause' ? await subscriptions.pause(request.params.id, by) : await subscriptions.resume(request.params.id, by);
      if (!result.ok) throw failure(result);
      return subscriptionJson(result.subscription);
    });
  }

  app.post('/v1/subscriptions/:id/refund', {
    config: { auth: 'none' },
    schema: {
      summary: 'Pay out the held (or failed) refund of an ended subscription (cancelled or expired)',
      tags: ['subscriptions'],
      params: IdParams,
      body: Type.Optional(Type.Object({ refund: Type.Optional(DestinationSchema) }, { additionalProperties: false })),
      response: { 200: Open, ...errorResponses(400, 401, 403, 404, 409) },
    },
  }, async (request) => {
    await visible(request, request.params.id);
    const refund = request.body?.refund;
    const result = await subscriptions.refund(request.params.id, refund === undefined ? null : parseRefundDestination(refund));
    if (!result.ok) throw failure(result);
    return subscriptionJson(result.subscription);
  });

  app.post('/v1/subscriptions/:id/pay', {
    config: { auth: 'none' },
    schema: {
      summary: 'The open prepayment invoice, or a new one (for amount_msat, else what is due, else one prepayment)',
      tags: ['subscriptions'],
      params: IdParams,
      body: Type.Optional(Type.Object({ amount_msat: Type.Optional(AmountSchema) }, { additionalProperties: false })),
      response: { 200: Open, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    await visible(request, request.params.id);
    const amount = request.body?.amount_msat === undefined ? null : parseAmount(request.body.amount_msat, 'amount_msat');
    const result = await subscriptions.payInvoice(request.params.id, amount);
    if (!result.ok) throw failure(result);
    return subscriptionJson(result.subscription);
  });
}
