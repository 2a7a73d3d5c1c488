/**
 * The gateway: a reverse proxy that puts prices on an upstream HTTP API.
 *
 * For each request, in this order:
 * 1. its own health check (`health_path`), answered here and never forwarded;
 * 2. a path that an upstream could read differently from the price matcher ("..",
 *    encoded slashes, encoded unreserved characters) is refused: 400 invalid_request;
 * 3. the first route rule that matches prices it; no rule: 404 not_found (nothing is
 *    forwarded that the config does not name, so a forgotten route is never free);
 * 4. the gate judges it (free, a chain link, an L402 token); refused: status, challenge
 *    headers and `{"error":{code,message},"price_msat"}`;
 * 5. allowed: forwarded with the payment credentials removed and X-Forwarded-* set, bodies
 *    streamed both ways; the gate's response headers (the chain balance) are added.
 * With `cors` configured, a preflight is answered (204) before all of this, and every
 * answer carries the CORS headers (./cors.ts).
 * Upstream failures: 504 upstream_timeout, 502 upstream_unavailable. A call the gate
 * accepted is paid even when the upstream then fails (as in Aperture): the money moved
 * before the upstream was asked.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type InjectOptions, type LightMyRequestResponse, type RawServerBase, type RouteGenericInterface } from 'fastify';
import replyFrom from '@fastify/reply-from';
import type { Logger } from 'pino';
import { errorBody, type ErrorCode } from '../../errors/codes.js';
import type { GateRequest, PayCallGate } from '../gate.js';
import { createPayCallJudge, credentialHeadersToStrip, pathOf, type MatchedDecision, type PayCallJudge } from '../middleware/core.js';
import { createChallengeLimiter, type ChallengeLimiter } from './challenge-limit.js';
import { createCorsPolicy } from './cors.js';
import { ambiguousPathReason, createRoutePrices } from '../route-prices.js';
import type { GatewayConfig } from './config.js';
import { downstreamResponseHeaders, forwardedHeaders, upstreamRequestHeaders } from './forwarded.js';
import { probeUpstream, type UpstreamProbe } from './health.js';
import { tunnelUpgrade, writeSocketResponse, type UpgradeRefusal } from './upgrade.js';

export interface GatewayDeps {
  config: GatewayConfig;
  gate: PayCallGate;
  /** The app that is paid (the config's app_id, or the gateway's own app). */
  appId: string;
  logger: Logger;
  /** Extra fields for the health answer (e.g. the Lightning backend of the Sluice beside it). */
  healthDetails?: () => Record<string, unknown>;
  /**
   * Origin of the Sluice API beside the gateway: when set, `/v1/paycall/*` (buying and
   * refunding chains) is forwarded there instead of upstream, so clients that reach only
   * the gateway can buy what its 402s ask for.
   */
  paycallApiOrigin?: string;
  /**
   * The Sluice API in this same process (`sluice gateway`): `/v1/paycall/*` is handed to it
   * without a socket (Fastify's inject), from the client's own address (the socket's, or
   * with `trust_forwarded_headers` the last X-Forwarded-For entry). The API's per-address
   * rate limit of unauthenticated routes (buying a chain) then counts each client apart;
   * over a socket every purchase would come from the gateway's 127.0.0.1, one shared bucket.
   * Takes precedence over `paycallApiOrigin`.
   */
  paycallApi?: InProcessApi;
}

/** What the gateway needs of a Fastify instance to call it in process. */
export interface InProcessApi {
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
}

/** The Sluice API paths the gateway serves itself when `paycallApi` or `paycallApiOrigin` is set. */
export const PAYCALL_API_PREFIX = '/v1/paycall/';

export interface Gateway {
  readonly http: FastifyInstance;
  /** Listens on the config's address; resolves with the base URL. */
  listen(): Promise<string>;
  /** Stops accepting, lets requests in progress finish, cuts WebSocket tunnels. */
  close(): Promise<void>;
}

type Verdict =
  | { kind: 'forward'; responseHeaders: Record<string, string>; stripHeaders: string[] }
  | { kind: 'refuse'; status: number; headers: Record<string, string | string[]>; body: unknown };

