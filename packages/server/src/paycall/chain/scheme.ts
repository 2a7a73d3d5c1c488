/**
 * The `chain` payment scheme for the pay-per-call gate: a request carrying
 * `Sluice-Chain: <chain_id> <index> <link>` pays with a hash-chain token.
 *
 * Threat model: the header comes from anyone. A malformed one is refused before any
 * lookup; a well-formed one is judged by the chain service, which accepts each index at
 * most once and answers only after the new index is durable (see service.ts). A chain
 * pays only for routes of the app it was bought from.
 */
import { ERROR_CODES } from '../../errors/codes.js';
import type { CallPrice, GateOutcome, GateRequest, PaymentScheme } from '../gate.js';
import { chainErrorCode } from './errors.js';
import {
  CHAIN_BALANCE_HEADER, CHAIN_HEADER, CHAIN_OFFER_HEADER, formatBalanceHeader, formatOfferHeader, parseChainHeader, stepsForPrice,
} from './math.js';
import type { CallCost, ChainFail, ChainService, SpendAck } from './service.js';

export interface ChainSchemeOptions {
  /**
   * Absolute URL of `POST /v1/paycall/chains` on the Sluice API, put in the offer. A
   * function may build it per request (for example from the Host header).
   */
  buyUrl: string | ((request: GateRequest) => string);
}

export function createChainScheme(chains: ChainService, options: ChainSchemeOptions): PaymentScheme {
  const buyUrl = (request: GateRequest): string => (typeof options.buyUrl === 'function' ? options.buyUrl(request) : options.buyUrl);

  const offer = (request: GateRequest, price: CallCost): Record<string, string> => {
    const stepMsat = chains.stepMsatFor(price.appId);
    return {
      [CHAIN_OFFER_HEADER]: formatOfferHeader({ buyUrl: buyUrl(request), appId: price.appId, stepMsat, stepsPerCall: stepsForPrice(price.priceMsat, stepMsat) }),
    };
  };

  /** How a spend's result reads to the gate. `call` is the CallPrice the scheme passed. */
  const outcomeOf = (spent: SpendAck | ChainFail, call: CallCost, request: GateRequest): GateOutcome => {
    if (!spent.ok) {
      const code = chainErrorCode(spent);
      const status = ERROR_CODES[code].status as 400 | 401 | 402 | 429 | 503;
      return {
        kind: 'refused',
        status,
        code,
        message: spent.detail ?? ERROR_CODES[code].meaning,
        // A 402 says where to buy a chain that can pay.
        responseHeaders: status === 402 ? offer(request, call) : {},
      };
    }
    return {
      kind: 'allowed',
      scheme: 'chain',
      chargedMsat: (BigInt(spent.steps) * spent.stepMsat) as CallPrice['priceMsat'],
      responseHeaders: { [CHAIN_BALANCE_HEADER]: formatBalanceHeader(spent.remainingSteps, spent.stepMsat, spent.index) },
    };
  };

  return {
    name: 'chain',
    credentialHeaders: [CHAIN_HEADER],

    claims(request) {
      return request.headers[CHAIN_HEADER] !== undefined;
    },

    authorize(request, price): Promise<GateOutcome> {
      // Not an async function: the hot path makes one promise per call, the service's.
      const credential = parseChainHeader(request.headers[CHAIN_HEADER]);
      if (!credential) {
        return Promise.resolve({ kind: 'refused', status: 401, code: 'chain_malformed', message: ERROR_CODES.chain_malformed.meaning, responseHeaders: {} });
      }
      if (price.priceMsat === 0n) return Promise.resolve({ kind: 'allowed', scheme: 'free', chargedMsat: price.priceMsat, responseHeaders: {} });
      // A CallPrice is a CallCost (app and price): passed as is, no object per call. The
      // answer is mapped inside the service's promise (spendThen), not with a `.then`, by
      // one function shared by every call (the request rides along as the context).
      return chains.spendThen(credential.chainId, credential.index, credential.link, price, outcomeOf, request);
    },

    async challenge(request, price) {
      return offer(request, price);
    },
  };
}
