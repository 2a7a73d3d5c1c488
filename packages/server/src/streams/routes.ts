/**
 * /v1/streams: REST access to streams. The app (API key) creates streams, charges,
 * rewards, drives the meter and closes; the payer (its payer token as the bearer key) reads
 * its stream and events, pauses, resumes, closes and says where payouts go. The WebSocket
 * protocol (sluice.v1) offers the same operations with pushed events.
 */
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ApiError, type ErrorCode } from '../errors/codes.js';
import type { SluiceFastify } from '../http/server.js';
import { AmountSchema, errorResponses, isoTime, parseAmount } from '../http/wire.js';
import { msat, type Msat } from '../money/msat.js';
import { lightningAddressUrl } from '../lightning/lnurl.js';
import type { PayoutDestination, StreamEvent, StreamView } from './model.js';
import { MAX_CHARGE_COUNT, MAX_METADATA_LENGTH, MAX_REF_LENGTH, type Fail, type MoneyAck, type StreamError, type StreamService } from './service.js';

export const STREAM_ERROR_CODES: Record<StreamError, ErrorCode> = {
  StreamNotFound: 'stream_not_found',
  StreamClosed: 'stream_closed',
  UnknownEvent: 'unknown_event',
  AmountRequired: 'charge_amount_required',
  ChargeTooLarge: 'charge_too_large',
  ZeroAmount: 'invalid_amount',
  LimitExceeded: 'stream_limit_exceeded',
  AppInsufficientBalance: 'app_insufficient_balance',
  IdempotencyConflict: 'idempotency_key_reused',
  Overloaded: 'overloaded',
  InvalidTerms: 'invalid_terms',
  NoMeter: 'meter_not_configured',
  MeterState: 'meter_state',
  NoPayoutRequested: 'no_payout_requested',
  PayoutAmountMismatch: 'payout_amount_mismatch',
  InvalidPayoutInvoice: 'invoice_invalid',
};

export function streamError(failure: Fail): ApiError {
  return new ApiError(STREAM_ERROR_CODES[failure.error], failure.detail);
}

/** Defaults when the app leaves a term out. */
export const DEFAULT_MAX_CHARGE_MSAT = msat(100_000_000n);

const DestinationSchema = Type.Object({
  keysend: Type.Optional(Type.Object({ pubkey: Type.String() }, { additionalProperties: false })),
  lightning_address: Type.Optional(Type.String({ maxLength: 320 })),
  invoice: Type.Optional(Type.Boolean({ description: 'Ask the payer for an invoice each time.' })),
}, { additionalProperties: false, description: 'Exactly one of keysend, lightning_address, invoice.' });

export function parseDestination(body: { keysend?: { pubkey: string }; lightning_address?: string; invoice?: boolean }): PayoutDestination {
  const given = [body.keysend !== undefined, body.lightning_address !== undefined, body.invoice === true].filter(Boolean).length;
  if (given !== 1) throw new ApiError('invalid_request', 'payout needs exactly one of keysend, lightning_address, invoice');
  if (body.keysend) {
    const pubkey = body.keysend.pubkey.toLowerCase();
    if (!/^0[23][0-9a-f]{64}$/.test(pubkey)) throw new ApiError('invalid_pubkey');
    return { kind: 'keysend', pubkey };
  }
  if (body.lightning_address !== undefined) {
    if (lightningAddressUrl(body.lightning_address) === null) throw new ApiError('invalid_request', 'lightning_address must look like name@example.com');
    return { kind: 'lightning_address', address: body.lightning_address.toLowerCase() };
  }
  return { kind: 'invoice' };
}

const destinationJson = (destination: PayoutDestination | null) =>
  destination === null ? null
    : destination.kind === 'keysend' ? { keysend: { pubkey: destination.pubkey } }
      : destination.kind === 'lightning_address' ? { lightning_address: destination.address }
        : { invoice: true };

