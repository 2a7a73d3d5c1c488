/**
 * Reads the few BOLT 11 fields the LND client needs before or after talking to LND:
 * the payment hash (so a payment whose outcome we never hear about is still `unknown`
 * with the right hash), the amount, the timestamp and the expiry (to check what LND
 * says it created against what we asked for).
 *
 * It does not check the signature: the invoices we read here are either ones our own
 * node just made, or ones we are about to hand to our node, which checks them itself.
 * Field layout from BOLT 11 (../shared/reference/bolts/11-payment-encoding.md).
 */
import { bech32 } from '@scure/base';
import { MSAT_MAX, type Msat } from '../../money/msat.js';

export interface PaymentRequestSummary {
  /** The currency prefix after "ln": bc, tb, tbs, bcrt, sb. */
  currency: string;
  /** null for an invoice without an amount. */
  amountMsat: Msat | null;
  timestampS: number;
  /** 32 bytes hex. */
  paymentHash: string;
  /** The `x` field, or BOLT 11's default of 3600 s. */
  expiryS: number;
}

export type PaymentRequestError = 'NotBech32' | 'BadPrefix' | 'BadAmount' | 'TooShort' | 'MissingPaymentHash';

export type PaymentRequestResult = { ok: true; value: PaymentRequestSummary } | { ok: false; error: PaymentRequestError };

/** BOLT 11 invoices are longer than bech32's usual 90 characters; this bounds the work. */
const MAX_PAYMENT_REQUEST_LENGTH = 7089;
const SIGNATURE_WORDS = 104;
const TIMESTAMP_WORDS = 7;
const TAG_PAYMENT_HASH = 1;
const TAG_EXPIRY = 6;
const DEFAULT_EXPIRY_S = 3600;
const PREFIX = /^ln(bcrt|bc|tbs|tb|sb)([0-9]*)([munp]?)$/;

/** msat per unit of the amount, by multiplier letter (BOLT 11 "amount"). 'p' is handled apart. */
const MSAT_PER_UNIT: Record<string, bigint> = {
  '': 100_000_000_000n,
  m: 100_000_000n,
  u: 100_000n,
  n: 100n,
};

export function summarizePaymentRequest(text: string): PaymentRequestResult {
  if (text.length > MAX_PAYMENT_REQUEST_LENGTH) return { ok: false, error: 'NotBech32' };
  const decoded = bech32.decodeUnsafe(text.toLowerCase(), MAX_PAYMENT_REQUEST_LENGTH);
  if (!decoded) return { ok: false, error: 'NotBech32' };
  const prefix = PREFIX.exec(decoded.prefix);
  if (!prefix) return { ok: false, error: 'BadPrefix' };
  const amount = amountFromPrefix(prefix[2] ?? '', prefix[3] ?? '');
  if (amount === 'BadAmount') return { ok: false, error: 'BadAmount' };
  const words = decoded.words;
  if (words.length < TIMESTAMP_WORDS + SIGNATURE_WORDS) return { ok: false, error: 'TooShort' };
  const data = words.slice(0, words.length - SIGNATURE_WORDS);
  const timestampS = wordsToNumber(data.slice(0, TIMESTAMP_WORDS));
  let paymentHash: string | null = null;
  let expiryS = DEFAULT_EXPIRY_S;
  let position = TIMESTAMP_WORDS;
  while (position + 3 <= data.length) {
    const tag = data[position] as number;
    const length = (data[position + 1] as number) * 32 + (data[position + 2] as number);
    const field = data.slice(position + 3, position + 3 + length);
    position += 3 + length;
    if (field.length !== length) return { ok: false, error: 'TooShort' };
    // BOLT 11: a reader MUST skip a `p` field that does not have data_length 52.
    if (tag === TAG_PAYMENT_HASH && length === 52 && paymentHash === null) {
      const bytes = bech32.fromWordsUnsafe(field);
      if (bytes && bytes.length === 32) paymentHash = Buffer.from(bytes).toString('hex');
    }
    if (tag === TAG_EXPIRY && length <= 7) expiryS = wordsToNumber(field);
  }
  if (paymentHash === null) return { ok: false, error: 'MissingPaymentHash' };
  return { ok: true, value: { currency: prefix[1] as string, amountMsat: amount, timestampS, paymentHash, expiryS } };
}

function amountFromPrefix(digits: string, multiplier: string): Msat | null | 'BadAmount' {
  if (digits === '') return multiplier === '' ? null : 'BadAmount';
  if (digits.length > 1 && digits.startsWith('0')) return 'BadAmount';
  if (digits.length > 20) return 'BadAmount';
  const units = BigInt(digits);
  let amount: bigint;
  if (multiplier === 'p') {
    // One pico-bitcoin is a tenth of a msat: only multiples of 10 are payable.
    if (units % 10n !== 0n) return 'BadAmount';
    amount = units / 10n;
  } else {
    amount = units * (MSAT_PER_UNIT[multiplier] as bigint);
  }
  if (amount > MSAT_MAX) return 'BadAmount';
  return amount as Msat;
}

/** Big-endian 5-bit words to a number; callers keep it within 35 bits. */
function wordsToNumber(words: number[]): number {
  let value = 0;
  for (const word of words) value = value * 32 + word;
  return value;
}
