/**
 * The messages of the sluice.v1 WebSocket protocol as JSON Schemas: one per message a
 * client sends and one per message the server sends. The server validates what it
 * receives against these very objects, and `docs/protocol/*.schema.json` are these
 * objects written out (a test fails when the two differ), so the published schemas and
 * the server cannot drift apart.
 *
 * Amounts are decimal strings of msat; sequence numbers are JSON integers (below 2^53).
 */
import { Type, type TSchema } from 'typebox';
import { ERROR_CODES } from '../errors/codes.js';
import { MAX_CHARGE_COUNT, MAX_METADATA_LENGTH, MAX_REF_LENGTH } from './service.js';

export const SUBPROTOCOL = 'sluice.v1';

const RequestId = Type.String({ minLength: 1, maxLength: 64, description: 'Chosen by the client; the reply carries it back. 1-64 characters.' });
const Amount = (description: string) => Type.String({ pattern: '^(0|[1-9][0-9]{0,18})$', description: `${description} Millisatoshis as a decimal string of digits, e.g. "1500".` });
const StreamId = Type.String({ minLength: 1, maxLength: 64, description: 'The stream (st_...).' });
const PayerStreamId = Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'The stream (st_...). Required for an app; a payer may leave it out (its own stream).' }));
const Ref = Type.String({
  minLength: 1, maxLength: MAX_REF_LENGTH, pattern: '^[A-Za-z0-9._:-]+$',
  description: 'Idempotency reference, unique within the stream: sending the same ref again returns the first result and moves nothing.',
});
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: "The stream's sequence number." });
const IsoTime = Type.String({ description: 'ISO 8601 time in UTC, e.g. "2025-01-31T12:00:00.000Z".' });
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const Destination = Type.Object({
  keysend: Type.Optional(Type.Object({ pubkey: Type.String({ pattern: '^0[23][0-9a-fA-F]{64}$' }) }, { additionalProperties: false })),
  lightning_address: Type.Optional(Type.String({ maxLength: 320 })),
  invoice: Type.Optional(Type.Boolean({ description: 'true: ask the payer for an invoice (event payout_invoice_needed) each time.' })),
}, { additionalProperties: false, description: 'Where payouts go: exactly one of keysend, lightning_address, invoice.' });

/** A request: its type, its id, and its own fields. */
function request<P extends Record<string, TSchema>>(type: string, description: string, fields: P) {
  return Type.Object({ type: Type.Literal(type), id: RequestId, ...fields }, {
    additionalProperties: false, $id: `sluice.v1/client/${type}`, title: `${type} (client to server)`, description,
  });
}

/** The ok reply to one request type. */
function ok<P extends Record<string, TSchema>>(type: string, description: string, fields: P) {
  return Type.Object({ type: Type.Literal('ok'), id: RequestId, ...fields }, {
    additionalProperties: false, $id: `sluice.v1/server/ok.${type}`, title: `ok reply to ${type} (server to client)`, description,
  });
}

