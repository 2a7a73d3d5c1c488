/**
 * Bech32 (BIP 173) for Lightning invoices, without BIP 173's 90-character limit.
 *
 * Why our own and not `bech32` from @scure/base: a decoder must tell a bad checksum from a
 * malformed string from mixed case (BOLT 11 examples expect distinct failures), and the
 * library only throws messages. The codec is small; the tests check it against @scure/base.
 * Data is kept as 5-bit "words" in a Uint8Array, the unit every BOLT 11 field is measured in.
 */

export const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

/** charCode (lower case) -> 5-bit value, or -1. */
const CHARSET_VALUES: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let index = 0; index < BECH32_CHARSET.length; index++) table[BECH32_CHARSET.charCodeAt(index)] = index;
  return table;
})();

const GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
const CHECKSUM_WORDS = 6;

function polymodStep(checksum: number): number {
  const top = checksum >>> 25;
  let next = (checksum & 0x1ffffff) << 5;
  for (let bit = 0; bit < 5; bit++) {
    if ((top >>> bit) & 1) next ^= GENERATORS[bit] as number;
  }
  return next;
}

/** The polymod over the expanded hrp and the given words (BIP 173 `bech32_polymod`). */
function polymodOf(hrp: string, words: Uint8Array, wordCount: number): number {
  let checksum = 1;
  for (let index = 0; index < hrp.length; index++) checksum = polymodStep(checksum) ^ (hrp.charCodeAt(index) >>> 5);
  checksum = polymodStep(checksum);
  for (let index = 0; index < hrp.length; index++) checksum = polymodStep(checksum) ^ (hrp.charCodeAt(index) & 31);
  for (let index = 0; index < wordCount; index++) checksum = polymodStep(checksum) ^ (words[index] as number);
  return checksum;
}

/** Encodes lower-case `hrp` + "1" + words + checksum. The hrp must be lower-case ASCII. */
export function encodeBech32(hrp: string, words: Uint8Array): string {
  const all = new Uint8Array(words.length + CHECKSUM_WORDS);
  all.set(words);
  const checksum = polymodOf(hrp, all, all.length) ^ 1;
  for (let index = 0; index < CHECKSUM_WORDS; index++) {
    all[words.length + index] = (checksum >>> (5 * (CHECKSUM_WORDS - 1 - index))) & 31;
  }
  let text = hrp + '1';
  for (let index = 0; index < all.length; index++) text += BECH32_CHARSET[all[index] as number];
  return text;
}

export type Bech32DecodeError = 'MixedCase' | 'BadBech32' | 'BadChecksum';

export type Bech32DecodeResult =
  | { ok: true; hrp: string; words: Uint8Array }
  | { ok: false; error: Bech32DecodeError; detail: string };

/**
 * Decodes a bech32 string of any length. Upper or lower case is accepted, mixed case is not
 * (BIP 173). Returns the lower-case hrp and the data words without the checksum.
 */
export function decodeBech32(text: string): Bech32DecodeResult {
  const lower = text.toLowerCase();
  if (lower !== text && text.toUpperCase() !== text) {
    return { ok: false, error: 'MixedCase', detail: 'mixes upper and lower case' };
  }
  const separator = lower.lastIndexOf('1');
  if (separator < 1) return { ok: false, error: 'BadBech32', detail: 'no human-readable part before a "1" separator' };
  const wordCount = lower.length - separator - 1;
  if (wordCount < CHECKSUM_WORDS) return { ok: false, error: 'BadBech32', detail: 'data part is shorter than the checksum' };
  const hrp = lower.slice(0, separator);
  for (let index = 0; index < hrp.length; index++) {
    const code = hrp.charCodeAt(index);
    if (code < 33 || code > 126) return { ok: false, error: 'BadBech32', detail: `character ${index} of the prefix is not printable ASCII` };
  }
  const all = new Uint8Array(wordCount);
  for (let index = 0; index < wordCount; index++) {
    const code = lower.charCodeAt(separator + 1 + index);
    const value = code < 128 ? (CHARSET_VALUES[code] as number) : -1;
    if (value < 0) return { ok: false, error: 'BadBech32', detail: `character ${separator + 1 + index} is not in the bech32 alphabet` };
    all[index] = value;
  }
  if (polymodOf(hrp, all, wordCount) !== 1) return { ok: false, error: 'BadChecksum', detail: 'bech32 checksum does not match' };
  return { ok: true, hrp, words: all.subarray(0, wordCount - CHECKSUM_WORDS) };
}

/** Words as bech32 characters (how raw fields are kept: compact, JSON-safe, comparable). */
export function wordsToText(words: Uint8Array): string {
  let text = '';
  for (let index = 0; index < words.length; index++) text += BECH32_CHARSET[words[index] as number];
  return text;
}

/** Bech32 characters (lower case) back to words; null if a character is outside the alphabet. */
export function wordsFromText(text: string): Uint8Array | null {
  const words = new Uint8Array(text.length);
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    const value = code < 128 ? (CHARSET_VALUES[code] as number) : -1;
    if (value < 0) return null;
    words[index] = value;
  }
  return words;
}

/**
 * Packs 5-bit words into bytes, padding the last byte with zero bits (what BOLT 11 signs,
 * and how byte fields are read). With `strict`, returns null unless the words are exactly
 * the canonical encoding of the bytes: fewer than 5 leftover bits and all of them zero,
 * so that re-encoding the bytes gives back the same words.
 */
export function bytesFromWords(words: Uint8Array, strict: boolean): Uint8Array | null {
  const bitCount = words.length * 5;
  const byteCount = strict ? Math.floor(bitCount / 8) : Math.ceil(bitCount / 8);
  const bytes = new Uint8Array(byteCount);
  let accumulator = 0;
  let bits = 0;
  let out = 0;
  for (let index = 0; index < words.length; index++) {
    accumulator = ((accumulator << 5) | (words[index] as number)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes[out++] = (accumulator >>> bits) & 0xff;
    }
  }
  if (bits > 0) {
    const rest = (accumulator << (8 - bits)) & 0xff;
    if (strict) {
      if (bits >= 5 || rest !== 0) return null;
    } else {
      bytes[out++] = rest;
    }
  }
  return bytes;
}

/** Unpacks bytes into 5-bit words, padding the last word with zero bits. */
export function wordsFromBytes(bytes: Uint8Array): Uint8Array {
  const words = new Uint8Array(Math.ceil((bytes.length * 8) / 5));
  let accumulator = 0;
  let bits = 0;
  let out = 0;
  for (let index = 0; index < bytes.length; index++) {
    accumulator = ((accumulator << 8) | (bytes[index] as number)) & 0x1fff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words[out++] = (accumulator >>> bits) & 31;
    }
  }
  if (bits > 0) words[out++] = (accumulator << (5 - bits)) & 31;
  return words;
}
