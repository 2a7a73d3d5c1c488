/**
 * Settings, read once from the environment at start-up. Every setting is listed with its
 * unit and default in docs/config.md (a test keeps that page in sync with SETTINGS).
 * A bad value stops the start with a message naming the variable; nothing guesses.
 */
import net from 'node:net';
import path from 'node:path';
import { parseMsat, type Msat } from './money/msat.js';

export type LightningChoice = 'devnet' | 'lnd';

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | null;
  lightning: LightningChoice;
  lnd: { restUrl: string | null; macaroonPath: string | null; tlsCertPath: string | null };
  adminKey: string | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  /** Addresses or CIDR ranges of proxies whose X-Forwarded-For is believed (SLUICE_TRUSTED_PROXIES); empty: none. */
  trustedProxies: string[];
  paymentTimeoutS: number;
  invoiceExpiryS: number;
  shutdownTimeoutMs: number;
  groupCommitMaxBatch: number;
  /** Longest time between a stream charge's commit and the app's credit for it (the charges' sweeps). */
  streamSettleIntervalMs: number;
  /** Hash-chain tokens (pay per call): default step price and lifetime of a chain. */
  chain: { stepMsat: Msat; ttlS: number; settleIntervalMs: number };
  /** L402 tokens (pay per call): calls one token buys at the challenging route's price, and its lifetime. */
  l402: { callsPerToken: number; tokenTtlS: number };
  /** Whether payouts to Lightning addresses may reach loopback and private addresses. */
  lightningAddressAllowPrivate: boolean;
  webhooks: {
    allowPrivate: boolean;
    timeoutMs: number;
    retryWindowS: number;
    backoffMaxS: number;
    concurrency: number;
    endpointConcurrency: number;
    disableAfterFailures: number;
    disableAfterS: number;
  };
  devnet: { latencyMs: number; seed: string | null; crashAfterPaymentSettles: boolean };
}

export interface SettingDoc {
  name: string;
  unit: string;
  default: string;
  meaning: string;
}

