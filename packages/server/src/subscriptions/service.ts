/**
 * The subscription service: plans, subscriptions, billing by the clock, prepayment
 * invoices, cancel and refund.
 *
 * Threat model: the merchant (app key) and the customer (payer token) are different
 * parties. The merchant prices the plan and may cancel; it can never charge more than
 * the increments that started. The customer funds, cancels and chooses where the refund
 * goes; it can never move money to itself beyond what is left unused. Every change of a
 * subscription commits with its ledger ops and its webhook events in one transaction
 * (store.ts); per subscription, steps run one at a time (a lock in memory), so a cancel
 * that races a billing pass sees the pass's result, never half of it.
 *
 * One process owns the live state (SQLite: the only process). Subscriptions not ended are
 * held in memory with their balance, so a status read is a map lookup.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { appAccountId } from '../apps/service.js';
import type { InvoiceService } from '../invoices/service.js';
import { BOLT11_AMOUNT_MAX_MSAT } from '../lightning/bolt11/index.js';
import type { Ledger } from '../ledger/group-commit.js';
import { balanceOf, type LedgerOp } from '../ledger/store.js';
import { msat, type Msat } from '../money/msat.js';
import type { PaymentService } from '../payments/service.js';
import type { invoiceFromLightningAddress } from '../lightning/lnurl.js';
import { randomId } from '../util/fingerprint.js';
import type { EventType, WebhookEmitter } from '../webhooks/index.js';
import { advance, fund, holdRefund, nextDueAt, paidThrough, pause, prepaymentDue, unpause, type BillingOutcome, type Charge } from './billing.js';
import { FINAL_STATUSES, type PlanRow, type RefundDestination, type SubscriptionOccurrence, type SubscriptionRow } from './model.js';
import { checkPlan, MAX_PLANS_PER_APP, type PlanInput, type PlanProblem } from './plans.js';
import type { Statement, SubscriptionStore } from './store.js';
import { cloneRow, type LiveSubscription } from './live.js';
import { createRefunds, keptDestination } from './refunds.js';

export const SUBSCRIPTION_TOKEN_PREFIX = 'spt_';
export const MAX_METADATA_LENGTH = 1024;
/** Subscriptions per billing transaction. */
export const DEFAULT_BILLING_BATCH = 1000;

export type SubscriptionError =
  | PlanProblem
  | 'PlanNotFound'
  | 'PlanLimit'
  | 'SubscriptionNotFound'
  | 'SubscriptionEnded'
  | 'PauseNotAllowed'
  | 'NotPaused'
  | 'NothingToRefund'
  | 'RefundInFlight'
  | 'RefundAmountMismatch'
  | 'RefundInvoiceInvalid'
  | 'RefundAddressFailed'
  | 'RefundUnavailable'
  | 'InvalidAmount'
  | 'LightningUnavailable';

export type Fail = { ok: false; error: SubscriptionError; detail?: string };

export interface SubscriptionView {
  row: SubscriptionRow;
  plan: PlanRow;
  /** The prepaid balance not yet charged. */
  balanceMsat: bigint;
  paidThrough: number | null;
  /** Owed increments (the grace period's service) not paid yet. */
  owedMsat: bigint;
  graceEndsAt: number | null;
  /** When the view was computed (the clock). */
  at: number;
}

export interface CreateSubscriptionInput {
  planId: string;
  refundDestination: RefundDestination | null;
  metadata: string;
}

