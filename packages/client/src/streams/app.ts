/**
 * `SluiceApp`: the game server's side of streams over the sluice.v1 WebSocket protocol.
 * It creates streams (handing the payer token to the player), charges and rewards,
 * drives the per-second meter, closes streams and listens to their events.
 *
 * Threat model: the app key can move the app's money; keep it on the server, never in a
 * browser (the payer uses `SluicePayer` with its payer token). Every charge and reward
 * carries a ref (generated when the caller gives none); after a dropped connection the SDK
 * sends unanswered charges and rewards again with the same ref, and the server applies a
 * ref once, so a step is never applied twice.
 */
import { newIdempotencyKey } from '../client.js';
import { SluiceError } from '../errors.js';
import { Connection, type ConnectionEvents, type ConnectionOptions } from './connection.js';
import type { ConnectionState, StepResult, Stream, StreamTerms } from './types.js';
import { amount, amountToWire, integer, signed, streamFromWire, string, termsToWire, type Json } from './wire.js';

/**
 * Options of `SluiceApp.connect`: the connection's options and the app's API key.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws';
 * const options: SluiceAppOptions = { baseUrl: 'http://127.0.0.1:8402', apiKey: process.env.SLUICE_API_KEY!, WebSocket };
 * ```
 */
export interface SluiceAppOptions extends ConnectionOptions {
  /** The app's API key (`sk_...`). */
  apiKey: string;
}

/**
 * A charge: by a priced event name (price x count) or by amount, exactly one of the two.
 *
 * @example
 * ```ts
 * const byEvent: ChargeRequest = { event: 'shot', count: 3, ref: 'round-7-shots' };
 * const byAmount: ChargeRequest = { amount_msat: 1_500n };
 * ```
 */
export type ChargeRequest =
  | { event: string; count?: number; amount_msat?: undefined; ref?: string }
  | { amount_msat: bigint; event?: undefined; count?: undefined; ref?: string };

/**
 * The events `SluiceApp` emits: every event of the streams it subscribed to (once each,
 * across reconnects), the state of its connection, and errors no request owns.
 *
 * @example
 * ```ts
 * const onEvent = (event: SluiceAppEvents['event']) => console.log(event.type);
 * app.on('event', onEvent);
 * ```
 */
export type SluiceAppEvents = ConnectionEvents;

function stepFromWire(reply: Json, ref: string): StepResult {
  return { seq: integer(reply, 'seq'), amount_msat: amount(reply, 'amount_msat'), balance_msat: signed(reply, 'balance_msat'), replayed: reply.replayed === true, ref };
}

function checkRef(ref: string | undefined): string {
  if (ref === undefined) return newIdempotencyKey();
  if (typeof ref !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(ref)) throw new TypeError('ref must be 1-128 characters of [A-Za-z0-9._:-]');
  return ref;
}

function checkStreamId(streamId: string): string {
  if (typeof streamId !== 'string' || streamId === '') throw new TypeError('streamId must be a non-empty string');
  return streamId;
}

/**
 * The app's connection to Sluice for streams. Make one per process with the app key.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws';
 * import { SluiceApp } from '@sluice/client';
 *
 * const app = await SluiceApp.connect({ baseUrl: 'http://127.0.0.1:8402', apiKey: 'sk_...', WebSocket });
 * const { stream, payer_token } = await app.createStream({ prices: { shot: 200n }, settle_to_msat: 50_000n });
 * sendToPlayer(payer_token); // the player connects with SluicePayer
 * app.on('event', (event) => console.log(event.stream_id, event.type));
 * await app.subscribe(stream.id);
 * await app.charge(stream.id, { event: 'shot' });
 * await app.reward(stream.id, { amount_msat: 1_000n });
 * await app.closeStream(stream.id);
 * app.close();
 * ```
 */
export class SluiceApp {
  readonly #connection: Connection;
  /** The app's id, as the server knows it. */
  readonly appId: string;

