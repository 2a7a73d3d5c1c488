/**
 * Runtime schemas for every LND response field the client reads.
 *
 * LND is a separate program that can be buggy, of another version, or not LND at all:
 * what it sends is checked like user input before any of it is used. Each schema lists
 * only the fields we read (LND sends many more, which are ignored), and each field is
 * one that LND's published REST description has: `test/lnd/schemas.test.ts` walks these
 * schemas against `../shared/reference/lnd/*.swagger.json` using `lndSchemaSources`.
 *
 * Conventions of LND's REST gateway: 64-bit integers are JSON strings of digits; bytes
 * fields are base64; enums are their names; absent fields are sent with default values.
 * `x-lnd-format` records which of those a string field is, for the swagger walk.
 */
import Type from 'typebox';
import Value from 'typebox/value';
import { LndError } from './errors.js';

/** A 64-bit integer as LND's REST gateway writes it (digits; we never read negative ones). */
function int64(format: 'int64' | 'uint64') {
  return Type.String({ pattern: '^[0-9]{1,20}$', 'x-lnd-format': format });
}

/** A bytes field: base64, standard or URL-safe alphabet, padding optional. */
function bytes() {
  return Type.String({ pattern: '^[A-Za-z0-9+/_-]*={0,2}$', maxLength: 4096, 'x-lnd-format': 'byte' });
}

function text(maxLength: number) {
  return Type.String({ maxLength });
}

export const LndRpcStatusSchema = Type.Object({
  code: Type.Integer(),
  message: text(2000),
});

export const LndChainSchema = Type.Object({
  network: text(64),
});

export const LndGetInfoResponseSchema = Type.Object({
  identity_pubkey: Type.String({ pattern: '^[0-9a-f]{66}$' }),
  alias: text(256),
  block_height: Type.Integer({ minimum: 0 }),
  synced_to_chain: Type.Boolean(),
  chains: Type.Array(LndChainSchema, { maxItems: 16 }),
});

export const LndAddInvoiceResponseSchema = Type.Object({
  r_hash: bytes(),
  payment_request: text(8000),
  add_index: int64('uint64'),
});

export const LndInvoiceStateSchema = Type.Union([
  Type.Literal('OPEN'),
  Type.Literal('SETTLED'),
  Type.Literal('CANCELED'),
  Type.Literal('ACCEPTED'),
]);

export const LndInvoiceSchema = Type.Object({
  r_hash: bytes(),
  r_preimage: bytes(),
  payment_request: text(8000),
  value_msat: int64('int64'),
  creation_date: int64('int64'),
  settle_date: int64('int64'),
  expiry: int64('int64'),
  add_index: int64('uint64'),
  settle_index: int64('uint64'),
  amt_paid_msat: int64('int64'),
  state: LndInvoiceStateSchema,
});

export const LndListInvoiceResponseSchema = Type.Object({
  invoices: Type.Array(LndInvoiceSchema, { maxItems: 10_000 }),
  last_index_offset: int64('uint64'),
});

export const LndPaymentStatusSchema = Type.Union([
  Type.Literal('UNKNOWN'),
  Type.Literal('IN_FLIGHT'),
  Type.Literal('SUCCEEDED'),
  Type.Literal('FAILED'),
  Type.Literal('INITIATED'),
]);

export const LndPaymentSchema = Type.Object({
  // In lnrpc.Payment these two are hex strings, not bytes fields.
  payment_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  payment_preimage: Type.String({ pattern: '^[0-9a-f]*$', maxLength: 64 }),
  value_msat: int64('int64'),
  fee_msat: int64('int64'),
  status: LndPaymentStatusSchema,
  // Read as text and mapped with a fallback: a failure reason added by a newer LND is
  // still a failure, and must not turn a known outcome into an unknown one.
  failure_reason: text(128),
});

/** One line of a streamed answer: grpc-gateway's `{"result": ...}` or `{"error": ...}`. */
function streamLine<T extends Type.TSchema>(result: T) {
  return Type.Object({
    result: Type.Optional(result),
    error: Type.Optional(LndRpcStatusSchema),
  });
}

export const LndInvoiceStreamLineSchema = streamLine(LndInvoiceSchema);
export const LndPaymentStreamLineSchema = streamLine(LndPaymentSchema);

export type LndRpcStatus = Type.Static<typeof LndRpcStatusSchema>;
export type LndGetInfoResponse = Type.Static<typeof LndGetInfoResponseSchema>;
export type LndAddInvoiceResponse = Type.Static<typeof LndAddInvoiceResponseSchema>;
export type LndInvoice = Type.Static<typeof LndInvoiceSchema>;
export type LndInvoiceState = Type.Static<typeof LndInvoiceStateSchema>;
export type LndListInvoiceResponse = Type.Static<typeof LndListInvoiceResponseSchema>;
export type LndPayment = Type.Static<typeof LndPaymentSchema>;
export type LndPaymentStatus = Type.Static<typeof LndPaymentStatusSchema>;
export type LndInvoiceStreamLine = Type.Static<typeof LndInvoiceStreamLineSchema>;
export type LndPaymentStreamLine = Type.Static<typeof LndPaymentStreamLineSchema>;

/**
 * Where each schema's fields are described in LND's REST description: a definition
 * name, or the 200 response of an operation (for streamed answers, whose wrapper is
 * written inline). Used by the swagger walk test; keep one row per exported schema.
 */
export const lndSchemaSources: ReadonlyArray<{
  name: string;
  schema: Type.TSchema;
  source: { definition: string } | { operation: { method: 'get' | 'post'; path: string } };
}> = [
  { name: 'LndRpcStatus', schema: LndRpcStatusSchema, source: { definition: 'rpcStatus' } },
  { name: 'LndGetInfoResponse', schema: LndGetInfoResponseSchema, source: { definition: 'lnrpcGetInfoResponse' } },
  { name: 'LndAddInvoiceResponse', schema: LndAddInvoiceResponseSchema, source: { definition: 'lnrpcAddInvoiceResponse' } },
  { name: 'LndInvoice', schema: LndInvoiceSchema, source: { definition: 'lnrpcInvoice' } },
  { name: 'LndListInvoiceResponse', schema: LndListInvoiceResponseSchema, source: { definition: 'lnrpcListInvoiceResponse' } },
  { name: 'LndPayment', schema: LndPaymentSchema, source: { definition: 'lnrpcPayment' } },
  { name: 'LndInvoiceStreamLine', schema: LndInvoiceStreamLineSchema, source: { operation: { method: 'get', path: '/v1/invoices/subscribe' } } },
  { name: 'LndPaymentStreamLine', schema: LndPaymentStreamLineSchema, source: { operation: { method: 'post', path: '/v2/router/send' } } },
];

/**
 * Checks a value against a schema and returns it typed, or throws `invalid_response`
 * naming the first offending field (never its value: it could be a preimage).
 */
export function parseLndResponse<T extends Type.TSchema>(schema: T, value: unknown, what: string): Type.Static<T> {
  if (Value.Check(schema, value)) return value as Type.Static<T>;
  const first = Value.Errors(schema, value)[0];
  const where = first === undefined ? '' : ` at ${first.instancePath || '/'} (${first.message})`;
  throw new LndError('invalid_response', `LND sent an invalid ${what}${where}`);
}
