/**
 * Reading what a pay-per-call server says in headers: the chain offer and balance
 * (docs/paycall.md section 4), the L402 challenge (docs/l402.md section 1), and the amount a
 * BOLT 11 invoice asks for (so the budget is checked before the wallet is asked).
 * Everything here treats the server's text as untrusted: a value that does not parse is
 * ignored (null), never guessed.
 */

/** A chain offer from `Sluice-Chain-Offer`. */
export interface ChainOffer {
  /** Absolute URL of `POST /v1/paycall/chains`. */
  buyUrl: string;
  appId: string;
  stepMsat: bigint;
  /** Steps one call of this route costs (k); null when the offer does not say (see `stepsForPrice`). */
  stepsPerCall: number | null;
}

/** An L402 challenge from `WWW-Authenticate`. */
export interface L402Challenge {
  /** The macaroon, base64, as sent. */
  token: string;
  invoice: string;
}

/** The balance of a chain after a served call, from `Sluice-Chain-Balance`. */
export interface ChainBalance {
  steps: number;
  msat: bigint;
  index: number;
}

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

function params(text: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const match of text.matchAll(/([A-Za-z_][A-Za-z0-9_-]*)="([^"]*)"/g)) {
    const name = (match[1] as string).toLowerCase();
    if (!found.has(name)) found.set(name, match[2] as string);
  }
  return found;
}

/** The offer in a `Sluice-Chain-Offer` header, or null when absent or unreadable. */
export function parseChainOffer(header: string | null): ChainOffer | null {
  if (header === null) return null;
  const found = params(header);
  const buy = found.get('buy');
  const app = found.get('app');
  const step = found.get('step_msat');
  const perCall = found.get('steps_per_call');
  if (buy === undefined || app === undefined || step === undefined) return null;
  if (!DECIMAL.test(step) || step === '0') return null;
  if (perCall !== undefined && (!DECIMAL.test(perCall) || perCall === '0' || perCall.length > 9)) return null;
  let url: URL;
  try {
    url = new URL(buy);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(app)) return null;
  return { buyUrl: url.toString().replace(/\/+$/, ''), appId: app, stepMsat: BigInt(step), stepsPerCall: perCall === undefined ? null : Number(perCall) };
}

/**
 * The first L402 (or LSAT) challenge in `WWW-Authenticate`, or null. `fetch` joins several
 * header lines with ", ", so the L402 line's parameters are read up to the next scheme name.
 */
export function parseL402Challenge(header: string | null): L402Challenge | null {
  if (header === null) return null;
  const start = header.search(/(?:^|,\s*)(?:L402|LSAT)\s/i);
  if (start < 0) return null;
  const rest = header.slice(start).replace(/^,\s*/, '');
  const next = rest.slice(5).search(/,\s*[A-Za-z0-9_-]+\s+[A-Za-z0-9_-]+=/);
  const own = next < 0 ? rest : rest.slice(0, next + 5);
  const found = params(own);
  const token = found.get('token') ?? found.get('macaroon');
  const invoice = found.get('invoice');
  if (token === undefined || invoice === undefined || token === '' || invoice === '') return null;
  return { token, invoice };
}

/** The `Sluice-Chain-Balance` header, or null. */
export function parseChainBalance(header: string | null): ChainBalance | null {
  if (header === null) return null;
  const match = /^\s*steps=(\d+);\s*msat=(\d+);\s*index=(\d+)\s*$/.exec(header);
  if (match === null) return null;
  return { steps: Number(match[1]), msat: BigInt(match[2] as string), index: Number(match[3]) };
}

const MSAT_PER_BTC = 100_000_000_000n;

/**
 * The amount a BOLT 11 invoice asks for, in msat, read from its human-readable part
 * (`lnbcrt50n1...` is 50 nano-bitcoin = 5000 msat); null when it names no amount or is not
 * an invoice. The wallet pays what the invoice says, so this is what the budget is checked
 * against; an invoice without an amount is never paid by the paying fetch.
 */
export function invoiceAmountMsat(invoice: string): bigint | null {
  const lower = invoice.trim().toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (separator < 0) return null;
  const match = /^ln(?:bcrt|bc|tbs|tb|sb)(\d+)([munp]?)$/.exec(lower.slice(0, separator));
  if (match === null || (match[1] as string).startsWith('0')) return null;
  const amount = BigInt(match[1] as string);
  switch (match[2]) {
    case 'm':
      return amount * (MSAT_PER_BTC / 1_000n);
    case 'u':
      return amount * (MSAT_PER_BTC / 1_000_000n);
    case 'n':
      return amount * (MSAT_PER_BTC / 1_000_000_000n);
    case 'p':
      // A pico-bitcoin is a tenth of a msat: BOLT 11 requires a multiple of 10.
      return amount % 10n === 0n ? amount / 10n : null;
    default:
      return amount * MSAT_PER_BTC;
  }
}

/**
 * Steps a call of `priceMsat` costs at `stepMsat` a step: ceil(price / step), rounded against
 * the caller as the server rounds (docs/paycall.md section 4). For offers without
 * `steps_per_call`, with the price from the 402 body's `price_msat`.
 */
export function stepsForPrice(priceMsat: bigint, stepMsat: bigint): number {
  return Number((priceMsat + stepMsat - 1n) / stepMsat);
}

/** `price_msat` of a 402 body, or null. */
export function priceFromBody(text: string): bigint | null {
  try {
    const price = (JSON.parse(text) as { price_msat?: unknown }).price_msat;
    return typeof price === 'string' && DECIMAL.test(price) ? BigInt(price) : null;
  } catch {
    return null;
  }
}
