/**
 * The sluice.v1 WebSocket protocol (docs/protocol.md): one endpoint, GET /v1/ws, where an
 * app drives its streams and a payer watches and steers its own, with events pushed as
 * they happen. It offers the operations of the REST routes (same input rules, same error
 * codes, same JSON for streams and events) plus subscriptions that resume from a seq.
 *
 * Threat model: anyone can open a connection. Until it authenticates (API key or payer
 * token, in the first request or in the upgrade's Authorization header) it may only ping
 * and authenticate, a few times, for a few seconds. An app sees only its own streams; a
 * payer sees only the one stream its token opens and can never charge, reward or create.
 * A client cannot exhaust the server: every message, request queue, subscription set,
 * event buffer and socket buffer has a limit, and a client that does not read is closed.
 * Nothing a client sends can crash the process: every request gets exactly one reply,
 * and a failure inside a handler becomes internal_error for that request alone. Money
 * moves only through the stream service, which acknowledges a step only once durable; the
 * socket adds no state that money depends on.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import type { Logger } from 'pino';
import type { Static, TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { AppService } from '../apps/service.js';
import { ApiError, errorBody, ERROR_CODES, type ErrorCode } from '../errors/codes.js';
import { bearerKey, type SluiceFastify } from '../http/server.js';
import { isoTime, parseAmount } from '../http/wire.js';
import type { StreamEvent } from './model.js';
import { createInputFromBody, eventJson, parseDestination, streamError, streamJson, type CreateStreamBody } from './routes.js';
import type { Fail, MoneyAck, StreamService } from './service.js';
import { CLIENT_MESSAGES, SUBPROTOCOL, type ClientMessageType } from './ws-messages.js';

export { SUBPROTOCOL } from './ws-messages.js';
export const WS_PATH = '/v1/ws';

/** Close codes the server uses (docs/protocol.md, "Close codes"). */
export const CLOSE_CODES = {
  /** The server is shutting down: reconnect (to another instance) and resume. */
  goingAway: 1001,
  /** A frame above maxFrameBytes (sent by the ws library). */
  frameTooLarge: 1009,
  /** No successful auth within authTimeoutMs. */
  authTimeout: 4001,
  /** maxAuthFailures failed auth attempts on this connection. */
  authFailed: 4002,
  /** The client did not read fast enough (socket buffer or event buffer full): reconnect and resume with after_seq. */
  slowConsumer: 4008,
  /** An unexpected failure while pushing events (a bug; the log has details): reconnect and resume. */
  internalError: 4500,
} as const;

export interface StreamSocketLimits {
  /** Larger messages are refused with message_too_large (the connection stays). */
  maxMessageBytes: number;
  /** Larger frames close the connection (1009): reading them at all would be the attack. */
  maxFrameBytes: number;
  /** Requests received and not yet answered; more are refused with overloaded. */
  maxInFlight: number;
  /** Bytes queued on the socket that the client has not read; more closes it (4008). */
  maxBufferedBytes: number;
  /** Live events held back while a subscription sends history; more closes it (4008). */
  maxPendingEvents: number;
  maxSubscriptions: number;
  maxConnections: number;
  maxAuthFailures: number;
  authTimeoutMs: number;
  /** WebSocket ping every this often; a connection that has not answered the previous ping is dropped. */
  pingIntervalMs: number;
  /** On shutdown, how long requests in flight may take before connections are closed. */
  drainTimeoutMs: number;
}

export const DEFAULT_STREAM_SOCKET_LIMITS: StreamSocketLimits = {
  maxMessageBytes: 64 * 1024,
  maxFrameBytes: 1024 * 1024,
  maxInFlight: 1000,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxPendingEvents: 50_000,
  maxSubscriptions: 100,
  maxConnections: 10_000,
  maxAuthFailures: 3,
  authTimeoutMs: 10_000,
  pingIntervalMs: 30_000,
  drainTimeoutMs: 5_000,
};

export interface StreamSocketDeps {
  streams: StreamService;
  apps: AppService;
  logger: Logger;
  /** Unix ms (the injected clock), for expires_in_s and ping replies. */
  now?: () => number;
  limits?: Partial<StreamSocketLimits>;
}

export interface StreamSocket {
  connectionCount(): number;
  /** Refuses new connections and requests, lets requests in flight finish (up to drainTimeoutMs), then closes every connection with 1001. */
  close(): Promise<void>;
}

