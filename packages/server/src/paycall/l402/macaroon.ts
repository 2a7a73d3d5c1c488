/**
 * L402 macaroons: the identifier layout, minting, the V2 binary encoding and the
 * signature check.
 *
 * Identifier (66 bytes, as lsat-js and Aperture): u16 big-endian version 0 |
 * 32-byte payment hash | 32-byte token id.
 *
 * The signature chain is the `macaroon` package's (and libmacaroons' and Go's
 * macaroon.v2): key = HMAC-SHA256("macaroons-key-generator", root key),
 * sig_0 = HMAC(key, identifier), sig_i = HMAC(sig_(i-1), caveat_i). Minting goes through
 * the package. The codec and the check do not:
 * - Encoding: the package's exportBinary (3.0.4) doubles its buffer on every append (its
 *   `_capacity` is never set), so three caveats allocate 400 MB and four throw. We write
 *   the V2 binary format ourselves (a few lines; tests check it byte for byte against the
 *   package's export and round-trip it through the package's import).
 * - Decoding and verification run on every paid call. The package converts every field
 *   to sjcl bit arrays and back and hashes with sjcl; that was 4x slower than the rest of
 *   verification together. We read V2 with a strict decoder (tests check it against the
 *   package's import on random and mutated macaroons) and recompute the chain with
 *   node:crypto (tests check the package's own `verify` agrees).
 *
 * Each macaroon gets its own root key, derived from Sluice's one stored secret:
 * root key = HMAC-SHA256(secret, "sluice-l402-root-key" | identifier). Nothing is stored
 * per macaroon and nothing is read from the database to check a signature.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import macaroonLib from 'macaroon';

export const IDENTIFIER_VERSION = 0;
export const IDENTIFIER_LENGTH = 66;
const KEY_GENERATOR = Buffer.from('macaroons-key-generator', 'utf8');
const ROOT_KEY_LABEL = Buffer.from('sluice-l402-root-key', 'utf8');

const FIELD_EOS = 0;
const FIELD_LOCATION = 1;
const FIELD_IDENTIFIER = 2;
const FIELD_VID = 4;
const FIELD_SIGNATURE = 6;

export interface L402Identifier {
  version: number;
  paymentHash: Buffer;
  tokenId: Buffer;
}

/** A parsed macaroon: what the verifier needs, as plain bytes and strings. */
export interface ParsedMacaroon {
  identifier: Buffer;
  /** First-party caveats as UTF-8 text; a third-party caveat makes parsing fail. */
  caveats: string[];
  caveatBytes: Buffer[];
  signature: Buffer;
}

export function encodeIdentifier(paymentHash: Buffer, tokenId: Buffer): Buffer {
  if (paymentHash.length !== 32 || tokenId.length !== 32) throw new RangeError('payment hash and token id are 32 bytes each');
  const out = Buffer.alloc(IDENTIFIER_LENGTH);
  out.writeUInt16BE(IDENTIFIER_VERSION, 0);
  paymentHash.copy(out, 2);
  tokenId.copy(out, 34);
  return out;
}

/** Null when the identifier is not a version 0 L402 identifier. */
export function decodeIdentifier(identifier: Uint8Array): L402Identifier | null {
  if (identifier.length !== IDENTIFIER_LENGTH) return null;
  const bytes = Buffer.from(identifier.buffer, identifier.byteOffset, identifier.byteLength);
  const version = bytes.readUInt16BE(0);
  if (version !== IDENTIFIER_VERSION) return null;
  return { version, paymentHash: bytes.subarray(2, 34), tokenId: bytes.subarray(34, 66) };
}

/** The root key of one macaroon, derived from the stored secret and its identifier. */
export function deriveRootKey(secret: Buffer, identifier: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(ROOT_KEY_LABEL).update(identifier).digest();
}

