/**
 * /v1/webhooks: an app's endpoints (create, list, get, update, delete, rotate secret), the
 * delivery log per endpoint, manual redelivery, and the app's events. App key auth.
 */
import { Type } from 'typebox';
import { ApiError, type ErrorCode } from '../errors/codes.js';
import { appOf, type SluiceFastify } from '../http/server.js';
import { errorResponses, isoTime } from '../http/wire.js';
import { EVENT_TYPES, type AttemptRow, type DeliveryRow, type EndpointRow, type EventRow } from './model.js';
import {
  DESCRIPTION_LENGTH_MAX, PREVIOUS_SECRET_TTL_DEFAULT_S, PREVIOUS_SECRET_TTL_MAX_S, URL_LENGTH_MAX,
  type DeliveryWithAttempts, type WebhookError, type WebhookService,
} from './service.js';

const ERROR_FOR: Record<WebhookError, ErrorCode> = {
  UrlInvalid: 'webhook_url_invalid',
  UrlScheme: 'webhook_url_scheme',
  UrlNotPublic: 'webhook_url_not_public',
  EventTypeUnknown: 'webhook_event_type_unknown',
  EndpointLimit: 'webhook_endpoint_limit',
  EndpointNotFound: 'webhook_endpoint_not_found',
  EndpointDisabled: 'webhook_endpoint_disabled',
  EventNotFound: 'webhook_event_not_found',
  DeliveryNotFound: 'webhook_delivery_not_found',
};

function unwrap<T>(result: { ok: true; value: T } | { ok: false; error: WebhookError; detail?: string }): T {
  if (!result.ok) throw new ApiError(ERROR_FOR[result.error], result.detail);
  return result.value;
}

const time = Type.String({ format: 'date-time' });
const nullableTime = Type.Union([time, Type.Null()]);

const EndpointSchema = Type.Object({
  id: Type.String(),
  url: Type.String(),
  description: Type.String(),
  event_types: Type.Array(Type.String()),
  status: Type.Union([Type.Literal('enabled'), Type.Literal('disabled')]),
  disabled_reason: Type.Union([Type.Literal('manual'), Type.Literal('failing'), Type.Null()]),
  consecutive_failures: Type.Integer(),
  failing_since: nullableTime,
  previous_secret_expires_at: nullableTime,
  created_at: time,
  updated_at: time,
});

const endpointJson = (endpoint: EndpointRow, now: number) => ({
  id: endpoint.id,
  url: endpoint.url,
  description: endpoint.description,
  event_types: endpoint.eventTypes,
  status: endpoint.status,
  disabled_reason: endpoint.disabledReason,
  consecutive_failures: endpoint.consecutiveFailures,
  failing_since: isoTime(endpoint.failingSince),
  previous_secret_expires_at: endpoint.previousSecretExpiresAt !== null && endpoint.previousSecretExpiresAt > now ? isoTime(endpoint.previousSecretExpiresAt) : null,
  created_at: isoTime(endpoint.createdAt) as string,
  updated_at: isoTime(endpoint.updatedAt) as string,
});

