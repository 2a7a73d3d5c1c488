/**
 * A stream's money steps (charges, rewards, meter steps) as compact rows, SQLite and
 * PostgreSQL. Why not one ledger transfer per step, as before: each one was a transfer row,
 * two account updates and an idempotency record (the step's ref), about half of what a charge
 * cost the server. Here a step is one row, unique per stream by seq (resume reads them in
 * order) and by ref (a retry finds its first answer), and ONE transaction per batch (`commit`)
 * writes the rows, with one ledger transfer per reward (the app's balance must cover each).
 * The charges' money follows in sweeps (`settle`, the service's settler): one transfer per
 * stream for every charge committed since its last one, recorded in the same transaction as
 * the stream's `charges_settled_seq`, so rows and ledger never disagree, even across a crash:
 *   app revenue from the stream's charges = the charges with seq <= charges_settled_seq
 * A stream's steps commit in seq order (the service takes the seq as it submits the step),
 * so a settled seq never passes a charge still to come.
 *
 * The service checks each charge against the payer's limit in memory before it is sent here
 * (one process owns a stream's live state), counting the charges not yet settled; the ledger
 * checks the summed transfer again when it is swept.
 *
 * A refusal is a row too (`refused`): the ref then answers the same refusal again, as the
 * ledger's idempotency records did, so a step once refused is never applied by a late retry.
 *
 * PostgreSQL here; SQLite, whose commits write whole pages, in money-store-sqlite.ts (two tiers).
 */
import { retryTransaction, type PostgresSql, type PostgresTransaction } from '../db/postgres.js';
import type { LedgerOp } from '../ledger/store.js';
import { msat, type Msat } from '../money/msat.js';
import type { PostgresLedgerApply } from '../records/postgres.js';
import { appAccountId } from '../apps/service.js';

/** The namespaces of a step's ref: the protocol's charge and reward refs, and the meter's own. */
export const CHARGE_REF = 'c:';
export const REWARD_REF = 'r:';
export const METER_REF = 'm:';

export interface MoneyStep {
  streamId: string;
  /** The stream's ledger account (the payer's position). */
  accountId: string;
  appId: string;
  seq: number;
  /** Namespaced: CHARGE_REF, REWARD_REF or METER_REF, then the ref. */
  ref: string;
  /** The event name ('hit', 'amount', 'meter', 'reward'). */
  name: string;
  amountMsat: Msat;
  at: number;
  /** Set when the service refused the step before the ledger (the payer's limit): recorded as refused, nothing moves. */
  refused?: 'LimitExceeded';
}

export interface MoneyRow {
  seq: number;
  ref: string;
  name: string;
  amountMsat: Msat;
  at: number;
  /** Why it was refused; null: it moved. */
  refused: string | null;
}

export type MoneyOutcome =
  /** Written and (unless refused) moved, durably. */
  | { kind: 'written'; refused: string | null }
  /** The ref was already taken: the first step with it (which may itself be refused). */
  | { kind: 'replay'; first: MoneyRow };

export interface StreamMoneyStore {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * True when commit() has written its transaction by the time it returns, and its calls are
   * answered in call order (SQLite: the transaction runs synchronously, then waits for the
   * WAL sync, and syncs end in order). The committer then starts the next batch while one
   * waits for its sync. False (PostgreSQL): one commit at a time, so they land in seq order.
   */
  readonly writesBeforeReturning: boolean;
  /** Writes the steps and moves their money, in one transaction; resolves once it is durable. Outcomes are in step order. */
  commit(steps: readonly MoneyStep[], now: number): Promise<MoneyOutcome[]>;
  /** The stream's steps with seq in (afterSeq, toSeq], in seq order, at most `limit`. */
  listBetween(streamId: string, afterSeq: number, toSeq: number, limit: number): Promise<MoneyRow[]>;
  findByRef(streamId: string, ref: string): Promise<MoneyRow | null>;
  /** The stream's highest step seq (0: none). */
  maxSeq(streamId: string): Promise<number>;
  /**
   * Pays the apps for these streams' charges committed since their last settlement, one
   * transfer per stream, and records how far each is settled (streams.charges_settled_seq), in
   * one transaction. Streams with nothing to settle are skipped. Returns how many were settled.
   */
  settle(streamIds: readonly string[], now: number): Promise<number>;
  /**
   * Streams with charges past their settled seq: read at start-up and by the minute's catch-up
   * (every stream), and by a balance read on PostgreSQL (this app's streams that may still
   * take or hold charges: open, or closed and not marked settled; another process's charges).
   */
  listUnsettled(appId?: string): Promise<string[]>;
  /** The stream's committed charges not yet settled to its app (its ledger account still holds them). */
  unsettledMsat(streamId: string): Promise<bigint>;
}

