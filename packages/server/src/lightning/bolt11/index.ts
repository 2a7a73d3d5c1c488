/**
 * BOLT 11 invoices: decode (with signature check and payee recovery) and encode (signed
 * with the node key). Spec: ../shared/reference/bolts/11-payment-encoding.md.
 */
export { decodeBolt11, signingHash } from './decode.js';
export { encodeBolt11, bolt11TagsFromFields, fieldsFromInvoice } from './encode.js';
export {
  networkFromPrefix,
  prefixForNetwork,
  parseHrpAmount,
  hrpAmountFromMsat,
  parseHrp,
  BOLT11_AMOUNT_MAX_MSAT,
  type Bolt11Prefix,
  type HrpAmountResult,
} from './amount.js';
export {
  BOLT11_DEFAULT_FEATURES,
  BOLT11_LENGTH_MAX,
  FIELD_BYTES_MAX,
  FEATURE_BASIC_MPP,
  FEATURE_PAYMENT_METADATA,
  FEATURE_PAYMENT_SECRET,
  FEATURE_ROUTE_BLINDING,
  FEATURE_VAR_ONION_OPTIN,
  KNOWN_INVOICE_FEATURES,
} from './fields.js';
export type {
  Bolt11DecodeResult,
  Bolt11EncodeFields,
  Bolt11EncodeOptions,
  Bolt11Error,
  Bolt11Fallback,
  Bolt11FallbackInput,
  Bolt11Invoice,
  Bolt11NamedFields,
  Bolt11OrderedFields,
  Bolt11RawTag,
  Bolt11RouteHop,
  Bolt11Tag,
} from './types.js';

