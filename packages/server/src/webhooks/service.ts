/**
 * Signed webhooks from a durable outbox.
 *
 * Guarantees, and how they are kept:
 * - An event whose cause was committed is not lost. Sluice's own causes (an invoice paid,
 *   a payment resolved, a stream closed) commit in their modules' transactions; their
 *   listeners then write the event. A crash between the two is covered by the catch-up at
 *   start: paid invoices, resolved payments and closed streams since a durable cursor that
 *   have no event get one. Event ids derive from the cause ("invoice.paid:<hash>"), so the
 *   listener and the catch-up can never make two events of one cause. Modules that can
 *   write in their own transaction (subscriptions) use `eventStatements` instead.
 * - Deliveries are rows, written with their event in one transaction, before any attempt.
 *   A restart finds them pending and goes on (leases of a dead process expire).
 * - At least once: a delivery is marked delivered only after a 2xx; a crash in between
 *   sends it again with the same event id (Sluice-Webhook-Id), which receivers dedupe on.
 * - Bounded: attempts have a timeout; retries follow capped exponential backoff with
 *   jitter until the retry window closes; concurrency is capped globally and per endpoint;
 *   an endpoint failing for long enough is disabled until its app enables it again.
 */
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { isPublicAddress } from '../lightning/public-address.js';
import type { InvoiceRow } from '../records/model.js';
import { invoiceFromRow, paymentFromRow } from '../records/rows.js';
import { randomHex, sha256Hex } from '../util/fingerprint.js';
import { ALL_EVENT_TYPES, isEventType, type EventType, type AttemptOutcome, type AttemptRow, type DeliveryRow, type DeliveryStatus, type EndpointRow, type EventRow, type NewEvent } from './model.js';
import { invoicePaidEvent, paymentFromRecord, paymentResolvedEvent, streamClosedEvent, type ClosedStream, type ResolvedPayment } from './payloads.js';
import { createSender, type Sender } from './sender.js';
import { ID_HEADER, newSecret, signatureHeader, TIMESTAMP_HEADER, SIGNATURE_HEADER } from './signing.js';
import { eventStatements, type ClaimedDelivery, type Statement, type WebhookStore } from './store.js';

export interface WebhookSettings {
  /** Per attempt: connect, send, answer. */
  timeoutMs: number;
  /** Retries stop this long after a delivery was created; it then fails. */
  retryWindowMs: number;
  /** First retry after about this long (before jitter); doubles per attempt. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Attempts under way at once, in this process. */
  concurrency: number;
  /** Attempts under way at once to one endpoint, in this process. */
  endpointConcurrency: number;
  /** An endpoint is disabled after this many failed attempts in a row... */
  disableAfterFailures: number;
  /** ...that span at least this long. */
  disableAfterMs: number;
  /** Whether endpoints may be (or resolve to) loopback, private or link-local addresses. */
  allowPrivateAddresses: boolean;
  /** How often the dispatcher looks for due retries (new events wake it at once). */
  pollIntervalMs: number;
}

export const DEFAULT_WEBHOOK_SETTINGS: WebhookSettings = {
  timeoutMs: 10_000,
  retryWindowMs: 3 * 86_400_000,
  backoffBaseMs: 5_000,
  backoffMaxMs: 3_600_000,
  concurrency: 64,
  endpointConcurrency: 4,
  disableAfterFailures: 20,
  disableAfterMs: 5 * 86_400_000,
  allowPrivateAddresses: false,
  pollIntervalMs: 1_000,
};

export const ENDPOINTS_PER_APP_MAX = 16;
export const URL_LENGTH_MAX = 2048;
export const DESCRIPTION_LENGTH_MAX = 500;
/** How long the previous secret still signs after a rotation, at most. */
export const PREVIOUS_SECRET_TTL_MAX_S = 7 * 86_400;
export const PREVIOUS_SECRET_TTL_DEFAULT_S = 86_400;
/** A lease outlives the attempt it covers by this much, so a slow flush does not free it early. */
const LEASE_MARGIN_MS = 60_000;
/** Deliveries claimed ahead per endpoint, at least (twice the endpoint's concurrency when that is more). */
const QUEUED_PER_ENDPOINT_MIN = 32;
/** The catch-up looks this far behind its cursor: node and Sluice clocks, and causes committing while the cursor was saved. */
export const CATCH_UP_MARGIN_MS = 10 * 60_000;
export const CATCH_UP_CURSOR_META = 'webhooks.catch_up_since';
const CATCH_UP_PAGE = 500;
/**
 * On PostgreSQL several processes share the database, and one may crash and stay down:
 * every process repeats the catch-up this often, so a cause another process committed
 * without its event is found within this time (SQLite has one process: start is enough).
 */
