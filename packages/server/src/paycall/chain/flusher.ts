/**
 * Group commit for chains: calls accepted in memory wait here until their chain's new
 * index is durable. Dirty chains are written by ONE flusher, one transaction per batch
 * (only each chain's latest index; see store.ts). The app is paid for those steps later,
 * by the settler's sweep (settler.ts), so a call waits for the index alone. While a commit
 * is in flight new calls gather behind it, so batches grow with the load and share one fsync.
 *
 * Failure: a commit that throws has an unknown outcome (a connection lost after COMMIT was
 * sent may have committed it), so it fails closed: every call of its batch and every later
 * call of those chains is refused (none is served), and the chains leave memory, so the
 * next call or refund reads the durable row first. A link that was spent after all is then
 * refused as replayed; one that was not is accepted. A conflict (another process moved a
 * chain) refuses that chain's calls as replayed and drops it from memory too.
 */
import type { Logger } from 'pino';
import type { ChainRow, ChainWrite } from './model.js';
import type { CallCost, ChainFail, SpendAck } from './service.js';
import type { ChainStore } from './store.js';

/**
 * The next commit of one chain, shared by every call accepted on it since its last batch:
 * resolves with null once their index is durable, or with the refusal they all get. Each
 * call chains its own answer on it (one `.then` per call, no resolving functions per call).
 */
export interface CommitSignal {
  promise: Promise<ChainFail | null>;
  /** A promise adopts the outcome of a later commit (calls put back after a conflict). */
  resolve: (outcome: ChainFail | null | Promise<ChainFail | null>) => void;
}

