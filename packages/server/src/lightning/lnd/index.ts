/**
 * The LND backend: `createLndBackend(options)` or, from LND_REST_URL, LND_MACAROON_PATH
 * and LND_TLS_CERT_PATH, `createLndBackendFromEnv()`.
 */
import type { LightningBackend } from '../backend.js';
import { createLndBackend } from './backend.js';
import { loadLndOptionsFromEnv, type LndBackendOptions, type LndConfigProblem } from './config.js';

export { createLndBackend } from './backend.js';
export { loadLndOptionsFromEnv, resolveLndOptions, DEFAULT_LND_TIMEOUT_MS } from './config.js';
export type { LndBackendOptions, LndConfigError, LndConfigProblem, LndEnvResult } from './config.js';
export { LndError, isLndError } from './errors.js';
export type { LndErrorKind } from './errors.js';
export type { LndLogger } from './logger.js';

/**
 * Reads the macaroon and certificate files and creates the backend; a configuration
 * problem (missing file, not a certificate) rejects with a message naming the setting.
 */
export async function createLndBackendFromFiles(
  files: { restUrl: string; macaroonPath: string; tlsCertPath: string } & Omit<LndBackendOptions, 'restUrl' | 'macaroonHex' | 'macaroon' | 'tlsCert'>,
): Promise<LightningBackend> {
  const { restUrl, macaroonPath, tlsCertPath, ...extra } = files;
  const created = await createLndBackendFromEnv(
    { LND_REST_URL: restUrl, LND_MACAROON_PATH: macaroonPath, LND_TLS_CERT_PATH: tlsCertPath },
    extra,
  );
  if (!created.ok) throw new Error(`LND configuration (${created.error}): ${created.message}`);
  return created.backend;
}

/**
 * Loads the options from the environment and creates the backend. `extra` adds what the
 * environment does not carry (logger, clock, timeout).
 */
export async function createLndBackendFromEnv(
  env: Record<string, string | undefined> = process.env,
  extra: Omit<LndBackendOptions, 'restUrl' | 'macaroonHex' | 'macaroon' | 'tlsCert'> = {},
): Promise<{ ok: true; backend: LightningBackend } | ({ ok: false } & LndConfigProblem)> {
  const loaded = await loadLndOptionsFromEnv(env);
  if (!loaded.ok) return loaded;
  return { ok: true, backend: createLndBackend({ ...loaded.options, ...extra }) };
}
