/**
 * Persistence of streams and their non-money events, for SQLite and PostgreSQL. Money
 * events live in the ledger (see model.ts). Low volume: one row per stream, one per
 * pause, close, invoice... so plain statements, one implementation per dialect over a
 * tiny query adapter.
 */
import type { SqliteDatabase } from '../db/sqlite.js';
import type { PostgresSql } from '../db/postgres.js';
import { migratePostgres, migrateSqlite } from '../db/migrate.js';
import { msat, type Msat } from '../money/msat.js';
import { postgresStreamMigrations, sqliteStreamMigrations } from './migrations.js';
import type { PayoutDestination, StreamEvent, StreamEventType, StreamRow } from './model.js';

export interface StreamStore {
  insertStream(row: StreamRow, created: StreamEvent): Promise<void>;
  getStream(id: string): Promise<StreamRow | null>;
  findStreamByTokenHash(tokenHash: string): Promise<StreamRow | null>;
  listStreams(appId: string, limit: number): Promise<StreamRow[]>;
  listOpenStreams(): Promise<StreamRow[]>;
  /** Closed streams not yet marked settled, by id after `afterId` (the start's sweep pages through them). */
  listUnsettledClosedStreams(afterId: string, limit: number): Promise<StreamRow[]>;
  /** Marks a closed stream settled: nothing left to pay back, nothing held (the sweep passes it by after); null: not any more (a late top-up). */
  markSettled(id: string, at: number | null): Promise<void>;
  /** Saves the row's mutable fields and appends the event, in one transaction. */
  saveWithEvent(row: StreamRow, event: StreamEvent | null): Promise<void>;
  appendEvent(event: StreamEvent): Promise<void>;
  listEventsAfter(streamId: string, afterSeq: number, limit: number): Promise<StreamEvent[]>;
  /** The stream's events of these types, in seq order (non-money events are few per stream: a load reads its payout events). */
  listEventsOfTypes(streamId: string, types: readonly StreamEventType[]): Promise<StreamEvent[]>;
  maxEventSeq(streamId: string): Promise<number>;
}

type Row = Record<string, unknown>;

interface Runner {
  all(sql: string, params: unknown[]): Promise<Row[]>;
  run(sql: string, params: unknown[]): Promise<void>;
  transaction(statements: { sql: string; params: unknown[] }[]): Promise<void>;
}

const num = (value: unknown): number => Number(value as bigint | number);
const amount = (value: unknown): Msat => msat(BigInt(value as bigint | number));

function streamFromRow(row: Row): StreamRow {
  const prices = JSON.parse(row.prices as string) as Record<string, string>;
  return {
    id: row.id as string,
    appId: row.app_id as string,
    accountId: row.account_id as string,
    payerTokenHash: row.payer_token_hash as string,
    prices: Object.fromEntries(Object.entries(prices).map(([name, value]) => [name, msat(BigInt(value))])),
    rateMsatPerS: amount(row.rate_msat_per_s),
    maximumMsat: amount(row.maximum_msat),
    settleThresholdMsat: amount(row.settle_threshold_msat),
    settleToMsat: amount(row.settle_to_msat),
    maxChargeMsat: amount(row.max_charge_msat),
    payoutThresholdMsat: amount(row.payout_threshold_msat),
    expiresAt: row.expires_at === null ? null : num(row.expires_at),
    payoutDestination: row.payout_destination === null ? null : (JSON.parse(row.payout_destination as string) as PayoutDestination),
    status: row.status as StreamRow['status'],
    meter: row.meter as StreamRow['meter'],
    meterSegment: num(row.meter_segment),
    meterSegmentStartedAt: row.meter_segment_started_at === null ? null : num(row.meter_segment_started_at),
    meterSecondsCharged: num(row.meter_seconds_charged),
    metadata: row.metadata as string,
    createdAt: num(row.created_at),
    closedAt: row.closed_at === null ? null : num(row.closed_at),
    moneyRows: num(row.money_rows) === 1,
  };
}

function eventFromRow(row: Row): StreamEvent {
  return {
    streamId: row.stream_id as string,
    seq: num(row.seq),
    type: row.type as StreamEventType,
    data: JSON.parse(row.data as string) as Record<string, unknown>,
    at: num(row.at),
  };
}

const COLUMNS = [
  'id', 'app_id', 'account_id', 'payer_token_hash', 'prices', 'rate_msat_per_s', 'maximum_msat', 'settle_threshold_msat',
  'settle_to_msat', 'max_charge_msat', 'payout_threshold_msat', 'expires_at', 'payout_destination', 'status', 'meter',
  'meter_segment', 'meter_segment_started_at', 'meter_seconds_charged', 'metadata', 'created_at', 'closed_at', 'money_rows',
];

function values(row: StreamRow): unknown[] {
  return [
    row.id, row.appId, row.accountId, row.payerTokenHash,
    JSON.stringify(Object.fromEntries(Object.entries(row.prices).map(([name, value]) => [name, value.toString()]))),
    row.rateMsatPerS, row.maximumMsat, row.settleThresholdMsat, row.settleToMsat, row.maxChargeMsat, row.payoutThresholdMsat,
    row.expiresAt, row.payoutDestination === null ? null : JSON.stringify(row.payoutDestination), row.status, row.meter,
    row.meterSegment, row.meterSegmentStartedAt, row.meterSecondsCharged, row.metadata, row.createdAt, row.closedAt,
    row.moneyRows ? 1 : 0,
  ];
}

