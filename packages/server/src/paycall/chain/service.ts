/**
 * The chain service: sells hash-chain tokens, accepts their links on the hot path, and
 * refunds what is left.
 *
 * Threat model: anyone may buy a chain and anyone may present a header. Only the holder
 * of the seed can produce the next link; a link seen on the wire (a logged header, a
 * replayed request) is worth nothing once accepted, because the index has moved past it.
 * The server must therefore (1) never accept the same index twice, even across a crash,
 * (2) never serve before the new index is durable, and (3) keep the money exact: the
 * app is paid index x step_msat, the payer can get back the rest.
 *
 * The hot path (`spend`) reads no database and calls no Lightning node: live chains are
 * in memory (loaded at start-up and when bought). The check and the advance of the index
 * are one synchronous step, so of two racing requests with the same link exactly one
 * wins. The winner then waits for the flusher (flusher.ts): dirty chains are written as ONE
 * transaction per batch (only each chain's latest index; group commit). The spent steps'
 * value moves to the app in the settler's sweeps (settler.ts), at most `settleIntervalMs`
 * later, in one transaction per sweep that also records how far each chain is settled.
 *
 * One process owns a chain's live state. With SQLite there is one process; with a
 * PostgreSQL database shared by several Sluices, the conditional write (see store.ts)
 * refuses a batch that would move an index another process moved, so a link is still
 * never accepted twice, but a chain should be used through one process.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import { appAccountId } from '../../apps/service.js';
import type { InvoiceService, InvoiceView } from '../../invoices/service.js';
import type { Ledger } from '../../ledger/group-commit.js';
import { balanceOf } from '../../ledger/store.js';
import { decodeBolt11 } from '../../lightning/bolt11/index.js';
import { invoiceFromLightningAddress } from '../../lightning/lnurl.js';
import { MSAT_MAX, msat, type Msat } from '../../money/msat.js';
import { defaultMaxFeeMsat, type PayError, type PaymentService, type PaymentView } from '../../payments/service.js';
import type { InvoiceRow, PaymentRow } from '../../records/model.js';
import { timeOrderedId } from '../../util/fingerprint.js';
import { hashLink, isLinkHex, MAX_CHAIN_STEPS, MAX_STEPS_PER_CALL, stepsForPrice, verifyLink } from './math.js';
import { CHAIN_ACCOUNT_PREFIX, chainAccountId, type ChainRow, type ChainStatus, type ChainView } from './model.js';
import type { ChainStore } from './store.js';
import { createChainFlusher, type LiveChain } from './flusher.js';
import { createChainSettler } from './settler.js';
import { createUnknownChainIds } from './unknown-ids.js';

export { ChainConflictError } from './flusher.js';

export type ChainError =
  | 'Unknown'
  | 'Unpaid'
  | 'Replayed'
  | 'Skipped'
  | 'Short'
  | 'Invalid'
  | 'Exhausted'
  | 'Expired'
  | 'Refunded'
  | 'TooManySteps'
  | 'AppNotFound'
  | 'InvalidPurchase'
  | 'LightningUnavailable'
  | 'RefundUnavailable'
  | 'RefundInvoiceInvalid'
  | 'RefundInvoiceExpired'
  | 'RefundInvoiceWrongNetwork'
  | 'RefundInvoiceAlreadyPaid'
  | 'RefundToSelf'
  | 'RefundAmountMismatch'
  | 'RefundAddressFailed'
  | 'NothingToRefund'
  | 'Overloaded';

export type ChainFail = { ok: false; error: ChainError; detail?: string };

export interface SpendAck {
  ok: true;
  index: number;
  /** Steps this call cost: ceil(price / step_msat). */
  steps: number;
  remainingSteps: number;
  stepMsat: Msat;
}

/** What a call costs and who is paid: a chain pays only its own app. */
export interface CallCost {
  appId: string;
  priceMsat: Msat;
}

/**
 * Who may have a chain's money back: the holder of its next link, or, once every step is
 * spent (no next link exists, and every link was revealed on the wire), whoever paid the
 * purchase invoice, proved by its preimage (known only to the payer and this server).
 */
export type RefundProof = { index: number; link: Uint8Array } | { preimage: Uint8Array };

/** Turns a spend's result into the caller's answer (see ChainService.spendThen). */
export type SpendMap<T, C> = (result: SpendAck | ChainFail, call: CallCost, context: C) => T;

export type RefundDestination = { kind: 'invoice'; paymentRequest: string } | { kind: 'lightning_address'; address: string };

export interface PurchaseInput {
  appId: string;
  /** w_0 as 64 lowercase hex digits. */
  anchor: string;
  steps: number;
}

