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
