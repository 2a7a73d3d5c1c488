/**
 * The human-readable part of an invoice: network prefix and amount (BOLT 11, "Human-Readable
 * Part"). The amount is written in bitcoin with an optional multiplier; inside Sluice it is
 * always msat, so the conversions here are exact both ways and refuse what is not whole msat.
 */
import type { Network } from '../backend.js';
import type { Msat } from '../../money/msat.js';

export type Bolt11Prefix = 'lnbc' | 'lntb' | 'lntbs' | 'lnbcrt';

const PREFIX_BY_NETWORK: Record<Network, Bolt11Prefix> = {
  mainnet: 'lnbc',
  testnet: 'lntb',
  signet: 'lntbs',
  regtest: 'lnbcrt',
};

const NETWORK_BY_PREFIX: ReadonlyMap<string, Network> = new Map(
  (Object.entries(PREFIX_BY_NETWORK) as [Network, Bolt11Prefix][]).map(([network, prefix]) => [prefix, network]),
);

export function prefixForNetwork(network: Network): Bolt11Prefix {
  return PREFIX_BY_NETWORK[network];
}

/** The network of an invoice prefix ("lnbc", ...), or null when the prefix is unknown. */
export function networkFromPrefix(prefix: string): Network | null {
  return NETWORK_BY_PREFIX.get(prefix) ?? null;
}

/** msat per unit of each multiplier; `p` (0.1 msat) is handled apart. */
const MSAT_PER_BTC = 100_000_000_000n;
const MSAT_PER_MILLI = 100_000_000n;
const MSAT_PER_MICRO = 100_000n;
const MSAT_PER_NANO = 100n;

/**
 * 21 million BTC: no invoice can ask for more bitcoin than will ever exist, and other
 * decoders (bolt11, light-bolt11-decoder) refuse such amounts too. Below 2^63-1, so every
 * accepted amount is a valid Msat.
 */
export const BOLT11_AMOUNT_MAX_MSAT = 21_000_000n * 100_000_000_000n;

/** 2^63 msat is at most 20 digits of pico-BTC; longer digit strings are refused before BigInt. */
const AMOUNT_DIGITS_MAX = 21;

export type HrpAmountResult = { ok: true; amountMsat: Msat | null } | { ok: false; detail: string };

/**
 * Reads the amount of the human-readable part ("" for no amount, "2500u", "9678785340p").
 * Refused: a zero or leading-zero number (writers MUST NOT), an unknown multiplier, a `p`
 * amount that is not whole msat (the last digit must be 0), and amounts above 21 million BTC.
 */
export function parseHrpAmount(text: string): HrpAmountResult {
  if (text.length === 0) return { ok: true, amountMsat: null };
  const match = /^([0-9]+)([munp]?)$/.exec(text);
  if (!match) return { ok: false, detail: `amount ${JSON.stringify(text)} is not digits with an optional m, u, n or p` };
  const digits = match[1] as string;
  const multiplier = match[2] as '' | 'm' | 'u' | 'n' | 'p';
  if (digits.startsWith('0')) return { ok: false, detail: `amount ${JSON.stringify(text)} is zero or has a leading zero` };
  if (digits.length > AMOUNT_DIGITS_MAX) return { ok: false, detail: `amount ${JSON.stringify(text)} is too large` };
  const value = BigInt(digits);
  let amount: bigint;
  switch (multiplier) {
    case '':
      amount = value * MSAT_PER_BTC;
      break;
    case 'm':
      amount = value * MSAT_PER_MILLI;
      break;
    case 'u':
      amount = value * MSAT_PER_MICRO;
      break;
    case 'n':
      amount = value * MSAT_PER_NANO;
      break;
    case 'p':
      if (value % 10n !== 0n) return { ok: false, detail: `amount ${JSON.stringify(text)} is not a whole number of msat` };
      amount = value / 10n;
      break;
  }
  if (amount > BOLT11_AMOUNT_MAX_MSAT) return { ok: false, detail: `amount ${JSON.stringify(text)} exceeds 21 million BTC` };
  return { ok: true, amountMsat: amount as Msat };
}

/**
 * The shortest spelling of an amount (BOLT 11: writers SHOULD use the largest multiplier, or
 * none). An invoice cannot say "0": a zero amount is a bug here; use no amount (null) instead.
 */
export function hrpAmountFromMsat(amountMsat: Msat): string {
  if (amountMsat <= 0n) throw new RangeError(`an invoice amount must be positive, got ${amountMsat} msat`);
  if (amountMsat > BOLT11_AMOUNT_MAX_MSAT) throw new RangeError(`invoice amount exceeds 21 million BTC: ${amountMsat} msat`);
  if (amountMsat % MSAT_PER_BTC === 0n) return (amountMsat / MSAT_PER_BTC).toString();
  if (amountMsat % MSAT_PER_MILLI === 0n) return `${amountMsat / MSAT_PER_MILLI}m`;
  if (amountMsat % MSAT_PER_MICRO === 0n) return `${amountMsat / MSAT_PER_MICRO}u`;
  if (amountMsat % MSAT_PER_NANO === 0n) return `${amountMsat / MSAT_PER_NANO}n`;
  return `${amountMsat * 10n}p`;
}

export type HrpResult =
  | { ok: true; prefix: Bolt11Prefix; network: Network; amountMsat: Msat | null }
  | { ok: false; error: 'UnknownPrefix' | 'BadAmount'; detail: string };

/** Splits a (lower-case) human-readable part into prefix and amount at the first digit. */
export function parseHrp(hrp: string): HrpResult {
  const firstDigit = hrp.search(/[0-9]/);
  const prefix = firstDigit < 0 ? hrp : hrp.slice(0, firstDigit);
  const network = networkFromPrefix(prefix);
  if (network === null) return { ok: false, error: 'UnknownPrefix', detail: `unknown invoice prefix ${JSON.stringify(prefix)}` };
  const amount = parseHrpAmount(firstDigit < 0 ? '' : hrp.slice(firstDigit));
  if (!amount.ok) return { ok: false, error: 'BadAmount', detail: amount.detail };
  return { ok: true, prefix: prefix as Bolt11Prefix, network, amountMsat: amount.amountMsat };
}
