/**
 * PostgreSQL for tests: the machine's real server, a fresh database per suite.
 *
 * SLUICE_TEST_DATABASE_URL points at an admin database (default: the local `test`
 * database). When PostgreSQL does not answer, suites are skipped with a plain message,
 * unless SLUICE_TEST_POSTGRES=required (as in CI), where that is a failure.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { connectPostgres, type PostgresSql } from '../../src/db/postgres.js';

export const adminUrl = process.env.SLUICE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const postgresRequired = process.env.SLUICE_TEST_POSTGRES === 'required';

let availability: Promise<boolean> | undefined;

/** Whether the test PostgreSQL answers; throws when it is required and does not. */
export function postgresAvailable(): Promise<boolean> {
  availability ??= (async () => {
    const sql = postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      return true;
    } catch (error) {
      if (postgresRequired) throw new Error(`PostgreSQL is required but does not answer at ${adminUrl}: ${String(error)}`);
      console.warn(`PostgreSQL does not answer at ${adminUrl}; skipping PostgreSQL suites (${String(error)})`);
      return false;
    } finally {
      await sql.end({ timeout: 1 });
    }
  })();
  return availability;
}

export interface TestDatabase {
  url: string;
  sql: PostgresSql;
  /** Closes the connection and drops the database. */
  drop(): Promise<void>;
}

/** Creates an empty database with a random name and connects to it. */
export async function createTestDatabase(prefix = 'sluice_test'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = connectPostgres({ url: url.toString() });
  return {
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const dropper = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await dropper.end();
    },
  };
}
