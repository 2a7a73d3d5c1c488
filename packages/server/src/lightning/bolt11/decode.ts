/**
 * BOLT 11 reader. Threat model: the text comes from anyone (a payer pasting an invoice, a
 * peer, a node we do not trust). Any string returns a value, never throws; a success means
 * the checksum, amount, required fields and signature all hold, and payeePubkey is the key
 * that signed these exact fields.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { Msat } from '../../money/msat.js';
import { parseHrp } from './amount.js';
import { bytesFromWords, decodeBech32, wordsToText } from './bech32.js';
import {
  BOLT11_LENGTH_MAX,
  FEATURE_BASIC_MPP,
  FEATURE_PAYMENT_SECRET,
  KNOWN_INVOICE_FEATURES,
  SIGNATURE_WORDS,
  TAG_CODE,
  TIMESTAMP_WORDS,
  fallbackAddress,
  fallbackProgramProblem,
  featureBits,
  hasFeature,
  isKnownFallbackVersion,
  shortChannelIdFromBytes,
  uintFromWords,
} from './fields.js';
import type { Network } from '../backend.js';
import type {
  Bolt11DecodeResult,
  Bolt11Error,
  Bolt11Fallback,
  Bolt11Invoice,
  Bolt11RawTag,
  Bolt11RouteHop,
  Bolt11Tag,
} from './types.js';

const DEFAULT_EXPIRY_S = 3600;
const DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18;
const ROUTE_HOP_BYTES = 51;

/** Data lengths of the fixed-size fields; other lengths are skipped (kept raw). */
const HASH_WORDS = 52;
const PUBKEY_WORDS = 53;

