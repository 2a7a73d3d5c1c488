/**
 * The stream service: create streams, move value both ways, meter by the second, ask the
 * payer for top-ups and pay the payer out. Money steps go through their own group commit
 * (money-commit.ts, as rows); funding and payouts through the ledger's.
 *
 * Threat model: the app (API key) and the payer (payer token) are different parties.
 * The app may charge only up to the terms it set (price list, max charge, the payer's
 * debt limit `maximum_msat`); the payer may pause, close and choose where payouts go,
 * never charge. A charge or reward is acknowledged only after it is durable (its row, or its
 * ledger transfer for a stream from before the rows); a retry with the same ref returns the
 * first result (unique per stream and ref). One process owns a stream's live state (seq counter, cached balance):
 * with SQLite that is the only process; the cached balance is re-read from the ledger
 * when the stream is loaded.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { appAccountId } from '../apps/service.js';
import type { InvoiceService } from '../invoices/service.js';
import type { Ledger } from '../ledger/group-commit.js';
import { balanceOf, type Account, type Transfer } from '../ledger/store.js';
import { msat, type Msat } from '../money/msat.js';
import { defaultMaxFeeMsat, type PaymentService, type PaymentView } from '../payments/service.js';
import { timeOrderedId } from '../util/fingerprint.js';
import { invoiceFromLightningAddress } from '../lightning/lnurl.js';
import { decodeBolt11 } from '../lightning/bolt11/index.js';
import type { PayoutDestination, StreamEvent, StreamEventType, StreamRow, StreamTerms, StreamView } from './model.js';
import type { StreamStore } from './store.js';
import type { MoneyCommitter } from './money-commit.js';
import { createChainSettler, type ChainSettler } from '../paycall/chain/settler.js';
import { CHARGE_REF, isReward, METER_REF, REWARD_REF } from './money-store.js';

export const PAYER_TOKEN_PREFIX = 'pt_';
/** Limits that keep one stream or one client from exhausting the server. */
export const MAX_PRICES = 64;
export const MAX_EVENT_NAME_LENGTH = 56;
export const MAX_REF_LENGTH = 128;
export const MAX_METADATA_LENGTH = 1024;
export const MAX_CHARGE_COUNT = 1_000_000;
/** Names Sluice itself uses for charges by amount and by the meter. */
const RESERVED_EVENT_NAMES = new Set(['amount', 'meter', 'reward']);
const RESUME_EVENTS_MAX = 10_000;

export type StreamError =
  | 'StreamNotFound'
  | 'StreamClosed'
  | 'UnknownEvent'
  | 'AmountRequired'
  | 'ChargeTooLarge'
  | 'ZeroAmount'
  | 'LimitExceeded'
  | 'AppInsufficientBalance'
  | 'IdempotencyConflict'
  | 'Overloaded'
  | 'InvalidTerms'
  | 'NoMeter'
  | 'MeterState'
  | 'NoPayoutRequested'
  | 'PayoutAmountMismatch'
  | 'InvalidPayoutInvoice';

export type Fail = { ok: false; error: StreamError; detail?: string };

export interface CreateStreamInput extends StreamTerms {
  payoutDestination: PayoutDestination | null;
  metadata: string;
}

/** A charge by event name (its price, times count) or by amount; `ref` makes it idempotent. Absent fields may be undefined. */
export interface ChargeInput {
  event?: string | undefined;
  amountMsat?: Msat | undefined;
  count?: number | undefined;
  ref: string;
}

export interface MoneyAck {
  ok: true;
  seq: number;
  amountMsat: Msat;
  balanceMsat: bigint;
  replayed: boolean;
}

export type MeterAction = 'start' | 'pause' | 'resume' | 'stop';
export type Actor = 'app' | 'payer';
export type StreamListener = (event: StreamEvent) => void;

export interface StreamService {
  create(appId: string, input: CreateStreamInput): Promise<{ ok: true; stream: StreamView; payerToken: string } | Fail>;
  /** The stream if it belongs to this app (or to anyone when appId is null). */
  get(streamId: string, appId: string | null): Promise<StreamView | null>;
  list(appId: string, limit: number): Promise<StreamView[]>;
  /** The stream a payer token opens, or null. */
  authenticatePayer(payerToken: string): Promise<StreamView | null>;
  charge(streamId: string, input: ChargeInput): Promise<MoneyAck | Fail>;
  reward(streamId: string, input: { amountMsat: Msat; ref: string }): Promise<MoneyAck | Fail>;
  meter(streamId: string, action: MeterAction, actor: Actor): Promise<{ ok: true; seq: number; stream: StreamView } | Fail>;
  close(streamId: string, actor: Actor): Promise<{ ok: true; seq: number; stream: StreamView } | Fail>;
  setPayoutDestination(streamId: string, destination: PayoutDestination): Promise<{ ok: true; stream: StreamView } | Fail>;
  /** The payer's answer to payout_invoice_needed: an invoice for exactly the amount asked. */
  providePayoutInvoice(streamId: string, paymentRequest: string): Promise<{ ok: true } | Fail>;
  /** Events after a seq, in order (money events included), at most RESUME_EVENTS_MAX; only those already delivered to subscribers (durable). */
  eventsAfter(streamId: string, afterSeq: number): Promise<StreamEvent[]>;
  subscribe(streamId: string, listener: StreamListener): () => void;
  /**
   * Listens to invoices paid and payments resolved, loads open streams, restarts their meters,
   * pays back what closed streams still hold (sweepClosedStreams), starts the clock. Call it
   * before the payment service reconciles what an earlier run left in flight, so those
   * outcomes reach their streams.
   */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One metering pass (the clock calls it each tick; tests call it directly). */
  tick(): Promise<void>;
  /** Streams held in memory: open ones, and closed ones still settling or listened to (metrics, tests). */
  liveStreams(): number;
  /**
   * Pays the apps now for every charge this process acknowledged so far (its sweep would within
   * 1.5 × SLUICE_STREAM_SETTLE_INTERVAL_MS), and, with `appId` on PostgreSQL, that app's charges
   * other processes acknowledged: the balance an app reads holds them all.
   */
  settleCharges(appId?: string): Promise<void>;
}

/**
 * SLUICE_STREAM_SETTLE_INTERVAL_MS. A sweep costs a ledger transfer per stream however many
 * charges it moves (about 20-45 µs each on the 2-core VM): at 250 ms, 1,000 busy streams took
 * 10-16% of the event loop in sweeps; every read of the money sweeps first anyway (ADR 0019).
 */
export const DEFAULT_STREAM_SETTLE_INTERVAL_MS = 1000;

export interface StreamServiceDeps {
  store: StreamStore;
  ledger: Ledger;
  invoices: InvoiceService;
  payments: PaymentService;
  clock: Clock;
  logger: Logger;
  tickMs?: number;
  topUpExpiryS?: number;
  /** Default PAYOUT_ASK_IDLE_MS. */
  payoutAskIdleMs?: number;
  /** Resolves a Lightning address to an invoice (default: LNURL-pay over https). */
  lightningAddress?: typeof invoiceFromLightningAddress;
  /**
   * Where new streams keep their money steps: compact rows, committed in groups, with the
   * charges paid to the app in sweeps (money-store.ts). Without it, new streams keep one ledger transfer per
   * step, as streams opened before the rows existed do. It must share the ledger's database.
   */
  money?: MoneyCommitter;
  /** How often charges are swept to the app (rows streams; default DEFAULT_STREAM_SETTLE_INTERVAL_MS): a charge reaches the app within about 1.5 × this (ADR 0021). */
  settleIntervalMs?: number;
}

interface LiveStream {
  row: StreamRow;
  seq: number;
  balance: bigint;
  held: bigint;
  /** Charges sent to the money store and not answered yet (rows streams): the limit check counts them as spent. */
  reserved: bigint;
  /**
   * Payouts sized and not yet held in the ledger as far as `held` knows (amount + fee budget),
   * from the moment decidePayout sizes one until its sender is done: a charge is never admitted
   * against the balance a payout is about to take (the ledger holds it before pay() returns).
   */
  payoutReserved: bigint;
  /**
   * Invoice credits to this (open, live) stream begun (creditHook) and not yet over (told to
   * onInvoicePaid, found already paid, or failed), counted by payment hash (two attempts at
   * one payment may overlap): a balance re-read in between would find the credit in the
   * ledger, and the listener would then add it again.
   */
  creditsInFlight: Map<string, number>;
  /**
   * A meter charge whose commit threw: it may have been written. The next meter charge asks
   * again under the same ref and amount first (a replay answers what happened), so the same
   * seconds are never charged under a second ref.
   */
  meterPending: MeterAttempt | null;
  /** What final meter charges took of a second the meter then went on running into: counted against the next charge. */
  meterCredit: bigint;
  /** A close's refund that waits for a sweep of the stream's charges that failed: the tick tries it again. */
  refundWaiting: boolean;
  pendingOps: number;
  topUp: { paymentHash: string; expiresAt: number } | null;
  topUps: number;
  payouts: number;
  /**
   * Fee-budget loans and returns made in this epoch: each takes the next number for its
   * idempotency key. (Keyed by the payout count, an advance returned without a payout was
   * replayed by the next one, which then lent nothing, while its return moved real money.)
   */
  feeLoans: number;
  feeReturns: number;
  payoutBusy: boolean;
  /**
   * Asked of the payer (destination kind "invoice"): the exact amount, the fee budget, and
   * when. A closed stream's ask nobody answers leaves memory after PAYOUT_ASK_IDLE_MS
   * (dropIdleAsk); an answer after that is sized afresh (providePayoutInvoice).
   */
  payoutAsked: { amountMsat: Msat; maxFeeMsat: Msat; askedAt: number } | null;
  /** The close under way: a second close (app and payer at once, or expiry) joins it. Cleared when it fails, so a later close tries again. */
  closing?: Promise<StreamEvent | Fail>;
  /**
   * Whether the stream's closed status is in the store. False from the moment a close takes
   * it in memory (no more charges) until its `closed` event is saved; a close whose save
   * failed stays so, refusing charges, and is tried again (by the next close, or the clock).
   */
  closeSaved: boolean;
  /** Who asked for the close taken in memory (the clock's retry of a failed save names them). */
  closedBy: Actor | 'expiry' | null;
  listeners: Set<StreamListener>;
  /**
   * Async steps that may still read or change this state (requests, background settlement
   * work, the clock). A closed stream leaves memory only when this is 0 and nothing else ties
   * it there (see `evictable`); every step takes the state through `acquire`, which counts it
   * in the same tick as it finds it, so no step ever holds a state that was evicted.
   */
  busy: number;
  /** Unique per loaded instance: payout idempotency keys include it, because the counters below restart at 0 after a reload. */
  epoch: string;
  /**
   * Events reach subscribers strictly in seq order: a seq is taken before its commit, so a
   * later event (a pause) may be ready before an earlier one (a charge still committing).
   * Each taken seq is delivered once, with its event or as released (refused, replayed).
   */
  nextDelivery: number;
  waiting: Map<number, StreamEvent | null>;
  /** Routing-fee budget the app lent the stream for its refund; returned once the refund resolves (read again from the ledger when a closed stream is loaded: recoverFeeAdvance). */
  feeAdvance: bigint;
  /**
   * The meter's steps (the clock's charge, start/pause/resume/stop, the close's last charge)
   * run one after another: each reads meterSecondsCharged, waits for its commit and only then
   * advances it, so two at once would charge the same seconds twice.
   */
  meterQueue: Promise<void>;
  /** Payouts whose outcome is counted in balance and held (a payment's outcome may be told twice). */
  payoutsResolved: Set<string>;
  /** Payouts this state added to `held` when it sent them: only their outcome is applied as a delta (others: resyncBalance). */
  heldHashes: Set<string>;
  /**
   * Top-up invoices whose `funded` event is recorded, or being recorded (by payment hash): each
   * is recorded once, whether the invoice service tells the payment or a load finds it paid
   * and unrecorded (unrecordedFundings). Their credits are in `balance`.
   */
  fundedHashes: Set<string>;
  /** A close's refund (or a payout asked for) waited for a payout that was out: tried again once that one has ended. */
  payoutAgain: boolean;
  /** Changes to the cached figures (own ledger steps, payments in and out), so a ledger read can tell whether one overlapped it. */
  ownSteps: number;
  /**
   * Set while a balance re-read holds the stream's new steps back (resyncBalance): on a stream
   * charged without pause, no moment comes by itself with no step under way. Steps wait for it
   * (passGate), counted in pendingOps (a close waits for them) and in gatedOps (the re-read
   * does not).
   */
  stepGate: Promise<void> | null;
  gatedOps: number;
  /**
   * Balance re-reads applied (resyncBalance). A payout's hold is in the ledger before pay()
   * returns and only then added to `held` (sendPayout): a re-read applied meanwhile may have
   * counted it already, so sendPayout then reads again instead of adding it.
   */
  reReads: number;
  /** Per CHECKPOINT_EVERY seqs, the lowest money seq seen and its transfer, so a resume walks from near its start (moneyEventsBetween). */
  seqCheckpoints: Map<number, { seq: number; transferId: string }>;
}

