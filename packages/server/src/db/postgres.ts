/**
 * Connects to PostgreSQL with the `postgres` driver.
 *
 * int8 columns are read back as bigint (the driver's default would be a string), so
 * amounts never pass through a lossy number. Remember that queries are lazy: a query
 * that is not awaited never runs.
 *
 * Every connection runs its transactions at READ COMMITTED, whatever the database's or the
 * role's `default_transaction_isolation` says (a startup parameter outranks both). Why:
 * Sluice's PostgreSQL code is written for it. Its transactions lock what they change
 * (`FOR UPDATE`, conditional UPDATEs, advisory locks) and rely on a statement that waited for
 * a lock seeing the row as its holder committed it. Under REPEATABLE READ or SERIALIZABLE
 * the same statement fails with a serialization error (40001) instead, and most of those
 * paths do not retry: with either default, paying an invoice answered 500 when a concurrent
 * transaction touched the same account (test/db/postgres-isolation.test.ts).
 */
import postgres from 'postgres';

export type PostgresSql = postgres.Sql<{ bigint: bigint }>;
export type PostgresTransaction = postgres.TransactionSql<{ bigint: bigint }>;

export interface ConnectPostgresOptions {
  url: string;
  maxConnections?: number;
}

export function connectPostgres(options: ConnectPostgresOptions): PostgresSql {
  return postgres(options.url, {
    max: options.maxConnections ?? 10,
    onnotice: () => {},
    connection: { default_transaction_isolation: 'read committed' },
    types: { bigint: postgres.BigInt },
  }) as unknown as PostgresSql;
}

/**
 * Refuses to go on unless a session of `sql` runs its transactions at READ COMMITTED. The
 * startup parameter above sets it, but two things can undo it: the same parameter in the
 * connection URL's query string (postgres.js applies the URL's parameters after its options),
 * and a connection pooler in between that drops startup parameters (PgBouncer refuses unknown
 * ones, or ignores them with `ignore_startup_parameters`).
 */
export async function assertReadCommitted(sql: PostgresSql): Promise<void> {
  const [row] = await sql`SHOW transaction_isolation`;
  const level = String(row?.transaction_isolation);
  if (level !== 'read committed') {
    throw new Error(`PostgreSQL runs this connection's transactions at ${level.toUpperCase()}, and Sluice needs READ COMMITTED (its locking is written for it): `
      + 'remove default_transaction_isolation from SLUICE_DATABASE_URL, or let a pooler between Sluice and PostgreSQL pass that startup parameter on');
  }
}

/** Serialization failures and deadlocks: a transaction that failed with one may simply be run again. */
const RETRYABLE_CODES = new Set(['40001', '40P01']);

/**
 * Runs `work` (one whole transaction) again after a serialization failure or a deadlock, at
 * most `attempts` times; any other error (or one `final` says is final) is thrown at once.
 */
export async function retryTransaction<T>(work: () => Promise<T>, options: { attempts?: number; final?: (error: unknown) => boolean } = {}): Promise<T> {
  const attempts = options.attempts ?? 5;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (options.final?.(error) || typeof code !== 'string' || !RETRYABLE_CODES.has(code) || attempt >= attempts) throw error;
    }
  }
}
