/**
 * Failure injection for the devnet, so tests can see how Sluice behaves when Lightning is
 * slow, refuses payments, or leaves an outcome unknown.
 *
 * Every fault is off unless asked for. The process-killing fault exists only as an
 * option given to `openDevnet` (never switchable at run time), so no API call can turn a
 * running server into one that kills itself.
 */
import { createHash } from 'node:crypto';
import type { PaymentFailureReason } from '../backend.js';

/**
 * Which payments a one-shot fault may take, by node name; a field left out matches every
 * node. Without a scope, a fault armed for one payment can be taken by any other payment
 * that happens to run first (a top-up paid by a wallet, a payout retried in the
 * background), which makes a test that aims it at one payment depend on timing.
 */
export interface DevnetFaultScope {
  payer?: string;
  payee?: string;
}

export interface DevnetFailNext extends DevnetFaultScope {
  /** How many payments (payInvoice and keysend) in the scope fail, starting with the next one. */
  count: number;
  reason: PaymentFailureReason;
  detail?: string;
}

/** The two ends of a payment, as a scope is matched against them. */
export interface PaymentEnds {
  payer: string;
  payee: string;
}

export interface DevnetFailureRate {
  /** Probability in [0, 1] that a payment fails. */
  rate: number;
  /** Seeds the random draws, so a test sees the same failures on every run. */
  seed: string;
  /** Default 'no_route', what a real network says most often. */
  reason?: PaymentFailureReason;
}

export interface DevnetKillAfterSettle {
  /**
   * Kill the process with SIGKILL right after the Nth payment (counting from 1, since this
   * devnet was opened) has been settled and committed, before payInvoice/keysend returns.
   * Default 1.
   */
  afterSettledPayments?: number;
  /** Count only payments sent by this node (default: every node). */
  payer?: string;
}

export interface DevnetFaultOptions {
  /** Every payment waits this long (real time) after it is recorded in flight. */
  latencyMs?: number;
  failNext?: DevnetFailNext;
  failureRate?: DevnetFailureRate;
  /**
   * The next N payments (in the scope, when given) run to their real end (settled or failed,
   * and persisted) but the caller is answered `unknown`, as when the connection to a node drops
   * mid-call. `lookupPayment` then tells the truth.
   */
  withholdOutcomeNext?: number | (DevnetFaultScope & { count: number });
  /** Crash tests only: see DevnetKillAfterSettle. Options-only on purpose. */
  killAfterSettle?: DevnetKillAfterSettle;
}

/** Run-time control of the faults (tests). The kill fault is deliberately absent. */
export interface DevnetFaultController {
  setLatencyMs(latencyMs: number): void;
  failNextPayments(count: number, reason: PaymentFailureReason, options?: DevnetFaultScope & { detail?: string }): void;
  /** rate 0 turns random failures off. */
  setFailureRate(rate: number, seed: string, reason?: PaymentFailureReason): void;
  withholdOutcomeNext(count: number, scope?: DevnetFaultScope): void;
  /** Turns off every run-time fault (latency, fail-next, failure rate, withheld outcomes). */
  clear(): void;
}

export interface InjectedFailure {
  reason: PaymentFailureReason;
  detail: string;
}

/** The devnet's own view: the controller plus the decisions the payment path asks for. */
export interface DevnetFaults extends DevnetFaultController {
  latencyMs(): number;
  /**
   * Consumes one fail-next slot (when the payment is in its scope) or one random draw; null
   * means the payment may proceed.
   */
  drawFailure(ends: PaymentEnds): InjectedFailure | null;
  /** Consumes one withheld-outcome slot when the payment is in its scope. */
  drawWithheldOutcome(ends: PaymentEnds): boolean;
  /** Counts a settled payment; true when the process must now be killed. */
  shouldKillAfterSettle(payer: string): boolean;
}

/**
 * A deterministic stream of numbers in [0, 1): SHA-256 of seed and counter. Slow next to
 * a PRNG, but one hash per payment is nothing, and it is obviously reproducible.
 */