export const streamJson = (stream: StreamView) => ({
  id: stream.id,
  status: stream.status,
  meter: stream.meter,
  seq: stream.seq,
  balance_msat: stream.balanceMsat.toString(),
  held_msat: stream.heldMsat.toString(),
  prices: Object.fromEntries(Object.entries(stream.terms.prices).map(([name, price]) => [name, price.toString()])),
  rate_msat_per_s: stream.terms.rateMsatPerS.toString(),
  maximum_msat: stream.terms.maximumMsat.toString(),
  settle_threshold_msat: stream.terms.settleThresholdMsat.toString(),
  settle_to_msat: stream.terms.settleToMsat.toString(),
  max_charge_msat: stream.terms.maxChargeMsat.toString(),
  payout_threshold_msat: stream.terms.payoutThresholdMsat.toString(),
  expires_at: isoTime(stream.terms.expiresAt),
  payout: destinationJson(stream.payoutDestination),
  metadata: stream.metadata,
  created_at: isoTime(stream.createdAt) as string,
  closed_at: isoTime(stream.closedAt),
});

/** The answer to a charge or reward: once it is durable. */
export const ackJson = (ack: MoneyAck) => ({
  seq: ack.seq,
  amount_msat: ack.amountMsat.toString(),
  balance_msat: ack.balanceMsat.toString(),
  replayed: ack.replayed,
});

export const eventJson = (event: StreamEvent) => ({
  stream_id: event.streamId,
  seq: event.seq,
  type: event.type,
  at: isoTime(event.at) as string,
  ...event.data,
});

const StreamSchema = Type.Object({
  id: Type.String(),
  status: Type.String(),
  meter: Type.String(),
  seq: Type.Integer(),
  balance_msat: Type.String({ description: 'Signed: negative when the payer owes the app.' }),
  held_msat: Type.String(),
  prices: Type.Record(Type.String(), Type.String()),
  rate_msat_per_s: Type.String(),
  maximum_msat: Type.String(),
  settle_threshold_msat: Type.String(),
  settle_to_msat: Type.String(),
  max_charge_msat: Type.String(),
  payout_threshold_msat: Type.String(),
  expires_at: Type.Union([Type.String(), Type.Null()]),
  payout: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
  metadata: Type.String(),
  created_at: Type.String(),
  closed_at: Type.Union([Type.String(), Type.Null()]),
});

const AckSchema = Type.Object({ seq: Type.Integer(), amount_msat: Type.String(), balance_msat: Type.String(), replayed: Type.Boolean() });
const RefSchema = Type.String({ minLength: 1, maxLength: MAX_REF_LENGTH, pattern: '^[A-Za-z0-9._:-]+$', description: 'Makes the step idempotent within the stream.' });
const StreamParams = Type.Object({ stream_id: Type.String({ maxLength: 64 }) });

export interface CreateStreamBody {
  prices?: Record<string, unknown>;
  rate_msat_per_s?: unknown;
  maximum_msat?: unknown;
  settle_threshold_msat?: unknown;
  settle_to_msat?: unknown;
  max_charge_msat?: unknown;
  payout_threshold_msat?: unknown;
  expires_in_s?: number;
  payout?: { keysend?: { pubkey: string }; lightning_address?: string; invoice?: boolean };
  metadata?: string;
}

export const CreateStreamSchema = Type.Object({
  prices: Type.Optional(Type.Record(Type.String(), AmountSchema)),
  rate_msat_per_s: Type.Optional(AmountSchema),
  maximum_msat: Type.Optional(AmountSchema),
  settle_threshold_msat: Type.Optional(AmountSchema),
  settle_to_msat: Type.Optional(AmountSchema),
  max_charge_msat: Type.Optional(AmountSchema),
  payout_threshold_msat: Type.Optional(AmountSchema),
  expires_in_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 31_536_000 })),
  payout: Type.Optional(DestinationSchema),
  metadata: Type.Optional(Type.String({ maxLength: MAX_METADATA_LENGTH })),
}, { additionalProperties: false });

