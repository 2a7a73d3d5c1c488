/**
 * Pay per call for a plain `node:http` server: wrap the request listener, and priced
 * routes are served only once paid.
 *
 * @example
 * ```ts
 * const gate = createPayCallGate([chainScheme, l402Scheme]);
 * const server = http.createServer(
 *   withPayCall({ gate, appId, routes: [{ path: '/paid/*', price_msat: '5000' }] }, (req, res) => {
 *     res.end(`paid with ${req.paycall?.scheme}`);
 *   }),
 * );
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { applyAllowed, createPayCallJudge, writeRefusal, type PaidCall, type PayCallOptions } from './core.js';

/** A node request after the gate: `paycall` is set on priced requests that were paid. */
export type PaidIncomingMessage = IncomingMessage & { paycall?: PaidCall };

export type PaidRequestListener = (request: PaidIncomingMessage, response: ServerResponse) => void | Promise<void>;

export interface WithPayCallOptions extends PayCallOptions {
  /** Told when the gate throws (a bug); the request is answered 500 internal_error. */
  onError?: (error: unknown) => void;
}

/**
 * Returns a request listener that runs the gate before `listener`. A refused request is
 * answered here (status, challenge headers, JSON error with `price_msat`) and never reaches
 * the listener.
 */
export function withPayCall(options: WithPayCallOptions, listener: PaidRequestListener): (request: IncomingMessage, response: ServerResponse) => void {
  const judge = createPayCallJudge(options);
  return (request, response) => {
    judge
      .decide({ method: request.method ?? 'GET', url: request.url ?? '/', headers: request.headers })
      .then(async (decision) => {
        if (decision.kind === 'refused') {
          writeRefusal(response, decision);
          return;
        }
        if (decision.kind === 'allowed') {
          applyAllowed(request.headers, response, decision);
          (request as PaidIncomingMessage).paycall = decision.paid;
        }
        await listener(request, response);
      })
      .catch((error: unknown) => {
        options.onError?.(error);
        if (response.headersSent) {
          response.destroy();
          return;
        }
        const body = JSON.stringify({ error: { code: 'internal_error', message: 'internal error' } });
        response.writeHead(500, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
      });
  };
}
