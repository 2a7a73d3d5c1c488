// Resume pages: what eventsAfter answers for a stream with more money events than one page
// (10,000), in memory and after a restart, and across a run of seqs with no event at all
// (replayed refs), which must not read as "nothing more".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../src/streams/model.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

const PAGE = 10_000;

/** Every delivered event after `afterSeq`, paged the way the WebSocket resume pages. */
async function allEventsAfter(t: TestSluice, streamId: string, afterSeq: number): Promise<StreamEvent[]> {
  const all: StreamEvent[] = [];
  let cursor = afterSeq;
  for (;;) {
    const page = await t.sluice.streams.eventsAfter(streamId, cursor);
    if (page.length === 0) return all;
    expect(page.length).toBeLessThanOrEqual(PAGE);
    expect(page[0]!.seq).toBeGreaterThan(cursor);
    all.push(...page);
    cursor = page[page.length - 1]!.seq;
  }
}

describe('stream resume pages', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-resume-'));
  let t: TestSluice;
  afterAll(async () => t?.close());

  it('pages through more than one page of money events, before and after a restart, with no gap', async () => {
    t = await startTestSluice({ dataDir });
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '1' }, maximum_msat: '100000000', max_charge_msat: '1000' } });
    const streamId = created.body.id as string;
    const charges = PAGE + 2500;
    for (let first = 0; first < charges; first += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, i) => t.sluice.streams.charge(streamId, { event: 'hit', ref: `h${first + i}` })));
    }
    // A long run of replays: seqs taken, no event recorded.
    for (let first = 0; first < PAGE + 100; first += 500) {
      await Promise.all(Array.from({ length: 500 }, () => t.sluice.streams.charge(streamId, { event: 'hit', ref: 'h0' })));
    }
    const last = await t.sluice.streams.charge(streamId, { event: 'hit', ref: 'after-the-replays' });
    expect(last.ok && !last.replayed).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 20));

    const check = async (): Promise<void> => {
      const events = await allEventsAfter(t, streamId, 0);
      const charged = events.filter((event) => event.type === 'charged');
      expect(charged).toHaveLength(charges + 1);
      const seqs = events.map((event) => event.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(seqs.at(-1)).toBe(last.ok ? last.seq : -1);
      // From the middle, across the replays: the last charge is still found.
      const tail = await allEventsAfter(t, streamId, charged[charges - 1]!.seq);
      expect(tail.map((event) => event.seq)).toEqual([last.ok ? last.seq : -1]);
    };
    await check();
    await t.close();
    t = await startTestSluice({ dataDir });
    await check();
    // After the restart the seq goes on from where it was.
    const next = await t.sluice.streams.charge(streamId, { event: 'hit', ref: 'after-restart' });
    expect(next.ok && last.ok && next.seq).toBeGreaterThan(last.ok ? last.seq : Infinity);
  }, 120_000);
});
