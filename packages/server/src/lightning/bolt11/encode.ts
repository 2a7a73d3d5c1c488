/**
 * BOLT 11 writer. The fields come from our own code, so a malformed field (bad hex, a number
 * out of range, a description too long for one field) is a bug and throws a RangeError;
 * callers that pass user input (a description from an API request) check its length first
 * against FIELD_BYTES_MAX.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { hrpAmountFromMsat, prefixForNetwork } from './amount.js';
import { encodeBech32, wordsFromBytes, wordsFromText } from './bech32.js';
import { signingHash } from './decode.js';
import {
  BOLT11_DEFAULT_FEATURES,
  BOLT11_LENGTH_MAX,
  FIELD_BYTES_MAX,
  FIELD_WORDS_MAX,
  SIGNATURE_WORDS,
  TAG_CODE,
  TIMESTAMP_WORDS,
  fallbackProgramProblem,
  featureWords,
  isKnownFallbackVersion,
  shortChannelIdBytes,
  uintWords,
} from './fields.js';
import type {
  Bolt11EncodeFields,
  Bolt11EncodeOptions,
  Bolt11Invoice,
  Bolt11NamedFields,
  Bolt11OrderedFields,
  Bolt11RouteHop,
  Bolt11Tag,
} from './types.js';

const TIMESTAMP_MAX = 2 ** 35 - 1;
const utf8 = new TextEncoder();

/**
 * Builds and signs an invoice with the node's secp256k1 private key (RFC 6979 deterministic,
 * low-S). Named fields are written in a fixed order; ordered `tags` are written as given,
 * which reproduces any decoded invoice exactly (see fieldsFromInvoice).
 *
 * @example
 * const request = encodeBolt11({
 *   network: 'regtest', amountMsat: msat(1500n), timestamp: 1_700_000_000,
 *   paymentHash, paymentSecret, description: 'coffee', expiryS: 600,
 * }, nodePrivateKey);
 */
export function encodeBolt11(fields: Bolt11EncodeFields, privateKey: Uint8Array, options: Bolt11EncodeOptions = {}): string {
  const tags = 'tags' in fields ? fields.tags : bolt11TagsFromFields(fields, privateKey);
  if (!Number.isSafeInteger(fields.timestamp) || fields.timestamp < 0 || fields.timestamp > TIMESTAMP_MAX) {
    throw new RangeError(`timestamp must be an integer in [0, 2^35), got ${fields.timestamp}`);
  }
  const hrp = prefixForNetwork(fields.network) + (fields.amountMsat === null ? '' : hrpAmountFromMsat(fields.amountMsat));
  const parts: Uint8Array[] = [];
  let wordCount = TIMESTAMP_WORDS;
  for (const tag of tags) {
    const part = tagWords(tag);
    parts.push(part);
    wordCount += part.length;
  }
  const words = new Uint8Array(wordCount + SIGNATURE_WORDS);
  let timestamp = fields.timestamp;
  for (let index = TIMESTAMP_WORDS - 1; index >= 0; index--) {
    words[index] = timestamp % 32;
    timestamp = Math.floor(timestamp / 32);
  }
  let offset = TIMESTAMP_WORDS;
  for (const part of parts) {
    words.set(part, offset);
    offset += part.length;
  }
  const messageHash = signingHash(hrp, words.subarray(0, wordCount));
  // noble returns [recovery, r, s]; BOLT 11 wants r || s || recovery.
  const recovered = secp256k1.sign(messageHash, privateKey, { prehash: false, format: 'recovered', lowS: options.lowS ?? true });
  const signature = new Uint8Array(65);
  signature.set(recovered.subarray(1), 0);
  signature[64] = recovered[0] as number;
  words.set(wordsFromBytes(signature), wordCount);
  const text = encodeBech32(hrp, words);
  if (text.length > BOLT11_LENGTH_MAX) throw new RangeError(`invoice of ${text.length} characters exceeds ${BOLT11_LENGTH_MAX}`);
  return text;
}

/**
 * The ordered tags for named fields: s, p, d or h, m, x, c, n, f..., r..., 9, then raw tags.
 * The `n` field (includePayeePubkey) needs the private key to derive the public key.
 */
export function bolt11TagsFromFields(fields: Bolt11NamedFields, privateKey?: Uint8Array): Bolt11Tag[] {
  const hasDescription = fields.description !== undefined;
  const hasHash = fields.descriptionHash !== undefined;
  if (hasDescription === hasHash) throw new RangeError('give exactly one of description and descriptionHash');
  const tags: Bolt11Tag[] = [
    { type: 'paymentSecret', value: fields.paymentSecret },
    { type: 'paymentHash', value: fields.paymentHash },
  ];
  if (fields.description !== undefined) tags.push({ type: 'description', value: fields.description });
  if (fields.descriptionHash !== undefined) tags.push({ type: 'descriptionHash', value: fields.descriptionHash });
  if (fields.metadata !== undefined) tags.push({ type: 'metadata', value: fields.metadata });
  if (fields.expiryS !== undefined) tags.push({ type: 'expiry', value: fields.expiryS });
  if (fields.minFinalCltvExpiry !== undefined) tags.push({ type: 'minFinalCltvExpiry', value: fields.minFinalCltvExpiry });
  if (fields.includePayeePubkey === true) {
    if (privateKey === undefined) throw new RangeError('includePayeePubkey needs the private key');
    tags.push({ type: 'payeePubkey', value: bytesToHex(secp256k1.getPublicKey(privateKey, true)) });
  }
  for (const fallback of fields.fallbackAddresses ?? []) tags.push({ type: 'fallbackAddress', value: fallback });
  for (const route of fields.routeHints ?? []) tags.push({ type: 'routeHint', value: route });
  const features = fields.features ?? BOLT11_DEFAULT_FEATURES;
  if (features.length > 0) tags.push({ type: 'features', value: features });
  for (const tag of fields.unknownTags ?? []) tags.push(tag);
  return tags;
}

