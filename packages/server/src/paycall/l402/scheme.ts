/**
 * The `l402` payment scheme: answers a priced request without a credential with a fresh
 * macaroon bound to a fresh invoice, and serves a request whose `Authorization: L402`
 * (or `LSAT`) credential verifies and whose token still has budget for the call.
 *
 * What a token buys: `callsPerToken` calls at the price of the route that challenged,
 * written as the caveat `<service>_budget_msat = price x callsPerToken`; each call spends
 * the price of the route it calls. The invoice is for exactly that amount and credits the
 * app's account when paid. The token is valid for `tokenTtlS` seconds.
 *
 * Refusals (never served): malformed header, bad signature, wrong preimage and a violated
 * caveat are 401 (the client must not pay again for those); an expired token and an
 * exhausted budget are 402 with a fresh challenge, so a client can buy a new token.
 *
 * Renewals are bounded: a genuine token that is expired or used up gets ONE pending
 * challenge per route price, reused until its invoice is paid or close to expiring, so
 * sending an old token again and again cannot make Sluice mint an invoice per request.
 * (Requests without any credential get a fresh challenge each, as in every L402 server:
 * rate-limit public gates.)
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import { ERROR_CODES, type ErrorCode } from '../../errors/codes.js';
import type { InvoiceService } from '../../invoices/service.js';
import { MSAT_MAX, msat, type Msat } from '../../money/msat.js';
import type { CallPrice, GateOutcome, GateRequest, PaymentScheme } from '../gate.js';
import type { BudgetLedger } from './budget.js';
import { mintCaveats } from './caveats.js';
import { challengeHeaders, claimsL402 } from './credential.js';
import { mintMacaroon } from './macaroon.js';
import type { L402Verifier } from './verifier.js';

export const L402_BALANCE_HEADER = 'sluice-l402-balance';

export interface L402SchemeOptions {
  /** How many calls (at the challenging route's price) one token buys. */
  callsPerToken: number;
  /** How long a token is valid after it is minted. */
  tokenTtlS: number;
  /** Expiry of the invoice in a challenge. */
  invoiceExpiryS: number;
  /** The capability a request exercises (`<service>_capabilities`); default its method in lower case. */
  capabilityOf?: (request: GateRequest, price: CallPrice) => string | null;
}

export interface L402SchemeDeps extends L402SchemeOptions {
  secret: Buffer;
  verifier: L402Verifier;
  budgets: BudgetLedger;
  invoices: InvoiceService;
  clock: Clock;
  logger: Logger;
}

/**
 * Service names go into caveat conditions (`<service>_valid_until`), where `_` separates
 * the name from the condition: anything but letters, digits, `.` and `-` becomes `-`.
 */
export function caveatServiceName(service: string): string {
  const cleaned = service.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 64);
  return cleaned.length > 0 ? cleaned : 'default';
}

/** Some L402 clients strip the scheme name with a plain text replace; keep it out of tokens. */
const CONFUSING = /L402|LSAT/;

/** Renewal challenges held at most (one per old token and route price); the oldest go first. */
export const MAX_PENDING_RENEWALS = 10_000;

interface Renewal {
  headers: Promise<Record<string, string | string[]>>;
  /** When its invoice expires (Unix ms); until the invoice exists, a bound from its expiry setting. */
  expiresAt: number;
  paymentHash: string | null;
}

