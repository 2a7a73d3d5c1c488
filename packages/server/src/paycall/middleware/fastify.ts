/**
 * Pay per call for Fastify: an `onRequest` hook, so a refused call is answered before its
 * body is read and before any handler runs.
 *
 * `payCallFastify` is a plugin that is not encapsulated (as if wrapped in fastify-plugin):
 * registered at the root, it prices every route of the instance by the rules given.
 *
 * @example
 * ```ts
 * await app.register(payCallFastify, { gate, appId, routes: [{ path: '/paid/*', price_msat: '5000' }] });
 * app.get('/paid/joke', async (request) => ({ paid_with: request.paycall?.scheme }));
 * ```
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { createPayCallJudge, type PaidCall, type PayCallOptions } from './core.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by payCallFastify on priced requests that were paid; null otherwise. */
    paycall: PaidCall | null;
  }
}

/**
 * Any Fastify instance, whatever its server, logger and type provider: the hook reads only
 * the method, URL and headers.
 */
type AnyFastifyInstance = FastifyInstance<any, any, any, any, any>;

/** Adds the gate to `app` directly (no plugin), for callers that prefer a function. */
export function addPayCallHook(app: AnyFastifyInstance, options: PayCallOptions): void {
  const judge = createPayCallJudge(options);
  if (!app.hasRequestDecorator('paycall')) app.decorateRequest('paycall', null);
  app.addHook('onRequest', async (request, reply) => {
    const decision = await judge.decide({ method: request.method, url: request.url, headers: request.headers });
    if (decision.kind === 'unpriced') return;
    if (decision.kind === 'refused') {
      return reply.code(decision.status).headers(decision.responseHeaders).type('application/json; charset=utf-8').send(decision.body);
    }
    reply.headers(decision.responseHeaders);
    for (const name of decision.stripHeaders) delete request.headers[name];
    request.paycall = decision.paid;
  });
}

const plugin: FastifyPluginAsync<PayCallOptions> = async (app, options) => {
  addPayCallHook(app, options);
};
// Fastify's documented way (what fastify-plugin sets) to keep the hook out of a child
// context, so it covers the routes of the instance that registers it.
(plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
(plugin as unknown as Record<symbol, string>)[Symbol.for('fastify.display-name')] = 'sluice-paycall';

export const payCallFastify = plugin;
