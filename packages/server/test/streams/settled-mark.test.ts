// A closed stream is marked settled at start (sweepClosedStreams) only when nothing is left
// on it: its balance at zero or below AND its charges swept. An app's balance read on
// PostgreSQL passes marked streams by (money-store.ts MAY_HOLD_CHARGES), so a stream marked
// while a failed sweep left its charges unswept would keep them out of that read. Before the
// fix the mark looked at the balance only (the charges made it negative, so it was kept).
// Found by the session's review.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('the settled mark of a closed stream', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());

  const settledAt = (streamId: string): number | null => {
    const db = openSqlite({ path: path.join(t.dataDir, 'sluice.sqlite') });
    try {
      const row = db.prepare('SELECT settled_at FROM streams WHERE id = ?').get(streamId) as { settled_at: number | bigint | null };
      return row.settled_at === null ? null : Number(row.settled_at);
    } finally {
      db.close();
    }
  };

  it('is not kept while the closed stream still holds charges a failed sweep left, and is set once they are swept', async () => {
    const app = await t.createApp();
    const asApp = (method: string, url: string, body?: unknown) => t.call(method, url, { key: app.apiKey, ...(body === undefined ? {} : { body }) });
    // Postpaid: the charges put the payer in debt, so the closed stream has nothing to pay back.
    const created = await asApp('POST', '/v1/streams', { prices: { hit: '1000' }, maximum_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const streamId = created.body.id as string;

    // Every sweep fails from here on (a database error, PostgreSQL's lock timeout).
    const money = t.sluice.streamMoney.store;
    const settle = money.settle.bind(money);
    money.settle = async () => {
      throw new Error('the sweep fails (test)');
    };
    for (const ref of ['a', 'b', 'c']) expect((await asApp('POST', `/v1/streams/${streamId}/charge`, { event: 'hit', ref })).status).toBe(200);
    expect((await asApp('POST', `/v1/streams/${streamId}/close`)).status).toBe(200);
    expect(await money.unsettledMsat(streamId)).toBe(3000n);

    // The start's sweep of closed streams looks at it with the charges still unswept.
    await t.sluice.streams.stop();
    await t.sluice.streams.start();
    expect(settledAt(streamId)).toBeNull();

    // Once the sweep works again, the next start sweeps the charges and marks the stream.
    money.settle = settle;
    await t.sluice.streams.stop();
    expect(await money.unsettledMsat(streamId)).toBe(0n);
    await t.sluice.streams.start();
    expect(settledAt(streamId)).not.toBeNull();
  });
});
