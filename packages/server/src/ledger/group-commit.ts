/**
 * Group commit: many concurrent callers, one transaction, one fsync, then every caller is
 * answered.
 *
 * Callers queue their ops; a single flusher takes up to `maxBatch` queued ops, hands them
 * to `store.applyOps` (one transaction, one commit) and answers each caller only after that
 * commit has returned, i.e. after it is durable. While a commit is in flight new requests
 * queue behind it, so under load batches grow by themselves and the cost of the fsync is
 * shared. At most one commit is in flight per ledger.
 *
 * Staged stores: a store that commits first and makes durable after (`applyOpsStaged`, the
 * SQLite store: its fsync runs on the thread pool, see sqlite/wal-sync.ts) leaves the event
 * loop free while the disk syncs: requests keep arriving, are parsed and queued, and form the
 * next batch. Callers are answered only once their batch is durable, in commit order. At most
 * MAX_UNDURABLE_BATCHES batches wait for their sync; the queue waits behind them.
 *
 * Why 1 (the next batch commits after the previous one is durable) rather than overlapping
 * the next commit with the sync: syncs coalesce, so a batch committed early, during a sync,
 * waits for the sync after it anyway, and the requests arriving after it would wait one more
 * sync (with a 5 ms sync: ~15 ms instead of ~10 ms). Overlap helps only when the disk is
 * faster than the transaction, and then the event loop is busy with requests during the
 * sync anyway. The mechanism allows more for a store whose syncs do not coalesce.
 *
 * Limits: the queue holds at most `maxQueue` ops. A request that would overflow it is
 * answered at once with `{ ok: false, error: 'Overloaded' }` (nothing was applied; the
 * caller may retry later with the same idempotency key); the HTTP edge maps that to 503.
 * We refuse instead of waiting so that a stalled disk shows up as errors, not as an
 * unbounded pile of waiting requests.
 *
 * Failure: if a commit throws (disk full, connection lost, a CHECK backstop), every caller
 * in that batch gets the rejection; nothing of that batch is acknowledged, and the next
 * batch is tried on its own. A malformed op throws to its own caller before it is queued,
 * so it cannot fail other callers' batch.
 *
 * Threat model: the callers are our own services. Ops of different callers share a
 * transaction but not their outcomes: each op is checked on its own against the state the
 * earlier ops of the batch left, exactly as if they had been applied one by one.
 */
import { assertValidOp } from './planner.js';
import type {
  Account,
  AccountId,
  AccountSpec,
  CreateAccountResult,
  LedgerError,
  LedgerOp,
  LedgerResult,
  LedgerStore,
  ListTransfersQuery,
  Transfer,
  TransferId,
} from './store.js';

/** The group-commit front refuses a request it cannot queue; nothing was applied. */
export type OverloadedResult = { ok: false; error: 'Overloaded'; replayed: false };
export type LedgerApplyError = LedgerError | 'Overloaded';
export type LedgerApplyResult = LedgerResult | OverloadedResult;

export interface LedgerDeps {
  store: LedgerStore;
  /** Most ops in one commit (default 1000). An applyMany larger than this commits alone. */
  maxBatch?: number;
  /** Most ops waiting for a commit (default 20_000); beyond that requests get Overloaded. */
  maxQueue?: number;
  /** Called after each commit with its size; for metrics and tests. */
  onCommit?: (info: { ops: number; requests: number }) => void;
}

export interface Ledger {
  /** Applies one op in the next group commit; resolves after that commit is durable. */
  apply(op: LedgerOp): Promise<LedgerApplyResult>;
  /** Applies ops in order in the SAME commit (each op succeeds or is refused on its own). */
  applyMany(ops: readonly LedgerOp[]): Promise<LedgerApplyResult[]>;
  /** Stops taking requests and waits until every queued one has been committed or rejected. */
  close(): Promise<void>;
  createAccount(spec: AccountSpec): Promise<CreateAccountResult>;
  getAccount(id: AccountId): Promise<Account | null>;
  listAccounts(ownerId: string): Promise<Account[]>;
  getTransfer(id: TransferId): Promise<Transfer | null>;
  listTransfers(query: ListTransfersQuery): Promise<Transfer[]>;
  sumOfBalances(): Promise<bigint>;
  readonly store: LedgerStore;
}

/**
 * A store that commits a batch and makes it durable in two steps. `results` are final once
 * the transaction committed (later batches see its effects); `durable` resolves once the
 * commit is on disk (null: it already was) and rejects if it cannot be made so. Nothing of
 * the batch may be acknowledged before `durable` resolves.
 */
export interface StagedLedgerStore extends LedgerStore {
  applyOpsStaged(ops: readonly LedgerOp[]): Promise<{ results: LedgerResult[]; durable: Promise<void> | null }>;
}

function isStaged(store: LedgerStore): store is StagedLedgerStore {
  return typeof (store as Partial<StagedLedgerStore>).applyOpsStaged === 'function';
}

/** Batches committed and waiting for their sync (see the module comment for why 1). */
export const MAX_UNDURABLE_BATCHES = 1;

export const DEFAULT_MAX_BATCH = 1000;
export const DEFAULT_MAX_QUEUE = 20_000;

const OVERLOADED: OverloadedResult = Object.freeze({ ok: false, error: 'Overloaded', replayed: false });

