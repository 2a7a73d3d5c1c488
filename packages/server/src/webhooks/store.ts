/**
 * The webhook outbox on SQLite and PostgreSQL: one implementation over a tiny runner, as
 * streams/store.ts does. SQL is written once with `?` placeholders (numbered for
 * PostgreSQL). Every write that must be atomic is a list of statements run in one
 * transaction; conditions live in the SQL (guards, INSERT ... SELECT), because a SQLite
 * transaction here is one synchronous call that nothing else can interleave with.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from '../db/sqlite.js';
import type { PostgresSql, PostgresTransaction } from '../db/postgres.js';
import { migratePostgres, migrateSqlite } from '../db/migrate.js';
import { postgresWebhookMigrations, sqliteWebhookMigrations } from './migrations.js';
import type { AttemptOutcome, AttemptRow, DeliveryRow, DeliveryStatus, EndpointRow, EventRow } from './model.js';

type Row = Record<string, unknown>;

export interface Statement {
  sql: string;
  params: unknown[];
}

/** Rows returned (RETURNING or SELECT) and rows changed, per statement. */
export interface StatementResult {
  rows: Row[];
  changes: number;
}

interface Runner {
  all(sql: string, params: unknown[]): Promise<Row[]>;
  transaction(statements: Statement[]): Promise<StatementResult[]>;
}

/** A delivery taken for an attempt, with what the attempt needs. */
export interface ClaimedDelivery {
  delivery: DeliveryRow;
  payload: string;
  url: string;
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: number | null;
}

/** When a new event's deliveries are first due and when their retry window closes. */
export interface FanOut {
  nextAttemptAt: number;
  deadlineAt: number;
}

export interface DisablePolicy {
  /** Disable after at least this many failed attempts in a row... */
  failures: number;
  /** ...spanning at least this long. */
  periodMs: number;
}

/**
 * Which due deliveries to take: oldest due first, at most `perEndpoint` per endpoint (so
 * one endpoint's backlog cannot starve the others), none of `skipEndpoints` (full here) or
 * `skipIds` (already held here), at most `limit`; each leased until `leaseUntil`.
 */
export interface ClaimInput {
  leaseUntil: number;
  limit: number;
  perEndpoint: number;
  skipEndpoints: readonly string[];
  skipIds: readonly string[];
}

export interface DeliveryFilter {
  status?: DeliveryStatus;
  eventId?: string;
  limit: number;
}

/** Causes that happened (paid, resolved, closed) with no event yet: what the catch-up emits. */
export interface MissingCauses {
  invoices: Row[];
  payments: Row[];
  streams: Row[];
}

/** A time far in the future: deliveries of a disabled endpoint wait there until it is enabled again. */
export const PARKED_AT = 8_640_000_000_000_000;

export interface WebhookStore {
  readonly dialect: 'sqlite' | 'postgres';
  insertEndpoint(row: EndpointRow): Promise<void>;
  /** Not deleted, owned by the app. */
  getEndpoint(appId: string, id: string): Promise<EndpointRow | null>;
  listEndpoints(appId: string): Promise<EndpointRow[]>;
  countEndpoints(appId: string): Promise<number>;
  /** Saves every mutable field and the type list. When the endpoint goes from disabled to enabled, its parked deliveries become due now; from enabled to disabled, they are parked. */
  updateEndpoint(row: EndpointRow, wasEnabled: boolean): Promise<void>;
  /** Soft delete (the delivery log keeps naming it); pending deliveries are cancelled. */
  deleteEndpoint(appId: string, id: string, at: number): Promise<boolean>;

  /** Writes the event and its deliveries in one transaction; false when an event with this id exists (nothing written). */
  insertEvent(event: EventRow, fanOut: FanOut): Promise<boolean>;
  getEvent(appId: string, id: string): Promise<EventRow | null>;
  listEvents(appId: string, limit: number, type?: string): Promise<EventRow[]>;

