/**
 * The pay-per-call gate: the one question every delivery (Fastify, Express, node:http
 * middleware and the `sluice gateway` reverse proxy) asks before serving a priced route:
 * "may this request be served for this price, and what do I answer if not?"
 *
 * A gate is built from payment schemes (hash-chain tokens, L402). A request that carries
 * a scheme's credential is judged by that scheme alone; a request that carries none gets
 * a 402 whose headers hold every scheme's challenge, so a client can pick the one it
 * speaks. Deliveries never look inside a credential: they forward the outcome's status,
 * headers and error body, and strip the credentials before a request goes upstream.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../errors/codes.js';
import type { Msat } from '../money/msat.js';

/** What a gate sees of a request: enough to judge it, nothing that needs the body. */
export interface GateRequest {
  method: string;
  /** The path without the query string, as the client sent it. */
  path: string;
  headers: IncomingHttpHeaders;
}

/** The price of one call of a route, and who is paid. */
export interface CallPrice {
  priceMsat: Msat;
  /** The app whose account receives the money. */
  appId: string;
  /** A name for what is sold (L402 `services` caveat; shown in challenges). */
  service: string;
}

export type GateOutcome =
  | {
      kind: 'allowed';
      /** Which credential paid; `free` for a price of 0. */
      scheme: 'free' | 'chain' | 'l402';
      chargedMsat: Msat;
      /** Headers the response must carry (for example the remaining chain balance). */
      responseHeaders: Record<string, string>;
    }
  | {
      kind: 'refused';
      status: 400 | 401 | 402 | 429 | 503;
      code: ErrorCode;
      message: string;
      /** For a 402: every scheme's challenge (WWW-Authenticate, Sluice-Chain-Offer). */
      responseHeaders: Record<string, string | string[]>;
    };

/** One way to pay for a call. */
export interface PaymentScheme {
  readonly name: 'chain' | 'l402';
  /** True when the request carries this scheme's credential (judged by `authorize`). */
  claims(request: GateRequest): boolean;
  /**
   * Judges a request that carries this scheme's credential. Resolves only once whatever
   * it consumed (a chain link, an L402 budget step) is durable: a restart cannot accept
   * it again. Never throws for bad input: it refuses with a code.
   */
  authorize(request: GateRequest, price: CallPrice): Promise<GateOutcome>;
  /** The headers this scheme adds to a 402 for a request without a credential. */
  challenge(request: GateRequest, price: CallPrice): Promise<Record<string, string | string[]>>;
  /** Request headers that hold this scheme's credential; stripped before going upstream. */
  readonly credentialHeaders: readonly string[];
}

export interface PayCallGate {
  authorize(request: GateRequest, price: CallPrice): Promise<GateOutcome>;
  /** Every header name any scheme reads a credential from (lower case). */
  readonly credentialHeaders: readonly string[];
}
