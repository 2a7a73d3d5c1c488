/**
 * CORS for the gateway, so a page on another origin can pay with the SDK's paying fetch:
 * preflights are answered here (never priced, never forwarded, never counted by the 402
 * challenge limiter), and every answer (402/401 refusals, forwarded upstream answers, the
 * forwarded `/v1/paycall/*` chain purchase) carries the allow-origin and exposes the
 * challenge and balance headers, which a browser would otherwise hide from the script.
 *
 * Written here rather than with @fastify/cors: that plugin registers its own `OPTIONS *`
 * route, which collides with the gateway's catch-all proxy routes, and it knows nothing of
 * the upstream's own Access-Control-* headers, which must not override the gateway's.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayCors } from './config.js';

/** What a paying client sends; always allowed, whatever the preflight asks. */
const PAYING_REQUEST_HEADERS = ['Sluice-Chain', 'Authorization', 'Content-Type'];
/** What the SDK reads from answers: the challenges, the balances, and when to retry a 429. */
export const EXPOSED_HEADERS = 'Sluice-Chain-Offer, Sluice-Chain-Balance, Sluice-L402-Balance, WWW-Authenticate, Retry-After';
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';
/** An HTTP token (RFC 9110 field-name): anything else asked for is not echoed. */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
const MAX_ECHOED_HEADERS = 32;

export interface GatewayCorsPolicy {
  /** The headers every answer to this request carries (Vary always; allow-origin when the origin is allowed). */
  answerHeaders(request: IncomingHttpHeaders): Record<string, string>;
  /** For a preflight (OPTIONS with Access-Control-Request-Method): the headers of its 204; otherwise null. */
  preflightHeaders(method: string, request: IncomingHttpHeaders): Record<string, string> | null;
  /** The upstream's answer headers with its own Access-Control-* removed and Origin added to Vary. */
  upstreamAnswerHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function createCorsPolicy(cors: GatewayCors): GatewayCorsPolicy {
  const allowed = cors.origins === '*' ? null : new Set(cors.origins);
  const allowOrigin = (origin: string | undefined): string | null => {
    if (origin === undefined) return null;
    if (allowed === null) return '*';
    return allowed.has(origin) ? origin : null;
  };
  const answerHeaders = (request: IncomingHttpHeaders): Record<string, string> => {
    const origin = allowOrigin(single(request.origin));
    if (origin === null) return { vary: 'Origin' };
    return { vary: 'Origin', 'access-control-allow-origin': origin, 'access-control-expose-headers': EXPOSED_HEADERS };
  };
  return {
    answerHeaders,
    preflightHeaders(method, request): Record<string, string> | null {
      if (method !== 'OPTIONS' || single(request['access-control-request-method']) === undefined) return null;
      const origin = allowOrigin(single(request.origin));
      // A disallowed origin still gets its 204 (a preflight is never forwarded nor priced), but
      // without allow-origin, so the browser refuses the real request.
      if (origin === null) return { vary: 'Origin' };
      const asked = (single(request['access-control-request-headers']) ?? '')
        .split(',')
        .map((name) => name.trim())
        .filter((name) => HEADER_NAME.test(name))
        .slice(0, MAX_ECHOED_HEADERS);
      const names = new Map<string, string>();
      for (const name of [...PAYING_REQUEST_HEADERS, ...asked]) if (!names.has(name.toLowerCase())) names.set(name.toLowerCase(), name);
      return {
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
        'access-control-allow-origin': origin,
        'access-control-allow-methods': ALLOWED_METHODS,
        'access-control-allow-headers': [...names.values()].join(', '),
        'access-control-max-age': String(cors.maxAgeS),
      };
    },
    upstreamAnswerHeaders(headers) {
      const copy: IncomingHttpHeaders = {};
      for (const [name, value] of Object.entries(headers)) if (!name.toLowerCase().startsWith('access-control-')) copy[name] = value;
      const vary = single(copy.vary);
      if (vary === undefined || vary.trim() === '') copy.vary = 'Origin';
      else if (vary.trim() !== '*' && !vary.toLowerCase().split(',').some((name) => name.trim() === 'origin')) copy.vary = `${vary}, Origin`;
      return copy;
    },
  };
}