  insertDelivery(row: DeliveryRow): Promise<void>;
  getDelivery(appId: string, id: string): Promise<DeliveryRow | null>;
  listDeliveries(endpointId: string, filter: DeliveryFilter): Promise<DeliveryRow[]>;
  listAttempts(deliveryIds: string[]): Promise<AttemptRow[]>;

  /**
   * Records finished attempts and takes the next due deliveries, in ONE transaction (one
   * fsync per dispatcher cycle, however many attempts it covers). An outcome whose delivery
   * moved on meanwhile (a lost lease) is ignored. Returns the endpoints this disabled and
   * the deliveries now leased to the caller.
   */
  recordAndClaim(input: { outcomes: AttemptOutcome[]; now: number; policy: DisablePolicy; claim: ClaimInput | null }): Promise<{ disabled: string[]; claimed: ClaimedDelivery[] }>;
  /** recordAndClaim without outcomes. */
  claimDue(claim: ClaimInput & { now: number }): Promise<ClaimedDelivery[]>;
  /** recordAndClaim without claiming. */
  recordOutcomes(outcomes: AttemptOutcome[], now: number, policy: DisablePolicy): Promise<string[]>;
  /** Forgets every lease (SQLite at start: one process, so no lease can be held by anyone else). */
  clearLeases(): Promise<void>;
  /** Counts by status, for tests and the benchmark. */
  countDeliveries(status: DeliveryStatus): Promise<number>;

  /**
   * Deletes up to `limit` finished deliveries (with their attempts) last changed before
   * `before`, and up to `limit` events older than `before` that no delivery refers to.
   * Pending deliveries and their events are never pruned.
   */
  prune(before: number, limit: number): Promise<{ deliveries: number; events: number }>;
  /** Paid invoices, resolved payments and closed streams since `since` that have no event yet. */
  missingCauses(since: number, limit: number): Promise<MissingCauses>;
}

const num = (value: unknown): number => Number(value as bigint | number);
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : num(value));
const strOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : (value as string));

export function endpointFromRow(row: Row): EndpointRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    url: row.url as string,
    description: row.description as string,
    eventTypes: JSON.parse(row.event_types as string) as string[],
    secret: row.secret as string,
    previousSecret: strOrNull(row.previous_secret),
    previousSecretExpiresAt: numOrNull(row.previous_secret_expires_at),
    status: row.status as EndpointRow['status'],
    disabledReason: strOrNull(row.disabled_reason) as EndpointRow['disabledReason'],
    consecutiveFailures: num(row.consecutive_failures),
    failingSince: numOrNull(row.failing_since),
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
  };
}

function eventFromRow(row: Row): EventRow {
  return {
    id: row.id as string,
    appId: row.app_id as string,
    type: row.type as string,
    sourceKey: strOrNull(row.source_key),
    payload: row.payload as string,
    createdAt: num(row.created_at),
  };
}

function deliveryFromRow(row: Row): DeliveryRow {
  return {
    id: row.id as string,
    eventId: row.event_id as string,
    endpointId: row.endpoint_id as string,
    appId: row.app_id as string,
    status: row.status as DeliveryStatus,
    attempts: num(row.attempts),
    nextAttemptAt: num(row.next_attempt_at),
    deadlineAt: num(row.deadline_at),
    leasedUntil: numOrNull(row.leased_until),
    lastStatusCode: numOrNull(row.last_status_code),
    lastError: strOrNull(row.last_error),
    manual: num(row.manual) === 1,
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
    deliveredAt: numOrNull(row.delivered_at),
  };
}

function attemptFromRow(row: Row): AttemptRow {
  return {
    deliveryId: row.delivery_id as string,
    attempt: num(row.attempt),
    at: num(row.at),
    durationMs: num(row.duration_ms),
    statusCode: numOrNull(row.status_code),
    error: strOrNull(row.error),
    responseExcerpt: strOrNull(row.response_excerpt),
  };
}

const ENDPOINT_COLUMNS = [
  'id', 'app_id', 'url', 'description', 'event_types', 'secret', 'previous_secret', 'previous_secret_expires_at', 'status',
  'disabled_reason', 'consecutive_failures', 'failing_since', 'created_at', 'updated_at',
];