export const CLIENT_MESSAGES = {
  auth: request('auth', 'Authenticates the connection: exactly one of api_key (the app) and payer_token (the payer). Must be the first request unless the upgrade request carried Authorization: Bearer.', {
    api_key: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: "The app's API key (sk_...)." })),
    payer_token: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'The payer token (pt_...) returned when the stream was created.' })),
  }),
  ping: request('ping', 'Asks for a reply, to measure latency or keep an idle connection open through proxies.', {}),
  'stream.create': request('stream.create', 'App only. Creates a stream; the reply holds the payer token to hand to the payer. Every term is optional.', {
    prices: Type.Optional(Type.Record(Type.String(), Amount('Price of one event.'), { description: 'Named prices: event name ([A-Za-z0-9_.:-], 1-64 characters) -> msat per event. At most 64.' })),
    rate_msat_per_s: Type.Optional(Amount('Per-second meter rate; "0" or absent: no meter.')),
    maximum_msat: Type.Optional(Amount('How far the payer may fall into debt; "0" or absent: prepaid only.')),
    settle_threshold_msat: Type.Optional(Amount('When the balance falls under this, a top-up invoice is pushed...')),
    settle_to_msat: Type.Optional(Amount('...for the amount that brings the balance back to this level. "0" or absent: no invoices.')),
    max_charge_msat: Type.Optional(Amount('The largest single charge or reward (default 100000000).')),
    payout_threshold_msat: Type.Optional(Amount('When the balance exceeds settle_to by this much, the excess is paid out; "0" or absent: only on close.')),
    expires_in_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 31_536_000, description: 'The stream closes itself after this many seconds.' })),
    payout: Type.Optional(Destination),
    metadata: Type.Optional(Type.String({ maxLength: MAX_METADATA_LENGTH, description: 'Free text for the app (e.g. a player id).' })),
  }),
  'stream.get': request('stream.get', 'Reads a stream: its terms, balance and seq.', { stream_id: PayerStreamId }),
  charge: request('charge', 'App only. Moves msat from the payer to the app, by event name (price x count) or by amount_msat (exactly one of the two).', {
    stream_id: StreamId,
    event: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A priced event name.' })),
    amount_msat: Type.Optional(Amount('The amount, when not charging by event.')),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CHARGE_COUNT, description: 'How many events (default 1).' })),
    ref: Ref,
  }),
  reward: request('reward', "App only. Moves msat from the app's balance to the payer.", {
    stream_id: StreamId,
    amount_msat: Amount('The amount.'),
    ref: Ref,
  }),
  meter: request('meter', 'Drives the per-second meter. The app may start, pause, resume and stop; the payer may pause, resume and stop.', {
    stream_id: PayerStreamId,
    action: Type.Union([Type.Literal('start'), Type.Literal('pause'), Type.Literal('resume'), Type.Literal('stop')]),
  }),
  close: request('close', 'Closes the stream (app or payer). A positive balance is paid back to the payer.', { stream_id: PayerStreamId }),
  subscribe: request('subscribe', 'Starts pushing the events of a stream: first those after after_seq (when given), then a balance event, then live events.', {
    stream_id: PayerStreamId,
    after_seq: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The last seq this client saw; events after it are sent again first.' })),
  }),
  unsubscribe: request('unsubscribe', 'Stops pushing the events of a stream.', { stream_id: PayerStreamId }),
  'payout.set': request('payout.set', 'Payer only. Says where payouts (refunds, winnings) go.', { stream_id: PayerStreamId, destination: Destination }),
  'payout.invoice': request('payout.invoice', 'Payer only. Answers a payout_invoice_needed event with a BOLT 11 invoice for exactly the amount asked.', {
    stream_id: PayerStreamId,
    payment_request: Type.String({ minLength: 1, maxLength: 8192, description: 'A BOLT 11 invoice (lnbc..., lntb..., lnbcrt...).' }),
  }),
} as const;

export type ClientMessageType = keyof typeof CLIENT_MESSAGES;

/** The stream as in REST GET /v1/streams/{id}. */
const StreamJson = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('open'), Type.Literal('closed')]),
  meter: Type.Union([Type.Literal('stopped'), Type.Literal('running'), Type.Literal('paused')]),
  seq: Seq,
  balance_msat: Type.String({ pattern: '^-?[0-9]+$', description: 'Signed: negative when the payer owes the app.' }),
  held_msat: Amount('Held by payouts in flight.'),
  prices: Type.Record(Type.String(), Amount('Price of one event.')),
  rate_msat_per_s: Amount('Meter rate.'),
  maximum_msat: Amount('Debt limit.'),
  settle_threshold_msat: Amount('Top-up threshold.'),
  settle_to_msat: Amount('Top-up target.'),
  max_charge_msat: Amount('Largest step.'),
  payout_threshold_msat: Amount('Payout threshold.'),
  expires_at: Nullable(IsoTime),
  payout: Nullable(Destination),
  metadata: Type.String(),
  created_at: IsoTime,
  closed_at: Nullable(IsoTime),
}, { additionalProperties: false });

