/**
 * Committed account rows kept in memory, so a group commit of 256 transfers does not read
 * the same few hundred account rows back from SQLite for every batch (that read was a fifth
 * of the CPU time of a batch).
 *
 * The cache holds only state known to be committed:
 * - rows read by the store's own batches (their transaction has no earlier writes, so what
 *   it reads is committed), and the final rows those batches write, stored after the commit
 *   returned;
 * - never rows read or written inside a caller's transaction (applyOpsInTransaction), whose
 *   outcome we cannot see: the accounts such a call changes are dropped from the cache, so
 *   the next batch reads them from the database.
 *
 * Like the idempotency index this assumes ONE process writes the database file (the ledger
 * is the only code that changes balances, and it runs in this process).
 */
import type { SqliteDatabase } from '../../db/sqlite.js';
import type { AccountState } from '../rows.js';
import type { AccountId } from '../store.js';

/** Beyond this many accounts the cache starts over (a bound on memory, ~300 bytes each). */
export const MAX_CACHED_ACCOUNTS = 100_000;

export interface AccountCache {
  get(id: AccountId): AccountState | undefined;
  /** A committed row (see the module comment for which rows qualify). */
  remember(account: AccountState): void;
  forget(id: AccountId): void;
}

const caches = new WeakMap<SqliteDatabase, AccountCache>();

export function accountCacheFor(db: SqliteDatabase): AccountCache {
  let cache = caches.get(db);
  if (!cache) {
    cache = createAccountCache();
    caches.set(db, cache);
  }
  return cache;
}

function createAccountCache(): AccountCache {
  const accounts = new Map<AccountId, AccountState>();
  return {
    get: (id) => accounts.get(id),
    remember(account) {
      if (accounts.size >= MAX_CACHED_ACCOUNTS && !accounts.has(account.id)) accounts.clear();
      // A copy: the planner works on copies too, but the cache must not share objects with callers.
      accounts.set(account.id, { ...account });
    },
    forget(id) {
      accounts.delete(id);
    },
  };
}