const DELIVERY_COLUMNS = [
  'id', 'event_id', 'endpoint_id', 'app_id', 'status', 'attempts', 'next_attempt_at', 'deadline_at', 'leased_until',
  'last_status_code', 'last_error', 'manual', 'created_at', 'updated_at', 'delivered_at',
];

const marks = (count: number): string => Array.from({ length: count }, () => '?').join(', ');

/**
 * The two statements that write an event and fan it out, shared by the store and by the
 * in-transaction emit of other modules (WebhookService.prepareEvent). The fan-out reaches
 * every enabled endpoint of the app that asked for the type (or "*") when the event is
 * written; delivery ids derive from (event, endpoint), so writing the same event again
 * adds nothing for endpoints that already have it.
 */
export function eventStatements(event: EventRow, fanOut: FanOut): [Statement, Statement] {
  return [
    {
      sql: 'INSERT INTO webhook_events (id, app_id, type, source_key, payload, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      params: [event.id, event.appId, event.type, event.sourceKey, event.payload, event.createdAt],
    },
    {
      sql: `INSERT INTO webhook_deliveries (${DELIVERY_COLUMNS.join(', ')})
        SELECT 'wd_' || substr(CAST(? AS TEXT), 5) || '_' || substr(e.id, 4), CAST(? AS TEXT), e.id, e.app_id, 'pending', 0,
               CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS INTEGER), CAST(NULL AS TEXT), 0,
               CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(NULL AS BIGINT)
        FROM webhook_endpoints e
        WHERE e.app_id = ? AND e.deleted_at IS NULL AND e.status = 'enabled' AND e.created_at <= ?
          AND EXISTS (SELECT 1 FROM webhook_endpoint_types t WHERE t.endpoint_id = e.id AND t.event_type IN (?, '*'))
          AND EXISTS (SELECT 1 FROM webhook_events ev WHERE ev.id = ? AND ev.app_id = ?)
        ON CONFLICT DO NOTHING`,
      params: [
        event.id, event.id, fanOut.nextAttemptAt, fanOut.deadlineAt, fanOut.nextAttemptAt, fanOut.nextAttemptAt,
        event.appId, fanOut.nextAttemptAt, event.type, event.id, event.appId,
      ],
    },
  ];
}

/** `?` to `$1, $2, ...` (no statement here has a `?` inside a string literal). */
export function numbered(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}

/** The statements that record finished attempts, update failure streaks and disable endpoints failing for too long. */
function outcomeStatements(outcomes: AttemptOutcome[], now: number, policy: DisablePolicy): Statement[] {
  const statements: Statement[] = [];
  const touched = new Set<string>();
  for (const outcome of outcomes) {
    const { attempt } = outcome;
    // All three guarded by "the delivery is still pending at the attempt before this one":
    // an attempt that lost its lease to another process is not counted twice.
    const guard = "EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = ? AND status = 'pending' AND attempts = ?)";
    const guardParams = [attempt.deliveryId, attempt.attempt - 1];
    statements.push(outcome.delivered
      ? { sql: `UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL WHERE id = ? AND ${guard}`, params: [outcome.endpointId, ...guardParams] }
      : {
          sql: `UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, failing_since = COALESCE(failing_since, ?) WHERE id = ? AND ${guard}`,
          params: [attempt.at, outcome.endpointId, ...guardParams],
        });
    statements.push({
      sql: `INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response_excerpt)
            SELECT CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS TEXT)
            WHERE ${guard} ON CONFLICT DO NOTHING`,
      params: [
        attempt.deliveryId, attempt.attempt, attempt.at, attempt.durationMs, attempt.statusCode, attempt.error, attempt.responseExcerpt,
        ...guardParams,
      ],
    });
    const status = outcome.delivered ? 'delivered' : outcome.nextAttemptAt === null ? 'failed' : 'pending';
    statements.push({
      sql: `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, leased_until = NULL, last_status_code = ?,
            last_error = ?, updated_at = ?, delivered_at = ? WHERE id = ? AND status = 'pending' AND attempts = ?`,
      params: [
        status, attempt.attempt, outcome.nextAttemptAt ?? attempt.at, attempt.statusCode, attempt.error, now,
        outcome.delivered ? attempt.at : null, ...guardParams,
      ],
    });
    if (!outcome.delivered) touched.add(outcome.endpointId);
  }
  for (const endpointId of touched) {
    statements.push({
      sql: `UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'failing', updated_at = ?
            WHERE id = ? AND status = 'enabled' AND consecutive_failures >= ? AND failing_since <= ? RETURNING id`,
      params: [now, endpointId, policy.failures, now - policy.periodMs],
    });
    // Park what is left of a disabled endpoint's queue (nothing when it was not disabled).
    statements.push({
      sql: `UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ?
            WHERE endpoint_id = ? AND status = 'pending' AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ? AND status = 'disabled')`,
      params: [PARKED_AT, now, endpointId, endpointId],
    });
  }
  return statements;
}