export interface SubscriptionService {
  createPlan(appId: string, input: PlanInput): Promise<{ ok: true; plan: PlanRow } | Fail>;
  getPlan(appId: string, planId: string): Promise<PlanRow | null>;
  listPlans(appId: string): Promise<PlanRow[]>;
  create(appId: string, input: CreateSubscriptionInput): Promise<{ ok: true; subscription: SubscriptionView; payerToken: string } | Fail>;
  /** The subscription as of now (appId null: any app). In memory for subscriptions not ended. */
  get(subscriptionId: string, appId: string | null): Promise<SubscriptionView | null>;
  list(appId: string, limit: number): Promise<SubscriptionView[]>;
  authenticatePayer(token: string): Promise<SubscriptionView | null>;
  /** Cancels now; the unused balance goes to `destination` (or the one kept), else it is held for a later refund. */
  cancel(subscriptionId: string, by: 'customer' | 'merchant', destination: RefundDestination | null): Promise<{ ok: true; subscription: SubscriptionView; refundError: Fail | null } | Fail>;
  /** Pauses an active subscription whose plan allows it: no increments start until resumed (or the plan's longest pause is over). */
  pause(subscriptionId: string, by: 'customer' | 'merchant'): Promise<{ ok: true; subscription: SubscriptionView } | Fail>;
  /** Resumes a paused subscription now: a new increment starts and is billed at once. */
  resume(subscriptionId: string, by: 'customer' | 'merchant'): Promise<{ ok: true; subscription: SubscriptionView } | Fail>;
  /** Pays out a held (or failed) refund of an ended subscription. */
  refund(subscriptionId: string, destination: RefundDestination | null): Promise<{ ok: true; subscription: SubscriptionView } | Fail>;
  /** The open prepayment invoice, or a new one (for `amountMsat`, else what is due, else one prepayment). */
  payInvoice(subscriptionId: string, amountMsat: Msat | null): Promise<{ ok: true; subscription: SubscriptionView } | Fail>;
  /** Bills every subscription due by the clock's now; resolves after the commits (invoices they made due follow: see idle). */
  runBilling(): Promise<{ billed: number }>;
  /** Waits until background steps (invoices, funding) finished (tests, the clock advance). */
  idle(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Subscriptions held in memory (benchmark, metrics). */
  liveCount(): number;
}

export interface SubscriptionServiceDeps {
  store: SubscriptionStore;
  ledger: Ledger;
  invoices: InvoiceService;
  payments: PaymentService;
  /** Where subscription.* events go; null: none (the benchmark). */
  webhooks: WebhookEmitter | null;
  clock: Clock;
  logger: Logger;
  lightningAddress: typeof invoiceFromLightningAddress;
  invoiceExpiryS: number;
  tickMs?: number;
  billingBatch?: number;
}


export function subscriptionAccountId(subscriptionId: string): string {
  return `sub:${subscriptionId}`;
}

export function hashSubscriptionToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}


/** The row no longer offers its prepayment invoice (paid, expired, or the subscription ended). */
function dropInvoice(row: SubscriptionRow): void {
  row.invoiceHash = row.invoiceRequest = null;
  row.invoiceAmountMsat = row.invoiceExpiresAt = null;
}

function chargeOp(row: SubscriptionRow, charge: Charge): LedgerOp {
  const range = `${charge.segment}:${charge.fromIndex}:${charge.count}`;
  return {
    kind: 'transfer',
    debitAccountId: row.accountId,
    creditAccountId: appAccountId(row.appId),
    amountMsat: charge.amountMsat,
    code: 'subscription_charge',
    reference: `${row.id}/${range}`,
    idempotencyKey: `sub:${row.id}:charge:${range}`,
  };
}

