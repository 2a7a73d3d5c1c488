import type { Network } from '../backend.js';
import type { Msat } from '../../money/msat.js';
import type { Bolt11Prefix } from './amount.js';

/** Why an invoice was refused. Closed: callers map each one to a user-facing code. */
export type Bolt11Error =
  /** Longer than BOLT11_LENGTH_MAX characters. */
  | 'TooLong'
  /** Upper and lower case mixed (BIP 173). */
  | 'MixedCase'
  /** Not bech32: no separator, characters outside the alphabet, too short for a checksum. */
  | 'BadBech32'
  | 'BadChecksum'
  /** Not lnbc, lntb, lntbs or lnbcrt. */
  | 'UnknownPrefix'
  /** Amount not digits + multiplier, zero, leading zero, sub-msat, or above 21 million BTC. */
  | 'BadAmount'
  /** Data too short for a timestamp and a signature. */
  | 'TooShort'
  /** A tagged field runs past the data, or a known field has a value we must refuse. */
  | 'BadField'
  | 'MissingPaymentHash'
  | 'MissingPaymentSecret'
  /** Neither `d` nor `h`. */
  | 'MissingDescription'
  /** Both `d` and `h`. */
  | 'DescriptionAndHash'
  /** An even (required) feature bit we do not know. */
  | 'UnknownRequiredFeature'
  /** A feature set without a feature it depends on (BOLT 9). */
  | 'MissingFeatureDependency'
  /** Not recoverable, not valid for the `n` field, or high-S with an `n` field. */
  | 'BadSignature';

export type Bolt11DecodeResult =
  | { ok: true; invoice: Bolt11Invoice }
  | { ok: false; error: Bolt11Error; detail: string };

/** One hop of a private route (`r` field entry), BOLT 7 channel_update semantics. */
export interface Bolt11RouteHop {
  /** Node at the start of the channel, 33 bytes hex. */
  pubkey: string;
  /** BOLT 7 notation: "block x transaction x output", e.g. "589390x3312x1". */
  shortChannelId: string;
  feeBaseMsat: Msat;
  feeProportionalMillionths: number;
  cltvExpiryDelta: number;
}

/** An on-chain fallback (`f` field) with a version this codec knows (0-16 witness, 17 P2PKH, 18 P2SH). */
export interface Bolt11Fallback {
  version: number;
  /** Witness program, or the 20-byte hash for versions 17 and 18; hex. */
  program: string;
  /** The address on the invoice's network (bc1..., 1..., 3..., tb1..., m/n..., 2..., bcrt1...). */
  address: string;
}

/** What an encoder needs of a fallback; the address is derived. */
export type Bolt11FallbackInput = Pick<Bolt11Fallback, 'version' | 'program'>;

/**
 * A tagged field this codec does not interpret, kept as it was so that the invoice re-encodes
 * exactly: an unknown type, an `f` field with an unknown version, or a `p`/`h`/`s`/`n` field of
 * the wrong length (which the BOLT 11 examples list as "must be ignored").
 */
export interface Bolt11RawTag {
  type: 'raw';
  /** The 5-bit field type (0-31). */
  code: number;
  /** The field data as bech32 characters (one per 5-bit word). */
  words: string;
}

/** One tagged field, in invoice order. Hex is lowercase. */
export type Bolt11Tag =
  | { type: 'paymentHash'; value: string }
  | { type: 'paymentSecret'; value: string }
  | { type: 'description'; value: string }
  | { type: 'descriptionHash'; value: string }
  | { type: 'payeePubkey'; value: string }
  | { type: 'expiry'; value: number }
  | { type: 'minFinalCltvExpiry'; value: number }
  | { type: 'fallbackAddress'; value: Bolt11FallbackInput }
  | { type: 'routeHint'; value: readonly Bolt11RouteHop[] }
  /** Feature bit numbers that are set, any order (written minimally). */
  | { type: 'features'; value: readonly number[] }
  | { type: 'metadata'; value: string }
  | Bolt11RawTag;

export interface Bolt11Invoice {
  /** The invoice as given, lower-cased. */
  paymentRequest: string;
  network: Network;
  prefix: Bolt11Prefix;
  /** null: the payer chooses the amount. */
  amountMsat: Msat | null;
  /** Unix seconds. */
  timestamp: number;
  /** From `x`, default 3600. */
  expiryS: number;
  /** timestamp + expiryS, unix seconds. */
  expiresAt: number;
  paymentHash: string;
  paymentSecret: string;
  description: string | null;
  descriptionHash: string | null;
  /** 33-byte compressed key: the `n` field when present (signature verified against it), else recovered. */
  payeePubkey: string;
  /** Whether payeePubkey came from an `n` field. */
  payeePubkeyInInvoice: boolean;
  /** From `c`, default 18. */
  minFinalCltvExpiry: number;
  /** Feature bits set, ascending. */
  features: number[];
  /** One route per `r` field, in preference order. */
  routeHints: Bolt11RouteHop[][];
  /** Fallbacks of known versions, in preference order. */
  fallbackAddresses: Bolt11Fallback[];
  metadata: string | null;
  /** 64 bytes r || s, hex. */
  signature: string;
  /** 0-3. */
  recoveryFlag: number;
  /** Fields kept raw (see Bolt11RawTag), in order. */
  unknownTags: Bolt11RawTag[];
  /** Every tagged field in invoice order; pass them back to encodeBolt11 to rebuild the invoice. */
  tags: Bolt11Tag[];
}

/** The common fields of both ways to describe an invoice to encode. */
interface Bolt11EncodeHeader {
  network: Network;
  /** null for "any amount". Must be positive. */
  amountMsat: Msat | null;
  /** Unix seconds, below 2^35. */
  timestamp: number;
}

/**
 * Named fields, written in a fixed order: s, p, d or h, m, x, c, n, f..., r..., 9, raw.
 * Exactly one of description and descriptionHash.
 */
export interface Bolt11NamedFields extends Bolt11EncodeHeader {
  paymentHash: string;
  paymentSecret: string;
  description?: string;
  descriptionHash?: string;
  metadata?: string;
  /** Omitted: no `x` field, which means 3600 s. */
  expiryS?: number;
  /** Omitted: no `c` field, which means 18. */
  minFinalCltvExpiry?: number;
  /** Write an `n` field with the signing key's public key (readers then verify instead of recover). */
  includePayeePubkey?: boolean;
  fallbackAddresses?: readonly Bolt11FallbackInput[];
  routeHints?: readonly (readonly Bolt11RouteHop[])[];
  /** Default BOLT11_DEFAULT_FEATURES: var_onion_optin and payment_secret, both required. [] writes no `9` field. */
  features?: readonly number[];
  unknownTags?: readonly Bolt11RawTag[];
}

/** Tagged fields in exactly the order given (reproduces any invoice from its decoded `tags`). */
export interface Bolt11OrderedFields extends Bolt11EncodeHeader {
  tags: readonly Bolt11Tag[];
}

export type Bolt11EncodeFields = Bolt11NamedFields | Bolt11OrderedFields;

export interface Bolt11EncodeOptions {
  /**
   * Default true. false keeps the signature's s as RFC 6979 produced it, high or low; only
   * for producing test invoices (readers refuse high-S when an `n` field is present).
   */
  lowS?: boolean;
}