type WsPrincipal = { kind: 'app'; appId: string } | { kind: 'payer'; streamId: string };

interface Subscription {
  streamId: string;
  /** Live events held back while history is sent; null once live. */
  pending: StreamEvent[] | null;
  /** The highest seq pushed (or the after_seq asked for). */
  lastSeq: number;
  cancelled: boolean;
  unsubscribe: () => void;
}

interface Connection {
  ws: WebSocket;
  principal: WsPrincipal | null;
  inFlight: number;
  authFailures: number;
  alive: boolean;
  closed: boolean;
  authTimer: NodeJS.Timeout | null;
  /**
   * Streams this connection may use: one shared promise per stream while it is checked, so
   * requests on a stream reach the service in the order received; `true` once checked.
   */
  visible: Map<string, Promise<void> | true>;
  subscriptions: Map<string, Subscription>;
  /** The socket is corked until the next tick (see `send`). */
  corked: boolean;
}

/** ws keeps its socket private; corking it is the one use we make of it. */
const socketOf = (ws: WebSocket): Duplex | undefined => (ws as unknown as { _socket?: Duplex })._socket;

const uncork = (conn: Connection): void => {
  conn.corked = false;
  socketOf(conn.ws)?.uncork();
};

type Message<T extends ClientMessageType> = Static<(typeof CLIENT_MESSAGES)[T]>;
type Role = WsPrincipal['kind'];
/**
 * The fields of an `ok` reply already written as JSON (`"seq":1,...`, no braces): a charge's
 * ack is the hottest reply, and writing it directly spares an object, a spread and a stringify.
 */
export class ReplyFields {
  constructor(readonly json: string) {}
}

/** A money step's ack: the same bytes as JSON.stringify of ackJson(ack), in that key order. */
export const ackFields = (ack: MoneyAck): ReplyFields =>
  new ReplyFields(`"seq":${ack.seq},"amount_msat":"${ack.amountMsat}","balance_msat":"${ack.balanceMsat}","replayed":${ack.replayed}`);

interface Handler<T extends ClientMessageType> {
  /** Who may send it; 'anyone' includes a connection not yet authenticated. */
  roles: readonly Role[] | 'anyone';
  run(conn: Connection, message: Message<T>, afterReply: (action: () => void) => void): Promise<Record<string, unknown> | ReplyFields>;
}

const MAX_VISIBLE_STREAMS = 10_000;

