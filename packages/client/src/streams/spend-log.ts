/**
 * The automatic payments that count against a payer's per-hour allowance. In memory by
 * default (one `SluicePayer`, gone with the page); `storageSpendLog` keeps them in Web Storage
 * so that the hour survives a reload and is shared by every `SluicePayer` of the page (or of
 * every tab, with `localStorage`) that uses the same key: a player with three streams open
 * has one hourly allowance, not three.
 */

/**
 * One automatic payment, for the per-hour allowance.
 *
 * @example
 * ```ts
 * const record: SpendRecord = { at: Date.now(), amount_msat: 25_000n, id: paymentHash };
 * ```
 */
export interface SpendRecord {
  at: number;
  amount_msat: bigint;
  /** The invoice's payment hash, so a payment that certainly failed can be taken out again. */
  id?: string | undefined;
}

/**
 * Where a payer counts its automatic payments.
 *
 * @example
 * ```ts
 * const log: SpendLog = storageSpendLog(localStorage);
 * const lastHour = log.since(Date.now() - 3_600_000);
 * ```
 */
export interface SpendLog {
  /** The records made after `sinceMs` (Unix ms). */
  since(sinceMs: number): SpendRecord[];
  add(record: SpendRecord): void;
  /** Takes a record out (a payment that certainly failed): by id when it has one. */
  remove(record: SpendRecord): void;
  /**
   * Runs `decide` while no other payer sharing this log (another tab, another window) reads or
   * writes it, and resolves with its result. A payer checks its allowance and records the
   * payment inside it, so two tabs cannot both spend the same hour's allowance. Absent on
   * logs only this page can see (`memorySpendLog`): the page's own code never interleaves a
   * synchronous check and record.
   */
  exclusively?<T>(decide: () => T): Promise<T>;
}

/**
 * The part of the Web Locks API (`navigator.locks`) a shared spend log takes its lock with.
 *
 * @example
 * ```ts
 * const log = storageSpendLog(localStorage, SPEND_LOG_STORAGE_KEY, { locks: navigator.locks });
 * ```
 */
export interface SpendLogLocks {
  request<T>(name: string, callback: () => T | Promise<T>): Promise<T>;
}

/** Keeps records of the last day at most: the allowance looks back one hour. */
const KEEP_MS = 24 * 3_600_000;

/**
 * A spend log in memory.
 *
 * @example
 * ```ts
 * const log = memorySpendLog(restoredRecords);
 * ```
 */
export function memorySpendLog(initial: readonly SpendRecord[] = []): SpendLog {
  let records = [...initial];
  return {
    since: (sinceMs) => records.filter((record) => record.at > sinceMs),
    add(record) {
      records = records.filter((item) => item.at > record.at - KEEP_MS);
      records.push(record);
    },
    remove(record) {
      records = records.filter((item) => (record.id !== undefined ? item.id !== record.id : item !== record));
    },
  };
}

/**
 * The synchronous part of Web Storage (`localStorage`, `sessionStorage`).
 *
 * @example
 * ```ts
 * const items = new Map<string, string>();
 * const inMemory: SyncStorage = { getItem: (key) => items.get(key) ?? null, setItem: (key, value) => void items.set(key, value) };
 * ```
 */
export interface SyncStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/**
 * The key `storageSpendLog` uses by default.
 *
 * @example
 * ```ts
 * localStorage.removeItem(SPEND_LOG_STORAGE_KEY); // start the hourly allowance afresh
 * ```
 */
export const SPEND_LOG_STORAGE_KEY = 'sluice.allowance.spent';

interface StoredRecord {
  at: number;
  amount_msat: string;
  id?: string;
}

/** Where a shared spend log finds its lock by default: the browser's Web Locks, when it has them. */
function defaultLocks(): SpendLogLocks | null {
  return (globalThis as { navigator?: { locks?: SpendLogLocks } }).navigator?.locks ?? null;
}

/**
 * A spend log in Web Storage, read on every check (so payers sharing the key see each other's
 * payments at once) and pruned to the last day on every write. Storage that cannot be read
 * or parsed counts as empty for reading and is rewritten on the next payment; a value that
 * is not a list of records is never trusted to raise the allowance.
 *
 * Tabs run at the same time, so a payer's check of the allowance and its record of the
 * payment are taken under a Web Lock named after the key (`navigator.locks`, in every
 * current browser): otherwise two tabs could both read the same spent total and both pay,
 * or one tab's write could drop the other's record. `options.locks` replaces the lock
 * manager (null: none, for storage no other tab can see).
 *
 * @example
 * ```ts
 * const payer = await SluicePayer.connect({ baseUrl, payerToken, wallet, allowance, spendLog: storageSpendLog(localStorage) });
 * ```
 */
export function storageSpendLog(storage: SyncStorage, key: string = SPEND_LOG_STORAGE_KEY, options: { locks?: SpendLogLocks | null } = {}): SpendLog {
  const locks = options.locks === undefined ? defaultLocks() : options.locks;
  const read = (): SpendRecord[] => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(storage.getItem(key) ?? '[]');
    } catch {
      return [];
    }
    if (!Array.isArray(parsed)) return [];
    const records: SpendRecord[] = [];
    for (const item of parsed as StoredRecord[]) {
      if (typeof item?.at !== 'number' || typeof item.amount_msat !== 'string' || !/^[0-9]{1,19}$/.test(item.amount_msat)) continue;
      records.push({ at: item.at, amount_msat: BigInt(item.amount_msat), ...(typeof item.id === 'string' ? { id: item.id } : {}) });
    }
    return records;
  };
  const write = (records: readonly SpendRecord[]): void => {
    const stored: StoredRecord[] = records.map((record) => ({ at: record.at, amount_msat: record.amount_msat.toString(), ...(record.id === undefined ? {} : { id: record.id }) }));
    storage.setItem(key, JSON.stringify(stored));
  };
  return {
    since: (sinceMs) => read().filter((record) => record.at > sinceMs),
    add(record) {
      write([...read().filter((item) => item.at > record.at - KEEP_MS), record]);
    },
    remove(record) {
      write(read().filter((item) => !(item.at === record.at && item.amount_msat === record.amount_msat && item.id === record.id)));
    },
    ...(locks === null ? {} : { exclusively: <T>(decide: () => T): Promise<T> => locks.request(`sluice-spend-log:${key}`, decide) }),
  };
}
