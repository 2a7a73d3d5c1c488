/**
 * The gate every delivery asks, built from payment schemes (gate.ts):
 * - a price of 0 is served free, without looking at any credential;
 * - a request that carries a scheme's credential is judged by that scheme alone (the first
 *   scheme, in the order given, that claims it), so a bad chain link is refused with the
 *   chain's own code rather than answered with a fresh 402;
 * - a request that carries none gets 402 payment_required with every scheme's challenge, so
 *   a client picks the scheme it speaks.
 *
 * Threat model: the gate never serves a priced request unless a scheme said `allowed`;
 * a scheme that throws is a refusal (503), never a free pass.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from '../errors/codes.js';
import { formatMsat, ZERO_MSAT, type Msat } from '../money/msat.js';
import type { CallPrice, GateOutcome, GateRequest, PayCallGate, PaymentScheme } from './gate.js';

export type RefusedOutcome = Extract<GateOutcome, { kind: 'refused' }>;
export type AllowedOutcome = Extract<GateOutcome, { kind: 'allowed' }>;

/** A combined gate also says which of a request's headers are payment credentials. */
export interface CombinedPayCallGate extends PayCallGate {
  readonly schemes: readonly PaymentScheme[];
  /**
   * The headers of this request that hold a credential some scheme claims (lower case).
   * Deliveries strip exactly these before the request goes on, so an `Authorization: Bearer`
   * meant for the upstream survives while an `Authorization: L402 ...` does not.
   */
  credentialHeadersIn(request: GateRequest): string[];
}

export interface PayCallGateOptions {
  /** Told when a scheme throws (a bug or an unreachable backend); the request is refused. */
  onSchemeError?: (scheme: PaymentScheme['name'], error: unknown) => void;
}

/** The JSON body of a refusal: the usual error shape, plus the route's price. */
export interface PayCallErrorBody {
  error: { code: ErrorCode; message: string };
  price_msat: string;
}

export function payCallErrorBody(outcome: RefusedOutcome, priceMsat: Msat): PayCallErrorBody {
  return { error: { code: outcome.code, message: outcome.message }, price_msat: formatMsat(priceMsat) };
}

const FREE: AllowedOutcome = Object.freeze({ kind: 'allowed', scheme: 'free', chargedMsat: ZERO_MSAT, responseHeaders: Object.freeze({}) as Record<string, string> });

function refused(status: RefusedOutcome['status'], code: ErrorCode, message: string, responseHeaders: RefusedOutcome['responseHeaders'] = {}): RefusedOutcome {
  return { kind: 'refused', status, code, message, responseHeaders };
}

/** Adds `extra` into `into`, keeping every value of a header two schemes both set. */
export function mergeHeaders(into: Record<string, string | string[]>, extra: Record<string, string | string[]>): void {
  for (const [rawName, value] of Object.entries(extra)) {
    const name = rawName.toLowerCase();
    const existing = into[name];
    if (existing === undefined) {
      into[name] = value;
      continue;
    }
    into[name] = [...(Array.isArray(existing) ? existing : [existing]), ...(Array.isArray(value) ? value : [value])];
  }
}

function onlyHeader(request: GateRequest, name: string, value: IncomingHttpHeaders[string]): GateRequest {
  return { method: request.method, path: request.path, headers: { [name]: value } };
}

export function createPayCallGate(schemes: readonly PaymentScheme[], options: PayCallGateOptions = {}): CombinedPayCallGate {
  if (schemes.length === 0) throw new Error('createPayCallGate needs at least one payment scheme');
  const names = new Set(schemes.map((scheme) => scheme.name));
  if (names.size !== schemes.length) throw new Error('createPayCallGate: each scheme may be given once');
  const credentialHeaders = [...new Set(schemes.flatMap((scheme) => scheme.credentialHeaders.map((name) => name.toLowerCase())))];
  const reportError = (scheme: PaymentScheme['name'], error: unknown): void => options.onSchemeError?.(scheme, error);

  const challengeAll = async (request: GateRequest, price: CallPrice): Promise<RefusedOutcome> => {
    const settled = await Promise.allSettled(schemes.map((scheme) => scheme.challenge(request, price)));
    const headers: Record<string, string | string[]> = {};
    settled.forEach((result, index) => {
      if (result.status === 'fulfilled') mergeHeaders(headers, result.value);
      else reportError((schemes[index] as PaymentScheme).name, result.reason);
    });
    // A 402 without any challenge would leave the client no way to pay: say so instead.
    if (Object.keys(headers).length === 0) {
      return refused(503, 'lightning_unavailable', 'no payment scheme could issue a challenge for this call; retry later');
    }
    return refused(402, 'payment_required', `this call costs ${formatMsat(price.priceMsat)} msat: pay with one of the challenges in the response headers`, headers);
  };

  return {
    schemes,
    credentialHeaders,
    async authorize(request, price) {
      if (price.priceMsat === ZERO_MSAT) return FREE;
      const scheme = schemes.find((candidate) => candidate.claims(request));
      if (scheme === undefined) return challengeAll(request, price);
      try {
        return await scheme.authorize(request, price);
      } catch (error) {
        reportError(scheme.name, error);
        return refused(503, 'overloaded', `the ${scheme.name} scheme could not judge this call, so it was not served; retry later`);
      }
    },
    credentialHeadersIn(request) {
      const found: string[] = [];
      for (const scheme of schemes) {
        for (const rawName of scheme.credentialHeaders) {
          const name = rawName.toLowerCase();
          const value = request.headers[name];
          if (value === undefined || found.includes(name)) continue;
          if (scheme.claims(onlyHeader(request, name, value))) found.push(name);
        }
      }
      return found;
    },
  };
}
