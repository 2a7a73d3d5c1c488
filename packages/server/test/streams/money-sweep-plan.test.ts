// PostgreSQL: the sweep's read of the unsettled charges (money-store.ts unsettledChargesSql)
// runs while every money commit waits for it, so it must read each stream's rows through
// the (stream_id, seq) key and never scan stream_money whole, whatever the planner's
// statistics say. The join it replaced was planned on a young table (never analyzed) as a
// parallel scan and sort of every row: about 200 ms per sweep transaction with 430,000
// rows, and the commits waited out each one (docs/benchmarks.md, ninth session).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unsettledChargesSql } from '../../src/streams/money-store.js';
import { createPostgresStreamStore } from '../../src/streams/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

const STREAMS = 1000;
const ROWS_PER_STREAM = 300;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}

/** Every node of the plan, depth first. */
function nodesOf(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(nodesOf)];
}

describe.skipIf(!usePostgres)('the sweep\'s read of unsettled charges on PostgreSQL', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('sluice_sweep_plan');
    await createPostgresStreamStore(database.sql);
    // Streams settled up to seq 250 of 300, the rows written as commits write them (no ANALYZE).
    await database.sql.unsafe(
      `INSERT INTO streams (id, app_id, account_id, payer_token_hash, prices, rate_msat_per_s, maximum_msat, settle_threshold_msat, settle_to_msat,
         max_charge_msat, payout_threshold_msat, status, meter, meter_segment, meter_seconds_charged, metadata, created_at, money_rows, charges_settled_seq)
       SELECT 'st_' || lpad(i::text, 6, '0'), CASE WHEN i % 2 = 0 THEN 'app_even' ELSE 'app_odd' END, 'stream:' || i, 'hash' || i, '{}', 0, 0, 0, 0,
         1000000, 0, 'open', 'stopped', 0, 0, '', 1, 1, 250
       FROM generate_series(1, ${STREAMS}) AS i`,
    );
    await database.sql.unsafe(
      `INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused)
       SELECT 'st_' || lpad(s::text, 6, '0'), q, 'c:' || md5(s::text || ':' || q::text), 'hit', 1000, 1, NULL
       FROM generate_series(1, ${ROWS_PER_STREAM}) AS q, generate_series(1, ${STREAMS}) AS s`,
    );
  }, 60_000);

  afterAll(async () => {
    await database?.drop();
  });

  const someIds = Array.from({ length: 50 }, (_, i) => `st_${String(i * 20 + 1).padStart(6, '0')}`);

  async function planOf(only: 'ids' | 'app', parameter: unknown): Promise<PlanNode[]> {
    const [row] = (await database.sql.unsafe(`EXPLAIN (FORMAT JSON) ${unsettledChargesSql(only)}`, [parameter] as never[])) as unknown as { 'QUERY PLAN': { Plan: PlanNode }[] }[];
    return nodesOf((row as { 'QUERY PLAN': { Plan: PlanNode }[] })['QUERY PLAN'][0]!.Plan);
  }

  const wholeScans = (nodes: PlanNode[]) => nodes.filter((node) => node['Relation Name'] === 'stream_money' && node['Node Type'] === 'Seq Scan');
  /** An index scan (plain, index-only or bitmap) bounded by the stream and its settled seq. */
  const keyRanges = (nodes: PlanNode[]) => nodes.filter((node) => /stream_id = s\.id\) AND \(seq > s\.charges_settled_seq/.test(node['Index Cond'] ?? ''));

  for (const analyzed of [false, true]) {
    it(`reads each stream's rows through its key, never the whole table (${analyzed ? 'after ANALYZE' : 'statistics never gathered'})`, async () => {
      if (analyzed) await database.sql.unsafe('ANALYZE streams; ANALYZE stream_money');
      for (const nodes of [await planOf('ids', someIds), await planOf('app', 'app_even')]) {
        const shape = JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'] ?? node['Index Cond'] ?? null]));
        expect(wholeScans(nodes), shape).toEqual([]);
        expect(keyRanges(nodes), shape).toHaveLength(1);
      }
    });
  }

  it('an app\'s balance read looks at its open streams and its closed ones not marked settled; the catch-up at every stream', async () => {
    // Rows past the settled seq on each (as a stream that took charges in another process):
    // open, closed and not marked, closed and marked settled (whose charges a load swept before the mark).
    const [open, closed, marked] = ['st_900001', 'st_900002', 'st_900003'];
    await database.sql.unsafe(
      `INSERT INTO streams (id, app_id, account_id, payer_token_hash, prices, rate_msat_per_s, maximum_msat, settle_threshold_msat, settle_to_msat,
         max_charge_msat, payout_threshold_msat, status, meter, meter_segment, meter_seconds_charged, metadata, created_at, money_rows, charges_settled_seq, settled_at)
       SELECT id, 'app_marks', 'stream:' || id, 'hash' || id, '{}', 0, 0, 0, 0, 1000000, 0, status, 'stopped', 0, 0, '', 1, 1, 0, settled_at
       FROM (VALUES ($1, 'open', NULL::int8), ($2, 'closed', NULL::int8), ($3, 'closed', 5::int8)) AS v(id, status, settled_at)`,
      [open, closed, marked],
    );
    await database.sql.unsafe(
      `INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) SELECT id, 1, 'c:one', 'hit', 1000, 1, NULL FROM unnest($1::text[]) AS id`,
      [[open, closed, marked]] as never[],
    );
    const ids = async (sql: string, parameters: unknown[]) => ((await database.sql.unsafe(sql, parameters as never[])) as unknown as { id: string }[]).map((row) => row.id);
    expect(await ids(unsettledChargesSql('app'), ['app_marks'])).toEqual([open, closed]);
    expect((await ids(unsettledChargesSql(null), [])).filter((id) => id.startsWith('st_9'))).toEqual([open, closed, marked]);
    expect(await ids(unsettledChargesSql('ids'), [[marked]])).toEqual([marked]);
  });

  it('sums each stream\'s charges past its settled seq, and leaves out rewards, refusals and settled streams', async () => {
    const [first, second, third] = someIds as [string, string, string];
    await database.sql.unsafe(
      `INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused) VALUES
         ($1, 301, 'r:reward', 'reward', 7777, 1, NULL), ($1, 302, 'c:refused', 'hit', 5555, 1, 'LimitExceeded')`,
      [first],
    );
    await database.sql.unsafe(`UPDATE streams SET charges_settled_seq = ${ROWS_PER_STREAM} WHERE id = $1`, [third]);
    const rows = (await database.sql.unsafe(unsettledChargesSql('ids'), [[first, second, third]] as never[])) as unknown as Record<string, unknown>[];
    expect(rows.map((row) => [row.id, String(row.sum), String(row.to_seq), String(row.charges_settled_seq)])).toEqual([
      [first, String(50 * 1000), '300', '250'],
      [second, String(50 * 1000), '300', '250'],
    ]);
  });
});