/**
 * One UPDATE that leases the due deliveries it picks. Without row locks in the pick (window
 * functions forbid FOR UPDATE in PostgreSQL), two processes may pick the same row; the
 * outer WHERE is re-checked on the locked row, so only one of them leases it.
 */
function claimStatement(claim: ClaimInput, now: number): Statement {
  const skipEndpoints = claim.skipEndpoints.length > 0 ? `AND d.endpoint_id NOT IN (${marks(claim.skipEndpoints.length)})` : '';
  const skipIds = claim.skipIds.length > 0 ? `AND d.id NOT IN (${marks(claim.skipIds.length)})` : '';
  return {
    sql: `UPDATE webhook_deliveries SET leased_until = ?
          WHERE id IN (
            SELECT c.id FROM (
              SELECT d.id, d.next_attempt_at, ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rn
              FROM webhook_deliveries d
              WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND (d.leased_until IS NULL OR d.leased_until <= ?) ${skipEndpoints} ${skipIds}
            ) c WHERE c.rn <= ? ORDER BY c.next_attempt_at, c.id LIMIT ?
          ) AND status = 'pending' AND (leased_until IS NULL OR leased_until <= ?)
          RETURNING id`,
    params: [claim.leaseUntil, now, now, ...claim.skipEndpoints, ...claim.skipIds, claim.perEndpoint, claim.limit, now],
  };
}

/**
 * The catch-up's reads (parameters: since, limit): causes committed since a time that have
 * no event yet, oldest first. Each walks an index on its time column (records and streams
 * migrations 2), so a catch-up reads what happened since its cursor, not whole tables;
 * test/webhooks/catch-up-plan.test.ts checks the plans on both dialects.
 */
export const MISSING_CAUSES_SQL = {
  invoices: `SELECT i.* FROM invoices i WHERE i.status = 'paid' AND i.paid_at >= ?
               AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.source_key = 'invoice.paid:' || i.payment_hash)
             ORDER BY i.paid_at LIMIT ?`,
  payments: `SELECT p.* FROM payments p WHERE p.status IN ('succeeded', 'failed') AND p.resolved_at >= ?
               AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.source_key = 'payment.' || p.status || ':' || p.id)
             ORDER BY p.resolved_at LIMIT ?`,
  streams: `SELECT s.id, s.app_id, s.metadata, s.created_at, s.closed_at,
                   (SELECT se.data FROM stream_events se WHERE se.stream_id = s.id AND se.type = 'closed' ORDER BY se.seq LIMIT 1) AS closed_data
            FROM streams s WHERE s.status = 'closed' AND s.closed_at >= ?
              AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.source_key = 'stream.closed:' || s.id)
            ORDER BY s.closed_at LIMIT ?`,
} as const;