export function registerStreamSocket(target: SluiceFastify | http.Server, deps: StreamSocketDeps): StreamSocket {
  const { streams, apps, logger } = deps;
  const limits: StreamSocketLimits = { ...DEFAULT_STREAM_SOCKET_LIMITS, ...deps.limits };
  const now = deps.now ?? Date.now;
  const server: http.Server = 'server' in target && 'addHook' in target ? target.server : target;
  const validators = Object.fromEntries(Object.entries(CLIENT_MESSAGES).map(([type, schema]) => [type, Compile(schema as TSchema)])) as Record<ClientMessageType, Validator>;
  const connections = new Set<Connection>();
  let upgrading = 0;
  let closing = false;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  // ---- sending ----

  const send = (conn: Connection, message: Record<string, unknown>, written?: (error?: Error) => void): void =>
    sendText(conn, JSON.stringify(message), written);

  const sendText = (conn: Connection, text: string, written?: (error?: Error) => void): void => {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) {
      written?.();
      return;
    }
    // One group commit resolves the acks of many requests in the same tick: cork the socket
    // until the next tick so their frames leave in one writev instead of one syscall each.
    if (!conn.corked) {
      const socket = socketOf(conn.ws);
      if (socket) {
        socket.cork();
        conn.corked = true;
        process.nextTick(uncork, conn);
      }
    }
    conn.ws.send(text, written);
    if (conn.ws.bufferedAmount > limits.maxBufferedBytes) {
      closeConnection(conn, CLOSE_CODES.slowConsumer, `slow consumer: more than ${limits.maxBufferedBytes} bytes unread; reconnect and resume with after_seq`);
    }
  };

  const replyError = (conn: Connection, id: string | null, error: ApiError): void => {
    send(conn, { type: 'error', id, error: { code: error.code, message: error.message } });
  };

  const closeConnection = (conn: Connection, code: number, reason: string): void => {
    if (conn.closed) return;
    forget(conn);
    logger.debug({ code, reason }, 'closing a WebSocket connection');
    conn.ws.close(code, reason);
    // A client that does not read may never read the close frame either.
    setTimeout(() => conn.ws.terminate(), 2000).unref();
  };

  /** Drops everything the connection holds; idempotent. */
  const forget = (conn: Connection): void => {
    conn.closed = true;
    if (conn.authTimer) clearTimeout(conn.authTimer);
    for (const subscription of conn.subscriptions.values()) cancel(subscription);
    conn.subscriptions.clear();
    connections.delete(conn);
  };

  // ---- authentication ----

  const authenticate = async (key: string): Promise<{ ok: true; principal: WsPrincipal } | { ok: false; error: ApiError }> => {
    if (key.startsWith('pt_')) {
      const stream = await streams.authenticatePayer(key);
      return stream ? { ok: true, principal: { kind: 'payer', streamId: stream.id } } : { ok: false, error: new ApiError('invalid_api_key', 'the payer token is unknown') };
    }
    const result = await apps.authenticate(key);
    if (!result.ok) return { ok: false, error: new ApiError('invalid_api_key') };
    if (result.principal.kind !== 'app') return { ok: false, error: new ApiError('forbidden', 'streams need an app API key or a payer token, not the admin key') };
    return { ok: true, principal: { kind: 'app', appId: result.principal.app.id } };
  };

  const principalOf = (conn: Connection): WsPrincipal => {
    if (conn.principal === null) throw new Error('handler reached without a principal');
    return conn.principal;
  };

  // ---- streams a connection may use ----

  const streamIdOf = (conn: Connection, message: { stream_id?: string | undefined }): string => {
    if (message.stream_id !== undefined) return message.stream_id;
    const principal = principalOf(conn);
    if (principal.kind === 'payer') return principal.streamId;
    throw new ApiError('invalid_request', 'stream_id is required');
  };

  /**
   * `true` when the connection may use the stream; otherwise a promise that resolves when it
   * may. Every request on a stream being checked awaits the same promise, so they reach the
   * service in the order they were received (the service numbers charges as they arrive);
   * the check marks the stream `true` before those requests resume, and a request read later
   * (in a later turn of the event loop) goes straight on. Refusals are not remembered.
   */
  const gateNow = (conn: Connection, streamId: string): Promise<void> | true => {
    const principal = principalOf(conn);
    if (principal.kind === 'payer' && principal.streamId !== streamId) return Promise.reject(new ApiError('stream_not_found'));
    const known = conn.visible.get(streamId);
    if (known) return known;
    const checking: Promise<void> = streams.get(streamId, principal.kind === 'app' ? principal.appId : null).then((stream) => {
      if (!stream) throw new ApiError('stream_not_found');
      if (conn.visible.get(streamId) === checking) conn.visible.set(streamId, true);
    });
    if (conn.visible.size >= MAX_VISIBLE_STREAMS) conn.visible.clear();
    conn.visible.set(streamId, checking);
    checking.catch(() => conn.visible.delete(streamId));
    return checking;
  };

  const gate = async (conn: Connection, streamId: string): Promise<void> => {
    const gated = gateNow(conn, streamId);
    if (gated !== true) await gated;
  };

  /** A charge's or reward's answer: its ack, or its refusal as the error reply. */
  const moneyReply = (result: MoneyAck | Fail): ReplyFields => {
    if (!result.ok) throw streamError(result);
    return ackFields(result);
  };

  const streamView = async (streamId: string) => {
    const stream = await streams.get(streamId, null);
    if (!stream) throw new ApiError('stream_not_found');
    return streamJson(stream);
  };

  // ---- subscriptions ----

  const cancel = (subscription: Subscription): void => {
    subscription.cancelled = true;
    subscription.pending = null;
    subscription.unsubscribe();
  };

  const push = (conn: Connection, subscription: Subscription, event: Record<string, unknown> & { seq: number }, written?: () => void): void => {
    subscription.lastSeq = Math.max(subscription.lastSeq, event.seq);
    send(conn, { type: 'event', event }, written);
  };

  const deliver = (conn: Connection, subscription: Subscription, event: StreamEvent): void => {
    if (subscription.cancelled || conn.closed) return;
    if (subscription.pending === null) {
      push(conn, subscription, eventJson(event));
      return;
    }
    if (subscription.pending.length >= limits.maxPendingEvents) {
      closeConnection(conn, CLOSE_CODES.slowConsumer, 'slow consumer: too many events while sending history; reconnect and resume with after_seq');
      return;
    }
    subscription.pending.push(event);
  };

  /**
   * History after afterSeq, then the live events held back meanwhile (those not already
   * sent), then a balance event; from then on live events go straight out. The live
   * listener was added before the history was read, so nothing falls between the two,
   * and the seqs already sent filter out what both saw.
   */
  const catchUp = async (conn: Connection, subscription: Subscription, afterSeq: number | undefined): Promise<void> => {
    const sent = new Set<number>();
    if (afterSeq !== undefined) {
      let cursor = afterSeq;
      for (;;) {
        const events = (await streams.eventsAfter(subscription.streamId, cursor)).filter((event) => event.seq > cursor);
        if (subscription.cancelled || conn.closed || events.length === 0) break;
        let written: Promise<void> = Promise.resolve();
        events.forEach((event, index) => {
          sent.add(event.seq);
          if (index < events.length - 1) push(conn, subscription, eventJson(event));
          else written = new Promise((resolve) => push(conn, subscription, eventJson(event), () => resolve()));
        });
        cursor = (events[events.length - 1] as StreamEvent).seq;
        await written; // the socket took this page: the next one will not pile up in memory
      }
    }
    if (subscription.cancelled || conn.closed) return;
    const held = subscription.pending ?? [];
    subscription.pending = null;
    for (const event of held) {
      if (!sent.has(event.seq) && (afterSeq === undefined || event.seq > afterSeq)) push(conn, subscription, eventJson(event));
    }
    const stream = await streams.get(subscription.streamId, null);
    if (!stream || subscription.cancelled || conn.closed) return;
    const seq = afterSeq === undefined ? Math.max(subscription.lastSeq, stream.seq) : subscription.lastSeq;
    push(conn, subscription, {
      stream_id: stream.id, seq, type: 'balance', at: isoTime(now()) as string,
      balance_msat: stream.balanceMsat.toString(), held_msat: stream.heldMsat.toString(),
    });
  };

  // ---- requests ----

  const handlers: { [T in ClientMessageType]: Handler<T> } = {
    auth: {
      roles: 'anyone',
      async run(conn, message, afterReply) {
        if (conn.principal !== null) throw new ApiError('invalid_request', 'this connection is already authenticated');
        const key = message.api_key ?? message.payer_token;
        if (key === undefined || (message.api_key !== undefined && message.payer_token !== undefined)) {
          throw new ApiError('invalid_request', 'auth needs exactly one of api_key and payer_token');
        }
        const result = await authenticate(key);
        if (!result.ok) {
          conn.authFailures += 1;
          if (conn.authFailures >= limits.maxAuthFailures) afterReply(() => closeConnection(conn, CLOSE_CODES.authFailed, 'too many failed authentications'));
          throw result.error;
        }
        if (conn.closed) throw new ApiError('unauthorized', 'the connection is closing');
        conn.principal = result.principal;
        if (conn.authTimer) clearTimeout(conn.authTimer);
        conn.authTimer = null;
        return { ...whoAmI(result.principal), limits: limitsJson() };
      },
    },
    ping: { roles: 'anyone', run: async () => ({ time: isoTime(now()) as string }) },
    'stream.create': {
      roles: ['app'],
      async run(conn, message) {
        const { type: _type, id: _id, ...body } = message;
        const input = createInputFromBody(body as CreateStreamBody, now());
        const created = await streams.create((principalOf(conn) as { appId: string }).appId, input);
        if (!created.ok) throw streamError(created);
        conn.visible.set(created.stream.id, true);
        return { stream: streamJson(created.stream), payer_token: created.payerToken };
      },
    },
    'stream.get': {
      roles: ['app', 'payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        await gate(conn, streamId);
        return { stream: await streamView(streamId) };
      },
    },
    charge: {
      roles: ['app'],
      // Not async, and no await when the stream is known (the common case): this runs per charge.
      run(conn, message) {
        const input = {
          event: message.event,
          amountMsat: message.amount_msat === undefined ? undefined : parseAmount(message.amount_msat, 'amount_msat'),
          count: message.count,
          ref: message.ref,
        };
        const charge = (): Promise<ReplyFields> => streams.charge(message.stream_id, input).then(moneyReply);
        const gated = gateNow(conn, message.stream_id);
        return gated === true ? charge() : gated.then(charge);
      },
    },
    reward: {
      roles: ['app'],
      async run(conn, message) {
        const amountMsat = parseAmount(message.amount_msat, 'amount_msat');
        await gate(conn, message.stream_id);
        return moneyReply(await streams.reward(message.stream_id, { amountMsat, ref: message.ref }));
      },
    },
    meter: {
      roles: ['app', 'payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        await gate(conn, streamId);
        const result = await streams.meter(streamId, message.action, principalOf(conn).kind);
        if (!result.ok) throw streamError(result);
        return { seq: result.seq, stream: streamJson(result.stream) };
      },
    },
    close: {
      roles: ['app', 'payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        await gate(conn, streamId);
        const result = await streams.close(streamId, principalOf(conn).kind);
        if (!result.ok) throw streamError(result);
        return { seq: result.seq, stream: streamJson(result.stream) };
      },
    },
    subscribe: {
      roles: ['app', 'payer'],
      async run(conn, message, afterReply) {
        const streamId = streamIdOf(conn, message);
        await gate(conn, streamId);
        if (conn.subscriptions.has(streamId)) throw new ApiError('invalid_request', 'already subscribed to this stream (unsubscribe first)');
        if (conn.subscriptions.size >= limits.maxSubscriptions) throw new ApiError('invalid_request', `at most ${limits.maxSubscriptions} subscriptions per connection`);
        const subscription: Subscription = { streamId, pending: [], lastSeq: message.after_seq ?? -1, cancelled: false, unsubscribe: () => {} };
        subscription.unsubscribe = streams.subscribe(streamId, (event) => deliver(conn, subscription, event));
        conn.subscriptions.set(streamId, subscription);
        afterReply(() => {
          catchUp(conn, subscription, message.after_seq).catch((error: unknown) => {
            logger.error({ err: error, streamId }, 'could not send the history of a stream');
            closeConnection(conn, CLOSE_CODES.internalError, 'could not send the history; reconnect and resume with after_seq');
          });
        });
        return { stream_id: streamId };
      },
    },
    unsubscribe: {
      roles: ['app', 'payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        const subscription = conn.subscriptions.get(streamId);
        if (subscription) cancel(subscription);
        conn.subscriptions.delete(streamId);
        return { stream_id: streamId };
      },
    },
    'payout.set': {
      roles: ['payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        const destination = parseDestination(message.destination);
        await gate(conn, streamId);
        const result = await streams.setPayoutDestination(streamId, destination);
        if (!result.ok) throw streamError(result);
        return { stream: streamJson(result.stream) };
      },
    },
    'payout.invoice': {
      roles: ['payer'],
      async run(conn, message) {
        const streamId = streamIdOf(conn, message);
        await gate(conn, streamId);
        const result = await streams.providePayoutInvoice(streamId, message.payment_request.trim());
        if (!result.ok) throw streamError(result);
        return { stream: await streamView(streamId) };
      },
    },
  };

  const whoAmI = (principal: WsPrincipal) =>
    principal.kind === 'app' ? { role: 'app', app_id: principal.appId } : { role: 'payer', stream_id: principal.streamId };
  const limitsJson = () => ({ max_message_bytes: limits.maxMessageBytes, max_in_flight: limits.maxInFlight, max_subscriptions: limits.maxSubscriptions });

  /** Answers one request (counted in conn.inFlight by the caller, and uncounted here once answered). Never rejects. */
  const handle = async (conn: Connection, type: ClientMessageType, id: string, message: Record<string, unknown>): Promise<void> => {
    let deferred: (() => void)[] | null = null;
    try {
      const validator = validators[type];
      if (!validator.Check(message)) throw refusalFor(validator, message);
      const handler = handlers[type] as Handler<ClientMessageType>;
      if (handler.roles !== 'anyone') {
        if (conn.principal === null) throw new ApiError('unauthorized', 'authenticate first: {"type":"auth","id":"1","api_key":"sk_..."} or with "payer_token"');
        if (!handler.roles.includes(conn.principal.kind)) throw new ApiError('forbidden', `a${conn.principal.kind === 'app' ? 'n app' : ' payer'} may not send ${type}`);
      }
      const result = await handler.run(conn, message as Message<ClientMessageType>, (action) => (deferred ??= []).push(action));
      if (result instanceof ReplyFields) sendText(conn, `{"type":"ok","id":${JSON.stringify(id)},${result.json}}`);
      else send(conn, { type: 'ok', id, ...result });
    } catch (error) {
      if (error instanceof ApiError) replyError(conn, id, error);
      else {
        logger.error({ err: error, type }, 'a WebSocket request failed');
        replyError(conn, id, new ApiError('internal_error'));
      }
    } finally {
      conn.inFlight -= 1;
    }
    // Assigned inside the afterReply callback, which TypeScript's narrowing does not see.
    for (const action of (deferred as (() => void)[] | null) ?? []) action();
  };

  const onMessage = (conn: Connection, data: RawData, isBinary: boolean): void => {
    conn.alive = true;
    if (conn.closed) return;
    if (isBinary) return replyError(conn, null, new ApiError('invalid_json', 'binary frames are not read: send JSON in text frames'));
    // A Buffer is read in place (Buffer.from would copy every message); an ArrayBuffer gets a view.
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (bytes.length > limits.maxMessageBytes) {
      return replyError(conn, null, new ApiError('message_too_large', `the message is ${bytes.length} bytes; the limit is ${limits.maxMessageBytes}`));
    }
    let message: unknown;
    try {
      message = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      return replyError(conn, null, new ApiError('invalid_json', `the message is not JSON: ${(error as Error).message}`));
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      return replyError(conn, null, new ApiError('invalid_request', 'a message is a JSON object {"type": ..., "id": ..., ...}'));
    }
    const fields = message as Record<string, unknown>;
    const id = typeof fields.id === 'string' && fields.id.length >= 1 && fields.id.length <= 64 ? fields.id : null;
    if (id === null) return replyError(conn, null, new ApiError('invalid_request', 'every request needs an id: a string of 1 to 64 characters'));
    if (typeof fields.type !== 'string') return replyError(conn, id, new ApiError('invalid_request', 'every request needs a type (a string)'));
    if (!Object.hasOwn(CLIENT_MESSAGES, fields.type)) return replyError(conn, id, new ApiError('unknown_type', `unknown message type ${JSON.stringify(fields.type.slice(0, 64))}`));
    if (closing) return replyError(conn, id, new ApiError('shutting_down'));
    if (conn.inFlight >= limits.maxInFlight) {
      return replyError(conn, id, new ApiError('overloaded', `more than ${limits.maxInFlight} requests in flight on this connection; nothing was applied: wait for replies, then retry with the same ref`));
    }
    conn.inFlight += 1;
    void handle(conn, fields.type as ClientMessageType, id, fields);
  };

  const onConnection = (ws: WebSocket, principal: WsPrincipal | null): void => {
    const conn: Connection = {
      ws, principal, inFlight: 0, authFailures: 0, alive: true, closed: false, authTimer: null, visible: new Map(), subscriptions: new Map(), corked: false,
    };
    connections.add(conn);
    if (principal === null) {
      conn.authTimer = setTimeout(() => {
        if (conn.principal === null) closeConnection(conn, CLOSE_CODES.authTimeout, `no successful auth within ${limits.authTimeoutMs} ms`);
      }, limits.authTimeoutMs);
      conn.authTimer.unref();
    }
    ws.on('message', (data, isBinary) => {
      try {
        onMessage(conn, data, isBinary);
      } catch (error) {
        logger.error({ err: error }, 'a WebSocket message could not be handled');
        replyError(conn, null, new ApiError('internal_error'));
      }
    });
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (error) => logger.debug({ err: error }, 'WebSocket error'));
    ws.on('close', () => forget(conn));
  };

  // ---- the upgrade ----

  const refuse = (socket: Duplex, code: ErrorCode, message?: string): void => {
    const status = ERROR_CODES[code].status;
    const body = JSON.stringify(errorBody(code, message));
    if (socket.writable) {
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    } else socket.destroy();
  };

  const upgrade = async (request: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== WS_PATH) return refuse(socket, 'not_found', `no WebSocket endpoint at ${path}; use ${WS_PATH}`);
    if (closing) return refuse(socket, 'shutting_down');
    if (connections.size + upgrading >= limits.maxConnections) return refuse(socket, 'overloaded', 'too many WebSocket connections; retry later');
    const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((name) => name.trim());
    if (!offered.includes(SUBPROTOCOL)) return refuse(socket, 'invalid_request', `offer the WebSocket subprotocol ${SUBPROTOCOL} (Sec-WebSocket-Protocol: ${SUBPROTOCOL})`);
    let principal: WsPrincipal | null = null;
    const credential = bearerKey(request);
    if (credential !== null) {
      if (credential === '') return refuse(socket, 'unauthorized', 'Authorization must be "Bearer <api key or payer token>"');
      upgrading += 1;
      try {
        const result = await authenticate(credential);
        if (!result.ok) return refuse(socket, result.error.code, result.error.message);
        principal = result.principal;
      } finally {
        upgrading -= 1;
      }
    }
    if (socket.destroyed || closing) return void socket.destroy();
    wss.handleUpgrade(request, socket, head, (ws) => onConnection(ws, principal));
  };

  const onUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Until ws takes the socket over, an error on it must not become an uncaught exception.
    socket.on('error', () => socket.destroy());
    upgrade(request, socket, head).catch((error: unknown) => {
      logger.error({ err: error }, 'WebSocket upgrade failed');
      refuse(socket, 'internal_error');
    });
  };
  server.on('upgrade', onUpgrade);

  const keepalive = setInterval(() => {
    for (const conn of connections) {
      if (!conn.alive) {
        forget(conn);
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }, limits.pingIntervalMs);
  keepalive.unref();

  let closed: Promise<void> | null = null;
  const close = async (): Promise<void> => {
    closing = true;
    server.off('upgrade', onUpgrade);
    clearInterval(keepalive);
    const drainUntil = Date.now() + limits.drainTimeoutMs;
    while (Date.now() < drainUntil && [...connections].some((conn) => conn.inFlight > 0)) await new Promise((resolve) => setTimeout(resolve, 10));
    const open = [...connections];
    await Promise.all(open.map((conn) => new Promise<void>((resolve) => {
      if (conn.ws.readyState === WebSocket.CLOSED) return resolve();
      conn.ws.once('close', () => resolve());
      closeConnection(conn, CLOSE_CODES.goingAway, 'server shutting down; reconnect and resume with after_seq');
      setTimeout(() => {
        conn.ws.terminate();
        resolve();
      }, 1000).unref();
    })));
    wss.close();
  };

  // Registered before the server is ready (app.ts), the socket closes with Fastify; after
  // ready, Fastify takes no more hooks and the caller calls close() itself.
  if ('addHook' in target) {
    try {
      target.addHook('preClose', async () => {
        closed ??= close();
        await closed;
      });
    } catch (error) {
      if ((error as { code?: string }).code !== 'FST_ERR_INSTANCE_ALREADY_LISTENING') throw error;
    }
  }

  return {
    connectionCount: () => connections.size,
    close() {
      closed ??= close();
      return closed;
    },
  };
}

/** The first problem with a message, as the same codes REST uses. */
function refusalFor(validator: Validator, message: unknown): ApiError {
  const errors = validator.Errors(message);
  const extra = errors.find((error) => error.keyword === 'additionalProperties');
  if (extra) {
    const names = (extra.params as { additionalProperties?: string[] }).additionalProperties ?? [];
    return new ApiError('unknown_field', `unknown field ${JSON.stringify(names[0] ?? '?')}`);
  }
  const missing = errors.find((error) => error.keyword === 'required');
  if (missing) {
    const names = (missing.params as { requiredProperties?: string[] }).requiredProperties ?? [];
    return new ApiError('invalid_request', `missing field ${names.join(', ')}`);
  }
  const first = errors.find((error) => error.keyword !== 'boolean') ?? errors[0];
  const field = (first?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  if (/(^|\.)[a-z_]*_msat$/.test(field) || field.startsWith('prices.')) {
    return new ApiError('invalid_amount', `${field} must be a decimal string of msat without leading zeros, e.g. "1500"`);
  }
  return new ApiError('invalid_request', `${field || 'message'} ${first?.message ?? 'is invalid'}`);
}