function refuse(status: number, code: ErrorCode, message: string): Verdict {
  return { kind: 'refuse', status, headers: {}, body: errorBody(code, message) };
}

interface Judging {
  judge: PayCallJudge;
  gate: PayCallGate;
  limiter: ChallengeLimiter | null;
  trustForwardedHeaders: boolean;
}

/** The client's address: the socket's, or behind a trusted proxy the one it appended last. */
function clientAddress(request: http.IncomingMessage, trustForwardedHeaders: boolean): string {
  const forwardedFor = request.headers['x-forwarded-for'];
  if (trustForwardedHeaders && typeof forwardedFor === 'string' && forwardedFor.trim() !== '') {
    return forwardedFor.split(',').pop()?.trim() ?? 'unknown';
  }
  return request.socket.remoteAddress ?? 'unknown';
}

/**
 * One pass per request: the path is read, checked and matched once, and the claimed
 * credentials found once, for both the challenge limiter and the judge.
 */
function judgeRequest(judging: Judging, request: http.IncomingMessage): Verdict | Promise<Verdict> {
  const { judge, gate, limiter } = judging;
  const method = request.method ?? 'GET';
  const path = pathOf(request.url ?? '/');
  const ambiguous = ambiguousPathReason(path);
  if (ambiguous !== null) return refuse(400, 'invalid_request', `${ambiguous}; the gateway forwards only unambiguous paths`);
  const match = judge.routes.match(method, path);
  if (match === null) return refuse(404, 'not_found', `no route of the gateway config matches ${method} ${path}`);
  const gateRequest: GateRequest = { method, path, headers: request.headers };
  const stripHeaders = credentialHeadersToStrip(gate, gateRequest);
  // Only a priced request without a credential would be challenged (an invoice minted).
  if (limiter !== null && match.rule.priceMsat > 0n && stripHeaders.length === 0 && !limiter.take(clientAddress(request, judging.trustForwardedHeaders))) {
    return {
      kind: 'refuse',
      status: 429,
      headers: { 'retry-after': String(limiter.retryAfterS()) },
      body: errorBody('rate_limited', 'too many payment challenges for this address; retry after the Retry-After header'),
    };
  }
  return judge.decideMatched(gateRequest, match.rule, stripHeaders).then(verdictOf);
}

function verdictOf(decision: MatchedDecision): Verdict {
  if (decision.kind === 'refused') return { kind: 'refuse', status: decision.status, headers: decision.responseHeaders, body: decision.body };
  return { kind: 'forward', responseHeaders: decision.responseHeaders, stripHeaders: decision.stripHeaders };
}

/** The registry code for a 4xx status the gateway passes on (see docs/errors.md). */
const CLIENT_ERROR_CODES: ReadonlyMap<number, ErrorCode> = new Map<number, ErrorCode>([
  [400, 'invalid_request'],
  [404, 'not_found'],
  [405, 'method_not_allowed'],
  [413, 'body_too_large'],
  [415, 'unsupported_media_type'],
  [429, 'rate_limited'],
]);

/** A 4xx without a code of its own (408, 414, 431, ...) keeps its status with `invalid_request`. */
function clientErrorCode(status: number): ErrorCode {
  return CLIENT_ERROR_CODES.get(status) ?? 'invalid_request';
}

/**
 * Why a `/v1/paycall/*` request got no answer from the Sluice API. Refused before anything
 * was sent: nothing happened. Cut later: the API may have acted (a chain bought, a refund
 * started), which the client can check with GET /v1/paycall/chains/:id.
 */
function paymentServiceFailure(error: Error & { code?: string; cause?: unknown }): { cause: string; message: string } {
  const cause = (error.cause as { code?: string } | undefined)?.code ?? error.code ?? error.message;
  const neverSent = cause === 'ECONNREFUSED' || cause === 'ENOTFOUND' || cause === 'UND_ERR_CONNECT_TIMEOUT' || cause === 'EAI_AGAIN';
  return {
    cause,
    message: neverSent
      ? `the payment service (the Sluice API behind the gateway) could not be reached (${cause}); nothing was done, retry later`
      : `the payment service (the Sluice API behind the gateway) did not answer (${cause}); the request may have been applied: check the chain before buying again`,
  };
}