export function isReward(ref: string): boolean {
  return ref.startsWith(REWARD_REF);
}

export type Row = Record<string, unknown>;

export function moneyFromRow(row: Row): MoneyRow {
  return {
    seq: Number(row.seq as bigint | number),
    ref: row.ref as string,
    name: row.name as string,
    amountMsat: msat(BigInt(row.amount_msat as bigint | number)),
    at: Number(row.at as bigint | number),
    refused: (row.refused as string | null) ?? null,
  };
}

/**
 * The ledger ops of a commit: one transfer per reward written (not refused, not a replay),
 * which the app's balance must cover now. `owners[i]` are the step indexes op i moves.
 * Charges move later, summed per stream, in a sweep (chargesSettlementOp).
 */
export function rewardOps(steps: readonly MoneyStep[], written: readonly number[]): { ops: LedgerOp[]; owners: number[][] } {
  const ops: LedgerOp[] = [];
  const owners: number[][] = [];
  for (const index of written) {
    const step = steps[index] as MoneyStep;
    if (!isReward(step.ref)) continue;
    ops.push({
      kind: 'transfer',
      debitAccountId: appAccountId(step.appId),
      creditAccountId: step.accountId,
      amountMsat: step.amountMsat,
      code: 'reward:reward',
      reference: `${step.streamId}/${step.seq}/reward`,
    });
    owners.push([index]);
  }
  return { ops, owners };
}

/** What a sweep needs of one stream whose charges passed its settled seq. */
export interface UnsettledCharges {
  streamId: string;
  accountId: string;
  appId: string;
  /** The stream's charges_settled_seq before, and after, this settlement. */
  fromSeq: number;
  toSeq: number;
  sumMsat: bigint;
}

/**
 * The transfer that pays the app for a stream's charges with seq in (fromSeq, toSeq]. Its
 * reference names the stream and toSeq (unique: the settled seq only grows), and reads as a
 * money step's at load (the newest one with a seq).
 */
export function chargesSettlementOp(unsettled: UnsettledCharges): LedgerOp {
  return {
    kind: 'transfer',
    debitAccountId: unsettled.accountId,
    creditAccountId: appAccountId(unsettled.appId),
    amountMsat: msat(unsettled.sumMsat),
    code: 'stream_charges',
    reference: `${unsettled.streamId}/${unsettled.toSeq}/charges`,
  };
}

/** A settlement the ledger refused: the stream's cached balance and the ledger disagree (a bug); the sweep keeps it due. */
export function assertSettled(results: readonly { ok: boolean; error?: string }[]): void {
  const refused = results.find((result) => !result.ok);
  if (refused) throw new Error(`a stream's charges settlement was refused by the ledger (${refused.error}): its balance and its rows disagree`);
}

/** A refused reward: anything but the app's limit is a bug, and aborts the batch. */
export function refusalOf(result: { ok: boolean; error?: string }): string | null {
  if (result.ok) return null;
  if (result.error === 'LimitExceeded') return 'LimitExceeded';
  throw new Error(`the ledger refused a stream's money step: ${result.error}`);
}

export const SELECT_COLUMNS = 'seq, ref, name, amount_msat, at, refused';

/** The advisory lock key money commits hold shared and a sweep takes exclusively (PostgreSQL). */
export const MONEY_COMMITS_LOCK = '8317151707346052205'; // the bytes of "sluice$m"
/** Longest a sweep waits for the money commits in progress (then it fails, and is tried again). */
const BARRIER_WAIT_MS = 2000;

/**
 * The streams an app's balance read looks at (on PostgreSQL, GET /v1/balance sweeps the app's
 * streams wherever they were charged): open ones, and closed ones the start's sweep has not
 * marked settled. A closed stream is marked only once a read (which sweeps its charges first)
 * found its balance at zero or below and nothing unswept (service.ts markSettledUnlessCredited),
 * and a closed stream takes no charge, so a marked one has none to sweep. Without it, every
 * balance read probed every stream the app ever had (215 ms with 100,000 closed streams,
 * against 11-13 ms; docs/benchmarks.md, ninth session). The minute's catch-up and the start
 * (listUnsettled without an app) still look at every stream.
 */