interface MeterAttempt {
  ref: string;
  amountMsat: Msat;
  segment: number;
  /** meterSecondsCharged before and after it. */
  fromSeconds: number;
  toSeconds: number;
  /** The part second a final charge took (0 otherwise), and the credit it used. */
  partMsat: bigint;
  creditMsat: bigint;
}

/**
 * What a payout's outcome does to a closed stream's refund fee loan (LiveStream.feeAdvance,
 * refund_fee_advance) when told (onPaymentResolved):
 * - 'takes-fee': a success's routing fee is spent from the loan and the rest goes back to the
 *   app (a failure spends none). The live path (payments.onResolved), and a payout told at load
 *   whose fee the loan read from the ledger did not count (it was pending then).
 * - 'fee-taken': told at load; the loan read from the ledger (lentFromLedger, which saw the
 *   payout posted) already spent its fee: the rest goes back, nothing is taken off again.
 * - 'before-loan': told at load, and not the payout that holds the loan, the newest payout sent
 *   after the newest advance (lentFromLedger's `holder`); a payout before it, older than the
 *   close or an earlier refund, has no part in what is lent now. It leaves the loan alone.
 *   The refund payout that holds it returns it at its own outcome, or recoverFeeAdvance at
 *   load when none does. (Returning it here would leave the old payout's fee, the app's, on
 *   the stream for the payer after a success, and return the loan early after a failure.)
 */
type FeeLoanPart = 'takes-fee' | 'fee-taken' | 'before-loan';

/**
 * How long a closed stream waits in memory for the payer's answer to payout_invoice_needed
 * while nobody listens to it: then the ask is dropped (the app's fee budget goes back) and the
 * stream may leave memory. The money stays on the stream: the payer's later answer is sized
 * afresh, and the next start asks again.
 */
export const PAYOUT_ASK_IDLE_MS = 10 * 60_000;
/** Closed streams read per page by the start's sweep. */
const SWEEP_PAGE = 100;
/** How many commits a charge waits for the charges before it, when only they would put it past the payer's limit (applyMoneyRow). */
const RESERVED_WAITS = 8;
/**
 * A balance re-read (resyncBalance) tries this many times, a millisecond or more apart, to find
 * a moment with no step of the stream under way; then the stream's new steps wait for it.
 */
const RESYNC_GATE_AFTER = 10;
/** And gives up (keeping the cached figures, logged) after this many: a step stuck on a slow database. */
const RESYNC_ATTEMPTS = 2000;
/** Money seqs per remembered transfer (seqCheckpoints), for resume paging. */
const CHECKPOINT_EVERY = 1000;

export function streamAccountId(streamId: string): string {
  return `stream:${streamId}`;
}

export function hashPayerToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Money transfers carry `<stream id>/<seq>/<event>` in their reference. */
function referenceFor(streamId: string, seq: number, name: string): string {
  return `${streamId}/${seq}/${name}`;
}

/** The event a money step makes: it follows from its direction and name (the meter charges under 'meter'). */
function moneyEventType(direction: 'charge' | 'reward', name: string): 'charged' | 'rewarded' | 'metered' {
  return direction === 'reward' ? 'rewarded' : name === 'meter' ? 'metered' : 'charged';
}

function seqFromReference(streamId: string, reference: string): number | null {
  const parts = reference.split('/');
  if (parts.length < 2 || parts[0] !== streamId) return null;
  const seq = Number(parts[1]);
  return Number.isSafeInteger(seq) ? seq : null;
}

export function validateTerms(terms: StreamTerms): string | null {
  if (Object.keys(terms.prices).length > MAX_PRICES) return `at most ${MAX_PRICES} prices`;
  for (const [name, price] of Object.entries(terms.prices)) {
    if (!/^[A-Za-z0-9_.:-]{1,56}$/.test(name)) return `price name ${JSON.stringify(name)} must be 1-56 characters of [A-Za-z0-9_.:-]`;
    if (RESERVED_EVENT_NAMES.has(name)) return `price name ${name} is reserved`;
    if (price === 0n) return `price ${name} must be at least 1 msat`;
    if (price > terms.maxChargeMsat) return `price ${name} is above max_charge_msat`;
  }
  if (terms.maxChargeMsat === 0n) return 'max_charge_msat must be at least 1 msat';
  if (terms.settleToMsat < terms.settleThresholdMsat) return 'settle_to_msat must be at least settle_threshold_msat';
  if (terms.rateMsatPerS > terms.maxChargeMsat) return 'rate_msat_per_s is above max_charge_msat';
  return null;
}

/** Counts one more for `key` (countDown takes it back; at 0 the key is gone). */
function countUp(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function countDown(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 0) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}

/** What a load reads of the stream's log (unrecordedOutcomes, unrecordedFundings). */
const LOAD_EVENT_TYPES: readonly StreamEventType[] = ['settled', 'payout_failed', 'invoice', 'funded'];

/** A stream's live state as loaded (or created), taken once (busy 1) by whoever loads it. */
function newLiveState(row: StreamRow, seq: number, balance: bigint, held: bigint): LiveStream {
  return {
    row, seq, balance, held, reserved: 0n, payoutReserved: 0n, creditsInFlight: new Map(), meterPending: null, meterCredit: 0n, refundWaiting: false, pendingOps: 0, topUp: null, topUps: 0, payouts: 0, feeLoans: 0, feeReturns: 0, payoutBusy: false, payoutAsked: null,
    listeners: new Set(), busy: 1, epoch: randomBytes(6).toString('hex'), nextDelivery: seq + 1, waiting: new Map(),
    feeAdvance: 0n, meterQueue: Promise.resolve(), payoutsResolved: new Set(), heldHashes: new Set(), fundedHashes: new Set(), payoutAgain: false, ownSteps: 0, stepGate: null, gatedOps: 0, reReads: 0, seqCheckpoints: new Map(),
    closeSaved: row.status === 'closed', closedBy: null,
  };
}