function appendField(parts: Buffer[], type: number, data: Uint8Array): void {
  parts.push(Buffer.from([type]), uvarint(data.length), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
}

function uvarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** The V2 binary format (as the package's import reads it), first-party caveats only. */
export function encodeMacaroonV2(macaroon: { identifier: Uint8Array; location?: string; caveats: readonly Uint8Array[]; signature: Uint8Array }): Buffer {
  const parts: Buffer[] = [Buffer.from([2])];
  if (macaroon.location) appendField(parts, FIELD_LOCATION, Buffer.from(macaroon.location, 'utf8'));
  appendField(parts, FIELD_IDENTIFIER, macaroon.identifier);
  parts.push(Buffer.from([FIELD_EOS]));
  for (const caveat of macaroon.caveats) {
    appendField(parts, FIELD_IDENTIFIER, caveat);
    parts.push(Buffer.from([FIELD_EOS]));
  }
  parts.push(Buffer.from([FIELD_EOS]));
  appendField(parts, FIELD_SIGNATURE, macaroon.signature);
  return Buffer.concat(parts);
}

export interface MintInput {
  secret: Buffer;
  paymentHash: Buffer;
  tokenId: Buffer;
  caveats: readonly string[];
}

/** Mints a macaroon with the package and returns its V2 binary encoding. */
export function mintMacaroon(input: MintInput): Buffer {
  const identifier = encodeIdentifier(input.paymentHash, input.tokenId);
  const macaroon = macaroonLib.newMacaroon({ identifier, rootKey: deriveRootKey(input.secret, identifier), version: 2 });
  for (const caveat of input.caveats) macaroon.addFirstPartyCaveat(caveat);
  return encodeMacaroonV2({
    identifier: macaroon.identifier,
    caveats: macaroon.caveats.map((caveat) => caveat.identifier),
    signature: macaroon.signature,
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_VARINT_BYTES = 5;

/**
 * Reads a V2 binary macaroon, as the package's importBinaryV2 does, into plain buffers;
 * null when it is not a well-formed V2 macaroon with first-party caveats only.
 */
export function parseMacaroon(input: Uint8Array): ParsedMacaroon | null {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let at = 0;
  const peek = (): number => (at < bytes.length ? (bytes[at] as number) : -1);
  // Reads the field of this type at `at` (tag, uvarint length, data); null when absent or short.
  const field = (type: number): Buffer | null => {
    if (peek() !== type) return null;
    let length = 0;
    let scale = 1;
    let cursor = at + 1;
    for (let count = 0; ; count += 1) {
      if (count === MAX_VARINT_BYTES || cursor >= bytes.length) return null;
      const byte = bytes[cursor++] as number;
      length += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 128;
    }
    if (length > bytes.length - cursor) return null;
    at = cursor + length;
    return bytes.subarray(cursor, at);
  };
  const endOfSection = (): boolean => {
    if (peek() !== FIELD_EOS) return false;
    at += 1;
    return true;
  };

  if (peek() !== 2) return null;
  at = 1;
  if (peek() === FIELD_LOCATION) {
    const location = field(FIELD_LOCATION);
    if (location === null || !validUtf8(location)) return null;
  }
  const identifier = field(FIELD_IDENTIFIER);
  if (identifier === null || !endOfSection()) return null;
  const caveats: string[] = [];
  const caveatBytes: Buffer[] = [];
  while (!endOfSection()) {
    if (peek() === FIELD_LOCATION) {
      const location = field(FIELD_LOCATION);
      if (location === null || !validUtf8(location)) return null;
    }
    const caveat = field(FIELD_IDENTIFIER);
    if (caveat === null) return null;
    // A verification id makes it third-party; L402 uses first-party caveats only.
    if (peek() === FIELD_VID) return null;
    if (!endOfSection()) return null;
    let text: string;
    try {
      text = utf8.decode(caveat);
    } catch {
      return null;
    }
    caveats.push(text);
    caveatBytes.push(caveat);
  }
  const signature = field(FIELD_SIGNATURE);
  if (signature === null || signature.length !== 32 || at !== bytes.length) return null;
  return { identifier, caveats, caveatBytes, signature };
}

function validUtf8(bytes: Buffer): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Recomputes the HMAC chain from the derived root key; constant-time comparison. */
export function signatureIsValid(secret: Buffer, macaroon: ParsedMacaroon): boolean {
  const rootKey = deriveRootKey(secret, macaroon.identifier);
  const key = createHmac('sha256', KEY_GENERATOR).update(rootKey).digest();
  let signature = createHmac('sha256', key).update(macaroon.identifier).digest();
  for (const caveat of macaroon.caveatBytes) signature = createHmac('sha256', signature).update(caveat).digest();
  return timingSafeEqual(signature, macaroon.signature);
}