const MAY_HOLD_CHARGES = "(s.status = 'open' OR s.settled_at IS NULL)";

/**
 * Each stream's rows past its settled seq, read as one range of the (stream_id, seq) key per
 * stream (LATERAL), never as a join the planner may choose: a sweep runs this while every
 * money commit waits for it (settleOnce), and a join planned on a young table's missing
 * statistics scanned and sorted all of stream_money (measured: about 200 ms with 430,000
 * rows, once per sweep transaction, so commits spent most of their time waiting).
 * PostgreSQL; exported for the plan's test ($1: the stream ids, or the app id).
 */
export const unsettledChargesSql = (only: 'ids' | 'app' | null): string => `
  SELECT s.id, s.account_id, s.app_id, s.charges_settled_seq, m.sum, m.to_seq
  FROM streams s CROSS JOIN LATERAL (
    SELECT SUM(amount_msat) AS sum, MAX(seq) AS to_seq FROM stream_money
    WHERE stream_id = s.id AND seq > s.charges_settled_seq AND refused IS NULL AND ref NOT LIKE '${REWARD_REF}%'
  ) m
  WHERE m.to_seq IS NOT NULL${only === 'ids' ? ' AND s.id = ANY($1::text[])' : only === 'app' ? ` AND s.app_id = $1 AND ${MAY_HOLD_CHARGES}` : ''}
  ORDER BY s.id`;

