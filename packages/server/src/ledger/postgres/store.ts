/**
 * LedgerStore on PostgreSQL (`postgres` driver), safe with several Sluice processes
 * sharing one database.
 *
 * Concurrency: a batch takes its locks in one global order, each stage sorted, so two
 * processes can neither overdraw an account nor deadlock each other:
 *   1. a transaction-scoped advisory lock per idempotency key (64-bit hash of the key), so
 *      two processes cannot both decide that the same key is new;
 *   2. the referenced transfers, `FOR UPDATE`, ordered by id (a pending transfer cannot be
 *      posted twice);
 *   3. the accounts, `FOR UPDATE`, ordered by id (balances are read after the lock, so the
 *      limit check sees every committed debit).
 * Then the pure planner decides, and the writes go out as a few multi-row statements
 * (unnest). A batch costs about ten round trips whatever its size. The unique key on
 * idempotency records stays as a backstop: if it ever fires, `applyOps` retries the batch.
 *
 * Migrations are not run by the factory: call `migratePostgresLedger(sql)` once at startup.
 * Remember that the driver's queries are lazy: every one here is awaited.
 */
import type { Clock } from '../../clock.js';
import { systemClock } from '../../clock.js';
import { migratePostgres } from '../../db/migrate.js';
import type { PostgresSql, PostgresTransaction } from '../../db/postgres.js';
import { createTransferIdGenerator, type TransferIdGenerator } from '../ids.js';
import { assertValidAccountSpec, assertValidOp, needsOf, planOps, type IdempotencyRecord, type LedgerPlan } from '../planner.js';
import {
  ACCOUNT_COLUMNS,
  accountFromRow,
  publicAccount,
  publicTransfer,
  TRANSFER_COLUMNS,
  type AccountState,
  type TransferRecord,
  idempotencyFromRow,
  sameSpec,
  transferFromRow,
  type AccountRow,
  type IdempotencyRow,
  type TransferRow,
} from '../rows.js';
import type {
  AccountId,
  AccountSpec,
  CreateAccountResult,
  LedgerOp,
  LedgerResult,
  LedgerStore,
  TransferId,
} from '../store.js';
import { postgresLedgerMigrations } from './migrations.js';

/** Runs the ledger's migrations (module "ledger"); idempotent and safe across processes. */
export function migratePostgresLedger(sql: PostgresSql): Promise<void> {
  return migratePostgres(sql, postgresLedgerMigrations);
}

export interface ApplyOpsOptions {
  /** Where new transfer ids come from; default: a fresh time-ordered generator per call. */
  ids?: TransferIdGenerator;
}

/**
 * Applies `ops` inside the transaction the caller has already opened (`sql.begin(tx => ...)`),
 * so ledger ops and the caller's own rows commit or roll back together. Takes row locks on
 * the accounts and transfers it touches until the caller's transaction ends; keep that
 * transaction short. Refusals are results; a thrown error must abort the transaction.
 *
 * @example
 * await sql.begin(async (tx) => {
 *   const [hold] = await applyOpsInTransaction(tx, [{ kind: 'transfer', pending: true, ... }], clock.now());
 *   if (hold?.ok) await tx`INSERT INTO payments ... ${hold.transfer.id} ...`;
 * });
 */