const Ack = {
  seq: Seq,
  amount_msat: Amount('What moved (price x count for an event charge).'),
  balance_msat: Type.String({ pattern: '^-?[0-9]+$', description: "The payer's balance on the stream after this step (signed)." }),
  replayed: Type.Boolean({ description: 'true: this ref was already applied; nothing moved again and seq is the first one.' }),
};

export const SERVER_REPLIES = {
  auth: ok('auth', 'Who the connection is, and the limits it must respect.', {
    role: Type.Union([Type.Literal('app'), Type.Literal('payer')]),
    app_id: Type.Optional(Type.String({ description: 'For role app.' })),
    stream_id: Type.Optional(Type.String({ description: 'For role payer: the one stream this token opens.' })),
    limits: Type.Object({
      max_message_bytes: Type.Integer({ description: 'Larger messages are refused with message_too_large.' }),
      max_in_flight: Type.Integer({ description: 'Requests sent and not yet answered; more are refused with overloaded.' }),
      max_subscriptions: Type.Integer({ description: 'Streams one connection may subscribe to.' }),
    }, { additionalProperties: false }),
  }),
  ping: ok('ping', 'The server is alive.', { time: IsoTime }),
  'stream.create': ok('stream.create', 'The new stream and its payer token (shown once: hand it to the payer).', {
    stream: StreamJson,
    payer_token: Type.String({ description: 'pt_...: lets the payer read, pause, close and be paid out; never charge.' }),
  }),
  'stream.get': ok('stream.get', 'The stream.', { stream: StreamJson }),
  charge: ok('charge', 'Sent only once the charge is durable.', Ack),
  reward: ok('reward', 'Sent only once the reward is durable.', Ack),
  meter: ok('meter', 'The meter changed; seq is the seq of its event.', { seq: Seq, stream: StreamJson }),
  close: ok('close', 'The stream is closed; seq is the seq of its closed event.', { seq: Seq, stream: StreamJson }),
  subscribe: ok('subscribe', 'Subscribed; events follow this reply.', { stream_id: Type.String() }),
  unsubscribe: ok('unsubscribe', 'No more events of this stream will be pushed.', { stream_id: Type.String() }),
  'payout.set': ok('payout.set', 'The stream with its new payout destination.', { stream: StreamJson }),
  'payout.invoice': ok('payout.invoice', 'The payout is on its way; its outcome comes as a settled or payout_failed event.', { stream: StreamJson }),
} as const satisfies Record<ClientMessageType, TSchema>;

export const ERROR_MESSAGE = Type.Object({
  type: Type.Literal('error'),
  id: Type.Union([RequestId, Type.Null()], { description: 'The id of the request refused; null when the message had no readable id (not JSON, too large, no id).' }),
  error: Type.Object({
    code: Type.Union(Object.keys(ERROR_CODES).map((code) => Type.Literal(code)), { description: 'Stable: branch on it. The list is docs/errors.md.' }),
    message: Type.String({ description: 'For people; may change.' }),
  }, { additionalProperties: false }),
}, {
  additionalProperties: false, $id: 'sluice.v1/server/error', title: 'error reply (server to client)',
  description: 'The one reply to a request that was refused: nothing was changed by it.',
});

const eventBase = { stream_id: Type.String(), seq: Seq, at: IsoTime };
const Signed = Type.String({ pattern: '^-?[0-9]+$', description: "The payer's balance on the stream right after this event (signed)." });
/** One event kind; more fields may be added later, so clients ignore fields they do not know. */
const eventOf = <P extends Record<string, TSchema>>(type: string, description: string, fields: P) =>
  Type.Object({ ...eventBase, type: Type.Literal(type), ...fields }, { additionalProperties: true, description: `${type}: ${description}` });

