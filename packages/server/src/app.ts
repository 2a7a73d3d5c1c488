/**
 * The composition root: the one place that knows the whole graph. It opens the store and
 * the Lightning backend, builds the services, reconciles what an earlier run left in
 * flight, and only then serves HTTP.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { createOffsetClock, isAdvanceable, systemClock, type AdvanceableClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { openSqlite, type SqliteDatabase } from './db/sqlite.js';
import { assertReadCommitted, connectPostgres, type PostgresSql } from './db/postgres.js';
import { createAppService, type AppService } from './apps/service.js';
import { registerAppRoutes } from './apps/routes.js';
import { createInvoiceService, type InvoiceService } from './invoices/service.js';
import { registerInvoiceRoutes } from './invoices/routes.js';
import { createPaymentService, type PaymentService } from './payments/service.js';
import { registerPaymentRoutes } from './payments/routes.js';
import { createHttpServer, type SluiceFastify } from './http/server.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { registerDevnetRoutes, type DevnetWallets } from './http/devnet-routes.js';
import { registerDemoRoutes } from './demo/routes.js';
import { registerDashboardRoutes } from './dashboard/routes.js';
import { SYSTEM_ACCOUNTS } from './ledger/accounts.js';
import { createLedger, DEFAULT_MAX_QUEUE, type Ledger } from './ledger/group-commit.js';
import type { LedgerStore } from './ledger/store.js';
import { applyOpsInTransaction as applySqliteOps, createSqliteLedgerStore, migrateSqliteLedger, SERVER_LEDGER_STORE_OPTIONS } from './ledger/sqlite/store.js';
import { applyOpsInTransaction as applyPostgresOps, createPostgresLedgerStore, migratePostgresLedger } from './ledger/postgres/store.js';
import type { LightningBackend, NodeInfo } from './lightning/backend.js';
import { openDevnet, type Devnet } from './lightning/devnet/index.js';
import { createLndBackendFromFiles } from './lightning/lnd/index.js';
import type { RecordStore } from './records/model.js';
import { createSqliteRecordStore } from './records/sqlite.js';
import { createPostgresRecordStore } from './records/postgres.js';
import { createLogger } from './logger.js';
import { invoiceFromLightningAddress } from './lightning/lnurl.js';
import type { Msat } from './money/msat.js';
import { createStreamService, type StreamService } from './streams/service.js';
import { createPostgresStreamStore, createSqliteStreamStore, type StreamStore } from './streams/store.js';
import { createPostgresStreamMoneyStore, type StreamMoneyStore } from './streams/money-store.js';
import { createSqliteStreamMoneyStore } from './streams/money-store-sqlite.js';
import { createMoneyCommitter, type MoneyCommitter } from './streams/money-commit.js';
import { registerStreamRoutes } from './streams/routes.js';
import { registerStreamSocket, type StreamSocket, type StreamSocketLimits } from './streams/ws.js';
import { createL402Service, createPostgresL402BudgetStore, createSqliteL402BudgetStore, type L402BudgetStore, type L402Service } from './paycall/l402/index.js';
import { createPostgresWebhookStore, createSqliteWebhookStore, createWebhookService, observeStreamCloses, registerWebhookRoutes, type WebhookService, type WebhookStore } from './webhooks/index.js';
import { createChainService, createPostgresChainStore, createSqliteChainStore, registerChainRoutes, type ChainService, type ChainStore } from './paycall/chain/index.js';
import { createPostgresSubscriptionStore, createSqliteSubscriptionStore, createSubscriptionService, registerSubscriptionRoutes, seedDemoBusinesses, type SubscriptionService, type SubscriptionStore } from './subscriptions/index.js';

export const VERSION = '0.1.0';
/** Where the devnet keeps how far its clock was advanced (records' meta table). */
const CLOCK_OFFSET_META = 'devnet.clock_offset_ms';

