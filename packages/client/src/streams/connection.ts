/**
 * One sluice.v1 WebSocket connection that survives drops: requests with ids and exactly one
 * reply each, pipelined up to a bound (backpressure), automatic reconnect with backoff,
 * subscriptions resumed with `after_seq`, and events delivered once each.
 *
 * Threat model: the key or payer token is a bearer secret; it is sent only in the `auth`
 * message on this connection and never logged. The server's messages are checked before
 * they become typed values. A request is re-sent after a reconnect only when sending it
 * twice cannot move money twice: charges and rewards (the server applies a ref once;
 * the SDK keeps the ref), reads and subscriptions. Any other request in flight when the
 * connection drops (stream.create, close, meter, payout) fails with `network_error`: its
 * outcome is unknown and the caller decides (read the stream to find out).
 */
import { SluiceError, isSluiceServerErrorCode } from '../errors.js';
import { Emitter } from './emitter.js';
import type { ConnectionState, StreamEvent } from './types.js';
import { eventFromWire, integer, object, type Json } from './wire.js';

/**
 * The part of the WebSocket API the SDK uses: the browser's `WebSocket` and the `ws`
 * package's both fit.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws'; // Node; browsers have a global WebSocket
 * const Constructor: WebSocketConstructor = WebSocket;
 * ```
 */
export interface WebSocketLike {
  readonly readyState: number;
  // Event parameters differ between browsers and `ws`; the SDK reads only `data`, `code` and `reason`.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from the `ws` package in Node 20.
 *
 * @example
 * ```ts
 * import WebSocket from 'ws';
 * const app = await SluiceApp.connect({ baseUrl, apiKey, WebSocket });
 * ```
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * How the SDK's WebSocket connection behaves (SluiceApp and SluicePayer take these options).
 *
 * @example
 * ```ts
 * const options: ConnectionOptions = { baseUrl: 'http://127.0.0.1:8402', maxInFlight: 100, whenBusy: 'reject' };
 * ```
 */
export interface ConnectionOptions {
  /** The server, `http(s)://host:port` (the SDK uses `ws(s)://host:port/v1/ws`) or the full `ws(s)://` URL. */
  baseUrl: string;
  /** The WebSocket class; default `globalThis.WebSocket` (Node 20 has none: pass `WebSocket` from `ws`). */
  WebSocket?: WebSocketConstructor | undefined;
  /** Requests sent and not yet answered, at most (also bounded by the server's limit). Default 256. */
  maxInFlight?: number | undefined;
  /** When maxInFlight requests are out: 'wait' (default) queues the request; 'reject' fails it with `overloaded`. */
  whenBusy?: 'wait' | 'reject' | undefined;
  /** Requests waiting to be sent (while busy or reconnecting), at most; more fail with `overloaded`. Default 10000. */
  maxQueued?: number | undefined;
  /** How long a sent request may wait for its reply before it fails with `timeout` (outcome unknown). Default 30000; 0: no limit. */
  requestTimeoutMs?: number | undefined;
  /** Reconnect after a drop with exponential backoff; `false` to fail instead. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; maxAttempts?: number } | false | undefined;
  /** A ping request this often checks that the server still answers; a silent connection is dropped and reconnected. Default 30000; 0: never. */
  pingIntervalMs?: number | undefined;
}

export type Credentials = { api_key: string } | { payer_token: string };

export interface AuthReply {
  role: 'app' | 'payer';
  app_id: string | null;
  stream_id: string | null;
  maxInFlight: number;
}

/** The events a connection emits to its owner. */
export type ConnectionEvents = {
  event: StreamEvent;
  connection: ConnectionState;
  error: SluiceError;
};

interface Pending {
  id: string | null;
  type: string;
  /** Built when sent, so a re-sent subscribe asks for the events after the last one seen by then. */
  build: () => Json;
  resendable: boolean;
  resolve: (reply: Json) => void;
  reject: (error: SluiceError) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

interface Subscription {
  streamId: string;
  /** The highest seq delivered (or the after_seq asked for); null: none yet. */
  lastSeq: number | null;
  /** Seqs delivered, to drop repeats; bounded (the oldest are forgotten). */
  seen: Set<number>;
  /** The server acknowledged the subscribe on the current socket. */
  active: boolean;
}

const SUBPROTOCOL = 'sluice.v1';
const SEEN_MAX = 4096;
const WS_OPEN = 1;

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < 0) throw new TypeError(`${name} must be a non-negative integer`);
  return result;
}

