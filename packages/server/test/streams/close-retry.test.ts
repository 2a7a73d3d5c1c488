// A close that fails (its save to the stream store throws) is not the stream's close for
// good: the stream refuses charges from then on, and the next close, or the clock, saves it.
// Before the fix the failed close stayed the stream's `closing` promise: every later close
// was refused (stream_closed, in memory) while the store still said open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { openSqlite } from '../../src/db/sqlite.js';
import { createLogger } from '../../src/logger.js';
import { msat } from '../../src/money/msat.js';
import type { StreamStore } from '../../src/streams/store.js';
import { createSqliteStreamStore } from '../../src/streams/store.js';
import { createStreamService, type StreamService } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('a close whose save fails', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let store: StreamStore;
  let streams: StreamService;
  let failCloses = 0;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
    const inner = createSqliteStreamStore(openSqlite({ path: ':memory:' }));
    // The store refuses the next `failCloses` saves of a closed event, as a full disk would.
    store = {
      ...inner,
      async saveWithEvent(row, event) {
        if (event?.type === 'closed' && failCloses > 0) {
          failCloses -= 1;
          throw new Error('disk full');
        }
        await inner.saveWithEvent(row, event);
      },
    };
    const { ledger, invoices, payments } = t.sluice;
    streams = createStreamService({ store, ledger, invoices, payments, clock, logger: createLogger('silent') });
  });
  afterAll(async () => {
    await streams?.stop();
    await t?.close();
  });

  /** A postpaid stream charged once, with a listener (an open WebSocket would be one) keeping it in memory. */
  const chargedStream = async (): Promise<{ id: string; events: string[] }> => {
    const app = await t.createApp();
    const created = await streams.create(app.id, {
      prices: { hit: msat(1000n) }, rateMsatPerS: msat(0n), maximumMsat: msat(1_000_000n), settleThresholdMsat: msat(0n), settleToMsat: msat(0n),
      maxChargeMsat: msat(100_000n), payoutThresholdMsat: msat(0n), expiresAt: null, payoutDestination: null, metadata: '',
    });
    if (!created.ok) throw new Error(created.error);
    const id = created.stream.id;
    const events: string[] = [];
    streams.subscribe(id, (event) => events.push(event.type));
    expect((await streams.charge(id, { event: 'hit', ref: 'c1' })).ok).toBe(true);
    return { id, events };
  };

  it('tries a failed close again at the next close', async () => {
    const { id, events } = await chargedStream();
    failCloses = 1;
    await expect(streams.close(id, 'payer')).rejects.toThrow('disk full');
    // Closed in memory: nothing more is charged.
    expect(await streams.charge(id, { event: 'hit', ref: 'c2' })).toEqual({ ok: false, error: 'StreamClosed' });
    expect((await store.getStream(id))?.status).toBe('open');
    const closed = await streams.close(id, 'app');
    expect(closed.ok).toBe(true);
    expect((await store.getStream(id))?.status).toBe('closed');
    expect(events.filter((type) => type === 'closed')).toHaveLength(1);
    expect(await streams.close(id, 'app')).toEqual({ ok: false, error: 'StreamClosed' });
  });

  it("saves a failed close at the clock's next tick", async () => {
    const { id, events } = await chargedStream();
    failCloses = 1;
    await expect(streams.close(id, 'payer')).rejects.toThrow('disk full');
    await streams.tick();
    expect((await store.getStream(id))?.status).toBe('closed');
    expect(events.filter((type) => type === 'closed')).toHaveLength(1);
  });
});
