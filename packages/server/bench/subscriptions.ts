/**
 * Subscriptions benchmark (issue 5 §5): active subscriptions billed in one process without
 * falling behind the clock, target >= 100,000 subscriptions with one-minute increments.
 *
 *   npx tsx packages/server/bench/subscriptions.ts [--subscriptions 100000] [--json out.json]
 *
 * Setup (not timed): one plan (1 minute increments, a day prepaid), N subscriptions in
 * trial whose trial ends within the first minute, each funded with a day of increments by
 * a ledger transfer (as a paid invoice would). SQLite in a fresh temp dir (WAL,
 * synchronous=FULL), the real ledger, store and subscription service; invoices, payments
 * and webhooks are idle stand-ins (no invoice is due: the buffer stays above its floor).
 * The clock is a manual clock, moved by the benchmark.
 *
 * Two shapes of load, both through `runBilling()` (what the service's 1-second tick runs):
 * - burst: every subscription's increment starts at the same instant (the worst case: all
 *   N bill in one pass). Keeping up means the pass takes well under the increment (60 s).
 * - spread: starts spread evenly over the minute (as real sign-ups are), the clock moved by
 *   1 s per pass for 2 minutes: each pass bills about N/60; keeping up means every pass
 *   takes under 1 s, the tick.
 * What counts as billed: a subscription whose new row and ledger charge were committed
 * (fsynced) by the pass. Totals are checked at the end: every increment that started was
 * charged exactly once.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createManualClock } from '../src/clock.js';
import { openSqlite } from '../src/db/sqlite.js';
import { createLedger } from '../src/ledger/group-commit.js';
import { SYSTEM_ACCOUNTS, LIGHTNING_ACCOUNT_ID } from '../src/ledger/accounts.js';
import { applyOpsInTransaction, createSqliteLedgerStore, migrateSqliteLedger, SERVER_LEDGER_STORE_OPTIONS } from '../src/ledger/sqlite/store.js';
import { msat } from '../src/money/msat.js';
import type { InvoiceService } from '../src/invoices/service.js';
import type { PaymentService } from '../src/payments/service.js';
import { createSqliteSubscriptionStore } from '../src/subscriptions/store.js';
import { createSubscriptionService, subscriptionAccountId } from '../src/subscriptions/service.js';
import type { PlanRow, SubscriptionRow } from '../src/subscriptions/model.js';
import { balanceOf } from '../src/ledger/store.js';
import { quantile } from './quantile.js';

export interface SubscriptionsBenchReport {
  subscriptions: number;
  store: 'sqlite';
  setupSeconds: number;
  burst: { passes: number; billedPerPass: number; passMsMedian: number; passMsMax: number; chargesPerSecond: number };
  spread: { passes: number; billedPerPassMedian: number; passMsMedian: number; passMsP99: number; passMsMax: number; keptUp: boolean };
  chargedExactly: boolean;
}

const PRICE_MSAT = 60_000n; // 1 sat a second, billed per minute
const INCREMENT_S = 60;

export async function runSubscriptionsBenchmark(options: { subscriptions?: number } = {}): Promise<SubscriptionsBenchReport> {
  const count = options.subscriptions ?? 100_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-subs-'));
  const T0 = Date.UTC(2027, 0, 1);
  const clock = createManualClock(T0);
  const db = openSqlite({ path: path.join(dir, 'sluice.sqlite') });
  migrateSqliteLedger(db);
  const ledgerStore = createSqliteLedgerStore(db, { clock, ...SERVER_LEDGER_STORE_OPTIONS });
  for (const spec of SYSTEM_ACCOUNTS) await ledgerStore.createAccount(spec);
  const ledger = createLedger({ store: ledgerStore });
  const store = createSqliteSubscriptionStore(db, (tx, ops, now) => applyOpsInTransaction(tx, ops, now));
  const logger = pino({ level: 'silent' });
  const invoices = {
    createInvoice: async () => ({ ok: false, error: 'LightningUnavailable' }),
    onPaid: () => () => undefined,
  } as unknown as InvoiceService;
  const payments = { onResolved: () => () => undefined, getPayment: async () => null } as unknown as PaymentService;

  const setupStarted = performance.now();
  const appId = 'app_bench';
  await ledgerStore.createAccount({ id: `app:${appId}`, ownerId: appId, limitMsat: msat(0n), code: 'app' });
  const plan: PlanRow = {
    id: 'plan_bench', appId, name: 'per minute', rateKind: 'per_increment', priceMsat: msat(PRICE_MSAT), incrementS: INCREMENT_S,
    prepaymentS: 86_400, graceS: 600, contractS: null, minSettlementMsat: msat(1_000_000n), trialS: 60, maxPauseS: 0, createdAt: T0,
  };
  await store.insertPlan(plan);
  // Two groups: the burst group's trials all end at T0 + 60 s; the spread group's end evenly over the following minute.
  const burst = Math.floor(count / 2);
  const fundingMsat = msat(PRICE_MSAT * 1440n * 2n);
  const rowFor = (index: number): SubscriptionRow => {
    const id = `sub_bench${index}`;
    const trialEndsAt = index < burst ? T0 + 60_000 : T0 + 120_000 + Math.floor(((index - burst) * 60_000) / (count - burst));
    return {
      id, appId, planId: plan.id, accountId: subscriptionAccountId(id), payerTokenHash: `bench-${index}`, status: 'trialing',
      refundDestination: null, metadata: '', createdAt: T0, trialEndsAt, activatedAt: null, contractEndsAt: null, segment: 0,
      anchorAt: null, started: 0, owed: 0, pastDueSince: null, suspendedAt: null, pausedAt: null, endedAt: null, endedBy: null, chargedMsat: 0n,
      invoiceHash: null, invoiceRequest: null, invoiceAmountMsat: null, invoiceExpiresAt: null, invoiceCount: 0,
      refundStatus: 'none', refundMsat: 0n, refundAttempts: 0, refundPaymentHash: null, refundPaymentRequest: null, refundMaxFeeMsat: null,
    };
  };
  // Setup in large transactions (createAccount and insertSubscription run synchronously inside).
  const CHUNK = 5000;
  for (let start = 0; start < count; start += CHUNK) {
    db.transaction(() => {
      for (let index = start; index < Math.min(count, start + CHUNK); index += 1) {
        const row = rowFor(index);
        void ledgerStore.createAccount({ id: row.accountId, ownerId: appId, limitMsat: msat(0n), code: 'subscription' });
        void store.insertSubscription(row, []);
      }
    })();
    const ops = [];
    for (let index = start; index < Math.min(count, start + CHUNK); index += 1) {
      ops.push({ kind: 'transfer' as const, debitAccountId: LIGHTNING_ACCOUNT_ID, creditAccountId: subscriptionAccountId(`sub_bench${index}`), amountMsat: fundingMsat, code: 'invoice' });
    }
    for (let at = 0; at < ops.length; at += 1000) {
      const results = await ledger.applyMany(ops.slice(at, at + 1000));
      if (results.some((result) => !result.ok)) throw new Error('funding refused');
    }
  }
  const service = createSubscriptionService({
    store, ledger, invoices, payments, webhooks: null, clock, logger, lightningAddress: async () => ({ ok: false, error: 'InvalidAddress', detail: '' }) as never,
    invoiceExpiryS: 3600, tickMs: 3_600_000,
  });
  await service.start();
  if (service.liveCount() !== count) throw new Error(`loaded ${service.liveCount()} of ${count}`);
  const setupSeconds = (performance.now() - setupStarted) / 1000;

  // One pass per second of the clock for 3 minutes from the burst group's trial end: at each
  // whole minute the burst group bills all at once; from T0 + 120 s the spread group bills
  // about 1/60 of itself per pass.
  const passes: { ms: number; billed: number }[] = [];
  const first = T0 + 60_000;
  const seconds = 180;
  for (let second = 0; second < seconds; second += 1) {
    clock.set(first + second * 1000);
    const started = performance.now();
    const { billed } = await service.runBilling();
    passes.push({ ms: performance.now() - started, billed });
  }
  const burstRuns = passes.filter((run) => run.billed >= burst);
  const spreadPasses = passes.filter((run) => run.billed > 0 && run.billed < burst);
  await service.stop();
  await ledger.close();

  // Exactness: every increment that started was charged once, and the ledger agrees with the rows.
  const end = first + (seconds - 1) * 1000;
  let chargedExactly = true;
  for (const index of [0, burst - 1, burst, count - 1]) {
    const row = rowFor(index);
    const startedIncrements = end < (row.trialEndsAt as number) ? 0 : Math.floor((end - (row.trialEndsAt as number)) / 60_000) + 1;
    const account = await ledgerStore.getAccount(row.accountId);
    if (!account || balanceOf(account) !== fundingMsat - PRICE_MSAT * BigInt(startedIncrements)) chargedExactly = false;
  }
  const app = await ledgerStore.getAccount(`app:${appId}`);
  let expectedRevenue = 0n;
  for (let index = 0; index < count; index += 1) {
    const trialEndsAt = rowFor(index).trialEndsAt as number;
    if (end >= trialEndsAt) expectedRevenue += PRICE_MSAT * BigInt(Math.floor((end - trialEndsAt) / 60_000) + 1);
  }
  if (!app || balanceOf(app) !== expectedRevenue) chargedExactly = false;
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });

  return {
    subscriptions: count,
    store: 'sqlite',
    setupSeconds,
    burst: {
      passes: burstRuns.length,
      billedPerPass: burst,
      passMsMedian: quantile(burstRuns.map((run) => run.ms), 0.5),
      passMsMax: Math.max(...burstRuns.map((run) => run.ms)),
      chargesPerSecond: burstRuns.reduce((sum, run) => sum + run.billed, 0) / (burstRuns.reduce((sum, run) => sum + run.ms, 0) / 1000),
    },
    spread: {
      passes: spreadPasses.length,
      billedPerPassMedian: quantile(spreadPasses.map((run) => run.billed), 0.5),
      passMsMedian: quantile(spreadPasses.map((run) => run.ms), 0.5),
      passMsP99: quantile(spreadPasses.map((run) => run.ms), 0.99),
      passMsMax: Math.max(...spreadPasses.map((run) => run.ms)),
      keptUp: spreadPasses.every((run) => run.ms < 1000) && burstRuns.every((run) => run.ms < 60_000),
    },
    chargedExactly,
  };
}

export function subscriptionsMarkdown(report: SubscriptionsBenchReport): string {
  return [
    `${report.subscriptions} subscriptions on one plan with one-minute increments, ${report.store}, one process (setup ${report.setupSeconds.toFixed(1)} s, not timed); totals exact: ${report.chargedExactly ? 'yes' : 'NO'}.`,
    '',
    '| load | passes | subscriptions billed per pass | pass ms (median) | pass ms (p99) | pass ms (max) | budget per pass | kept up |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    `| burst (half of them start an increment at the same instant) | ${report.burst.passes} | ${report.burst.billedPerPass} | ${Math.round(report.burst.passMsMedian)} | - | ${Math.round(report.burst.passMsMax)} | 60,000 ms | ${report.burst.passMsMax < 60_000 ? 'yes' : 'no'} |`,
    `| spread (the other half, starts spread over the minute, a pass per second) | ${report.spread.passes} | ${report.spread.billedPerPassMedian} | ${Math.round(report.spread.passMsMedian)} | ${Math.round(report.spread.passMsP99)} | ${Math.round(report.spread.passMsMax)} | 1,000 ms | ${report.spread.keptUp ? 'yes' : 'no'} |`,
    '',
    `Burst billing rate: ${Math.round(report.burst.chargesPerSecond)} subscriptions billed per second (row + ledger charge committed, fsynced, 1,000 per transaction).`,
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const index = args.indexOf(name);
    return index === -1 ? undefined : args[index + 1];
  };
  const report = await runSubscriptionsBenchmark({ subscriptions: Number(flag('--subscriptions') ?? '100000') });
  console.log(subscriptionsMarkdown(report));
  const json = flag('--json');
  if (json) fs.writeFileSync(json, JSON.stringify(report, null, 2));
}