export const CATCH_UP_INTERVAL_MS = 10 * 60_000;
/** Finished deliveries (with their attempts) and events nothing waits for are deleted after this. */
export const RETENTION_MS = 30 * 86_400_000;
const PRUNE_BATCH = 1000;
const PRUNE_BATCHES_MAX = 100;

export type WebhookError =
  | 'UrlInvalid'
  | 'UrlScheme'
  | 'UrlNotPublic'
  | 'EventTypeUnknown'
  | 'EndpointLimit'
  | 'EndpointNotFound'
  | 'EndpointDisabled'
  | 'EventNotFound'
  | 'DeliveryNotFound';

export type Result<T> = { ok: true; value: T } | { ok: false; error: WebhookError; detail?: string };

export interface DeliveryWithAttempts {
  delivery: DeliveryRow;
  attempts: AttemptRow[];
}

export interface EndpointInput {
  url: string;
  eventTypes: string[];
  description?: string;
}

export interface EndpointPatch {
  url?: string;
  eventTypes?: string[];
  description?: string;
  enabled?: boolean;
}

/** Where the catch-up keeps its cursor (the records' meta table). */
export interface MetaStore {
  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;
}

export interface EmitOptions {
  /** The cause's identity, e.g. "subscription.renewed:<id>:<period>": one event per key, ever. */
  key?: string;
  /** When it happened (default now). */
  createdAt?: number;
}

/** What other modules use to send events (subscriptions get this from app.ts). */
export type WebhookEmitter = Pick<WebhookService, 'emit' | 'prepareEvent' | 'notify'>;

/** What another module needs to write an event inside its own transaction. */
export interface PreparedEvent {
  event: EventRow;
  /** Run these in the caller's transaction (runSqliteStatements / runPostgresStatements), then call `notify()` after the commit. */
  statements: Statement[];
}

export interface WebhookService {
  createEndpoint(appId: string, input: EndpointInput): Promise<Result<{ endpoint: EndpointRow; secret: string }>>;
  listEndpoints(appId: string): Promise<EndpointRow[]>;
  getEndpoint(appId: string, endpointId: string): Promise<EndpointRow | null>;
  updateEndpoint(appId: string, endpointId: string, patch: EndpointPatch): Promise<Result<EndpointRow>>;
  deleteEndpoint(appId: string, endpointId: string): Promise<boolean>;
  /** A new secret; the old one keeps signing (a second v1) for `previousTtlS` seconds. */
  rotateSecret(appId: string, endpointId: string, previousTtlS: number): Promise<Result<{ endpoint: EndpointRow; secret: string }>>;
  listDeliveries(appId: string, endpointId: string, filter: { status?: DeliveryStatus; eventId?: string; limit: number }): Promise<Result<DeliveryWithAttempts[]>>;
  getDelivery(appId: string, endpointId: string, deliveryId: string): Promise<Result<DeliveryWithAttempts>>;
  /** Sends the event again to this endpoint as a new delivery (same event id), whatever became of earlier ones. */
  redeliver(appId: string, endpointId: string, eventId: string): Promise<Result<DeliveryRow>>;
  listEvents(appId: string, limit: number, type?: string): Promise<EventRow[]>;
  getEvent(appId: string, eventId: string): Promise<EventRow | null>;

