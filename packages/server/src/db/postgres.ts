/**
 * Connects to PostgreSQL with the `postgres` driver.
 *
 * int8 columns are read back as bigint (the driver's default would be a string), so
 * amounts never pass through a lossy number. Remember that queries are lazy: a query
 * that is not awaited never runs.
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
    types: { bigint: postgres.BigInt },
  }) as unknown as PostgresSql;
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
