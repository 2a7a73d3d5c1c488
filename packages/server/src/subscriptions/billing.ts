/**
 * The billing rules as pure functions over a subscription row: what the clock and the
 * money do to it. No I/O: the service applies the charges and the row in one transaction.
 *
 * Work is proportional to the number of transitions, not of increments: a month of
 * one-second increments is one charge of 2,592,000 increments (one ledger transfer), so
 * a large clock jump catches up in constant time and stays exact to the msat.
 */
import { msat, type Msat } from '../money/msat.js';
import type { PlanTerms, SubscriptionOccurrence, SubscriptionRow } from './model.js';

/** Increments of a segment charged together, in order: one ledger transfer. */
export interface Charge {
  segment: number;
  fromIndex: number;
  count: number;
  amountMsat: Msat;
  at: number;
}

export interface BillingOutcome {
  charges: Charge[];
  occurrences: SubscriptionOccurrence[];
  /** The prepaid balance after the charges. */
  balance: bigint;
}

const incrementMs = (plan: PlanTerms): number => plan.incrementS * 1000;

/** Increments of the segment that start at or before `t`. */
function startedBy(row: SubscriptionRow, plan: PlanTerms, t: number): number {
  if (row.anchorAt === null || t < row.anchorAt) return 0;
  return Math.floor((t - row.anchorAt) / incrementMs(plan)) + 1;
}

/** Increments of the segment that start strictly before `t`. */
function startedBefore(row: SubscriptionRow, plan: PlanTerms, t: number): number {
  if (row.anchorAt === null || t <= row.anchorAt) return 0;
  return Math.ceil((t - row.anchorAt) / incrementMs(plan));
}

function startOf(row: SubscriptionRow, plan: PlanTerms, index: number): number {
  return (row.anchorAt as number) + index * incrementMs(plan);
}

/** The price of one increment; a plan always has one of at least 1 msat. */
const priceOf = (plan: PlanTerms): bigint => plan.priceMsat;

/** One transition event; `cause` keeps its webhook key stable across retries and restarts. */
function occurrence(row: SubscriptionRow, type: SubscriptionOccurrence['type'], at: number, data: Record<string, unknown> = {}): SubscriptionOccurrence {
  return { type, at, cause: `${row.id}:${at}:${row.segment}`, status: row.status, data };
}

function charge(row: SubscriptionRow, plan: PlanTerms, outcome: BillingOutcome, fromIndex: number, count: number, at: number): void {
  if (count <= 0) return;
  const amount = priceOf(plan) * BigInt(count);
  if (amount > outcome.balance) throw new Error(`charge of ${amount} msat over the balance ${outcome.balance} (subscription ${row.id})`);
  outcome.charges.push({ segment: row.segment, fromIndex, count, amountMsat: msat(amount), at });
  outcome.balance -= amount;
  row.chargedMsat += amount;
}

/** The subscription ended with `balance` unused: it is the customer's, held for a refund (none when nothing is left). */
export function holdRefund(row: SubscriptionRow, balance: bigint): void {
  row.refundMsat = balance;
  row.refundStatus = balance > 0n ? 'held' : 'none';
}

/** The contract ended: nothing more is charged, and what is left is the customer's refund (held, as at a cancel). */
function expire(row: SubscriptionRow, outcome: BillingOutcome, at: number): void {
  row.status = 'expired';
  row.endedAt = at;
  row.endedBy = 'contract';
  holdRefund(row, outcome.balance);
  outcome.occurrences.push(occurrence(row, 'expired', at, { owed_increments: row.owed, refund_msat: outcome.balance.toString() }));
}

/** Starts a segment at `at`: increment 0 begins then. */
function startSegment(row: SubscriptionRow, at: number): void {
  row.segment += 1;
  row.anchorAt = at;
  row.started = 0;
  row.owed = 0;
}