function commitSignal(): CommitSignal {
  let resolve!: CommitSignal['resolve'];
  const promise = new Promise<ChainFail | null>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** A chain this process holds in memory (live). */
export interface LiveChain {
  row: ChainRow;
  /**
   * w_index in bytes: what the next link must hash to. `row.link` (hex) follows it only at
   * each commit, so the hot path does no hex encoding.
   */
  linkBytes: Buffer;
  /** What the database holds: the flusher writes from here to row.index. */
  durableIndex: number;
  durableLink: string;
  /** The chain's next commit, while calls accepted on it wait for it (null: none waits). */
  next: CommitSignal | null;
  /** A refund is under way: calls are refused from the moment its proof is accepted. */
  refunding: boolean;
  /** The activation's status write, until it is durable (the chain must stay in memory). */
  activating: Promise<void> | null;
}

/** Another writer moved the chain's row: this process's copy is stale. */
export class ChainConflictError extends Error {
  constructor(readonly chainId: string) {
    super(`chain ${chainId} moved in the database underneath this process`);
    this.name = 'ChainConflictError';
  }
}

/** How a failed commit reads to the calls that counted on it (never thrown at them). */
function refusalFor(error: unknown): ChainFail {
  if (error instanceof ChainConflictError) return { ok: false, error: 'Replayed', detail: 'the chain moved in another process' };
  return {
    ok: false,
    error: 'Overloaded',
    detail: 'the call was not served: the database did not confirm its commit, so whether the link was spent is unknown; ' +
      'send the same link again (accepted if it was not spent, refused as replayed if it was)',
  };
}

export interface ChainFlusher {
  /** Queues the chain's write; resolves with `map(ack, call, context)` once durable, or with `map(refusal, ...)`. */
  awaitCommit<T, C>(state: LiveChain, ack: SpendAck, map: (result: SpendAck | ChainFail, call: CallCost, context: C) => T, call: CallCost, context: C): Promise<T>;
  /** Resolves once everything accepted on this chain so far is durable (or refused). */
  settled(state: LiveChain): Promise<void>;
  /** Whether the chain has a write queued or in flight. */
  busy(state: LiveChain): boolean;
  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void>;
}

export interface ChainFlusherDeps {
  store: ChainStore;
  logger: Logger;
  maxBatch: number;
  /** The chain's new index is durable: its steps are due to the app (the settler's next sweep). */
  onCommitted(state: LiveChain): void;
  /** A chain whose every step is now durably spent (it may leave memory). */
  onSpentOut(state: LiveChain): void;
  /** A chain another process moved: this copy must leave memory. */
  onConflict(state: LiveChain): void;
  /** A chain whose commit had an unknown outcome: this copy must leave memory (re-read before any call). */
  onUncertain(state: LiveChain): void;
}

export function createChainFlusher(deps: ChainFlusherDeps): ChainFlusher {
  const { store, logger, maxBatch } = deps;
  const dirty = new Set<LiveChain>();
  const committing = new Set<LiveChain>();
  let flushing = false;
  let scheduled = false;
  /** Everyone waiting in drain() (settleSpent and stop may wait at once). */
  const drainWaiters: (() => void)[] = [];

  const schedule = (): void => {
    if (scheduled || flushing) return;
    scheduled = true;
    // setImmediate: requests that arrive while this tick runs join the batch.
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  };

  /** Puts back what was not made durable and refuses everyone who counted on it. */
  const revert = (state: LiveChain, error: unknown): void => {
    state.row.index = state.durableIndex;
    state.row.link = state.durableLink;
    state.linkBytes = Buffer.from(state.durableLink, 'hex');
    state.next?.resolve(refusalFor(error));
    state.next = null;
    dirty.delete(state);
  };

  const flush = async (): Promise<void> => {
    flushing = true;
    const batch: { state: LiveChain; write: ChainWrite; signal: CommitSignal | null }[] = [];
    try {
      for (const state of dirty) {
        if (batch.length >= maxBatch) break;
        dirty.delete(state);
        committing.add(state);
        batch.push({
          state,
          write: { id: state.row.id, fromIndex: state.durableIndex, index: state.row.index, link: state.linkBytes.toString('hex') },
          signal: state.next,
        });
        // Calls accepted from now on wait for the chain's next batch.
        state.next = null;
      }
      if (batch.length === 0) return;
      let result: Awaited<ReturnType<ChainStore['commit']>>;
      try {
        result = await store.commit(batch.map((entry) => entry.write));
      } catch (error) {
        logger.error({ err: error, chains: batch.length }, 'chain commit failed (outcome unknown); the batch was refused and its chains are re-read before the next call');
        const refusal = refusalFor(error);
        for (const { state, signal } of batch) {
          signal?.resolve(refusal);
          revert(state, error);
          // The commit may have happened: the durable index is the database's to say.
          deps.onUncertain(state);
        }
        return;
      }
      if (!result.ok) {
        // Another writer moved these chains: drop our copy (a later request reloads it
        // from the database) and retry the others in the next batch.
        const conflicts = new Set(result.conflicts);
        logger.warn({ chains: result.conflicts }, 'chain rows moved underneath this process; their pending calls are refused');
        for (const { state, signal } of batch) {
          if (conflicts.has(state.row.id)) {
            const error = new ChainConflictError(state.row.id);
            signal?.resolve(refusalFor(error));
            revert(state, error);
            deps.onConflict(state);
          } else {
            // Tried again in the next batch, with the calls accepted meanwhile.
            if (signal) {
              state.next?.resolve(signal.promise);
              state.next = signal;
            }
            dirty.add(state);
          }
        }
        return;
      }
      for (const { state, write, signal } of batch) {
        state.durableIndex = write.index;
        state.durableLink = write.link;
        state.row.link = write.link;
        if (write.index > write.fromIndex) deps.onCommitted(state);
        signal?.resolve(null);
        if (state.row.index >= state.row.steps && !dirty.has(state)) deps.onSpentOut(state);
      }
    } finally {
      for (const { state } of batch) committing.delete(state);
      flushing = false;
      if (dirty.size > 0) schedule();
      else for (const resolve of drainWaiters.splice(0)) resolve();
    }
  };

  return {
    awaitCommit<T, C>(state: LiveChain, ack: SpendAck, map: (result: SpendAck | ChainFail, call: CallCost, context: C) => T, call: CallCost, context: C): Promise<T> {
      let next = state.next;
      if (next === null) {
        // The chain's first call since its last batch: it becomes dirty and a flush is due.
        next = state.next = commitSignal();
        dirty.add(state);
        schedule();
      }
      // A throwing map rejects this call's promise, as a `.then` does.
      return next.promise.then((refusal) => map(refusal ?? ack, call, context));
    },
    async settled(state) {
      // Cold path (refunds): polls.
      while (dirty.has(state) || committing.has(state)) await new Promise<void>((resolve) => setImmediate(resolve));
    },
    busy(state) {
      return dirty.has(state) || committing.has(state);
    },
    async drain() {
      if (dirty.size === 0 && !flushing && !scheduled) return;
      await new Promise<void>((resolve) => {
        drainWaiters.push(resolve);
      });
    },
  };
}
