/**
 * Tagged-field constants and the pieces shared by the encoder and the decoder: feature bits,
 * short channel ids and fallback addresses.
 */
import { bech32, bech32m, createBase58check } from '@scure/base';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Network } from '../backend.js';

/** 5-bit type of each tagged field (BOLT 11 "Tagged Fields"). */
export const TAG_CODE = {
  paymentHash: 1, // p
  routeHint: 3, // r
  features: 5, // 9
  expiry: 6, // x
  fallbackAddress: 9, // f
  description: 13, // d
  paymentSecret: 16, // s
  payeePubkey: 19, // n
  descriptionHash: 23, // h
  minFinalCltvExpiry: 24, // c
  metadata: 27, // m
} as const;

/** The largest data_length a 10-bit length can say. */
export const FIELD_WORDS_MAX = 1023;
/** 639 bytes fit in 1023 words: the longest `d` (UTF-8 bytes) or `m`. */
export const FIELD_BYTES_MAX = 639;

export const TIMESTAMP_WORDS = 7;
export const SIGNATURE_WORDS = 104;

/**
 * Invoices longer than this are refused (decoding) or never produced (encoding). Generous
 * for any real invoice; 7089 is what a QR code can hold and what LND uses.
 */
export const BOLT11_LENGTH_MAX = 7089;

export const FEATURE_VAR_ONION_OPTIN = 8;
export const FEATURE_PAYMENT_SECRET = 14;
export const FEATURE_BASIC_MPP = 16;
export const FEATURE_ROUTE_BLINDING = 24;
export const FEATURE_PAYMENT_METADATA = 48;

/** Even ("required") bits of features BOLT 9 allows in invoices; other even bits are refused. */
export const KNOWN_INVOICE_FEATURES: ReadonlySet<number> = new Set([
  FEATURE_VAR_ONION_OPTIN,
  FEATURE_PAYMENT_SECRET,
  FEATURE_BASIC_MPP,
  FEATURE_ROUTE_BLINDING,
  FEATURE_PAYMENT_METADATA,
]);

/** What the spec's examples and most nodes write: var_onion_optin and payment_secret, required. */
export const BOLT11_DEFAULT_FEATURES: readonly number[] = [FEATURE_VAR_ONION_OPTIN, FEATURE_PAYMENT_SECRET];

/** Feature bits (any order, no duplicates needed) as the minimal big-endian words of the `9` field. */
export function featureWords(bits: readonly number[]): Uint8Array {
  let highest = -1;
  for (const bit of bits) {
    if (!Number.isInteger(bit) || bit < 0 || bit >= FIELD_WORDS_MAX * 5) throw new RangeError(`bad feature bit ${bit}`);
    if (bit > highest) highest = bit;
  }
  const words = new Uint8Array(Math.floor(highest / 5) + 1);
  for (const bit of bits) {
    const index = words.length - 1 - Math.floor(bit / 5);
    words[index] = (words[index] as number) | (1 << (bit % 5));
  }
  return words;
}

/** The set bits of a `9` field, ascending. */
export function featureBits(words: Uint8Array): number[] {
  const bits: number[] = [];
  for (let index = words.length - 1; index >= 0; index--) {
    const word = words[index] as number;
    const base = (words.length - 1 - index) * 5;
    for (let bit = 0; bit < 5; bit++) if ((word >>> bit) & 1) bits.push(base + bit);
  }
  return bits;
}

/** Whether the feature (given by its even bit) is set as required or optional. */
export function hasFeature(bits: readonly number[], evenBit: number): boolean {
  return bits.includes(evenBit) || bits.includes(evenBit + 1);
}