const AttemptSchema = Type.Object({
  attempt: Type.Integer(),
  at: time,
  duration_ms: Type.Integer(),
  status_code: Type.Union([Type.Integer(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  response: Type.Union([Type.String(), Type.Null()]),
});

const attemptJson = (attempt: AttemptRow) => ({
  attempt: attempt.attempt,
  at: isoTime(attempt.at) as string,
  duration_ms: attempt.durationMs,
  status_code: attempt.statusCode,
  error: attempt.error,
  response: attempt.responseExcerpt,
});

const DeliveryStatusSchema = Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed'), Type.Literal('cancelled')]);

const DeliverySchema = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  endpoint_id: Type.String(),
  status: DeliveryStatusSchema,
  attempts: Type.Integer(),
  next_attempt_at: nullableTime,
  retry_until: time,
  last_status_code: Type.Union([Type.Integer(), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  manual: Type.Boolean(),
  created_at: time,
  delivered_at: nullableTime,
  attempt_log: Type.Array(AttemptSchema),
});

/** Far-future times (a disabled endpoint's parked queue) show as null: "not scheduled". */
const scheduled = (delivery: DeliveryRow): string | null =>
  delivery.status === 'pending' && delivery.nextAttemptAt < 253_402_300_800_000 ? isoTime(delivery.nextAttemptAt) : null;

const deliveryJson = ({ delivery, attempts }: DeliveryWithAttempts) => ({
  id: delivery.id,
  event_id: delivery.eventId,
  endpoint_id: delivery.endpointId,
  status: delivery.status,
  attempts: delivery.attempts,
  next_attempt_at: scheduled(delivery),
  retry_until: isoTime(delivery.deadlineAt) as string,
  last_status_code: delivery.lastStatusCode,
  last_error: delivery.lastError,
  manual: delivery.manual,
  created_at: isoTime(delivery.createdAt) as string,
  delivered_at: isoTime(delivery.deliveredAt),
  attempt_log: attempts.map(attemptJson),
});

const EventSchema = Type.Object({
  id: Type.String(),
  type: Type.String(),
  created: time,
  app: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
});

/** The event exactly as it is sent (its payload is the body of every attempt). */
const eventJson = (event: EventRow) =>
  JSON.parse(event.payload) as { id: string; type: string; created: string; app: string; data: Record<string, unknown> };

const EndpointParams = Type.Object({ endpoint_id: Type.String({ maxLength: 64 }) });
const EventTypesSchema = Type.Array(Type.String({ maxLength: 64 }), {
  minItems: 1,
  maxItems: 64,
  description: `Event types to receive, or ["*"] for all: ${Object.keys(EVENT_TYPES).join(', ')}.`,
});
const UrlSchema = Type.String({ maxLength: URL_LENGTH_MAX, description: 'http(s) URL that receives POSTed events.' });
const LimitQuery = Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' }));
const limitOf = (value: string | undefined): number => Math.max(1, Math.min(Number(value ?? '100'), 1000));

export function registerWebhookRoutes(app: SluiceFastify, deps: { webhooks: WebhookService; now: () => number }): void {
  const { webhooks, now } = deps;
  const endpointOr404 = async (appId: string, endpointId: string): Promise<EndpointRow> => {
    const endpoint = await webhooks.getEndpoint(appId, endpointId);
    if (!endpoint) throw new ApiError('webhook_endpoint_not_found');
    return endpoint;
  };

  app.post('/v1/webhooks', {
    config: { auth: 'app' },
    schema: {
      summary: 'Register a webhook endpoint; the reply holds its signing secret, shown this once',
      tags: ['webhooks'],
      body: Type.Object({
        url: UrlSchema,
        event_types: EventTypesSchema,
        description: Type.Optional(Type.String({ maxLength: DESCRIPTION_LENGTH_MAX })),
      }, { additionalProperties: false }),
      response: { 201: Type.Intersect([EndpointSchema, Type.Object({ secret: Type.String() })]), ...errorResponses(400, 401, 403, 409) },
    },
  }, async (request, reply) => {
    const body = request.body;
    const created = unwrap(await webhooks.createEndpoint(appOf(request).id, {
      url: body.url,
      eventTypes: body.event_types,
      ...(body.description === undefined ? {} : { description: body.description }),
    }));
    return reply.code(201).send({ ...endpointJson(created.endpoint, now()), secret: created.secret });
  });

  app.get('/v1/webhooks', {
    config: { auth: 'app' },
    schema: { summary: "The calling app's webhook endpoints", tags: ['webhooks'], response: { 200: Type.Object({ endpoints: Type.Array(EndpointSchema) }), ...errorResponses(401, 403) } },
  }, async (request) => ({ endpoints: (await webhooks.listEndpoints(appOf(request).id)).map((endpoint) => endpointJson(endpoint, now())) }));

  app.get('/v1/webhooks/events', {
    config: { auth: 'app' },
    schema: {
      summary: "The calling app's events, newest first (what redelivery can send again)",
      tags: ['webhooks'],
      querystring: Type.Object({ limit: LimitQuery, type: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false }),
      response: { 200: Type.Object({ events: Type.Array(EventSchema) }), ...errorResponses(400, 401, 403) },
    },
  }, async (request) => ({ events: (await webhooks.listEvents(appOf(request).id, limitOf(request.query.limit), request.query.type)).map(eventJson) }));

  app.get('/v1/webhooks/events/:event_id', {
    config: { auth: 'app' },
    schema: {
      summary: 'One event, exactly as it is sent',
      tags: ['webhooks'],
      params: Type.Object({ event_id: Type.String({ maxLength: 64 }) }),
      response: { 200: EventSchema, ...errorResponses(401, 403, 404) },
    },
  }, async (request) => {
    const event = await webhooks.getEvent(appOf(request).id, request.params.event_id);
    if (!event) throw new ApiError('webhook_event_not_found');
    return eventJson(event);
  });

  app.get('/v1/webhooks/:endpoint_id', {
    config: { auth: 'app' },
    schema: { summary: 'One webhook endpoint', tags: ['webhooks'], params: EndpointParams, response: { 200: EndpointSchema, ...errorResponses(401, 403, 404) } },
  }, async (request) => endpointJson(await endpointOr404(appOf(request).id, request.params.endpoint_id), now()));

  app.patch('/v1/webhooks/:endpoint_id', {
    config: { auth: 'app' },
    schema: {
      summary: 'Change the URL, event types or description; disable, or enable again (which resets the failure count and resumes its queue)',
      tags: ['webhooks'],
      params: EndpointParams,
      body: Type.Object({
        url: Type.Optional(UrlSchema),
        event_types: Type.Optional(EventTypesSchema),
        description: Type.Optional(Type.String({ maxLength: DESCRIPTION_LENGTH_MAX })),
        enabled: Type.Optional(Type.Boolean()),
      }, { additionalProperties: false }),
      response: { 200: EndpointSchema, ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    const body = request.body;
    const updated = unwrap(await webhooks.updateEndpoint(appOf(request).id, request.params.endpoint_id, {
      ...(body.url === undefined ? {} : { url: body.url }),
      ...(body.event_types === undefined ? {} : { eventTypes: body.event_types }),
      ...(body.description === undefined ? {} : { description: body.description }),
      ...(body.enabled === undefined ? {} : { enabled: body.enabled }),
    }));
    return endpointJson(updated, now());
  });

  app.delete('/v1/webhooks/:endpoint_id', {
    config: { auth: 'app' },
    schema: {
      summary: 'Delete a webhook endpoint; its pending deliveries are cancelled',
      tags: ['webhooks'],
      params: EndpointParams,
      response: { 200: Type.Object({ id: Type.String(), deleted: Type.Boolean() }), ...errorResponses(401, 403, 404) },
    },
  }, async (request) => {
    if (!(await webhooks.deleteEndpoint(appOf(request).id, request.params.endpoint_id))) throw new ApiError('webhook_endpoint_not_found');
    return { id: request.params.endpoint_id, deleted: true };
  });

  app.post('/v1/webhooks/:endpoint_id/rotate-secret', {
    config: { auth: 'app' },
    schema: {
      summary: 'New signing secret (shown this once); the previous one keeps signing alongside it for previous_secret_ttl_s',
      tags: ['webhooks'],
      params: EndpointParams,
      body: Type.Optional(Type.Object({
        previous_secret_ttl_s: Type.Optional(Type.Integer({ minimum: 0, maximum: PREVIOUS_SECRET_TTL_MAX_S })),
      }, { additionalProperties: false })),
      response: { 200: Type.Intersect([EndpointSchema, Type.Object({ secret: Type.String() })]), ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    const ttlS = request.body?.previous_secret_ttl_s ?? PREVIOUS_SECRET_TTL_DEFAULT_S;
    const rotated = unwrap(await webhooks.rotateSecret(appOf(request).id, request.params.endpoint_id, ttlS));
    return { ...endpointJson(rotated.endpoint, now()), secret: rotated.secret };
  });

  app.get('/v1/webhooks/:endpoint_id/deliveries', {
    config: { auth: 'app' },
    schema: {
      summary: 'The delivery log of an endpoint, newest first, each delivery with its attempts',
      tags: ['webhooks'],
      params: EndpointParams,
      querystring: Type.Object({
        limit: LimitQuery,
        status: Type.Optional(DeliveryStatusSchema),
        event_id: Type.Optional(Type.String({ maxLength: 64 })),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ deliveries: Type.Array(DeliverySchema) }), ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    const query = request.query;
    const deliveries = unwrap(await webhooks.listDeliveries(appOf(request).id, request.params.endpoint_id, {
      limit: limitOf(query.limit),
      ...(query.status === undefined ? {} : { status: query.status }),
      ...(query.event_id === undefined ? {} : { eventId: query.event_id }),
    }));
    return { deliveries: deliveries.map(deliveryJson) };
  });

  app.get('/v1/webhooks/:endpoint_id/deliveries/:delivery_id', {
    config: { auth: 'app' },
    schema: {
      summary: 'One delivery with its attempts',
      tags: ['webhooks'],
      params: Type.Object({ endpoint_id: Type.String({ maxLength: 64 }), delivery_id: Type.String({ maxLength: 80 }) }),
      response: { 200: DeliverySchema, ...errorResponses(401, 403, 404) },
    },
  }, async (request) => deliveryJson(unwrap(await webhooks.getDelivery(appOf(request).id, request.params.endpoint_id, request.params.delivery_id))));

  app.post('/v1/webhooks/:endpoint_id/redeliver', {
    config: { auth: 'app' },
    schema: {
      summary: 'Send an event to this endpoint again, as a new delivery with the same event id',
      tags: ['webhooks'],
      params: EndpointParams,
      body: Type.Object({ event_id: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
      response: { 202: DeliverySchema, ...errorResponses(400, 401, 403, 404, 409) },
    },
  }, async (request, reply) => {
    const delivery = unwrap(await webhooks.redeliver(appOf(request).id, request.params.endpoint_id, request.body.event_id));
    return reply.code(202).send(deliveryJson({ delivery, attempts: [] }));
  });
}
