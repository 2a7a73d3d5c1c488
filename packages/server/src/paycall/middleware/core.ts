/**
 * What every pay-per-call delivery does before a handler runs, whatever the framework:
 * find the route's price, ask the gate, and turn its outcome into "serve, with these
 * response headers and these credential headers removed" or "answer this refusal".
 * fastify.ts, express.ts and node-http.ts only adapt this to their framework.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Msat } from '../../money/msat.js';
import { errorBody, type ErrorBody } from '../../errors/codes.js';
import type { CallPrice, GateRequest, PayCallGate } from '../gate.js';
import { payCallErrorBody, type AllowedOutcome, type CombinedPayCallGate, type PayCallErrorBody } from '../gate-combined.js';
import { ambiguousPathReason, createRoutePrices, routePricesFrom, type RoutePriceInput, type RoutePriceRule, type RoutePrices } from '../route-prices.js';

export interface PayCallOptions {
  /** The gate, usually `createPayCallGate([chainScheme, l402Scheme])`. */
  gate: PayCallGate;
  /** The app whose account receives the money. */
  appId: string;
  /**
   * Prices per route, first match wins (see route-prices.ts). Requests that match no rule
   * are not priced: the middleware lets them through untouched.
   */
  routes: readonly RoutePriceInput[] | RoutePrices;
  /** What is sold, for rules without their own `service` (default "api"). */
  service?: string;
  /**
   * Remove the payment credential headers before the handler runs (default true), so a
   * handler that logs or forwards headers cannot leak a macaroon or a chain link.
   */
  stripCredentials?: boolean;
}

/** What a handler can read about the call it serves (`req.paycall`, `request.paycall`). */
export interface PaidCall {
  scheme: AllowedOutcome['scheme'];
  chargedMsat: Msat;
  priceMsat: Msat;
  /** The rule that priced it, e.g. "/paid/*". */
  route: string;
}

/** The judgement of a request matched to a priced rule: served, or refused. */
export type MatchedDecision =
  | { kind: 'allowed'; paid: PaidCall; responseHeaders: Record<string, string>; stripHeaders: string[] }
  | { kind: 'refused'; status: number; responseHeaders: Record<string, string | string[]>; body: PayCallErrorBody | ErrorBody };

export type PayCallDecision =
  /** No rule prices this request: serve it as if there were no middleware. */
  | { kind: 'unpriced' }
  | MatchedDecision;

export interface PayCallJudge {
  /** Refuses an ambiguous path, matches the route, then judges: what the middleware calls. */
  decide(request: { method: string; url: string; headers: IncomingHttpHeaders }): Promise<PayCallDecision>;
  /**
   * Judges a request whose path the caller has already checked with `ambiguousPathReason`
   * (refusing it if ambiguous) and matched to `rule`, so a delivery that needs the match
   * itself first (the gateway's challenge limiter) does not repeat that work. `stripHeaders`,
   * when given, must be `credentialHeadersToStrip(gate, request)` for this request.
   */
  decideMatched(request: GateRequest, rule: RoutePriceRule, stripHeaders?: string[]): Promise<MatchedDecision>;
  readonly routes: RoutePrices;
}

function isRoutePrices(routes: PayCallOptions['routes']): routes is RoutePrices {
  return typeof (routes as RoutePrices).match === 'function';
}

/** The path of a request target, without its query string. */
export function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** Which headers to strip: exactly the claimed credentials when the gate can tell. */
export function credentialHeadersToStrip(gate: PayCallGate, request: GateRequest): string[] {
  const combined = gate as Partial<CombinedPayCallGate>;
  if (typeof combined.credentialHeadersIn === 'function') return combined.credentialHeadersIn(request);
  return gate.credentialHeaders.filter((name) => request.headers[name] !== undefined);
}

export function createPayCallJudge(options: PayCallOptions): PayCallJudge {
  const routes = isRoutePrices(options.routes) ? options.routes : routePricesFrom(options.routes);
  const defaultService = options.service ?? 'api';
  const strip = options.stripCredentials ?? true;
  const { gate, appId } = options;

  // One frozen price per rule, made once: the rules never change, and a call needs no copy.
  const prices = new WeakMap<RoutePriceRule, CallPrice>();
  const priceOf = (rule: RoutePriceRule): CallPrice => {
    let price = prices.get(rule);
    if (price === undefined) {
      price = Object.freeze({ priceMsat: rule.priceMsat, appId, service: rule.service ?? defaultService });
      prices.set(rule, price);
    }
    return price;
  };

  // Not an async function: the gate's promise is the only one a call makes here.
  const decideMatched = (request: GateRequest, rule: RoutePriceRule, knownStripHeaders?: string[]): Promise<MatchedDecision> => {
    // Before authorize: a scheme may not keep the request's headers as they were.
    const stripHeaders = strip ? knownStripHeaders ?? credentialHeadersToStrip(gate, request) : [];
    return gate.authorize(request, priceOf(rule)).then((outcome): MatchedDecision => {
      if (outcome.kind === 'refused') {
        return { kind: 'refused', status: outcome.status, responseHeaders: outcome.responseHeaders, body: payCallErrorBody(outcome, rule.priceMsat) };
      }
      return {
        kind: 'allowed',
        paid: { scheme: outcome.scheme, chargedMsat: outcome.chargedMsat, priceMsat: rule.priceMsat, route: rule.path },
        responseHeaders: outcome.responseHeaders,
        stripHeaders,
      };
    });
  };

  return {
    routes,
    decideMatched,
    async decide(raw) {
      const request: GateRequest = { method: raw.method, path: pathOf(raw.url), headers: raw.headers };
      // The framework routes on the decoded path; prices are matched on the path as sent. A
      // path whose decoding could differ (an encoded letter or slash, dot segments) would
      // let `/pai%64/x` reach the /paid/* handler unpriced: refused, as the gateway does.
      const ambiguous = ambiguousPathReason(request.path);
      if (ambiguous !== null) {
        return { kind: 'refused', status: 400, responseHeaders: {}, body: errorBody('invalid_request', `${ambiguous}; priced routes accept only unambiguous paths`) };
      }
      const match = routes.match(request.method, request.path);
      if (match === null) return { kind: 'unpriced' };
      return decideMatched(request, match.rule);
    },
  };
}

/** Writes a refusal on a plain node response (node:http and Express). */
export function writeRefusal(response: ServerResponse, decision: Extract<PayCallDecision, { kind: 'refused' }>): void {
  const body = JSON.stringify(decision.body);
  response.statusCode = decision.status;
  for (const [name, value] of Object.entries(decision.responseHeaders)) response.setHeader(name, value);
  response.setHeader('content-type', 'application/json; charset=utf-8');
  response.setHeader('content-length', Buffer.byteLength(body));
  response.end(body);
}

/** Applies an allowed decision to a plain node request/response before the handler runs. */
export function applyAllowed(headers: IncomingHttpHeaders, response: Pick<ServerResponse, 'setHeader'>, decision: Extract<PayCallDecision, { kind: 'allowed' }>): void {
  for (const [name, value] of Object.entries(decision.responseHeaders)) response.setHeader(name, value);
  for (const name of decision.stripHeaders) delete headers[name];
}

export { createRoutePrices, routePricesFrom };
