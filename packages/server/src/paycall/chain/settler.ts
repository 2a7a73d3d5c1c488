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
 *
 * A timed sweep can be spread (`spreadMs`, ADR 0021): its transactions start evenly over that
 * time instead of back to back, so a sweep of 1,000 streams is twenty short pauses 25 ms
 * apart, not forty milliseconds in which every other request waits behind it. Sweeps are
 * serialized per transaction, not per sweep: a settleNow (a read of one stream's account)
 * waits for the transactions already queued (one per sweep under way, at most), never for
 * the rest of a spread sweep, and flush() (shutdown, `GET /v1/balance`) runs what a spread
 * sweep has left at once.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { ChainStore } from './store.js';

export interface ChainSettler {
  /** The chain's index was committed: its new steps are due to the app at the next sweep. */
  noteCommitted(chainId: string): void;
  /** Settles these chains now (a refund reads the chain account only after this). */
  settleNow(chainIds: readonly string[]): Promise<void>;
  /** Whether the id waits for the next sweep: noted since the last one, or failed in it and kept due. */
  isDue(chainId: string): boolean;
  /**
   * Settles everything noted so far, now, with the sweeps under way (`GET /v1/balance`,
   * shutdown, tests); rejects if any of it failed (those ids stay due).
   */
  flush(): Promise<void>;
  /** Settles what an earlier run left unsettled. */
  start(): Promise<void>;
  /** A last sweep; after it no timer is armed again (what failed is left to the next start). */
  stop(): Promise<void>;
}

export interface ChainSettlerDeps {
  /** Only its sweeps (the streams' money store sweeps its streams' charges through the same settler). */
  store: Pick<ChainStore, 'settle' | 'listUnsettledChainIds'>;
  /** What is settled, for the logs (default "chain steps"). */
  what?: string;
  clock: Clock;
  logger: Logger;
  /** How long after a call's commit its sweep starts, at most (then spreadMs, if any). */
  intervalMs: number;
  /** Most chains settled in one transaction. */
  maxBatch: number;
  /**
   * How often to look for chains any process left unsettled (0: never). With several
   * processes on one PostgreSQL, steps a process accepted and did not sweep before it died
   * are found this way; with SQLite there is one process, and its start finds them.
   */
  rescanMs?: number;
  /**
   * How long a timed sweep's transactions are spread over (default 0: back to back). The
   * app's credit then lags a call by up to about intervalMs + spreadMs. Keep it below
   * intervalMs, so a sweep has normally ended before the next starts (not checked: the tests
   * spread over much longer, to catch a sweep between two of its transactions).
   */
  spreadMs?: number;
}

export function createChainSettler(deps: ChainSettlerDeps): ChainSettler {
  const { store, clock, logger, intervalMs, maxBatch } = deps;
  const what = deps.what ?? 'chain steps';
  const spreadMs = deps.spreadMs ?? 0;
  if (!(spreadMs >= 0)) throw new RangeError(`spreadMs must be >= 0, got ${spreadMs}`);
  const due = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let rescanTimer: NodeJS.Timeout | null = null;
  /** After stop(): no timer is armed again. */
  let stopped = false;
  /**
   * The transaction under way: transactions run one at a time (a batch with its id-by-id
   * retries counts as one), so a retry never races its own batch, and a settleNow or a
   * flush waits for one transaction at most.
   */
  let running: Promise<void> = Promise.resolve();
  /** Sweeps under way: flush() hurries the spread ones (no more waiting) and waits for them all. */
  const underWay = new Set<{ hurry: () => void; done: Promise<void> }>();

  /**
   * One batch in one transaction, after the transactions before it. A batch that fails is
   * tried again id by id, so one id that cannot be settled holds up no other id's money.
   */
  const settleBatch = (batch: readonly string[], fail: (id: string, error: unknown) => void): Promise<void> => {
    const next = running.then(async () => {
      try {
        await store.settle(batch, clock.now());
      } catch (error) {
        if (batch.length === 1) {
          fail(batch[0] as string, error);
          return;
        }
        for (const id of batch) {
          // The event loop runs between these (up to maxBatch transactions in a row otherwise).
          await new Promise<void>((resolve) => setImmediate(resolve));
          await store.settle([id], clock.now()).catch((alone: unknown) => fail(id, alone));
        }
      }
    });
    running = next.catch(() => undefined);
    return next;
  };

  /**
   * Settles `unordered` in transactions of at most maxBatch ids, in id order: with ids that
   * sort by creation time (streams), a transaction's rows then share pages in every table and
   * index it writes, instead of one page each (util/fingerprint.ts timeOrderedId). Between two
   * transactions the event loop runs (a store may settle synchronously, as SQLite does); with
   * `spread`, the transactions start evenly over that many ms (each a gap after the one
   * before, so a sweep that fell behind, the event loop held, does not catch up in a burst).
   * The ids that fail are due again (the next sweep tries them) before the sweep leaves
   * `underWay`, and it rejects with the first error.
   */
  const sweep = async (unordered: readonly string[], spread = 0): Promise<void> => {
    const ids = [...unordered].sort();
    const failed: string[] = [];
    let firstError: unknown = null;
    const fail = (id: string, error: unknown): void => {
      failed.push(id);
      firstError ??= error;
    };
    const batches = Math.ceil(ids.length / maxBatch);
    const gapMs = batches > 1 ? spread / batches : 0;
    let hurried = gapMs === 0;
    let wake: (() => void) | null = null;
    const entry = {
      hurry: () => {
        hurried = true;
        wake?.();
      },
      done: Promise.resolve(),
    };
    const run = async (): Promise<void> => {
      let batchStartedAt = performance.now();
      for (let index = 0; index < batches; index += 1) {
        if (index > 0) {
          const waitMs = hurried ? 0 : batchStartedAt + gapMs - performance.now();
          await new Promise<void>((resolve) => {
            if (waitMs <= 0) return void setImmediate(resolve);
            const pause = setTimeout(resolve, waitMs);
            // A spread sweep does not keep the process alive: stop() hurries it.
            pause.unref();
            wake = () => {
              clearTimeout(pause);
              resolve();
            };
          });
          wake = null;
          batchStartedAt = performance.now();
        }
        await settleBatch(ids.slice(index * maxBatch, (index + 1) * maxBatch), fail);
      }
      if (failed.length === 0) return;
      for (const id of failed) due.add(id);
      logger.error({ err: firstError, ids: failed.length }, `could not settle ${what} to the apps; retried at the next sweep`);
      arm();
      throw firstError;
    };
    entry.done = run().finally(() => underWay.delete(entry));
    underWay.add(entry);
    await entry.done;
  };

  const sweepDue = (spread = 0): Promise<void> => {
    timer = null;
    const ids = [...due];
    due.clear();
    return sweep(ids, spread);
  };

  function arm(): void {
    if (stopped || timer !== null || due.size === 0) return;
    timer = setTimeout(() => void sweepDue(spreadMs).catch(() => undefined), intervalMs);
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
    isDue: (chainId) => due.has(chainId),
    async flush() {
      if (timer !== null) clearTimeout(timer);
      // The sweeps under way hold ids no longer due: they count as this flush's, and what a
      // spread one has left runs now.
      const earlier = [...underWay];
      for (const sweepUnderWay of earlier) sweepUnderWay.hurry();
      const results = await Promise.allSettled([sweepDue(), ...earlier.map((sweepUnderWay) => sweepUnderWay.done)]);
      const rejected = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (rejected) throw rejected.reason;
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
      stopped = true;
      if (rescanTimer !== null) clearInterval(rescanTimer);
      rescanTimer = null;
      // What fails stays in the rows: the next start settles it.
      await this.flush().catch(() => undefined);
    },
  };
}