interface Request {
  ops: readonly LedgerOp[];
  resolve: (results: LedgerResult[]) => void;
  reject: (error: unknown) => void;
}

export class LedgerClosedError extends Error {
  constructor() {
    super('the ledger is closed');
    this.name = 'LedgerClosedError';
  }
}

export function createLedger(deps: LedgerDeps): Ledger {
  const { store } = deps;
  const maxBatch = deps.maxBatch ?? DEFAULT_MAX_BATCH;
  const maxQueue = deps.maxQueue ?? DEFAULT_MAX_QUEUE;
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) throw new RangeError(`maxBatch must be >= 1, got ${maxBatch}`);
  if (!Number.isSafeInteger(maxQueue) || maxQueue < maxBatch) {
    throw new RangeError(`maxQueue must be >= maxBatch, got ${maxQueue}`);
  }

  const queue: Request[] = [];
  let queuedOps = 0;
  let flushing = false;
  let scheduled = false;
  let closed = false;
  let undurable = 0;
  /** Settles when the last batch waiting for its sync has been answered (never rejects). */
  let lastAnswered: Promise<void> = Promise.resolve();
  let drained: (() => void) | null = null;
  const staged = isStaged(store) ? store : null;

  function idle(): boolean {
    return queue.length === 0 && !flushing && !scheduled && undurable === 0;
  }

  function afterBatch(): void {
    if (queue.length > 0) schedule();
    else if (drained && idle()) drained();
  }

  function schedule(): void {
    if (scheduled || flushing || undurable >= MAX_UNDURABLE_BATCHES) return;
    scheduled = true;
    // setImmediate, not a microtask: callers answered by the previous commit run their
    // continuations (and queue their next ops) first, so they join this batch.
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  }

  function takeBatch(): Request[] {
    const batch: Request[] = [];
    let size = 0;
    while (queue.length > 0) {
      const next = queue[0] as Request;
      if (batch.length > 0 && size + next.ops.length > maxBatch) break;
      queue.shift();
      batch.push(next);
      size += next.ops.length;
    }
    queuedOps -= size;
    return batch;
  }

  async function flush(): Promise<void> {
    flushing = true;
    try {
      const batch = takeBatch();
      if (batch.length === 0) return;
      const ops = batch.length === 1 ? (batch[0] as Request).ops : batch.flatMap((request) => request.ops);
      let results: LedgerResult[];
      let durable: Promise<void> | null = null;
      try {
        if (staged) ({ results, durable } = await staged.applyOpsStaged(ops));
        else results = await store.applyOps(ops);
      } catch (error) {
        for (const request of batch) request.reject(error);
        return;
      }
      if (results.length !== ops.length) {
        // Committed but malformed: a store bug. Nobody is answered with a result.
        const error = new Error(`store answered ${results.length} results for ${ops.length} ops`);
        for (const request of batch) request.reject(error);
        return;
      }
      if (durable === null) {
        answer(batch, ops.length, results);
        return;
      }
      undurable += 1;
      const done = (): void => {
        undurable -= 1;
        afterBatch();
      };
      // Answered in commit order, whatever order the store's syncs return in.
      const synced = durable;
      lastAnswered = lastAnswered.then(() => synced).then(
        () => answer(batch, ops.length, results),
        (error: unknown) => {
          for (const request of batch) request.reject(error);
        },
      ).then(done, done);
    } finally {
      flushing = false;
      afterBatch();
    }
  }

  function answer(batch: Request[], ops: number, results: LedgerResult[]): void {
    deps.onCommit?.({ ops, requests: batch.length });
    let offset = 0;
    for (const request of batch) {
      request.resolve(results.slice(offset, offset + request.ops.length));
      offset += request.ops.length;
    }
  }

  function enqueue(ops: readonly LedgerOp[]): Promise<LedgerApplyResult[]> {
    if (closed) return Promise.reject(new LedgerClosedError());
    for (const op of ops) assertValidOp(op);
    if (ops.length === 0) return Promise.resolve([]);
    // One request larger than the whole queue could never fit: it is a caller bug.
    if (ops.length > maxQueue) throw new RangeError(`applyMany of ${ops.length} ops exceeds maxQueue ${maxQueue}`);
    if (queuedOps + ops.length > maxQueue) return Promise.resolve(ops.map(() => OVERLOADED));
    return new Promise<LedgerResult[]>((resolve, reject) => {
      queue.push({ ops, resolve, reject });
      queuedOps += ops.length;
      schedule();
    });
  }

  return {
    store,
    async apply(op) {
      const [result] = await enqueue([op]);
      if (!result) throw new Error('no result for a queued op');
      return result;
    },
    async applyMany(ops) {
      return enqueue([...ops]);
    },
    async close() {
      closed = true;
      if (idle()) return;
      await new Promise<void>((resolve) => {
        drained = resolve;
      });
    },
    createAccount: (spec) => store.createAccount(spec),
    getAccount: (id) => store.getAccount(id),
    listAccounts: (ownerId) => store.listAccounts(ownerId),
    getTransfer: (id) => store.getTransfer(id),
    listTransfers: (query) => store.listTransfers(query),
    sumOfBalances: () => store.sumOfBalances(),
  };
}