function upstreamFailure(error: Error & { code?: string; statusCode?: number; cause?: unknown }): { status: number; code: ErrorCode; message: string } {
  const causeCode = (error.cause as { code?: string } | undefined)?.code;
  const timedOut = error.statusCode === 504 || error.code === 'UND_ERR_CONNECT_TIMEOUT' || causeCode === 'UND_ERR_HEADERS_TIMEOUT' || causeCode === 'UND_ERR_BODY_TIMEOUT';
  if (timedOut) return { status: 504, code: 'upstream_timeout', message: 'the upstream did not answer in time' };
  return { status: 502, code: 'upstream_unavailable', message: `the upstream could not be reached (${causeCode ?? error.code ?? error.message})` };
}

export async function createGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, logger } = deps;
  const judge = createPayCallJudge({ gate: deps.gate, appId: deps.appId, routes: createRoutePrices(config.routes), service: config.service });
  const judging: Judging = {
    judge,
    gate: deps.gate,
    limiter: config.challengesPerMinute === 0 ? null : createChallengeLimiter({ perMinute: config.challengesPerMinute }),
    trustForwardedHeaders: config.trustForwardedHeaders,
  };
  const upstreamUrl = (pathAndQuery: string): URL => new URL(config.upstreamBasePath + pathAndQuery, config.upstreamOrigin);

  const app: FastifyInstance = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // A URL the router cannot decode ("/%zz"): answered in Sluice's error shape, not Fastify's.
    frameworkErrors: (error: FastifyError, _request: unknown, reply: FastifyReply) => {
      const status = error.statusCode ?? 400;
      void reply.code(status).send(errorBody(status >= 500 ? 'internal_error' : clientErrorCode(status), error.message));
    },
    // One log line per request would cost more than the proxying itself at load.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
    // Uploads may be slow and large: the upstream decides; the gateway only streams.
    requestTimeout: 0,
  });

  // Bodies are never parsed: the raw request stream goes upstream as it arrives.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  const cors = config.cors === null ? null : createCorsPolicy(config.cors);
  // Upstream answers: the gateway's CORS headers (set below on every reply) win over the upstream's own.
  const corsUpstreamHeaders = (headers: http.IncomingHttpHeaders): http.IncomingHttpHeaders => (cors === null ? headers : cors.upstreamAnswerHeaders(headers));

  let closing = false;
  // A callback hook, not an async one: no promise per request for what is usually nothing.
  app.addHook('onRequest', (request, reply, done) => {
    if (cors !== null) {
      // A preflight is answered here, before pricing and the challenge limiter: it is free.
      const preflight = cors.preflightHeaders(request.method, request.headers);
      if (preflight !== null) return void reply.code(204).headers(preflight).send();
      reply.headers(cors.answerHeaders(request.headers));
    }
    if (closing) {
      reply.header('connection', 'close');
      return void reply.code(503).send(errorBody('shutting_down'));
    }
    done();
  });
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status < 400 || status >= 500) {
      request.log.error({ err: error }, 'gateway error');
      return reply.code(500).send(errorBody('internal_error', 'internal error'));
    }
    // Fastify's own refusal keeps its status (415 for an unreadable Content-Type, ...).
    return reply.code(status).send(errorBody(clientErrorCode(status), error.message));
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('not_found', `no route ${request.method} ${pathOf(request.url)}`));
  });

  const health = async (): Promise<{ status: number; body: Record<string, unknown> }> => {
    const upstream: UpstreamProbe = await probeUpstream(upstreamUrl(config.upstreamHealthPath), Math.min(config.upstreamTimeoutMs, 5_000));
    return {
      status: upstream.reachable ? 200 : 503,
      body: { status: upstream.reachable ? 'ok' : 'upstream_unreachable', gateway: 'ok', upstream, routes: config.routes.length, ...deps.healthDetails?.() },
    };
  };

  // Two sibling contexts, each with its own reply.from: the Sluice API and the upstream.
  if (deps.paycallApi !== undefined) {
    const api = deps.paycallApi;
    app.all(PAYCALL_API_PREFIX + '*', async (request, reply) => {
      const raw = request.raw;
      // Only the pay-per-call routes go to the Sluice API: "/v1/paycall/../apps" must not.
      const ambiguous = ambiguousPathReason(pathOf(raw.url ?? '/'));
      if (ambiguous !== null) return reply.code(400).send(errorBody('invalid_request', ambiguous));
      let answer: LightMyRequestResponse;
      // No connection in between, so nothing hop-by-hop to remove (Transfer-Encoding tells the
      // API a body follows); X-Forwarded-Proto/Host as the gateway sets them for any upstream.
      // The client's address is the request's own (remoteAddress): no X-Forwarded-For or
      // Forwarded goes in, or an API trusting proxies (SLUICE_TRUSTED_PROXIES) in the client's
      // range would read addresses the client wrote itself.
      const headers: Record<string, string | string[] | undefined> = { ...raw.headers, ...forwardedHeaders(raw, config) };
      delete headers['x-forwarded-for'];
      delete headers.forwarded;
      try {
        answer = await api.inject({
          method: raw.method as InjectOptions['method'],
          url: raw.url ?? '/',
          headers: headers as InjectOptions['headers'],
          // The unread body stream (the catch-all parser above), streamed into the API, whose
          // own body limit applies; none for a request without a body.
          payload: request.body as InjectOptions['payload'],
          remoteAddress: clientAddress(raw, config.trustForwardedHeaders),
        });
      } catch (error) {
        // Inject fails only if the API cannot take requests at all (it failed to start).
        logger.error({ err: error }, 'the Sluice API in this process did not answer');
        return reply.code(503).send(errorBody('payment_service_unavailable', 'the payment service (the Sluice API behind the gateway) did not answer; retry later'));
      }
      return reply
        .code(answer.statusCode)
        .headers(corsUpstreamHeaders(downstreamResponseHeaders(answer.headers as http.IncomingHttpHeaders, {})))
        .send(answer.rawPayload);
    });
  } else if (deps.paycallApiOrigin !== undefined) {
    const origin = deps.paycallApiOrigin;
    await app.register(async (sluiceApi) => {
      await sluiceApi.register(replyFrom, { base: origin, disableRequestLogging: true, retryMethods: [] });
      sluiceApi.all(PAYCALL_API_PREFIX + '*', async (request, reply) => {
        // Only the pay-per-call routes go to the Sluice API: "/v1/paycall/../apps" must not.
        const ambiguous = ambiguousPathReason(pathOf(request.raw.url ?? '/'));
        if (ambiguous !== null) return reply.code(400).send(errorBody('invalid_request', ambiguous));
        const forwarded = forwardedHeaders(request.raw, config);
        return reply.from(request.raw.url ?? '/', {
          rewriteRequestHeaders: (_request, headers) => upstreamRequestHeaders(headers as http.IncomingHttpHeaders, [], forwarded),
          rewriteHeaders: (headers) => corsUpstreamHeaders(downstreamResponseHeaders(headers as http.IncomingHttpHeaders, {})),
          onError: (errorReply, { error }) => {
            const failure = paymentServiceFailure(error);
            logger.error({ err: error.message, cause: failure.cause }, 'the Sluice API beside the gateway did not answer');
            errorReply.code(503).send(errorBody('payment_service_unavailable', failure.message));
          },
        });
      });
    });
  }

  const onUpstreamError = (errorReply: FastifyReply<RouteGenericInterface, RawServerBase>, { error }: { error: Error }): void => {
    const failure = upstreamFailure(error);
    logger.warn({ code: failure.code, err: error.message }, 'upstream request failed');
    errorReply.code(failure.status).send(errorBody(failure.code, failure.message));
  };
  await app.register(async (upstream) => {
    await upstream.register(replyFrom, {
      base: config.upstreamOrigin,
      disableRequestLogging: true,
      // A request is sent upstream once, except that an idempotent one (no body) whose
      // pooled connection turns out to be closed by the upstream (a keep-alive race, the
      // socket error comes before any answer) is tried once more on a fresh connection: the
      // caller has paid for an answer. reply-from also retries a GET answered 503 unless
      // a retry count is set, which it is here, so a 503 is passed on as it is.
      retryMethods: ['GET', 'HEAD', 'OPTIONS'],
      undici: {
        connections: config.upstreamConnections,
        headersTimeout: config.upstreamTimeoutMs,
        bodyTimeout: config.upstreamTimeoutMs,
        // reply-from would otherwise skip certificate checks for https upstreams.
        connect: { rejectUnauthorized: true },
      },
    });

    upstream.all('*', async (request, reply) => {
      const raw = request.raw;
      if (pathOf(raw.url ?? '/') === config.healthPath) {
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          return reply.code(405).header('allow', 'GET, HEAD').send(errorBody('method_not_allowed', `the health check answers GET and HEAD, not ${request.method}`));
        }
        const answer = await health();
        return reply.code(answer.status).header('cache-control', 'no-store').send(answer.body);
      }
      const verdict = await judgeRequest(judging, raw);
      if (verdict.kind === 'refuse') return reply.code(verdict.status).headers(verdict.headers).send(verdict.body);
      const forwarded = forwardedHeaders(raw, config);
      // Also set here, not only in rewriteHeaders: an upstream failure's answer carries the balance too.
      reply.headers(verdict.responseHeaders);
      return reply.from(config.upstreamBasePath + (raw.url ?? '/'), {
        retriesCount: 1,
        rewriteRequestHeaders: (_request, headers) => upstreamRequestHeaders(headers as http.IncomingHttpHeaders, verdict.stripHeaders, forwarded),
        rewriteHeaders: (headers) => corsUpstreamHeaders(downstreamResponseHeaders(headers as http.IncomingHttpHeaders, verdict.responseHeaders)),
        onError: onUpstreamError,
      });
    });
  });

  const tunnels = new Set<Duplex>();
  const onUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const method = request.method ?? 'GET';
    const url = request.url ?? '/';
    const answer = (refusal: UpgradeRefusal): void => writeSocketResponse(socket, refusal);
    if (closing) return answer({ status: 503, headers: {}, body: errorBody('shutting_down') });
    if (pathOf(url) === config.healthPath) return answer({ status: 404, headers: {}, body: errorBody('not_found', 'the health check is not a WebSocket') });
    // Inside a promise: a throw (a bug) is answered 500 below, never left to crash the process.
    new Promise<Verdict>((resolve) => resolve(judgeRequest(judging, request))).then(
      (verdict) => {
        if (verdict.kind === 'refuse') return answer({ status: verdict.status, headers: verdict.headers, body: verdict.body });
        const target = upstreamUrl(url);
        tunnelUpgrade(request, socket, head, {
          target,
          method,
          headers: { ...upstreamRequestHeaders(request.headers, verdict.stripHeaders, forwardedHeaders(request, config), { upgrade: true }), host: target.host },
          responseHeaders: verdict.responseHeaders,
          timeoutMs: config.upstreamTimeoutMs,
          onUpstreamError: (kind, error) => {
            logger.warn({ err: error.message }, 'upstream upgrade failed');
            return kind === 'timeout'
              ? { status: 504, headers: verdict.responseHeaders, body: errorBody('upstream_timeout', 'the upstream did not answer the upgrade in time') }
              : { status: 502, headers: verdict.responseHeaders, body: errorBody('upstream_unavailable', `the upstream could not be reached (${(error as { code?: string }).code ?? error.message})`) };
          },
          track: (sockets) => {
            for (const one of sockets) {
              tunnels.add(one);
              one.once('close', () => tunnels.delete(one));
            }
          },
        });
      },
      (error: unknown) => {
        logger.error({ err: error }, 'gateway upgrade error');
        answer({ status: 500, headers: {}, body: errorBody('internal_error', 'internal error') });
      },
    );
  };
  app.server.on('upgrade', onUpgrade);

  await app.ready();
  let closed: Promise<void> | null = null;
  return {
    http: app,
    async listen() {
      await app.listen({ host: config.listen.host, port: config.listen.port });
      const address = app.server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${host}:${address.port}`;
    },
    close() {
      closed ??= (async () => {
        closing = true;
        for (const socket of tunnels) socket.destroy();
        await app.close();
      })();
      return closed;
    },
  };
}
