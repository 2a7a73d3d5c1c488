/**
 * Apps and their API keys, and the admin key.
 *
 * Threat model: API keys are bearer secrets. They are 256-bit random values, shown once
 * and stored only as SHA-256 hashes (a fast hash is enough for keys with this much
 * entropy: there is nothing to brute-force). A revoked key or an app that has been
 * revoked authenticates nothing. Comparisons go through the hash lookup, so timing
 * reveals nothing about a key's characters.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { LedgerStore } from '../ledger/store.js';
import type { ApiKeyRow, AppRow, RecordStore } from '../records/model.js';
import { ZERO_MSAT } from '../money/msat.js';
import { randomId } from '../util/fingerprint.js';

export const APP_KEY_PREFIX = 'sk_';
export const ADMIN_KEY_PREFIX = 'sa_';
const ADMIN_KEY_HASH_META = 'admin_key_hash';

export type Principal = { kind: 'admin' } | { kind: 'app'; app: AppRow; keyId: string } | { kind: 'payer'; streamId: string };

export type AuthenticateResult = { ok: true; principal: Principal } | { ok: false; error: 'InvalidKey' };

export interface CreatedApp {
  app: AppRow;
  apiKey: string;
  key: ApiKeyRow;
}

export interface AppService {
  /** Stores the admin key's hash: the configured one, or a new one that is returned (to print once). */
  ensureAdminKey(configuredKey: string | null): Promise<{ generatedKey: string | null }>;
  authenticate(presentedKey: string): Promise<AuthenticateResult>;
  createApp(name: string): Promise<CreatedApp>;
  listApps(): Promise<AppRow[]>;
  getApp(id: string): Promise<AppRow | null>;
  revokeApp(id: string): Promise<boolean>;
  createApiKey(appId: string): Promise<{ apiKey: string; key: ApiKeyRow } | null>;
  listApiKeys(appId: string): Promise<ApiKeyRow[]>;
  revokeApiKey(appId: string, keyId: string): Promise<boolean>;
}

export function appAccountId(appId: string): string {
  return `app:${appId}`;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

function newSecret(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function createAppService(deps: { records: RecordStore; ledger: LedgerStore; clock: Clock }): AppService {
  const { records, ledger, clock } = deps;
  // Set by ensureAdminKey at start-up; until then no key is an admin key.
  let adminKeyHash: string | null = null;

  const newKeyRow = (appId: string): { apiKey: string; key: ApiKeyRow } => {
    const apiKey = newSecret(APP_KEY_PREFIX);
    return {
      apiKey,
      key: {
        id: randomId('key_'),
        appId,
        keyHash: hashApiKey(apiKey),
        prefix: apiKey.slice(0, APP_KEY_PREFIX.length + 6),
        createdAt: clock.now(),
        revokedAt: null,
      },
    };
  };

  return {
    async ensureAdminKey(configuredKey) {
      if (configuredKey !== null) {
        adminKeyHash = hashApiKey(configuredKey);
        await records.setMeta(ADMIN_KEY_HASH_META, adminKeyHash);
        return { generatedKey: null };
      }
      const candidate = newSecret(ADMIN_KEY_PREFIX);
      adminKeyHash = await records.setMetaIfAbsent(ADMIN_KEY_HASH_META, hashApiKey(candidate));
      return { generatedKey: adminKeyHash === hashApiKey(candidate) ? candidate : null };
    },

    async authenticate(presentedKey) {
      const keyHash = hashApiKey(presentedKey);
      if (adminKeyHash !== null && keyHash === adminKeyHash) return { ok: true, principal: { kind: 'admin' } };
      const found = await records.findApiKeyByHash(keyHash);
      if (!found || found.key.revokedAt !== null || found.app.revokedAt !== null) return { ok: false, error: 'InvalidKey' };
      return { ok: true, principal: { kind: 'app', app: found.app, keyId: found.key.id } };
    },

    async createApp(name) {
      const id = randomId('app_');
      const accountId = appAccountId(id);
      // The account first: createAccount is idempotent, so a crash before the app row
      // leaves only an empty, unreachable account.
      const account = await ledger.createAccount({ id: accountId, ownerId: id, limitMsat: ZERO_MSAT, code: 'app' });
      if (!account.ok) throw new Error(`account ${accountId} exists with another spec`);
      const app: AppRow = { id, name, accountId, createdAt: clock.now(), revokedAt: null };
      const { apiKey, key } = newKeyRow(id);
      await records.insertApp(app, key);
      return { app, apiKey, key };
    },

    listApps: () => records.listApps(),
    getApp: (id) => records.getApp(id),
    revokeApp: (id) => records.revokeApp(id, clock.now()),

    async createApiKey(appId) {
      const app = await records.getApp(appId);
      if (!app || app.revokedAt !== null) return null;
      const created = newKeyRow(appId);
      await records.insertApiKey(created.key);
      return created;
    },
    listApiKeys: (appId) => records.listApiKeys(appId),
    revokeApiKey: (appId, keyId) => records.revokeApiKey(appId, keyId, clock.now()),
  };
}