/** The active phase: start every increment due by `now`, paying as long as the balance lasts. */
function runActive(row: SubscriptionRow, plan: PlanTerms, now: number, outcome: BillingOutcome): boolean {
  let target = startedBy(row, plan, now);
  if (row.contractEndsAt !== null) target = Math.min(target, startedBefore(row, plan, row.contractEndsAt));
  const due = target - row.started;
  if (due > 0) {
    const affordable = outcome.balance / priceOf(plan);
    const paid = Number(affordable < BigInt(due) ? affordable : BigInt(due));
    if (paid > 0) {
      charge(row, plan, outcome, row.started, paid, startOf(row, plan, row.started + paid - 1));
      row.started += paid;
    }
    if (paid < due) {
      const at = startOf(row, plan, row.started);
      row.started += 1;
      row.owed = 1;
      row.status = 'past_due';
      row.pastDueSince = at;
      outcome.occurrences.push(occurrence(row, 'past_due', at, { grace_ends_at: new Date(at + plan.graceS * 1000).toISOString() }));
      return true;
    }
  }
  if (row.contractEndsAt !== null && now >= row.contractEndsAt) expire(row, outcome, row.contractEndsAt);
  return false;
}

/** In grace: increments keep starting (owed, the service goes on) until the grace ends. */
function runPastDue(row: SubscriptionRow, plan: PlanTerms, now: number, outcome: BillingOutcome): boolean {
  const graceEnd = (row.pastDueSince as number) + plan.graceS * 1000;
  let target = Math.min(startedBy(row, plan, now), startedBefore(row, plan, graceEnd));
  if (row.contractEndsAt !== null) target = Math.min(target, startedBefore(row, plan, row.contractEndsAt));
  if (target > row.started) {
    row.owed += target - row.started;
    row.started = target;
  }
  if (row.contractEndsAt !== null && row.contractEndsAt <= graceEnd && now >= row.contractEndsAt) {
    expire(row, outcome, row.contractEndsAt);
    return false;
  }
  if (now >= graceEnd) {
    row.status = 'suspended';
    row.suspendedAt = graceEnd;
    outcome.occurrences.push(occurrence(row, 'suspended', graceEnd, { reason: 'grace_over', owed_increments: row.owed, owed_msat: (priceOf(plan) * BigInt(row.owed)).toString() }));
    return true;
  }
  return false;
}

/**
 * Moves the row to `now` with the balance it had before anything new arrived: every
 * increment that started is charged or owed, grace periods end, contracts expire, in time
 * order. Mutates `row`.
 */
export function advance(row: SubscriptionRow, plan: PlanTerms, balance: bigint, now: number): BillingOutcome {
  const outcome: BillingOutcome = { charges: [], occurrences: [], balance };
  // Each pass of the loop makes one transition or stops: at most a handful per call.
  for (let transitions = 0; transitions < 16; transitions += 1) {
    let again = false;
    switch (row.status) {
      case 'trialing':
        if (row.trialEndsAt !== null && now >= row.trialEndsAt) {
          const at = row.trialEndsAt;
          startSegment(row, at);
          row.contractEndsAt = plan.contractS === null ? null : at + plan.contractS * 1000;
          row.status = 'active';
          if (outcome.balance >= priceOf(plan)) {
            row.activatedAt = at;
            outcome.occurrences.push(occurrence(row, 'activated', at, { trial_ended: true }));
          }
          again = true;
        }
        break;
      case 'active':
        again = runActive(row, plan, now, outcome);
        break;
      case 'past_due':
        again = runPastDue(row, plan, now, outcome);
        break;
      case 'suspended':
        if (row.contractEndsAt !== null && now >= row.contractEndsAt) expire(row, outcome, Math.max(row.contractEndsAt, row.suspendedAt ?? 0));
        break;
      case 'paused': {
        const pauseEnd = (row.pausedAt as number) + plan.maxPauseS * 1000;
        if (row.contractEndsAt !== null && row.contractEndsAt <= pauseEnd && now >= row.contractEndsAt) {
          expire(row, outcome, Math.max(row.contractEndsAt, row.pausedAt as number));
        } else if (now >= pauseEnd) {
          // The longest pause the plan allows is over: billing resumes by itself.
          resumeFromPause(row, pauseEnd, outcome, 'pause_limit');
          again = true;
        }
        break;
      }
      default:
        break;
    }
    if (!again) return outcome;
  }
  throw new Error(`subscription ${row.id}: billing did not settle`);
}

