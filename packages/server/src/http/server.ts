/**
 * The HTTP API: Fastify with REST under /v1, the OpenAPI document at /openapi.json,
 * errors as {"error":{"code","message"}}, body size limits, per-key rate limits and
 * bearer-key auth. Routes live with their feature (apps/routes.ts, ...); this file only
 * sets up what they share.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { ApiError, errorBody, type ErrorCode } from '../errors/codes.js';
import type { AppService, Principal } from '../apps/service.js';

/** 'stream': an app key, or the payer token of the stream named in the route. */
export type AuthLevel = 'none' | 'admin' | 'app' | 'any' | 'stream';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthLevel;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export type SluiceFastify = FastifyInstance<
  import('node:http').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;

export interface HttpServerOptions {
  logger: Logger;
  apps: AppService;
  /** Resolves a payer token to the stream it opens (streams module). */
  authenticatePayer?: (payerToken: string) => Promise<{ streamId: string } | null>;
  bodyLimitBytes: number;
  rateLimitPerMinute: number;
  /** Proxies whose X-Forwarded-For names the client (request.ip); empty: the socket's address, always. */
  trustedProxies?: string[];
  version: string;
}

/**
 * The key in `Authorization: Bearer <key>`: null without the header, '' when it is not of
 * that form. Routes that resolve keys themselves (the dashboard's, subscriptions') and the
 * WebSocket upgrade (a plain http.IncomingMessage) use this too, so every route reads the
 * header the same way.
 */
export function bearerKey(request: { headers: { authorization?: string | undefined } }): string | null {
  const header = request.headers.authorization;
  if (header === undefined) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? (match[1] as string) : '';
}

/** `bearerKey`, refused as the shared auth hook refuses it: no header `unauthorized`, a malformed one `invalid_api_key`. */
export function requireBearerKey(request: { headers: { authorization?: string | undefined } }): string {
  const key = bearerKey(request);
  if (key === null) throw new ApiError('unauthorized');
  if (key === '') throw new ApiError('invalid_api_key');
  return key;
}

/** Maps Fastify's own errors (parsing, validation, limits) to our codes. */
function codeForFastifyError(error: FastifyError): { code: ErrorCode; message: string } {
  if (error.validation) {
    const first = error.validation[0];
    if (first?.keyword === 'additionalProperties') {
      const field = (first.params as { additionalProperty?: string }).additionalProperty ?? '?';
      return { code: 'unknown_field', message: `unknown field ${JSON.stringify(field)}` };
    }
    const where = first?.instancePath ? first.instancePath.replace(/^\//, '').replace(/\//g, '.') : error.validationContext ?? 'body';
    return { code: 'invalid_request', message: `${where} ${first?.message ?? 'is invalid'}` };
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { code: 'invalid_json', message: error.message };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'body_too_large', message: error.message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { code: 'unsupported_media_type', message: error.message };
    case 'FST_ERR_BAD_URL':
      return { code: 'invalid_request', message: error.message };
  }
  if (error instanceof SyntaxError || error.statusCode === 400) return { code: 'invalid_json', message: error.message };
  if (error.statusCode === 429) return { code: 'rate_limited', message: error.message };
  if (error.statusCode === 413) return { code: 'body_too_large', message: error.message };
  if (error.statusCode === 415) return { code: 'unsupported_media_type', message: error.message };
  return { code: 'internal_error', message: 'internal error' };
}

export async function createHttpServer(options: HttpServerOptions): Promise<SluiceFastify> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    // We answer shutting_down ourselves (below) so the body has our error shape.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Behind trusted proxies request.ip is the client X-Forwarded-For names (nearest
    // untrusted hop); otherwise the header is ignored: a client could claim any address.
    trustProxy: options.trustedProxies && options.trustedProxies.length > 0 ? options.trustedProxies : false,
    // A URL the router cannot decode (`/v1/streams/%zz`) is refused before any route or error
    // handler runs: answered here in our shape, not Fastify's.
    frameworkErrors: (error: FastifyError, _request: unknown, reply: FastifyReply) => {
      const { code, message } = codeForFastifyError(error);
      void reply.code(code === 'internal_error' ? 500 : error.statusCode ?? 400).send(errorBody(code, message));
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as SluiceFastify;

  app.decorateRequest('principal', null);
  // JSON only: a text/plain body is refused with unsupported_media_type, not half-parsed.
  app.removeContentTypeParser('text/plain');

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Responses finished while draining close their connection, so a kept-alive client
  // cannot hold the shutdown open until its keep-alive timeout.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onRequest', async (_request, reply) => {
    // Requests already in progress finish; new ones arriving on kept-alive connections
    // while we drain are told to go elsewhere.
    if (closing) {
      reply.header('connection', 'close');
      throw new ApiError('shutting_down');
    }
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply: FastifyReply) => {
    if (error instanceof ApiError) {
      return reply.code(error.status).send(errorBody(error.code, error.message));
    }
    const { code, message } = codeForFastifyError(error as FastifyError);
    const status = code === 'internal_error' ? 500 : (error as FastifyError).statusCode ?? 400;
    if (code === 'internal_error') request.log.error({ err: error }, 'unhandled error');
    return reply.code(code === 'rate_limited' ? 429 : status).send(errorBody(code, message));
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(errorBody('not_found', `no route ${request.method} ${request.url.split('?')[0]}`));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Sluice API',
        version: options.version,
        description: 'Lightning micropayments: amounts are decimal strings of millisatoshis; errors are {"error":{"code","message"}} with codes from docs/errors.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  await app.register(rateLimit, {
    max: options.rateLimitPerMinute,
    timeWindow: 60_000,
    // Per key, not per address: many apps may sit behind one address. The key is hashed so
    // the limiter's memory never holds a secret.
    keyGenerator: (request) => {
      const key = bearerKey(request);
      return key ? 'key:' + createHash('sha256').update(key).digest('hex') : 'ip:' + request.ip;
    },
    errorResponseBuilder: (_request, context) => {
      const error = new ApiError('rate_limited', `rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`);
      return Object.assign(error, { statusCode: 429 });
    },
  });

  app.addHook('preHandler', async (request) => {
    const level = request.routeOptions.config.auth ?? 'none';
    if (level === 'none') return;
    const key = requireBearerKey(request);
    if (key.startsWith('pt_') && options.authenticatePayer) {
      const payer = await options.authenticatePayer(key);
      if (!payer) throw new ApiError('invalid_api_key', 'the payer token is unknown');
      if (level !== 'stream' && level !== 'any') throw new ApiError('forbidden', 'a payer token cannot use this route');
      request.principal = { kind: 'payer', streamId: payer.streamId };
      return;
    }
    const result = await options.apps.authenticate(key);
    if (!result.ok) throw new ApiError('invalid_api_key');
    const principal = result.principal;
    if (level === 'admin' && principal.kind !== 'admin') throw new ApiError('forbidden', 'this route needs the admin key');
    if ((level === 'app' || level === 'stream') && principal.kind !== 'app') throw new ApiError('forbidden', 'this route needs an app API key');
    request.principal = principal;
  });

  app.get('/openapi.json', { config: { auth: 'none' }, schema: { hide: true } }, async () => app.swagger());

  return app;
}

/** The calling app; routes with auth 'app' always have one. */
export function appOf(request: FastifyRequest): { id: string; accountId: string } {
  const principal = request.principal;
  if (principal?.kind !== 'app') throw new ApiError('forbidden', 'this route needs an app API key');
  return principal.app;
}
