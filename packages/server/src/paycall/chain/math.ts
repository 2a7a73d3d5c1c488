/**
 * The arithmetic of hash-chain tokens, with no state: building a chain, checking a link,
 * the Sluice-Chain header, and the price of a call in steps. docs/paycall.md states the
 * same rules for client authors; test/paycall/chain/math.test.ts checks both.
 *
 * A chain is w_N -> ... -> w_0 with w_(i-1) = SHA-256(w_i), every link 32 bytes. The
 * server knows only the anchor w_0 and the last link it accepted, w_current. A call that
 * costs k steps reveals w_(current+k): hashing it k times must give w_current. SHA-256 is
 * one-way, so knowing w_current tells nobody w_(current+1): only the holder of the seed
 * can pay, and a revealed link is worth nothing once accepted (the index moved past it).
 */
import crypto from 'node:crypto';
import type { Msat } from '../../money/msat.js';

export const LINK_BYTES = 32;
/** Steps one chain may hold (the contract's purchase limit). */
export const MAX_CHAIN_STEPS = 10_000_000;
/**
 * Steps one call may cost: each step is one SHA-256 on the hot path (about 1 µs), so this
 * bounds the time one request can hold the event loop (about 65 ms).
 */
export const MAX_STEPS_PER_CALL = 65_536;

const sha256: (data: Uint8Array) => Buffer =
  typeof crypto.hash === 'function'
    // crypto.hash (Node >= 20.12) skips the Hash object: about 1.5x createHash for 32 bytes.
    ? (data) => crypto.hash('sha256', data, 'buffer')
    : (data) => crypto.createHash('sha256').update(data).digest();

/** SHA-256 of one link. */
export function hashLink(link: Uint8Array): Buffer {
  return sha256(link);
}

/** SHA-256 applied `times` times (times >= 0). */
export function hashLinkTimes(link: Uint8Array, times: number): Buffer {
  if (!Number.isSafeInteger(times) || times < 0) throw new RangeError(`cannot hash ${times} times`);
  if (times === 0) return Buffer.from(link);
  // Each hash returns a new buffer: the caller's link is never aliased or copied.
  let current = sha256(link);
  for (let i = 1; i < times; i += 1) current = sha256(current);
  return current;
}

/**
 * The links w_0 .. w_count of the chain whose seed is w_N (clients and tests; the server
 * never builds a chain). Index i of the result is w_i. Costs N hashes and N x 32 bytes.
 */
export function buildChain(seed: Uint8Array, steps: number, count = steps): Buffer[] {
  if (seed.length !== LINK_BYTES) throw new RangeError(`a seed is ${LINK_BYTES} bytes`);
  if (!Number.isSafeInteger(steps) || steps < 1) throw new RangeError(`steps must be >= 1, got ${steps}`);
  const fromSeed: Buffer[] = [Buffer.from(seed)];
  for (let i = steps; i > 0; i -= 1) fromSeed.push(sha256(fromSeed[fromSeed.length - 1] as Buffer));
  // fromSeed[j] = w_(N-j); turn it around so that result[i] = w_i.
  return fromSeed.reverse().slice(0, count + 1);
}

/** w_index of the chain with this seed, by hashing the seed N - index times. */
export function linkAt(seed: Uint8Array, steps: number, index: number): Buffer {
  if (index < 0 || index > steps) throw new RangeError(`index ${index} is outside 0..${steps}`);
  return hashLinkTimes(seed, steps - index);
}

/**
 * True when `link` is `k` steps beyond `current`: SHA-256^k(link) == current. k hashes and
 * one comparison. Not a constant-time one: `current` is the link last accepted, already sent
 * in the clear, so its timing tells nothing that is not public.
 */
export function verifyLink(link: Uint8Array, current: Uint8Array, k: number): boolean {
  if (link.length !== LINK_BYTES || current.length !== LINK_BYTES || !Number.isSafeInteger(k) || k < 1) return false;
  return sameLink(hashLinkTimes(link, k), current);
}

/**
 * Two 32-byte links compared in JavaScript: Buffer#equals crosses into C++ for 32 bytes,
 * which costs more than the loop (this runs on every paid call).
 */