function createStore(runner: Runner, dialect: 'sqlite' | 'postgres'): StreamStore {
  const p = (index: number) => (dialect === 'sqlite' ? '?' : `$${index}`);
  const list = (count: number, from = 1) => Array.from({ length: count }, (_, i) => p(from + i)).join(', ');
  const insertStreamSql = `INSERT INTO streams (${COLUMNS.join(', ')}) VALUES (${list(COLUMNS.length)})`;
  const insertEventSql = `INSERT INTO stream_events (stream_id, seq, type, data, at) VALUES (${list(5)})`;
  const updateSql = `UPDATE streams SET payout_destination = ${p(1)}, status = ${p(2)}, meter = ${p(3)}, meter_segment = ${p(4)},
    meter_segment_started_at = ${p(5)}, meter_seconds_charged = ${p(6)}, closed_at = ${p(7)} WHERE id = ${p(8)}`;
  const eventValues = (event: StreamEvent) => [event.streamId, event.seq, event.type, JSON.stringify(event.data), event.at];
  const updateValues = (row: StreamRow) => [
    row.payoutDestination === null ? null : JSON.stringify(row.payoutDestination), row.status, row.meter, row.meterSegment,
    row.meterSegmentStartedAt, row.meterSecondsCharged, row.closedAt, row.id,
  ];
  return {
    async insertStream(row, created) {
      await runner.transaction([
        { sql: insertStreamSql, params: values(row) },
        { sql: insertEventSql, params: eventValues(created) },
      ]);
    },
    async getStream(id) {
      const [row] = await runner.all(`SELECT * FROM streams WHERE id = ${p(1)}`, [id]);
      return row ? streamFromRow(row) : null;
    },
    async findStreamByTokenHash(tokenHash) {
      const [row] = await runner.all(`SELECT * FROM streams WHERE payer_token_hash = ${p(1)}`, [tokenHash]);
      return row ? streamFromRow(row) : null;
    },
    async listStreams(appId, limit) {
      return (await runner.all(`SELECT * FROM streams WHERE app_id = ${p(1)} ORDER BY created_at DESC, id LIMIT ${p(2)}`, [appId, limit])).map(streamFromRow);
    },
    async listOpenStreams() {
      return (await runner.all(`SELECT * FROM streams WHERE status = 'open'`, [])).map(streamFromRow);
    },
    async listUnsettledClosedStreams(afterId, limit) {
      const sql = `SELECT * FROM streams WHERE status = 'closed' AND settled_at IS NULL AND id > ${p(1)} ORDER BY id LIMIT ${p(2)}`;
      return (await runner.all(sql, [afterId, limit])).map(streamFromRow);
    },
    async markSettled(id, at) {
      await runner.run(`UPDATE streams SET settled_at = ${p(1)} WHERE id = ${p(2)} AND status = 'closed'`, [at, id]);
    },
    async saveWithEvent(row, event) {
      await runner.transaction([
        { sql: updateSql, params: updateValues(row) },
        ...(event ? [{ sql: insertEventSql, params: eventValues(event) }] : []),
      ]);
    },
    async appendEvent(event) {
      await runner.run(insertEventSql, eventValues(event));
    },
    async listEventsAfter(streamId, afterSeq, limit) {
      return (await runner.all(`SELECT * FROM stream_events WHERE stream_id = ${p(1)} AND seq > ${p(2)} ORDER BY seq LIMIT ${p(3)}`, [streamId, afterSeq, limit])).map(eventFromRow);
    },
    async listEventsOfTypes(streamId, types) {
      if (types.length === 0) return [];
      const sql = `SELECT * FROM stream_events WHERE stream_id = ${p(1)} AND type IN (${list(types.length, 2)}) ORDER BY seq`;
      return (await runner.all(sql, [streamId, ...types])).map(eventFromRow);
    },
    async maxEventSeq(streamId) {
      const [row] = await runner.all(`SELECT COALESCE(MAX(seq), 0) AS seq FROM stream_events WHERE stream_id = ${p(1)}`, [streamId]);
      return num(row?.seq ?? 0);
    },
  };
}

export function createSqliteStreamStore(db: SqliteDatabase): StreamStore {
  migrateSqlite(db, sqliteStreamMigrations);
  return createStore({
    async all(sql, params) {
      return db.prepare(sql).all(...params) as Row[];
    },
    async run(sql, params) {
      db.prepare(sql).run(...params);
    },
    async transaction(statements) {
      db.transaction(() => {
        for (const statement of statements) db.prepare(statement.sql).run(...statement.params);
      }).immediate();
    },
  }, 'sqlite');
}

export async function createPostgresStreamStore(sql: PostgresSql): Promise<StreamStore> {
  await migratePostgres(sql, postgresStreamMigrations);
  return createStore({
    async all(text, params) {
      return (await sql.unsafe(text, params as never[])) as unknown as Row[];
    },
    async run(text, params) {
      await sql.unsafe(text, params as never[]);
    },
    async transaction(statements) {
      await sql.begin(async (tx) => {
        for (const statement of statements) await tx.unsafe(statement.sql, statement.params as never[]);
      });
    },
  }, 'postgres');
}