/** The ordered fields that re-encode a decoded invoice (with the same key) to the same text. */
export function fieldsFromInvoice(invoice: Bolt11Invoice): Bolt11OrderedFields {
  return { network: invoice.network, amountMsat: invoice.amountMsat, timestamp: invoice.timestamp, tags: invoice.tags };
}

/** Type, 10-bit length and data of one tagged field. */
function tagWords(tag: Bolt11Tag): Uint8Array {
  const [code, data] = tagData(tag);
  if (data.length > FIELD_WORDS_MAX) throw new RangeError(`${tag.type} field of ${data.length} words exceeds ${FIELD_WORDS_MAX}`);
  const words = new Uint8Array(3 + data.length);
  words[0] = code;
  words[1] = data.length >>> 5;
  words[2] = data.length & 31;
  words.set(data, 3);
  return words;
}

function tagData(tag: Bolt11Tag): [number, Uint8Array] {
  switch (tag.type) {
    case 'paymentHash':
      return [TAG_CODE.paymentHash, wordsFromBytes(fixedHex(tag.value, 32, 'payment hash'))];
    case 'paymentSecret':
      return [TAG_CODE.paymentSecret, wordsFromBytes(fixedHex(tag.value, 32, 'payment secret'))];
    case 'descriptionHash':
      return [TAG_CODE.descriptionHash, wordsFromBytes(fixedHex(tag.value, 32, 'description hash'))];
    case 'payeePubkey': {
      const key = fixedHex(tag.value, 33, 'payee pubkey');
      if (key[0] !== 2 && key[0] !== 3) throw new RangeError('payee pubkey must be compressed');
      return [TAG_CODE.payeePubkey, wordsFromBytes(key)];
    }
    case 'description': {
      const bytes = utf8.encode(tag.value);
      if (bytes.length > FIELD_BYTES_MAX) throw new RangeError(`description of ${bytes.length} UTF-8 bytes exceeds ${FIELD_BYTES_MAX}`);
      return [TAG_CODE.description, wordsFromBytes(bytes)];
    }
    case 'metadata': {
      const bytes = anyHex(tag.value, 'metadata');
      if (bytes.length > FIELD_BYTES_MAX) throw new RangeError(`metadata of ${bytes.length} bytes exceeds ${FIELD_BYTES_MAX}`);
      return [TAG_CODE.metadata, wordsFromBytes(bytes)];
    }
    case 'expiry':
      return [TAG_CODE.expiry, uintWords(tag.value)];
    case 'minFinalCltvExpiry':
      return [TAG_CODE.minFinalCltvExpiry, uintWords(tag.value)];
    case 'features':
      return [TAG_CODE.features, featureWords(tag.value)];
    case 'fallbackAddress': {
      const { version } = tag.value;
      if (!isKnownFallbackVersion(version)) throw new RangeError(`fallback version ${version} is not 0-18; pass it as a raw tag`);
      const program = anyHex(tag.value.program, 'fallback program');
      const problem = fallbackProgramProblem(version, program);
      if (problem !== null) throw new RangeError(`fallback: ${problem}`);
      const programWords = wordsFromBytes(program);
      const data = new Uint8Array(1 + programWords.length);
      data[0] = version;
      data.set(programWords, 1);
      return [TAG_CODE.fallbackAddress, data];
    }
    case 'routeHint':
      return [TAG_CODE.routeHint, wordsFromBytes(routeBytes(tag.value))];
    case 'raw': {
      if (!Number.isInteger(tag.code) || tag.code < 0 || tag.code > 31) throw new RangeError(`raw tag code ${tag.code} is not 0-31`);
      const words = wordsFromText(tag.words);
      if (words === null) throw new RangeError('raw tag words are not lower-case bech32 characters');
      return [tag.code, words];
    }
  }
}

function routeBytes(hops: readonly Bolt11RouteHop[]): Uint8Array {
  if (hops.length === 0) throw new RangeError('a route hint needs at least one hop');
  const bytes = new Uint8Array(hops.length * 51);
  const view = new DataView(bytes.buffer);
  hops.forEach((hop, index) => {
    const offset = index * 51;
    bytes.set(fixedHex(hop.pubkey, 33, 'route hop pubkey'), offset);
    bytes.set(shortChannelIdBytes(hop.shortChannelId), offset + 33);
    view.setUint32(offset + 41, uint(hop.feeBaseMsat, 0xffffffff, 'feeBaseMsat'));
    view.setUint32(offset + 45, uint(hop.feeProportionalMillionths, 0xffffffff, 'feeProportionalMillionths'));
    view.setUint16(offset + 49, uint(hop.cltvExpiryDelta, 0xffff, 'cltvExpiryDelta'));
  });
  return bytes;
}

function uint(value: number | bigint, max: number, name: string): number {
  const number = typeof value === 'bigint' ? Number(value) : value;
  if (!Number.isInteger(number) || number < 0 || number > max || BigInt(number) !== BigInt(value)) {
    throw new RangeError(`${name} must be an integer in [0, ${max}], got ${value}`);
  }
  return number;
}

const HEX = /^(?:[0-9a-f]{2})*$/;

function anyHex(hex: string, name: string): Uint8Array {
  if (!HEX.test(hex)) throw new RangeError(`${name} must be lower-case hex of whole bytes`);
  return hexToBytes(hex);
}

function fixedHex(hex: string, bytes: number, name: string): Uint8Array {
  if (hex.length !== bytes * 2) throw new RangeError(`${name} must be ${bytes} bytes of hex`);
  return anyHex(hex, name);
}