export function createSubscriptionService(deps: SubscriptionServiceDeps): SubscriptionService {
  const { store, ledger, invoices, payments, clock, logger } = deps;
  const live = new Map<string, LiveSubscription>();
  /** Payer token hash -> subscription id, for the subscriptions in memory (a read per request otherwise). */
  const byToken = new Map<string, string>();
  const plans = new Map<string, PlanRow>();
  const background = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | null = null;
  let stopped = true;
  let billing: Promise<{ billed: number }> | null = null;
  const unsubscribers: (() => void)[] = [];

  const planOf = async (planId: string): Promise<PlanRow | null> => {
    const cached = plans.get(planId);
    if (cached) return cached;
    const plan = await store.getPlan(planId);
    if (plan) plans.set(planId, plan);
    return plan;
  };

  /** Runs `step` alone on this subscription (after the steps queued before it). */
  const locked = <T>(state: LiveSubscription, step: () => Promise<T>): Promise<T> => {
    state.busy += 1;
    const run = state.tail.then(step);
    state.tail = run.then(() => undefined, () => undefined);
    void state.tail.then(() => { state.busy -= 1; });
    return run;
  };

  /** Takes the locks of many subscriptions at once (a billing batch); resolves when all are held. */
  const lockAll = async (states: LiveSubscription[]): Promise<() => void> => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    const before = states.map((state) => {
      const previous = state.tail;
      state.tail = held;
      return previous;
    });
    await Promise.all(before);
    return release;
  };

  const track = (work: Promise<void>): void => {
    background.add(work);
    void work.finally(() => background.delete(work));
  };

  const eventStatements = (row: SubscriptionRow, occurrences: readonly SubscriptionOccurrence[]): Statement[] => {
    if (!deps.webhooks || occurrences.length === 0) return [];
    const statements: Statement[] = [];
    for (const occurrence of occurrences) {
      const type = `subscription.${occurrence.type}` as EventType;
      const data = {
        subscription_id: row.id,
        plan_id: row.planId,
        status: occurrence.status ?? row.status,
        at: new Date(occurrence.at).toISOString(),
        ...occurrence.data,
      };
      statements.push(...deps.webhooks.prepareEvent(row.appId, type, data, { key: `${type}:${occurrence.cause}`, createdAt: occurrence.at }).statements);
    }
    return statements;
  };

  /** Commits one subscription's new row with its charges and events; then makes it the live state. */
  const commitOne = async (state: LiveSubscription, row: SubscriptionRow, outcome: BillingOutcome, extraOps: LedgerOp[] = []): Promise<void> => {
    await store.commit([row], [...outcome.charges.map((charge) => chargeOp(row, charge)), ...extraOps], eventStatements(row, outcome.occurrences), clock.now());
    if (outcome.occurrences.length > 0) deps.webhooks?.notify();
    if (adopt(state, row, outcome.balance)) refundKeptSoon(state);
  };

  /**
   * Makes a committed row the live state. True when that commit expired the subscription:
   * its held refund is then owed to the kept destination (refundKeptSoon).
   */
  const adopt = (state: LiveSubscription, row: SubscriptionRow, balance: bigint): boolean => {
    const expired = !FINAL_STATUSES.has(state.row.status) && row.status === 'expired';
    state.row = row;
    state.balance = balance;
    state.due = nextDueAt(row, state.plan);
    return expired;
  };

  /**
   * A held refund of an ended subscription goes to the destination kept since creation (a
   * Lightning address or a keysend key), as a cancel sends it: after an expiry, or at start
   * for one a crash cut off before it was sent. In the background, under the lock; without a
   * kept destination it stays held for `POST .../refund`.
   */
  const refundKeptSoon = (state: LiveSubscription): void => {
    if (state.row.refundStatus !== 'held' || keptDestination(state.row) === null) return;
    track(locked(state, async () => {
      if (!FINAL_STATUSES.has(state.row.status)) return;
      await refunds.sendToKept(state, 'the refund of an ended subscription could not be sent');
      maybeForget(state);
    }).catch((error) => logger.error({ err: error, subscriptionId: state.row.id }, 'the refund of an ended subscription failed')));
  };

  const merge = (...outcomes: BillingOutcome[]): BillingOutcome => ({
    charges: outcomes.flatMap((outcome) => outcome.charges),
    occurrences: outcomes.flatMap((outcome) => outcome.occurrences),
    balance: (outcomes[outcomes.length - 1] as BillingOutcome).balance,
  });

  const view = (state: LiveSubscription, now = clock.now()): SubscriptionView => {
    // The row as of now, without writing: billing may be up to one tick behind.
    const row = cloneRow(state.row);
    const outcome = advance(row, state.plan, state.balance, now);
    const graceEndsAt = row.pastDueSince === null ? null : row.pastDueSince + state.plan.graceS * 1000;
    return {
      row,
      plan: state.plan,
      balanceMsat: outcome.balance,
      paidThrough: paidThrough(row, state.plan, outcome.balance),
      owedMsat: state.plan.priceMsat * BigInt(row.owed),
      graceEndsAt,
      at: now,
    };
  };

  const load = async (row: SubscriptionRow): Promise<LiveSubscription | null> => {
    const plan = await planOf(row.planId);
    const account = await ledger.getAccount(row.accountId);
    if (!plan || !account) throw new Error(`subscription ${row.id} has no plan or no ledger account`);
    const existing = live.get(row.id);
    if (existing) return existing;
    const state: LiveSubscription = { row, plan, balance: balanceOf(account), tail: Promise.resolve(), busy: 0, due: nextDueAt(row, plan) };
    live.set(row.id, state);
    byToken.set(row.payerTokenHash, row.id);
    if (row.status === 'expired' && row.refundStatus === 'none' && state.balance > 0n) await holdLegacyExpiry(state);
    return state;
  };

  /**
   * A subscription that expired under a version that did not hold the balance left for a
   * refund: it is held now (and sent to a kept destination), once, when it is first read.
   */
  const holdLegacyExpiry = (state: LiveSubscription): Promise<void> => locked(state, async () => {
    if (state.row.status !== 'expired' || state.row.refundStatus !== 'none' || state.balance <= 0n) return;
    const row = cloneRow(state.row);
    holdRefund(row, state.balance);
    await commitOne(state, row, { charges: [], occurrences: [], balance: state.balance });
    refundKeptSoon(state);
  });

  /** The live state, or a loaded one for an ended subscription (not kept unless its refund is open). */
  const stateOf = async (subscriptionId: string): Promise<LiveSubscription | null> => {
    const cached = live.get(subscriptionId);
    if (cached) return cached;
    const row = await store.getSubscription(subscriptionId);
    if (!row) return null;
    return load(row);
  };

  /** Forgets an ended subscription whose refund is settled: memory holds the ones still working. */
  const maybeForget = (state: LiveSubscription): void => {
    if (FINAL_STATUSES.has(state.row.status) && !['held', 'pending', 'failed'].includes(state.row.refundStatus)) {
      if (live.get(state.row.id) === state) {
        live.delete(state.row.id);
        byToken.delete(state.row.payerTokenHash);
      }
    }
  };

  /**
   * Issues the prepayment invoice that is due, if none is open. Runs under the lock. Says why
   * an invoice could not be made (the amount, or the node), so a request for one can answer.
   */
  const issueInvoiceIfDue = async (state: LiveSubscription, requestedMsat: Msat | null = null): Promise<Fail | null> => {
    const now = clock.now();
    const current = state.row;
    if (FINAL_STATUSES.has(current.status)) return null;
    const open = current.invoiceHash !== null && (current.invoiceExpiresAt ?? 0) > now;
    if (open && requestedMsat === null) return null;
    const amount = requestedMsat ?? prepaymentDue(current, state.plan, state.balance);
    if (amount === null) {
      if (current.invoiceHash !== null && !open) {
        const row = cloneRow(current);
        dropInvoice(row);
        await commitOne(state, row, { charges: [], occurrences: [], balance: state.balance });
      }
      return null;
    }
    const count = current.invoiceCount + 1;
    const created = await invoices.createInvoice(current.appId, {
      amountMsat: amount,
      description: `${state.plan.name.slice(0, 120)}: prepayment for subscription ${current.id}`,
      expiryS: deps.invoiceExpiryS,
      idempotencyKey: `sub:${current.id}:invoice:${count}:${amount}`,
      creditAccountId: current.accountId,
    });
    if (!created.ok) {
      logger.warn({ subscriptionId: current.id, error: created.error }, 'could not create a prepayment invoice');
      return created.error === 'AmountTooLarge'
        ? { ok: false, error: 'InvalidAmount', detail: created.detail ?? 'the amount is too large for an invoice' }
        : { ok: false, error: 'LightningUnavailable', detail: created.detail ?? created.error };
    }
    const row = cloneRow(state.row);
    row.invoiceHash = created.invoice.paymentHash;
    row.invoiceRequest = created.invoice.paymentRequest;
    row.invoiceAmountMsat = created.invoice.amountMsat;
    row.invoiceExpiresAt = created.invoice.expiresAt;
    row.invoiceCount = count;
    const occurrences: SubscriptionOccurrence[] = [];
    if (row.status !== 'created' && requestedMsat === null) {
      occurrences.push({
        type: 'balance_low',
        at: now,
        cause: `${row.id}:${created.invoice.paymentHash}`,
        data: {
          balance_msat: state.balance.toString(),
          amount_msat: amount.toString(),
          payment_request: created.invoice.paymentRequest,
          payment_hash: created.invoice.paymentHash,
          expires_at: new Date(created.invoice.expiresAt).toISOString(),
        },
      });
    }
    await commitOne(state, row, { charges: [], occurrences, balance: state.balance });
    return null;
  };

  const invoiceSoon = (state: LiveSubscription): void => {
    if (stopped && !billing) return;
    const now = clock.now();
    const row = state.row;
    if (FINAL_STATUSES.has(row.status)) return;
    if (row.invoiceHash !== null && (row.invoiceExpiresAt ?? 0) > now) return;
    if (prepaymentDue(row, state.plan, state.balance) === null && row.invoiceHash === null) return;
    track(locked(state, async () => { await issueInvoiceIfDue(state); }).catch((error) => logger.error({ err: error, subscriptionId: row.id }, 'prepayment invoice failed')));
  };

  /** Money reached the subscription's account (an invoice was credited). */
  const onFunded = (state: LiveSubscription, paymentHash: string, amountPaidMsat: Msat): Promise<void> => locked(state, async () => {
    const now = clock.now();
    const account = await ledger.getAccount(state.row.accountId);
    if (!account) return;
    const row = cloneRow(state.row);
    const wasActivated = row.activatedAt !== null;
    if (FINAL_STATUSES.has(row.status)) {
      // Paid after the end (an invoice still open): the money is the customer's to get back.
      // A refund in flight keeps the amount it sends; the attempt's end holds the new money
      // (and sends it on to a destination that can be paid again: refunds.ts).
      if (row.refundStatus !== 'pending') {
        row.refundMsat = balanceOf(account);
        if (row.refundMsat > 0n) row.refundStatus = 'held';
      }
      const occurrences: SubscriptionOccurrence[] = [{ type: 'payment_succeeded', at: now, cause: `${row.id}:${paymentHash}`, data: { amount_msat: amountPaidMsat.toString(), payment_hash: paymentHash, late: true } }];
      await commitOne(state, row, { charges: [], occurrences, balance: balanceOf(account) });
      await refunds.sendToKept(state, 'the refund of a late payment could not be sent').catch((error) => logger.error({ err: error, subscriptionId: row.id }, 'refund of a late payment failed'));
      return;
    }
    // Everything up to now happened before this money: bill it with the old balance first.
    const before = advance(row, state.plan, state.balance, now);
    const spent = before.charges.reduce((sum, charge) => sum + charge.amountMsat, 0n);
    const funded = fund(row, state.plan, balanceOf(account) - spent, now);
    const paid: SubscriptionOccurrence = { type: 'payment_succeeded', at: now, cause: `${row.id}:${paymentHash}`, data: { amount_msat: amountPaidMsat.toString(), payment_hash: paymentHash } };
    const occurrences = [...before.occurrences, paid, ...funded.occurrences];
    if (wasActivated && row.status === 'active') {
      occurrences.push({ type: 'renewed', at: now, cause: `${row.id}:${paymentHash}`, data: { amount_msat: amountPaidMsat.toString(), payment_hash: paymentHash } });
    }
    if (row.invoiceHash === paymentHash) {
      dropInvoice(row);
    }
    const outcome = merge(before, funded);
    // The contract ended before this money arrived: it is the customer's, refunded with the rest.
    if (FINAL_STATUSES.has(row.status)) {
      holdRefund(row, outcome.balance);
      paid.data.late = true;
    }
    const paidThroughAt = paidThrough(row, state.plan, outcome.balance);
    for (const occurrence of occurrences) occurrence.data.paid_through = paidThroughAt === null ? null : new Date(paidThroughAt).toISOString();
    await commitOne(state, row, { ...outcome, occurrences });
    await issueInvoiceIfDue(state);
  });

  const onInvoicePaid = (invoice: { creditAccountId: string; paymentHash: string; amountPaidMsat: Msat | null }): void => {
    if (!invoice.creditAccountId.startsWith('sub:') || invoice.amountPaidMsat === null) return;
    const amount = invoice.amountPaidMsat;
    const subscriptionId = invoice.creditAccountId.slice('sub:'.length);
    track((async () => {
      const state = await stateOf(subscriptionId);
      if (state) await onFunded(state, invoice.paymentHash, amount);
    })().catch((error) => logger.error({ err: error, subscriptionId }, 'could not record a subscription payment')));
  };

  const refunds = createRefunds({
    ledger, payments, logger, lightningAddress: deps.lightningAddress,
    commit: (state, row, outcome, extraOps) => commitOne(state, row, outcome, extraOps),
    forget: (state) => maybeForget(state),
  });
  const { resolve: resolveRefund, send: sendRefund, resume: resumeRefund, target: refundTarget } = refunds;

  const onPaymentResolved = (payment: { debitAccountId: string; paymentHash: string; status: string; feeMsat: bigint | null }): void => {
    if (!payment.debitAccountId.startsWith('sub:')) return;
    const subscriptionId = payment.debitAccountId.slice('sub:'.length);
    track((async () => {
      const state = await stateOf(subscriptionId);
      if (state) await locked(state, () => resolveRefund(state, payment));
    })().catch((error) => logger.error({ err: error, subscriptionId }, 'could not record a refund outcome')));
  };

  /** One billing pass over the subscriptions due by now, in batches of one transaction each. */
  const billDue = async (): Promise<{ billed: number }> => {
    const now = clock.now();
    // A subscription busy with a cancel, a refund or a payment bills itself in that step or
    // at the next pass (a second later); waiting for it would hold the whole batch.
    const due = [...live.values()].filter((state) => state.due !== null && state.due <= now && state.busy === 0);
    const batchSize = deps.billingBatch ?? DEFAULT_BILLING_BATCH;
    let billed = 0;
    for (let start = 0; start < due.length; start += batchSize) {
      const batch = due.slice(start, start + batchSize);
      const release = await lockAll(batch);
      try {
        const rows: SubscriptionRow[] = [];
        const ops: LedgerOp[] = [];
        const events: Statement[] = [];
        const results: { state: LiveSubscription; row: SubscriptionRow; outcome: BillingOutcome }[] = [];
        for (const state of batch) {
          // Re-checked under the lock: a cancel or a payment may have moved it meanwhile.
          if (state.due === null || state.due > now) continue;
          const row = cloneRow(state.row);
          const outcome = advance(row, state.plan, state.balance, now);
          rows.push(row);
          for (const charge of outcome.charges) ops.push(chargeOp(row, charge));
          events.push(...eventStatements(row, outcome.occurrences));
          results.push({ state, row, outcome });
        }
        if (rows.length === 0) continue;
        await store.commit(rows, ops, events, now);
        if (events.length > 0) deps.webhooks?.notify();
        const expired: LiveSubscription[] = [];
        for (const { state, row, outcome } of results) {
          if (adopt(state, row, outcome.balance)) expired.push(state);
          maybeForget(state);
        }
        for (const state of expired) refundKeptSoon(state);
        billed += rows.length;
      } finally {
        release();
      }
      for (const state of batch) invoiceSoon(state);
    }
    // Expired invoices of subscriptions that billing did not touch.
    for (const state of live.values()) {
      if (state.row.invoiceHash !== null && (state.row.invoiceExpiresAt ?? 0) <= now) invoiceSoon(state);
    }
    return { billed };
  };

  const runBilling = async (): Promise<{ billed: number }> => {
    // One pass at a time; a caller arriving during a pass gets a fresh pass after it, so it
    // sees everything due by its own now.
    while (billing) await billing.catch(() => undefined);
    billing = billDue();
    try {
      return await billing;
    } finally {
      billing = null;
    }
  };

  const get = async (subscriptionId: string, appId: string | null): Promise<SubscriptionView | null> => {
    const state = await stateOf(subscriptionId);
    if (!state || (appId !== null && state.row.appId !== appId)) return null;
    const result = view(state);
    // Only when no step holds it: one queued (a late payment's refund) must not be left
    // working on a state a later request would load again beside it.
    if (state.busy === 0) maybeForget(state);
    return result;
  };

  const idle = async (): Promise<void> => {
    while (background.size > 0) await Promise.allSettled([...background]);
  };

  return {
    async createPlan(appId, input) {
      const checked = checkPlan(input);
      if (!checked.ok) return checked;
      if ((await store.countPlans(appId)) >= MAX_PLANS_PER_APP) return { ok: false, error: 'PlanLimit', detail: `at most ${MAX_PLANS_PER_APP} plans per app` };
      const plan: PlanRow = { ...checked.terms, id: randomId('plan_'), appId, rateKind: checked.rateKind, createdAt: clock.now() };
      await store.insertPlan(plan);
      plans.set(plan.id, plan);
      return { ok: true, plan };
    },

    async getPlan(appId, planId) {
      const plan = await planOf(planId);
      return plan && plan.appId === appId ? plan : null;
    },

    listPlans: (appId) => store.listPlans(appId, MAX_PLANS_PER_APP),

    async create(appId, input) {
      const plan = await planOf(input.planId);
      if (!plan || plan.appId !== appId) return { ok: false, error: 'PlanNotFound' };
      const id = randomId('sub_');
      const payerToken = SUBSCRIPTION_TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const accountId = subscriptionAccountId(id);
      const account = await ledger.createAccount({ id: accountId, ownerId: appId, limitMsat: msat(0n), code: 'subscription' });
      if (!account.ok) throw new Error(`subscription account ${accountId} exists with another spec`);
      const now = clock.now();
      const row: SubscriptionRow = {
        id, appId, planId: plan.id, accountId, payerTokenHash: hashSubscriptionToken(payerToken),
        status: plan.trialS > 0 ? 'trialing' : 'created',
        refundDestination: input.refundDestination?.kind === 'invoice' ? null : input.refundDestination,
        metadata: input.metadata, createdAt: now, trialEndsAt: plan.trialS > 0 ? now + plan.trialS * 1000 : null,
        activatedAt: null, contractEndsAt: null, segment: 0, anchorAt: null, started: 0, owed: 0, pastDueSince: null,
        suspendedAt: null, pausedAt: null, endedAt: null, endedBy: null, chargedMsat: 0n, invoiceHash: null, invoiceRequest: null,
        invoiceAmountMsat: null, invoiceExpiresAt: null, invoiceCount: 0, refundStatus: 'none', refundMsat: 0n,
        refundAttempts: 0, refundPaymentHash: null, refundPaymentRequest: null, refundMaxFeeMsat: null,
      };
      const created: SubscriptionOccurrence = { type: 'created', at: now, cause: id, data: { plan_name: plan.name, trial_ends_at: row.trialEndsAt === null ? null : new Date(row.trialEndsAt).toISOString() } };
      await store.insertSubscription(row, eventStatements(row, [created]));
      deps.webhooks?.notify();
      const state: LiveSubscription = { row, plan, balance: 0n, tail: Promise.resolve(), busy: 0, due: nextDueAt(row, plan) };
      live.set(id, state);
      byToken.set(row.payerTokenHash, id);
      await locked(state, () => issueInvoiceIfDue(state)).catch((error) => logger.error({ err: error, subscriptionId: id }, 'first prepayment invoice failed'));
      return { ok: true, subscription: view(state), payerToken };
    },

    get,

    async list(appId, limit) {
      const rows = await store.listSubscriptions(appId, limit);
      const views: SubscriptionView[] = [];
      for (const row of rows) {
        const state = live.get(row.id) ?? (await load(row));
        if (!state) continue;
        views.push(view(state));
        if (state.busy === 0) maybeForget(state);
      }
      return views;
    },

    async authenticatePayer(token) {
      if (!token.startsWith(SUBSCRIPTION_TOKEN_PREFIX)) return null;
      const hash = hashSubscriptionToken(token);
      const known = byToken.get(hash);
      if (known) return get(known, null);
      const row = await store.findByTokenHash(hash);
      return row ? get(row.id, null) : null;
    },

    async cancel(subscriptionId, by, destination) {
      const state = await stateOf(subscriptionId);
      if (!state) return { ok: false, error: 'SubscriptionNotFound' };
      return locked(state, async (): Promise<{ ok: true; subscription: SubscriptionView; refundError: Fail | null } | Fail> => {
        if (FINAL_STATUSES.has(state.row.status)) {
          return { ok: false, error: 'SubscriptionEnded', detail: `the subscription is already ${state.row.status}` };
        }
        const now = clock.now();
        const row = cloneRow(state.row);
        const billed = advance(row, state.plan, state.balance, now);
        if (FINAL_STATUSES.has(row.status)) {
          await commitOne(state, row, billed);
          return { ok: false, error: 'SubscriptionEnded', detail: `the subscription is already ${row.status}` };
        }
        // A refund invoice that cannot pay out this exact refund is refused before anything changes.
        if (destination?.kind === 'invoice' && billed.balance > 0n) {
          const checked = await refundTarget(destination, msat(billed.balance));
          if (!checked.ok) return checked;
        }
        row.status = 'cancelled';
        row.endedAt = now;
        row.endedBy = by;
        dropInvoice(row);
        holdRefund(row, billed.balance);
        if (destination && destination.kind !== 'invoice') row.refundDestination = destination;
        const cancelled: SubscriptionOccurrence = {
          type: 'cancelled', at: now, cause: row.id,
          data: { by, refund_msat: billed.balance.toString(), charged_msat: row.chargedMsat.toString(), forgiven_msat: (state.plan.priceMsat * BigInt(row.owed)).toString() },
        };
        await commitOne(state, row, { ...billed, occurrences: [...billed.occurrences, cancelled] });
        const target = destination ?? row.refundDestination;
        let refundError: Fail | null = null;
        if (row.refundStatus === 'held' && target) {
          const sent = await sendRefund(state, target);
          if (!sent.ok) refundError = sent;
        }
        const result = view(state);
        maybeForget(state);
        return { ok: true, subscription: result, refundError };
      });
    },

    async pause(subscriptionId, by) {
      const state = await stateOf(subscriptionId);
      if (!state) return { ok: false, error: 'SubscriptionNotFound' };
      return locked(state, async (): Promise<{ ok: true; subscription: SubscriptionView } | Fail> => {
        if (FINAL_STATUSES.has(state.row.status)) return { ok: false, error: 'SubscriptionEnded', detail: `the subscription is ${state.row.status}` };
        if (state.plan.maxPauseS === 0) return { ok: false, error: 'PauseNotAllowed', detail: 'the plan does not allow pausing (max_pause_s is 0)' };
        const now = clock.now();
        const row = cloneRow(state.row);
        const billed = advance(row, state.plan, state.balance, now);
        if (row.status !== 'active') return { ok: false, error: 'PauseNotAllowed', detail: `only an active subscription can be paused; this one is ${row.status}` };
        await commitOne(state, row, merge(billed, pause(row, billed.balance, now, by)));
        return { ok: true, subscription: view(state) };
      });
    },

    async resume(subscriptionId, by) {
      const state = await stateOf(subscriptionId);
      if (!state) return { ok: false, error: 'SubscriptionNotFound' };
      return locked(state, async (): Promise<{ ok: true; subscription: SubscriptionView } | Fail> => {
        if (FINAL_STATUSES.has(state.row.status)) return { ok: false, error: 'SubscriptionEnded', detail: `the subscription is ${state.row.status}` };
        const now = clock.now();
        const row = cloneRow(state.row);
        const billed = advance(row, state.plan, state.balance, now);
        if (row.status !== 'paused') {
          if (billed.charges.length > 0 || billed.occurrences.length > 0) await commitOne(state, row, billed);
          return { ok: false, error: 'NotPaused', detail: `the subscription is ${row.status}` };
        }
        await commitOne(state, row, merge(billed, unpause(row, state.plan, billed.balance, now, by)));
        await issueInvoiceIfDue(state);
        return { ok: true, subscription: view(state) };
      });
    },

    async refund(subscriptionId, destination) {
      const state = await stateOf(subscriptionId);
      if (!state) return { ok: false, error: 'SubscriptionNotFound' };
      return locked(state, async (): Promise<{ ok: true; subscription: SubscriptionView } | Fail> => {
        if (!FINAL_STATUSES.has(state.row.status)) return { ok: false, error: 'NothingToRefund', detail: 'cancel the subscription first' };
        const target = destination ?? state.row.refundDestination;
        if (state.row.refundStatus === 'pending') return { ok: false, error: 'RefundInFlight' };
        if (!target) return { ok: false, error: 'RefundInvoiceInvalid', detail: 'send a refund destination' };
        const sent = await sendRefund(state, target);
        if (!sent.ok) return sent;
        const result = view(state);
        maybeForget(state);
        return { ok: true, subscription: result };
      });
    },

    async payInvoice(subscriptionId, amountMsat) {
      // No invoice can ask for more (BOLT 11); refused before anything is looked up or asked of the node.
      if (amountMsat !== null && amountMsat > BOLT11_AMOUNT_MAX_MSAT) {
        return { ok: false, error: 'InvalidAmount', detail: `amount_msat must be at most ${BOLT11_AMOUNT_MAX_MSAT} (the largest invoice amount)` };
      }
      const state = await stateOf(subscriptionId);
      if (!state) return { ok: false, error: 'SubscriptionNotFound' };
      return locked(state, async (): Promise<{ ok: true; subscription: SubscriptionView } | Fail> => {
        if (FINAL_STATUSES.has(state.row.status)) return { ok: false, error: 'SubscriptionEnded', detail: `the subscription is ${state.row.status}` };
        const now = clock.now();
        const open = state.row.invoiceHash !== null && (state.row.invoiceExpiresAt ?? 0) > now;
        if (amountMsat !== null || !open) {
          const due = prepaymentDue(state.row, state.plan, state.balance);
          const amount = amountMsat ?? due ?? msat(state.plan.priceMsat * BigInt(Math.max(1, Math.floor(state.plan.prepaymentS / state.plan.incrementS))));
          const failed = await issueInvoiceIfDue(state, amount);
          if (failed) return failed;
          if (state.row.invoiceHash === null || (state.row.invoiceExpiresAt ?? 0) <= now) return { ok: false, error: 'LightningUnavailable' };
        }
        return { ok: true, subscription: view(state) };
      });
    },

    runBilling,
    idle,

    async start() {
      stopped = false;
      unsubscribers.push(invoices.onPaid(onInvoicePaid), payments.onResolved(onPaymentResolved));
      for (const row of await store.listUnfinished()) await load(row);
      // Refunds left in flight by an earlier run: the payments service has resolved what it
      // could by now (its start runs first, before this service listened); each pending
      // attempt is reconciled by its payment, or sent once under its idempotency key.
      for (const state of [...live.values()]) {
        if (FINAL_STATUSES.has(state.row.status)) {
          await locked(state, () => refunds.returnStrayLoan(state)).catch((error) => logger.error({ err: error, subscriptionId: state.row.id }, 'could not return a stray refund fee loan'));
        }
        if (FINAL_STATUSES.has(state.row.status) && state.row.refundStatus === 'held') refundKeptSoon(state);
        if (state.row.refundStatus !== 'pending') continue;
        const retry = await locked(state, () => resumeRefund(state)).catch((error) => {
          logger.error({ err: error, subscriptionId: state.row.id }, 'could not resume a refund');
          return null;
        });
        // In the background: a start does not wait on a Lightning address's service.
        if (retry) track(locked(state, () => sendRefund(state, retry)).then((sent) => {
          if (!sent.ok) logger.warn({ subscriptionId: state.row.id, error: sent.error, detail: sent.detail }, 'a fresh refund attempt failed; the balance is held for a refund');
        }, (error) => logger.error({ err: error, subscriptionId: state.row.id }, 'a fresh refund attempt failed')));
      }
      const tickMs = deps.tickMs ?? 1000;
      const loop = (): void => {
        if (stopped) return;
        timer = setTimeout(() => {
          void runBilling().catch((error) => logger.error({ err: error }, 'subscription billing failed')).finally(loop);
        }, tickMs);
        timer.unref();
      };
      loop();
    },

    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      for (const unsubscribe of unsubscribers.splice(0)) unsubscribe();
      while (billing) await billing.catch(() => undefined);
      await idle();
    },

    liveCount: () => live.size,
  };
}
