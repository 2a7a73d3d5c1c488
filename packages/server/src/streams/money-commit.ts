/**
 * Group commit for stream money steps: the steps of every stream, submitted while a commit
 * is in flight, wait here and go to the store together, in ONE transaction (money-store.ts),
 * and each is answered once that transaction is durable. At most one commit is in flight (two
 * on SQLite: one waiting for its sync while the next is written, once SECOND_COMMIT_MIN_STEPS
 * wait), so under load batches grow by themselves and share one sync, as the ledger's group
 * commit does.
 *
 * Limits: at most `maxQueue` steps wait; a step that would overflow it is answered at once
 * with 'Overloaded' (nothing written), so a stalled disk shows as errors, not as an unbounded
 * pile. Failure: a commit that throws rejects every step of its batch (its outcome is unknown:
 * a lost connection may have committed it; a retry with the same ref finds out), and the next
 * batch is tried on its own.
 */
import type { Clock } from '../clock.js';
import type { MoneyOutcome, MoneyStep, StreamMoneyStore } from './money-store.js';

export const DEFAULT_MONEY_MAX_BATCH = 1000;
export const DEFAULT_MONEY_MAX_QUEUE = 20_000;
/**
 * Steps that must be waiting before a second commit goes while one is in flight (SQLite).
 * Its sync can only start once the first one's ends, so going early gains little but the
 * overlap of its writing; with few steps waiting (a light load) it would cost a commit's fixed
 * work (about 100 µs on the 2-core VM) for a handful of steps, and the same steps wait for the
 * first commit's end and then go together.
 */
export const SECOND_COMMIT_MIN_STEPS = 32;

export interface MoneyCommitter {
  readonly store: StreamMoneyStore;
  /** Queues the step for the next commit: its outcome once durable, or 'Overloaded' (nothing written). */
  submit(step: MoneyStep): Promise<MoneyOutcome | 'Overloaded'>;
  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void>;
  /** Resolves once the steps queued or in flight now have been answered (at once when there are none). */
  afterQueued(): Promise<void>;
}

export interface MoneyCommitterDeps {
  store: StreamMoneyStore;
  clock: Clock;
  maxBatch?: number;
  maxQueue?: number;
  /** Called after each commit with its size (metrics, tests). */
  onCommit?: (steps: number) => void;
}

interface Waiting {
  step: MoneyStep;
  resolve: (outcome: MoneyOutcome) => void;
  reject: (error: unknown) => void;
}

export function createMoneyCommitter(deps: MoneyCommitterDeps): MoneyCommitter {
  const { store, clock } = deps;
  const maxBatch = deps.maxBatch ?? DEFAULT_MONEY_MAX_BATCH;
  const maxQueue = deps.maxQueue ?? DEFAULT_MONEY_MAX_QUEUE;
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1 || !Number.isSafeInteger(maxQueue) || maxQueue < maxBatch) {
    throw new RangeError(`need 1 <= maxBatch <= maxQueue, got ${maxBatch} and ${maxQueue}`);
  }
  // A store that writes before returning (SQLite) takes the next batch while one waits for its
  // sync: that one's sync is under way, so the next shares the sync after it, and the event
  // loop is not idle meanwhile. A third would only wait for the same sync as the second.
  const maxInFlight = store.writesBeforeReturning ? 2 : 1;
  let queue: Waiting[] = [];
  let inFlight = 0;
  let scheduled = false;
  const drainWaiters: (() => void)[] = [];
  /** The newest batch in flight, settled once it is answered (batches are answered in order). */
  let newest: Promise<void> | null = null;
  /** Waiting for the next batch to be answered (afterQueued with steps queued). */
  let afterNext: (() => void)[] = [];

  const schedule = (): void => {
    if (scheduled || inFlight >= maxInFlight) return;
    // The commit in flight flushes the queue as it ends (its finally schedules again).
    if (inFlight > 0 && queue.length < SECOND_COMMIT_MIN_STEPS) return;
    scheduled = true;
    // setImmediate, not a microtask: callers answered by the previous commit queue their next steps first, and join this batch.
    setImmediate(() => {
      scheduled = false;
      if (queue.length > 0) void flush();
      else if (inFlight === 0) for (const resolve of drainWaiters.splice(0)) resolve();
    });
  };

  const flush = async (): Promise<void> => {
    inFlight += 1;
    const answered = afterNext;
    afterNext = [];
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
    queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
    let done!: () => void;
    const settled = new Promise<void>((resolve) => (done = resolve));
    newest = settled;
    try {
      let outcomes: MoneyOutcome[];
      try {
        const committing = store.commit(batch.map((waiting) => waiting.step), clock.now());
        // Written (writesBeforeReturning): the next batch may go while this one waits for its sync.
        if (queue.length > 0) schedule();
        outcomes = await committing;
        if (outcomes.length !== batch.length) throw new Error(`the money store answered ${outcomes.length} outcomes for ${batch.length} steps`);
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
        return;
      }
      deps.onCommit?.(batch.length);
      for (let i = 0; i < batch.length; i += 1) (batch[i] as Waiting).resolve(outcomes[i] as MoneyOutcome);
    } finally {
      inFlight -= 1;
      if (newest === settled) newest = null;
      done();
      for (const resolve of answered) resolve();
      if (queue.length > 0) schedule();
      else if (inFlight === 0) for (const resolve of drainWaiters.splice(0)) resolve();
    }
  };

  return {
    store,
    submit(step) {
      if (queue.length >= maxQueue) return Promise.resolve('Overloaded');
      return new Promise<MoneyOutcome>((resolve, reject) => {
        queue.push({ step, resolve, reject });
        schedule();
      });
    },
    afterQueued() {
      // Queued steps go in the next batch; with none queued, the newest batch in flight is the last to be answered.
      if (queue.length > 0) return new Promise<void>((resolve) => afterNext.push(resolve));
      return newest ?? Promise.resolve();
    },
    async drain() {
      if (queue.length === 0 && inFlight === 0 && !scheduled) return;
      await new Promise<void>((resolve) => {
        drainWaiters.push(resolve);
      });
    },
  };
}