function sameLink(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < LINK_BYTES; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

/** Steps a call of price P costs: ceil(P / step), rounded against the caller; 0 for a free call. */
export function stepsForPrice(priceMsat: Msat, stepMsat: Msat): number {
  if (stepMsat <= 0n) throw new RangeError('a step price is at least 1 msat');
  const steps = (priceMsat + stepMsat - 1n) / stepMsat;
  return steps > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(steps);
}

const LINK_HEX = /^[0-9a-f]{64}$/;
const CHAIN_ID = /^ch_[A-Za-z0-9_-]{1,64}$/;

export function isLinkHex(text: unknown): text is string {
  return typeof text === 'string' && LINK_HEX.test(text);
}

export function isChainId(text: unknown): text is string {
  return typeof text === 'string' && CHAIN_ID.test(text);
}

export interface ChainCredential {
  chainId: string;
  /** The chain index after this call. */
  index: number;
  /** w_index, 32 bytes. */
  link: Buffer;
}

/** The header the client sends: `Sluice-Chain: <chain_id> <index> <link hex>`. */
export const CHAIN_HEADER = 'sluice-chain';
/** The header a served response carries: `steps=<n>; msat=<n>; index=<n>`. */
export const CHAIN_BALANCE_HEADER = 'sluice-chain-balance';
/** The header of a 402 that says where and at what price to buy a chain. */
export const CHAIN_OFFER_HEADER = 'sluice-chain-offer';

/**
 * Parses a Sluice-Chain header value strictly: three fields separated by single spaces
 * (surrounding whitespace is ignored), an index of digits without leading zeros and a
 * link of 64 lowercase hex digits. Null for anything else.
 */
export function parseChainHeader(value: string | string[] | undefined): ChainCredential | null {
  // Hand-written, without regular expressions, slices or Buffer's hex decoder (a call into
  // C++ that costs more than the loop for 32 bytes): this runs on every paid call.
  if (typeof value !== 'string' || value.length > 256) return null;
  // HTTP parsers strip the spaces around a header value already; others may not.
  const text = mayBeSpace(value.charCodeAt(0)) || mayBeSpace(value.charCodeAt(value.length - 1)) ? value.trim() : value;
  const first = text.indexOf(' ');
  if (first < 0 || !isChainIdAt(text, first)) return null;
  const second = text.indexOf(' ', first + 1);
  if (second < 0 || text.length - second - 1 !== LINK_BYTES * 2) return null;
  const index = parseIndex(text, first + 1, second);
  if (index === null) return null;
  const link = Buffer.allocUnsafe(LINK_BYTES);
  for (let byte = 0, at = second + 1; byte < LINK_BYTES; byte += 1, at += 2) {
    const high = text.charCodeAt(at);
    const low = text.charCodeAt(at + 1);
    if ((high | low) >= 128) return null;
    // One lookup per byte: -1 unless both are 0-9 a-f (uppercase is -1 too).
    const value = HEX_PAIRS[(high << 7) | low] as number;
    if (value < 0) return null;
    link[byte] = value;
  }
  return { chainId: text.slice(0, first), index, link };
}

/** The byte two lowercase hex digits spell, at (first char code << 7) | second; -1 for anything else. */
const HEX_PAIRS = new Int16Array(128 * 128).fill(-1);
for (let high = 0; high < 16; high += 1) {
  for (let low = 0; low < 16; low += 1) HEX_PAIRS[('0123456789abcdef'.charCodeAt(high) << 7) | '0123456789abcdef'.charCodeAt(low)] = (high << 4) | low;
}

/** 1 for the char codes CHAIN_ID allows after `ch_`: A-Z a-z 0-9 _ -. */
const ID_CHARS = new Uint8Array(128);
for (const code of Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-', (c) => c.charCodeAt(0))) ID_CHARS[code] = 1;

/** Whether text[0..end) matches CHAIN_ID (`ch_` and 1 to 64 of A-Z a-z 0-9 _ -), without a regular expression. */
function isChainIdAt(text: string, end: number): boolean {
  if (end < 4 || end > 67 || text.charCodeAt(0) !== 0x63 || text.charCodeAt(1) !== 0x68 || text.charCodeAt(2) !== 0x5f) return false;
  for (let i = 3; i < end; i += 1) {
    const code = text.charCodeAt(i);
    if (code >= 128 || ID_CHARS[code] === 0) return false;
  }
  return true;
}

/**
 * Whether String#trim might remove this char (any control char, space or non-ASCII char:
 * a superset, so the rule stays exactly `trim()` while a plain header skips the call).
 */
const mayBeSpace = (code: number): boolean => code <= 0x20 || code >= 0x7f;

/** Digits from..to as an index of 1..MAX_CHAIN_STEPS, without sign or leading zeros. */
function parseIndex(text: string, from: number, to: number): number | null {
  if (to <= from || to - from > 8 || text.charCodeAt(from) === 0x30) return null;
  let index = 0;
  for (let i = from; i < to; i += 1) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return null;
    index = index * 10 + digit;
  }
  return index > MAX_CHAIN_STEPS ? null : index;
}

export function formatChainHeader(credential: { chainId: string; index: number; link: Uint8Array }): string {
  return `${credential.chainId} ${credential.index} ${Buffer.from(credential.link).toString('hex')}`;
}

export function formatBalanceHeader(remainingSteps: number, stepMsat: Msat, index: number): string {
  return `steps=${remainingSteps}; msat=${BigInt(remainingSteps) * stepMsat}; index=${index}`;
}

export function formatOfferHeader(offer: { buyUrl: string; appId: string; stepMsat: Msat; stepsPerCall: number }): string {
  const quote = (text: string) => `"${text.replace(/["\\]/g, '')}"`;
  return `buy=${quote(offer.buyUrl)}, app=${quote(offer.appId)}, step_msat="${offer.stepMsat}", steps_per_call="${offer.stepsPerCall}"`;
}
