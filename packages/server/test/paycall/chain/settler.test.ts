// The settler's sweeps (settler.ts) over a store that records what it is asked: ids go to the
// store in id order, in transactions of at most maxBatch, whatever order they were noted in;
// a batch that fails is retried id by id, and what still fails stays due for the next sweep.
import { describe, expect, it } from 'vitest';
import { createChainSettler } from '../../../src/paycall/chain/settler.js';
import { systemClock } from '../../../src/clock.js';
import { createLogger } from '../../../src/logger.js';

function recordingStore(failing: ReadonlySet<string> = new Set()) {
  const batches: string[][] = [];
  return {
    batches,
    store: {
      async settle(ids: readonly string[]) {
        batches.push([...ids]);
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
});