export interface Sluice {
  readonly config: Config;
  readonly http: SluiceFastify;
  readonly nodeInfo: NodeInfo;
  readonly store: 'sqlite' | 'postgres';
  readonly ledger: Ledger;
  /** The group commit of stream money steps (rows streams' charges, rewards and meter steps). */
  readonly streamMoney: MoneyCommitter;
  readonly records: RecordStore;
  readonly backend: LightningBackend;
  readonly devnet: Devnet | null;
  readonly apps: AppService;
  readonly invoices: InvoiceService;
  readonly payments: PaymentService;
  readonly streams: StreamService;
  /** Hash-chain tokens (pay per call). */
  readonly chains: ChainService;
  /** Signed webhooks from a durable outbox; other modules emit through it. */
  readonly webhooks: WebhookService;
  /** Per-second plans with a prepaid buffer, grace and cancel at any time. */
  readonly subscriptions: SubscriptionService;
  /** The clock every service uses (on the devnet it can be advanced: POST /v1/devnet/clock/advance). */
  readonly clock: Clock;
  /** The sluice.v1 WebSocket endpoint (GET /v1/ws). */
  readonly streamSocket: StreamSocket;
  /** L402 for pay per call: the `l402` payment scheme, its verifier and token budgets. */
  readonly l402: L402Service;
  /** The admin key when this start generated it (to print once); otherwise null. */
  readonly generatedAdminKey: string | null;
  listen(): Promise<string>;
  /** Graceful: stop accepting, drain requests, stop watchers, flush the ledger, close. */
  close(): Promise<void>;
}

export interface SluiceOptions {
  logger?: Logger;
  clock?: Clock;
  /** Overrides of the WebSocket limits (tests). */
  streamSocketLimits?: Partial<StreamSocketLimits>;
  /** Where the demo serves the SDK's ES modules from (default: @sluice/client's dist). */
  sdkDir?: string;
  /** Seed the demo businesses' apps and plans (devnet only; `sluice start` asks for it). */
  seedDemoBusinesses?: boolean;
}

interface Stores {
  dialect: 'sqlite' | 'postgres';
  ledgerStore: LedgerStore;
  records: RecordStore;
  streamStore: StreamStore;
  /** Stream money steps as rows; shares the ledger's database (one transaction holds both). */
  streamMoney: StreamMoneyStore;
  l402Budgets: L402BudgetStore;
  chainStore: ChainStore;
  webhookStore: WebhookStore;
  subscriptionStore: SubscriptionStore;
  close(): Promise<void>;
}

async function openStores(config: Config, clock: Clock, logger: Logger): Promise<Stores> {
  if (config.databaseUrl !== null) {
    const sql: PostgresSql = connectPostgres({ url: config.databaseUrl });
    try {
      await assertReadCommitted(sql);
    } catch (error) {
      await sql.end({ timeout: 1 });
      throw error;
    }
    await migratePostgresLedger(sql);
    const ledgerStore = createPostgresLedgerStore(sql, { clock });
    const records = await createPostgresRecordStore(sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const streamStore = await createPostgresStreamStore(sql);
    const streamMoney = createPostgresStreamMoneyStore(sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const l402Budgets = await createPostgresL402BudgetStore(sql);
    const chainStore = await createPostgresChainStore(sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const webhookStore = await createPostgresWebhookStore(sql);
    const subscriptionStore = await createPostgresSubscriptionStore(sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    return { dialect: 'postgres', ledgerStore, records, streamStore, streamMoney, l402Budgets, chainStore, webhookStore, subscriptionStore, close: () => sql.end({ timeout: 5 }) };
  }
  const db: SqliteDatabase = openSqlite({ path: path.join(config.dataDir, 'sluice.sqlite') });
  migrateSqliteLedger(db);
  const ledgerStore = createSqliteLedgerStore(db, { clock, ...SERVER_LEDGER_STORE_OPTIONS });
  const records = createSqliteRecordStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now));
  const streamStore = createSqliteStreamStore(db);
  const streamMoney = createSqliteStreamMoneyStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now), { logger });
  const l402Budgets = createSqliteL402BudgetStore(db);
  const chainStore = createSqliteChainStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now));
  const webhookStore = createSqliteWebhookStore(db);
  const subscriptionStore = createSqliteSubscriptionStore(db, (tx, ops, now) => applySqliteOps(tx, ops, now));
  const close = async (): Promise<void> => {
    streamMoney.close();
    db.close();
  };
  return { dialect: 'sqlite', ledgerStore, records, streamStore, streamMoney, l402Budgets, chainStore, webhookStore, subscriptionStore, close };
}

