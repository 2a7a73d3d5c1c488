// PostgreSQL: a batch of charges is one INSERT committed on its own, and its replays are read
// after it (money-store.ts commitCharges). A serialization failure or a deadlock is retried
// for each of the two on its own: retried together after the INSERT committed, the batch would
// find its own rows and answer each new charge as a replay of itself (the service would then
// not count it against the payer's limit). Found by the session's review, failing before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../src/money/msat.js';
import type { PostgresSql } from '../../src/db/postgres.js';
import { createPostgresStreamMoneyStore, type MoneyStep } from '../../src/streams/money-store.js';
import { createPostgresStreamStore } from '../../src/streams/store.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

describe.skipIf(!usePostgres)('a charges-only money commit on PostgreSQL, retried', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_money_commit_retry');
    await createPostgresStreamStore(database.sql);
  });
  afterAll(async () => {
    await database?.drop();
  });

  /** The database, with the next statement containing `marker` failing once with `code` before it reaches the server. */
  function failingOnce(marker: string, code: string): { sql: PostgresSql; arm: () => void; fired: () => boolean } {
    let armed = false;
    let fired = false;
    const sql = new Proxy(database.sql, {
      get(target, property) {
        if (property === 'unsafe') {
          return (text: string, ...rest: unknown[]) => {
            if (armed && text.includes(marker)) {
              armed = false;
              fired = true;
              return Promise.reject(Object.assign(new Error(`simulated (${code})`), { code }));
            }
            return (target.unsafe as (...args: unknown[]) => unknown)(text, ...rest);
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    return { sql, arm: () => (armed = true), fired: () => fired };
  }

  const noLedger = (async () => {
    throw new Error('charges move no money in the commit');
  }) as never;
  const step = (streamId: string, seq: number, ref: string): MoneyStep => ({
    streamId, accountId: `stream:${streamId}`, appId: 'app', seq, ref, name: 'hit', amountMsat: msat(1000n), at: 1,
  });

  for (const [what, marker, code] of [
    ['the replays\' read fails with a deadlock', 'JOIN unnest($1::text[], $2::text[]) AS k', '40P01'],
    ['the INSERT fails with a serialization failure', 'INSERT INTO stream_money', '40001'],
  ] as const) {
    it(`answers a new charge as written and a replay as its first step when ${what} once`, async () => {
      const streamId = `st_retry_${code}`;
      const { sql, arm, fired } = failingOnce(marker, code);
      const store = createPostgresStreamMoneyStore(sql, noLedger);
      expect(await store.commit([step(streamId, 1, 'c:old')], 1)).toEqual([{ kind: 'written', refused: null }]);
      arm();
      const outcomes = await store.commit([step(streamId, 2, 'c:new'), step(streamId, 3, 'c:old')], 2);
      expect(fired()).toBe(true);
      expect(outcomes[0]).toEqual({ kind: 'written', refused: null });
      expect(outcomes[1]).toMatchObject({ kind: 'replay', first: { seq: 1, ref: 'c:old' } });
      expect(await store.listBetween(streamId, 0, 10, 10)).toEqual([expect.objectContaining({ seq: 1, ref: 'c:old' }), expect.objectContaining({ seq: 2, ref: 'c:new' })]);
    });
  }
});
