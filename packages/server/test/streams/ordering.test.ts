// Subscribers see a stream's events strictly in seq order, even when a later event (a
// pause) is ready before an earlier one (a charge still waiting for its group commit), and
// seqs taken by refused or replayed steps never block the ones after them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { msat } from '../../src/money/msat.js';
import type { StreamEvent } from '../../src/streams/model.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('stream event order', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
  });
  afterAll(async () => t?.close());

  it('delivers in seq order with no gaps among delivered events', async () => {
    const app = await t.createApp();
    const created = await t.call('POST', '/v1/streams', { key: app.apiKey, body: { prices: { hit: '10' }, rate_msat_per_s: '1', maximum_msat: '1000', max_charge_msat: '1000' } });
    const streamId = created.body.id as string;
    const seen: StreamEvent[] = [];
    const unsubscribe = t.sluice.streams.subscribe(streamId, (event) => seen.push(event));
    await t.sluice.streams.meter(streamId, 'start', 'app');
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i += 1) {
      work.push(t.sluice.streams.charge(streamId, { event: 'hit', ref: `h${i}` }));
      if (i % 50 === 25) work.push(t.sluice.streams.meter(streamId, 'pause', 'payer'), t.sluice.streams.meter(streamId, 'resume', 'payer'));
      if (i % 40 === 10) work.push(t.sluice.streams.charge(streamId, { event: 'hit', ref: 'h0' })); // replay
      if (i % 60 === 30) work.push(t.sluice.streams.charge(streamId, { amountMsat: msat(2000n), ref: `big${i}` })); // refused: past the limit
    }
    await Promise.all(work);
    await new Promise((resolve) => setTimeout(resolve, 20));
    unsubscribe();
    const seqs = seen.map((event) => event.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seen.filter((event) => event.type === 'charged')).toHaveLength(100);
    // Everything delivered is also what a resume from seq 0 returns.
    const history = await t.sluice.streams.eventsAfter(streamId, 0);
    const delivered = new Set(seqs);
    expect(history.filter((event) => delivered.has(event.seq)).map((event) => event.seq)).toEqual(seqs);
  });
});