  /**
   * Writes an event and its deliveries (one transaction) and wakes the dispatcher.
   * `options.key` names the cause: same key, same event id, and a repeat writes nothing.
   */
  emit(appId: string, type: EventType, data: Record<string, unknown>, options?: EmitOptions): Promise<{ event: EventRow; inserted: boolean }>;
  /** The event and the statements that write it, for a caller's own transaction (run them there, then `notify()`). */
  prepareEvent(appId: string, type: EventType, data: Record<string, unknown>, options?: EmitOptions): PreparedEvent;
  /** Wakes the dispatcher (after a caller committed prepared events). */
  notify(): void;

  /** Listeners for the composition root: they write the event of a committed cause, never throw. */
  invoicePaid(invoice: InvoiceRow): void;
  paymentResolved(payment: ResolvedPayment): void;
  streamClosed(stream: ClosedStream): void;

  /** Catch-up, then the dispatcher. */
  start(): Promise<void>;
  /** Stops the dispatcher and records what finished; attempts cut off stay pending. */
  stop(): Promise<void>;
  /** Writes events for causes since the cursor that have none; returns how many. */
  catchUp(): Promise<number>;
  /** Runs the dispatcher until nothing is due (tests with a manual clock); returns attempts made. */
  dispatchDue(): Promise<number>;
}

export interface WebhookServiceDeps {
  store: WebhookStore;
  meta: MetaStore;
  clock: Clock;
  logger: Logger;
  settings: WebhookSettings;
  /** Replaces the HTTP sender (the benchmark counts bytes, tests inject faults); default: real HTTP. */
  sender?: Sender;
  /** Random in [0, 1) for jitter (tests pin it). */
  random?: () => number;
}

const LOCAL_NAMES = /(^|\.)localhost\.?$/i;

/** Checks an endpoint URL; the address check at connect time is the sender's. */
export function checkUrl(url: string, allowPrivate: boolean): { ok: true; url: string } | { ok: false; error: WebhookError; detail: string } {
  if (url.length > URL_LENGTH_MAX) return { ok: false, error: 'UrlInvalid', detail: `the URL is longer than ${URL_LENGTH_MAX} characters` };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, error: 'UrlInvalid', detail: `${JSON.stringify(url)} is not an absolute URL` };
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    return { ok: false, error: 'UrlScheme', detail: `${parsed.protocol.replace(/:$/, '')} is not http or https` };
  }
  if (parsed.username !== '' || parsed.password !== '') return { ok: false, error: 'UrlInvalid', detail: 'the URL may not carry a user name or password' };
  if (parsed.hash !== '') return { ok: false, error: 'UrlInvalid', detail: 'the URL may not have a #fragment' };
  if (!allowPrivate) {
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    if (LOCAL_NAMES.test(host)) return { ok: false, error: 'UrlNotPublic', detail: `${host} is a local name` };
    if (isIP(host) !== 0 && !isPublicAddress(host)) return { ok: false, error: 'UrlNotPublic', detail: `${host} is not a public address` };
  }
  return { ok: true, url: parsed.toString() };
}


/** Sorted, deduplicated; "*" swallows the rest. */
export function checkEventTypes(types: readonly string[]): { ok: true; types: string[] } | { ok: false; error: WebhookError; detail: string } {
  if (types.length === 0) return { ok: false, error: 'EventTypeUnknown', detail: 'event_types is empty: name types, or ["*"] for all' };
  const unknown = types.filter((type) => type !== ALL_EVENT_TYPES && !isEventType(type));
  if (unknown.length > 0) return { ok: false, error: 'EventTypeUnknown', detail: `unknown event type ${JSON.stringify(unknown[0])}` };
  if (types.includes(ALL_EVENT_TYPES)) return { ok: true, types: [ALL_EVENT_TYPES] };
  return { ok: true, types: [...new Set(types)].sort() };
}

/** Delay before retry number `attempt` (1 = after the first failure): capped doubling, equal jitter (half fixed, half random). */
export function backoffMs(attempt: number, settings: Pick<WebhookSettings, 'backoffBaseMs' | 'backoffMaxMs'>, random: number): number {
  const exponent = Math.min(attempt - 1, 40);
  const capped = Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** exponent);
  return Math.round(capped / 2 + (capped / 2) * random);
}