function createStore(runner: Runner, dialect: 'sqlite' | 'postgres'): WebhookStore {
  const all = (sql: string, params: unknown[]) => runner.all(sql, params);
  const typeStatements = (row: EndpointRow): Statement[] => [
    { sql: 'DELETE FROM webhook_endpoint_types WHERE endpoint_id = ?', params: [row.id] },
    ...row.eventTypes.map((type) => ({ sql: 'INSERT INTO webhook_endpoint_types (endpoint_id, event_type) VALUES (?, ?)', params: [row.id, type] })),
  ];
  const claimedDetails = async (ids: string[]): Promise<ClaimedDelivery[]> => {
    if (ids.length === 0) return [];
    const rows = await all(
      `SELECT d.*, ev.payload AS ev_payload, ep.url AS ep_url, ep.secret AS ep_secret, ep.previous_secret AS ep_previous_secret,
              ep.previous_secret_expires_at AS ep_previous_secret_expires_at
       FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
       WHERE d.id IN (${marks(ids.length)}) ORDER BY d.next_attempt_at, d.id`,
      ids,
    );
    return rows.map((row) => ({
      delivery: deliveryFromRow(row),
      payload: row.ev_payload as string,
      url: row.ep_url as string,
      secret: row.ep_secret as string,
      previousSecret: strOrNull(row.ep_previous_secret),
      previousSecretExpiresAt: numOrNull(row.ep_previous_secret_expires_at),
    }));
  };
  const endpointValues = (row: EndpointRow): unknown[] => [
    row.id, row.appId, row.url, row.description, JSON.stringify(row.eventTypes), row.secret, row.previousSecret,
    row.previousSecretExpiresAt, row.status, row.disabledReason, row.consecutiveFailures, row.failingSince, row.createdAt, row.updatedAt,
  ];

  const store: WebhookStore = {
    dialect,

    async insertEndpoint(row) {
      await runner.transaction([
        { sql: `INSERT INTO webhook_endpoints (${ENDPOINT_COLUMNS.join(', ')}) VALUES (${marks(ENDPOINT_COLUMNS.length)})`, params: endpointValues(row) },
        ...typeStatements(row),
      ]);
    },
    async getEndpoint(appId, id) {
      const [row] = await all('SELECT * FROM webhook_endpoints WHERE id = ? AND app_id = ? AND deleted_at IS NULL', [id, appId]);
      return row ? endpointFromRow(row) : null;
    },
    async listEndpoints(appId) {
      return (await all('SELECT * FROM webhook_endpoints WHERE app_id = ? AND deleted_at IS NULL ORDER BY created_at, id', [appId])).map(endpointFromRow);
    },
    async countEndpoints(appId) {
      const [row] = await all('SELECT COUNT(*) AS n FROM webhook_endpoints WHERE app_id = ? AND deleted_at IS NULL', [appId]);
      return num(row?.n ?? 0);
    },
    async updateEndpoint(row, wasEnabled) {
      const enabled = row.status === 'enabled';
      await runner.transaction([
        {
          sql: `UPDATE webhook_endpoints SET url = ?, description = ?, event_types = ?, secret = ?, previous_secret = ?,
                previous_secret_expires_at = ?, status = ?, disabled_reason = ?, consecutive_failures = ?, failing_since = ?, updated_at = ?
                WHERE id = ? AND deleted_at IS NULL`,
          params: [
            row.url, row.description, JSON.stringify(row.eventTypes), row.secret, row.previousSecret, row.previousSecretExpiresAt,
            row.status, row.disabledReason, row.consecutiveFailures, row.failingSince, row.updatedAt, row.id,
          ],
        },
        ...typeStatements(row),
        ...(enabled && !wasEnabled
          ? [{ sql: "UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'", params: [row.updatedAt, row.updatedAt, row.id] }]
          : []),
        ...(!enabled && wasEnabled
          ? [{ sql: "UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'", params: [PARKED_AT, row.updatedAt, row.id] }]
          : []),
      ]);
    },
    async deleteEndpoint(appId, id, at) {
      const [deleted] = await runner.transaction([
        { sql: 'UPDATE webhook_endpoints SET deleted_at = ?, updated_at = ? WHERE id = ? AND app_id = ? AND deleted_at IS NULL', params: [at, at, id, appId] },
        { sql: "UPDATE webhook_deliveries SET status = 'cancelled', leased_until = NULL, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'", params: [at, id] },
      ]);
      return (deleted?.changes ?? 0) > 0;
    },

    async insertEvent(event, fanOut) {
      const [inserted] = await runner.transaction(eventStatements(event, fanOut));
      return (inserted?.changes ?? 0) > 0;
    },
    async getEvent(appId, id) {
      const [row] = await all('SELECT * FROM webhook_events WHERE id = ? AND app_id = ?', [id, appId]);
      return row ? eventFromRow(row) : null;
    },
    async listEvents(appId, limit, type) {
      const rows = type === undefined
        ? await all('SELECT * FROM webhook_events WHERE app_id = ? ORDER BY created_at DESC, id DESC LIMIT ?', [appId, limit])
        : await all('SELECT * FROM webhook_events WHERE app_id = ? AND type = ? ORDER BY created_at DESC, id DESC LIMIT ?', [appId, type, limit]);
      return rows.map(eventFromRow);
    },

    async insertDelivery(row) {
      await runner.transaction([{
        sql: `INSERT INTO webhook_deliveries (${DELIVERY_COLUMNS.join(', ')}) VALUES (${marks(DELIVERY_COLUMNS.length)})`,
        params: [
          row.id, row.eventId, row.endpointId, row.appId, row.status, row.attempts, row.nextAttemptAt, row.deadlineAt, row.leasedUntil,
          row.lastStatusCode, row.lastError, row.manual ? 1 : 0, row.createdAt, row.updatedAt, row.deliveredAt,
        ],
      }]);
    },
    async getDelivery(appId, id) {
      const [row] = await all('SELECT * FROM webhook_deliveries WHERE id = ? AND app_id = ?', [id, appId]);
      return row ? deliveryFromRow(row) : null;
    },
    async listDeliveries(endpointId, filter) {
      const where = ['endpoint_id = ?'];
      const params: unknown[] = [endpointId];
      if (filter.status !== undefined) {
        where.push('status = ?');
        params.push(filter.status);
      }
      if (filter.eventId !== undefined) {
        where.push('event_id = ?');
        params.push(filter.eventId);
      }
      params.push(filter.limit);
      return (await all(`SELECT * FROM webhook_deliveries WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`, params)).map(deliveryFromRow);
    },
    async listAttempts(deliveryIds) {
      if (deliveryIds.length === 0) return [];
      return (await all(`SELECT * FROM webhook_attempts WHERE delivery_id IN (${marks(deliveryIds.length)}) ORDER BY delivery_id, attempt`, deliveryIds)).map(attemptFromRow);
    },

    async recordAndClaim({ outcomes, now, policy, claim }) {
      const statements = outcomeStatements(outcomes, now, policy);
      const disableFrom = statements.length;
      if (claim !== null && claim.limit > 0) statements.push(claimStatement(claim, now));
      if (statements.length === 0) return { disabled: [], claimed: [] };
      const results = await runner.transaction(statements);
      const disabled = results.slice(0, disableFrom).filter((_, index) => statements[index]?.sql.includes('RETURNING id'))
        .flatMap((result) => result.rows.map((row) => row.id as string));
      const claimedIds = claim !== null && claim.limit > 0 ? (results.at(-1)?.rows ?? []).map((row) => row.id as string) : [];
      return { disabled, claimed: await claimedDetails(claimedIds) };
    },
    async claimDue(claim) {
      return (await store.recordAndClaim({ outcomes: [], now: claim.now, policy: { failures: 1, periodMs: 0 }, claim })).claimed;
    },
    async recordOutcomes(outcomes, now, policy) {
      return (await store.recordAndClaim({ outcomes, now, policy, claim: null })).disabled;
    },

    async clearLeases() {
      await runner.transaction([{ sql: "UPDATE webhook_deliveries SET leased_until = NULL WHERE status = 'pending' AND leased_until IS NOT NULL", params: [] }]);
    },
    async countDeliveries(status) {
      const [row] = await all('SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = ?', [status]);
      return num(row?.n ?? 0);
    },

    async prune(before, limit) {
      const finished = `SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < ? ORDER BY updated_at, id LIMIT ?`;
      const results = await runner.transaction([
        { sql: `DELETE FROM webhook_attempts WHERE delivery_id IN (${finished})`, params: [before, limit] },
        { sql: `DELETE FROM webhook_deliveries WHERE id IN (${finished})`, params: [before, limit] },
        {
          sql: `DELETE FROM webhook_events WHERE id IN (
                  SELECT e.id FROM webhook_events e
                  WHERE e.created_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
                  ORDER BY e.created_at, e.id LIMIT ?)`,
          params: [before, limit],
        },
      ]);
      return { deliveries: results[1]?.changes ?? 0, events: results[2]?.changes ?? 0 };
    },

    async missingCauses(since, limit) {
      // Read-only looks at the tables of invoices, payments and streams: what they committed
      // is the truth, and an event missing for it is written here (see catch-up in service.ts).
      const invoices = await all(MISSING_CAUSES_SQL.invoices, [since, limit]);
      const payments = await all(MISSING_CAUSES_SQL.payments, [since, limit]);
      const streams = await all(MISSING_CAUSES_SQL.streams, [since, limit]);
      return { invoices, payments, streams };
    },
  };
  return store;
}