function resumeFromPause(row: SubscriptionRow, at: number, outcome: BillingOutcome, by: string): void {
  startSegment(row, at);
  row.status = 'active';
  row.pausedAt = null;
  outcome.occurrences.push(occurrence(row, 'resumed', at, { from: 'paused', by }));
}

/** Pauses an active subscription at `now` (after `advance` ran to `now`); the increment in progress stays paid. */
export function pause(row: SubscriptionRow, balance: bigint, now: number, by: string): BillingOutcome {
  if (row.status !== 'active') throw new Error(`cannot pause a subscription that is ${row.status}`);
  row.status = 'paused';
  row.pausedAt = now;
  return { charges: [], occurrences: [occurrence(row, 'suspended', now, { reason: 'paused', by })], balance };
}

/** Resumes a paused subscription at `now`: a new segment starts, its first increment is billed at once. */
export function unpause(row: SubscriptionRow, plan: PlanTerms, balance: bigint, now: number, by: string): BillingOutcome {
  if (row.status !== 'paused') throw new Error(`cannot resume a subscription that is ${row.status}`);
  const outcome: BillingOutcome = { charges: [], occurrences: [], balance };
  resumeFromPause(row, now, outcome, by);
  const rest = advance(row, plan, balance, now);
  return { charges: rest.charges, occurrences: [...outcome.occurrences, ...rest.occurrences], balance: rest.balance };
}

/**
 * Money arrived (the balance is now `balance`, at `now`, after `advance` ran to `now`):
 * activates, pays owed increments in order, ends a grace period, resumes a suspension.
 * Mutates `row`.
 */
export function fund(row: SubscriptionRow, plan: PlanTerms, balance: bigint, now: number): BillingOutcome {
  const outcome: BillingOutcome = { charges: [], occurrences: [], balance };
  const price = priceOf(plan);
  const resumedOrActivated = (from: string): void => {
    if (row.activatedAt === null) {
      row.activatedAt = now;
      outcome.occurrences.push(occurrence(row, 'activated', now, { from }));
    } else {
      outcome.occurrences.push(occurrence(row, 'resumed', now, { from }));
    }
  };
  if (row.status === 'created') {
    if (outcome.balance < price) return outcome;
    startSegment(row, now);
    row.contractEndsAt = plan.contractS === null ? null : now + plan.contractS * 1000;
    row.status = 'active';
    resumedOrActivated('created');
  } else if (row.status === 'past_due' || row.status === 'suspended') {
    if (row.owed > 0) {
      const affordable = outcome.balance / price;
      const paid = Number(affordable < BigInt(row.owed) ? affordable : BigInt(row.owed));
      charge(row, plan, outcome, row.started - row.owed, paid, now);
      row.owed -= paid;
    }
    if (row.owed > 0) return outcome;
    if (row.status === 'past_due') {
      row.status = 'active';
      row.pastDueSince = null;
      resumedOrActivated('past_due');
    } else {
      if (outcome.balance < price) return outcome;
      if (row.contractEndsAt !== null && now >= row.contractEndsAt) return outcome;
      startSegment(row, now);
      row.status = 'active';
      row.pastDueSince = null;
      row.suspendedAt = null;
      resumedOrActivated('suspended');
    }
  } else {
    return outcome;
  }
  // Increment 0 of a new segment (or the next one) starts now.
  const rest = advance(row, plan, outcome.balance, now);
  return { charges: [...outcome.charges, ...rest.charges], occurrences: [...outcome.occurrences, ...rest.occurrences], balance: rest.balance };
}