export function createStreamService(deps: StreamServiceDeps): StreamService {
  const { store, ledger, invoices, payments, clock, logger, money } = deps;
  const live = new Map<string, LiveStream>();
  /** Loads under way (see acquire): each caller that joins one is counted busy on the state it yields. */
  const loading = new Map<string, { joiners: number; load: Promise<LiveStream | null> }>();
  const byAccount = new Map<string, string>();
  /**
   * Streams with an invoice credit begun (creditHook) and not yet told (onInvoicePaid): the
   * start's sweep does not mark them settled. A credit that does not happen after its hook (told
   * twice, refused) keeps its count: this process then never marks that stream, which is safe.
   */
  const crediting = new Map<string, number>();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let ticking = false;
  /**
   * Rows streams' charges reach the app's account in sweeps (money-store.ts): one transfer per
   * stream for every charge committed since its last sweep, about 1.5 × settleIntervalMs
   * later at most (a sweep is spread over half the interval). Until then the stream's ledger
   * account still holds them, so every read of it settles the stream first
   * (settledLedgerAccount); the cached balance, which limits charges, has them at once.
   */
  const settleIntervalMs = deps.settleIntervalMs ?? DEFAULT_STREAM_SETTLE_INTERVAL_MS;
  const settler: ChainSettler | null = money
    ? createChainSettler({
      store: { settle: (ids, now) => money.store.settle(ids, now), listUnsettledChainIds: () => money.store.listUnsettled() },
      // 50 streams a transaction, in id order (the settler sorts; stream ids sort by creation
      // time), the event loop running between two: a transaction's streams then share pages,
      // and a sweep of 1,000 streams writes 1.5 MB of WAL instead of 15 (ADR 0020). All 1,000
      // in one transaction took 19 ms, a p99 of its own.
      // Spread over half the interval (ADR 0021): a sweep's transactions start evenly over
      // it, so the requests that arrive meanwhile wait for one transaction, not for all of them.
      clock, logger, intervalMs: settleIntervalMs, maxBatch: 50, spreadMs: settleIntervalMs / 2, what: 'stream charges',
      // Several processes may share PostgreSQL: charges one left unswept when it died are found by the others.
      rescanMs: money.store.dialect === 'postgres' ? 60_000 : 0,
    })
    : null;

  /**
   * The stream's ledger account and its balance with every committed charge in it: the stream
   * is swept first, and a charge the sweep could not move (it failed: logged, and kept due) is
   * taken off the balance here, so a stuck sweep never makes the stream read richer than it is.
   */
  const settledLedgerAccount = async (row: StreamRow): Promise<{ account: Account; balance: bigint; unsettledMsat: bigint } | null> => {
    if (row.moneyRows && settler && money) {
      await settler.settleNow([row.id]).catch(() => undefined);
      // Both asked in one turn: on SQLite both read then, so no sweep falls between the two
      // (the balance would read its amount twice). On PostgreSQL they are two statements.
      const [account, unsettledMsat] = await Promise.all([ledger.getAccount(row.accountId), money.store.unsettledMsat(row.id)]);
      if (!account) return null;
      return { account, balance: balanceOf(account) - unsettledMsat, unsettledMsat };
    }
    const account = await ledger.getAccount(row.accountId);
    return account ? { account, balance: balanceOf(account), unsettledMsat: 0n } : null;
  };

  const view = (state: LiveStream): StreamView => ({
    id: state.row.id,
    appId: state.row.appId,
    status: state.row.status,
    meter: state.row.meter,
    terms: {
      prices: state.row.prices,
      rateMsatPerS: state.row.rateMsatPerS,
      maximumMsat: state.row.maximumMsat,
      settleThresholdMsat: state.row.settleThresholdMsat,
      settleToMsat: state.row.settleToMsat,
      maxChargeMsat: state.row.maxChargeMsat,
      payoutThresholdMsat: state.row.payoutThresholdMsat,
      expiresAt: state.row.expiresAt,
    },
    balanceMsat: state.balance,
    // Never below 0 on the wire, even for the instant between an outcome and its hold's delta.
    heldMsat: msat(state.held > 0n ? state.held : 0n),
    seq: state.seq,
    payoutDestination: state.row.payoutDestination,
    metadata: state.row.metadata,
    createdAt: state.row.createdAt,
    closedAt: state.row.closedAt,
  });

  const deliver = (state: LiveStream, seq: number, ready: StreamEvent | null): void => {
    if (seq === state.nextDelivery && state.waiting.size === 0) {
      // Its turn, nothing held back (the common case): no trip through the map.
      state.nextDelivery += 1;
      if (ready) emit(state, ready);
      return;
    }
    state.waiting.set(seq, ready);
    while (state.waiting.has(state.nextDelivery)) {
      const next = state.waiting.get(state.nextDelivery) ?? null;
      state.waiting.delete(state.nextDelivery);
      state.nextDelivery += 1;
      if (next) emit(state, next);
    }
  };

  const emit = (state: LiveStream, event: StreamEvent): void => {
    for (const listener of state.listeners) {
      try {
        listener(event);
      } catch (error) {
        logger.error({ err: error, streamId: state.row.id }, 'a stream listener threw');
      }
    }
  };

  const event = (state: LiveStream, type: StreamEventType, data: Record<string, unknown>, seq = ++state.seq): StreamEvent => ({
    streamId: state.row.id,
    seq,
    type,
    data,
    at: clock.now(),
    balanceMsat: state.balance,
  });

  /** Appends a non-money event durably, then tells subscribers. */
  const record = async (state: LiveStream, type: StreamEventType, data: Record<string, unknown>, saveRow = false): Promise<StreamEvent> => {
    const created = event(state, type, { ...data, balance_msat: state.balance.toString() });
    try {
      if (saveRow) await store.saveWithEvent(state.row, created);
      else await store.appendEvent(created);
    } catch (error) {
      deliver(state, created.seq, null);
      throw error;
    }
    deliver(state, created.seq, created);
    return created;
  };

  /**
   * The seq of the stream's newest money transfer (0: none), and the transfers newer than it
   * (fundings, payouts, the refund's fee budget; newest first), past any number of them.
   */
  const newestMoneySeq = async (row: StreamRow): Promise<{ seq: number; newer: Transfer[] }> => {
    const newer: Transfer[] = [];
    let beforeId: string | undefined;
    for (;;) {
      const transfers = await ledger.listTransfers({ accountId: row.accountId, limit: 1000, ...(beforeId ? { beforeId } : {}) });
      if (transfers.length === 0) return { seq: 0, newer };
      for (const transfer of transfers) {
        const seq = seqFromReference(row.id, transfer.reference);
        if (seq !== null) return { seq, newer };
        newer.push(transfer);
      }
      beforeId = transfers[transfers.length - 1]?.id;
    }
  };

  /**
   * The routing-fee budget the app lent a closed stream's refund and has not had back, read
   * from the ledger (the in-memory figure, feeAdvance, is lost with the process). It replays
   * what the live path does: each advance adds to the loan; each payout's outcome spends its
   * routing fee from it (a success's fee, none for a failure), and the rest is returned
   * (refund_fee_return). `inUse`: a payout is still out, and its outcome returns the rest.
   * Advances happen only after the close, when no money step (a transfer with a seq) follows,
   * so the transfers newer than the newest money step hold them all. `holder`: the newest payout
   * sent after the newest advance, the only one whose outcome may spend or return the loan (a
   * refund takes a new advance, or reuses one still lent; an older payout used none of it, or
   * its outcome already gave the rest back).
   */
  const lentFromLedger = async (row: StreamRow, newer: Transfer[]): Promise<{ lentMsat: bigint; inUse: boolean; newestId: string | null; feesSpent: Set<string>; holder: string | null }> => {
    let lentMsat = 0n;
    let inUse = false;
    let newestId: string | null = null;
    let holder: string | null = null;
    /** Payouts (by payment hash) whose routing fee was taken off the loan here. */
    const feesSpent = new Set<string>();
    for (const transfer of [...newer].reverse()) {
      const debit = transfer.debitAccountId === row.accountId;
      if (transfer.code === 'refund_fee_advance' && !debit) {
        lentMsat += transfer.amountMsat;
        holder = null;
      } else if (transfer.code === 'refund_fee_return' && debit) lentMsat -= transfer.amountMsat;
      else if (transfer.code === 'payment' && debit) {
        inUse = transfer.state === 'pending';
        holder = transfer.reference;
        if (transfer.state === 'posted') {
          const payment = await payments.getPayment(row.appId, transfer.reference);
          if (!payment) throw new Error(`stream ${row.id}: no payment for the posted payout ${transfer.reference}`);
          const feeMsat = transfer.amountMsat - payment.amountMsat;
          lentMsat -= feeMsat < lentMsat ? feeMsat : lentMsat;
          feesSpent.add(transfer.reference);
        }
      } else continue;
      if (lentMsat < 0n) {
        // A history this code cannot explain must not make the stream impossible to load:
        // nothing counts as lent (the payer's balance is then all theirs, as the ledger says).
        logger.error({ streamId: row.id, transferId: transfer.id }, 'more refund fee budget returned than lent on a stream; counted as none lent');
        lentMsat = 0n;
      }
      newestId = transfer.id;
    }
    return { lentMsat, inUse, newestId, feesSpent, holder };
  };

  /**
   * A closed stream loaded again (after a restart): a fee budget the app lent and that no
   * payout holds any more goes back to the app now (a crash came between a payout's outcome
   * and the return, or between the loan and its payout); one that a payout still holds is
   * kept, and that payout's outcome returns what it did not use. The return's key names the
   * newest loan transfer read, so loads that read the same loan return it once.
   */
  const recoverFeeAdvance = async (row: StreamRow, newer: Transfer[]): Promise<{ lentMsat: bigint; feesSpent: Set<string>; holder: string | null }> => {
    if (row.status !== 'closed') return { lentMsat: 0n, feesSpent: new Set(), holder: null };
    const { lentMsat, inUse, newestId, feesSpent, holder } = await lentFromLedger(row, newer);
    if (lentMsat === 0n || inUse) return { lentMsat, feesSpent, holder };
    const result = await ledger.apply({
      kind: 'transfer',
      debitAccountId: row.accountId,
      creditAccountId: appAccountId(row.appId),
      amountMsat: msat(lentMsat),
      code: 'refund_fee_return',
      reference: `${row.id}/refund-fee`,
      idempotencyKey: `st:${row.id}:refund-fee-return:after:${newestId}`,
    });
    if (!result.ok) {
      // Kept as the stream's loan (never paid to the payer): the next refund uses it, and its outcome returns the rest.
      logger.warn({ streamId: row.id, error: result.error }, 'could not return a refund fee budget left on a closed stream; kept as its loan');
      return { lentMsat, feesSpent, holder };
    }
    logger.warn({ streamId: row.id, amountMsat: lentMsat.toString() }, 'returned a refund fee budget an earlier run left on a closed stream');
    return { lentMsat: 0n, feesSpent, holder };
  };

  /**
   * The live state of a stream, loaded when not in memory, counted busy until `release`.
   * The count is taken in the same tick as the state is found in (or put into) the map, so
   * eviction, which runs only when the count is 0, can never pull it from under the caller.
   */
  const acquire = (streamId: string): Promise<LiveStream | null> => {
    const cached = live.get(streamId);
    if (cached) {
      cached.busy += 1;
      return Promise.resolve(cached);
    }
    // One load per stream at a time: a load may return the app's fee budget (recoverFeeAdvance),
    // and two loads at once would each find the budget in a different state than the one kept.
    let entry = loading.get(streamId);
    if (!entry) {
      const started: { joiners: number; load: Promise<LiveStream | null> } = { joiners: 0, load: Promise.resolve(null) };
      started.load = load(streamId, started).finally(() => {
        if (loading.get(streamId) === started) loading.delete(streamId);
      });
      loading.set(streamId, started);
      entry = started;
    }
    entry.joiners += 1;
    return entry.load;
  };

  /** Reads a stream into memory, counted busy once for each caller that joined the load. */
  const load = async (streamId: string, entry: { joiners: number }): Promise<LiveStream | null> => {
    const row = await store.getStream(streamId);
    if (!row) return null;
    // Charges not yet swept are settled first, so the walk below finds their transfer.
    if (row.moneyRows && settler) await settler.settleNow([row.id]).catch(() => undefined);
    const newest = await newestMoneySeq(row);
    const { lentMsat: feeAdvance, feesSpent, holder: loanHolder } = await recoverFeeAdvance(row, newest.newer);
    // The log's events a load looks at (payouts and fundings), in one read. The fundings are
    // read before the balance: a payment found here has its credit in that read (an invoice is
    // marked paid in the credit's transaction).
    const logged = await store.listEventsOfTypes(row.id, LOAD_EVENT_TYPES);
    const fundings = await unrecordedFundings(row, logged);
    // Read after the fee budget's return, so the balance holds it.
    const read = await settledLedgerAccount(row);
    if (!read) throw new Error(`stream ${streamId} has no ledger account`);
    if (row.moneyRows && !money) throw new Error(`stream ${streamId} keeps its money steps as rows, and this service has no money store`);
    const seq = Math.max(await store.maxEventSeq(streamId), newest.seq, row.moneyRows && money ? await money.store.maxSeq(streamId) : 0);
    const unrecorded = await unrecordedOutcomes(row, logged);
    // From here on, callers find the state in `live` (synchronously), not this load.
    loading.delete(streamId);
    const again = live.get(streamId);
    if (again) {
      again.busy += entry.joiners;
      return again;
    }
    const state = newLiveState(row, seq, read.balance, read.account.debitsPendingMsat);
    state.busy = entry.joiners;
    state.feeAdvance = feeAdvance;
    state.fundedHashes = fundings.recorded;
    live.set(streamId, state);
    byAccount.set(row.accountId, streamId);
    // Told now, as the payments service would have: counted once with an outcome told again (payoutsResolved).
    // Only the payout that holds the refund's fee loan (sent after the newest advance) can spend or return it (FeeLoanPart).
    for (const payment of unrecorded) {
      const hash = payment.paymentHash;
      const loanPart: FeeLoanPart = hash !== loanHolder ? 'before-loan' : feesSpent.has(hash) ? 'fee-taken' : 'takes-fee';
      onPaymentResolved({ ...payment, debitAccountId: row.accountId }, loanPart);
    }
    // Recorded now, as the invoice service's listener would have; their credits are in the balance read above.
    // In the order found (the order they were paid): each takes its seq as it starts (record), before the next starts.
    for (const paid of fundings.unrecorded) {
      state.fundedHashes.add(paid.paymentHash);
      background(state, 'recording a funding event found at load', async () => {
        await recordFunded(state, paid.paymentHash, paid.amountPaidMsat);
        afterMoney(state);
      });
    }
    return state;
  };

  /**
   * The stream's payouts whose outcome the payments service saved but the stream never
   * recorded (`settled` / `payout_failed`): a crash came between the two, and the payments
   * service tells an outcome only once. Read at load; telling them to the stream then records
   * them, and the next load finds them recorded. The payouts looked at are every payment the
   * stream's account paid (payouts are its only payments), whatever the log says: a payout
   * answered before pay() returned never has a `payout_requested`, and its transfer is older
   * than the newest money step once a charge committed after it (the ledger walk of an
   * earlier version missed it, and a payer waiting for `settled` waited for good). Per payment
   * hash the attempt that is not failed counts (at most one is: the payments_live_hash index),
   * else the newest, so attempts created in the same millisecond (ordered by a random id) read
   * alike on both dialects; one still pending is told when it resolves. A hash with an outcome
   * event of either kind is passed by.
   * Oldest first (each is recorded after its own balance re-read, so that order is not kept in the log).
   */
  const unrecordedOutcomes = async (row: StreamRow, logged: readonly StreamEvent[]): Promise<PaymentView[]> => {
    const recorded = new Set<string>();
    for (const event of logged) {
      if (event.type !== 'settled' && event.type !== 'payout_failed') continue;
      const hash = event.data.payment_hash;
      if (typeof hash === 'string') recorded.add(hash); // none: a payout refused before it was sent
    }
    const byHash = new Map<string, PaymentView>();
    for (const payment of await payments.listPaymentsOf(row.appId, row.accountId)) {
      if (recorded.has(payment.paymentHash)) continue;
      const kept = byHash.get(payment.paymentHash);
      if (kept && kept.status !== 'failed' && payment.status === 'failed') continue;
      byHash.delete(payment.paymentHash); // and set again: the order is the kept attempt's
      byHash.set(payment.paymentHash, payment);
    }
    return [...byHash.values()].filter((payment) => payment.status !== 'pending');
  };

  /**
   * The stream's top-up invoices that were paid and never recorded (`funded`): a crash came
   * between the credit's commit and the invoice service's listener, which tells a payment once
   * (a payer waiting for `funded`, as docs/protocol.md says to, waited for good). The invoices
   * looked at are those the log announced (`invoice` events; a stream is credited only through
   * them) without a `funded` event; the log's non-money events are few per stream. Also returns
   * the hashes already recorded, so a payment told again later is not recorded twice. In the
   * order they were paid (the invoices' paid_at; ties in the order the log announced them), as
   * the listener would have recorded them: the invoice records answer in any order.
   */
  const unrecordedFundings = async (row: StreamRow, logged: readonly StreamEvent[]): Promise<{ recorded: Set<string>; unrecorded: { paymentHash: string; amountPaidMsat: Msat }[] }> => {
    const announced = new Set<string>();
    const recorded = new Set<string>();
    for (const event of logged) {
      if (event.type !== 'invoice' && event.type !== 'funded') continue;
      const hash = event.data.payment_hash;
      if (typeof hash === 'string') (event.type === 'invoice' ? announced : recorded).add(hash);
    }
    const unrecorded: { paymentHash: string; amountPaidMsat: Msat }[] = [];
    // One read for them all: a stream the payer left unpaid for long has a top-up announced per expiry.
    const unfunded = [...announced].filter((hash) => !recorded.has(hash));
    const paid = unfunded.length === 0 ? [] : await invoices.listPaidInvoices(row.appId, unfunded);
    const announcedAt = new Map(unfunded.map((hash, index) => [hash, index]));
    // A paid invoice always has its paid_at (set with its status); one without would go last.
    const paidAt = (invoice: { paidAt: number | null }): number => invoice.paidAt ?? Number.MAX_SAFE_INTEGER;
    paid.sort((x, y) => paidAt(x) - paidAt(y) || (announcedAt.get(x.paymentHash) ?? 0) - (announcedAt.get(y.paymentHash) ?? 0));
    for (const invoice of paid) {
      if (invoice.amountPaidMsat !== null) unrecorded.push({ paymentHash: invoice.paymentHash, amountPaidMsat: invoice.amountPaidMsat });
    }
    return { recorded, unrecorded };
  };

  /**
   * A closed stream with nothing under way and nobody listening is dropped from memory, so
   * memory holds open streams (and closed ones still settling), not every stream ever closed.
   * A later request loads it again from the store (and is refused: stream_closed). Kept while
   * a payout is being decided or asked of the payer (until the ask is dropped as idle:
   * dropIdleAsk), or the refund's fee advance is out: that state exists only in memory. A
   * payout or top-up resolving later loads the stream again.
   */
  const evictable = (state: LiveStream): boolean =>
    state.busy === 0 && state.row.status === 'closed' && state.closeSaved && state.listeners.size === 0 && state.pendingOps === 0 && state.waiting.size === 0
    && !state.payoutBusy && state.payoutAsked === null && state.feeAdvance === 0n && !state.payoutAgain && !state.refundWaiting;

  const release = (state: LiveStream): void => {
    state.busy -= 1;
    if (state.busy < 0) throw new Error(`stream ${state.row.id} released more often than acquired`);
    if (evictable(state) && live.get(state.row.id) === state) {
      live.delete(state.row.id);
      byAccount.delete(state.row.accountId);
    }
  };

  /** Runs `step` with the stream acquired (null: no such stream). */
  const withStream = <T>(streamId: string, step: (state: LiveStream | null) => Promise<T>): Promise<T> => {
    // The common case, a stream in memory, without the extra await of `acquire` (per charge).
    const cached = live.get(streamId);
    if (cached) {
      cached.busy += 1;
      return runAcquired(cached, step);
    }
    return acquire(streamId).then((state) => (state ? runAcquired(state, step) : step(null)));
  };

  const runAcquired = async <T>(state: LiveStream, step: (state: LiveStream) => Promise<T>): Promise<T> => {
    try {
      return await step(state);
    } finally {
      release(state);
    }
  };

  /** Settlement work that outlives the request that started it: the stream stays in memory until it ends. */
  const background = (state: LiveStream, what: string, step: () => Promise<void>): void => {
    state.busy += 1;
    step()
      .catch((error) => logger.error({ err: error, streamId: state.row.id }, `${what} failed`))
      .finally(() => release(state));
  };

  /** Whether a top-up invoice is due (cheap, synchronous: asked after every charge). */
  const topUpDue = (state: LiveStream): boolean => {
    const row = state.row;
    if (row.status !== 'open' || row.settleToMsat === 0n) return false;
    if (state.topUp && state.topUp.expiresAt > clock.now()) return false;
    return state.balance < row.settleThresholdMsat || (state.topUps === 0 && state.balance < row.settleToMsat);
  };

  /** Whether a payout is due (cheap, synchronous): over the threshold while open; anything left once closed (a late top-up). */
  const payoutDue = (state: LiveStream): boolean => {
    const row = state.row;
    if (state.payoutBusy || state.payoutAsked || state.held > 0n) return false;
    if (row.status === 'closed') return state.balance - state.feeAdvance > 0n;
    return row.payoutThresholdMsat > 0n && state.balance - row.settleToMsat >= row.payoutThresholdMsat;
  };

  const maybeTopUp = async (state: LiveStream): Promise<void> => {
    const row = state.row;
    if (!topUpDue(state)) return;
    const amountMsat = msat(row.settleToMsat - state.balance);
    if (amountMsat === 0n) return;
    state.topUps += 1;
    // Being created: a charge meanwhile (the invoice takes a node round trip and a commit) must
    // not ask for a second one. Two were asked for on PostgreSQL, and a payer paying both was
    // funded twice over settle_to_msat.
    const creating = { paymentHash: '', expiresAt: Number.POSITIVE_INFINITY };
    state.topUp = creating;
    let created: Awaited<ReturnType<InvoiceService['createInvoice']>>;
    try {
      created = await invoices.createInvoice(row.appId, {
        amountMsat,
        description: `Top-up for stream ${row.id}`,
        expiryS: deps.topUpExpiryS ?? 3600,
        idempotencyKey: `st:${row.id}:topup:${state.seq}:${amountMsat}`,
        creditAccountId: row.accountId,
      });
    } catch (error) {
      if (state.topUp === creating) state.topUp = null;
      throw error;
    }
    if (!created.ok) {
      if (state.topUp === creating) state.topUp = null;
      logger.warn({ streamId: row.id, error: created.error }, 'could not create a top-up invoice');
      return;
    }
    state.topUp = { paymentHash: created.invoice.paymentHash, expiresAt: created.invoice.expiresAt };
    await record(state, 'invoice', {
      payment_request: created.invoice.paymentRequest,
      payment_hash: created.invoice.paymentHash,
      amount_msat: amountMsat.toString(),
      expires_at: new Date(created.invoice.expiresAt).toISOString(),
    });
  };

  const sendPayout = async (state: LiveStream, amountMsat: Msat, maxFeeMsat: Msat, target: Parameters<PaymentService['pay']>[1]['target']): Promise<void> => {
    state.payouts += 1;
    const reReadsBefore = state.reReads;
    let result: Awaited<ReturnType<PaymentService['pay']>>;
    try {
      result = await payments.pay(state.row.appId, {
        target,
        maxFeeMsat,
        idempotencyKey: `st:${state.row.id}:payout:${state.epoch}.${state.payouts}:${amountMsat}`,
        debitAccountId: state.row.accountId,
      });
    } catch (error) {
      // Whether the hold was made is unknown: the ledger says, so its outcome's delta lands on the right figure.
      await resyncBalance(state);
      throw error;
    }
    if (!result.ok) {
      if (state.feeAdvance > 0n) await returnFeeAdvance(state, 0n);
      await record(state, 'payout_failed', { amount_msat: amountMsat.toString(), reason: result.error });
      return;
    }
    // The hold (amount + fee budget) is out until the outcome, which takes it back (onPaymentResolved):
    // until then no other payout is sized from a balance the hold already spoke for. An outcome
    // told before pay() returned (a final answer) has already been read from the ledger.
    const paymentHash = result.payment.paymentHash;
    const addHold = (): void => {
      state.held += amountMsat + maxFeeMsat;
      state.heldHashes.add(paymentHash);
      state.ownSteps += 1; // a re-read under way must not overwrite this
    };
    // A re-read applied while pay() was out may hold this hold already, or not: the ledger says
    // (after payout_requested is recorded: its seq comes before the outcome's), and the outcome
    // is then read from the ledger too (not in heldHashes).
    const resolved = state.payoutsResolved.has(paymentHash);
    const readAgain = !resolved && state.reReads !== reReadsBefore;
    if (!resolved && !readAgain) addHold();
    try {
      if (result.payment.status === 'pending') {
        await record(state, 'payout_requested', { amount_msat: amountMsat.toString(), payment_hash: paymentHash });
      }
    } finally {
      // Not read (the re-read gave up): counted as held, so no charge spends it.
      if (readAgain && !(await resyncBalance(state)) && !state.payoutsResolved.has(paymentHash)) addHold();
    }
    // succeeded and failed outcomes arrive through the payments listener below.
  };

  /**
   * The money events (charges, rewards, meter) with seq in (from, to], from the stream
   * account's transfers. Transfers list newest first (a chain per account), so the walk starts
   * at the remembered transfer nearest above `to` (seqCheckpoints) and goes back until it
   * passes `from`: a resume pages forward in steps of its own size, not from the newest each time.
   */
  const moneyEventsBetween = async (state: LiveStream, from: number, to: number): Promise<StreamEvent[]> => {
    const streamId = state.row.id;
    if (state.row.moneyRows && money) {
      const events: StreamEvent[] = [];
      for (const step of await money.store.listBetween(streamId, from, to, RESUME_EVENTS_MAX)) {
        if (step.refused !== null) continue;
        const type = moneyEventType(isReward(step.ref) ? 'reward' : 'charge', step.name);
        events.push({ streamId, seq: step.seq, type, data: { event: step.name, amount_msat: step.amountMsat.toString() }, at: step.at });
      }
      return events;
    }
    let beforeId = checkpointAbove(state, to);
    const found: StreamEvent[] = [];
    for (;;) {
      const transfers = await ledger.listTransfers({ accountId: state.row.accountId, limit: 1000, ...(beforeId ? { beforeId } : {}) });
      if (transfers.length === 0) return found;
      for (const transfer of transfers) {
        const seq = seqFromReference(streamId, transfer.reference);
        if (seq === null) continue;
        rememberCheckpoint(state, seq, transfer.id);
        if (seq <= from) return found;
        if (seq > to) continue;
        const name = transfer.reference.split('/').slice(2).join('/');
        const type = moneyEventType(transfer.code.startsWith('reward:') ? 'reward' : 'charge', name);
        found.push({ streamId, seq, type, data: { event: name, amount_msat: transfer.amountMsat.toString() }, at: transfer.createdAt });
      }
      beforeId = transfers[transfers.length - 1]?.id;
    }
  };

  /** Keeps, per CHECKPOINT_EVERY seqs, the lowest money seq known and its transfer id. */
  const rememberCheckpoint = (state: LiveStream, seq: number, transferId: string): void => {
    const bucket = Math.floor(seq / CHECKPOINT_EVERY);
    const known = state.seqCheckpoints.get(bucket);
    if (!known || seq < known.seq) state.seqCheckpoints.set(bucket, { seq, transferId });
  };

  /** The id of a remembered money transfer with seq above `seq` (the nearest one), or undefined: start from the newest. */
  const checkpointAbove = (state: LiveStream, seq: number): string | undefined => {
    const last = Math.floor(state.seq / CHECKPOINT_EVERY);
    for (let bucket = Math.floor((seq + 1) / CHECKPOINT_EVERY); bucket <= last; bucket += 1) {
      const known = state.seqCheckpoints.get(bucket);
      if (known && known.seq > seq) return known.transferId;
    }
    return undefined;
  };

  /** Runs a ledger step of the stream's own and applies its delta, counted for resyncBalance until the delta is in. */
  const ownStep = async <T>(state: LiveStream, step: () => Promise<T>): Promise<T> => {
    state.pendingOps += 1;
    try {
      if (state.stepGate) await passGate(state);
      state.ownSteps += 1;
      return await step();
    } finally {
      state.pendingOps -= 1;
    }
  };

  /** Waits while a balance re-read holds the stream's steps back (LiveStream.stepGate). The caller counted itself in pendingOps. */
  const passGate = async (state: LiveStream): Promise<void> => {
    state.gatedOps += 1;
    try {
      while (state.stepGate) await state.stepGate;
    } finally {
      state.gatedOps -= 1;
    }
  };

  /**
   * For the refund at close, the app lends the stream the routing-fee budget, so the payer
   * gets back every msat of their balance and nothing is left stranded on a closed stream;
   * what the route did not use goes back to the app. False when the app cannot lend it.
   */
  const advanceRefundFee = (state: LiveStream, maxFeeMsat: Msat): Promise<boolean> => ownStep(state, async () => {
    const result = await ledger.apply({
      kind: 'transfer',
      debitAccountId: appAccountId(state.row.appId),
      creditAccountId: state.row.accountId,
      amountMsat: maxFeeMsat,
      code: 'refund_fee_advance',
      reference: `${state.row.id}/refund-fee`,
      idempotencyKey: `st:${state.row.id}:refund-fee:${state.epoch}.loan${++state.feeLoans}`,
    });
    if (!result.ok) return false;
    // A replay lent nothing now: it is not counted again (keys are unique per loan, so none is expected).
    if (!result.replayed) {
      state.balance += maxFeeMsat;
      state.feeAdvance += maxFeeMsat;
    }
    return true;
  });

  const returnFeeAdvance = async (state: LiveStream, feeMsat: bigint): Promise<void> => {
    const unused = state.feeAdvance - feeMsat;
    // The part the route used is spent; the rest stays counted as lent until its return has
    // committed, so a payout sized meanwhile (the start's sweep, a payout that waited) never
    // counts it as the payer's. A return that fails leaves it lent (a later load returns it).
    state.feeAdvance = unused > 0n ? unused : 0n;
    if (unused <= 0n) return;
    await ownStep(state, async () => {
      const result = await ledger.apply({
        kind: 'transfer',
        debitAccountId: state.row.accountId,
        creditAccountId: appAccountId(state.row.appId),
        amountMsat: msat(unused),
        code: 'refund_fee_return',
        reference: `${state.row.id}/refund-fee`,
        idempotencyKey: `st:${state.row.id}:refund-fee-return:${state.epoch}.return${++state.feeReturns}`,
      });
      if (!result.ok) return;
      if (!result.replayed) state.balance -= unused;
      state.feeAdvance -= unused;
    });
  };

  /**
   * What to pay out now, or null. The cached balance moves by deltas as steps commit, so it is
   * read again from the ledger and the lower of the two is paid from: a payout never exceeds
   * what the payer holds. None while an earlier payout's hold is out: it resolves first.
   */
  const decidePayout = async (state: LiveStream, closing: boolean): Promise<{ amountMsat: Msat; maxFeeMsat: Msat } | null> => {
    const row = state.row;
    const read = await settledLedgerAccount(row);
    const held = read && read.account.debitsPendingMsat > state.held ? read.account.debitsPendingMsat : state.held;
    if (held > 0n || state.payoutReserved > 0n) return null;
    // Charges still committing were admitted against this balance: not the payer's to take out.
    const cached = state.balance - state.reserved;
    const balance = read && read.balance < cached ? read.balance : cached;
    const refund = closing || row.status === 'closed';
    // Until the close is saved, charges submitted before it may still commit: the close's own
    // refund follows its save (closeOnce), sized from what they left.
    if (refund && !state.closeSaved) return null;
    // Charges a sweep could not move yet: the refund (and the fee budget the app lends it)
    // waits for that sweep, which must come first in the ledger (a load finds the budget among
    // the transfers after the newest money step). The tick tries again.
    if (refund && read && read.unsettledMsat > 0n) {
      state.refundWaiting = true;
      return null;
    }
    const excess = refund ? balance - state.feeAdvance : balance - row.settleToMsat;
    if (excess <= 0n) return null;
    if (!refund && (row.payoutThresholdMsat === 0n || excess < row.payoutThresholdMsat)) return null;
    const maxFeeMsat = defaultMaxFeeMsat(msat(excess));
    if (refund && (state.feeAdvance >= maxFeeMsat || (await advanceRefundFee(state, maxFeeMsat)))) return reservePayout(state, msat(excess), maxFeeMsat);
    if (excess <= maxFeeMsat) return null; // dust: paying it out would cost more than it is worth
    return reservePayout(state, msat(excess - maxFeeMsat), maxFeeMsat);
  };

  /**
   * Counts a payout just sized against the payer's limit at once, in the same turn as its
   * sizing (payoutReserved): its ledger hold is made before pay() returns, and a charge
   * admitted meanwhile would spend the same balance. The caller releases it when its sender
   * is done (releasePayout), by when the hold is in `held` or the payout did not go.
   */
  const reservePayout = (state: LiveStream, amountMsat: Msat, maxFeeMsat: Msat): { amountMsat: Msat; maxFeeMsat: Msat } => {
    state.payoutReserved += amountMsat + maxFeeMsat;
    return { amountMsat, maxFeeMsat };
  };

  const releasePayout = (state: LiveStream, decided: { amountMsat: Msat; maxFeeMsat: Msat } | null): void => {
    if (decided) state.payoutReserved -= decided.amountMsat + decided.maxFeeMsat;
  };

  const maybePayout = async (state: LiveStream, closing: boolean): Promise<void> => {
    const row = state.row;
    if (state.payoutBusy || state.payoutAsked || state.held > 0n) {
      // A close's refund waits for the payout under way, and is tried once that one has ended
      // (paid or failed: resumePayout). An open stream's next money step asks again anyway.
      if (closing || row.status === 'closed') state.payoutAgain = true;
      return;
    }
    state.payoutBusy = true;
    let decided: Awaited<ReturnType<typeof decidePayout>> = null;
    try {
      decided = await decidePayout(state, closing);
      if (!decided) return;
      const { amountMsat, maxFeeMsat } = decided;
      const destination = row.payoutDestination;
      if (destination === null || destination.kind === 'invoice') {
        state.payoutAsked = { ...decided, askedAt: clock.now() };
        await record(state, 'payout_invoice_needed', { amount_msat: amountMsat.toString() });
        return;
      }
      if (destination.kind === 'lightning_address') {
        const invoice = await (deps.lightningAddress ?? invoiceFromLightningAddress)(destination.address, amountMsat);
        if (!invoice.ok) {
          if (state.feeAdvance > 0n) await returnFeeAdvance(state, 0n);
          await record(state, 'payout_failed', { amount_msat: amountMsat.toString(), reason: `lightning_address: ${invoice.error}`, detail: invoice.detail });
          return;
        }
        await sendPayout(state, amountMsat, maxFeeMsat, { kind: 'invoice', paymentRequest: invoice.paymentRequest, amountMsat: null });
      } else {
        await sendPayout(state, amountMsat, maxFeeMsat, { kind: 'keysend', destinationPubkey: destination.pubkey, amountMsat });
      }
    } finally {
      releasePayout(state, decided);
      state.payoutBusy = false;
      resumePayout(state);
    }
  };

  /** Runs the payout that waited for another one (payoutAgain), once nothing is under way. */
  const resumePayout = (state: LiveStream): void => {
    if (!state.payoutAgain || state.payoutBusy || state.payoutAsked || state.held > 0n) return;
    state.payoutAgain = false;
    background(state, 'payout', () => maybePayout(state, state.row.status === 'closed'));
  };

  /** After money moved: start settlement work only when some is due (this runs per charge). */
  const afterMoney = (state: LiveStream): void => {
    if (topUpDue(state)) background(state, 'top-up', () => maybeTopUp(state));
    if (payoutDue(state)) background(state, 'payout', () => maybePayout(state, false));
  };

  /**
   * Applies one money step for the stream; its seq is taken before the commit, so acks are
   * ordered. `ref` is namespaced (CHARGE_REF, REWARD_REF, METER_REF): a retry with the same
   * one gets the first answer. Rows streams commit it as a row (applyMoneyRow); the others as
   * a ledger transfer of its own, under the idempotency key `st:<stream>:<ref>`.
   */
  const applyMoney = (
    state: LiveStream,
    name: string,
    amountMsat: Msat,
    direction: 'charge' | 'reward',
    ref: string,
  ): Promise<MoneyAck | Fail> =>
    state.row.moneyRows && money ? applyMoneyRow(state, name, amountMsat, direction, ref, money) : applyMoneyTransfer(state, name, amountMsat, direction, ref);

  const refusedFor = (direction: 'charge' | 'reward'): Fail => ({ ok: false, error: direction === 'charge' ? 'LimitExceeded' : 'AppInsufficientBalance' });

  /** A money step that moved: the cached balance follows, subscribers hear of it in seq order, settlement work starts if due. */
  const moved = (state: LiveStream, seq: number, name: string, amountMsat: Msat, direction: 'charge' | 'reward'): MoneyAck => {
    state.balance += direction === 'charge' ? -amountMsat : amountMsat;
    // Delivered in its turn with nobody listening (the common case), the event is not built:
    // a listener that comes later reads it from history (eventsAfter serves every delivered
    // seq). One that waits for an earlier seq is built now, with the balance of this moment.
    const inTurn = seq === state.nextDelivery && state.waiting.size === 0;
    const created = inTurn && state.listeners.size === 0
      ? null
      : event(state, moneyEventType(direction, name), { event: name, amount_msat: amountMsat.toString(), balance_msat: state.balance.toString() }, seq);
    deliver(state, seq, created);
    afterMoney(state);
    return { ok: true, seq, amountMsat, balanceMsat: state.balance, replayed: false };
  };

  /** What the payer may still be charged: the balance less the payouts' holds and reservations, plus the debt limit. */
  const spendableMsat = (state: LiveStream): bigint => state.balance - state.held - state.payoutReserved + state.row.maximumMsat;

  /**
   * The step as a row (money-store.ts). A charge is checked against the payer's limit here, in
   * memory, counting the charges still committing (`reserved`) and the payouts' holds, because
   * the ledger sees only the stream's summed transfer of each commit (and checks it again).
   * One refused here is still committed, as refused, so its ref answers the same refusal again.
   */
  const applyMoneyRow = async (
    state: LiveStream,
    name: string,
    amountMsat: Msat,
    direction: 'charge' | 'reward',
    ref: string,
    committer: MoneyCommitter,
  ): Promise<MoneyAck | Fail> => {
    const row = state.row;
    // Counted before any wait: a close waits for this step (its charge must not follow the close).
    state.pendingOps += 1;
    let refused = false;
    let reserved = 0n;
    let seq = 0;
    let delivered = false;
    try {
      if (state.stepGate) await passGate(state);
      state.ownSteps += 1;
      // The app's balance must cover a reward: this stream's charges before it count in it, so
      // they are answered (committed) and swept first.
      if (direction === 'reward' && settler) {
        for (let tries = 0; state.reserved > 0n && tries < RESERVED_WAITS; tries += 1) await committer.afterQueued();
        await settler.settleNow([row.id]).catch(() => undefined);
      }
      if (direction === 'charge') {
        refused = amountMsat > spendableMsat(state);
        // Refused only because of charges still committing: some may be replays, which move
        // nothing. It waits for them, as the ledger's own check came after the steps before it;
        // still so after RESERVED_WAITS commits, it is refused as overloaded (nothing recorded).
        for (let tries = 0; !refused && state.reserved > 0n && amountMsat > spendableMsat(state) - state.reserved; tries += 1) {
          if (tries === RESERVED_WAITS) return { ok: false, error: 'Overloaded', detail: 'charges still committing on this stream may leave no room for this one; try again' };
          await committer.afterQueued();
          refused = amountMsat > spendableMsat(state);
        }
        if (!refused) state.reserved += reserved = amountMsat;
      }
      // Taken as the step is submitted, after any wait: a stream's steps then commit in seq
      // order, which the sweeps rely on (a settled seq never passes a charge still to come).
      seq = ++state.seq;
      const outcome = await committer.submit({
        streamId: row.id, accountId: row.accountId, appId: row.appId, seq, ref, name, amountMsat, at: clock.now(), refused: refused ? 'LimitExceeded' : undefined,
      });
      // Released in the same turn as the balance below moves, so the limit check never counts a charge twice or not at all.
      state.reserved -= reserved;
      reserved = 0n;
      if (outcome === 'Overloaded') return { ok: false, error: 'Overloaded' };
      if (outcome.kind === 'replay') {
        const first = outcome.first;
        if (first.name !== name || first.amountMsat !== amountMsat) return { ok: false, error: 'IdempotencyConflict' };
        if (first.refused !== null) return refusedFor(direction);
        return { ok: true, seq: first.seq, amountMsat: first.amountMsat, balanceMsat: state.balance, replayed: true };
      }
      if (outcome.refused !== null) return refusedFor(direction);
      if (direction === 'charge') settler?.noteCommitted(row.id);
      const ack = moved(state, seq, name, amountMsat, direction);
      delivered = true;
      return ack;
    } catch (error) {
      // The commit's outcome is unknown (it may have happened): a charge it wrote is due to the
      // app like any other, and the cached balance is read again from the ledger.
      if (direction === 'charge') settler?.noteCommitted(row.id);
      background(state, 'balance re-read after a failed money commit', async () => {
        await resyncBalance(state);
      });
      throw error;
    } finally {
      state.reserved -= reserved;
      if (!delivered && seq !== 0) deliver(state, seq, null);
      state.pendingOps -= 1;
    }
  };

  /** The step as a ledger transfer of its own (streams opened before the rows existed). */
  const applyMoneyTransfer = async (
    state: LiveStream,
    name: string,
    amountMsat: Msat,
    direction: 'charge' | 'reward',
    ref: string,
  ): Promise<MoneyAck | Fail> => {
    const row = state.row;
    state.pendingOps += 1;
    let seq = 0;
    let delivered = false;
    try {
      if (state.stepGate) await passGate(state);
      seq = ++state.seq;
      state.ownSteps += 1;
      const result = await ledger.apply({
        kind: 'transfer',
        debitAccountId: direction === 'charge' ? row.accountId : appAccountId(row.appId),
        creditAccountId: direction === 'charge' ? appAccountId(row.appId) : row.accountId,
        amountMsat,
        // The event name is in the code, which the ledger's idempotency check compares; the
        // reference carries the seq, which a retry cannot know (it gets the first one back).
        code: `${direction}:${name}`,
        reference: referenceFor(row.id, seq, name),
        idempotencyKey: `st:${row.id}:${ref}`,
      });
      if (!result.ok) {
        if (result.error === 'LimitExceeded') return refusedFor(direction);
        if (result.error === 'IdempotencyConflict' || result.error === 'Overloaded') return { ok: false, error: result.error };
        throw new Error(`ledger refused a stream ${direction}: ${result.error}`);
      }
      if (result.replayed) {
        deliver(state, seq, null);
        delivered = true;
        const firstSeq = seqFromReference(row.id, result.transfer.reference) ?? seq;
        return { ok: true, seq: firstSeq, amountMsat: result.transfer.amountMsat, balanceMsat: state.balance, replayed: true };
      }
      rememberCheckpoint(state, seq, result.transfer.id);
      const ack = moved(state, seq, name, amountMsat, direction);
      delivered = true;
      return ack;
    } finally {
      if (!delivered && seq !== 0) deliver(state, seq, null);
      state.pendingOps -= 1;
    }
  };

  /** A charge on an open stream: priced by event (or by amount), checked, then applied as a money step. */
  const chargeOpen = (state: LiveStream, input: ChargeInput): Promise<MoneyAck | Fail> => {
    let amount: bigint;
    let name: string;
    if (input.event !== undefined) {
      const price = state.row.prices[input.event];
      if (price === undefined) return Promise.resolve({ ok: false, error: 'UnknownEvent', detail: `no price for event ${JSON.stringify(input.event)}` });
      // Plain bigint until checked against max_charge: price x count may pass 2^63.
      amount = input.count === undefined ? price : price * BigInt(input.count);
      name = input.event;
    } else if (input.amountMsat !== undefined) {
      amount = input.amountMsat;
      name = 'amount';
    } else {
      return Promise.resolve({ ok: false, error: 'AmountRequired' });
    }
    if (amount === 0n) return Promise.resolve({ ok: false, error: 'ZeroAmount' });
    if (amount > state.row.maxChargeMsat) return Promise.resolve({ ok: false, error: 'ChargeTooLarge', detail: `the largest step is ${state.row.maxChargeMsat} msat` });
    return applyMoney(state, name, msat(amount), 'charge', CHARGE_REF + input.ref);
  };

  /** Runs `step` on an open stream (acquired); StreamNotFound or StreamClosed otherwise. */
  const withOpenStream = <T>(streamId: string, step: (state: LiveStream) => Promise<T | Fail>): Promise<T | Fail> =>
    withStream(streamId, async (state) => {
      if (!state) return { ok: false, error: 'StreamNotFound' } as Fail;
      if (state.row.status !== 'open') return { ok: false, error: 'StreamClosed' } as Fail;
      return step(state);
    });

  /** Runs one meter step after the ones before it (see LiveStream.meterQueue); call chargeMeter and setMeter only inside one. */
  const meterStep = <T>(state: LiveStream, step: () => Promise<T>): Promise<T> => {
    const run = state.meterQueue.then(step);
    state.meterQueue = run.then(() => undefined, () => undefined);
    return run;
  };

  /**
   * Charges the whole seconds of the running segment not yet charged (and, when `final`, the
   * part second). null when charged (or nothing was due), else why not: LimitExceeded (the
   * payer cannot cover it) or Overloaded (the ledger took nothing; the seconds stay uncharged
   * for the next try).
   */
  const chargeMeter = async (state: LiveStream, final: boolean): Promise<StreamError | null> => {
    const row = state.row;
    if (row.meter !== 'running' || row.meterSegmentStartedAt === null || row.rateMsatPerS === 0n) return null;
    const pending = state.meterPending;
    if (pending && pending.segment === row.meterSegment) {
      // Its commit threw: asked again as it was (a replay if it was written), before anything else.
      const refused = await submitMeter(state, pending);
      if (refused !== null) return refused;
    }
    state.meterPending = null;
    const elapsedMs = Math.max(0, clock.now() - row.meterSegmentStartedAt);
    const wholeSeconds = Math.floor(elapsedMs / 1000);
    const seconds = BigInt(wholeSeconds - row.meterSecondsCharged) * row.rateMsatPerS;
    // The part second, pro rata and rounded down: the payer never pays for time not used.
    const partMsat = final ? (row.rateMsatPerS * BigInt(elapsedMs - wholeSeconds * 1000)) / 1000n : 0n;
    const due = seconds + partMsat;
    if (due <= 0n) return null;
    // What an earlier final charge took of these seconds is not charged again.
    const creditMsat = state.meterCredit < due ? state.meterCredit : due;
    const attempt: MeterAttempt = {
      ref: `${METER_REF}${row.meterSegment}:${row.meterSecondsCharged}:${final ? 'final' : wholeSeconds}`,
      amountMsat: msat(due - creditMsat), segment: row.meterSegment, fromSeconds: row.meterSecondsCharged, toSeconds: wholeSeconds, partMsat, creditMsat,
    };
    if (attempt.amountMsat === 0n) {
      meterCharged(state, attempt);
      return null;
    }
    return submitMeter(state, attempt);
  };

  /** Submits a meter charge; kept as pending while its outcome is unknown (the commit threw). */
  const submitMeter = async (state: LiveStream, attempt: MeterAttempt): Promise<StreamError | null> => {
    state.meterPending = attempt;
    const result = await applyMoney(state, 'meter', attempt.amountMsat, 'charge', attempt.ref);
    state.meterPending = null;
    if (!result.ok) return result.error;
    meterCharged(state, attempt);
    return null;
  };

  const meterCharged = (state: LiveStream, attempt: MeterAttempt): void => {
    state.row.meterSecondsCharged = attempt.toSeconds;
    state.meterCredit += attempt.partMsat - attempt.creditMsat;
  };

  const setMeter = async (state: LiveStream, meter: StreamRow['meter'], type: StreamEventType, reason: string): Promise<StreamEvent> => {
    const row = state.row;
    row.meter = meter;
    if (meter === 'running') {
      row.meterSegment += 1;
      row.meterSegmentStartedAt = clock.now();
      row.meterSecondsCharged = 0;
      state.meterCredit = 0n;
      state.meterPending = null;
    } else {
      row.meterSegmentStartedAt = null;
    }
    return record(state, type, { reason }, true);
  };

  /**
   * Closes once: the status changes only after the meter's last charge, so two closes can
   * both find the stream open; the second joins the first instead of recording a second
   * `closed` event and starting a second refund payout.
   */
  const closeStream = (state: LiveStream, actor: Actor | 'expiry'): Promise<StreamEvent | Fail> => {
    if (state.closing) return state.closing;
    const attempt = closeOnce(state, actor);
    state.closing = attempt;
    // A failed close (refused, or its save threw) is not the stream's close: the next one tries again.
    const clear = (): void => {
      if (state.closing === attempt) state.closing = undefined;
    };
    attempt.then((result) => {
      if ('ok' in result) clear();
    }, clear);
    return attempt;
  };

  const closeOnce = async (state: LiveStream, actor: Actor | 'expiry'): Promise<StreamEvent | Fail> => {
    const row = state.row;
    const overloaded = await meterStep(state, async () => {
      // Taken in memory by an earlier attempt whose save failed: only the save is left to do.
      if (row.status !== 'open') return false;
      // The meter's last charge refused as overloaded: nothing changed, the close is refused whole.
      if (row.meter === 'running' && (await chargeMeter(state, true)) === 'Overloaded') return true;
      row.status = 'closed';
      row.closedAt = clock.now();
      state.closedBy = actor;
      if (row.meter !== 'stopped') {
        row.meter = 'stopped';
        row.meterSegmentStartedAt = null;
      }
      return false;
    });
    if (overloaded) return { ok: false, error: 'Overloaded', detail: "the meter's last charge could not be made now; close again" };
    // Charges already submitted finish before the stream is declared closed.
    while (state.pendingOps > 0) await new Promise((resolve) => setImmediate(resolve));
    const closed = await record(state, 'closed', { by: actor }, true);
    state.closeSaved = true;
    background(state, 'refund payout', () => maybePayout(state, true));
    return closed;
  };

  /** The stream a ledger account belongs to, live or not (an evicted closed stream may still be paid or paid out). */
  const streamOfAccount = (accountId: string): string | null =>
    byAccount.get(accountId) ?? (accountId.startsWith('stream:') ? accountId.slice('stream:'.length) : null);

  /**
   * Sets balance and holds from the ledger, for a stream loaded while a payment to or from it
   * resolved (the load may have read the ledger just before that commit). The read counts only
   * when none of the stream's own steps overlapped it: a step between its commit and its delta
   * would be counted twice. True once the ledger's figures are in the cached ones; false when
   * it gave up (logged) or the account is gone.
   */
  const resyncBalance = async (state: LiveStream): Promise<boolean> => {
    // The read needs a moment with no step of the stream under way. On a stream charged without
    // pause none comes by itself (the steps overlap), and a stale figure kept would admit
    // charges past the payer's limit or hold payouts back for good: after RESYNC_GATE_AFTER
    // tries, the stream's new steps wait until the read is in (stepGate), and the steps under
    // way finish. Still bounded, for a step stuck on a slow database.
    const gate: { open: (() => void) | null } = { open: null };
    const openGate = (): void => {
      if (!gate.open) return;
      state.stepGate = null;
      gate.open();
      gate.open = null;
    };
    try {
      for (let attempt = 0; attempt < RESYNC_ATTEMPTS;) {
        // A credit under way is waited for without counting, and with the stream's steps free
        // meanwhile: the invoice service ends each one it begins (the hook's callback),
        // credited or not.
        if (state.creditsInFlight.size > 0) {
          openGate();
          await new Promise((resolve) => setTimeout(resolve, 10));
          continue;
        }
        attempt += 1;
        if (attempt > RESYNC_GATE_AFTER && !gate.open && !state.stepGate) {
          state.stepGate = new Promise<void>((resolve) => {
            gate.open = resolve;
          });
        }
        if (state.pendingOps > state.gatedOps) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          continue;
        }
        const steps = state.ownSteps;
        const read = await settledLedgerAccount(state.row);
        if (!read) return false;
        if (state.pendingOps === state.gatedOps && state.ownSteps === steps) {
          state.balance = read.balance;
          state.held = read.account.debitsPendingMsat;
          state.heldHashes.clear(); // every hold out is in the figure just read, whoever sent it
          state.reReads += 1;
          // Another re-read whose read overlapped this one may have read before a change this one
          // saw (on PostgreSQL the reads run on different connections): it reads again.
          state.ownSteps += 1;
          return true;
        }
      }
      logger.warn({ streamId: state.row.id }, 'could not re-read a stream balance between its steps; kept the cached figures');
      return false;
    } finally {
      openGate();
    }
  };

  /**
   * Records a paid invoice's `funded` event; its hash is in fundedHashes already. A record that
   * failed takes the hash out again, so the next load (of a stream that left memory, or the
   * next start) finds the payment unrecorded and records it.
   */
  const recordFunded = async (state: LiveStream, paymentHash: string, amountPaidMsat: Msat): Promise<void> => {
    try {
      await record(state, 'funded', { amount_msat: amountPaidMsat.toString(), payment_hash: paymentHash });
    } catch (error) {
      state.fundedHashes.delete(paymentHash);
      throw error;
    }
  };

  const onInvoicePaid = (invoice: { creditAccountId: string; paymentHash: string; amountPaidMsat: Msat | null }): void => {
    const streamId = streamOfAccount(invoice.creditAccountId);
    const amountPaidMsat = invoice.amountPaidMsat;
    if (!streamId) return;
    if (amountPaidMsat === null) {
      creditTold(streamId);
      return;
    }
    /** Once per invoice (fundedHashes): a load may have found the payment first, and recorded it. */
    const fundedEvent = async (state: LiveStream): Promise<void> => {
      if (state.fundedHashes.has(invoice.paymentHash)) return;
      state.fundedHashes.add(invoice.paymentHash);
      await recordFunded(state, invoice.paymentHash, amountPaidMsat);
    };
    const state = live.get(streamId);
    // A delta only for a credit the hook saw this state through (creditsInFlight: an open
    // stream in memory, whose re-reads left the credit out). Any other state may have been
    // loaded after the credit committed, its balance holding it already: a load between the
    // credit and this call counted it twice. Those are read again from the ledger below.
    if (state?.creditsInFlight.has(invoice.paymentHash)) {
      state.balance += amountPaidMsat;
      state.ownSteps += 1; // a re-read under way must not overwrite this
      if (state.topUp?.paymentHash === invoice.paymentHash) state.topUp = null;
      background(state, 'recording a funding event', async () => {
        try {
          await fundedEvent(state);
          afterMoney(state);
        } finally {
          creditTold(streamId);
        }
      });
      return;
    }
    // Not in memory (an evicted closed stream, paid late): loaded now, after the credit
    // committed, its balance already holds the payment. In memory but not credited through it
    // (a closed stream, or one loaded since the hook): its balance is read again.
    void withStream(streamId, async (loaded) => {
      try {
        if (!loaded) return;
        // Paid: a top-up is due again once the balance falls (not only once this one expires).
        if (loaded.topUp?.paymentHash === invoice.paymentHash) loaded.topUp = null;
        await resyncBalance(loaded);
        await fundedEvent(loaded);
        afterMoney(loaded);
      } finally {
        creditTold(streamId);
      }
    }).catch((error) => logger.error({ err: error, streamId }, 'could not record a funding event'));
  };

  /**
   * Before an invoice credits a stream that is (or may be) closed: its settled mark is removed,
   * durably, before the money lands. A closed stream paid late (an old top-up invoice) has the
   * payer's money again, and the start's sweep must look at it until it is paid back; removed
   * after the credit instead (when the stream is told), a crash in between left the mark, the
   * sweep passed the stream by and the top-up stayed on it for good. A credit that then does
   * not happen leaves the stream unmarked: the next sweep finds nothing to pay and marks it again.
   */
  const creditHook = async (invoice: { creditAccountId: string; paymentHash: string }): Promise<void | (() => void)> => {
    const streamId = streamOfAccount(invoice.creditAccountId);
    if (!streamId) return;
    const state = live.get(streamId);
    if (state && state.row.status === 'open') {
      // Open in memory: open in the store, never marked. Its balance re-reads wait for the credit's
      // listener, and one under way now is not used (ownSteps).
      // Counted: two attempts at once for one payment (the devnet's pay and the watcher) each
      // end theirs; the one told (onInvoicePaid) must still find it under way.
      countUp(state.creditsInFlight, invoice.paymentHash);
      state.ownSteps += 1;
      // Over (told, already paid, or failed): no longer waited for.
      return () => countDown(state.creditsInFlight, invoice.paymentHash);
    }
    countUp(crediting, streamId);
    await store.markSettled(streamId, null);
  };

  const creditTold = (streamId: string): void => {
    countDown(crediting, streamId);
  };

  /** `loanPart`: what the outcome does to a closed stream's refund fee loan (FeeLoanPart); the live path's is 'takes-fee'. */
  const onPaymentResolved = (payment: { debitAccountId: string; status: string; amountMsat: Msat; maxFeeMsat: Msat; feeMsat: Msat | null; paymentHash: string; failureReason: string | null }, loanPart: FeeLoanPart = 'takes-fee'): void => {
    const streamId = streamOfAccount(payment.debitAccountId);
    if (!streamId) return;
    const cached = live.get(streamId);
    let counted = false;
    if (cached) {
      // In memory: the outcome is counted once (it may be told twice). For a payout this state
      // sent, it is a delta: the hold (amount + fee budget) is released, a success moves amount
      // + fee out. Any other (sent before a reload, or told before pay() returned) is read
      // from the ledger below, which already holds it.
      if (cached.payoutsResolved.has(payment.paymentHash)) return;
      cached.payoutsResolved.add(payment.paymentHash);
      if (cached.heldHashes.delete(payment.paymentHash)) {
        cached.held -= payment.amountMsat + payment.maxFeeMsat;
        if (payment.status === 'succeeded') cached.balance -= payment.amountMsat + (payment.feeMsat ?? 0n);
        cached.ownSteps += 1; // a re-read under way must not overwrite this
        counted = true;
      }
    }
    void withStream(streamId, async (state) => {
      if (!state) return;
      if (state !== cached) {
        if (state.payoutsResolved.has(payment.paymentHash)) return;
        state.payoutsResolved.add(payment.paymentHash);
      }
      if (state !== cached || !counted) await resyncBalance(state);
      if (state.feeAdvance > 0n && loanPart !== 'before-loan') await returnFeeAdvance(state, payment.status === 'succeeded' && loanPart === 'takes-fee' ? payment.feeMsat ?? 0n : 0n);
      if (payment.status === 'succeeded') {
        await record(state, 'settled', { amount_msat: payment.amountMsat.toString(), fee_msat: (payment.feeMsat ?? 0n).toString(), payment_hash: payment.paymentHash });
        // Money that arrived while this payout was out waited for it (a close's refund too):
        // pay it now. Not after a failure, which would retry a dead route in a loop; the payer
        // names another destination, or the next money step asks again.
        if (payoutDue(state)) background(state, 'payout', () => maybePayout(state, state.row.status === 'closed'));
      } else {
        await record(state, 'payout_failed', { amount_msat: payment.amountMsat.toString(), reason: payment.failureReason ?? 'failed', payment_hash: payment.paymentHash });
      }
      // A close's refund that waited for this payout goes now, after a failure too (once).
      resumePayout(state);
    }).catch((error) => logger.error({ err: error, streamId }, 'could not record a payout outcome'));
  };

  /**
   * A closed stream's payout_invoice_needed that nobody answered for PAYOUT_ASK_IDLE_MS, with
   * nobody listening: the ask leaves memory (the fee budget the app lent for it goes back), and
   * so may the stream. Nothing is lost: the money stays on the stream, which is not marked
   * settled; the payer's later answer is sized afresh, and the next start asks again.
   */
  const askIdle = (state: LiveStream, now: number): boolean =>
    state.row.status === 'closed' && state.payoutAsked !== null && !state.payoutBusy && state.listeners.size === 0
    && now - state.payoutAsked.askedAt >= (deps.payoutAskIdleMs ?? PAYOUT_ASK_IDLE_MS);

  const dropIdleAsk = async (state: LiveStream): Promise<void> => {
    const asked = state.payoutAsked;
    state.payoutAsked = null;
    state.payoutAgain = false; // what waited for the ask is asked again with it (the answer, or the next start)
    state.payoutBusy = true;
    try {
      if (state.feeAdvance > 0n) await returnFeeAdvance(state, 0n);
    } finally {
      state.payoutBusy = false;
      // The budget could not go back now: the ask stays, and the next tick tries again.
      if (state.feeAdvance > 0n) state.payoutAsked = asked;
    }
  };

  /**
   * Marks a closed stream found with nothing to pay back settled, unless a credit reached it
   * meanwhile: a credit's unmark (creditHook) that went before this mark was written is undone
   * by it, so the mark is taken back when a credit is under way or has landed by the time it is
   * written (the map first, then the ledger: a credit told between the two has committed).
   */
  const markSettledUnlessCredited = async (row: StreamRow): Promise<void> => {
    await store.markSettled(row.id, clock.now());
    if (!crediting.has(row.id)) {
      const read = await settledLedgerAccount(row);
      // Its charges swept too (the read's sweep may have failed): an app's balance read on
      // PostgreSQL passes marked streams by (money-store.ts MAY_HOLD_CHARGES).
      if (read && read.balance <= 0n && read.unsettledMsat === 0n) return;
    }
    await store.markSettled(row.id, null);
  };

  /**
   * Whether the payer's answer is all a closed stream waits for: its payout needs an invoice
   * and the newest payout event in its log is a payout_invoice_needed. The ask stands (a
   * client resuming sees it, and an answer is sized afresh whenever it comes), so the start
   * does not ask again: asking at every start grew the log and held the stream (and a fee
   * budget lent for it) in memory for nobody, since no one is connected at a start.
   */
  const askStands = async (state: LiveStream): Promise<boolean> => {
    const destination = state.row.payoutDestination;
    if (destination !== null && destination.kind !== 'invoice') return false;
    const logged = await store.listEventsOfTypes(state.row.id, ['payout_invoice_needed', 'payout_requested', 'settled', 'payout_failed', 'payout_destination_set']);
    return logged[logged.length - 1]?.type === 'payout_invoice_needed';
  };

  /**
   * At start: closed streams that still hold the payer's money (a crash between the close and
   * its refund, a refund that failed) pay it back now, or ask for an invoice when the payer's
   * answer is needed and not already asked for (askStands); one whose payout is still out
   * does so once that payout has ended. Idempotent: the
   * refund is sized from the ledger, after every hold is back (decidePayout). A stream with
   * nothing to pay back and nothing held is marked settled and passed by at later starts.
   */
  const sweepClosedStreams = async (): Promise<void> => {
    let afterId = '';
    for (;;) {
      const rows = await store.listUnsettledClosedStreams(afterId, SWEEP_PAGE);
      for (const row of rows) {
        await withStream(row.id, async (state) => {
          if (!state) return;
          if (state.held > 0n) state.payoutAgain = true;
          else if (state.balance - state.feeAdvance > 0n) {
            if (!(await askStands(state))) background(state, 'refund payout', () => maybePayout(state, true));
          } else if (state.balance <= 0n && state.feeAdvance === 0n && !crediting.has(row.id)) await markSettledUnlessCredited(row);
        }).catch((error) => logger.error({ err: error, streamId: row.id }, 'could not sweep a closed stream'));
      }
      if (rows.length < SWEEP_PAGE) return;
      afterId = rows[rows.length - 1]!.id;
    }
  };

  const unsubscribers: (() => void)[] = [];

  return {
    async create(appId, input) {
      const problem = validateTerms(input);
      if (problem) return { ok: false, error: 'InvalidTerms', detail: problem };
      // One reading of the clock: the id's time is the stream's created_at.
      const now = clock.now();
      const id = timeOrderedId('st_', now);
      const payerToken = PAYER_TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const accountId = streamAccountId(id);
      const account = await ledger.createAccount({ id: accountId, ownerId: appId, limitMsat: input.maximumMsat, code: 'stream' });
      if (!account.ok) throw new Error(`stream account ${accountId} exists with another spec`);
      const row: StreamRow = {
        ...input,
        id, appId, accountId, payerTokenHash: hashPayerToken(payerToken), status: 'open', meter: 'stopped',
        meterSegment: 0, meterSegmentStartedAt: null, meterSecondsCharged: 0, createdAt: now, closedAt: null, moneyRows: money !== undefined,
      };
      const state = newLiveState(row, 1, 0n, 0n);
      await store.insertStream(row, event(state, 'created', { balance_msat: '0' }, 1));
      live.set(id, state);
      byAccount.set(accountId, id);
      try {
        await maybeTopUp(state).catch((error) => logger.error({ err: error, streamId: id }, 'initial funding invoice failed'));
        return { ok: true, stream: view(state), payerToken };
      } finally {
        release(state);
      }
    },

    async get(streamId, appId) {
      return withStream(streamId, async (state) => (!state || (appId !== null && state.row.appId !== appId) ? null : view(state)));
    },

    async list(appId, limit) {
      const rows = await store.listStreams(appId, limit);
      const views: StreamView[] = [];
      for (const row of rows) {
        const found = await withStream(row.id, async (state) => (state ? view(state) : null));
        if (found) views.push(found);
      }
      return views;
    },

    async authenticatePayer(payerToken) {
      const row = await store.findStreamByTokenHash(hashPayerToken(payerToken));
      if (!row) return null;
      return withStream(row.id, async (state) => (state ? view(state) : null));
    },

    charge(streamId, input) {
      // The common case, an open stream in memory, straight to its money step: no acquire, no
      // async wrappers (each cost microtask turns per charge). The step's pendingOps keeps the
      // stream from eviction meanwhile, as `busy` would; an open stream is never evicted anyway.
      const state = live.get(streamId);
      if (state && state.row.status === 'open') return chargeOpen(state, input);
      return withOpenStream<MoneyAck>(streamId, (acquired) => chargeOpen(acquired, input));
    },

    reward(streamId, input) {
      return withOpenStream<MoneyAck>(streamId, async (state) => {
        if (input.amountMsat === 0n) return { ok: false, error: 'ZeroAmount' };
        if (input.amountMsat > state.row.maxChargeMsat) return { ok: false, error: 'ChargeTooLarge', detail: `the largest step is ${state.row.maxChargeMsat} msat` };
        return applyMoney(state, 'reward', input.amountMsat, 'reward', REWARD_REF + input.ref);
      });
    },

    meter(streamId, action, actor) {
      return withOpenStream<{ ok: true; seq: number; stream: StreamView }>(streamId, (state) => meterStep(state, async () => {
        const row = state.row;
        // Checked again in the meter's turn: a close or another meter step may have gone first.
        if (row.status !== 'open') return { ok: false, error: 'StreamClosed' };
        if (row.rateMsatPerS === 0n) return { ok: false, error: 'NoMeter', detail: 'this stream has no rate_msat_per_s' };
        const allowed: Record<MeterAction, StreamRow['meter'][]> = { start: ['stopped'], pause: ['running'], resume: ['paused'], stop: ['running', 'paused'] };
        if (!allowed[action].includes(row.meter)) return { ok: false, error: 'MeterState', detail: `cannot ${action} a meter that is ${row.meter}` };
        if (action === 'start' && actor === 'payer') return { ok: false, error: 'MeterState', detail: 'only the app starts the meter' };
        if (row.meter === 'running' && (await chargeMeter(state, true)) === 'Overloaded') {
          // The meter stays as it was, its seconds uncharged: the step is refused whole, to be tried again.
          return { ok: false, error: 'Overloaded', detail: 'the meter could not be charged now; try again' };
        }
        const next = { start: 'running', pause: 'paused', resume: 'running', stop: 'stopped' } as const;
        const type = { start: 'meter_started', pause: 'paused', resume: 'resumed', stop: 'meter_stopped' } as const;
        const recorded = await setMeter(state, next[action], type[action], `by ${actor}`);
        return { ok: true, seq: recorded.seq, stream: view(state) };
      }));
    },

    close(streamId, actor) {
      return withStream(streamId, async (state): Promise<{ ok: true; seq: number; stream: StreamView } | Fail> => {
        if (!state) return { ok: false, error: 'StreamNotFound' };
        // Closed in memory but not saved (that save failed, or is under way): this close tries again, or joins it.
        if (state.row.status !== 'open' && state.closeSaved) return { ok: false, error: 'StreamClosed' };
        const closed = await closeStream(state, actor);
        if ('ok' in closed) return closed;
        return { ok: true, seq: closed.seq, stream: view(state) };
      });
    },

    setPayoutDestination(streamId, destination) {
      return withStream(streamId, async (state): Promise<{ ok: true; stream: StreamView } | Fail> => {
        if (!state) return { ok: false, error: 'StreamNotFound' };
        state.row.payoutDestination = destination;
        await record(state, 'payout_destination_set', { destination: destination.kind }, true);
        if (state.payoutAsked && destination.kind !== 'invoice') state.payoutAsked = null;
        background(state, 'payout', () => maybePayout(state, state.row.status === 'closed'));
        return { ok: true, stream: view(state) };
      });
    },

    providePayoutInvoice(streamId, paymentRequest) {
      return withStream(streamId, async (state): Promise<{ ok: true } | Fail> => {
        if (!state) return { ok: false, error: 'StreamNotFound' };
        const asked = state.payoutAsked;
        // A closed stream's ask may have left memory (dropIdleAsk, a restart): the answer is then
        // sized afresh below, as any answer is, and paid when it asks for what is owed.
        const destination = state.row.payoutDestination;
        const askable = state.row.status === 'closed' && (destination === null || destination.kind === 'invoice');
        if (!asked && (!askable || state.payoutBusy || state.held > 0n)) return { ok: false, error: 'NoPayoutRequested' };
        const decoded = decodeBolt11(paymentRequest);
        if (!decoded.ok) return { ok: false, error: 'InvalidPayoutInvoice', detail: decoded.detail };
        if (asked && decoded.invoice.amountMsat !== asked.amountMsat) {
          return { ok: false, error: 'PayoutAmountMismatch', detail: `the invoice must ask for exactly ${asked.amountMsat} msat` };
        }
        state.payoutAsked = null;
        state.payoutBusy = true;
        let owed: Awaited<ReturnType<typeof decidePayout>> = null;
        try {
          // Sized again now: money moved since the ask (a charge, a top-up) changes what is owed,
          // and a payout of the old amount could pay out more than the payer holds.
          owed = await decidePayout(state, state.row.status === 'closed');
          if (!owed) return { ok: false, error: 'NoPayoutRequested', detail: asked ? 'nothing is owed to the payer any more: the balance moved since the ask' : 'nothing is owed to the payer' };
          if (owed.amountMsat !== decoded.invoice.amountMsat) {
            state.payoutAsked = { ...owed, askedAt: clock.now() };
            await record(state, 'payout_invoice_needed', { amount_msat: owed.amountMsat.toString() });
            return { ok: false, error: 'PayoutAmountMismatch', detail: `the balance moved since the ask: the invoice must now ask for exactly ${owed.amountMsat} msat` };
          }
          await sendPayout(state, owed.amountMsat, owed.maxFeeMsat, { kind: 'invoice', paymentRequest, amountMsat: null });
        } finally {
          releasePayout(state, owed);
          state.payoutBusy = false;
          resumePayout(state);
        }
        return { ok: true };
      });
    },

    eventsAfter(streamId, afterSeq) {
      return withStream(streamId, async (state) => {
        if (!state) return [];
        // Only events already delivered to listeners: a money step's transfer is visible in
        // the ledger once committed, before its sync has made it durable and it is
        // acknowledged (see ledger/sqlite/wal-sync.ts). Later ones reach listeners live.
        const delivered = state.nextDelivery - 1;
        // The oldest events after afterSeq, one window of seqs at a time: a window may hold
        // none (seqs taken by refused or replayed steps), and an empty answer means "nothing
        // more", so an empty window moves on to the next.
        let from = afterSeq;
        while (from < delivered) {
          const end = Math.min(from + RESUME_EVENTS_MAX, delivered);
          const stored = (await store.listEventsAfter(streamId, from, RESUME_EVENTS_MAX)).filter((event) => event.seq <= end);
          const moneyEvents = await moneyEventsBetween(state, from, end);
          if (stored.length + moneyEvents.length > 0) return [...stored, ...moneyEvents].sort((a, b) => a.seq - b.seq);
          from = end;
        }
        return [];
      });
    },

    subscribe(streamId, listener) {
      let state = live.get(streamId);
      let cancelled = false;
      // A listener keeps the stream in memory (see evictable) until it unsubscribes.
      if (state) state.listeners.add(listener);
      else {
        void withStream(streamId, async (loaded) => {
          state = loaded ?? undefined;
          if (state && !cancelled) state.listeners.add(listener);
        }).catch((error) => logger.error({ err: error, streamId }, 'could not subscribe to a stream'));
      }
      return () => {
        cancelled = true;
        const subscribed = state;
        if (!subscribed || !subscribed.listeners.delete(listener)) return;
        // Unsubscribing may leave a closed stream with nothing holding it: the acquire and
        // release around nothing lets the usual rule decide.
        subscribed.busy += 1;
        release(subscribed);
      };
    },

    async start() {
      stopped = false;
      unsubscribers.push(invoices.beforeCredit(creditHook), invoices.onPaid(onInvoicePaid), payments.onResolved((payment) => onPaymentResolved(payment)));
      // Charges an earlier run committed and did not sweep reach their apps before anything reads a balance.
      await settler?.start();
      for (const row of await store.listOpenStreams()) {
        await withStream(row.id, async (state) => {
          // Time while the server was down is not billed: a running meter starts a new segment now.
          if (state && state.row.meter === 'running') await meterStep(state, () => setMeter(state, 'running', 'resumed', 'server_restart'));
        });
      }
      await sweepClosedStreams();
      const tickMs = deps.tickMs ?? 1000;
      const loop = (): void => {
        if (stopped) return;
        timer = setTimeout(() => {
          void this.tick().finally(loop);
        }, tickMs);
        timer.unref();
      };
      loop();
    },

    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const unsubscribe of unsubscribers.splice(0)) unsubscribe();
      while (ticking) await new Promise((resolve) => setTimeout(resolve, 5));
      // What was committed is settled before the process goes (what fails, the next start settles).
      await money?.drain();
      await settler?.stop();
    },

    liveStreams: () => live.size,

    async settleCharges(appId) {
      // What was acknowledged before this call (not what keeps arriving under load), then a sweep.
      await money?.afterQueued();
      // A stream whose sweep fails stays due (and is logged); it must not keep the app's other
      // streams, charged in another process, out of this read: the error is thrown after them.
      // The ids the flush just failed are not swept again here (the next timed sweep retries
      // them): every balance read would otherwise run their failing transactions twice.
      const failure = await settler?.flush().then(() => null, (error: unknown) => ({ error }));
      if (appId !== undefined && settler && money?.store.dialect === 'postgres') {
        const unsettled = await money.store.listUnsettled(appId);
        await settler.settleNow(failure ? unsettled.filter((id) => !settler.isDue(id)) : unsettled);
      }
      if (failure) throw failure.error;
    },

    async tick() {
      if (ticking) return;
      ticking = true;
      try {
        const now = clock.now();
        await Promise.all([...live.values()].map(async (state) => {
          if (askIdle(state, now)) {
            state.busy += 1;
            try {
              await dropIdleAsk(state).catch((error) => logger.error({ err: error, streamId: state.row.id }, 'could not drop an unanswered payout ask'));
            } finally {
              release(state);
            }
            return;
          }
          if (state.refundWaiting && !state.payoutBusy) {
            state.refundWaiting = false;
            background(state, 'refund payout', () => maybePayout(state, true));
            return;
          }
          const closeUnsaved = state.row.status !== 'open' && !state.closeSaved && !state.closing;
          if (state.row.status !== 'open' && !closeUnsaved) return;
          state.busy += 1;
          try {
            // A close whose save failed is tried again each tick until it is saved.
            if (closeUnsaved) {
              await closeStream(state, state.closedBy ?? 'expiry');
              return;
            }
            if (state.row.expiresAt !== null && now >= state.row.expiresAt) {
              await closeStream(state, 'expiry');
              return;
            }
            if (state.row.meter === 'running') {
              await meterStep(state, async () => {
                if (state.row.status !== 'open' || state.row.meter !== 'running') return;
                // The payer cannot cover the next second: pause, and the top-up invoice asks for more.
                // An overloaded ledger took nothing: the meter runs on, and the next tick charges
                // these seconds with its own.
                const refused = await chargeMeter(state, false);
                if (refused === 'Overloaded') logger.warn({ streamId: state.row.id }, 'meter charge refused: the ledger is overloaded; the next tick tries again');
                else if (refused !== null) await setMeter(state, 'paused', 'paused', 'insufficient_funds');
              });
            }
          } finally {
            release(state);
          }
        }));
      } catch (error) {
        logger.error({ err: error }, 'stream tick failed');
      } finally {
        ticking = false;
      }
    },
  };
}