/** Turns a create body (REST or WebSocket) into service input; throws ApiError on bad input. */
export function createInputFromBody(body: CreateStreamBody, now: number) {
  const optional = (value: unknown, field: string): Msat => (value === undefined ? msat(0n) : parseAmount(value, field, { allowZero: true }));
  const prices: Record<string, Msat> = {};
  for (const [name, value] of Object.entries(body.prices ?? {})) prices[name] = parseAmount(value, `prices.${name}`);
  return {
    prices,
    rateMsatPerS: optional(body.rate_msat_per_s, 'rate_msat_per_s'),
    maximumMsat: optional(body.maximum_msat, 'maximum_msat'),
    settleThresholdMsat: optional(body.settle_threshold_msat, 'settle_threshold_msat'),
    settleToMsat: optional(body.settle_to_msat, 'settle_to_msat'),
    maxChargeMsat: body.max_charge_msat === undefined ? DEFAULT_MAX_CHARGE_MSAT : parseAmount(body.max_charge_msat, 'max_charge_msat'),
    payoutThresholdMsat: optional(body.payout_threshold_msat, 'payout_threshold_msat'),
    expiresAt: body.expires_in_s === undefined ? null : now + body.expires_in_s * 1000,
    payoutDestination: body.payout === undefined ? null : parseDestination(body.payout),
    metadata: body.metadata ?? '',
  };
}