export function createPostgresStreamMoneyStore(sql: PostgresSql, applyLedgerOps: PostgresLedgerApply): StreamMoneyStore {
  /**
   * The batch's rows in ONE statement; RETURNING names the rows written (the others' refs were
   * taken). The statement first takes the money commits' advisory lock, shared with every other
   * money commit, and holds it until its transaction ends, so a sweep can wait for the commits
   * in progress (settleOnce). Without it a slow commit (its connection lost after COMMIT was
   * sent, a lock wait) could land after a later batch of the same stream was swept: its
   * charges would sit below charges_settled_seq, never paid to the app. An advisory lock (one
   * entry in the server's lock table), not the streams' rows (a row lock is written into each
   * row: WAL for every stream of every batch). The CTE is MATERIALIZED and joined to every
   * row, so the lock is taken once, before the first row is written.
   */
  const insertSteps = (runner: PostgresSql | PostgresTransaction, steps: readonly MoneyStep[]): Promise<Row[]> =>
    runner.unsafe(
      `WITH barrier AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(${MONEY_COMMITS_LOCK}))
       INSERT INTO stream_money (stream_id, seq, ref, name, amount_msat, at, refused)
       SELECT u.* FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[]) AS u, barrier
       ON CONFLICT (stream_id, ref) DO NOTHING RETURNING stream_id, seq`,
      [
        steps.map((s) => s.streamId), steps.map((s) => String(s.seq)), steps.map((s) => s.ref), steps.map((s) => s.name),
        steps.map((s) => s.amountMsat.toString()), steps.map((s) => String(s.at)), steps.map((s) => s.refused ?? null),
      ] as never[],
    ) as unknown as Promise<Row[]>;

  /** Which steps the INSERT wrote (their outcomes set: written as submitted), and which found their ref taken. */
  const sortOutcomes = (steps: readonly MoneyStep[], inserted: readonly Row[], outcomes: MoneyOutcome[]): { written: number[]; replays: number[] } => {
    const writtenKeys = new Set(inserted.map((row) => `${row.stream_id as string}/${Number(row.seq as bigint | number)}`));
    const written: number[] = [];
    const replays: number[] = [];
    steps.forEach((step, i) => {
      if (writtenKeys.has(`${step.streamId}/${step.seq}`)) {
        outcomes[i] = { kind: 'written', refused: step.refused ?? null };
        if (step.refused === undefined) written.push(i);
      } else replays.push(i);
    });
    return { written, replays };
  };

  /** The first step of each replay's ref, as committed (read after this batch's own refusals). */
  const answerReplays = async (runner: PostgresSql | PostgresTransaction, steps: readonly MoneyStep[], replays: readonly number[], outcomes: MoneyOutcome[]): Promise<void> => {
    if (replays.length === 0) return;
    const found = (await runner.unsafe(
      `SELECT m.stream_id, m.seq, m.ref, m.name, m.amount_msat, m.at, m.refused FROM stream_money m
       JOIN unnest($1::text[], $2::text[]) AS k(stream_id, ref) ON m.stream_id = k.stream_id AND m.ref = k.ref`,
      [replays.map((i) => (steps[i] as MoneyStep).streamId), replays.map((i) => (steps[i] as MoneyStep).ref)] as never[],
    )) as unknown as Row[];
    const firsts = new Map(found.map((row) => [`${row.stream_id as string}/${row.ref as string}`, moneyFromRow(row)]));
    for (const i of replays) {
      const step = steps[i] as MoneyStep;
      const first = firsts.get(`${step.streamId}/${step.ref}`);
      if (!first) throw new Error(`stream ${step.streamId}: money step ${step.ref} was neither written nor found`);
      outcomes[i] = { kind: 'replay', first };
    }
  };

  /**
   * A batch with no reward to move (charges, meter steps, refusals: the hot path) is one
   * statement in its own transaction: one round trip, where BEGIN, the INSERT and COMMIT took
   * three, each waiting for this process's event loop (sampled under load: the server sat
   * `idle in transaction` between them as often as it ran the INSERT). Its replays are read
   * after the commit: the rows they name are committed and a charge's row never changes.
   * The INSERT and the read are each run again on a serialization failure or a deadlock, on
   * their own: the whole run again after the INSERT committed (the read failing) would find
   * the batch's own rows and answer each step as a replay of itself, a charge the service
   * would then not count against the payer's limit. Any other failure leaves the batch's
   * outcome unknown, as a lost COMMIT does, and the service handles that.
   */
  const commitCharges = async (steps: readonly MoneyStep[]): Promise<MoneyOutcome[]> => {
    const outcomes: MoneyOutcome[] = new Array(steps.length);
    const inserted = await retryTransaction(() => insertSteps(sql, steps));
    const { replays } = sortOutcomes(steps, inserted, outcomes);
    await retryTransaction(() => answerReplays(sql, steps, replays, outcomes));
    return outcomes;
  };

  // READ COMMITTED whatever the server's default, as the sweeps (settleOnce).
  const commitWithRewardsOnce = (steps: readonly MoneyStep[], now: number): Promise<MoneyOutcome[]> =>
    sql.begin('isolation level read committed', async (tx: PostgresTransaction) => {
      const outcomes: MoneyOutcome[] = new Array(steps.length);
      const { written, replays } = sortOutcomes(steps, await insertSteps(tx, steps), outcomes);
      const { ops, owners } = rewardOps(steps, written);
      const results = ops.length === 0 ? [] : await applyLedgerOps(tx, ops, now);
      const refusedSteps: { index: number; refused: string }[] = [];
      results.forEach((result, op) => {
        const refused = refusalOf(result);
        if (refused !== null) for (const index of owners[op] as number[]) refusedSteps.push({ index, refused });
      });
      if (refusedSteps.length > 0) {
        await tx.unsafe(
          `UPDATE stream_money AS m SET refused = u.refused FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(stream_id, seq, refused)
           WHERE m.stream_id = u.stream_id AND m.seq = u.seq`,
          [
            refusedSteps.map(({ index }) => (steps[index] as MoneyStep).streamId), refusedSteps.map(({ index }) => String((steps[index] as MoneyStep).seq)),
            refusedSteps.map(({ refused }) => refused),
          ] as never[],
        );
        for (const { index, refused } of refusedSteps) outcomes[index] = { kind: 'written', refused };
      }
      // Read last: a first step of this same batch answers as the ledger left it.
      await answerReplays(tx, steps, replays, outcomes);
      return outcomes;
    }) as Promise<MoneyOutcome[]>;

  /**
   * A sweep waits for the money commits in progress, and commits do not wait for its ledger work:
   * - FOR UPDATE on its streams, in id order, for the whole transaction: two sweeps of a stream
   *   run one after the other (and cannot deadlock), so a stream is settled from one settled
   *   seq once. Money commits lock no stream row.
   * - In a savepoint, the money commits' advisory lock, exclusive: it waits until every commit
   *   in progress has ended (at most BARRIER_WAIT_MS), and holds new ones off while the sum is
   *   read, in a snapshot of its own (READ COMMITTED whatever the server's default) that sees
   *   those commits. Then the savepoint is rolled back, which releases the lock: a commit that
   *   starts later holds only seqs above the ones summed (a stream's steps commit in seq order,
   *   one batch in flight per process, one process per stream), and goes on at once.
   */
  const settleOnce = (ids: readonly string[], now: number): Promise<number> =>
    sql.begin('isolation level read committed', async (tx: PostgresTransaction) => {
      await tx.unsafe('SELECT id FROM streams WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [[...ids]] as never[]);
      // Sent together (postgres.js pipelines a transaction's queries): the lock is held only
      // while the server reads the sum, never across a round trip to this process.
      // A commit left open by a lost client (its COMMIT never arrived) would hold its lock
      // until the server drops it: the sweep fails instead (logged, tried again), and does not
      // hold later commits behind it for longer than this. SET LOCAL ends with the savepoint.
      const [, , , unsettledRows] = await Promise.all([
        tx.unsafe('SAVEPOINT sweep_waits_for_commits'),
        tx.unsafe(`SET LOCAL lock_timeout = '${BARRIER_WAIT_MS}ms'`),
        tx.unsafe(`SELECT pg_advisory_xact_lock(${MONEY_COMMITS_LOCK})`),
        tx.unsafe(unsettledChargesSql('ids'), [[...ids]] as never[]),
        tx.unsafe('ROLLBACK TO SAVEPOINT sweep_waits_for_commits'),
      ]);
      const rows = unsettledRows as unknown as Row[];
      const unsettled = rows.map((row): UnsettledCharges => ({
        streamId: row.id as string, accountId: row.account_id as string, appId: row.app_id as string,
        fromSeq: Number(row.charges_settled_seq as bigint | number), toSeq: Number(row.to_seq as bigint | number), sumMsat: BigInt(row.sum as string | bigint),
      }));
      if (unsettled.length === 0) return 0;
      const moved = (await tx.unsafe(
        `UPDATE streams AS s SET charges_settled_seq = u.to_seq FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, to_seq, from_seq)
         WHERE s.id = u.id AND s.charges_settled_seq = u.from_seq RETURNING s.id`,
        [unsettled.map((u) => u.streamId), unsettled.map((u) => String(u.toSeq)), unsettled.map((u) => String(u.fromSeq))] as never[],
      )) as unknown as Row[];
      // The rows are locked: a settled seq that moved anyway is a bug, and nothing may be paid from it.
      if (moved.length !== unsettled.length) throw new Error('a stream\'s settled seq moved underneath its sweep');
      assertSettled(await applyLedgerOps(tx, unsettled.map(chargesSettlementOp), now));
      return unsettled.length;
    }) as Promise<number>;
  return {
    dialect: 'postgres',
    writesBeforeReturning: false,
    async settle(ids, now) {
      return ids.length === 0 ? 0 : retryTransaction(() => settleOnce(ids, now));
    },
    async listUnsettled(appId) {
      const rows = appId === undefined ? await sql.unsafe(unsettledChargesSql(null)) : await sql.unsafe(unsettledChargesSql('app'), [appId]);
      return (rows as unknown as Row[]).map((row) => row.id as string);
    },
    async unsettledMsat(streamId) {
      const [row] = (await sql.unsafe(unsettledChargesSql('ids'), [[streamId]] as never[])) as unknown as Row[];
      return row ? BigInt(row.sum as string | bigint) : 0n;
    },
    async commit(steps, now) {
      if (steps.length === 0) return [];
      return steps.some((step) => isReward(step.ref) && step.refused === undefined) ? retryTransaction(() => commitWithRewardsOnce(steps, now)) : commitCharges(steps);
    },
    async listBetween(streamId, afterSeq, toSeq, limit) {
      const rows = (await sql.unsafe(
        `SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
        [streamId, afterSeq, toSeq, limit],
      )) as unknown as Row[];
      return rows.map(moneyFromRow);
    },
    async findByRef(streamId, ref) {
      const [row] = (await sql.unsafe(`SELECT ${SELECT_COLUMNS} FROM stream_money WHERE stream_id = $1 AND ref = $2`, [streamId, ref])) as unknown as Row[];
      return row ? moneyFromRow(row) : null;
    },
    async maxSeq(streamId) {
      const [row] = (await sql.unsafe('SELECT MAX(seq) AS seq FROM stream_money WHERE stream_id = $1', [streamId])) as unknown as Row[];
      return row?.seq == null ? 0 : Number(row.seq as bigint | number);
    },
  };
}