/** The documentation of every setting; docs/config.md must list exactly these names. */
export const SETTINGS: readonly SettingDoc[] = [
  { name: 'PORT', unit: 'TCP port', default: '8402', meaning: 'Port of the HTTP API.' },
  { name: 'HOST', unit: 'address', default: '127.0.0.1', meaning: 'Address the HTTP API listens on (0.0.0.0 for every interface).' },
  { name: 'SLUICE_DATA_DIR', unit: 'path', default: './data', meaning: 'Where the SQLite database, the devnet state and generated secrets live.' },
  { name: 'SLUICE_DATABASE_URL', unit: 'URL', default: '(unset: SQLite in the data dir)', meaning: 'postgres://... selects PostgreSQL.' },
  { name: 'SLUICE_LIGHTNING', unit: 'devnet | lnd', default: 'devnet', meaning: 'Lightning backend. devnet is an in-process simulated network with fake money.' },
  { name: 'LND_REST_URL', unit: 'URL', default: '(required for lnd)', meaning: "LND's REST address, e.g. https://127.0.0.1:8080." },
  { name: 'LND_MACAROON_PATH', unit: 'path', default: '(required for lnd)', meaning: 'Macaroon file (admin.macaroon or one baked for invoices and payments).' },
  { name: 'LND_TLS_CERT_PATH', unit: 'path', default: '(required for lnd)', meaning: "LND's tls.cert; the connection is pinned to exactly this certificate." },
  { name: 'SLUICE_ADMIN_KEY', unit: 'secret', default: '(generated on first start, printed once, stored hashed)', meaning: 'Admin API key, used to manage apps.' },
  { name: 'LOG_LEVEL', unit: 'fatal | error | warn | info | debug | trace | silent', default: 'info', meaning: 'pino log level.' },
  { name: 'SLUICE_BODY_LIMIT_BYTES', unit: 'bytes', default: '65536', meaning: 'Largest accepted request body.' },
  { name: 'SLUICE_RATE_LIMIT_PER_MINUTE', unit: 'requests per minute per key', default: '6000', meaning: 'Rate limit per API key (per address for requests without a key).' },
  { name: 'SLUICE_TRUSTED_PROXIES', unit: 'comma-separated addresses or CIDR ranges', default: '(none)', meaning: "Proxies in front of Sluice (a load balancer, a separate `sluice gateway`) whose X-Forwarded-For names the client, so the per-address rate limit counts each client instead of the proxy. Leave it empty when clients connect directly: anyone could then claim any address." },
  { name: 'SLUICE_PAYMENT_TIMEOUT_S', unit: 'seconds', default: '60', meaning: 'How long an outgoing payment may try before the API answers "pending".' },
  { name: 'SLUICE_INVOICE_EXPIRY_S', unit: 'seconds', default: '3600', meaning: 'Default expiry of invoices created without expiry_s.' },
  { name: 'SLUICE_SHUTDOWN_TIMEOUT_MS', unit: 'milliseconds', default: '10000', meaning: 'How long a graceful shutdown waits for requests to drain.' },
  { name: 'SLUICE_GROUP_COMMIT_MAX_BATCH', unit: 'transfers', default: '4096', meaning: 'Most ledger operations committed in one transaction.' },
  { name: 'SLUICE_LIGHTNING_ADDRESS_PRIVATE', unit: 'allow | block', default: '(allow on devnet, block on lnd)', meaning: "Whether payouts to a payer's Lightning address may connect to loopback, private or link-local addresses. block stops a payer from pointing Sluice at the operator's own network." },
  { name: 'SLUICE_WEBHOOK_PRIVATE', unit: 'allow | block', default: '(allow on devnet, block on lnd)', meaning: "Whether webhook endpoints may be (or resolve to) loopback, private or link-local addresses. block stops an app from pointing Sluice at the operator's own network." },
  { name: 'SLUICE_WEBHOOK_TIMEOUT_MS', unit: 'milliseconds', default: '10000', meaning: 'How long one webhook attempt (connect, send, answer) may take.' },
  { name: 'SLUICE_WEBHOOK_RETRY_WINDOW_S', unit: 'seconds', default: '259200', meaning: 'How long a webhook delivery is retried (3 days); after that it is failed.' },
  { name: 'SLUICE_WEBHOOK_BACKOFF_MAX_S', unit: 'seconds', default: '3600', meaning: 'Longest wait between two webhook attempts (retries double from 5 s up to this, with jitter).' },
  { name: 'SLUICE_WEBHOOK_CONCURRENCY', unit: 'attempts', default: '64', meaning: 'Webhook attempts under way at once in one process.' },
  { name: 'SLUICE_WEBHOOK_ENDPOINT_CONCURRENCY', unit: 'attempts', default: '4', meaning: 'Webhook attempts under way at once to one endpoint in one process.' },
  { name: 'SLUICE_WEBHOOK_DISABLE_AFTER_FAILURES', unit: 'attempts', default: '20', meaning: 'An endpoint is disabled after this many failed attempts in a row...' },
  { name: 'SLUICE_WEBHOOK_DISABLE_AFTER_S', unit: 'seconds', default: '432000', meaning: '...spanning at least this long (5 days). Its app can enable it again.' },
  { name: 'SLUICE_CHAIN_STEP_MSAT', unit: 'msat', default: '1000', meaning: 'Default price of one step of a hash-chain token (pay per call), when the gate sets none for the app; may be below one satoshi.' },
  { name: 'SLUICE_CHAIN_TTL_S', unit: 'seconds', default: '2592000', meaning: 'Lifetime of a hash-chain token from its purchase; calls are refused after it, a refund is still allowed.' },
  { name: 'SLUICE_STREAM_SETTLE_INTERVAL_MS', unit: 'milliseconds', default: '1000', meaning: "How often stream charges are paid to their apps in the ledger: a charge is acknowledged once its row is durable, and each stream's charges are paid to its app in one sweep per interval, its transactions spread over half an interval (so the app's credit lags a charge by about 1.5 intervals at most, more only while a sweep fails or the server is overloaded; the payer's balance and limit count the charge at once; `GET /v1/balance`, rewards, payouts and closes sweep first, so nothing anyone reads waits for it). Each sweep costs one ledger transfer per stream, whatever the number of charges: a shorter interval costs more CPU with many streams." },
  { name: 'SLUICE_CHAIN_SETTLE_INTERVAL_MS', unit: 'milliseconds', default: '250', meaning: "Longest time between a hash-chain call and the app's credit for it: spent steps are paid to the apps in one sweep per interval (a call itself waits only for its chain's index to be durable)." },
  { name: 'SLUICE_L402_CALLS_PER_TOKEN', unit: 'calls', default: '1', meaning: "How many calls one L402 token buys: its invoice asks for the route's price times this, and the token may spend that many msat (caveat `<service>_budget_msat`)." },
  { name: 'SLUICE_L402_TOKEN_TTL_S', unit: 'seconds', default: '2592000', meaning: 'Lifetime of an L402 token from its challenge (caveat `<service>_valid_until`); an expired token gets a 402 with a fresh challenge.' },
  { name: 'SLUICE_DEVNET_LATENCY_MS', unit: 'milliseconds', default: '0', meaning: 'devnet only: simulated time each payment takes.' },
  { name: 'SLUICE_DEVNET_SEED', unit: 'text', default: '(random, stored in the data dir)', meaning: 'devnet only: makes node keys deterministic (tests, demos).' },
  { name: 'SLUICE_DEVNET_CRASH_AFTER_PAYMENT', unit: '0 | 1', default: '0', meaning: 'devnet only, for crash tests: SIGKILL the process right after a payment settles, before Sluice records it.' },
];