class FieldError {
  constructor(
    readonly error: Bolt11Error,
    readonly detail: string,
  ) {}
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and verifies an invoice. Upper or lower case; never throws. */
export function decodeBolt11(text: string): Bolt11DecodeResult {
  try {
    return decodeUnchecked(text);
  } catch (caught) {
    if (caught instanceof FieldError) return { ok: false, error: caught.error, detail: caught.detail };
    throw caught;
  }
}

function fail(error: Bolt11Error, detail: string): never {
  throw new FieldError(error, detail);
}

function decodeUnchecked(text: string): Bolt11DecodeResult {
  if (typeof text !== 'string') fail('BadBech32', 'not a string');
  if (text.length > BOLT11_LENGTH_MAX) fail('TooLong', `${text.length} characters, at most ${BOLT11_LENGTH_MAX}`);
  const bech = decodeBech32(text);
  if (!bech.ok) fail(bech.error, bech.detail);
  const hrp = parseHrp(bech.hrp);
  if (!hrp.ok) fail(hrp.error, hrp.detail);
  const words = bech.words;
  if (words.length < TIMESTAMP_WORDS + SIGNATURE_WORDS) {
    fail('TooShort', `${words.length} data words, need at least ${TIMESTAMP_WORDS + SIGNATURE_WORDS} for timestamp and signature`);
  }
  const signedEnd = words.length - SIGNATURE_WORDS;
  let timestamp = 0;
  for (let index = 0; index < TIMESTAMP_WORDS; index++) timestamp = timestamp * 32 + (words[index] as number);

  const tags = readTags(words.subarray(TIMESTAMP_WORDS, signedEnd), hrp.network);
  const invoice = interpretTags(tags);

  const signatureBytes = bytesFromWords(words.subarray(signedEnd), true);
  if (signatureBytes === null || signatureBytes.length !== 65) fail('BadSignature', 'signature is not 65 bytes');
  const recoveryFlag = signatureBytes[64] as number;
  if (recoveryFlag > 3) fail('BadSignature', `recovery flag ${recoveryFlag} is not 0-3`);
  const compact = signatureBytes.subarray(0, 64);
  const messageHash = signingHash(bech.hrp, words.subarray(0, signedEnd));
  const payeePubkey = checkSignature(compact, recoveryFlag, messageHash, invoice.payeePubkey);

  const expiryS = invoice.expiryS ?? DEFAULT_EXPIRY_S;
  const result: Bolt11Invoice = {
    paymentRequest: text.toLowerCase(),
    network: hrp.network,
    prefix: hrp.prefix,
    amountMsat: hrp.amountMsat,
    timestamp,
    expiryS,
    expiresAt: timestamp + expiryS,
    paymentHash: invoice.paymentHash,
    paymentSecret: invoice.paymentSecret,
    description: invoice.description,
    descriptionHash: invoice.descriptionHash,
    payeePubkey,
    payeePubkeyInInvoice: invoice.payeePubkey !== null,
    minFinalCltvExpiry: invoice.minFinalCltvExpiry ?? DEFAULT_MIN_FINAL_CLTV_EXPIRY,
    features: invoice.features,
    routeHints: invoice.routeHints,
    fallbackAddresses: invoice.fallbackAddresses,
    metadata: invoice.metadata,
    signature: bytesToHex(compact),
    recoveryFlag,
    unknownTags: invoice.unknownTags,
    tags,
  };
  return { ok: true, invoice: result };
}

/** SHA-256 of the hrp's bytes and the data words (before the signature) packed into bytes. */
export function signingHash(hrp: string, signedWords: Uint8Array): Uint8Array {
  const data = bytesFromWords(signedWords, false) as Uint8Array;
  const message = new Uint8Array(hrp.length + data.length);
  for (let index = 0; index < hrp.length; index++) message[index] = hrp.charCodeAt(index);
  message.set(data, hrp.length);
  return sha256(message);
}

/**
 * With an `n` field, the signature must verify against it and be low-S (BOLT 11); without,
 * the key is recovered and high-S is accepted. Returns the payee's key as hex.
 */
function checkSignature(compact: Uint8Array, recoveryFlag: number, messageHash: Uint8Array, payee: string | null): string {
  if (payee !== null) {
    if (isHighS(compact)) fail('BadSignature', 'high-S signature with an n field (BOLT 11 requires low-S there)');
    let valid = false;
    try {
      valid = secp256k1.verify(compact, messageHash, hexToBytes(payee), { prehash: false, lowS: true, format: 'compact' });
    } catch {
      valid = false;
    }
    if (!valid) fail('BadSignature', 'signature is not a valid low-S signature by the n field key');
    return payee;
  }
  const recovered = new Uint8Array(65);
  recovered[0] = recoveryFlag; // noble's "recovered" format puts the flag first; BOLT 11 puts it last.
  recovered.set(compact, 1);
  try {
    return bytesToHex(secp256k1.recoverPublicKey(recovered, messageHash, { prehash: false }));
  } catch (caught) {
    return fail('BadSignature', `public key is not recoverable: ${(caught as Error).message}`);
  }
}

const HALF_ORDER = secp256k1.Point.CURVE().n >> 1n;

function isHighS(compact: Uint8Array): boolean {
  return BigInt('0x' + bytesToHex(compact.subarray(32, 64))) > HALF_ORDER;
}

/** Splits the tagged fields and interprets each; malformed known fields fail. */
function readTags(data: Uint8Array, network: Network): Bolt11Tag[] {
  const tags: Bolt11Tag[] = [];
  let offset = 0;
  while (offset < data.length) {
    if (offset + 3 > data.length) fail('BadField', `tagged field header at word ${offset} is cut short`);
    const code = data[offset] as number;
    const length = ((data[offset + 1] as number) << 5) | (data[offset + 2] as number);
    const start = offset + 3;
    if (start + length > data.length) fail('BadField', `tagged field type ${code} says ${length} words, only ${data.length - start} left`);
    tags.push(readTag(code, data.subarray(start, start + length), network));
    offset = start + length;
  }
  return tags;
}

function raw(code: number, words: Uint8Array): Bolt11RawTag {
  return { type: 'raw', code, words: wordsToText(words) };
}

function bytesOf(words: Uint8Array, what: string): Uint8Array {
  const bytes = bytesFromWords(words, true);
  if (bytes === null) fail('BadField', `${what} has non-zero or excess padding bits`);
  return bytes;
}

function readTag(code: number, words: Uint8Array, network: Network): Bolt11Tag {
  switch (code) {
    case TAG_CODE.paymentHash:
    case TAG_CODE.paymentSecret:
    case TAG_CODE.descriptionHash: {
      // Wrong lengths are skipped: the BOLT 11 example "including fields which must be ignored".
      if (words.length !== HASH_WORDS) return raw(code, words);
      const value = bytesToHex(bytesOf(words, 'a 32-byte field'));
      if (code === TAG_CODE.paymentHash) return { type: 'paymentHash', value };
      if (code === TAG_CODE.paymentSecret) return { type: 'paymentSecret', value };
      return { type: 'descriptionHash', value };
    }
    case TAG_CODE.payeePubkey: {
      if (words.length !== PUBKEY_WORDS) return raw(code, words);
      const key = bytesOf(words, 'n field');
      if (key[0] !== 2 && key[0] !== 3) fail('BadField', 'n field is not a compressed public key');
      return { type: 'payeePubkey', value: bytesToHex(key) };
    }
    case TAG_CODE.description: {
      const bytes = bytesOf(words, 'd field');
      try {
        return { type: 'description', value: utf8.decode(bytes) };
      } catch {
        return fail('BadField', 'd field is not valid UTF-8');
      }
    }
    case TAG_CODE.metadata:
      return { type: 'metadata', value: bytesToHex(bytesOf(words, 'm field')) };
    case TAG_CODE.expiry:
    case TAG_CODE.minFinalCltvExpiry: {
      const value = uintFromWords(words);
      const letter = code === TAG_CODE.expiry ? 'x' : 'c';
      if (value === null) fail('BadField', `${letter} field is not minimally encoded or is too large`);
      return code === TAG_CODE.expiry ? { type: 'expiry', value } : { type: 'minFinalCltvExpiry', value };
    }
    case TAG_CODE.features: {
      if (words.length > 0 && words[0] === 0) fail('BadField', '9 field is not minimally encoded');
      return { type: 'features', value: featureBits(words) };
    }
    case TAG_CODE.fallbackAddress: {
      if (words.length === 0) fail('BadField', 'f field is empty');
      const version = words[0] as number;
      if (!isKnownFallbackVersion(version)) return raw(code, words);
      const program = bytesOf(words.subarray(1), 'f field');
      const problem = fallbackProgramProblem(version, program);
      if (problem !== null) fail('BadField', `f field: ${problem}`);
      return { type: 'fallbackAddress', value: { version, program: bytesToHex(program), address: fallbackAddress(network, version, program) } as Bolt11Fallback };
    }
    case TAG_CODE.routeHint:
      return { type: 'routeHint', value: readRoute(words) };
    default:
      return raw(code, words);
  }
}

function readRoute(words: Uint8Array): Bolt11RouteHop[] {
  const bytes = bytesOf(words, 'r field');
  if (bytes.length === 0 || bytes.length % ROUTE_HOP_BYTES !== 0) fail('BadField', `r field of ${bytes.length} bytes is not whole hops of ${ROUTE_HOP_BYTES}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hops: Bolt11RouteHop[] = [];
  for (let offset = 0; offset < bytes.length; offset += ROUTE_HOP_BYTES) {
    hops.push({
      pubkey: bytesToHex(bytes.subarray(offset, offset + 33)),
      shortChannelId: shortChannelIdFromBytes(bytes, offset + 33),
      feeBaseMsat: BigInt(view.getUint32(offset + 41)) as Msat,
      feeProportionalMillionths: view.getUint32(offset + 45),
      cltvExpiryDelta: view.getUint16(offset + 49),
    });
  }
  return hops;
}

interface Interpreted {
  paymentHash: string;
  paymentSecret: string;
  description: string | null;
  descriptionHash: string | null;
  payeePubkey: string | null;
  expiryS: number | null;
  minFinalCltvExpiry: number | null;
  features: number[];
  routeHints: Bolt11RouteHop[][];
  fallbackAddresses: Bolt11Fallback[];
  metadata: string | null;
  unknownTags: Bolt11RawTag[];
}

/** Applies the reader rules: first of each single field wins; required fields and features. */
function interpretTags(tags: readonly Bolt11Tag[]): Interpreted {
  let paymentHash: string | null = null;
  let paymentSecret: string | null = null;
  let description: string | null = null;
  let descriptionHash: string | null = null;
  let payeePubkey: string | null = null;
  let expiryS: number | null = null;
  let minFinalCltvExpiry: number | null = null;
  let features: number[] | null = null;
  let metadata: string | null = null;
  const routeHints: Bolt11RouteHop[][] = [];
  const fallbackAddresses: Bolt11Fallback[] = [];
  const unknownTags: Bolt11RawTag[] = [];
  for (const tag of tags) {
    switch (tag.type) {
      case 'paymentHash':
        paymentHash ??= tag.value;
        break;
      case 'paymentSecret':
        paymentSecret ??= tag.value;
        break;
      case 'description':
        description ??= tag.value;
        break;
      case 'descriptionHash':
        descriptionHash ??= tag.value;
        break;
      case 'payeePubkey':
        payeePubkey ??= tag.value;
        break;
      case 'expiry':
        expiryS ??= tag.value;
        break;
      case 'minFinalCltvExpiry':
        minFinalCltvExpiry ??= tag.value;
        break;
      case 'features':
        features ??= [...tag.value];
        break;
      case 'metadata':
        metadata ??= tag.value;
        break;
      case 'routeHint':
        routeHints.push([...tag.value]);
        break;
      case 'fallbackAddress':
        fallbackAddresses.push(tag.value as Bolt11Fallback);
        break;
      case 'raw':
        unknownTags.push(tag);
        break;
    }
  }
  if (paymentHash === null) fail('MissingPaymentHash', 'no p field of 52 words');
  if (paymentSecret === null) fail('MissingPaymentSecret', 'no s field of 52 words');
  if (description === null && descriptionHash === null) fail('MissingDescription', 'neither a d nor an h field');
  if (description !== null && descriptionHash !== null) fail('DescriptionAndHash', 'both a d and an h field');
  const bits = features ?? [];
  checkFeatures(bits);
  return {
    paymentHash, paymentSecret, description, descriptionHash, payeePubkey, expiryS, minFinalCltvExpiry,
    features: bits, routeHints, fallbackAddresses, metadata, unknownTags,
  };
}

/** It's OK to be odd: unknown odd bits are ignored, unknown even bits refuse the invoice. */
function checkFeatures(bits: readonly number[]): void {
  for (const bit of bits) {
    if (bit % 2 === 0 && !KNOWN_INVOICE_FEATURES.has(bit)) fail('UnknownRequiredFeature', `unknown required feature bit ${bit}`);
  }
  if (hasFeature(bits, FEATURE_BASIC_MPP) && !hasFeature(bits, FEATURE_PAYMENT_SECRET)) {
    fail('MissingFeatureDependency', 'basic_mpp is set without payment_secret');
  }
}
