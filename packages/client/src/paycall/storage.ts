/**
 * Where the paying fetch keeps its chains between sessions: any store with the Web Storage
 * shape (`localStorage`, `sessionStorage`, or an async key-value store in Node). One key
 * holds a JSON array of chains. A chain is written BEFORE its invoice is paid, so a crash
 * between paying and using it cannot lose the money; it is removed once spent or refunded.
 * The seeds in it are secrets: keep the store where the wallet's secrets are kept.
 */
import type { StoredChain } from './chain.js';
import { Mutex } from './sync.js';

/**
 * A key-value store with the Web Storage shape; `localStorage` is one. Methods may return
 * promises.
 *
 * @example
 * ```ts
 * const storage: ChainStorage = window.localStorage;
 * const inMemory = new Map<string, string>();
 * const nodeStorage: ChainStorage = {
 *   getItem: (key) => inMemory.get(key) ?? null,
 *   setItem: (key, value) => void inMemory.set(key, value),
 * };
 * ```
 */
export interface ChainStorage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
}

/**
 * The key under which the paying fetch keeps its chains in a `ChainStorage`.
 *
 * @example
 * ```ts
 * import { CHAIN_STORAGE_KEY } from '@sluice/client';
 * localStorage.removeItem(CHAIN_STORAGE_KEY); // forget every chain (their unspent steps too)
 * ```
 */
export const CHAIN_STORAGE_KEY = 'sluice.paycall.chains';

function isStoredChain(value: unknown): value is StoredChain {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.chain_id === 'string' && typeof record.app_id === 'string' && typeof record.buy_url === 'string'
    && typeof record.step_msat === 'string' && /^[1-9][0-9]*$/.test(record.step_msat)
    && typeof record.steps === 'number' && Number.isSafeInteger(record.steps) && record.steps > 0
    && typeof record.seed === 'string' && /^[0-9a-f]{64}$/.test(record.seed);
}

/** Serialized reads and writes of the chain list (two purchases at once must not lose one). */
export class ChainStore {
  readonly #storage: ChainStorage;
  readonly #lock = new Mutex();

  constructor(storage: ChainStorage) {
    this.#storage = storage;
  }

  async #read(): Promise<StoredChain[]> {
    const text = await this.#storage.getItem(CHAIN_STORAGE_KEY);
    if (text === null || text === '') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${CHAIN_STORAGE_KEY} in the chain storage is not JSON: refusing to overwrite it (it may hold seeds)`);
    }
    if (!Array.isArray(parsed)) throw new Error(`${CHAIN_STORAGE_KEY} in the chain storage is not a list of chains`);
    return parsed.filter(isStoredChain);
  }

  load(): Promise<StoredChain[]> {
    return this.#lock.run(() => this.#read());
  }

  put(chain: StoredChain): Promise<void> {
    return this.#lock.run(async () => {
      const chains = (await this.#read()).filter((stored) => stored.chain_id !== chain.chain_id);
      chains.push(chain);
      await this.#storage.setItem(CHAIN_STORAGE_KEY, JSON.stringify(chains));
    });
  }

  remove(chainId: string): Promise<void> {
    return this.#lock.run(async () => {
      const chains = await this.#read();
      const kept = chains.filter((stored) => stored.chain_id !== chainId);
      if (kept.length !== chains.length) await this.#storage.setItem(CHAIN_STORAGE_KEY, JSON.stringify(kept));
    });
  }
}
