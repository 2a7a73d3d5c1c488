// How streams keep their money steps (docs/adr/0017-stream-money-rows-settled-in-sweeps.md):
// a stream opened now keeps compact rows, and its charges reach the app in sweeps, exactly
// once; a stream opened before the rows existed keeps one ledger transfer per step for the
// rest of its life, so a retry of a step made before the upgrade still finds its first answer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { balanceOf } from '../../src/ledger/store.js';
import { streamAccountId } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('stream money steps: rows and sweeps, and streams from before the rows', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-money-rows-'));
  let t: TestSluice | null = null;
  const restart = async (): Promise<TestSluice> => {
    await t?.close();
    t = await startTestSluice({ dataDir, env: { SLUICE_STREAM_SETTLE_INTERVAL_MS: '60000' } });
    return t;
  };
  afterAll(async () => {
    await t?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const ledgerBalance = async (s: TestSluice, accountId: string): Promise<bigint> => balanceOf((await s.sluice.ledger.getAccount(accountId))!);

  it('keeps a new stream\'s charges as rows, pays the app in a sweep, once, and a restart sweeps what was left', async () => {
    let s = await restart();
    const app = await s.createApp();
    const created = await s.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '50000' } });
    const id = created.body.id as string;
    for (let i = 0; i < 5; i += 1) expect((await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', ref: `h${i}` } })).status).toBe(200);
    // Acknowledged and on the stream at once; the ledger's stream account waits for the sweep (a 60 s interval here).
    expect((await s.call('GET', `/v1/streams/${id}`, { key: app.apiKey })).body.balance_msat).toBe('-5000');
    expect(await ledgerBalance(s, streamAccountId(id))).toBe(0n);
    // A charge past the payer's limit is refused from memory, and its ref answers the same refusal later.
    const big = await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { amount_msat: '45001', ref: 'big' } });
    expect(big.body.error.code).toBe('stream_limit_exceeded');
    // A restart before any sweep: the start sweeps, the app is paid exactly once.
    s = await restart();
    expect(await ledgerBalance(s, streamAccountId(id))).toBe(-5000n);
    expect(await ledgerBalance(s, `app:${app.id}`)).toBe(5000n);
    const again = await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', ref: 'h2' } });
    expect(again.body).toMatchObject({ replayed: true, amount_msat: '1000' });
    expect((await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { amount_msat: '45001', ref: 'big' } })).body.error.code).toBe('stream_limit_exceeded');
    // The app's HTTP balance sweeps first: it holds a charge made a moment ago.
    expect((await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', ref: 'h5' } })).status).toBe(200);
    expect((await s.call('GET', '/v1/balance', { key: app.apiKey })).body.balance_msat).toBe('6000');
    expect(await ledgerBalance(s, streamAccountId(id))).toBe(-6000n);
    // Every charge, once, in the stream's history.
    const events = (await s.call('GET', `/v1/streams/${id}/events`, { key: app.apiKey })).body.events.filter((e: { type: string }) => e.type === 'charged');
    expect(events).toHaveLength(6);
    expect(await s.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('keeps one ledger transfer per step for a stream opened before the rows, across restarts', async () => {
    let s = await restart();
    const app = await s.createApp();
    const created = await s.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1000' }, maximum_msat: '50000' } });
    const id = created.body.id as string;
    // As a stream opened by the previous version (migration 4 sets money_rows 0 on every existing stream).
    await s.close();
    t = null;
    const db = openSqlite({ path: path.join(dataDir, 'sluice.sqlite') });
    db.prepare('UPDATE streams SET money_rows = 0 WHERE id = ?').run(id);
    db.close();
    s = await restart();
    const first = await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', count: 3, ref: 'old-1' } });
    expect(first.status).toBe(200);
    // Moved at once, by a transfer of its own, under the ledger's idempotency key.
    expect(await ledgerBalance(s, streamAccountId(id))).toBe(-3000n);
    const transfers = await s.sluice.ledger.listTransfers({ accountId: streamAccountId(id), limit: 10 });
    expect(transfers.map((transfer) => transfer.code)).toEqual(['charge:hit']);
    s = await restart();
    const replay = await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', count: 3, ref: 'old-1' } });
    expect(replay.body).toMatchObject({ replayed: true, seq: first.body.seq });
    expect((await s.call('POST', `/v1/streams/${id}/charge`, { key: app.apiKey, body: { event: 'hit', ref: 'old-2' } })).body.seq).toBeGreaterThan(first.body.seq);
    expect(await ledgerBalance(s, streamAccountId(id))).toBe(-4000n);
    const events = (await s.call('GET', `/v1/streams/${id}/events`, { key: app.apiKey })).body.events.filter((e: { type: string }) => e.type === 'charged');
    expect(events.map((e: { amount_msat: string }) => e.amount_msat)).toEqual(['3000', '1000']);
    const rows = openSqlite({ path: path.join(dataDir, 'sluice.sqlite') });
    try {
      const count = (table: string) => Number((rows.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE stream_id = ?`).get(id) as { n: bigint }).n);
      expect(count('stream_money') + count('stream_money_recent')).toBe(0);
    } finally {
      rows.close();
    }
  });
});
