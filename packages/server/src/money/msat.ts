/**
 * Millisatoshi amounts.
 *
 * Every amount inside Sluice is an `Msat`: a non-negative bigint below 2^63, branded so
 * that a plain bigint (a count, an index) cannot be passed where money is expected.
 * On the wire amounts are decimal strings of digits; this module is the only place that
 * turns text into money and money into text.
 *
 * Rounding is always named (`Floor`, `Ceil`) and callers pick the direction that goes
 * against the party asking to be paid. Over-precise input is refused, never rounded.
 */

declare const msatBrand: unique symbol;

/** An amount of millisatoshis: 0 <= value <= MSAT_MAX. */
export type Msat = bigint & { readonly [msatBrand]: true };

/** The largest amount a 64-bit signed column can hold: 2^63 - 1 msat. */
export const MSAT_MAX = (1n << 63n) - 1n;

export const MSAT_PER_SAT = 1000n;
export const SAT_PER_BTC = 100_000_000n;
export const MSAT_PER_BTC = MSAT_PER_SAT * SAT_PER_BTC;

export type MsatParseError =
  | 'NotAString'
  | 'Empty'
  | 'NotDigits'
  | 'LeadingZero'
  | 'TooLarge'
  | 'UnsafeNumber';

export type MsatParseResult = { ok: true; value: Msat } | { ok: false; error: MsatParseError };

const DIGITS = /^[0-9]+$/;
/** 2^63 - 1 has 19 digits; anything longer is too large without converting it. */
const MSAT_MAX_DIGITS = 19;

/**
 * Parses a wire amount. Only a string of ASCII digits is money: "1.5", "-1", "1e3",
 * " 1", "+1", "0x10" and "" are refused. Leading zeros ("007") are refused too, so that
 * one amount has one spelling (idempotency fingerprints compare the text).
 */
export function parseMsat(text: unknown): MsatParseResult {
  if (typeof text !== 'string') return { ok: false, error: 'NotAString' };
  if (text.length === 0) return { ok: false, error: 'Empty' };
  if (!DIGITS.test(text)) return { ok: false, error: 'NotDigits' };
  if (text.length > 1 && text.startsWith('0')) return { ok: false, error: 'LeadingZero' };
  if (text.length > MSAT_MAX_DIGITS) return { ok: false, error: 'TooLarge' };
  const value = BigInt(text);
  if (value > MSAT_MAX) return { ok: false, error: 'TooLarge' };
  return { ok: true, value: value as Msat };
}

/**
 * Parses an amount that may arrive as a JSON number (some clients send `1000` instead of
 * `"1000"`). A number is accepted only when it is a safe integer: 1.5, 1e300 and 2^53 + 1
 * (which JSON.parse has already rounded) are refused.
 */
export function parseMsatLoose(value: unknown): MsatParseResult {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) return { ok: false, error: 'UnsafeNumber' };
    if (value < 0) return { ok: false, error: 'NotDigits' };
    return { ok: true, value: BigInt(value) as Msat };
  }
  return parseMsat(value);
}

/** Parses trusted text (configuration, our own database); a bad value is a bug, so it throws. */
export function msatFromString(text: string): Msat {
  const parsed = parseMsat(text);
  if (!parsed.ok) throw new Error(`invalid msat amount ${JSON.stringify(text)}: ${parsed.error}`);
  return parsed.value;
}

/** Checks a bigint computed by our own code; out of range is a bug and throws. */
export function msat(value: bigint | number): Msat {
  const big = typeof value === 'number' ? bigIntFromSafeInteger(value) : value;
  if (big < 0n) throw new RangeError(`msat amount is negative: ${big}`);
  if (big > MSAT_MAX) throw new RangeError(`msat amount exceeds 2^63-1: ${big}`);
  return big as Msat;
}

function bigIntFromSafeInteger(value: number): bigint {
  if (!Number.isSafeInteger(value)) throw new RangeError(`not a safe integer: ${value}`);
  return BigInt(value);
}

export function isMsat(value: unknown): value is Msat {
  return typeof value === 'bigint' && value >= 0n && value <= MSAT_MAX;
}

/** The wire form: decimal digits, no separators. */
export function formatMsat(amount: Msat): string {
  return amount.toString(10);
}

/** For people: "1,234,567 msat (1,234.567 sat)". Never parsed back. */
export function describeMsat(amount: Msat): string {
  const sat = amount / MSAT_PER_SAT;
  const rest = amount % MSAT_PER_SAT;
  const satText = groupThousands(sat.toString()) + (rest === 0n ? '' : '.' + rest.toString().padStart(3, '0'));
  return `${groupThousands(amount.toString())} msat (${satText} sat)`;
}

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Whole satoshis, dropping any fraction: use when the other party is asking to be paid. */
export function msatToSatFloor(amount: Msat): bigint {
  return amount / MSAT_PER_SAT;
}

/** Whole satoshis, rounding any fraction up: use when we are asking to be paid. */
export function msatToSatCeil(amount: Msat): bigint {
  return (amount + MSAT_PER_SAT - 1n) / MSAT_PER_SAT;
}

/** Exact: satoshis always convert to msat without loss. */
export function satToMsat(sat: bigint): Msat {
  return msat(sat * MSAT_PER_SAT);
}

/** Parses a decimal satoshi amount with at most 3 fractional digits ("1.5" -> 1500 msat). */
export function parseSatDecimal(text: string): MsatParseResult {
  const match = /^([0-9]+)(?:\.([0-9]{1,3}))?$/.exec(text);
  if (!match) return { ok: false, error: 'NotDigits' };
  const whole = match[1] as string;
  const fraction = (match[2] ?? '').padEnd(3, '0');
  const stripped = (whole + fraction).replace(/^0+(?=[0-9])/, '');
  return parseMsat(stripped);
}

export function addMsat(a: Msat, b: Msat): Msat {
  return msat(a + b);
}

/** a - b, which must not go below zero (a bug if it does). */
export function subtractMsat(a: Msat, b: Msat): Msat {
  return msat(a - b);
}

export function minMsat(a: Msat, b: Msat): Msat {
  return a < b ? a : b;
}

export function maxMsat(a: Msat, b: Msat): Msat {
  return a > b ? a : b;
}

export const ZERO_MSAT = 0n as Msat;

/**
 * amount * numerator / denominator, rounded down: a proportional share that never pays
 * out more than the exact value (refunds, fee splits).
 */
export function mulDivFloor(amount: Msat, numerator: bigint, denominator: bigint): Msat {
  if (denominator <= 0n) throw new RangeError('denominator must be positive');
  if (numerator < 0n) throw new RangeError('numerator must not be negative');
  return msat((amount * numerator) / denominator);
}

/** amount * numerator / denominator, rounded up: a proportional charge that never undercharges. */
export function mulDivCeil(amount: Msat, numerator: bigint, denominator: bigint): Msat {
  if (denominator <= 0n) throw new RangeError('denominator must be positive');
  if (numerator < 0n) throw new RangeError('numerator must not be negative');
  return msat((amount * numerator + denominator - 1n) / denominator);
}