export async function applyOpsInTransaction(
  tx: PostgresTransaction,
  ops: readonly LedgerOp[],
  now: number,
  options: ApplyOpsOptions = {},
): Promise<LedgerResult[]> {
  if (!Number.isSafeInteger(now) || now < 0) throw new RangeError(`bad timestamp ${now}`);
  if (ops.length === 0) return [];
  // Malformed ops are caller bugs: refuse the whole call before reading anything.
  for (const op of ops) assertValidOp(op);
  const ids = options.ids ?? createTransferIdGenerator();
  const needs = needsOf(ops);

  // Stage 1: idempotency keys.
  const keys = new Map<string, IdempotencyRecord | null>();
  if (needs.keys.size > 0) {
    const keyList = [...needs.keys];
    await tx`SELECT pg_advisory_xact_lock(h) FROM (
               SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(${keyList}::text[]) AS k ORDER BY h) AS locks`;
    for (const key of keyList) keys.set(key, null);
    const rows = await tx<IdempotencyRow[]>`
      SELECT key, fingerprint, transfer_id, error, created_at FROM ledger_idempotency WHERE key = ANY(${keyList}::text[])`;
    for (const row of rows) keys.set(row.key, idempotencyFromRow(row));
  }

  // Stage 2: transfers named by post/void ops or by replayed keys.
  const transferIds = new Set(needs.pendingIds);
  for (const record of keys.values()) if (record?.transferId) transferIds.add(record.transferId);
  const transfers = new Map<TransferId, TransferRecord | null>();
  if (transferIds.size > 0) {
    const idList = [...transferIds];
    for (const id of idList) transfers.set(id, null);
    const rows = await tx<TransferRow[]>`
      SELECT ${tx.unsafe(TRANSFER_SELECT)}
      FROM ledger_transfers WHERE id = ANY(${idList}::text[]) ORDER BY id FOR UPDATE`;
    for (const row of rows) transfers.set(row.id, transferFromRow(row));
  }

  // Stage 3: accounts named by transfer ops or by the transfers above.
  const accountIds = new Set(needs.accountIds);
  for (const transfer of transfers.values()) {
    if (transfer) {
      accountIds.add(transfer.debitAccountId);
      accountIds.add(transfer.creditAccountId);
    }
  }
  const accounts = new Map<AccountId, AccountState | null>();
  if (accountIds.size > 0) {
    const idList = [...accountIds];
    for (const id of idList) accounts.set(id, null);
    const rows = await tx<AccountRow[]>`
      SELECT ${tx.unsafe(ACCOUNT_SELECT)}
      FROM ledger_accounts WHERE id = ANY(${idList}::text[]) ORDER BY id FOR UPDATE`;
    for (const row of rows) accounts.set(row.id, accountFromRow(row));
  }

  const lookup = <K, V>(map: Map<K, V | null>, key: K, what: string): V | null => {
    const value = map.get(key);
    if (value === undefined) throw new Error(`${what} ${String(key)} was not loaded before planning`);
    return value;
  };
  const plan = planOps(
    ops,
    {
      account: (id) => lookup(accounts, id, 'account'),
      transfer: (id) => lookup(transfers, id, 'transfer'),
      idempotency: (key) => lookup(keys, key, 'idempotency key'),
    },
    now,
    () => ids.next(now),
  );
  await writePlan(tx, plan);
  return plan.results;
}

const text = (value: bigint | number | null): string | null => (value === null ? null : value.toString());

