// The stream money group commit (streams/money-commit.ts): a store that writes before it
// returns (SQLite) gets the next batch while one waits for its sync (once enough steps wait),
// never a third; a store
// that does not (PostgreSQL) gets one batch at a time. Steps are answered batch by batch, in
// order; afterQueued and drain wait for what they should.
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { msat } from '../../src/money/msat.js';
import { createMoneyCommitter, SECOND_COMMIT_MIN_STEPS } from '../../src/streams/money-commit.js';
import type { MoneyOutcome, MoneyStep, StreamMoneyStore } from '../../src/streams/money-store.js';

/** A store whose commits wait until the test ends them, one by one. */
function heldStore(writesBeforeReturning: boolean) {
  const commits: { steps: readonly MoneyStep[]; end: () => void }[] = [];
  const store = {
    dialect: writesBeforeReturning ? 'sqlite' : 'postgres',
    writesBeforeReturning,
    commit: (steps: readonly MoneyStep[]) =>
      new Promise<MoneyOutcome[]>((resolve) => {
        commits.push({ steps, end: () => resolve(steps.map(() => ({ kind: 'written', refused: null }))) });
      }),
  } as unknown as StreamMoneyStore;
  return { store, commits };
}

const step = (seq: number): MoneyStep => ({ streamId: 's', accountId: 'a', appId: 'p', seq, ref: `c:${seq}`, name: 'hit', amountMsat: msat(1n), at: seq });
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('money committer', () => {
  it('writes the next batch while one waits for its sync (SQLite) once enough steps wait, never a third, and answers in order', async () => {
    const { store, commits } = heldStore(true);
    const committer = createMoneyCommitter({ store, clock: systemClock });
    const answered: number[] = [];
    const submit = (seq: number) => committer.submit(step(seq)).then(() => answered.push(seq));
    const first = [submit(1), submit(2)];
    await turn();
    expect(commits.map((c) => c.steps.length)).toEqual([2]);
    // A few steps (a light load) wait for the commit in flight rather than take a commit of their own...
    const second = [submit(3)];
    await turn();
    await turn();
    expect(commits.map((c) => c.steps.length)).toEqual([2]);
    // ...SECOND_COMMIT_MIN_STEPS of them go while it waits for its sync.
    for (let seq = 4; seq < 3 + SECOND_COMMIT_MIN_STEPS; seq += 1) second.push(submit(seq));
    await turn();
    expect(commits.map((c) => c.steps.length)).toEqual([2, SECOND_COMMIT_MIN_STEPS]);
    const third = [submit(100), submit(101)];
    await turn();
    await turn();
    // Two in flight: the third batch waits for one of them.
    expect(commits.length).toBe(2);
    let queuedDone = false;
    const queued = committer.afterQueued().then(() => (queuedDone = true));
    commits[0]!.end();
    await Promise.all(first);
    await turn();
    // One still in flight, and too few waiting to go beside it.
    expect(commits.length).toBe(2);
    expect(answered).toEqual([1, 2]);
    commits[1]!.end();
    await Promise.all(second);
    await turn();
    expect(commits.map((c) => c.steps.length)).toEqual([2, SECOND_COMMIT_MIN_STEPS, 2]);
    expect(queuedDone).toBe(false);
    let drained = false;
    const drain = committer.drain().then(() => (drained = true));
    commits[2]!.end();
    await Promise.all([...third, queued, drain]);
    expect(answered).toEqual([1, 2, ...Array.from({ length: SECOND_COMMIT_MIN_STEPS }, (_, i) => 3 + i), 100, 101]);
    expect(queuedDone && drained).toBe(true);
  });

  it('commits one batch at a time when the store does not write before returning (PostgreSQL)', async () => {
    const { store, commits } = heldStore(false);
    const committer = createMoneyCommitter({ store, clock: systemClock });
    const first = committer.submit(step(1));
    await turn();
    const second = committer.submit(step(2));
    await turn();
    await turn();
    expect(commits.length).toBe(1);
    // With nothing queued, afterQueued waits for the batch in flight.
    let flightDone = false;
    const flight = committer.afterQueued().then(() => (flightDone = true));
    commits[0]!.end();
    await first;
    await turn();
    expect(commits.length).toBe(2);
    commits[1]!.end();
    await Promise.all([second, flight]);
    expect(flightDone).toBe(true);
    await committer.drain();
  });
});