/** A money event: a charge, a reward or a metered second. */
const moneyEvent = (type: string, description: string) => eventOf(type, description, {
  event: Type.String({ description: 'The event name charged ("amount" for a charge by amount, "reward", "meter").' }),
  amount_msat: Amount('What moved.'),
  balance_msat: Type.Optional(Type.String({ pattern: '^-?[0-9]+$', description: 'The balance right after this event (signed); absent when the event is sent again on resume.' })),
});

export const STREAM_EVENTS = [
  eventOf('created', 'the stream was created.', { balance_msat: Signed }),
  eventOf('invoice', 'pay this invoice to fund the stream (top-up).', {
    payment_request: Type.String(), payment_hash: Type.String(), amount_msat: Amount('Asked.'), expires_at: IsoTime, balance_msat: Signed,
  }),
  eventOf('funded', 'a top-up invoice was paid.', { amount_msat: Amount('Paid.'), payment_hash: Type.String(), balance_msat: Signed }),
  moneyEvent('charged', 'the payer paid the app.'),
  moneyEvent('rewarded', 'the app paid the payer.'),
  moneyEvent('metered', 'per-second metering charged the payer.'),
  eventOf('meter_started', 'the meter runs.', { reason: Type.String(), balance_msat: Signed }),
  eventOf('paused', 'the meter is paused (reason "insufficient_funds": pay the pending invoice).', { reason: Type.String(), balance_msat: Signed }),
  eventOf('resumed', 'the meter runs again.', { reason: Type.String(), balance_msat: Signed }),
  eventOf('meter_stopped', 'the meter stopped.', { reason: Type.String(), balance_msat: Signed }),
  eventOf('payout_requested', 'a payout was sent and its outcome is not known yet (settled or payout_failed follows).', { amount_msat: Amount('Being paid out.'), payment_hash: Type.String(), balance_msat: Signed }),
  eventOf('payout_destination_set', 'the payer chose where payouts go ("keysend", "lightning_address" or "invoice").', { destination: Type.String(), balance_msat: Signed }),
  eventOf('payout_invoice_needed', 'the payer must answer with payout.invoice for exactly amount_msat.', { amount_msat: Amount('To be paid out.'), balance_msat: Signed }),
  eventOf('settled', 'a payout reached the payer.', { amount_msat: Amount('Paid out.'), fee_msat: Amount('Routing fee.'), payment_hash: Type.String(), balance_msat: Signed }),
  eventOf('payout_failed', 'a payout failed; the money is back on the stream.', { amount_msat: Amount('Not paid out.'), reason: Type.String(), balance_msat: Signed }),
  eventOf('closed', 'the stream is closed (by "app", "payer" or "expiry").', { by: Type.String(), balance_msat: Signed }),
  eventOf('balance', 'sent by the WebSocket server after subscribe (and after the events sent again): the current balance. Its seq is the highest seq pushed on this subscription so far (or after_seq): a safe point to resume from. It is not stored.', {
    balance_msat: Signed, held_msat: Amount('Held by payouts in flight.'),
  }),
];

export const EVENT_MESSAGE = Type.Object({
  type: Type.Literal('event'),
  event: Type.Union(STREAM_EVENTS),
}, {
  additionalProperties: false, $id: 'sluice.v1/server/event', title: 'event (server to client)',
  description: 'An event of a subscribed stream, pushed without a request. Events of one stream carry increasing seq numbers.',
});

/** Every schema, named as its file in docs/protocol/ (without .schema.json). */
export function protocolSchemas(): Record<string, TSchema> {
  const schemas: Record<string, TSchema> = {};
  for (const [type, schema] of Object.entries(CLIENT_MESSAGES)) schemas[`client.${type}`] = schema;
  for (const [type, schema] of Object.entries(SERVER_REPLIES)) schemas[`server.ok.${type}`] = schema;
  schemas['server.error'] = ERROR_MESSAGE;
  schemas['server.event'] = EVENT_MESSAGE;
  return schemas;
}