async function writePlan(tx: PostgresTransaction, plan: LedgerPlan): Promise<void> {
  const inserts = plan.insertTransfers;
  if (inserts.length > 0) {
    await tx`
      INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_msat, state, code, reference,
                                    idempotency_key, created_at, resolved_at, debit_previous_id, credit_previous_id)
      SELECT * FROM unnest(
        ${inserts.map((t) => t.id)}::text[], ${inserts.map((t) => t.debitAccountId)}::text[],
        ${inserts.map((t) => t.creditAccountId)}::text[], ${inserts.map((t) => text(t.amountMsat))}::int8[],
        ${inserts.map((t) => t.state)}::text[], ${inserts.map((t) => t.code)}::text[],
        ${inserts.map((t) => t.reference)}::text[], ${inserts.map((t) => t.idempotencyKey)}::text[],
        ${inserts.map((t) => text(t.createdAt))}::int8[], ${inserts.map((t) => text(t.resolvedAt))}::int8[],
        ${inserts.map((t) => t.debitPreviousId)}::text[], ${inserts.map((t) => t.creditPreviousId)}::text[])`;
  }
  const updates = plan.updateTransfers;
  if (updates.length > 0) {
    const changed = await tx`
      UPDATE ledger_transfers AS t SET state = u.state, amount_msat = u.amount_msat, resolved_at = u.resolved_at
      FROM unnest(${updates.map((t) => t.id)}::text[], ${updates.map((t) => t.state)}::text[],
                  ${updates.map((t) => text(t.amountMsat))}::int8[], ${updates.map((t) => text(t.resolvedAt))}::int8[])
           AS u(id, state, amount_msat, resolved_at)
      WHERE t.id = u.id AND t.state = 'pending'`;
    if (changed.count !== updates.length) throw new Error(`resolved ${changed.count} of ${updates.length} pending transfers`);
  }
  const records = plan.insertIdempotency;
  if (records.length > 0) {
    const inserted = await tx`
      INSERT INTO ledger_idempotency (key, fingerprint, transfer_id, error, created_at)
      SELECT * FROM unnest(${records.map((r) => r.key)}::text[], ${records.map((r) => r.fingerprint)}::text[],
                           ${records.map((r) => r.transferId)}::text[], ${records.map((r) => r.error)}::text[],
                           ${records.map((r) => text(r.createdAt))}::int8[])
      ON CONFLICT (key) DO NOTHING`;
    // The advisory locks make this impossible between Sluice processes; if something else
    // wrote a key, the batch was planned on a stale view and must not commit.
    if (inserted.count !== records.length) throw new IdempotencyRaceError();
  }
  const accounts = plan.updateAccounts;
  if (accounts.length > 0) {
    const changed = await tx`
      UPDATE ledger_accounts AS a SET debits_pending_msat = u.dp, debits_posted_msat = u.dpo,
                                      credits_pending_msat = u.cp, credits_posted_msat = u.cpo,
                                      last_transfer_id = u.last
      FROM unnest(${accounts.map((a) => a.id)}::text[], ${accounts.map((a) => text(a.debitsPendingMsat))}::int8[],
                  ${accounts.map((a) => text(a.debitsPostedMsat))}::int8[],
                  ${accounts.map((a) => text(a.creditsPendingMsat))}::int8[],
                  ${accounts.map((a) => text(a.creditsPostedMsat))}::int8[],
                  ${accounts.map((a) => a.lastTransferId)}::text[]) AS u(id, dp, dpo, cp, cpo, last)
      WHERE a.id = u.id`;
    if (changed.count !== accounts.length) throw new Error(`updated ${changed.count} of ${accounts.length} accounts`);
  }
}

/** An idempotency key appeared between planning and writing; the batch is retried. */
export class IdempotencyRaceError extends Error {
  constructor() {
    super('an idempotency key of this batch was written concurrently');
    this.name = 'IdempotencyRaceError';
  }
}

/**
 * Creates an account inside the caller's open transaction. The same spec again returns the
 * existing account (created: false); another spec under the same id is AccountExists.
 */
export async function createAccountInTransaction(
  tx: PostgresTransaction,
  spec: AccountSpec,
  now: number,
): Promise<CreateAccountResult> {
  assertValidAccountSpec(spec);
  const inserted = await tx<AccountRow[]>`
    INSERT INTO ledger_accounts (id, owner_id, code, limit_msat, created_at)
    VALUES (${spec.id}, ${spec.ownerId}, ${spec.code}, ${text(spec.limitMsat)}::int8, ${now})
    ON CONFLICT (id) DO NOTHING
    RETURNING ${tx.unsafe(ACCOUNT_SELECT)}`;
  const created = inserted[0];
  if (created) return { ok: true, account: publicAccount(accountFromRow(created)), created: true };
  const rows = await tx<AccountRow[]>`SELECT ${tx.unsafe(ACCOUNT_SELECT)} FROM ledger_accounts WHERE id = ${spec.id}`;
  const row = rows[0];
  if (!row) throw new Error(`account ${spec.id} neither inserted nor found`);
  const account = publicAccount(accountFromRow(row));
  return sameSpec(account, spec) ? { ok: true, account, created: false } : { ok: false, error: 'AccountExists' };
}

const ACCOUNT_SELECT = ACCOUNT_COLUMNS;
const TRANSFER_SELECT = TRANSFER_COLUMNS;