/** A non-negative integer as minimal big-endian words (0 is no words: no leading zero word). */
export function uintWords(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a non-negative safe integer: ${value}`);
  const words: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 32)) words.unshift(rest % 32);
  return Uint8Array.from(words);
}

/** Big-endian words as a number; null when not minimal (leading zero) or above 2^53. */
export function uintFromWords(words: Uint8Array): number | null {
  if (words.length > 0 && words[0] === 0) return null;
  let value = 0;
  for (let index = 0; index < words.length; index++) {
    value = value * 32 + (words[index] as number);
    if (!Number.isSafeInteger(value)) return null;
  }
  return value;
}

const SHORT_CHANNEL_ID = /^(0|[1-9][0-9]{0,7})x(0|[1-9][0-9]{0,7})x(0|[1-9][0-9]{0,4})$/;

/** "block x tx x output" -> 8 bytes (3 + 3 + 2, big-endian); throws on a malformed id. */
export function shortChannelIdBytes(text: string): Uint8Array {
  const match = SHORT_CHANNEL_ID.exec(text);
  if (!match) throw new RangeError(`bad short channel id ${JSON.stringify(text)}`);
  const block = Number(match[1]);
  const transaction = Number(match[2]);
  const output = Number(match[3]);
  if (block > 0xffffff || transaction > 0xffffff || output > 0xffff) throw new RangeError(`short channel id out of range: ${text}`);
  return Uint8Array.of(
    block >>> 16, (block >>> 8) & 0xff, block & 0xff,
    transaction >>> 16, (transaction >>> 8) & 0xff, transaction & 0xff,
    output >>> 8, output & 0xff,
  );
}

export function shortChannelIdFromBytes(bytes: Uint8Array, offset: number): string {
  const at = (index: number): number => bytes[offset + index] as number;
  const block = (at(0) << 16) | (at(1) << 8) | at(2);
  const transaction = (at(3) << 16) | (at(4) << 8) | at(5);
  const output = (at(6) << 8) | at(7);
  return `${block}x${transaction}x${output}`;
}

const base58check = createBase58check(sha256);

const ADDRESS_VERSIONS: Record<Network, { pubkeyHash: number; scriptHash: number; segwitHrp: string }> = {
  mainnet: { pubkeyHash: 0x00, scriptHash: 0x05, segwitHrp: 'bc' },
  testnet: { pubkeyHash: 0x6f, scriptHash: 0xc4, segwitHrp: 'tb' },
  signet: { pubkeyHash: 0x6f, scriptHash: 0xc4, segwitHrp: 'tb' },
  regtest: { pubkeyHash: 0x6f, scriptHash: 0xc4, segwitHrp: 'bcrt' },
};

export const FALLBACK_P2PKH = 17;
export const FALLBACK_P2SH = 18;

/** Whether a fallback version is one a reader understands (others MUST be skipped). */
export function isKnownFallbackVersion(version: number): boolean {
  return Number.isInteger(version) && version >= 0 && version <= FALLBACK_P2SH;
}

/**
 * Why a fallback's program cannot be an address of its version, or null when it can
 * (BIP 141: witness programs of 2-40 bytes, 20 or 32 for version 0; 20-byte hashes for 17/18).
 */
export function fallbackProgramProblem(version: number, program: Uint8Array): string | null {
  if (version === FALLBACK_P2PKH || version === FALLBACK_P2SH) {
    return program.length === 20 ? null : `version ${version} needs a 20-byte hash, got ${program.length} bytes`;
  }
  if (version === 0) return program.length === 20 || program.length === 32 ? null : `witness v0 program of ${program.length} bytes`;
  return program.length >= 2 && program.length <= 40 ? null : `witness v${version} program of ${program.length} bytes`;
}

/** The address for a fallback of a known version whose program passed fallbackProgramProblem. */
export function fallbackAddress(network: Network, version: number, program: Uint8Array): string {
  const versions = ADDRESS_VERSIONS[network];
  if (version === FALLBACK_P2PKH || version === FALLBACK_P2SH) {
    const payload = new Uint8Array(21);
    payload[0] = version === FALLBACK_P2PKH ? versions.pubkeyHash : versions.scriptHash;
    payload.set(program, 1);
    return base58check.encode(payload);
  }
  const words = [version, ...bech32.toWords(program)];
  return version === 0 ? bech32.encode(versions.segwitHrp, words, false) : bech32m.encode(versions.segwitHrp, words, false);
}