export interface ChainService {
  /** Creates a pending chain and its purchase invoice (steps x the app's step price). */
  purchase(input: PurchaseInput): Promise<{ ok: true; chain: ChainView; invoice: InvoiceView } | ChainFail>;
  /** The chain, from memory when live (no database read), else from the store. */
  get(chainId: string): Promise<ChainView | null>;
  /**
   * The hot path: accepts `link` as w_index for a call of this price (k = ceil(price /
   * step_msat) steps), and resolves once the new index is durable. Never throws for bad input.
   * The service keeps `link` once accepted: the caller must not change it afterwards.
   */
  spend(chainId: string, index: number, link: Uint8Array, call: CallCost): Promise<SpendAck | ChainFail>;
  /**
   * The verification alone: what `spend` would answer for this link now, without spending
   * it (no advance, no commit, nothing written). Null for a chain this process does not
   * hold in memory (`spend` would read it from the store). The benchmark's verification row.
   */
  verify(chainId: string, index: number, link: Uint8Array, call: CallCost): SpendAck | ChainFail | null;
  /**
   * `spend`, with the result turned into the caller's answer by `map(result, call, context)`
   * before the promise settles: the gate's scheme uses it instead of a `.then` (one promise
   * fewer per paid call), and passes what it needs as `context` rather than in a closure.
   */
  spendThen<T, C>(chainId: string, index: number, link: Uint8Array, call: CallCost, map: SpendMap<T, C>, context: C): Promise<T>;
  /**
   * Proves ownership and pays back every unused msat: the unused steps plus anything paid
   * above the purchase invoice. The proof is w_(index+1); once every step is spent there is
   * no such link, and the proof of an overpayment is the purchase invoice's preimage.
   */
  refund(chainId: string, proof: RefundProof, destination: RefundDestination): Promise<{ ok: true; chain: ChainView; payment: PaymentView | null; amountMsat: Msat } | ChainFail>;
  /** The step price chains for this app are sold at (the gate's offer; default: the setting). */
  stepMsatFor(appId: string): Msat;
  setStepMsat(appId: string, stepMsat: Msat): void;
  /** Loads live chains, activates chains paid while we were down, listens for payments. */
  start(): Promise<void>;
  /**
   * Waits until every accepted index is durable and pays the apps for every spent step now,
   * instead of at the next sweep (tests, and anything that must read an app's balance exact).
   */
  settleSpent(): Promise<void>;
  /** Stops listening, waits until every accepted index is durable, and settles it. */
  stop(): Promise<void>;
}

export interface ChainServiceDeps {
  store: ChainStore;
  ledger: Ledger;
  invoices: InvoiceService;
  payments: PaymentService;
  /** Reads the purchase invoice and earlier refund payments (cold paths only). */
  records: { getInvoice(paymentHash: string): Promise<InvoiceRow | null>; findPaymentByKey(appId: string, key: string): Promise<PaymentRow | null> };
  apps: { getApp(id: string): Promise<{ id: string; revokedAt: number | null } | null> };
  clock: Clock;
  logger: Logger;
  defaultStepMsat: Msat;
  ttlS: number;
  /** Expiry of purchase invoices (capped by the chain's own lifetime). */
  invoiceExpiryS: number;
  /** Most chains written in one transaction. */
  maxBatch?: number;
  /** Longest time between a call's commit and the app's credit for it (default DEFAULT_SETTLE_INTERVAL_MS). */
  settleIntervalMs?: number;
  /** PostgreSQL: how often to look for chains another process left unsettled (default DEFAULT_RESCAN_MS). */
  rescanMs?: number;
  /** Most unpaid chains held in memory (default MAX_PENDING_CHAINS). */
  maxUnpaidChains?: number;
  /** Resolves a Lightning address to an invoice (default: LNURL-pay over https). */
  lightningAddress?: typeof invoiceFromLightningAddress;
  /** Bounds of the cache of ids found absent (default UNKNOWN_CHAIN_IDS_MAX, 60 s). */
  unknownIds?: { max?: number; ttlMs?: number };
}

const REFUND_ATTEMPTS_MAX = 100;
/** Spent steps reach the app's balance within this long (SLUICE_CHAIN_SETTLE_INTERVAL_MS). */
export const DEFAULT_SETTLE_INTERVAL_MS = 250;
/**
 * With PostgreSQL (several processes may share it): every minute, a process looks for chains
 * whose steps no live process will sweep (their process died first) and settles them.
 */
export const DEFAULT_RESCAN_MS = 60_000;
/**
 * Unpaid chains held in memory (anyone may buy without a key): beyond this, chains whose
 * invoice expired are dropped, and if that is not enough, purchases get `Overloaded`.
 */
export const MAX_PENDING_CHAINS = 100_000;

/** How a refund's payment refusal reads to the payer (anything else: invoice_invalid). */
const REFUND_PAY_ERRORS: Partial<Record<PayError, ChainError>> = {
  InvoiceExpired: 'RefundInvoiceExpired',
  InvoiceWrongNetwork: 'RefundInvoiceWrongNetwork',
  InvoiceAlreadyPaid: 'RefundInvoiceAlreadyPaid',
  PaymentToSelf: 'RefundToSelf',
  InvoiceAmountMismatch: 'RefundAmountMismatch',
};