export function createSeededRandom(seed: string): () => number {
  let counter = 0;
  return () => {
    const digest = createHash('sha256').update(`${seed}:${counter}`).digest();
    counter += 1;
    return digest.readUInt32BE(0) / 2 ** 32;
  };
}

function assertCount(name: string, count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`${name} must be a non-negative integer, got ${count}`);
}

function inScope(scope: DevnetFaultScope, ends: PaymentEnds): boolean {
  return (scope.payer === undefined || scope.payer === ends.payer) && (scope.payee === undefined || scope.payee === ends.payee);
}

function scopeOf(options: DevnetFaultScope | undefined): DevnetFaultScope {
  return { payer: options?.payer, payee: options?.payee };
}

function assertRate(rate: number): void {
  if (!Number.isFinite(rate) || rate < 0 || rate > 1) throw new RangeError(`failure rate must be in [0, 1], got ${rate}`);
}

export function createDevnetFaults(options: DevnetFaultOptions = {}): DevnetFaults {
  let latency = 0;
  let failNextLeft = 0;
  let failNextReason: InjectedFailure = { reason: 'error', detail: '' };
  let failNextScope: DevnetFaultScope = {};
  let rate = 0;
  let rateReason: PaymentFailureReason = 'no_route';
  let random: () => number = () => 1;
  let withheldLeft = 0;
  let withheldScope: DevnetFaultScope = {};

  const kill = options.killAfterSettle;
  const killAfter = kill?.afterSettledPayments ?? 1;
  if (kill) assertCount('killAfterSettle.afterSettledPayments', killAfter);
  let settledCount = 0;

  const faults: DevnetFaults = {
    setLatencyMs(latencyMs) {
      assertCount('latencyMs', latencyMs);
      latency = latencyMs;
    },
    failNextPayments(count, reason, options) {
      assertCount('failNext.count', count);
      failNextLeft = count;
      failNextReason = { reason, detail: options?.detail ?? `devnet fault: injected failure (${reason})` };
      failNextScope = scopeOf(options);
    },
    setFailureRate(newRate, seed, reason) {
      assertRate(newRate);
      rate = newRate;
      rateReason = reason ?? 'no_route';
      random = createSeededRandom(seed);
    },
    withholdOutcomeNext(count, scope) {
      assertCount('withholdOutcomeNext', count);
      withheldLeft = count;
      withheldScope = scopeOf(scope);
    },
    clear() {
      latency = 0;
      failNextLeft = 0;
      rate = 0;
      withheldLeft = 0;
    },
    latencyMs: () => latency,
    drawFailure(ends) {
      if (failNextLeft > 0 && inScope(failNextScope, ends)) {
        failNextLeft -= 1;
        return failNextReason;
      }
      if (rate > 0 && random() < rate) {
        return { reason: rateReason, detail: `devnet fault: random failure (rate ${rate})` };
      }
      return null;
    },
    drawWithheldOutcome(ends) {
      if (withheldLeft === 0 || !inScope(withheldScope, ends)) return false;
      withheldLeft -= 1;
      return true;
    },
    shouldKillAfterSettle(payer) {
      if (!kill) return false;
      if (kill.payer !== undefined && kill.payer !== payer) return false;
      settledCount += 1;
      return settledCount === killAfter;
    },
  };

  if (options.latencyMs !== undefined) faults.setLatencyMs(options.latencyMs);
  if (options.failNext) faults.failNextPayments(options.failNext.count, options.failNext.reason, options.failNext);
  if (options.failureRate) {
    faults.setFailureRate(options.failureRate.rate, options.failureRate.seed, options.failureRate.reason);
  }
  const withheld = options.withholdOutcomeNext;
  if (typeof withheld === 'number') faults.withholdOutcomeNext(withheld);
  else if (withheld !== undefined) faults.withholdOutcomeNext(withheld.count, withheld);
  return faults;
}