export function createSqliteWebhookStore(db: SqliteDatabase): WebhookStore {
  migrateSqlite(db, sqliteWebhookMigrations);
  // Prepared once per text: the dispatcher repeats the same few statements.
  const prepared = new Map<string, BetterSqlite3.Statement<unknown[]>>();
  const prepare = (sql: string): BetterSqlite3.Statement<unknown[]> => {
    let statement = prepared.get(sql);
    if (!statement) {
      statement = db.prepare<unknown[]>(sql);
      if (prepared.size > 256) prepared.clear();
      prepared.set(sql, statement);
    }
    return statement;
  };
  const execute = (statement: Statement): StatementResult => {
    const prepared = prepare(statement.sql);
    if (prepared.reader) {
      const rows = prepared.all(...statement.params) as Row[];
      return { rows, changes: rows.length };
    }
    return { rows: [], changes: prepared.run(...statement.params).changes };
  };
  return createStore({
    async all(sql, params) {
      return prepare(sql).all(...params) as Row[];
    },
    async transaction(statements) {
      return db.transaction(() => statements.map(execute)).immediate();
    },
  }, 'sqlite');
}

/** Runs statements on a PostgreSQL transaction (the store's own, or another module's). */
export async function runPostgresStatements(tx: PostgresTransaction, statements: Statement[]): Promise<StatementResult[]> {
  // Sent together (the driver pipelines queries on the transaction's connection; they run in
  // order), so a cycle of many outcomes costs about one round trip, not one per statement.
  const results = await Promise.all(statements.map((statement) => tx.unsafe(numbered(statement.sql), statement.params as never[])));
  return results.map((result) => ({ rows: result as unknown as Row[], changes: result.count ?? 0 }));
}

/** Runs statements inside another module's open SQLite transaction (synchronously). */
export function runSqliteStatements(db: SqliteDatabase, statements: Statement[]): StatementResult[] {
  return statements.map((statement) => {
    const prepared = db.prepare(statement.sql);
    if (prepared.reader) {
      const rows = prepared.all(...statement.params) as Row[];
      return { rows, changes: rows.length };
    }
    return { rows: [], changes: prepared.run(...statement.params).changes };
  });
}

export async function createPostgresWebhookStore(sql: PostgresSql): Promise<WebhookStore> {
  await migratePostgres(sql, postgresWebhookMigrations);
  return createStore({
    async all(text, params) {
      return (await sql.unsafe(numbered(text), params as never[])) as unknown as Row[];
    },
    async transaction(statements) {
      return (await sql.begin((tx) => runPostgresStatements(tx as PostgresTransaction, statements))) as StatementResult[];
    },
  }, 'postgres');
}
