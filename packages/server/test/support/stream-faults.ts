// Faults the streams tests put into a running Sluice's money store.
import type { MoneyOutcome, MoneyStep } from '../../src/streams/money-store.js';
import type { TestSluice } from './sluice.js';

export type CommitFn = (steps: readonly MoneyStep[], now: number) => Promise<MoneyOutcome[]>;

/**
 * The next commit writes its rows (durably) and then throws, as a lost connection or a failed
 * sync answers. Returns the function that puts the store's own commit back.
 */
export const commitThenThrowOnce = (t: TestSluice): (() => void) => {
  const store = t.sluice.streamMoney.store as { commit: CommitFn };
  const commit = store.commit.bind(store);
  let armed = true;
  store.commit = async (steps, now) => {
    const outcomes = await commit(steps, now);
    if (armed) {
      armed = false;
      throw new Error('connection lost after COMMIT');
    }
    return outcomes;
  };
  return () => {
    store.commit = commit;
  };
};