export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env, cwd = process.cwd()): ConfigResult {
  const errors: string[] = [];
  const text = (name: string): string | null => {
    const value = env[name];
    return value === undefined || value === '' ? null : value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const value = text(name);
    if (value === null) return fallback;
    if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
      errors.push(`${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`);
      return fallback;
    }
    return Number(value);
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = text(name);
    if (value === null) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      errors.push(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
      return fallback;
    }
    return value as T;
  };
  const flag = (name: string): boolean => oneOf(name, ['0', '1'] as const, '0') === '1';
  /** Comma-separated IP addresses or CIDR ranges (v4 or v6). */
  const addressList = (name: string): string[] => {
    const value = text(name);
    if (value === null) return [];
    const entries = value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
    for (const entry of entries) {
      const [address = '', prefix, extra] = entry.split('/');
      const family = net.isIP(address);
      const prefixOk = prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
      if (family === 0 || !prefixOk || extra !== undefined) {
        errors.push(`${name} must list IP addresses or CIDR ranges separated by commas, got ${JSON.stringify(entry)}`);
        return [];
      }
    }
    return entries;
  };

  const databaseUrl = text('SLUICE_DATABASE_URL');
  if (databaseUrl !== null && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    errors.push(`SLUICE_DATABASE_URL must start with postgres:// or postgresql://`);
  }
  const lightning = oneOf('SLUICE_LIGHTNING', ['devnet', 'lnd'] as const, 'devnet');
  const lnd = { restUrl: text('LND_REST_URL'), macaroonPath: text('LND_MACAROON_PATH'), tlsCertPath: text('LND_TLS_CERT_PATH') };
  if (lightning === 'lnd') {
    for (const [name, value] of [['LND_REST_URL', lnd.restUrl], ['LND_MACAROON_PATH', lnd.macaroonPath], ['LND_TLS_CERT_PATH', lnd.tlsCertPath]] as const) {
      if (value === null) errors.push(`${name} is required when SLUICE_LIGHTNING=lnd`);
    }
  }
  const adminKey = text('SLUICE_ADMIN_KEY');
  if (adminKey !== null && adminKey.length < 16) errors.push('SLUICE_ADMIN_KEY must be at least 16 characters');

  const config: Config = {
    port: integer('PORT', 8402, 0, 65535),
    host: text('HOST') ?? '127.0.0.1',
    dataDir: path.resolve(cwd, text('SLUICE_DATA_DIR') ?? './data'),
    databaseUrl,
    lightning,
    lnd,
    adminKey,
    logLevel: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    bodyLimitBytes: integer('SLUICE_BODY_LIMIT_BYTES', 65_536, 1024, 16 * 1024 * 1024),
    rateLimitPerMinute: integer('SLUICE_RATE_LIMIT_PER_MINUTE', 6000, 1, 10_000_000),
    trustedProxies: addressList('SLUICE_TRUSTED_PROXIES'),
    paymentTimeoutS: integer('SLUICE_PAYMENT_TIMEOUT_S', 60, 1, 3600),
    invoiceExpiryS: integer('SLUICE_INVOICE_EXPIRY_S', 3600, 60, 31_536_000),
    shutdownTimeoutMs: integer('SLUICE_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    groupCommitMaxBatch: integer('SLUICE_GROUP_COMMIT_MAX_BATCH', 4096, 1, 65_536),
    streamSettleIntervalMs: integer('SLUICE_STREAM_SETTLE_INTERVAL_MS', 1000, 1, 60_000),
    chain: {
      stepMsat: chainStepMsat(text('SLUICE_CHAIN_STEP_MSAT'), errors),
      ttlS: integer('SLUICE_CHAIN_TTL_S', 2_592_000, 60, 315_360_000),
      settleIntervalMs: integer('SLUICE_CHAIN_SETTLE_INTERVAL_MS', 250, 1, 60_000),
    },
    l402: { callsPerToken: integer('SLUICE_L402_CALLS_PER_TOKEN', 1, 1, 1_000_000), tokenTtlS: integer('SLUICE_L402_TOKEN_TTL_S', 2_592_000, 60, 315_360_000) },
    lightningAddressAllowPrivate: oneOf('SLUICE_LIGHTNING_ADDRESS_PRIVATE', ['allow', 'block'] as const, lightning === 'devnet' ? 'allow' : 'block') === 'allow',
    webhooks: {
      allowPrivate: oneOf('SLUICE_WEBHOOK_PRIVATE', ['allow', 'block'] as const, lightning === 'devnet' ? 'allow' : 'block') === 'allow',
      timeoutMs: integer('SLUICE_WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
      retryWindowS: integer('SLUICE_WEBHOOK_RETRY_WINDOW_S', 259_200, 0, 30 * 86_400),
      backoffMaxS: integer('SLUICE_WEBHOOK_BACKOFF_MAX_S', 3600, 5, 86_400),
      concurrency: integer('SLUICE_WEBHOOK_CONCURRENCY', 64, 1, 4096),
      endpointConcurrency: integer('SLUICE_WEBHOOK_ENDPOINT_CONCURRENCY', 4, 1, 256),
      disableAfterFailures: integer('SLUICE_WEBHOOK_DISABLE_AFTER_FAILURES', 20, 1, 1_000_000),
      disableAfterS: integer('SLUICE_WEBHOOK_DISABLE_AFTER_S', 432_000, 0, 365 * 86_400),
    },
    devnet: {
      latencyMs: integer('SLUICE_DEVNET_LATENCY_MS', 0, 0, 600_000),
      seed: text('SLUICE_DEVNET_SEED'),
      crashAfterPaymentSettles: flag('SLUICE_DEVNET_CRASH_AFTER_PAYMENT'),
    },
  };
  return errors.length > 0 ? { ok: false, errors } : { ok: true, config };
}

function chainStepMsat(value: string | null, errors: string[]): Msat {
  if (value === null) return 1000n as Msat;
  const parsed = parseMsat(value);
  if (!parsed.ok || parsed.value === 0n) {
    errors.push(`SLUICE_CHAIN_STEP_MSAT must be a whole number of msat of at least 1, got ${JSON.stringify(value)}`);
    return 1000n as Msat;
  }
  return parsed.value;
}
