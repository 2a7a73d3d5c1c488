/**
 * Group commit for stream money steps: the steps of every stream, submitted while a commit
 * is in flight, wait here and go to the store together, in ONE transaction (money-store.ts),
 * and each is answered once that transaction is durable. At most one commit is in flight, so
 * under load batches grow by themselves and share one sync, as the ledger's group commit does.
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
  let queue: Waiting[] = [];
  let flushing = false;
  let scheduled = false;
  const drainWaiters: (() => void)[] = [];
  /** Waiting for the batch in flight, or for the next one (afterQueued). */
  let afterFlight: (() => void)[] = [];
  let afterNext: (() => void)[] = [];

  const schedule = (): void => {
    if (scheduled || flushing) return;
    scheduled = true;
    // setImmediate, not a microtask: callers answered by the previous commit queue their next steps first, and join this batch.
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  };

  const flush = async (): Promise<void> => {
    flushing = true;
    const answered = afterNext;
    afterNext = [];
    afterFlight = answered;
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
    queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
    try {
      if (batch.length === 0) return;
      let outcomes: MoneyOutcome[];
      try {
        outcomes = await store.commit(batch.map((waiting) => waiting.step), clock.now());
        if (outcomes.length !== batch.length) throw new Error(`the money store answered ${outcomes.length} outcomes for ${batch.length} steps`);
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
        return;
      }
      deps.onCommit?.(batch.length);
      for (let i = 0; i < batch.length; i += 1) (batch[i] as Waiting).resolve(outcomes[i] as MoneyOutcome);
    } finally {
      flushing = false;
      afterFlight = [];
      for (const resolve of answered) resolve();
      if (queue.length > 0) schedule();
      else for (const resolve of drainWaiters.splice(0)) resolve();
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
      if (queue.length === 0 && !flushing) return Promise.resolve();
      // Queued steps go in the next batch; with none queued, the batch in flight is all there is.
      return new Promise<void>((resolve) => (queue.length > 0 ? afterNext : afterFlight).push(resolve));
    },
    async drain() {
      if (queue.length === 0 && !flushing && !scheduled) return;
      await new Promise<void>((resolve) => {
        drainWaiters.push(resolve);
      });
    },
  };
}