async function openBackend(config: Config, clock: Clock, logger: Logger): Promise<{ backend: LightningBackend; devnet: Devnet | null }> {
  if (config.lightning === 'lnd') {
    const backend = await createLndBackendFromFiles({
      restUrl: config.lnd.restUrl as string,
      macaroonPath: config.lnd.macaroonPath as string,
      tlsCertPath: config.lnd.tlsCertPath as string,
      logger,
    });
    return { backend, devnet: null };
  }
  const devnet = await openDevnet({
    dataDir: config.dataDir,
    clock,
    ...(config.devnet.seed === null ? {} : { seed: config.devnet.seed }),
    faults: {
      latencyMs: config.devnet.latencyMs,
      ...(config.devnet.crashAfterPaymentSettles ? { killAfterSettle: { afterSettledPayments: 1, payer: 'sluice' } } : {}),
    },
  });
  return { backend: devnet.backendFor('sluice'), devnet };
}

export async function createSluice(config: Config, options: SluiceOptions = {}): Promise<Sluice> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // On the devnet the clock can be moved forward (POST /v1/devnet/clock/advance): every
  // service shares this one clock, so invoice expiry, billing and timeouts move together.
  const baseClock = options.clock ?? systemClock;
  const advanceableClock: AdvanceableClock | null = config.lightning === 'lnd' ? null : isAdvanceable(baseClock) ? baseClock : createOffsetClock(baseClock);
  const clock: Clock = advanceableClock ?? baseClock;
  // The devnet's own offset clock keeps its offset across restarts, so time never goes back.
  const clockOffset = advanceableClock !== null && advanceableClock !== baseClock ? (advanceableClock as ReturnType<typeof createOffsetClock>) : null;
  fs.mkdirSync(config.dataDir, { recursive: true });

  const stores = await openStores(config, clock, logger);
  const { ledgerStore, records } = stores;
  if (clockOffset) {
    const saved = Number(await records.getMeta(CLOCK_OFFSET_META) ?? '0');
    if (Number.isSafeInteger(saved) && saved > clockOffset.offsetMs()) clockOffset.advanceMs(saved - clockOffset.offsetMs());
  }
  for (const spec of SYSTEM_ACCOUNTS) {
    const created = await ledgerStore.createAccount(spec);
    if (!created.ok) throw new Error(`system account ${spec.id} exists with another spec`);
  }
  // The queue holds at least one whole batch (a larger SLUICE_GROUP_COMMIT_MAX_BATCH than the default queue would be refused).
  const commitQueue = Math.max(DEFAULT_MAX_QUEUE, config.groupCommitMaxBatch);
  const ledger = createLedger({ store: ledgerStore, maxBatch: config.groupCommitMaxBatch, maxQueue: commitQueue });

  const { backend, devnet } = await openBackend(config, clock, logger);
  const nodeInfo = await backend.getInfo();
  if (devnet) logger.warn({ pubkey: nodeInfo.pubkey }, 'Lightning backend: devnet — a simulated network with FAKE MONEY');

  const apps = createAppService({ records, ledger: ledgerStore, clock });
  const { generatedKey } = await apps.ensureAdminKey(config.adminKey);
  const invoices = createInvoiceService({ records, backend, clock, logger });
  const payments = createPaymentService({
    records,
    backend,
    nodeInfo: () => nodeInfo,
    clock,
    logger,
    paymentTimeoutS: config.paymentTimeoutS,
    notFoundFinalAfterMs: stores.dialect === 'sqlite' ? 0 : 2 * config.paymentTimeoutS * 1000 + 60_000,
  });

  const lightningAddress = (address: string, amountMsat: Msat) =>
    invoiceFromLightningAddress(address, amountMsat, { allowPrivateAddresses: config.lightningAddressAllowPrivate });
  const webhooks = createWebhookService({
    store: stores.webhookStore,
    meta: records,
    clock,
    logger,
    settings: {
      timeoutMs: config.webhooks.timeoutMs,
      retryWindowMs: config.webhooks.retryWindowS * 1000,
      backoffBaseMs: 5000,
      backoffMaxMs: config.webhooks.backoffMaxS * 1000,
      concurrency: config.webhooks.concurrency,
      endpointConcurrency: config.webhooks.endpointConcurrency,
      disableAfterFailures: config.webhooks.disableAfterFailures,
      disableAfterMs: config.webhooks.disableAfterS * 1000,
      allowPrivateAddresses: config.webhooks.allowPrivate,
      pollIntervalMs: 1000,
    },
  });
  // Causes committed elsewhere become events here; a crash in between is the catch-up's (webhooks/service.ts).
  invoices.onPaid((invoice) => webhooks.invoicePaid(invoice));
  payments.onResolved((payment) => {
    if (payment.status !== 'pending') webhooks.paymentResolved({ ...payment, status: payment.status });
  });
  const streamStore = observeStreamCloses(stores.streamStore, (stream) => webhooks.streamClosed(stream));
  const streamMoney = createMoneyCommitter({ store: stores.streamMoney, clock, maxBatch: config.groupCommitMaxBatch, maxQueue: commitQueue });
  const streams = createStreamService({ store: streamStore, ledger, invoices, payments, clock, logger, lightningAddress, money: streamMoney, settleIntervalMs: config.streamSettleIntervalMs });
  const l402 = await createL402Service({
    records, store: stores.l402Budgets, invoices, clock, logger,
    callsPerToken: config.l402.callsPerToken, tokenTtlS: config.l402.tokenTtlS, invoiceExpiryS: config.invoiceExpiryS,
  });
  const chains = createChainService({
    store: stores.chainStore, ledger, invoices, payments, records, apps, clock, logger, lightningAddress,
    defaultStepMsat: config.chain.stepMsat, ttlS: config.chain.ttlS, settleIntervalMs: config.chain.settleIntervalMs, invoiceExpiryS: config.invoiceExpiryS,
  });

  const subscriptions = createSubscriptionService({
    store: stores.subscriptionStore, ledger, invoices, payments, webhooks, clock, logger, lightningAddress, invoiceExpiryS: config.invoiceExpiryS,
  });

  // Settle the past before taking new requests. Streams listen before payments reconcile:
  // a payout that resolved while the server was down is told to its stream (its event, the
  // fee budget's return, the refund that waited for it), not settled unheard.
  await streams.start();
  await payments.start();
  await chains.start();
  await subscriptions.start();
  await invoices.start();
  await webhooks.start();

  const http = await createHttpServer({
    logger,
    apps,
    bodyLimitBytes: config.bodyLimitBytes,
    rateLimitPerMinute: config.rateLimitPerMinute,
    trustedProxies: config.trustedProxies,
    version: VERSION,
    authenticatePayer: async (token) => {
      const stream = await streams.authenticatePayer(token);
      return stream ? { streamId: stream.id } : null;
    },
  });
  registerHealthRoutes(http, { nodeInfo: () => nodeInfo, store: stores.dialect });
  registerAppRoutes(http, {
    apps, ledger: ledgerStore,
    // A sweep that fails is logged and kept due, and its money stays where it was: the balance
    // is read anyway (one stuck stream must not fail every app's balance).
    settleDue: async (appId) => {
      await streams.settleCharges(appId).catch(() => undefined);
      await chains.settleSpent().catch(() => undefined);
    },
  });
  registerInvoiceRoutes(http, { invoices, defaultExpiryS: config.invoiceExpiryS });
  registerPaymentRoutes(http, { payments });
  registerStreamRoutes(http, { streams, now: () => clock.now() });
  registerChainRoutes(http, { chains });
  registerWebhookRoutes(http, { webhooks, now: () => clock.now() });
  registerSubscriptionRoutes(http, { subscriptions, apps });
  const streamSocket = registerStreamSocket(http, {
    streams, apps, logger, now: () => clock.now(), ...(options.streamSocketLimits ? { limits: options.streamSocketLimits } : {}),
  });
  const devnetWallets: DevnetWallets | null = devnet
    ? {
        names: () => devnet.nodeNames(),
        backendFor: (name) => devnet.backendFor(name),
        balanceMsat: (name) => devnet.nodeBalanceMsat(name),
        pubkey: (name) => devnet.nodePubkey(name),
      }
    : null;
  // Credits a Sluice invoice a devnet wallet just paid before answering, so a script that
  // pays and then asks for its balance sees the money (the watcher would a moment later).
  const afterWalletPaid = async (paymentHash: string): Promise<void> => {
    const invoice = await backend.lookupInvoice(paymentHash);
    if (invoice?.state === 'settled' && invoice.settleIndex !== null && invoice.settledAt !== null && invoice.amountPaidMsat !== null) {
      await invoices.handleSettled({ ...invoice, state: 'settled', settleIndex: invoice.settleIndex, settledAt: invoice.settledAt, amountPaidMsat: invoice.amountPaidMsat });
    }
  };
  const advanceClock = devnet && advanceableClock
    ? async (seconds: number): Promise<{ now: number }> => {
        // The new offset is saved before the clock moves: a crash in between restarts at the
        // later time, never behind rows already written with it.
        if (clockOffset) await records.setMeta(CLOCK_OFFSET_META, String(clockOffset.offsetMs() + seconds * 1000));
        advanceableClock.advanceMs(seconds * 1000);
        // Bill the jump at once, so a test or a demo sees its outcome in the answer (twice: a
        // subscription busy with a payment during the first pass is billed by the second).
        for (let pass = 0; pass < 2; pass += 1) {
          await subscriptions.runBilling();
          await subscriptions.idle();
        }
        return { now: clock.now() };
      }
    : null;
  registerDevnetRoutes(http, { wallets: devnetWallets, afterWalletPaid, advanceClock });
  if (devnet && options.seedDemoBusinesses) await seedDemoBusinesses({ apps, subscriptions });
  registerDashboardRoutes(http, { apps, streams, subscriptions, invoices, wallets: devnetWallets, afterWalletPaid, topUpExpiryS: config.invoiceExpiryS });
  registerDemoRoutes(http, {
    apps, streams, invoices, ledger, wallets: devnetWallets, afterWalletPaid, logger, now: () => clock.now(),
    ...(options.sdkDir ? { sdkDir: options.sdkDir } : {}),
  });
  await http.ready();

  let closing: Promise<void> | null = null;
  const close = async (): Promise<void> => {
    // Drain: requests in progress may finish for up to SLUICE_SHUTDOWN_TIMEOUT_MS; after
    // that their connections are cut. Whatever they had made durable stays; a payment cut
    // off mid-flight is reconciled by payment hash at the next start.
    const drainTimer = setTimeout(() => {
      logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timeout: closing connections still open');
      http.server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    drainTimer.unref();
    await http.close();
    clearTimeout(drainTimer);
    await l402.close();
    await invoices.stop();
    await streams.stop();
    await streamMoney.drain();
    await chains.stop();
    await subscriptions.stop();
    await payments.stop();
    await webhooks.stop();
    await ledger.close();
    await backend.close();
    await devnet?.close();
    await stores.close();
  };

  return {
    config,
    http,
    nodeInfo,
    store: stores.dialect,
    ledger,
    streamMoney,
    records,
    backend,
    devnet,
    apps,
    invoices,
    payments,
    streams,
    chains,
    webhooks,
    subscriptions,
    clock,
    streamSocket,
    l402,
    generatedAdminKey: generatedKey,
    async listen() {
      return http.listen({ port: config.port, host: config.host });
    },
    close() {
      closing ??= close();
      return closing;
    },
  };
}
