/**
 * Plan validation: what a merchant sends, checked into PlanTerms, or the first problem
 * with its stable code. Pure, so every rule has a table row in the tests.
 */
import { parseMsatLoose, msat, type Msat } from '../money/msat.js';
import { BOLT11_AMOUNT_MAX_MSAT } from '../lightning/bolt11/index.js';
import type { PlanRow, PlanTerms } from './model.js';

/** The seed's default: payments under 1,000 sat would pay too much in fees. */
export const DEFAULT_MIN_SETTLEMENT_MSAT = msat(1_000_000n);
/** Ten years: longer durations are refused (and keep every time below 2^53 ms). */
export const MAX_DURATION_S = 315_360_000;
export const MAX_NAME_LENGTH = 200;
export const MAX_PLANS_PER_APP = 1000;

export interface PlanInput {
  name?: unknown;
  rate_msat_per_s?: unknown;
  rate_msat_per_increment?: unknown;
  increment_s?: unknown;
  prepayment_s?: unknown;
  grace_s?: unknown;
  contract_s?: unknown;
  min_settlement_msat?: unknown;
  trial_s?: unknown;
  max_pause_s?: unknown;
}

export type PlanProblem =
  | 'PlanRateInvalid'
  | 'PlanIncrementInvalid'
  | 'PlanIncrementExceedsContract'
  | 'PlanPrepaymentTooShort'
  | 'PlanInvalid';

export type PlanCheck =
  | { ok: true; terms: PlanTerms; rateKind: PlanRow['rateKind'] }
  | { ok: false; error: PlanProblem; detail: string };

const fail = (error: PlanProblem, detail: string): PlanCheck => ({ ok: false, error, detail });

function duration(value: unknown, field: string, minimum: number): { ok: true; value: number } | { ok: false; detail: string } {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) return { ok: false, detail: `${field} must be a whole number of seconds` };
  if (value < minimum || value > MAX_DURATION_S) return { ok: false, detail: `${field} must be between ${minimum} and ${MAX_DURATION_S} seconds` };
  return { ok: true, value };
}

function rate(value: unknown, field: string): { ok: true; value: Msat } | { ok: false; detail: string } {
  if (typeof value === 'string' && /^-/.test(value.trim())) return { ok: false, detail: `${field} must be positive` };
  if (typeof value === 'number' && value < 0) return { ok: false, detail: `${field} must be positive` };
  const parsed = parseMsatLoose(value);
  if (!parsed.ok) return { ok: false, detail: `${field} must be a decimal string of whole msat (${parsed.error})` };
  if (parsed.value === 0n) return { ok: false, detail: `${field} must be at least 1 msat` };
  return { ok: true, value: parsed.value };
}

export function checkPlan(input: PlanInput): PlanCheck {
  if (typeof input.name !== 'string' || input.name.trim() === '' || input.name.length > MAX_NAME_LENGTH) {
    return fail('PlanInvalid', `name must be 1-${MAX_NAME_LENGTH} characters`);
  }
  const increment = duration(input.increment_s, 'increment_s', 1);
  if (!increment.ok) return fail('PlanIncrementInvalid', increment.detail);
  const incrementS = increment.value;

  const perSecond = input.rate_msat_per_s !== undefined;
  const perIncrement = input.rate_msat_per_increment !== undefined;
  if (perSecond === perIncrement) return fail('PlanRateInvalid', 'send exactly one of rate_msat_per_s and rate_msat_per_increment');
  const parsed = perSecond ? rate(input.rate_msat_per_s, 'rate_msat_per_s') : rate(input.rate_msat_per_increment, 'rate_msat_per_increment');
  if (!parsed.ok) return fail('PlanRateInvalid', parsed.detail);
  const price = perSecond ? parsed.value * BigInt(incrementS) : parsed.value;

  let contractS: number | null = null;
  if (input.contract_s !== undefined && input.contract_s !== null) {
    const contract = duration(input.contract_s, 'contract_s', 1);
    if (!contract.ok) return fail('PlanInvalid', contract.detail);
    contractS = contract.value;
    if (incrementS > contractS) return fail('PlanIncrementExceedsContract', `increment_s (${incrementS}) is longer than contract_s (${contractS})`);
    if (contractS % incrementS !== 0) return fail('PlanIncrementExceedsContract', `contract_s (${contractS}) must be a whole number of increments of ${incrementS} s`);
  }

  const prepayment = duration(input.prepayment_s, 'prepayment_s', 1);
  if (!prepayment.ok) return fail('PlanInvalid', prepayment.detail);
  if (prepayment.value < incrementS) return fail('PlanPrepaymentTooShort', `prepayment_s (${prepayment.value}) is shorter than one increment (${incrementS} s)`);

  const grace = duration(input.grace_s ?? 0, 'grace_s', 0);
  if (!grace.ok) return fail('PlanInvalid', grace.detail);
  const trial = duration(input.trial_s ?? 0, 'trial_s', 0);
  if (!trial.ok) return fail('PlanInvalid', trial.detail);
  const maxPause = duration(input.max_pause_s ?? 0, 'max_pause_s', 0);
  if (!maxPause.ok) return fail('PlanInvalid', maxPause.detail);

  let minSettlementMsat = DEFAULT_MIN_SETTLEMENT_MSAT;
  if (input.min_settlement_msat !== undefined) {
    const minimum = parseMsatLoose(input.min_settlement_msat);
    if (!minimum.ok) return fail('PlanInvalid', `min_settlement_msat must be a decimal string of msat (${minimum.error})`);
    minSettlementMsat = minimum.value;
  }

  // The largest invoice the plan can ask for: one prepayment plus one of owed grace, at most.
  const prepaymentIncrements = BigInt(Math.floor(prepayment.value / incrementS));
  const graceIncrements = BigInt(Math.ceil(grace.value / incrementS) + 1);
  if (price * (prepaymentIncrements + graceIncrements) > BOLT11_AMOUNT_MAX_MSAT) {
    return fail('PlanRateInvalid', 'one prepayment (with the grace period) would be larger than any Lightning invoice');
  }
  if (minSettlementMsat > BOLT11_AMOUNT_MAX_MSAT) return fail('PlanInvalid', 'min_settlement_msat is larger than any Lightning invoice');

  return {
    ok: true,
    rateKind: perSecond ? 'per_second' : 'per_increment',
    terms: {
      name: input.name.trim(),
      priceMsat: msat(price),
      incrementS,
      prepaymentS: prepayment.value,
      graceS: grace.value,
      contractS,
      minSettlementMsat,
      trialS: trial.value,
      maxPauseS: maxPause.value,
    },
  };
}