  private constructor(connection: Connection, appId: string) {
    this.#connection = connection;
    this.appId = appId;
  }

  /**
   * Connects and authenticates with the app key. Rejects with `invalid_api_key` for a
   * refused key and `network_error` when the server cannot be reached; after this first
   * success, drops are repaired by reconnecting.
   *
   * @example
   * ```ts
   * const app = await SluiceApp.connect({ baseUrl: 'http://127.0.0.1:8402', apiKey: 'sk_...', WebSocket });
   * ```
   */
  static async connect(options: SluiceAppOptions): Promise<SluiceApp> {
    if (typeof options.apiKey !== 'string' || options.apiKey === '') throw new TypeError('apiKey is required');
    const connection = new Connection(options, { api_key: options.apiKey });
    const auth = await connection.open();
    if (auth.role !== 'app' || auth.app_id === null) {
      connection.close();
      throw new SluiceError('forbidden', 'this key is not an app key (a payer token belongs in SluicePayer)');
    }
    return new SluiceApp(connection, auth.app_id);
  }

  /**
   * Listens to the app's events: `event` (stream events, once each), `connection`
   * (`connecting` | `open` | `closed`), `error`. Returns a function that stops listening.
   *
   * @example
   * ```ts
   * const stop = app.on('event', (event) => {
   *   if (event.type === 'funded') console.log('the player paid', event.amount_msat);
   * });
   * stop();
   * ```
   */
  on<K extends keyof SluiceAppEvents>(type: K, listener: (value: SluiceAppEvents[K]) => void): () => void {
    return this.#connection.on(type, listener);
  }

  /**
   * The connection's state.
   *
   * @example
   * ```ts
   * if (app.connectionState !== 'open') console.log('reconnecting...');
   * ```
   */
  get connectionState(): ConnectionState {
    return this.#connection.state;
  }