/** `http://host:8402` -> `ws://host:8402/v1/ws`; a ws(s) URL with a path is kept. */
export function socketUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError(`baseUrl is not a URL: ${JSON.stringify(baseUrl)}`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new TypeError(`baseUrl must be http(s) or ws(s), got ${url.protocol}`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/ws';
  else if (!url.pathname.endsWith('/v1/ws')) url.pathname = url.pathname.replace(/\/+$/, '') + '/v1/ws';
  return url.toString();
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

function errorFromReply(body: Json): SluiceError {
  const error = typeof body.error === 'object' && body.error !== null ? (body.error as Json) : {};
  const code = typeof error.code === 'string' ? error.code : 'invalid_response';
  const message = typeof error.message === 'string' ? error.message : code;
  if (!isSluiceServerErrorCode(code)) return new SluiceError('unknown_error', message, { serverCode: code });
  return new SluiceError(code, message);
}

const PERMANENT_AUTH_FAILURES = new Set(['invalid_api_key', 'unauthorized', 'forbidden']);

export class Connection extends Emitter<ConnectionEvents> {
  readonly #url: string;
  readonly #WebSocket: WebSocketConstructor;
  readonly #credentials: Credentials;
  readonly #maxInFlightOption: number;
  readonly #whenBusy: 'wait' | 'reject';
  readonly #maxQueued: number;
  readonly #requestTimeoutMs: number;
  readonly #pingIntervalMs: number;
  readonly #reconnect: { initialDelayMs: number; maxDelayMs: number; maxAttempts: number } | null;

  #socket: WebSocketLike | null = null;
  #state: ConnectionState | 'idle' = 'idle';
  #ready = false;
  #maxInFlight: number;
  #nextId = 1;
  #attempts = 0;
  #everOpened = false;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #pingTimer: ReturnType<typeof setInterval> | null = null;
  /** Sent and not yet answered, by id, in the order sent. */
  readonly #inFlight = new Map<string, Pending>();
  /** Not yet sent, in order. */
  #queue: Pending[] = [];
  readonly #subscriptions = new Map<string, Subscription>();
  #auth: AuthReply | null = null;
  #firstOpen: { resolve: (auth: AuthReply) => void; reject: (error: SluiceError) => void } | null = null;

  constructor(options: ConnectionOptions, credentials: Credentials) {
    super();
    this.#url = socketUrl(options.baseUrl);
    const Constructor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Constructor === undefined) {
      throw new TypeError('no WebSocket class: pass { WebSocket } from the "ws" package (Node 20 has no global WebSocket)');
    }
    this.#WebSocket = Constructor;
    this.#credentials = credentials;
    this.#maxInFlightOption = Math.max(1, positiveInteger(options.maxInFlight, 256, 'maxInFlight'));
    this.#maxInFlight = this.#maxInFlightOption;
    this.#whenBusy = options.whenBusy ?? 'wait';
    this.#maxQueued = positiveInteger(options.maxQueued, 10_000, 'maxQueued');
    this.#requestTimeoutMs = positiveInteger(options.requestTimeoutMs, 30_000, 'requestTimeoutMs');
    this.#pingIntervalMs = positiveInteger(options.pingIntervalMs, 30_000, 'pingIntervalMs');
    this.#reconnect = options.reconnect === false ? null : {
      initialDelayMs: positiveInteger(options.reconnect?.initialDelayMs, 250, 'reconnect.initialDelayMs'),
      maxDelayMs: positiveInteger(options.reconnect?.maxDelayMs, 10_000, 'reconnect.maxDelayMs'),
      maxAttempts: options.reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY,
    };
  }

  get state(): ConnectionState {
    return this.#state === 'idle' ? 'connecting' : this.#state;
  }

  get auth(): AuthReply | null {
    return this.#auth;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests waiting to be sent. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Opens the first connection; resolves once authenticated, rejects if that first attempt fails. */
  open(): Promise<AuthReply> {
    if (this.#state !== 'idle') throw new Error('open() is called once');
    return new Promise((resolve, reject) => {
      this.#firstOpen = { resolve, reject };
      this.#connect();
    });
  }

  /**
   * Sends a request and resolves with its ok reply (without type and id), or rejects with a
   * SluiceError: the server's code, `timeout`, `network_error` or `overloaded`.
   */
  request(type: string, fields: Json | (() => Json), options: { resendable: boolean }): Promise<Json> {
    if (this.#state === 'closed') return Promise.reject(new SluiceError('network_error', 'the connection is closed'));
    const busy = this.#inFlight.size >= this.#maxInFlight;
    if (busy && this.#ready && this.#whenBusy === 'reject') {
      return Promise.reject(new SluiceError('overloaded', `${this.#inFlight.size} requests are in flight (the limit is ${this.#maxInFlight}); nothing was sent`));
    }
    if ((busy || !this.#ready) && this.#queue.length >= this.#maxQueued) {
      return Promise.reject(new SluiceError('overloaded', `${this.#queue.length} requests are waiting to be sent (the limit is ${this.#maxQueued}); nothing was sent`));
    }
    return new Promise((resolve, reject) => {
      const build = typeof fields === 'function' ? fields : () => fields;
      this.#queue.push({ id: null, type, build, resendable: options.resendable, resolve, reject, timer: null });
      this.#pump();
    });
  }

  /** Subscribes to a stream's events (after `afterSeq` when given); kept across reconnects. */
  async subscribe(streamId: string | undefined, afterSeq: number | undefined): Promise<string> {
    const key = streamId ?? this.#auth?.stream_id ?? null;
    if (key === null) throw new TypeError('streamId is required');
    if (this.#subscriptions.has(key)) throw new SluiceError('invalid_request', `already subscribed to ${key}`);
    const subscription: Subscription = { streamId: key, lastSeq: afterSeq ?? null, seen: new Set(), active: false };
    this.#subscriptions.set(key, subscription);
    try {
      await this.request('subscribe', () => this.#subscribeFields(subscription), { resendable: true });
      subscription.active = true;
      return key;
    } catch (error) {
      this.#subscriptions.delete(key);
      throw error;
    }
  }

  async unsubscribe(streamId: string): Promise<void> {
    const subscription = this.#subscriptions.get(streamId);
    if (!subscription) return;
    this.#subscriptions.delete(streamId);
    if (this.#state !== 'closed') await this.request('unsubscribe', { stream_id: streamId }, { resendable: true });
  }

  /** The highest seq delivered for a stream, or null. */
  lastSeq(streamId: string): number | null {
    return this.#subscriptions.get(streamId)?.lastSeq ?? null;
  }

  /** Closes for good: requests not answered fail with `network_error`. */
  close(): void {
    this.#shutDown(new SluiceError('network_error', 'the connection was closed by the client before the reply; the outcome is unknown'));
  }

  /** For tests and for callers who know better: drop the socket now and reconnect as after a network failure. */
  dropSocket(): void {
    this.#socket?.close(4000, 'dropped by the client');
  }

  // ---- internals ----

  #subscribeFields(subscription: Subscription): Json {
    return { stream_id: subscription.streamId, ...(subscription.lastSeq === null ? {} : { after_seq: subscription.lastSeq }) };
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('connection', state);
  }

  #connect(): void {
    this.#setState('connecting');
    this.#ready = false;
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(this.#url, SUBPROTOCOL);
    } catch (cause) {
      this.#onSocketClosed(null, `could not open ${this.#url}: ${(cause as Error).message}`);
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#sendAuth(socket);
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (this.#socket !== socket) return;
      this.#onMessage(event.data);
    };
    socket.onerror = () => {
      // A close event follows; nothing to do here (browsers give no detail anyway).
    };
    socket.onclose = (event: { code?: number; reason?: string }) => {
      if (this.#socket !== socket) return;
      this.#onSocketClosed(event.code ?? null, event.reason ?? '');
    };
  }

  #sendAuth(socket: WebSocketLike): void {
    const id = `auth-${this.#nextId++}`;
    const pending: Pending = {
      id, type: 'auth', build: () => ({ ...this.#credentials }), resendable: false, timer: null,
      resolve: (reply) => this.#onAuthenticated(reply),
      reject: (error) => {
        if (PERMANENT_AUTH_FAILURES.has(error.code)) this.#shutDown(error);
        else socket.close(4000, 'auth failed');
      },
    };
    this.#send(pending);
  }

  #onAuthenticated(reply: Json): void {
    let auth: AuthReply;
    try {
      const limits = object(reply.limits, 'limits');
      const role = reply.role;
      if (role !== 'app' && role !== 'payer') throw new SluiceError('invalid_response', 'role is neither app nor payer');
      auth = {
        role,
        app_id: typeof reply.app_id === 'string' ? reply.app_id : null,
        stream_id: typeof reply.stream_id === 'string' ? reply.stream_id : null,
        maxInFlight: integer(limits, 'max_in_flight'),
      };
    } catch (error) {
      this.#shutDown(error as SluiceError);
      return;
    }
    this.#auth = auth;
    this.#maxInFlight = Math.max(1, Math.min(this.#maxInFlightOption, auth.maxInFlight - 1));
    this.#attempts = 0;
    this.#everOpened = true;
    // Resubscribe first (after the last seq seen), then what was in flight, then the queue.
    const resubscribe: Pending[] = [];
    for (const subscription of this.#subscriptions.values()) {
      if (!subscription.active) continue; // its own subscribe request is still queued
      subscription.active = false;
      resubscribe.push({
        id: null, type: 'subscribe', build: () => this.#subscribeFields(subscription), resendable: true, timer: null,
        resolve: () => {
          subscription.active = true;
        },
        reject: (error) => this.emit('error', error),
      });
    }
    this.#queue = [...resubscribe, ...this.#queue];
    this.#ready = true;
    this.#setState('open');
    this.#startPing();
    const first = this.#firstOpen;
    this.#firstOpen = null;
    first?.resolve(auth);
    this.#pump();
  }

  #startPing(): void {
    if (this.#pingIntervalMs === 0 || this.#pingTimer !== null) return;
    this.#pingTimer = setInterval(() => {
      if (!this.#ready || this.#inFlight.size >= this.#maxInFlight) return;
      const socket = this.#socket;
      const id = `ping-${this.#nextId++}`;
      const timer = setTimeout(() => {
        if (this.#inFlight.delete(id) && this.#socket === socket) socket?.close(4000, 'no answer to ping');
      }, this.#pingIntervalMs);
      unref(timer);
      this.#send({ id, type: 'ping', build: () => ({}), resendable: false, timer, resolve: () => {}, reject: () => {} });
    }, this.#pingIntervalMs);
    unref(this.#pingTimer);
  }

  #pump(): void {
    while (this.#ready && this.#queue.length > 0 && this.#inFlight.size < this.#maxInFlight) {
      const pending = this.#queue.shift() as Pending;
      pending.id = String(this.#nextId++);
      if (this.#requestTimeoutMs > 0) {
        const id = pending.id;
        pending.timer = setTimeout(() => {
          if (!this.#inFlight.delete(id)) return;
          pending.reject(new SluiceError('timeout', `no reply to ${pending.type} within ${this.#requestTimeoutMs} ms; the outcome is unknown`));
          this.#pump();
        }, this.#requestTimeoutMs);
      }
      this.#send(pending);
    }
  }

  #send(pending: Pending): void {
    const socket = this.#socket;
    const id = pending.id as string;
    this.#inFlight.set(id, pending);
    if (!socket || socket.readyState !== WS_OPEN) return; // the close handler will re-queue or fail it
    try {
      socket.send(JSON.stringify({ type: pending.type, id, ...pending.build() }));
    } catch {
      socket.close(4000, 'send failed');
    }
  }

  #onMessage(data: unknown): void {
    let message: Json;
    try {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer);
      message = object(JSON.parse(text), 'message');
    } catch {
      this.emit('error', new SluiceError('invalid_response', 'the server sent a message that is not a JSON object'));
      return;
    }
    if (message.type === 'event') {
      this.#onEvent(message.event);
      return;
    }
    if (message.type !== 'ok' && message.type !== 'error') return;
    if (typeof message.id !== 'string') {
      if (message.type === 'error') this.emit('error', errorFromReply(message));
      return;
    }
    const pending = this.#inFlight.get(message.id);
    if (!pending) return; // timed out earlier
    this.#inFlight.delete(message.id);
    if (pending.timer !== null) clearTimeout(pending.timer);
    if (message.type === 'ok') {
      const { type: _type, id: _id, ...reply } = message;
      pending.resolve(reply);
    } else {
      pending.reject(errorFromReply(message));
    }
    this.#pump();
  }

  #onEvent(value: unknown): void {
    let event: StreamEvent | null;
    let seq: number;
    let streamId: string;
    try {
      const body = object(value, 'event');
      seq = integer(body, 'seq');
      streamId = typeof body.stream_id === 'string' ? body.stream_id : '';
      event = eventFromWire(body);
    } catch (error) {
      this.emit('error', error as SluiceError);
      return;
    }
    const subscription = this.#subscriptions.get(streamId);
    if (!subscription) return; // unsubscribed meanwhile
    if (event?.type !== 'balance') {
      if (subscription.seen.has(seq)) return; // sent again on resume: delivered already
      subscription.seen.add(seq);
      if (subscription.seen.size > SEEN_MAX) subscription.seen.delete(subscription.seen.values().next().value as number);
    }
    subscription.lastSeq = Math.max(subscription.lastSeq ?? 0, seq);
    if (event) this.emit('event', event);
  }

  #onSocketClosed(code: number | null, reason: string): void {
    this.#socket = null;
    this.#ready = false;
    if (this.#state === 'closed') return;
    if (this.#firstOpen !== null && !this.#everOpened) {
      // The very first attempt failed: tell the caller now rather than retry forever.
      this.#shutDown(new SluiceError('network_error', `could not connect to ${this.#url}${code === null ? '' : ` (close code ${code})`}${reason ? `: ${reason}` : ''}`));
      return;
    }
    if (code === 4002) {
      this.#shutDown(new SluiceError('invalid_api_key', 'the server closed the connection after failed authentications'));
      return;
    }
    // What was in flight: re-send what is safe to send twice, fail the rest (outcome unknown).
    const requeue: Pending[] = [];
    for (const pending of this.#inFlight.values()) {
      if (pending.timer !== null) clearTimeout(pending.timer);
      pending.timer = null;
      if (pending.type === 'auth' || pending.type === 'ping') continue;
      if (pending.resendable) requeue.push(pending);
      else pending.reject(new SluiceError('network_error', `the connection dropped before the reply to ${pending.type}; the outcome is unknown`));
    }
    this.#inFlight.clear();
    this.#queue = [...requeue, ...this.#queue];
    if (this.#reconnect === null || this.#attempts >= this.#reconnect.maxAttempts) {
      this.#shutDown(new SluiceError('network_error', `the connection dropped${reason ? `: ${reason}` : ''}`));
      return;
    }
    this.#setState('connecting');
    const delay = Math.min(this.#reconnect.maxDelayMs, this.#reconnect.initialDelayMs * 2 ** this.#attempts);
    this.#attempts += 1;
    // Jitter, so that many clients dropped together do not come back together.
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#connect();
    }, Math.round(delay * (0.5 + Math.random() / 2)));
  }

  #shutDown(error: SluiceError): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#ready = false;
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, 'closed by the client');
    for (const pending of [...this.#inFlight.values(), ...this.#queue]) {
      if (pending.timer !== null) clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#inFlight.clear();
    this.#queue = [];
    const first = this.#firstOpen;
    this.#firstOpen = null;
    first?.reject(error);
    this.emit('connection', 'closed');
    if (first === null && error.message.indexOf('closed by the client') === -1) this.emit('error', error);
  }
}
