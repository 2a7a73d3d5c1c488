/**
 * Sweeps: pays the apps for the steps their chains spent, a while after the calls.
 *
 * Why not in the call's own commit: a paid call waits for its index to be durable, and the
 * ledger transfer that moved the step's value to the app was most of that commit's work
 * (one transfer per chain per batch). The index alone is the proof of what was spent, so
 * the money can follow: chains whose index was committed are noted here, and at most one
 * sweep per interval settles them all in one transaction (settlement.ts). The app's
 * balance lags its chains' calls by at most the interval; a refund, and shutdown, settle
 * at once; start-up settles what a crash left unsettled.
 *
 * Nothing here is about chains but the default log wording: the stream service sweeps its
 * streams' charges with the same settler over its money store (streams/money-store.ts).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { ChainStore } from './store.js';

export interface ChainSettler {
  /** The chain's index was committed: its new steps are due to the app at the next sweep. */
  noteCommitted(chainId: string): void;
  /** Settles these chains now (a refund reads the chain account only after this). */
  settleNow(chainIds: readonly string[]): Promise<void>;
  /** Settles everything noted so far, now (shutdown, tests). */
  flush(): Promise<void>;
  /** Settles what an earlier run left unsettled. */
  start(): Promise<void>;
  /** Stops the timer after a last sweep. */
  stop(): Promise<void>;
}

export interface ChainSettlerDeps {
  /** Only its sweeps (the streams' money store sweeps its streams' charges through the same settler). */
  store: Pick<ChainStore, 'settle' | 'listUnsettledChainIds'>;
  /** What is settled, for the logs (default "chain steps"). */
  what?: string;
  clock: Clock;
  logger: Logger;
  /** Longest time between a call's commit and the app's credit for it. */
  intervalMs: number;
  /** Most chains settled in one transaction. */
  maxBatch: number;
  /**
   * How often to look for chains any process left unsettled (0: never). With several
   * processes on one PostgreSQL, steps a process accepted and did not sweep before it died
   * are found this way; with SQLite there is one process, and its start finds them.
   */
  rescanMs?: number;
}

export function createChainSettler(deps: ChainSettlerDeps): ChainSettler {
  const { store, clock, logger, intervalMs, maxBatch } = deps;
  const what = deps.what ?? 'chain steps';
  const due = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let rescanTimer: NodeJS.Timeout | null = null;
  /** The sweep under way: sweeps run one at a time, so a retry never races its own batch. */
  let running: Promise<void> = Promise.resolve();

  /**
   * Settles in transactions of at most maxBatch chains. A transaction that fails is tried
   * again chain by chain, so one chain that cannot be settled holds up no other chain's money.
   */
  const settleAll = async (unordered: readonly string[]): Promise<{ failed: string[]; error: unknown }> => {
    // In id order: with ids that sort by creation time (streams), a transaction's rows then
    // share pages in every table and index it writes, instead of one page each (util/fingerprint.ts timeOrderedId).
    const ids = [...unordered].sort();
    const failed: string[] = [];
    let firstError: unknown = null;
    const fail = (id: string, error: unknown): void => {
      failed.push(id);
      firstError ??= error;
    };
    for (let from = 0; from < ids.length; from += maxBatch) {
      // Between two transactions the event loop runs (a store may settle synchronously, as
      // SQLite does): a sweep of many ids is then many short pauses, not one long one.
      if (from > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const batch = ids.slice(from, from + maxBatch);
      try {
        await store.settle(batch, clock.now());
      } catch (error) {
        if (batch.length === 1) {
          fail(batch[0] as string, error);
          continue;
        }
        for (const id of batch) {
          // The event loop runs between these too (up to maxBatch transactions in a row otherwise).
          await new Promise<void>((resolve) => setImmediate(resolve));
          await store.settle([id], clock.now()).catch((alone: unknown) => fail(id, alone));
        }
      }
    }
    return { failed, error: firstError };
  };

  /** One sweep after the ones before it; the chains that fail stay due (the next sweep tries again). */
  const sweep = (ids: readonly string[]): Promise<void> => {
    const next = running.then(async () => {
      const { failed, error } = await settleAll(ids);
      if (failed.length === 0) return;
      for (const id of failed) due.add(id);
      logger.error({ err: error, ids: failed.length }, `could not settle ${what} to the apps; retried at the next sweep`);
      arm();
      throw error;
    });
    running = next.catch(() => undefined);
    return next;
  };

  const sweepDue = (): Promise<void> => {
    timer = null;
    const ids = [...due];
    due.clear();
    return sweep(ids);
  };

  function arm(): void {
    if (timer !== null || due.size === 0) return;
    timer = setTimeout(() => void sweepDue().catch(() => undefined), intervalMs);
    // A pending sweep does not keep the process alive: stop() settles what is due.
    timer.unref();
  }

  return {
    noteCommitted(chainId) {
      due.add(chainId);
      arm();
    },
    async settleNow(chainIds) {
      for (const id of chainIds) due.delete(id);
      await sweep(chainIds);
    },
    async flush() {
      if (timer !== null) clearTimeout(timer);
      await sweepDue();
    },
    async start() {
      const ids = await store.listUnsettledChainIds();
      if (ids.length > 0) logger.info({ ids: ids.length }, `settling ${what} an earlier run left unsettled`);
      // A chain that cannot be settled now stays due (logged, retried every interval): it
      // must not keep the server from starting.
      await sweep(ids).catch(() => undefined);
      const rescanMs = deps.rescanMs ?? 0;
      if (rescanMs > 0) {
        rescanTimer = setInterval(() => {
          // Swept at once: what fails stays due (and is logged), as in every sweep.
          store.listUnsettledChainIds().then(
            (found) => sweep(found).catch(() => undefined),
            (error: unknown) => logger.warn({ err: error }, `could not look for unsettled ${what}; looked for again later`),
          );
        }, rescanMs);
        rescanTimer.unref();
      }
    },
    async stop() {
      if (rescanTimer !== null) clearInterval(rescanTimer);
      rescanTimer = null;
      // What fails stays in the rows: the next start settles it.
      await this.flush().catch(() => undefined);
    },
  };
}
