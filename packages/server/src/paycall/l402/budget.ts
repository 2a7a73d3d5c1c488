/**
 * Token budgets: a call is counted in memory at once (so two racing calls in one process
 * cannot both take the last unit) and made durable by group commit before the caller is
 * answered (so a restart cannot serve a spent unit again).
 *
 * The memory entry of a token is a lower bound of what the token has used: what the
 * database last said plus calls still being committed. A call that does not fit the
 * lower bound is refused without touching the database (refusing is always right, since
 * use only grows). A call that fits is decided by the database's guarded upsert, which
 * also sees other processes' uses on a shared PostgreSQL. Entries are dropped when the
 * map grows past `maxCachedTokens` (only entries with nothing in flight): a dropped entry
 * costs nothing but the early refusal, because the database still guards.
 *
 * Group commit as the ledger does it: uses queue up, one flusher commits up to `maxBatch`
 * in one transaction, then answers each; while a commit is in flight the next batch
 * gathers. A full queue answers `overloaded` at once (nothing counted).
 */
import type { BudgetUse, L402BudgetStore } from './budget-store.js';

export type BudgetResult =
  | { ok: true; callsUsed: bigint; msatUsed: bigint }
  | { ok: false; error: 'exhausted'; callsUsed: bigint; msatUsed: bigint }
  | { ok: false; error: 'overloaded' };

export interface BudgetLedger {
  /** Counts one use; resolves once it is durable (or refused). */
  use(use: BudgetUse): Promise<BudgetResult>;
  /** Stops taking uses and waits until every queued one is committed or rejected. */
  close(): Promise<void>;
}

interface Entry {
  callsUsed: bigint;
  msatUsed: bigint;
  inFlight: number;
}

interface Queued {
  use: BudgetUse;
  resolve: (result: BudgetResult) => void;
  reject: (error: unknown) => void;
}

export class BudgetLedgerClosedError extends Error {
  constructor() {
    super('the L402 budget ledger is closed');
    this.name = 'BudgetLedgerClosedError';
  }
}

export function createBudgetLedger(deps: { store: L402BudgetStore; maxBatch?: number; maxQueue?: number; maxCachedTokens?: number }): BudgetLedger {
  const { store } = deps;
  const maxBatch = deps.maxBatch ?? 2048;
  const maxQueue = deps.maxQueue ?? 20_000;
  const maxCachedTokens = deps.maxCachedTokens ?? 100_000;
  const entries = new Map<string, Entry>();
  let queue: Queued[] = [];
  let flushing = false;
  let scheduled = false;
  let closed = false;
  let drained: (() => void) | null = null;

  const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);

  function trimCache(): void {
    if (entries.size <= maxCachedTokens) return;
    const target = Math.floor(maxCachedTokens * 0.9);
    for (const [tokenId, entry] of entries) {
      if (entries.size <= target) break;
      if (entry.inFlight === 0) entries.delete(tokenId);
    }
  }

  function schedule(): void {
    if (scheduled || flushing) return;
    scheduled = true;
    // setImmediate, not a microtask: callers answered by the last commit queue their
    // next use first, so they join this batch.
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  }

  function settle(item: Queued, outcome: { applied: boolean; callsUsed: bigint; msatUsed: bigint } | null): void {
    const entry = entries.get(item.use.tokenId) as Entry;
    entry.inFlight -= 1;
    if (outcome === null || !outcome.applied) {
      // Give back what this call reserved; the database's figure may be higher (other processes).
      entry.callsUsed -= item.use.calls;
      entry.msatUsed -= item.use.msat;
    }
    if (outcome !== null) {
      entry.callsUsed = max(entry.callsUsed, outcome.callsUsed);
      entry.msatUsed = max(entry.msatUsed, outcome.msatUsed);
    }
  }

  async function flush(): Promise<void> {
    flushing = true;
    try {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      if (batch.length === 0) return;
      let results;
      try {
        results = await store.applyUses(batch.map((item) => item.use));
        if (results.length !== batch.length) throw new Error(`budget store answered ${results.length} results for ${batch.length} uses`);
      } catch (error) {
        // The outcome may be unknown (a connection lost after COMMIT): the database may hold
        // these uses. Giving the reservations back keeps memory a lower bound, and it is
        // safe because memory never serves on its own: a retry that fits is decided by the
        // guarded upsert, which sees the use if it was committed (test: budget.test.ts).
        for (const item of batch) {
          settle(item, null);
          item.reject(error);
        }
        return;
      }
      for (const [index, item] of batch.entries()) {
        const outcome = results[index] as { applied: boolean; callsUsed: bigint; msatUsed: bigint };
        settle(item, outcome);
        item.resolve(outcome.applied
          ? { ok: true, callsUsed: outcome.callsUsed, msatUsed: outcome.msatUsed }
          : { ok: false, error: 'exhausted', callsUsed: outcome.callsUsed, msatUsed: outcome.msatUsed });
      }
    } finally {
      flushing = false;
      trimCache();
      if (queue.length > 0) schedule();
      else if (drained) drained();
    }
  }

  return {
    use(use) {
      if (closed) return Promise.reject(new BudgetLedgerClosedError());
      if (use.calls > use.callsLimit || use.msat > use.msatLimit) {
        return Promise.resolve({ ok: false, error: 'exhausted', callsUsed: 0n, msatUsed: 0n });
      }
      let entry = entries.get(use.tokenId);
      if (entry && (entry.callsUsed > use.callsLimit - use.calls || entry.msatUsed > use.msatLimit - use.msat)) {
        return Promise.resolve({ ok: false, error: 'exhausted', callsUsed: entry.callsUsed, msatUsed: entry.msatUsed });
      }
      if (queue.length >= maxQueue) return Promise.resolve({ ok: false, error: 'overloaded' });
      if (!entry) {
        entry = { callsUsed: 0n, msatUsed: 0n, inFlight: 0 };
        entries.set(use.tokenId, entry);
      }
      // Reserved now, synchronously: a racing call in this process sees it.
      entry.callsUsed += use.calls;
      entry.msatUsed += use.msat;
      entry.inFlight += 1;
      return new Promise<BudgetResult>((resolve, reject) => {
        queue.push({ use, resolve, reject });
        schedule();
      });
    },
    async close() {
      closed = true;
      if (queue.length === 0 && !flushing && !scheduled) return;
      await new Promise<void>((resolve) => {
        drained = resolve;
      });
    },
  };
}
