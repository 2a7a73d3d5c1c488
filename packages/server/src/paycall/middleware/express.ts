/**
 * Pay per call for Express (tested with 5): `app.use(payCallExpress({...}))` before the routes.
 * Written against a structural type of Express's middleware, so Sluice does not depend on
 * Express at run time. Routes are matched against the full path (`req.originalUrl`), so
 * patterns read the same wherever the middleware is mounted.
 *
 * @example
 * ```ts
 * const app = express();
 * app.use(payCallExpress({ gate, appId, routes: [{ path: '/paid/*', price_msat: '5000' }] }));
 * app.get('/paid/joke', (req, res) => res.json({ joke: '...', paid_with: req.paycall?.scheme }));
 * ```
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { applyAllowed, createPayCallJudge, writeRefusal, type PaidCall, type PayCallOptions } from './core.js';

/** The part of Express's `Request` the middleware reads and writes. */
export interface ExpressLikeRequest {
  method: string;
  url: string;
  /** Express sets it to the URL before mount-path stripping. */
  originalUrl?: string;
  headers: IncomingHttpHeaders;
  paycall?: PaidCall;
}

export type ExpressLikeMiddleware = (request: ExpressLikeRequest, response: ServerResponse, next: (error?: unknown) => void) => void;

export function payCallExpress(options: PayCallOptions): ExpressLikeMiddleware {
  const judge = createPayCallJudge(options);
  return (request, response, next) => {
    judge
      .decide({ method: request.method, url: request.originalUrl ?? request.url, headers: request.headers })
      .then((decision) => {
        if (decision.kind === 'refused') {
          writeRefusal(response, decision);
          return;
        }
        if (decision.kind === 'allowed') {
          applyAllowed(request.headers, response, decision);
          request.paycall = decision.paid;
        }
        next();
      }, next);
  };
}