  /**
   * Requests sent and not yet answered, and requests waiting to be sent.
   *
   * @example
   * ```ts
   * const { inFlight, queued } = app.pressure;
   * ```
   */
  get pressure(): { inFlight: number; queued: number } {
    return { inFlight: this.#connection.inFlight, queued: this.#connection.queued };
  }

  /**
   * Creates a stream. The payer token in the answer is shown only here: hand it to the player.
   * Not re-sent after a drop (it would create a second stream): a drop while it is in flight
   * fails it with `network_error`.
   *
   * @example
   * ```ts
   * const { stream, payer_token } = await app.createStream({
   *   prices: { shot: 200n }, settle_threshold_msat: 20_000n, settle_to_msat: 50_000n, metadata: 'player-42',
   * });
   * ```
   */
  async createStream(terms: StreamTerms = {}): Promise<{ stream: Stream; payer_token: string }> {
    const reply = await this.#connection.request('stream.create', termsToWire(terms), { resendable: false });
    return { stream: streamFromWire(reply.stream), payer_token: string(reply, 'payer_token') };
  }

  /**
   * Reads a stream: terms, balance, seq.
   *
   * @example
   * ```ts
   * const stream = await app.getStream('st_...');
   * console.log(stream.balance_msat);
   * ```
   */
  async getStream(streamId: string): Promise<Stream> {
    const reply = await this.#connection.request('stream.get', { stream_id: checkStreamId(streamId) }, { resendable: true });
    return streamFromWire(reply.stream);
  }

  /**
   * Charges the payer, by event name or amount. Resolves once the charge is durable.
   * Fails with `stream_limit_exceeded` when the payer's balance (and debt limit) cannot
   * cover it, `unknown_event`, `charge_too_large`, `stream_closed`, ...
   *
   * @example
   * ```ts
   * const step = await app.charge(streamId, { event: 'shot', ref: `shot-${shotId}` });
   * console.log(step.balance_msat);
   * ```
   */
  async charge(streamId: string, request: ChargeRequest): Promise<StepResult> {
    const ref = checkRef(request.ref);
    const fields: Json = { stream_id: checkStreamId(streamId), ref };
    if ((request.event === undefined) === (request.amount_msat === undefined)) throw new TypeError('charge needs exactly one of event and amount_msat');
    if (request.event !== undefined) {
      fields.event = request.event;
      if (request.count !== undefined) fields.count = request.count;
    } else {
      fields.amount_msat = amountToWire(request.amount_msat, 'amount_msat');
    }
    return stepFromWire(await this.#connection.request('charge', fields, { resendable: true }), ref);
  }

  /**
   * Pays the player from the app's balance. Fails with `app_insufficient_balance` when
   * the app has not enough.
   *
   * @example
   * ```ts
   * await app.reward(streamId, { amount_msat: 1_000n, ref: `hit-${hitId}` });
   * ```
   */
  async reward(streamId: string, request: { amount_msat: bigint; ref?: string }): Promise<StepResult> {
    const ref = checkRef(request.ref);
    const fields = { stream_id: checkStreamId(streamId), amount_msat: amountToWire(request.amount_msat, 'amount_msat'), ref };
    return stepFromWire(await this.#connection.request('reward', fields, { resendable: true }), ref);
  }

  /**
   * Drives the per-second meter: start, pause, resume, stop.
   *
   * @example
   * ```ts
   * await app.meter(streamId, 'start');
   * ```
   */
  async meter(streamId: string, action: 'start' | 'pause' | 'resume' | 'stop'): Promise<{ seq: number; stream: Stream }> {
    const reply = await this.#connection.request('meter', { stream_id: checkStreamId(streamId), action }, { resendable: false });
    return { seq: integer(reply, 'seq'), stream: streamFromWire(reply.stream) };
  }

  /**
   * Closes a stream; a positive balance is paid back to the player.
   *
   * @example
   * ```ts
   * const { stream } = await app.closeStream(streamId);
   * console.log(stream.status); // 'closed'
   * ```
   */
  async closeStream(streamId: string): Promise<{ seq: number; stream: Stream }> {
    const reply = await this.#connection.request('close', { stream_id: checkStreamId(streamId) }, { resendable: false });
    return { seq: integer(reply, 'seq'), stream: streamFromWire(reply.stream) };
  }

  /**
   * Pushes a stream's events to `on('event')`: first those after `afterSeq` (when given),
   * then a `balance` event, then live ones. Kept across reconnects: the SDK resumes after
   * the last event it delivered, so none is lost or delivered twice.
   *
   * @example
   * ```ts
   * await app.subscribe(streamId, { afterSeq: 0 }); // the whole history, then live events
   * ```
   */
  async subscribe(streamId: string, options: { afterSeq?: number } = {}): Promise<void> {
    await this.#connection.subscribe(checkStreamId(streamId), options.afterSeq);
  }

  /**
   * Stops pushing a stream's events.
   *
   * @example
   * ```ts
   * await app.unsubscribe(streamId);
   * ```
   */
  async unsubscribe(streamId: string): Promise<void> {
    await this.#connection.unsubscribe(checkStreamId(streamId));
  }

  /**
   * The seq of the last event delivered for a stream (to store and pass as `afterSeq` after a restart).
   *
   * @example
   * ```ts
   * saveCursor(streamId, app.lastSeq(streamId));
   * ```
   */
  lastSeq(streamId: string): number | null {
    return this.#connection.lastSeq(streamId);
  }

  /**
   * Drops the socket as a network failure would; the SDK reconnects and resumes. For tests
   * and for a caller who knows the network changed.
   *
   * @example
   * ```ts
   * app.reconnect();
   * ```
   */
  reconnect(): void {
    this.#connection.dropSocket();
  }

  /**
   * Closes the connection for good; requests not answered fail with `network_error`.
   *
   * @example
   * ```ts
   * app.close();
   * ```
   */
  close(): void {
    this.#connection.close();
  }
}