export function eventIdFor(key: string | undefined): string {
  return 'evt_' + (key === undefined ? randomHex(12) : sha256Hex(Buffer.from(key, 'utf8')).slice(0, 24));
}

export function createWebhookService(deps: WebhookServiceDeps): WebhookService {
  const { store, meta, clock, logger, settings } = deps;
  const random = deps.random ?? Math.random;
  const sender = deps.sender ?? createSender({
    timeoutMs: settings.timeoutMs,
    allowPrivateAddresses: settings.allowPrivateAddresses,
    maxSocketsPerHost: settings.endpointConcurrency,
  });

  // Dispatcher state (this process).
  let started = false;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let cycling: Promise<void> | null = null;
  let cycleAgain = false;
  let catchUpDue = false;
  let lastCatchUpAt = 0;
  let lastMaintenanceAt = 0;
  let maintaining: Promise<void> | null = null;
  /** Every delivery this process holds a lease on: queued here, being attempted, or with its outcome not yet recorded. */
  const held = new Set<string>();
  /** Claimed, not yet attempted, per endpoint (first in, first out). */
  const ready = new Map<string, ClaimedDelivery[]>();
  let readyCount = 0;
  /** Attempts under way, per endpoint. */
  const running = new Map<string, number>();
  const attempts = new Set<Promise<void>>();
  let outcomes: AttemptOutcome[] = [];
  let attemptsMade = 0;

  const buildEvent = (input: NewEvent): EventRow => {
    if (!isEventType(input.type)) throw new Error(`unknown webhook event type ${input.type}`);
    const id = eventIdFor(input.key);
    const createdAt = input.createdAt ?? clock.now();
    const payload = JSON.stringify({ id, type: input.type, created: new Date(createdAt).toISOString(), app: input.appId, data: input.data });
    return { id, appId: input.appId, type: input.type, sourceKey: input.key ?? null, payload, createdAt };
  };
  const fanOut = () => {
    const now = clock.now();
    return { nextAttemptAt: now, deadlineAt: now + settings.retryWindowMs };
  };

  const notify = (): void => {
    if (!started || stopped) return;
    scheduleCycle();
  };

  const write = async (input: NewEvent): Promise<{ event: EventRow; inserted: boolean }> => {
    const event = buildEvent(input);
    const inserted = await store.insertEvent(event, fanOut());
    if (inserted) notify();
    return { event, inserted };
  };

  /** A listener's emit: errors are logged and leave the catch-up to find the cause. */
  const emitFromCause = (input: NewEvent): void => {
    write(input).catch((error) => {
      catchUpDue = true;
      logger.error({ err: error, type: input.type, key: input.key }, 'could not write a webhook event; the catch-up will');
    });
  };

  // ---- Dispatcher ----
  //
  // One cycle at a time: record the outcomes of finished attempts and claim the next due
  // deliveries in one transaction (one fsync per cycle, however many attempts it covers),
  // then start attempts from the claimed queue while the limits allow. Attempts ending
  // start the next queued one at once and ask for a cycle; cycles coalesce.

  const secretsFor = (claimed: ClaimedDelivery, now: number): string[] =>
    claimed.previousSecret !== null && claimed.previousSecretExpiresAt !== null && claimed.previousSecretExpiresAt > now
      ? [claimed.secret, claimed.previousSecret]
      : [claimed.secret];

  const attempt = async (claimed: ClaimedDelivery): Promise<void> => {
    const { delivery } = claimed;
    const startedAt = clock.now();
    const timestampS = Math.floor(startedAt / 1000);
    const headers = {
      [ID_HEADER]: delivery.eventId,
      [TIMESTAMP_HEADER]: String(timestampS),
      [SIGNATURE_HEADER]: signatureHeader(secretsFor(claimed, startedAt), timestampS, claimed.payload),
    };
    const result = await sender.send(claimed.url, headers, claimed.payload);
    attemptsMade += 1;
    const delivered = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    const number = delivery.attempts + 1;
    const finishedAt = clock.now();
    let nextAttemptAt: number | null = null;
    if (!delivered) {
      const next = finishedAt + backoffMs(number, settings, random());
      nextAttemptAt = next <= delivery.deadlineAt ? next : null;
    }
    const error = delivered ? null : result.error ?? `HTTP ${result.statusCode ?? '?'}`;
    outcomes.push({
      deliveryId: delivery.id,
      endpointId: delivery.endpointId,
      delivered,
      nextAttemptAt,
      attempt: {
        deliveryId: delivery.id,
        attempt: number,
        at: startedAt,
        durationMs: result.durationMs,
        statusCode: result.statusCode,
        error,
        responseExcerpt: result.responseExcerpt,
      },
    });
  };

  const launchReady = (): void => {
    let progress = true;
    while (progress && attempts.size < settings.concurrency && readyCount > 0 && !stopped) {
      progress = false;
      for (const [endpointId, queue] of ready) {
        if (attempts.size >= settings.concurrency) break;
        if ((running.get(endpointId) ?? 0) >= settings.endpointConcurrency) continue;
        const next = queue.shift();
        if (queue.length === 0) ready.delete(endpointId);
        if (!next) continue;
        readyCount -= 1;
        launch(next);
        progress = true;
      }
    }
  };

  const launch = (claimed: ClaimedDelivery): void => {
    const { id, endpointId } = claimed.delivery;
    running.set(endpointId, (running.get(endpointId) ?? 0) + 1);
    const run: Promise<void> = attempt(claimed)
      .catch((error) => {
        // Not recorded: the lease runs out and the delivery is attempted again.
        held.delete(id);
        logger.error({ err: error, deliveryId: id }, 'webhook attempt failed unexpectedly');
      })
      .finally(() => {
        const left = (running.get(endpointId) ?? 1) - 1;
        if (left <= 0) running.delete(endpointId);
        else running.set(endpointId, left);
        attempts.delete(run);
        launchReady();
        scheduleCycle();
      });
    attempts.add(run);
  };

  /** Endpoints with as much queued and under way here as one claim may bring. */
  const fullEndpoints = (cap: number): string[] => {
    const counts = new Map<string, number>(running);
    for (const [endpointId, queue] of ready) counts.set(endpointId, (counts.get(endpointId) ?? 0) + queue.length);
    return [...counts].filter(([, count]) => count >= cap).map(([endpointId]) => endpointId);
  };

  const cycleOnce = async (): Promise<boolean> => {
    if (catchUpDue && !stopped) {
      catchUpDue = false;
      await catchUp().catch((error) => {
        catchUpDue = true;
        logger.error({ err: error }, 'webhook catch-up failed; will retry');
      });
    }
    const batch = outcomes;
    outcomes = [];
    // Claim ahead (up to twice the concurrency) so attempts do not wait for a cycle.
    const room = stopped ? 0 : 2 * settings.concurrency - attempts.size - readyCount;
    // Per endpoint, enough queued that attempts keep going while a cycle commits.
    const perEndpointCap = Math.max(2 * settings.endpointConcurrency, QUEUED_PER_ENDPOINT_MIN);
    const now = clock.now();
    let result: Awaited<ReturnType<WebhookStore['recordAndClaim']>>;
    try {
      result = await store.recordAndClaim({
        outcomes: batch,
        now,
        policy: { failures: settings.disableAfterFailures, periodMs: settings.disableAfterMs },
        // A queued delivery may wait for every attempt queued before it on its endpoint, each
        // up to the timeout: the lease covers that.
        claim: room > 0
          ? { leaseUntil: now + (Math.ceil(perEndpointCap / settings.endpointConcurrency) + 1) * settings.timeoutMs + LEASE_MARGIN_MS, limit: room, perEndpoint: perEndpointCap, skipEndpoints: fullEndpoints(perEndpointCap), skipIds: [...held] }
          : null,
      });
    } catch (error) {
      // Not recorded: the leases run out and these deliveries are attempted again (at least once).
      for (const outcome of batch) held.delete(outcome.deliveryId);
      logger.error({ err: error }, 'webhook dispatcher cycle failed; will retry');
      return false;
    }
    for (const outcome of batch) held.delete(outcome.deliveryId);
    for (const endpointId of result.disabled) logger.warn({ endpointId }, 'webhook endpoint disabled after repeated failures');
    for (const claimed of result.claimed) {
      held.add(claimed.delivery.id);
      const queue = ready.get(claimed.delivery.endpointId) ?? [];
      queue.push(claimed);
      ready.set(claimed.delivery.endpointId, queue);
      readyCount += 1;
    }
    launchReady();
    return result.claimed.length > 0 && result.claimed.length >= room;
  };

  /** Runs cycles until nothing is left to record or claim; one runner at a time. */
  const cycle = async (): Promise<void> => {
    if (cycling) {
      cycleAgain = true;
      return cycling;
    }
    cycling = (async () => {
      try {
        do {
          cycleAgain = false;
          const full = await cycleOnce();
          if (full || outcomes.length > 0) cycleAgain = true;
        } while (cycleAgain);
      } finally {
        cycling = null;
      }
    })();
    return cycling;
  };

  let cycleScheduled = false;
  /** Coalesces the requests of one tick (many attempts ending together) into one cycle. */
  const scheduleCycle = (): void => {
    if (cycleScheduled) return;
    cycleScheduled = true;
    setImmediate(() => {
      cycleScheduled = false;
      void cycle();
    });
  };

  /**
   * Every CATCH_UP_INTERVAL_MS: on PostgreSQL, the catch-up (another process may have died
   * between a cause and its event); on SQLite, only the cursor moves (this process is the
   * only writer, and its listeners wrote every event older than the margin, or flagged a
   * catch-up when one failed), so a restart after weeks does not rescan weeks. Then the
   * retention: finished deliveries and unneeded events older than RETENTION_MS go.
   */
  const maintain = (): void => {
    if (maintaining) return;
    lastMaintenanceAt = clock.now();
    maintaining = (async () => {
      try {
        if (store.dialect === 'postgres') catchUpDue = true;
        else if (!catchUpDue && started) {
          const cursor = Number((await meta.getMeta(CATCH_UP_CURSOR_META)) ?? '0');
          await meta.setMeta(CATCH_UP_CURSOR_META, String(Math.max(cursor, lastMaintenanceAt - CATCH_UP_MARGIN_MS)));
        }
        for (let batch = 0; batch < PRUNE_BATCHES_MAX && !stopped; batch += 1) {
          const pruned = await store.prune(clock.now() - RETENTION_MS, PRUNE_BATCH);
          if (pruned.deliveries < PRUNE_BATCH && pruned.events < PRUNE_BATCH) break;
          await new Promise((resolve) => setImmediate(resolve));
        }
      } catch (error) {
        logger.error({ err: error }, 'webhook maintenance failed; will retry');
      } finally {
        maintaining = null;
      }
    })();
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      if (clock.now() - lastMaintenanceAt >= CATCH_UP_INTERVAL_MS) maintain();
      void cycle().finally(schedule);
    }, settings.pollIntervalMs);
    timer.unref();
  };

  // ---- Catch-up ----

  const catchUp = async (): Promise<number> => {
    const startedAt = clock.now();
    lastCatchUpAt = startedAt;
    const cursor = await meta.getMeta(CATCH_UP_CURSOR_META);
    if (cursor === null) {
      // First start with webhooks: nothing before now is owed to endpoints that did not exist.
      await meta.setMeta(CATCH_UP_CURSOR_META, String(startedAt - CATCH_UP_MARGIN_MS));
      return 0;
    }
    // Never further back than the retention (minus a day): older events may have been pruned, and must not come back.
    const since = Math.max(Number(cursor), startedAt - RETENTION_MS + 86_400_000);
    let written = 0;
    for (;;) {
      const missing = await store.missingCauses(since, CATCH_UP_PAGE);
      const events: NewEvent[] = [
        ...missing.invoices.map((row) => invoicePaidEvent(invoiceFromRow(row))),
        ...missing.payments.map((row) => paymentFromRecord(paymentFromRow(row))).filter((payment) => payment !== null).map(paymentResolvedEvent),
        ...missing.streams.map((row) => streamClosedEvent({
          id: row.id as string,
          appId: row.app_id as string,
          metadata: row.metadata as string,
          createdAt: Number(row.created_at as bigint),
          closedAt: row.closed_at === null ? null : Number(row.closed_at as bigint),
          closedBy: closedByFrom(row.closed_data),
        })),
      ];
      for (const event of events) {
        if ((await write(event)).inserted) written += 1;
      }
      if (missing.invoices.length < CATCH_UP_PAGE && missing.payments.length < CATCH_UP_PAGE && missing.streams.length < CATCH_UP_PAGE) break;
    }
    // Everything committed before this catch-up began now has its event; later causes have
    // this process's listeners, or the next start's catch-up, which starts a margin earlier.
    await meta.setMeta(CATCH_UP_CURSOR_META, String(Math.max(since, startedAt - CATCH_UP_MARGIN_MS)));
    if (written > 0) logger.warn({ written }, 'webhook events written by the catch-up (causes committed before a crash)');
    return written;
  };

  // ---- Endpoints ----

  const findEndpoint = async (appId: string, endpointId: string): Promise<EndpointRow | null> => store.getEndpoint(appId, endpointId);

  const withAttempts = async (deliveries: DeliveryRow[]): Promise<DeliveryWithAttempts[]> => {
    const rows = await store.listAttempts(deliveries.map((delivery) => delivery.id));
    return deliveries.map((delivery) => ({ delivery, attempts: rows.filter((row) => row.deliveryId === delivery.id) }));
  };

  return {
    async createEndpoint(appId, input) {
      const url = checkUrl(input.url, settings.allowPrivateAddresses);
      if (!url.ok) return url;
      const types = checkEventTypes(input.eventTypes);
      if (!types.ok) return types;
      if ((await store.countEndpoints(appId)) >= ENDPOINTS_PER_APP_MAX) {
        return { ok: false, error: 'EndpointLimit', detail: `an app may have at most ${ENDPOINTS_PER_APP_MAX} webhook endpoints` };
      }
      const now = clock.now();
      const secret = newSecret();
      const endpoint: EndpointRow = {
        id: 'we_' + randomHex(8),
        appId,
        url: url.url,
        description: input.description ?? '',
        eventTypes: types.types,
        secret,
        previousSecret: null,
        previousSecretExpiresAt: null,
        status: 'enabled',
        disabledReason: null,
        consecutiveFailures: 0,
        failingSince: null,
        createdAt: now,
        updatedAt: now,
      };
      await store.insertEndpoint(endpoint);
      return { ok: true, value: { endpoint, secret } };
    },

    listEndpoints: (appId) => store.listEndpoints(appId),
    getEndpoint: findEndpoint,

    async updateEndpoint(appId, endpointId, patch) {
      const current = await findEndpoint(appId, endpointId);
      if (!current) return { ok: false, error: 'EndpointNotFound' };
      const next: EndpointRow = { ...current, updatedAt: clock.now() };
      if (patch.url !== undefined) {
        const url = checkUrl(patch.url, settings.allowPrivateAddresses);
        if (!url.ok) return url;
        next.url = url.url;
      }
      if (patch.eventTypes !== undefined) {
        const types = checkEventTypes(patch.eventTypes);
        if (!types.ok) return types;
        next.eventTypes = types.types;
      }
      if (patch.description !== undefined) next.description = patch.description;
      if (patch.enabled === true && current.status === 'disabled') {
        Object.assign(next, { status: 'enabled', disabledReason: null, consecutiveFailures: 0, failingSince: null });
      }
      if (patch.enabled === false && current.status === 'enabled') {
        Object.assign(next, { status: 'disabled', disabledReason: 'manual' });
      }
      await store.updateEndpoint(next, current.status === 'enabled');
      if (next.status === 'enabled' && current.status === 'disabled') notify();
      return { ok: true, value: next };
    },

    deleteEndpoint: (appId, endpointId) => store.deleteEndpoint(appId, endpointId, clock.now()),

    async rotateSecret(appId, endpointId, previousTtlS) {
      const current = await findEndpoint(appId, endpointId);
      if (!current) return { ok: false, error: 'EndpointNotFound' };
      const now = clock.now();
      const secret = newSecret();
      const next: EndpointRow = {
        ...current,
        secret,
        previousSecret: previousTtlS > 0 ? current.secret : null,
        previousSecretExpiresAt: previousTtlS > 0 ? now + previousTtlS * 1000 : null,
        updatedAt: now,
      };
      await store.updateEndpoint(next, current.status === 'enabled');
      return { ok: true, value: { endpoint: next, secret } };
    },

    async listDeliveries(appId, endpointId, filter) {
      if (!(await findEndpoint(appId, endpointId))) return { ok: false, error: 'EndpointNotFound' };
      return { ok: true, value: await withAttempts(await store.listDeliveries(endpointId, filter)) };
    },

    async getDelivery(appId, endpointId, deliveryId) {
      if (!(await findEndpoint(appId, endpointId))) return { ok: false, error: 'EndpointNotFound' };
      const delivery = await store.getDelivery(appId, deliveryId);
      if (!delivery || delivery.endpointId !== endpointId) return { ok: false, error: 'DeliveryNotFound' };
      const [withLog] = await withAttempts([delivery]);
      return { ok: true, value: withLog as DeliveryWithAttempts };
    },

    async redeliver(appId, endpointId, eventId) {
      const endpoint = await findEndpoint(appId, endpointId);
      if (!endpoint) return { ok: false, error: 'EndpointNotFound' };
      if (endpoint.status !== 'enabled') return { ok: false, error: 'EndpointDisabled', detail: 'enable the endpoint first (PATCH enabled: true)' };
      const event = await store.getEvent(appId, eventId);
      if (!event) return { ok: false, error: 'EventNotFound' };
      const now = clock.now();
      const delivery: DeliveryRow = {
        id: 'wd_' + randomHex(12) + '_m',
        eventId,
        endpointId,
        appId,
        status: 'pending',
        attempts: 0,
        nextAttemptAt: now,
        deadlineAt: now + settings.retryWindowMs,
        leasedUntil: null,
        lastStatusCode: null,
        lastError: null,
        manual: true,
        createdAt: now,
        updatedAt: now,
        deliveredAt: null,
      };
      await store.insertDelivery(delivery);
      notify();
      return { ok: true, value: delivery };
    },

    listEvents: (appId, limit, type) => store.listEvents(appId, limit, type),
    getEvent: (appId, eventId) => store.getEvent(appId, eventId),

    emit: (appId, type, data, options = {}) => write({ appId, type, data, ...options }),
    prepareEvent(appId, type, data, options = {}) {
      const event = buildEvent({ appId, type, data, ...options });
      return { event, statements: eventStatements(event, fanOut()) };
    },
    notify,

    invoicePaid(invoice) {
      emitFromCause(invoicePaidEvent(invoice));
    },
    paymentResolved(payment) {
      emitFromCause(paymentResolvedEvent(payment));
    },
    streamClosed(stream) {
      emitFromCause(streamClosedEvent(stream));
    },

    async start() {
      if (store.dialect === 'sqlite') await store.clearLeases();
      await catchUp();
      lastMaintenanceAt = clock.now();
      started = true;
      stopped = false;
      void cycle();
      schedule();
    },

    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await cycling;
      await maintaining;
      // Queued deliveries were not attempted: their leases run out (SQLite forgets them at start).
      ready.clear();
      readyCount = 0;
      sender.close();
      await Promise.allSettled([...attempts]);
      await cycle();
    },

    catchUp,

    async dispatchDue() {
      const before = attemptsMade;
      const wasStopped = stopped;
      stopped = false;
      try {
        for (;;) {
          await cycle();
          if (attempts.size === 0 && readyCount === 0 && outcomes.length === 0) break;
          await Promise.allSettled([...attempts]);
        }
      } finally {
        stopped = wasStopped;
      }
      return attemptsMade - before;
    },
  };
}

function closedByFrom(data: unknown): string {
  if (typeof data !== 'string') return 'unknown';
  try {
    const parsed = JSON.parse(data) as { by?: unknown };
    return typeof parsed.by === 'string' ? parsed.by : 'unknown';
  } catch {
    return 'unknown';
  }
}