export function createL402Scheme(deps: L402SchemeDeps & { maxPendingRenewals?: number }): PaymentScheme {
  const { verifier, budgets, invoices, clock, logger } = deps;
  if (!Number.isSafeInteger(deps.callsPerToken) || deps.callsPerToken < 1) throw new RangeError('callsPerToken must be a positive integer');
  const capabilityOf = deps.capabilityOf ?? ((request: GateRequest) => request.method.toLowerCase());
  const maxRenewals = deps.maxPendingRenewals ?? MAX_PENDING_RENEWALS;
  /** By `<token id> <app> <service> <price>`: the challenge an old token is answered with. */
  const renewals = new Map<string, Renewal>();
  const renewalByHash = new Map<string, string>();
  const dropRenewal = (key: string, renewal: Renewal): void => {
    if (renewals.get(key) === renewal) renewals.delete(key);
    if (renewal.paymentHash !== null && renewalByHash.get(renewal.paymentHash) === key) renewalByHash.delete(renewal.paymentHash);
  };
  // A paid renewal has done its job: the next request with the old token gets a new one.
  invoices.onPaid((invoice) => {
    const key = renewalByHash.get(invoice.paymentHash);
    const renewal = key === undefined ? undefined : renewals.get(key);
    if (key !== undefined && renewal) dropRenewal(key, renewal);
  });

  /** Minted challenge headers and the invoice's expiry and hash (null: no challenge could be made). */
  const mint = async (price: CallPrice): Promise<{ headers: Record<string, string | string[]>; expiresAt: number; paymentHash: string } | null> => {
    const service = caveatServiceName(price.service);
    const amount = price.priceMsat * BigInt(deps.callsPerToken);
    if (amount > MSAT_MAX) {
      logger.error({ service, priceMsat: price.priceMsat.toString() }, 'L402: price x calls per token is too large for one invoice; no L402 challenge');
      return null;
    }
    const created = await invoices.createInvoice(price.appId, {
      amountMsat: msat(amount),
      description: `L402 token: ${deps.callsPerToken} call${deps.callsPerToken === 1 ? '' : 's'} of ${service}`,
      expiryS: deps.invoiceExpiryS,
      idempotencyKey: null,
    });
    if (!created.ok) {
      logger.warn({ service, error: created.error }, 'L402: could not create the invoice for a challenge; no L402 challenge');
      return null;
    }
    const paymentHash = Buffer.from(created.invoice.paymentHash, 'hex');
    const caveats = mintCaveats({
      service,
      validUntilS: Math.floor(clock.now() / 1000) + deps.tokenTtlS,
      budgetMsat: amount,
      calls: null,
    });
    let macaroon: Buffer;
    do {
      macaroon = mintMacaroon({ secret: deps.secret, paymentHash, tokenId: randomBytes(32), caveats });
    } while (CONFUSING.test(macaroon.toString('base64')));
    return {
      headers: { 'www-authenticate': challengeHeaders(macaroon, created.invoice.paymentRequest) },
      expiresAt: created.invoice.expiresAt,
      paymentHash: created.invoice.paymentHash,
    };
  };

  const challenge = async (_request: GateRequest, price: CallPrice): Promise<Record<string, string | string[]>> => {
    if (price.priceMsat === 0n) return {};
    return (await mint(price))?.headers ?? {};
  };

  /**
   * The challenge for a genuine token that is expired or used up: the pending one of this
   * token and route price while its invoice can still be paid (with at least a minute, or
   * half its lifetime, left), else a new one that is kept for the next time.
   */
  const renewal = (tokenId: string, price: CallPrice): Promise<Record<string, string | string[]>> => {
    if (price.priceMsat === 0n) return Promise.resolve({});
    const key = `${tokenId} ${price.appId} ${price.service} ${price.priceMsat}`;
    const now = clock.now();
    const margin = Math.min(60_000, (deps.invoiceExpiryS * 1000) / 2);
    const held = renewals.get(key);
    if (held && held.expiresAt - margin > now) return held.headers;
    if (held) dropRenewal(key, held);
    if (renewals.size >= maxRenewals) {
      for (const [oldKey, old] of renewals) {
        if (renewals.size < maxRenewals) break;
        dropRenewal(oldKey, old);
      }
    }
    const entry: Renewal = { headers: Promise.resolve({}), expiresAt: now + deps.invoiceExpiryS * 1000, paymentHash: null };
    // Held before the invoice exists, so racing requests with the same old token share it.
    entry.headers = mint(price).then(
      (minted) => {
        if (!minted) {
          dropRenewal(key, entry);
          return {};
        }
        entry.expiresAt = minted.expiresAt;
        entry.paymentHash = minted.paymentHash;
        if (renewals.get(key) === entry) renewalByHash.set(minted.paymentHash, key);
        return minted.headers;
      },
      (error: unknown) => {
        dropRenewal(key, entry);
        throw error;
      },
    );
    renewals.set(key, entry);
    return entry.headers;
  };

  const refuse = (status: 401 | 402 | 503, code: ErrorCode, message: string, responseHeaders: Record<string, string | string[]> = {}): GateOutcome =>
    ({ kind: 'refused', status, code, message, responseHeaders });

  return {
    name: 'l402',
    credentialHeaders: ['authorization'],
    claims(request) {
      return claimsL402(request.headers.authorization);
    },
    challenge,
    async authorize(request, price) {
      const service = caveatServiceName(price.service);
      const verified = verifier.verify(request.headers.authorization, { service, capability: capabilityOf(request, price) });
      if (!verified.ok) {
        if (verified.code === 'l402_expired') {
          return refuse(402, verified.code, verified.message, await renewal(verified.tokenId, price));
        }
        return refuse(401, verified.code, verified.message);
      }
      const { msatLimit, callsLimit } = verified.budget;
      if (msatLimit === null && callsLimit === null) {
        // No budget caveat (not minted by this version, but valid): nothing to count.
        return { kind: 'allowed', scheme: 'l402', chargedMsat: price.priceMsat, responseHeaders: {} };
      }
      const result = await budgets.use({
        tokenId: verified.tokenId,
        calls: 1n,
        msat: price.priceMsat,
        callsLimit: callsLimit ?? MSAT_MAX,
        msatLimit: msatLimit ?? MSAT_MAX,
        at: clock.now(),
      });
      if (!result.ok) {
        if (result.error === 'overloaded') return refuse(503, 'overloaded', ERROR_CODES.overloaded.meaning);
        return refuse(402, 'l402_budget_exhausted', `This token has no budget left for a call of ${price.priceMsat} msat; pay the new invoice.`, await renewal(verified.tokenId, price));
      }
      const balance: string[] = [];
      if (msatLimit !== null) balance.push(`msat=${msatLimit - result.msatUsed}`);
      if (callsLimit !== null) balance.push(`calls=${callsLimit - result.callsUsed}`);
      return { kind: 'allowed', scheme: 'l402', chargedMsat: price.priceMsat as Msat, responseHeaders: { [L402_BALANCE_HEADER]: balance.join('; ') } };
    },
  };
}
