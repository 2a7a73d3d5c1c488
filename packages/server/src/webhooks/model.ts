/**
 * Webhooks: the event types Sluice can send, and the rows of the durable outbox
 * (endpoints, events, deliveries, attempts).
 *
 * An event is written once and fanned out, in the same transaction, to one delivery per
 * enabled endpoint of its app that asked for its type. Deliveries are the work queue:
 * pending until an attempt gets a 2xx (delivered), or until the retry window closes
 * (failed). Every attempt is logged. Event ids are stable across retries and
 * redeliveries: receivers deduplicate on them (delivery is at least once).
 */

/** Every event type, with what it means. Subscriptions (issue 5) emit theirs through the same outbox. */
export const EVENT_TYPES = {
  'invoice.paid': 'An invoice the app issued was paid and its amount credited.',
  'payment.succeeded': 'An outgoing payment of the app succeeded.',
  'payment.failed': 'An outgoing payment of the app failed; its hold was released.',
  'stream.closed': 'A stream was closed (by the app, the payer or its expiry).',
  'subscription.created': 'A subscription was created.',
  'subscription.activated': 'A subscription became active (first payment, or end of trial).',
  'subscription.renewed': 'A subscription entered a new contract period.',
  'subscription.payment_succeeded': 'A payment towards a subscription was received.',
  'subscription.balance_low': "A subscription's prepaid buffer fell under its floor; a top-up invoice went out.",
  'subscription.past_due': 'A subscription ran out of prepaid time and is in its grace period.',
  'subscription.suspended': 'A subscription passed its grace period unpaid and is suspended.',
  'subscription.resumed': 'A suspended or past-due subscription was paid and is active again.',
  'subscription.cancelled': 'A subscription was cancelled (by the customer or the merchant).',
  'subscription.expired': 'A subscription reached the end of its contract.',
} as const satisfies Record<string, string>;

export type EventType = keyof typeof EVENT_TYPES;

/** An endpoint may ask for every type, present and future. */
export const ALL_EVENT_TYPES = '*';

export function isEventType(value: string): value is EventType {
  return Object.prototype.hasOwnProperty.call(EVENT_TYPES, value);
}

export type EndpointStatus = 'enabled' | 'disabled';
/** Why an endpoint is disabled: by its app, or by Sluice after repeated failure. */
export type DisabledReason = 'manual' | 'failing';

export interface EndpointRow {
  id: string;
  appId: string;
  url: string;
  description: string;
  /** Sorted, deduplicated; ["*"] for every type. */
  eventTypes: string[];
  /** Shown to the app once; needed here to sign. Never logged. */
  secret: string;
  /** After a rotation, the old secret also signs until it expires, so receivers can switch without a gap. */
  previousSecret: string | null;
  previousSecretExpiresAt: number | null;
  status: EndpointStatus;
  disabledReason: DisabledReason | null;
  /** Failed attempts since the last success, and when that streak began. */
  consecutiveFailures: number;
  failingSince: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface EventRow {
  id: string;
  appId: string;
  type: string;
  /** What caused it, e.g. "invoice.paid:<payment hash>": the same cause never makes two events. Null for ad hoc events. */
  sourceKey: string | null;
  /** The exact JSON body sent (the envelope), so every attempt sends the same bytes. */
  payload: string;
  createdAt: number;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed' | 'cancelled';

export interface DeliveryRow {
  id: string;
  eventId: string;
  endpointId: string;
  appId: string;
  status: DeliveryStatus;
  /** Attempts made so far. */
  attempts: number;
  nextAttemptAt: number;
  /** No attempt starts after this (the retry window); the delivery then fails. */
  deadlineAt: number;
  /** Taken by a dispatcher until then (several processes may share PostgreSQL). */
  leasedUntil: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  /** True for a redelivery asked for by hand. */
  manual: boolean;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
}

export interface AttemptRow {
  deliveryId: string;
  attempt: number;
  at: number;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  /** The first bytes of the receiver's answer, for the log. */
  responseExcerpt: string | null;
}

/** What a finished attempt changes. */
export interface AttemptOutcome {
  deliveryId: string;
  endpointId: string;
  attempt: AttemptRow;
  delivered: boolean;
  /** For a failure: when to try again, or null when the window is closed (the delivery fails). */
  nextAttemptAt: number | null;
}

/** An event to write: type, app and data; the key (optional) makes it idempotent. */
export interface NewEvent {
  appId: string;
  type: EventType;
  data: Record<string, unknown>;
  /** Same key, same event: a second emit with it is ignored. Use the cause's identity (e.g. "subscription.renewed:<id>:<period>"). */
  key?: string;
  /** When it happened (default: now). */
  createdAt?: number;
}