const asIs = (result: SpendAck | ChainFail): SpendAck | ChainFail => result;

export function createChainService(deps: ChainServiceDeps): ChainService {
  const { store, ledger, invoices, payments, clock, logger } = deps;
  const maxBatch = deps.maxBatch ?? 4096;
  const maxUnpaid = deps.maxUnpaidChains ?? MAX_PENDING_CHAINS;
  const live = new Map<string, LiveChain>();
  const byAccount = new Map<string, LiveChain>();
  const stepPrices = new Map<string, Msat>();
  const refundLocks = new Map<string, Promise<unknown>>();
  /** Unpaid chains in memory, with when their purchase invoice expires (Unix ms). */
  const unpaid = new Map<LiveChain, number>();
  /** Ids the store did not have: a repeated unknown id is refused without a database read. */
  const unknownIds = createUnknownChainIds(clock, deps.unknownIds);
  // Subscribed now, not in start(): the payments service reconciles refunds left in flight
  // by an earlier run when IT starts, which the composition root does before chains start.
  const unsubscribers: (() => void)[] = [payments.onResolved((payment) => onPaymentResolved(payment))];

  /** `invoiceExpiresAt`: for an unpaid chain, when it stops being payable (expired from then on). */
  const statusOf = (row: ChainRow, refunding = false, invoiceExpiresAt: number | null = null): ChainStatus => {
    if (row.status === 'refunded' || refunding) return 'refunded';
    const now = clock.now();
    if (now >= row.expiresAt) return 'expired';
    if (row.status === 'pending' && invoiceExpiresAt !== null && now >= invoiceExpiresAt) return 'expired';
    if (row.status === 'pending') return 'pending';
    return row.index >= row.steps ? 'exhausted' : 'active';
  };

  const viewOf = (row: ChainRow, refunding = false, invoiceExpiresAt: number | null = null): ChainView => {
    const status = statusOf(row, refunding, invoiceExpiresAt);
    const remainingSteps = status === 'refunded' ? 0 : row.steps - row.index;
    return {
      id: row.id,
      appId: row.appId,
      anchor: row.anchor,
      steps: row.steps,
      stepMsat: row.stepMsat,
      amountMsat: msat(BigInt(row.steps) * row.stepMsat),
      status,
      index: row.index,
      remainingSteps,
      remainingMsat: msat(BigInt(remainingSteps) * row.stepMsat),
      expiresAt: row.expiresAt,
      invoiceHash: row.invoiceHash,
    };
  };

  const remember = (row: ChainRow): LiveChain => {
    const state: LiveChain = {
      row, linkBytes: Buffer.from(row.link, 'hex'), durableIndex: row.index, durableLink: row.link, next: null, refunding: false, activating: null,
    };
    live.set(row.id, state);
    byAccount.set(row.accountId, state);
    unknownIds.delete(row.id);
    return state;
  };

  /** Whether the database moved the chain past this process's copy (another process). */
  const isStale = (state: LiveChain, stored: ChainRow): boolean =>
    stored.index !== state.durableIndex || (stored.status === 'refunded' && state.row.status !== 'refunded');

  /** ceil(price / step), remembered for the last pair: BigInt arithmetic allocates, and a route's price rarely changes. */
  let lastPrice = -1n;
  let lastStep = -1n;
  let lastSteps = 0;
  const stepsOf = (priceMsat: Msat, stepMsat: Msat): number => {
    if (priceMsat !== lastPrice || stepMsat !== lastStep) {
      lastSteps = stepsForPrice(priceMsat, stepMsat);
      lastPrice = priceMsat;
      lastStep = stepMsat;
    }
    return lastSteps;
  };

  const forget = (state: LiveChain): void => {
    // Until its status row says active, memory is the only place that knows it is paid.
    if (state.activating) return;
    if (live.get(state.row.id) === state) live.delete(state.row.id);
    if (byAccount.get(state.row.accountId) === state) byAccount.delete(state.row.accountId);
    unpaid.delete(state);
  };

  const settler = createChainSettler({
    store, clock, logger, maxBatch, intervalMs: deps.settleIntervalMs ?? DEFAULT_SETTLE_INTERVAL_MS,
    rescanMs: deps.rescanMs ?? (store.dialect === 'postgres' ? DEFAULT_RESCAN_MS : 0),
  });
  const flusher = createChainFlusher({
    store, logger, maxBatch,
    onCommitted: (state) => settler.noteCommitted(state.row.id),
    // A spent-out chain can pay for nothing more: it leaves memory (reads go to the store).
    onSpentOut: (state) => {
      if (!state.refunding) forget(state);
    },
    onConflict: forget,
    onUncertain: (state) => {
      forget(state);
      // It may have been committed after all: the sweep settles whatever the row says.
      settler.noteCommitted(state.row.id);
    },
  });

  // ---- Activation --------------------------------------------------------------------

  /**
   * Called once the purchase is credited (durably, by the invoices service), so calls may be
   * accepted at once; the status row follows. Should that write be lost, start-up finds the
   * paid invoice and activates the chain again.
   */
  const activate = async (state: LiveChain): Promise<void> => {
    if (state.row.status !== 'pending') return;
    state.row.status = 'active';
    unpaid.delete(state);
    state.activating = store.setStatus(state.row.id, 'pending', 'active').then(() => undefined);
    try {
      await state.activating;
    } finally {
      state.activating = null;
    }
  };

  /** Drops unpaid chains whose invoice can no longer be paid (they stay in the store). */
  const sweepUnpaid = (): void => {
    const now = clock.now();
    for (const [state, invoiceExpiresAt] of unpaid) {
      if (invoiceExpiresAt > now) continue;
      forget(state);
    }
  };

  const onInvoicePaid = (invoice: InvoiceRow): void => {
    if (!invoice.creditAccountId.startsWith(CHAIN_ACCOUNT_PREFIX)) return;
    void (async () => {
      let state = byAccount.get(invoice.creditAccountId);
      if (!state) {
        // Swept from memory (or never loaded): a late settlement still activates it.
        const row = await store.getChain(invoice.creditAccountId.slice(CHAIN_ACCOUNT_PREFIX.length));
        if (!row || row.status !== 'pending') return;
        state = live.get(row.id) ?? remember(row);
      }
      if (state.row.invoiceHash === invoice.paymentHash) await activate(state);
    })().catch((error) => logger.error({ err: error, accountId: invoice.creditAccountId }, 'could not activate a paid chain'));
  };

  // ---- Refunds -----------------------------------------------------------------------

  const refundKey = (chainId: string, attempt: number): string => `ch:${chainId}:refund:${attempt}`;

  /** The refund attempt to use: the first whose payment does not exist or did not fail. */
  const currentRefund = async (row: ChainRow): Promise<{ attempt: number; payment: PaymentRow | null }> => {
    for (let attempt = 1; attempt <= REFUND_ATTEMPTS_MAX; attempt += 1) {
      const payment = await deps.records.findPaymentByKey(row.appId, refundKey(row.id, attempt));
      if (!payment || payment.status !== 'failed') return { attempt, payment };
    }
    throw new Error(`chain ${row.id} has ${REFUND_ATTEMPTS_MAX} failed refunds`);
  };

  /** Steps unused from `index` on, plus anything paid above the invoice amount: what a refund pays back. */
  const unusedMsat = async (row: ChainRow, index = row.index): Promise<Msat> => {
    const invoice = await deps.records.getInvoice(row.invoiceHash);
    const overpaid = invoice?.amountPaidMsat ? invoice.amountPaidMsat - invoice.amountMsat : 0n;
    return msat(BigInt(row.steps - index) * row.stepMsat + overpaid);
  };

  /**
   * What the chain account should hold once no refund is in flight: the steps spent but not
   * yet paid to the app (from the row's settled index, read here: sweeps move it), plus,
   * unless a refund succeeded, the unused steps and anything paid above the invoice. Anything
   * above that is the routing-fee budget the app lent; it goes back to the app. The row is
   * read before the balance, so a sweep in between can only make the excess look smaller.
   * (Another process may accept calls after a refund counted its steps and before its status
   * write: those steps stay here for that process's sweep, not for the fee return.)
   */
  const returnFeeAdvance = async (row: ChainRow): Promise<void> => {
    const { payment } = await currentRefund(row);
    if (payment?.status === 'in_flight') return;
    const stored = await store.getChain(row.id);
    if (!stored) return;
    const account = await ledger.getAccount(row.accountId);
    if (!account) return;
    const unsettled = BigInt(stored.index - stored.settledIndex) * stored.stepMsat;
    const owed = payment?.status === 'succeeded' ? unsettled : await unusedMsat(stored, stored.settledIndex);
    const excess = balanceOf(account) - owed;
    if (excess <= 0n) return;
    const result = await ledger.apply({
      kind: 'transfer',
      debitAccountId: row.accountId,
      creditAccountId: appAccountId(row.appId),
      amountMsat: msat(excess),
      code: 'chain_refund_fee_return',
      reference: `${row.id}/refund-fee`,
    });
    if (!result.ok) logger.error({ chainId: row.id, error: result.error }, 'could not return the refund fee budget to the app');
  };

  const onPaymentResolved = (payment: { debitAccountId: string }): void => {
    if (!payment.debitAccountId.startsWith(CHAIN_ACCOUNT_PREFIX)) return;
    const chainId = payment.debitAccountId.slice(CHAIN_ACCOUNT_PREFIX.length);
    void withRefundLock(chainId, async () => {
      // A refunded chain is not held in memory after a restart: read it (cold path).
      const row = live.get(chainId)?.row ?? (await store.getChain(chainId));
      // A refund payment exists only once the chain is refunded: no call can move its index.
      if (row?.status === 'refunded') await returnFeeAdvance(row);
    }).catch((error) => logger.error({ err: error, chainId }, 'could not settle a chain refund'));
  };

  /** One refund step (or cold load, see spendCold) per chain at a time: each waits for the one queued before it. */
  const withRefundLock = async <T>(chainId: string, work: () => Promise<T>): Promise<T> => {
    const before = refundLocks.get(chainId) ?? Promise.resolve();
    const running = before.catch(() => undefined).then(work);
    refundLocks.set(chainId, running);
    try {
      return await running;
    } finally {
      if (refundLocks.get(chainId) === running) refundLocks.delete(chainId);
    }
  };

  /**
   * The proof of ownership: w_(index+1), one hash above the last accepted link; or, for a
   * chain whose every step is spent, the preimage of its purchase invoice.
   */
  const proofHolds = (row: ChainRow, current: Buffer, proof: RefundProof): ChainFail | null => {
    if ('preimage' in proof) {
      if (proof.preimage.length !== 32 || hashLink(proof.preimage).toString('hex') !== row.invoiceHash) {
        return { ok: false, error: 'Invalid', detail: "the preimage is not that of the chain's purchase invoice" };
      }
      if (row.index < row.steps) {
        return { ok: false, error: 'Invalid', detail: `steps are left: prove ownership with the link at index ${row.index + 1} (the preimage is the proof only once every step is spent)` };
      }
      return null;
    }
    if (row.index >= row.steps) {
      return { ok: false, error: 'NothingToRefund', detail: 'every step was spent; anything paid above the invoice is refunded with the purchase preimage as the proof' };
    }
    if (proof.index <= row.index) return { ok: false, error: 'Replayed', detail: `the proof must be the link at index ${row.index + 1}` };
    if (proof.index !== row.index + 1) return { ok: false, error: 'Skipped', detail: `the proof must be the link at index ${row.index + 1}` };
    if (!hashLink(proof.link).equals(current)) return { ok: false, error: 'Invalid' };
    return null;
  };

  const resolveDestination = async (destination: RefundDestination, amountMsat: Msat): Promise<{ ok: true; paymentRequest: string; amountMsat: Msat | null } | ChainFail> => {
    if (destination.kind === 'lightning_address') {
      const resolved = await (deps.lightningAddress ?? invoiceFromLightningAddress)(destination.address, amountMsat);
      if (!resolved.ok) return { ok: false, error: 'RefundAddressFailed', detail: `${resolved.error}${resolved.detail ? `: ${resolved.detail}` : ''}` };
      return { ok: true, paymentRequest: resolved.paymentRequest, amountMsat: null };
    }
    const decoded = decodeBolt11(destination.paymentRequest);
    if (!decoded.ok) return { ok: false, error: 'RefundInvoiceInvalid', detail: decoded.detail };
    if (decoded.invoice.amountMsat === null) return { ok: true, paymentRequest: destination.paymentRequest, amountMsat };
    if (decoded.invoice.amountMsat !== amountMsat) {
      return { ok: false, error: 'RefundAmountMismatch', detail: `the invoice must ask for exactly ${amountMsat} msat (or no amount)` };
    }
    return { ok: true, paymentRequest: destination.paymentRequest, amountMsat: null };
  };

  const refundNow = async (
    state: LiveChain | null,
    row: ChainRow,
    proof: RefundProof,
    destination: RefundDestination,
  ): Promise<{ ok: true; chain: ChainView; payment: PaymentView | null; amountMsat: Msat } | ChainFail> => {
    if (row.status === 'pending') return { ok: false, error: 'Unpaid', detail: 'the chain was never paid: nothing to refund' };
    const wrong = proofHolds(row, state?.linkBytes ?? Buffer.from(row.link, 'hex'), proof);
    if (wrong) return wrong;
    const finish = (payment: PaymentView | null, amountMsat: Msat) => ({ ok: true as const, chain: viewOf(row), payment, amountMsat });
    try {
      const { attempt, payment: earlier } = await currentRefund(row);
      if (earlier) {
        // Asked again: the refund is already in flight or done; answer with it.
        const view = await payments.getPayment(row.appId, earlier.paymentHash);
        return finish(view, earlier.amountMsat);
      }
      // A budget lent by an attempt that never reached the payments service goes back first.
      await returnFeeAdvance(row);
      const owed = await unusedMsat(row);
      // A spent-out chain proved by its preimage is refunded only for an overpayment.
      if (owed <= 0n && 'preimage' in proof) return { ok: false, error: 'NothingToRefund', detail: 'every step was spent and nothing was paid above the invoice' };
      if (owed <= 0n) {
        if (!(await markRefunded(state, row))) return movedDuringRefund(row);
        return finish(null, msat(0n));
      }
      const amountMsat = msat(owed);
      const target = await resolveDestination(destination, amountMsat);
      if (!target.ok) return target;
      // The app lends the routing-fee budget, so the payer gets every msat back (as a
      // stream's refund at close); what the route does not use returns to the app.
      const maxFeeMsat = defaultMaxFeeMsat(amountMsat);
      const lent = await ledger.apply({
        kind: 'transfer',
        debitAccountId: appAccountId(row.appId),
        creditAccountId: row.accountId,
        amountMsat: maxFeeMsat,
        code: 'chain_refund_fee_advance',
        reference: `${row.id}/refund-fee/${attempt}`,
      });
      if (!lent.ok) {
        return { ok: false, error: 'RefundUnavailable', detail: `the app cannot lend the routing-fee budget (${maxFeeMsat} msat) now; nothing changed, retry later` };
      }
      const statusBefore = row.status;
      if (!(await markRefunded(state, row))) {
        // Another process spent (or refunded) the chain since the unused steps were counted.
        await returnFeeAdvance(row);
        return movedDuringRefund(row);
      }
      const paid = await payments.pay(row.appId, {
        target: { kind: 'invoice', paymentRequest: target.paymentRequest, amountMsat: target.amountMsat },
        maxFeeMsat,
        idempotencyKey: refundKey(row.id, attempt),
        debitAccountId: row.accountId,
      });
      if (!paid.ok) {
        // Nothing was sent: the chain is as it was before this request (calls work again).
        await returnFeeAdvance(row);
        if (statusBefore !== 'refunded' && (await store.setStatus(row.id, 'refunded', statusBefore))) row.status = statusBefore;
        return { ok: false, error: REFUND_PAY_ERRORS[paid.error] ?? 'RefundInvoiceInvalid', detail: `${paid.error}${paid.detail ? `: ${paid.detail}` : ''}` };
      }
      if (paid.payment.status !== 'pending') await returnFeeAdvance(row);
      return finish(paid.payment, amountMsat);
    } finally {
      if (state && row.status !== 'refunded') state.refunding = false;
    }
  };

  /**
   * The status write that ends every call: only if the row still holds the index the unused
   * steps were counted from. With PostgreSQL shared by several processes, another one may
   * have accepted a call since (its index commit does not look at this process's refund);
   * then nothing is refunded, and false. (One process holds its calls during its own refunds.)
   */
  const markRefunded = async (state: LiveChain | null, row: ChainRow): Promise<boolean> => {
    if (row.status === 'refunded') return true;
    if (!(await store.setStatus(row.id, row.status, 'refunded', row.index))) return false;
    row.status = 'refunded';
    if (state) state.refunding = false;
    return true;
  };

  /** The refusal of a refund whose chain moved in another process meanwhile; this copy leaves memory. */
  const movedDuringRefund = async (row: ChainRow): Promise<ChainFail> => {
    const held = live.get(row.id);
    if (held) {
      held.refunding = false;
      forget(held);
    }
    const stored = await store.getChain(row.id);
    if (stored?.status === 'refunded') return { ok: false, error: 'Refunded' };
    return { ok: false, error: 'Replayed', detail: `the chain moved in another process (now at index ${stored?.index ?? '?'}): nothing was refunded; prove with the link after that index` };
  };

  /**
   * A chain this process does not hold: unknown, or refunded / expired before a restart,
   * or dropped after a conflict. One read tells which; a live one is taken back.
   *
   * Under the chain's lock, as refunds are: a refund holds it from its first read to its
   * end, so a cold spend either reads the chain after the refund (and is refused) or puts
   * it in memory before the refund starts (which then holds its calls and waits for the
   * accepted ones). Without it, a spend could load the chain as active while a refund of
   * the same chain, working from its own read, was paying the same steps back.
   */
  const spendCold = <T, C>(chainId: string, index: number, link: Uint8Array, call: CallCost, map: SpendMap<T, C>, context: C): Promise<T> =>
    withRefundLock(chainId, async (): Promise<{ answer: T | Promise<T> }> => {
      if (!live.has(chainId)) {
        const row = await store.getChain(chainId);
        if (!row) unknownIds.add(chainId);
        if (!row || row.appId !== call.appId) return { answer: map({ ok: false, error: 'Unknown' }, call, context) };
        if (row.status === 'refunded') return { answer: map({ ok: false, error: 'Refunded' }, call, context) };
        // Unpaid and not in memory: its invoice expired (a late settlement brings it back).
        if (row.status === 'pending' || clock.now() >= row.expiresAt) return { answer: map({ ok: false, error: 'Expired' }, call, context) };
        if (row.index >= row.steps) return { answer: map({ ok: false, error: 'Exhausted', detail: 'every step was spent' }, call, context) };
        if (!live.has(chainId)) remember(row);
      }
      // Wrapped, so the lock is released once the call is judged in memory, not after its commit.
      return { answer: service.spendThen(chainId, index, link, call, map, context) };
    }).then((held) => held.answer);

  /** A refusal known at once, mapped by the caller (a throwing map rejects, as in a `.then`). */
  const settleNow = <T, C>(map: SpendMap<T, C>, call: CallCost, context: C, result: ChainFail): Promise<T> => {
    try {
      return Promise.resolve(map(result, call, context));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /**
   * Whether `link` pays this call as w_index of a chain this process holds: the steps it
   * costs, or why not. No side effect and no await: `spendThen` advances right after it.
   */
  const judge = (state: LiveChain, index: number, link: Uint8Array, call: CallCost): number | ChainFail => {
    const row = state.row;
    if (row.appId !== call.appId) return { ok: false, error: 'Unknown', detail: 'no chain with this id for this app' };
    const steps = stepsOf(call.priceMsat, row.stepMsat);
    if (row.status === 'refunded' || state.refunding) return { ok: false, error: 'Refunded' };
    if (row.status === 'pending') return { ok: false, error: (unpaid.get(state) ?? Infinity) <= clock.now() ? 'Expired' : 'Unpaid' };
    if (clock.now() >= row.expiresAt) return { ok: false, error: 'Expired' };
    if (!Number.isSafeInteger(steps) || steps < 1 || steps > MAX_STEPS_PER_CALL) {
      return { ok: false, error: 'TooManySteps', detail: `a call may cost 1 to ${MAX_STEPS_PER_CALL} steps` };
    }
    if (index <= row.index) return { ok: false, error: 'Replayed', detail: `the chain is at index ${row.index}` };
    if (row.index + steps > row.steps) return { ok: false, error: 'Exhausted', detail: `${row.steps - row.index} steps left; this call costs ${steps}` };
    const expected = row.index + steps;
    if (index > expected) return { ok: false, error: 'Skipped', detail: `this call costs ${steps} steps: send index ${expected}` };
    if (index < expected) return { ok: false, error: 'Short', detail: `this call costs ${steps} steps: send index ${expected}` };
    if (!verifyLink(link, state.linkBytes, steps)) return { ok: false, error: 'Invalid' };
    return steps;
  };

  // ---- The service -------------------------------------------------------------------

  const service: ChainService = {
    stepMsatFor(appId) {
      return stepPrices.get(appId) ?? deps.defaultStepMsat;
    },

    setStepMsat(appId, stepMsat) {
      if (stepMsat < 1n) throw new RangeError('a step price is at least 1 msat');
      stepPrices.set(appId, stepMsat);
    },

    async purchase(input) {
      if (!isLinkHex(input.anchor)) return { ok: false, error: 'InvalidPurchase', detail: 'anchor must be 64 lowercase hex digits' };
      if (!Number.isSafeInteger(input.steps) || input.steps < 1 || input.steps > MAX_CHAIN_STEPS) {
        return { ok: false, error: 'InvalidPurchase', detail: `steps must be an integer from 1 to ${MAX_CHAIN_STEPS}` };
      }
      const app = await deps.apps.getApp(input.appId);
      if (!app || app.revokedAt !== null) return { ok: false, error: 'AppNotFound' };
      if (unpaid.size >= maxUnpaid) sweepUnpaid();
      if (unpaid.size >= maxUnpaid) return { ok: false, error: 'Overloaded', detail: 'too many unpaid chains; retry later' };
      const stepMsat = service.stepMsatFor(input.appId);
      const amount = BigInt(input.steps) * stepMsat;
      if (amount > MSAT_MAX) return { ok: false, error: 'InvalidPurchase', detail: 'steps x step_msat is too large' };
      const now = clock.now();
      // In creation order, as stream ids (ADR 0020): a sweep takes its chains sorted, so each
      // transaction touches neighbouring pages of the chains table and the chain accounts.
      const id = timeOrderedId('ch_', now);
      const accountId = chainAccountId(id);
      const account = await ledger.createAccount({ id: accountId, ownerId: input.appId, limitMsat: msat(0n), code: 'chain' });
      if (!account.ok) throw new Error(`chain account ${accountId} exists with another spec`);
      const expiresAt = now + deps.ttlS * 1000;
      const created = await invoices.createInvoice(input.appId, {
        amountMsat: msat(amount),
        // No chain id here: the preimage is an overpayment's refund proof (with the id), and the
        // payer's wallet service and the nodes that route the payment learn the preimage.
        description: `Sluice hash chain: ${input.steps} steps of ${stepMsat} msat`,
        expiryS: Math.max(60, Math.min(deps.invoiceExpiryS, deps.ttlS)),
        idempotencyKey: null,
        creditAccountId: accountId,
      });
      if (!created.ok) {
        if (created.error === 'LightningUnavailable') return { ok: false, error: 'LightningUnavailable' };
        return { ok: false, error: 'InvalidPurchase', detail: created.detail ?? created.error };
      }
      // Written after the invoice: a crash in between leaves an invoice nobody was shown.
      const row: ChainRow = {
        id, appId: input.appId, anchor: input.anchor, steps: input.steps, stepMsat, index: 0, settledIndex: 0, link: input.anchor,
        status: 'pending', expiresAt, accountId, invoiceHash: created.invoice.paymentHash,
      };
      await store.insertChain(row);
      const state = remember(row);
      unpaid.set(state, created.invoice.expiresAt);
      // Paid between the invoice's creation and remember(): the listener did not know the chain.
      if (created.invoice.status === 'paid') await activate(state);
      return { ok: true, chain: viewOf(row), invoice: created.invoice };
    },

    async get(chainId) {
      const state = live.get(chainId);
      if (state) return viewOf(state.row, state.refunding, unpaid.get(state) ?? null);
      if (unknownIds.has(chainId)) return null;
      const row = await store.getChain(chainId);
      if (!row) {
        unknownIds.add(chainId);
        return null;
      }
      const invoice = row.status === 'pending' ? await deps.records.getInvoice(row.invoiceHash) : null;
      return viewOf(row, false, invoice?.status === 'paid' ? null : invoice?.expiresAt ?? null);
    },

    spend(chainId, index, link, call) {
      return service.spendThen(chainId, index, link, call, asIs, undefined);
    },

    verify(chainId, index, link, call) {
      const state = live.get(chainId);
      if (!state) return null;
      const steps = judge(state, index, link, call);
      if (typeof steps !== 'number') return steps;
      return { ok: true, index, steps, remainingSteps: state.row.steps - index, stepMsat: state.row.stepMsat };
    },

    spendThen(chainId, index, link, call, map, context) {
      const state = live.get(chainId);
      // Never on the hot path of a live chain: only ids this process does not hold.
      if (!state) return unknownIds.has(chainId) ? settleNow(map, call, context, { ok: false, error: 'Unknown' }) : spendCold(chainId, index, link, call, map, context);
      // The judgement and the advance are one synchronous step: no other request runs in between.
      const steps = judge(state, index, link, call);
      if (typeof steps !== 'number') return settleNow(map, call, context, steps);
      const row = state.row;
      row.index = index;
      // Kept as is, not copied (see the interface): it is the link the next call must hash to.
      state.linkBytes = Buffer.isBuffer(link) ? link : Buffer.from(link);
      const ack: SpendAck = { ok: true, index, steps, remainingSteps: row.steps - index, stepMsat: row.stepMsat };
      return flusher.awaitCommit(state, ack, map, call, context);
    },

    async refund(chainId, proof, destination) {
      return withRefundLock(chainId, async (): Promise<Awaited<ReturnType<ChainService['refund']>>> => {
        let state = live.get(chainId) ?? null;
        if (state) {
          // The proof first (one hash, no waiting), so a wrong one cannot hold up calls.
          const wrong = state.row.status === 'pending' ? null : proofHolds(state.row, state.linkBytes, proof);
          if (wrong) {
            // Wrong for our copy; it is only right if another process moved the chain on.
            const stored = await store.getChain(chainId);
            if (!stored || !isStale(state, stored)) return wrong;
            forget(state);
            state = null;
          } else {
            // From here on no call is accepted; then wait for the calls already accepted.
            state.refunding = true;
            await flusher.settled(state);
            // The status row must say active before it can say refunded.
            await state.activating?.catch(() => undefined);
          }
        }
        try {
          // The chain account is read for the refund: every spent step leaves it first.
          await settler.settleNow([chainId]);
          // The database decides: another process may have moved or refunded the chain.
          const stored = await store.getChain(chainId);
          if (!stored) return { ok: false, error: 'Unknown' };
          if (state && isStale(state, stored)) {
            state.refunding = false;
            forget(state);
            state = null;
          }
          const row = state?.row ?? stored;
          const result = await refundNow(state, row, proof, destination);
          // A refunded chain pays for nothing more: it leaves memory (reads go to the store).
          if (state && row.status === 'refunded' && !flusher.busy(state)) forget(state);
          return result;
        } finally {
          if (state && state.row.status !== 'refunded') state.refunding = false;
        }
      });
    },

    async start() {
      await settler.start();
      unsubscribers.push(invoices.onPaid(onInvoicePaid));
      const now = clock.now();
      for (const row of await store.listUnrefundedChains()) {
        // A pending chain past its expiry can never be paid (its invoice expired first).
        if (row.status === 'pending' && row.expiresAt <= now) continue;
        if (row.status !== 'pending') {
          // Expired or spent-out chains pay for nothing: they are read from the store when asked.
          if (row.expiresAt > now && row.index < row.steps) remember(row);
          continue;
        }
        // Paid while we were down, or credited before the status was written.
        const invoice = await deps.records.getInvoice(row.invoiceHash);
        if (invoice?.status === 'paid') await activate(remember(row));
        else if (invoice && invoice.expiresAt > now) unpaid.set(remember(row), invoice.expiresAt);
      }
    },

    async settleSpent() {
      await flusher.drain();
      await settler.flush();
    },

    async stop() {
      for (const unsubscribe of unsubscribers.splice(0)) unsubscribe();
      await flusher.drain();
      await settler.stop();
    },
  };
  return service;
}