/** PostgreSQL errors after which the whole batch may simply be tried again. */
const RETRYABLE_CODES = new Set(['40001', '40P01', '23505']);
export const MAX_BATCH_ATTEMPTS = 5;

function isRetryable(error: unknown): boolean {
  if (error instanceof IdempotencyRaceError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE_CODES.has(code);
}

export interface PostgresLedgerStoreOptions {
  clock?: Clock;
  ids?: TransferIdGenerator;
}

export const MAX_LIST_LIMIT = 1000;

export function createPostgresLedgerStore(sql: PostgresSql, options: PostgresLedgerStoreOptions = {}): LedgerStore {
  const clock = options.clock ?? systemClock;
  const ids = options.ids ?? createTransferIdGenerator();

  return {
    dialect: 'postgres',
    async createAccount(spec) {
      const now = clock.now();
      return (await sql.begin((tx) => createAccountInTransaction(tx, spec, now))) as CreateAccountResult;
    },
    async getAccount(id) {
      const rows = await sql<AccountRow[]>`SELECT ${sql.unsafe(ACCOUNT_SELECT)} FROM ledger_accounts WHERE id = ${id}`;
      return rows[0] ? publicAccount(accountFromRow(rows[0])) : null;
    },
    async listAccounts(ownerId) {
      const rows = await sql<AccountRow[]>`
        SELECT ${sql.unsafe(ACCOUNT_SELECT)} FROM ledger_accounts WHERE owner_id = ${ownerId} ORDER BY id`;
      return rows.map((row) => publicAccount(accountFromRow(row)));
    },
    async applyOps(ops) {
      if (ops.length === 0) return [];
      for (let attempt = 1; ; attempt++) {
        try {
          const now = clock.now();
          return (await sql.begin((tx) => applyOpsInTransaction(tx, ops, now, { ids }))) as LedgerResult[];
        } catch (error) {
          if (!isRetryable(error) || attempt >= MAX_BATCH_ATTEMPTS) throw error;
        }
      }
    },
    async getTransfer(id) {
      const rows = await sql<TransferRow[]>`SELECT ${sql.unsafe(TRANSFER_SELECT)} FROM ledger_transfers WHERE id = ${id}`;
      return rows[0] ? publicTransfer(transferFromRow(rows[0])) : null;
    },
    async listTransfers(query) {
      if (!Number.isSafeInteger(query.limit) || query.limit < 1 || query.limit > MAX_LIST_LIMIT) {
        throw new RangeError(`list limit must be 1..${MAX_LIST_LIMIT}, got ${query.limit}`);
      }
      const account = query.accountId;
      // The newest transfer of the account, or the one before `beforeId` in its chain.
      const start =
        query.beforeId === undefined
          ? sql`SELECT last_transfer_id FROM ledger_accounts WHERE id = ${account}`
          : sql`SELECT CASE WHEN debit_account_id = ${account} THEN debit_previous_id
                            WHEN credit_account_id = ${account} THEN credit_previous_id END
                FROM ledger_transfers WHERE id = ${query.beforeId}`;
      const rows = await sql<TransferRow[]>`
        WITH RECURSIVE chain (id, depth) AS (
          SELECT (${start}), 1
          UNION ALL
          SELECT CASE WHEN t.debit_account_id = ${account} THEN t.debit_previous_id ELSE t.credit_previous_id END,
                 chain.depth + 1
          FROM chain JOIN ledger_transfers AS t ON t.id = chain.id
          WHERE chain.depth < ${query.limit}
        )
        SELECT ${sql.unsafe(TRANSFER_SELECT.split(', ').map((c) => `t.${c}`).join(', '))}
        FROM chain JOIN ledger_transfers AS t ON t.id = chain.id
        ORDER BY chain.depth`;
      return rows.map((row) => publicTransfer(transferFromRow(row)));
    },
    async sumOfBalances() {
      const rows = await sql<{ sum: string }[]>`
        SELECT COALESCE(SUM(credits_posted_msat::numeric - debits_posted_msat), 0)::text AS sum FROM ledger_accounts`;
      return BigInt(rows[0]?.sum ?? '0');
    },
  };
}
