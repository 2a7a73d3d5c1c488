// The settler's sweeps (settler.ts) over a store that records what it is asked: ids go to the
// store in id order, in transactions of at most maxBatch, whatever order they were noted in;
// a batch that fails is retried id by id, and what still fails stays due for the next sweep.
import { describe, expect, it } from 'vitest';
import { createChainSettler } from '../../../src/paycall/chain/settler.js';
import { systemClock } from '../../../src/clock.js';
import { createLogger } from '../../../src/logger.js';

function recordingStore(failing: ReadonlySet<string> = new Set()) {
  const batches: string[][] = [];
  /** performance.now() as each batch reached the store. */
  const times: number[] = [];
  return {
    batches,
    times,
    store: {
      async settle(ids: readonly string[]) {
        batches.push([...ids]);
        times.push(performance.now());
        if (ids.some((id) => failing.has(id))) throw new Error(`cannot settle ${ids.join(',')}`);
        return ids.length;
      },
      async listUnsettledChainIds() {
        return [];
      },
    },
  };
}

const logger = createLogger('silent');

describe('chain settler sweeps', () => {
  it('settles the noted ids sorted, in transactions of at most maxBatch', async () => {
    const { batches, store } = recordingStore();
    const settler = createChainSettler({ store, clock: systemClock, logger, intervalMs: 60_000, maxBatch: 3 });
    const ids = ['st_05', 'st_01', 'st_07', 'st_03', 'st_02', 'st_06', 'st_04'];
    for (const id of ids) settler.noteCommitted(id);
    await settler.flush();
    expect(batches).toEqual([['st_01', 'st_02', 'st_03'], ['st_04', 'st_05', 'st_06'], ['st_07']]);
    await settler.stop();
  });

  it('sorts what settleNow is given too, and a failed batch is retried id by id; what fails stays due', async () => {
    const { batches, store } = recordingStore(new Set(['b']));
    const settler = createChainSettler({ store, clock: systemClock, logger, intervalMs: 60_000, maxBatch: 10 });
    await expect(settler.settleNow(['c', 'b', 'a'])).rejects.toThrow('cannot settle b');
    expect(batches).toEqual([['a', 'b', 'c'], ['a'], ['b'], ['c']]);
    batches.length = 0;
    await settler.flush().catch(() => undefined);
    expect(batches).toEqual([['b']]);
    await settler.stop();
  });

  describe('a timed sweep spread over spreadMs (ADR 0021)', () => {
    const ids = Array.from({ length: 8 }, (_, index) => `st_${index}`);
    /** A timed sweep of `ids` spread over a minute, once its first transaction reached the store. */
    const spreadSweepUnderWay = async (failing: ReadonlySet<string> = new Set()) => {
      const recorded = recordingStore(failing);
      const settler = createChainSettler({ store: recorded.store, clock: systemClock, logger, intervalMs: 1, maxBatch: 2, spreadMs: 60_000 });
      for (const id of ids) settler.noteCommitted(id);
      await until(() => recorded.batches.length === 1);
      return { batches: recorded.batches, settler };
    };

    it('starts its transactions evenly over spreadMs, after the interval', async () => {
      const { batches, times, store } = recordingStore();
      const settler = createChainSettler({ store, clock: systemClock, logger, intervalMs: 20, maxBatch: 2, spreadMs: 200 });
      const notedAt = performance.now();
      for (const id of ids) settler.noteCommitted(id);
      await until(() => batches.length === 4);
      expect(batches).toEqual([['st_0', 'st_1'], ['st_2', 'st_3'], ['st_4', 'st_5'], ['st_6', 'st_7']]);
      // 4 transactions over 200 ms: 50 ms apart, counted from the sweep's start, which is a
      // little before the first reached the store (a timer may also fire a millisecond early).
      expect((times[0] as number) - notedAt).toBeGreaterThanOrEqual(18);
      for (let index = 1; index < 4; index += 1) expect((times[index] as number) - (times[0] as number)).toBeGreaterThanOrEqual(index * 50 - 5);
      await settler.stop();
    });

    it('lets settleNow through between two of its transactions', async () => {
      const { batches, settler } = await spreadSweepUnderWay();
      await settler.settleNow(['other']);
      expect(batches).toEqual([['st_0', 'st_1'], ['other']]);
      await settler.stop();
    });

    it('flush runs what a spread sweep has left at once, and waits for it', async () => {
      const { batches, settler } = await spreadSweepUnderWay();
      const flushedAt = performance.now();
      await settler.flush();
      expect(performance.now() - flushedAt).toBeLessThan(5_000);
      expect(batches.flat().sort()).toEqual(ids);
      await settler.stop();
    });

    it('flush waits for a sweep under way that was not spread (start, settleNow) too', async () => {
      let release: () => void = () => undefined;
      const batches: string[][] = [];
      const store = {
        async settle(batch: readonly string[]) {
          batches.push([...batch]);
          // The first transaction waits until released.
          if (batches.length === 1) await new Promise<void>((resolve) => { release = resolve; });
          return batch.length;
        },
        async listUnsettledChainIds() {
          return [];
        },
      };
      const settler = createChainSettler({ store, clock: systemClock, logger, intervalMs: 60_000, maxBatch: 2 });
      const now = settler.settleNow(['a', 'b', 'c', 'd']);
      await until(() => batches.length === 1);
      let flushed = false;
      const flushing = settler.flush().then(() => { flushed = true; });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(flushed).toBe(false);
      release();
      await Promise.all([now, flushing]);
      expect(batches).toEqual([['a', 'b'], ['c', 'd']]);
      await settler.stop();
    });

    it('flush rejects when a spread sweep it hurried failed, and the failed id is due again', async () => {
      const failing = new Set(['st_5']);
      const { batches, settler } = await spreadSweepUnderWay(failing);
      // flush hurries what is left of the sweep.
      await expect(settler.flush()).rejects.toThrow('cannot settle st_5');
      failing.clear();
      batches.length = 0;
      await settler.flush();
      expect(batches).toEqual([['st_5']]);
      await settler.stop();
    });

    it('keeps what fails due, and stop() ends it at once, arming no timer after it', async () => {
      const { batches, settler } = await spreadSweepUnderWay(new Set(['st_5']));
      await settler.stop();
      const afterStop = batches.length;
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(batches.length).toBe(afterStop);
      // Every transaction ran, without the minutes of spread; st_4 and st_5 failed together
      // and were tried alone: st_5 is due again (for the rows, the next start settles it).
      expect(batches.filter((batch) => batch.includes('st_5'))).toEqual([['st_4', 'st_5'], ['st_5']]);
      expect(new Set(batches.flat())).toEqual(new Set(ids));
    });

    it('refuses a negative spread', () => {
      const { store } = recordingStore();
      expect(() => createChainSettler({ store, clock: systemClock, logger, intervalMs: 1, maxBatch: 2, spreadMs: -1 })).toThrow(RangeError);
    });
  });
});

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