/** Whole increments one prepayment buys. */
export function prepaymentIncrements(plan: PlanTerms): number {
  return Math.floor(plan.prepaymentS / plan.incrementS);
}

/** Increments the contract still has to start (null: no contract). */
function incrementsLeftInContract(row: SubscriptionRow, plan: PlanTerms): number | null {
  if (plan.contractS === null) return null;
  if (row.anchorAt === null || row.contractEndsAt === null) return plan.contractS / plan.incrementS;
  return Math.max(0, startedBefore(row, plan, row.contractEndsAt) - row.started);
}

/**
 * The prepayment invoice due now, if any: it tops the buffer up to one prepayment (plus
 * what is owed). Due when the buffer has fallen by at least the minimum settlement, or when
 * it cannot pay the next increment (then it asks for at least the minimum settlement).
 * Never more than what the rest of the contract costs; when that rest is under the minimum
 * settlement, it is asked for as soon as the buffer does not cover it.
 */
export function prepaymentDue(row: SubscriptionRow, plan: PlanTerms, balance: bigint): Msat | null {
  if (row.status === 'cancelled' || row.status === 'expired') return null;
  const price = priceOf(plan);
  const debt = price * BigInt(row.owed);
  let need = price * BigInt(prepaymentIncrements(plan)) + debt - balance;
  const left = incrementsLeftInContract(row, plan);
  const cap = left === null ? null : price * BigInt(left) + debt - balance;
  if (cap !== null && cap < need) need = cap;
  if (need <= 0n) return null;
  const urgent = balance < debt + price;
  if (need >= plan.minSettlementMsat) return msat(need);
  // Near the end of a contract the rest costs less than the minimum settlement: ask for it all now.
  if (cap !== null && cap < plan.minSettlementMsat && need === cap) return msat(need);
  if (!urgent) return null;
  const floor = cap === null || plan.minSettlementMsat < cap ? plan.minSettlementMsat : cap;
  return msat(floor > need ? floor : need);
}

/** Until when the service is paid (Unix ms), or null before the first payment. */
export function paidThrough(row: SubscriptionRow, plan: PlanTerms, balance: bigint): number | null {
  const inc = incrementMs(plan);
  const buffered = Number(balance / priceOf(plan));
  let until: number | null;
  switch (row.status) {
    case 'created':
      return null;
    case 'trialing':
      until = (row.trialEndsAt as number) + buffered * inc;
      break;
    case 'active':
      until = (row.anchorAt as number) + (row.started + buffered) * inc;
      break;
    case 'past_due':
    case 'suspended':
    case 'paused':
      until = row.anchorAt === null ? null : row.anchorAt + (row.started - row.owed) * inc;
      break;
    default:
      until = row.anchorAt === null ? null : Math.min(row.endedAt ?? Infinity, row.anchorAt + (row.started - row.owed) * inc);
  }
  if (until !== null && row.contractEndsAt !== null) until = Math.min(until, row.contractEndsAt);
  return until;
}

/** When `advance` has something to do next (Unix ms), or null if only money can move the row. */
export function nextDueAt(row: SubscriptionRow, plan: PlanTerms): number | null {
  const inc = incrementMs(plan);
  switch (row.status) {
    case 'trialing':
      return row.trialEndsAt;
    case 'active': {
      const next = (row.anchorAt as number) + row.started * inc;
      return row.contractEndsAt === null ? next : Math.min(next, row.contractEndsAt);
    }
    case 'past_due': {
      const next = Math.min((row.anchorAt as number) + row.started * inc, (row.pastDueSince as number) + plan.graceS * 1000);
      return row.contractEndsAt === null ? next : Math.min(next, row.contractEndsAt);
    }
    case 'suspended':
      return row.contractEndsAt;
    case 'paused': {
      const pauseEnd = (row.pausedAt as number) + plan.maxPauseS * 1000;
      return row.contractEndsAt === null ? pauseEnd : Math.min(pauseEnd, row.contractEndsAt);
    }
    default:
      return null;
  }
}