export function registerStreamRoutes(app: SluiceFastify, deps: { streams: StreamService; now: () => number }): void {
  const { streams } = deps;

  /** The stream, if the caller may see it: the owning app, or the payer holding its token. */
  const visible = async (request: FastifyRequest, streamId: string): Promise<StreamView> => {
    const principal = request.principal;
    const stream = principal?.kind === 'payer'
      ? (principal.streamId === streamId ? await streams.get(streamId, null) : null)
      : principal?.kind === 'app' ? await streams.get(streamId, principal.app.id) : null;
    if (!stream) throw new ApiError('stream_not_found');
    return stream;
  };
  const payerOnly = (request: FastifyRequest): void => {
    if (request.principal?.kind !== 'payer') throw new ApiError('forbidden', 'only the payer may do this (use the payer token)');
  };

  app.post('/v1/streams', {
    config: { auth: 'app' },
    schema: {
      summary: 'Create a stream; the reply holds the payer token to hand to the player',
      tags: ['streams'],
      body: CreateStreamSchema,
      response: { 201: Type.Intersect([StreamSchema, Type.Object({ payer_token: Type.String() })]), ...errorResponses(400, 401, 403) },
    },
  }, async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind !== 'app') throw new ApiError('forbidden');
    const created = await streams.create(principal.app.id, createInputFromBody(request.body as CreateStreamBody, deps.now()));
    if (!created.ok) throw streamError(created);
    return reply.code(201).send({ ...streamJson(created.stream), payer_token: created.payerToken });
  });

  app.get('/v1/streams', {
    config: { auth: 'app' },
    schema: {
      summary: "The calling app's streams, newest first",
      tags: ['streams'],
      querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ streams: Type.Array(StreamSchema) }), ...errorResponses(401, 403) },
    },
  }, async (request) => {
    const principal = request.principal;
    if (principal?.kind !== 'app') throw new ApiError('forbidden');
    const limit = Math.min(Number(request.query.limit ?? '100'), 1000);
    return { streams: (await streams.list(principal.app.id, limit)).map(streamJson) };
  });

  app.get('/v1/streams/:stream_id', {
    config: { auth: 'stream' },
    schema: { summary: 'One stream (app key or payer token)', tags: ['streams'], params: StreamParams, response: { 200: StreamSchema, ...errorResponses(401, 403, 404) } },
  }, async (request) => streamJson(await visible(request, request.params.stream_id)));

  app.get('/v1/streams/:stream_id/events', {
    config: { auth: 'stream' },
    schema: {
      summary: 'Events after a sequence number (to catch up after a disconnect)',
      description: 'The oldest events after after_seq, at most 10,000 per answer and possibly fewer: ask again with the last seq received until the answer is empty.',
      tags: ['streams'],
      params: StreamParams,
      querystring: Type.Object({ after_seq: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ events: Type.Array(Type.Object({}, { additionalProperties: true })) }), ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    await visible(request, request.params.stream_id);
    const events = await streams.eventsAfter(request.params.stream_id, Number(request.query.after_seq ?? '0'));
    return { events: events.map(eventJson) };
  });

  app.post('/v1/streams/:stream_id/charge', {
    config: { auth: 'app' },
    schema: {
      summary: 'Move msat from the payer to the app (by event name or amount)',
      tags: ['streams'],
      params: StreamParams,
      body: Type.Object({
        event: Type.Optional(Type.String({ maxLength: 64 })),
        amount_msat: Type.Optional(AmountSchema),
        count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CHARGE_COUNT })),
        ref: RefSchema,
      }, { additionalProperties: false }),
      response: { 200: AckSchema, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    await visible(request, request.params.stream_id);
    const body = request.body;
    const result = await streams.charge(request.params.stream_id, {
      ...(body.event === undefined ? {} : { event: body.event }),
      ...(body.amount_msat === undefined ? {} : { amountMsat: parseAmount(body.amount_msat, 'amount_msat') }),
      ...(body.count === undefined ? {} : { count: body.count }),
      ref: body.ref,
    });
    if (!result.ok) throw streamError(result);
    return ackJson(result);
  });

  app.post('/v1/streams/:stream_id/reward', {
    config: { auth: 'app' },
    schema: {
      summary: 'Move msat from the app to the payer',
      tags: ['streams'],
      params: StreamParams,
      body: Type.Object({ amount_msat: AmountSchema, ref: RefSchema }, { additionalProperties: false }),
      response: { 200: AckSchema, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    await visible(request, request.params.stream_id);
    const result = await streams.reward(request.params.stream_id, { amountMsat: parseAmount(request.body.amount_msat, 'amount_msat'), ref: request.body.ref });
    if (!result.ok) throw streamError(result);
    return ackJson(result);
  });

  app.post('/v1/streams/:stream_id/meter', {
    config: { auth: 'stream' },
    schema: {
      summary: 'Start, pause, resume or stop per-second metering (the payer may pause, resume and stop)',
      tags: ['streams'],
      params: StreamParams,
      body: Type.Object({ action: Type.Union([Type.Literal('start'), Type.Literal('pause'), Type.Literal('resume'), Type.Literal('stop')]) }, { additionalProperties: false }),
      response: { 200: StreamSchema, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    await visible(request, request.params.stream_id);
    const result = await streams.meter(request.params.stream_id, request.body.action, request.principal?.kind === 'payer' ? 'payer' : 'app');
    if (!result.ok) throw streamError(result);
    return streamJson(result.stream);
  });

  app.post('/v1/streams/:stream_id/close', {
    config: { auth: 'stream' },
    schema: {
      summary: 'Close the stream (app or payer); the positive balance is paid out to the payer',
      tags: ['streams'],
      params: StreamParams,
      response: { 200: StreamSchema, ...errorResponses(401, 403, 404, 409, 503) },
    },
  }, async (request) => {
    await visible(request, request.params.stream_id);
    const result = await streams.close(request.params.stream_id, request.principal?.kind === 'payer' ? 'payer' : 'app');
    if (!result.ok) throw streamError(result);
    return streamJson(result.stream);
  });

  app.post('/v1/streams/:stream_id/payout', {
    config: { auth: 'stream' },
    schema: {
      summary: 'The payer says where payouts go, or answers a payout_invoice_needed event with an invoice',
      tags: ['streams'],
      params: StreamParams,
      body: Type.Object({
        destination: Type.Optional(DestinationSchema),
        payment_request: Type.Optional(Type.String({ maxLength: 8192 })),
      }, { additionalProperties: false }),
      response: { 200: StreamSchema, ...errorResponses(400, 401, 403, 404, 409) },
    },
  }, async (request) => {
    payerOnly(request);
    const streamId = request.params.stream_id;
    await visible(request, streamId);
    const { destination, payment_request } = request.body;
    if ((destination === undefined) === (payment_request === undefined)) throw new ApiError('invalid_request', 'send exactly one of destination and payment_request');
    const result = destination !== undefined
      ? await streams.setPayoutDestination(streamId, parseDestination(destination))
      : await streams.providePayoutInvoice(streamId, (payment_request as string).trim());
    if (!result.ok) throw streamError(result);
    return streamJson(await visible(request, streamId));
  });
}
