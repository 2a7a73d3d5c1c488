/**
 * `createPayingFetch`: a `fetch` that pays for 402-gated calls (issue 4), chain tokens first,
 * L402 otherwise, within a budget, and reports what it spent. Wire: docs/paycall.md (chains),
 * docs/l402.md (L402); the SDK side is described in docs/sdk-fetch.md.
 *
 * Threat model: the wallet spends whatever invoice it is handed, so every invoice is checked
 * against the budget BEFORE the wallet is asked: its amount is read from the invoice itself
 * (an invoice without an amount is never paid) and, for a chain, must equal steps x step
 * price. The budget is counted synchronously, so concurrent calls cannot both pass it.
 * Routing fees count against it as the wallet reports them; a wallet that declares its fee
 * limit (`maxFeeMsat`) has that limit kept free before each payment, so fees cannot pass the
 * budget either (docs/sdk-fetch.md, "The budget").
 * A chain is sent only to servers that offered that chain's buy URL and app (a chain is keyed
 * by both), so a server cannot collect links of a chain bought from another. Seeds and
 * preimages are never logged.
 */
import { SluiceError } from '../errors.js';
import { Emitter } from '../streams/emitter.js';
import { buyChain as postChain, getChain, refundChain as postRefund, type ChainView } from './chain-api.js';
import { HeldChain, type ChainTicket } from './chain.js';
import { invoiceAmountMsat, parseChainBalance, parseChainOffer, parseL402Challenge, priceFromBody, stepsForPrice, type ChainOffer, type L402Challenge } from './challenges.js';
import { drawSeed, fromHex, HashChain, MAX_CHAIN_STEPS, toHex } from './hashchain.js';
import { ChainStore } from './storage.js';
import { sleep } from './sync.js';
import type {
  HeldChainInfo,
  PaidCallReceipt,
  PayCallBaseFetch,
  PayCallPayment,
  PayCallRefund,
  PayCallRefundOptions,
  PayCallSpending,
  PayingFetch,
  PayingFetchEvents,
  PayingFetchOptions,
} from './types.js';

const DEFAULT_STEPS = 1000;
const DEFAULT_ACTIVATION_TIMEOUT_MS = 60_000;
/** Sends of one call (402 -> buy -> retry, plus repairs of reordered links) before giving up. */
const MAX_ATTEMPTS = 8;
/** Chain refusals after which the local index is re-read from the server. */
const RESYNC_CODES = new Set(['chain_link_skipped', 'chain_link_short', 'chain_link_replayed']);
/** Chain refusals after which the chain is no use for new calls: buy another. */
const RETIRE_CODES = new Set(['chain_exhausted', 'chain_expired', 'chain_refunded', 'chain_unknown', 'chain_link_invalid']);

/** One call through the paying fetch, across its attempts. */
interface CallState {
  request: PreparedRequest;
  url: URL;
  receipt: PaidCallReceipt;
  /** A chain would pass the budget: pay this call with L402 if at all. */
  avoidChain: boolean;
  /** The next chain attempt resyncs and goes alone (after a refused link). */
  repair: boolean;
}

/** An answer as read by the paying fetch. */
interface Answer {
  response: Response;
  /** The body, when it was read (`refusal`). */
  text: string;
  refusal: boolean;
  /** The Sluice error code of a refusal. */
  code: string | null;
  /** A chain offer whose steps per call are known. */
  offer: PricedOffer | null;
}

/** A request made re-sendable: its body is a value, never a stream. */
interface PreparedRequest {
  url: string;
  method: string;
  headers: Headers;
  init: RequestInit;
}

/** A chain offer whose steps per call are known. */
type PricedOffer = ChainOffer & { stepsPerCall: number };

type Credential =
  | { kind: 'none' }
  | { kind: 'chain'; chain: HeldChain; ticket: ChainTicket }
  | { kind: 'l402'; scope: string; token: L402Token };

interface L402Token {
  authorization: string;
  /** What the token may still spend, when known (invoice amount, then `Sluice-L402-Balance`). */
  remainingMsat: bigint | null;
}

function isStreamBody(body: unknown): boolean {
  if (body === null || body === undefined || typeof body === 'string') return false;
  if (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) return true;
  // Node's fetch also takes async iterables (a Node stream): just as unrepeatable.
  return typeof (body as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

async function prepareRequest(input: string | URL | Request, init: RequestInit | undefined): Promise<PreparedRequest> {
  if (typeof Request !== 'undefined' && input instanceof Request) {
    // A Request's body is a stream that can be read once: buffer it so it can be sent again.
    let body: BodyInit | null | undefined = init?.body;
    if (body === undefined && input.body !== null) body = await input.arrayBuffer();
    if (isStreamBody(body)) throw new TypeError(streamRefusal);
    const fromRequest: RequestInit = {
      method: input.method,
      signal: input.signal,
      redirect: input.redirect,
      credentials: input.credentials,
      cache: input.cache,
      mode: input.mode,
      referrer: input.referrer,
      referrerPolicy: input.referrerPolicy,
      integrity: input.integrity,
      keepalive: input.keepalive,
    };
    const merged: RequestInit = { ...fromRequest, ...init, body: body ?? null };
    return { url: input.url, method: (merged.method ?? 'GET').toUpperCase(), headers: new Headers(init?.headers ?? input.headers), init: merged };
  }
  if (isStreamBody(init?.body)) throw new TypeError(streamRefusal);
  // A relative URL means the page's own origin, as with the browser's fetch.
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const url = new URL(input instanceof URL ? input.href : String(input), base).href;
  return { url, method: (init?.method ?? 'GET').toUpperCase(), headers: new Headers(init?.headers), init: { ...init } };
}

const streamRefusal = 'the paying fetch cannot send a streamed body: a paid call may have to be sent again after a 402, and a stream can be read only once. Pass the body as a string, bytes, Blob, FormData or URLSearchParams (or use the plain fetch for unpaid uploads).';

/** Where a call's route is remembered (its chain price depends on method and path). */
function routeKey(method: string, url: URL): string {
  return `${method} ${url.origin}${url.pathname}`;
}

/** Where an L402 token is reused: the origin and the path's directory, as a cookie's default path. */
function l402Scope(url: URL): string {
  return url.origin + url.pathname.slice(0, url.pathname.lastIndexOf('/') + 1);
}

/** Where a route's chain offer is guessed for its neighbours: method, origin, path directory. */
function scopeKey(method: string, url: URL): string {
  return `${method} ${l402Scope(url)}`;
}

/** Most routes, scopes and tokens remembered; the oldest are forgotten first. */
const MAX_REMEMBERED = 10_000;

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value as K);
}

function chainKey(buyUrl: string, appId: string): string {
  return `${buyUrl} ${appId}`;
}

/** The Sluice error code in a refusal's JSON body, or null. */
function refusalCode(text: string): string | null {
  try {
    const json = JSON.parse(text) as { error?: { code?: unknown } };
    return typeof json.error?.code === 'string' ? json.error.code : null;
  } catch {
    return null;
  }
}

/** A response whose body was read, made whole again for the caller. */
function rebuilt(response: Response, text: string): Response {
  return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
}

function budgetError(needMsat: bigint, feeReserveMsat: bigint, spending: PayCallSpending, what: string): SluiceError {
  const fee = feeReserveMsat > 0n ? ` plus up to ${feeReserveMsat} msat of routing fee (the wallet's fee limit)` : '';
  return new SluiceError(
    'budget_exceeded',
    `${what} needs ${needMsat} msat${fee} but only ${spending.remainingBudgetMsat} msat of the ${spending.budgetMsat} msat budget is left (${spending.paidMsat} msat paid, ${spending.feesMsat} msat in routing fees): nothing was paid`,
  );
}

/** A routing fee a wallet reported, if it is one (a non-negative bigint): the wallet is checked like user input. */
function reportedFeeMsat(paid: unknown): bigint | null {
  const fee = typeof paid === 'object' && paid !== null ? (paid as { feeMsat?: unknown }).feeMsat : undefined;
  return typeof fee === 'bigint' && fee >= 0n ? fee : null;
}

function isUnknownOutcome(error: unknown): boolean {
  return error instanceof SluiceError && (error.code === 'network_error' || error.code === 'timeout');
}

/**
 * A `fetch` that pays for calls to 402-gated APIs (Sluice's gateway or middleware, or any
 * L402 server) within a budget, and reports what it spent.
 *
 * On a `402`: when the answer offers hash-chain tokens (`Sluice-Chain-Offer`) it buys a chain
 * (one invoice for many calls), waits for it to be active, and sends the call again with the
 * next link; later calls to that route reuse the chain with no extra round trip, and a new
 * chain is bought when it runs out. Otherwise it pays the L402 invoice and sends
 * `Authorization: L402 <token>:<preimage>`, reusing the token while the server accepts it.
 * A payment that would pass the budget is refused with a `SluiceError` whose code is
 * `budget_exceeded`, before the wallet is asked; routing fees the wallet reports count
 * against the budget too (`spent().feesMsat`). Any other answer (a 402 it cannot pay
 * included) is returned as the plain fetch would return it.
 *
 * Bodies: a call may be sent more than once, so its body must be a value (string, bytes,
 * Blob, FormData, URLSearchParams; a `Request`'s body is buffered). A `ReadableStream` body
 * is refused with a TypeError.
 *
 * @example
 * ```ts
 * import { createPayingFetch, weblnWallet } from '@sluice/client';
 *
 * const paidFetch = createPayingFetch({ wallet: weblnWallet(), budgetMsat: 100_000n }); // 100 sat
 * const response = await paidFetch('https://api.example.com/paid/joke');
 * console.log(await response.json());
 * console.log(paidFetch.receipt(response)?.costMsat, paidFetch.spent().paidMsat);
 * // Later: take back what the chains did not spend, to an invoice the wallet makes.
 * await paidFetch.refund();
 * ```
 */
export function createPayingFetch(options: PayingFetchOptions): PayingFetch {
  if (typeof options !== 'object' || options === null) throw new TypeError('createPayingFetch needs options: { wallet, budgetMsat }');
  const { wallet } = options;
  if (typeof wallet?.payInvoice !== 'function') throw new TypeError('wallet must be a wallet adapter with payInvoice (weblnWallet(), lndRestWallet(), devnetWallet())');
  if (typeof options.budgetMsat !== 'bigint' || options.budgetMsat < 0n) throw new TypeError('budgetMsat must be a non-negative bigint of msat');
  if (wallet.maxFeeMsat !== undefined && (typeof wallet.maxFeeMsat !== 'bigint' || wallet.maxFeeMsat < 0n)) throw new TypeError('wallet.maxFeeMsat must be a non-negative bigint of msat (or left out)');
  const budgetMsat = options.budgetMsat;
  /**
   * The wallet's declared fee limit per payment (0 when it declares none): kept free in the
   * budget while a payment is under way, and counted as its fee when the wallet cannot say
   * what the fee was (the outcome is unknown, or no fee is reported): the most it can be.
   */
  const feeReserveMsat = wallet.maxFeeMsat ?? 0n;
  const chainOptions = options.chain === false ? null : (options.chain ?? {});
  const chainSteps = chainOptions?.steps ?? DEFAULT_STEPS;
  if (!Number.isInteger(chainSteps) || chainSteps < 1 || chainSteps > MAX_CHAIN_STEPS) throw new TypeError(`chain.steps must be an integer from 1 to ${MAX_CHAIN_STEPS}`);
  const activationTimeoutMs = chainOptions?.activationTimeoutMs ?? DEFAULT_ACTIVATION_TIMEOUT_MS;
  const l402Enabled = options.l402 ?? true;
  const baseFetch: PayCallBaseFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const store = chainOptions?.storage ? new ChainStore(chainOptions.storage) : null;

  const events = new Emitter<PayingFetchEvents>();
  const receipts = new WeakMap<Response, PaidCallReceipt>();
  /** Chain offers per route (method, origin, path), learned from 402 answers. */
  const routeOffers = new Map<string, PricedOffer>();
  /**
   * The last offer seen per path directory, used for a route not seen yet (`/items/2` after
   * `/items/1`): it saves the unpaid round trip. A wrong guess costs no money: too few steps
   * is refused `chain_link_short` with the right offer; too many, `chain_link_skipped`, and
   * the guess is dropped.
   */
  const scopeOffers = new Map<string, PricedOffer>();
  /** Routes whose chain offer cannot pay (a call costs too many steps): L402 only. */
  const chainlessRoutes = new Map<string, true>();
  const l402Tokens = new Map<string, L402Token>();
  /** The chain in use per (buy URL, app), and every chain held. */
  const activeChains = new Map<string, HeldChain>();
  const heldChains: HeldChain[] = [];
  /** Chain purchases in progress per (buy URL, app): concurrent calls share one. */
  const purchases = new Map<string, Promise<HeldChain>>();
  /** Index of each held chain when this fetch took it (its use before is not this fetch's). */
  const startIndex = new Map<HeldChain, number>();

  /** Invoice amounts paid (or being paid, or of unknown outcome). */
  let paidMsat = 0n;
  /** Routing fees: as reported, or `feeReserveMsat` for a payment under way or not reported. */
  let feesMsat = 0n;
  let refundedMsat = 0n;
  let l402UsedMsat = 0n;
  /** Steps x price of chains spent to the end and let go (a long-lived fetch buys many). */
  let spentChainsUsedMsat = 0n;
  let paidCalls = 0;
  let restored: Promise<void> | null = null;

  const spending = (): PayCallSpending => {
    let chainUsed = spentChainsUsedMsat;
    for (const chain of heldChains) chainUsed += BigInt(chain.confirmedIndex - (startIndex.get(chain) ?? 0)) * chain.stepMsat;
    // Fees of a wallet that declares no limit can pass the budget (by the last payment's fee).
    const counted = paidMsat + feesMsat;
    return {
      budgetMsat,
      paidMsat,
      feesMsat,
      remainingBudgetMsat: counted >= budgetMsat ? 0n : budgetMsat - counted,
      usedMsat: chainUsed + l402UsedMsat,
      refundedMsat,
      paidCalls,
    };
  };

  /**
   * Counts `amount`, and the wallet's fee limit, against the budget before the wallet is asked
   * (synchronously: no other payment can slip between). Fees already paid count too.
   */
  const claimBudget = (amountMsat: bigint, what: string): void => {
    if (paidMsat + feesMsat + amountMsat + feeReserveMsat > budgetMsat) throw budgetError(amountMsat, feeReserveMsat, spending(), what);
    paidMsat += amountMsat;
    feesMsat += feeReserveMsat;
  };

  /** The payment certainly did not happen: its amount and fee reserve are free again. */
  const releaseBudget = (amountMsat: bigint, receipt: PaidCallReceipt | null): void => {
    paidMsat -= amountMsat;
    feesMsat -= feeReserveMsat;
    if (receipt !== null) receipt.paidMsat -= amountMsat;
  };

  /**
   * The wallet answered (paid, or outcome unknown): the reserve gives way to the fee it
   * reported; without a report (or with an unknown outcome) the reserve stays, the most the
   * fee can be (0 for a wallet that declares no limit: its fee is not counted).
   */
  const countFee = (paid: unknown, receipt: PaidCallReceipt): void => {
    const feeMsat = reportedFeeMsat(paid) ?? feeReserveMsat;
    feesMsat += feeMsat - feeReserveMsat;
    receipt.feesMsat += feeMsat;
  };

  const hold = (chain: HeldChain, active: boolean): void => {
    heldChains.push(chain);
    startIndex.set(chain, chain.confirmedIndex);
    if (active) activeChains.set(chainKey(chain.buyUrl, chain.appId), chain);
  };

  const forget = async (chain: HeldChain): Promise<void> => {
    chain.retire();
    const key = chainKey(chain.buyUrl, chain.appId);
    if (activeChains.get(key) === chain) activeChains.delete(key);
    if (chain.confirmedIndex >= chain.steps) {
      // Spent to the last step: nothing to spend or refund; keep only its total.
      const at = heldChains.indexOf(chain);
      if (at >= 0) {
        heldChains.splice(at, 1);
        spentChainsUsedMsat += BigInt(chain.confirmedIndex - (startIndex.get(chain) ?? 0)) * chain.stepMsat;
        startIndex.delete(chain);
      }
    }
    if (store && (chain.status === 'refunded' || chain.status === 'exhausted' || chain.confirmedIndex >= chain.steps)) await store.remove(chain.id);
  };

  const restore = (): Promise<void> => {
    restored ??= (async () => {
      if (store === null) return;
      for (const record of await store.load()) {
        if (heldChains.some((chain) => chain.id === record.chain_id)) continue;
        let view: ChainView;
        try {
          view = await getChain(baseFetch, record.buy_url, record.chain_id);
        } catch (error) {
          // Gone from the server: nothing to spend or refund. Unreachable: try next session.
          if (error instanceof SluiceError && error.code === 'not_found') await store.remove(record.chain_id);
          continue;
        }
        if (view.status === 'exhausted' || view.status === 'refunded') {
          await store.remove(record.chain_id);
          continue;
        }
        // Never paid, or paid and not yet credited: leave it stored for a later session.
        if (view.status === 'pending') continue;
        const links = await HashChain.build(fromHex(record.seed), record.steps);
        const chain = new HeldChain(view, record.buy_url, links);
        const key = chainKey(record.buy_url, record.app_id);
        hold(chain, view.status === 'active' && !activeChains.has(key));
      }
    })();
    return restored;
  };

  /** Buys a chain for `offer` that pays at least `k` steps a call, within the budget. */
  const purchase = async (offer: ChainOffer, k: number, receipt: PaidCallReceipt): Promise<HeldChain> => {
    // What the budget can still pay, less the wallet's fee limit kept free for this payment.
    const left = budgetMsat - paidMsat - feesMsat - feeReserveMsat;
    const affordable = left < 0n ? 0n : left / offer.stepMsat;
    if (affordable < BigInt(k)) throw budgetError(BigInt(k) * offer.stepMsat, feeReserveMsat, spending(), 'a chain for one call');
    let steps = Math.max(chainSteps, k);
    if (BigInt(steps) > affordable) steps = Number(affordable);
    steps = Math.min(steps, MAX_CHAIN_STEPS);

    const links = await HashChain.build(drawSeed(), steps);
    const view = await postChain(baseFetch, offer.buyUrl, { appId: offer.appId, anchorHex: toHex(links.anchor), steps });
    const invoice = view.invoice as NonNullable<ChainView['invoice']>;
    if (view.appId !== offer.appId || view.steps !== steps || view.stepMsat !== offer.stepMsat || view.amountMsat !== BigInt(steps) * view.stepMsat || invoiceAmountMsat(invoice.paymentRequest) !== view.amountMsat) {
      throw new SluiceError('invalid_response', `the chain purchase answer does not match what was asked (${steps} steps of ${offer.stepMsat} msat for app ${offer.appId}, invoice for steps x step_msat): not paid`);
    }
    const chain = new HeldChain(view, offer.buyUrl, links);
    claimBudget(view.amountMsat, `a chain of ${steps} steps`);
    // Kept before paying: once paid, the seed is money.
    try {
      await store?.put(chain.stored());
    } catch (error) {
      releaseBudget(view.amountMsat, null);
      throw error;
    }
    receipt.paidMsat += view.amountMsat;
    const payment: PayCallPayment = { kind: 'chain_purchase', amountMsat: view.amountMsat, paymentRequest: invoice.paymentRequest, url: receipt.url, chainId: view.chainId };
    events.emit('payment', payment);
    let paid: unknown = null;
    try {
      paid = await wallet.payInvoice(invoice.paymentRequest);
    } catch (error) {
      if (!isUnknownOutcome(error)) {
        // Certainly not paid: free the budget; the pending chain is worth nothing.
        releaseBudget(view.amountMsat, receipt);
        await store?.remove(chain.id);
        throw error;
      }
      // Unknown: the budget stays counted (the fee reserve too); the server's status says whether it was paid.
    }
    countFee(paid, receipt);
    hold(chain, false);
    const deadline = Date.now() + activationTimeoutMs;
    let current = view;
    for (let wait = 10; current.status === 'pending'; wait = Math.min(wait * 2, 500)) {
      if (Date.now() > deadline) throw new SluiceError('timeout', `chain ${view.chainId} was not active ${activationTimeoutMs} ms after its invoice was paid; it is kept (chains()) and may still activate`);
      await sleep(wait);
      current = await getChain(baseFetch, offer.buyUrl, view.chainId);
    }
    chain.applyView(current);
    if (!chain.usable) throw new SluiceError('invalid_response', `chain ${view.chainId} is ${current.status} right after its purchase`);
    activeChains.set(chainKey(offer.buyUrl, offer.appId), chain);
    return chain;
  };

  /** The chain in use for `offer` with `k` steps left to hand out, bought if need be. */
  const chainFor = async (offer: ChainOffer, k: number, receipt: PaidCallReceipt): Promise<HeldChain> => {
    const key = chainKey(offer.buyUrl, offer.appId);
    for (let tries = 0; tries < 4; tries += 1) {
      const chain = activeChains.get(key);
      if (chain?.usable && chain.unreservedSteps >= k) return chain;
      // Fewer than k steps left (what is left stays refundable): replace it.
      if (chain) await forget(chain);
      // Another chain held for this offer (restored from storage) goes first.
      const spare = heldChains.find((held) => held.usable && held.unreservedSteps >= k && chainKey(held.buyUrl, held.appId) === key);
      if (spare !== undefined) {
        activeChains.set(key, spare);
        continue;
      }
      let buying = purchases.get(key);
      // A chain paid earlier that had not turned active in time: look again before buying.
      const paidPending = heldChains.find((held) => held.status === 'pending' && !held.retired && chainKey(held.buyUrl, held.appId) === key);
      if (buying === undefined && paidPending !== undefined) {
        const view = await getChain(baseFetch, paidPending.buyUrl, paidPending.id);
        paidPending.applyView(view);
        // Still pending (its payment may never have gone through): let it go for new calls (it
        // stays in chains() and the storage) and buy another, within the budget.
        if (paidPending.usable) activeChains.set(key, paidPending);
        else paidPending.retire();
        continue;
      }
      if (buying === undefined) {
        buying = purchase(offer, k, receipt).finally(() => purchases.delete(key));
        purchases.set(key, buying);
      }
      await buying;
    }
    throw new SluiceError('overloaded', 'other calls keep using up the new chains first; try again');
  };

  const chooseCredential = async (request: PreparedRequest, url: URL, avoidChain: boolean, receipt: PaidCallReceipt, alone: boolean): Promise<Credential> => {
    const key = routeKey(request.method, url);
    const offer = chainOptions && !avoidChain && !chainlessRoutes.has(key) ? (routeOffers.get(key) ?? scopeOffers.get(scopeKey(request.method, url))) : undefined;
    if (offer !== undefined) {
      for (let tries = 0; tries < 4; tries += 1) {
        const chain = await chainFor(offer, offer.stepsPerCall, receipt);
        const ticket = await chain.reserve(offer.stepsPerCall, baseFetch, alone);
        if (ticket !== null) return { kind: 'chain', chain, ticket };
      }
      throw new SluiceError('overloaded', 'could not reserve steps on a chain; try again');
    }
    if (l402Enabled && !request.headers.has('authorization')) {
      const scope = l402Scope(url);
      const token = l402Tokens.get(scope);
      if (token !== undefined) return { kind: 'l402', scope, token };
    }
    return { kind: 'none' };
  };

  const payL402 = async (challenge: L402Challenge, scope: string, receipt: PaidCallReceipt): Promise<void> => {
    const amount = invoiceAmountMsat(challenge.invoice);
    if (amount === null) throw new SluiceError('invoice_amount_required', 'the L402 invoice names no amount: the paying fetch pays only invoices it can check against the budget');
    claimBudget(amount, 'the L402 invoice');
    receipt.paidMsat += amount;
    events.emit('payment', { kind: 'l402_invoice', amountMsat: amount, paymentRequest: challenge.invoice, url: receipt.url });
    let paid: Awaited<ReturnType<typeof wallet.payInvoice>>;
    try {
      paid = await wallet.payInvoice(challenge.invoice);
    } catch (error) {
      if (isUnknownOutcome(error)) countFee(null, receipt);
      else releaseBudget(amount, receipt);
      throw error;
    }
    countFee(paid, receipt);
    const preimage: unknown = paid?.preimage;
    if (typeof preimage !== 'string' || !/^[0-9a-fA-F]{64}$/.test(preimage)) throw new SluiceError('invalid_response', 'the wallet paid but returned no 32-byte preimage');
    remember(l402Tokens, scope, { authorization: `L402 ${challenge.token}:${preimage.toLowerCase()}`, remainingMsat: amount });
  };

  const finish = (response: Response, receipt: PaidCallReceipt): Response => {
    receipt.status = response.status;
    if (receipt.scheme !== null) paidCalls += 1;
    receipts.set(response, receipt);
    events.emit('call', receipt);
    return response;
  };

  /** Reads what the paying fetch needs from an answer; a failed read settles the chain call. */
  const readAnswer = async (credential: Credential, response: Response, call: CallState): Promise<Answer> => {
    // Only an answer that may be the gate's refusal is read (to learn its code): a 402, or a
    // 401 to a call that carried a credential and got no balance header (a served call has one).
    const balanceHeader = credential.kind === 'chain' ? 'sluice-chain-balance' : 'sluice-l402-balance';
    const refusal = response.status === 402 || (response.status === 401 && credential.kind !== 'none' && !response.headers.has(balanceHeader));
    let text = '';
    try {
      if (refusal) text = await response.text();
    } catch (error) {
      if (credential.kind === 'chain') credential.chain.settle(credential.ticket, { kind: 'unknown' });
      throw error;
    }
    const offer = parseChainOffer(response.headers.get('sluice-chain-offer'));
    if (offer !== null && offer.stepsPerCall === null) {
      // An offer without steps_per_call: k = ceil(price / step), from the body's price_msat.
      const price = priceFromBody(text);
      offer.stepsPerCall = price === null || price === 0n ? null : stepsForPrice(price, offer.stepMsat);
    }
    if (offer !== null && offer.stepsPerCall !== null) {
      remember(routeOffers, routeKey(call.request.method, call.url), offer as PricedOffer);
      remember(scopeOffers, scopeKey(call.request.method, call.url), offer as PricedOffer);
    }
    return { response, text, refusal, code: refusal ? refusalCode(text) : null, offer: offer?.stepsPerCall === null ? null : (offer as PricedOffer | null) };
  };

  /** The answer as the caller gets it (a body the fetch read is put back). */
  const whole = (answer: Answer): Response => (answer.refusal ? rebuilt(answer.response, answer.text) : answer.response);

  /** After a call paid with a chain link: served, or what to do next. */
  const afterChainCall = async (credential: Extract<Credential, { kind: 'chain' }>, answer: Answer, call: CallState): Promise<Response | 'retry'> => {
    const { chain, ticket } = credential;
    const code = answer.code?.startsWith('chain_') ? answer.code : null;
    if (code === null) {
      // Served (whatever the upstream said): the balance header confirms the index.
      const balance = parseChainBalance(answer.response.headers.get('sluice-chain-balance'));
      chain.settle(ticket, balance === null ? { kind: 'unknown' } : { kind: 'accepted', index: balance.index });
      // No balance header: the route did not take the link (a free route). If it did, the
      // next reservation's resync counts it in spent().usedMsat.
      if (balance !== null) {
        call.receipt.scheme = 'chain';
        call.receipt.costMsat = BigInt(ticket.steps) * chain.stepMsat;
        call.receipt.chain = { chainId: chain.id, index: balance.index, remainingSteps: balance.steps, remainingMsat: balance.msat };
      }
      return whole(answer);
    }
    chain.settle(ticket, { kind: 'refused' });
    const route = routeKey(call.request.method, call.url);
    if (RESYNC_CODES.has(code)) {
      call.repair = !(code === 'chain_link_skipped' && ticket.alone);
      if (!call.repair) {
        // Skipped although it was the only call in flight, right after a resync: not a
        // reordering, the route costs fewer steps than thought. Ask it plainly.
        routeOffers.delete(route);
        scopeOffers.delete(scopeKey(call.request.method, call.url));
      }
      return 'retry';
    }
    if (RETIRE_CODES.has(code)) {
      // What the refusal tells of the chain (a refund may still be due on an expired one).
      if (code === 'chain_expired') chain.status = 'expired';
      if (code === 'chain_refunded') chain.status = 'refunded';
      await forget(chain);
      return 'retry';
    }
    if (code === 'chain_call_too_costly') {
      remember(chainlessRoutes, route, true);
      return 'retry';
    }
    if (code === 'chain_unpaid') {
      await chain.resync(baseFetch);
      await sleep(50);
      return 'retry';
    }
    // chain_malformed, or a code this SDK does not know: a bug to show, not to retry.
    return whole(answer);
  };

  /** After a call paid with an L402 token: served, retried, or a 402 to handle as any other. */
  const afterL402Call = (credential: Extract<Credential, { kind: 'l402' }>, answer: Answer, call: CallState): Response | 'retry' | 'challenge' => {
    const { token, scope } = credential;
    if (!answer.code?.startsWith('l402_')) {
      const left = /msat=(\d+)/.exec(answer.response.headers.get('sluice-l402-balance') ?? '')?.[1];
      const leftMsat = left === undefined ? null : BigInt(left);
      const cost = token.remainingMsat !== null && leftMsat !== null ? token.remainingMsat - leftMsat : 0n;
      call.receipt.scheme = 'l402';
      call.receipt.costMsat = cost;
      l402UsedMsat += cost;
      if (leftMsat !== null) call.receipt.l402RemainingMsat = leftMsat;
      token.remainingMsat = leftMsat ?? token.remainingMsat;
      // A token with nothing left would only earn a 402: forget it now.
      if (leftMsat === 0n && l402Tokens.get(scope) === token) l402Tokens.delete(scope);
      return whole(answer);
    }
    if (l402Tokens.get(scope) === token) l402Tokens.delete(scope);
    // A 401 carries no challenge: ask again without the token to get one.
    return answer.response.status === 401 ? 'retry' : 'challenge';
  };

  /** A 402 without a usable credential: pay one of its challenges, or give it to the caller. */
  const afterChallenge = async (answer: Answer, call: CallState): Promise<Response | 'retry'> => {
    if (chainOptions && answer.offer !== null && !call.avoidChain && !chainlessRoutes.has(routeKey(call.request.method, call.url))) return 'retry';
    const challenge = parseL402Challenge(answer.response.headers.get('www-authenticate'));
    if (l402Enabled && challenge !== null && !call.request.headers.has('authorization')) {
      await payL402(challenge, l402Scope(call.url), call.receipt);
      return 'retry';
    }
    // Nothing this fetch may pay with: the caller gets the 402.
    return whole(answer);
  };

  /** One send of the call with the credential chosen for it. */
  const attempt = async (call: CallState): Promise<{ answer: Answer; next: Response | 'retry' }> => {
    const credential = await chooseCredential(call.request, call.url, call.avoidChain, call.receipt, call.repair);
    const headers = new Headers(call.request.headers);
    if (credential.kind === 'chain') headers.set('sluice-chain', credential.ticket.header);
    if (credential.kind === 'l402') headers.set('authorization', credential.token.authorization);
    let response: Response;
    try {
      response = await baseFetch(call.request.url, { ...call.request.init, headers });
    } catch (error) {
      if (credential.kind === 'chain') credential.chain.settle(credential.ticket, { kind: 'unknown' });
      throw error;
    }
    const answer = await readAnswer(credential, response, call);
    if (credential.kind === 'chain') return { answer, next: await afterChainCall(credential, answer, call) };
    if (credential.kind === 'l402') {
      const next = afterL402Call(credential, answer, call);
      if (next !== 'challenge') return { answer, next };
    }
    if (answer.response.status !== 402) return { answer, next: whole(answer) };
    return { answer, next: await afterChallenge(answer, call) };
  };

  const payingFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = await prepareRequest(input, init);
    if (chainOptions && store) await restore();
    const receipt: PaidCallReceipt = { url: request.url, method: request.method, scheme: null, costMsat: 0n, paidMsat: 0n, feesMsat: 0n, status: 0 };
    const call: CallState = { request, url: new URL(request.url), receipt, avoidChain: false, repair: false };
    let last: Answer | null = null;
    for (let sent = 0; sent < MAX_ATTEMPTS; sent += 1) {
      let outcome: { answer: Answer; next: Response | 'retry' };
      try {
        outcome = await attempt(call);
      } catch (error) {
        // A chain the budget cannot pay: L402 may still fit (one call's invoice).
        if (!(error instanceof SluiceError && error.code === 'budget_exceeded' && l402Enabled && !call.avoidChain)) throw error;
        call.avoidChain = true;
        continue;
      }
      last = outcome.answer;
      if (outcome.next !== 'retry') return finish(outcome.next, receipt);
    }
    if (last === null) throw new SluiceError('overloaded', 'the call could not be paid');
    return finish(whole(last), receipt);
  };

  const chains = (): HeldChainInfo[] =>
    heldChains.map((chain) => {
      const remainingSteps = chain.status === 'refunded' ? 0 : chain.steps - chain.confirmedIndex;
      return {
        chainId: chain.id,
        appId: chain.appId,
        buyUrl: chain.buyUrl,
        steps: chain.steps,
        stepMsat: chain.stepMsat,
        index: chain.confirmedIndex,
        remainingSteps,
        remainingMsat: BigInt(remainingSteps) * chain.stepMsat,
        status: chain.status,
        inUse: chain.usable && activeChains.get(chainKey(chain.buyUrl, chain.appId)) === chain,
      };
    });

  const refund = async (refundOptions: PayCallRefundOptions = {}): Promise<PayCallRefund[]> => {
    if (refundOptions.invoice !== undefined && refundOptions.lightningAddress !== undefined) throw new TypeError('give an invoice or a Lightning address, not both');
    if (chainOptions && store) await restore();
    const targets = refundOptions.chainId === undefined
      ? heldChains.filter((chain) => chain.status !== 'refunded' && chain.status !== 'pending' && chain.confirmedIndex < chain.steps)
      : heldChains.filter((chain) => chain.id === refundOptions.chainId);
    if (refundOptions.chainId !== undefined && targets.length === 0) throw new SluiceError('not_found', `this fetch holds no chain ${refundOptions.chainId}`);
    if (refundOptions.invoice !== undefined && targets.length > 1) throw new TypeError(`one invoice can refund one chain, and ${targets.length} hold unused steps: pass chainId, or a Lightning address`);
    const done: PayCallRefund[] = [];
    for (const chain of targets) {
      // Retired first, so no new call takes a step while the refund is under way.
      const wasActive = chain.usable;
      chain.retire();
      const result = await chain.exclusive(async () => {
        const view = await getChain(baseFetch, chain.buyUrl, chain.id);
        chain.applyView(view);
        if (refundOptions.chainId === undefined && view.remainingMsat === 0n) return null;
        let invoice = refundOptions.invoice;
        if (invoice === undefined && refundOptions.lightningAddress === undefined) {
          if (wallet.makeInvoice === undefined) throw new TypeError(`the wallet ${wallet.name} cannot make invoices: give refund() an invoice or a Lightning address`);
          invoice = (await wallet.makeInvoice(view.remainingMsat, `refund of Sluice chain ${chain.id}`)).paymentRequest;
        }
        const index = view.index + 1;
        if (index > chain.steps) return null;
        const answer = await postRefund(baseFetch, chain.buyUrl, chain.id, {
          index,
          linkHex: toHex(await chain.links.linkAt(index)),
          ...(invoice === undefined ? {} : { invoice }),
          ...(refundOptions.lightningAddress === undefined ? {} : { lightningAddress: refundOptions.lightningAddress }),
        });
        chain.applyView(answer.chain);
        return answer;
      }).catch((error: unknown) => {
        // Nothing was refunded (the server refused, or could not be reached): the chain
        // keeps paying for calls.
        if (wasActive && chain.status === 'active') chain.reinstate();
        throw error;
      });
      await forget(chain);
      if (result === null) continue;
      if (result.paymentStatus !== 'failed') refundedMsat += result.amountMsat;
      const refunded: PayCallRefund = { chainId: chain.id, amountMsat: result.amountMsat, paymentHash: result.paymentHash, status: result.paymentStatus };
      events.emit('refund', refunded);
      done.push(refunded);
    }
    return done;
  };

  return Object.assign(payingFetch, {
    spent: spending,
    receipt: (response: Response) => receipts.get(response),
    on: <K extends keyof PayingFetchEvents & string>(type: K, listener: (value: PayingFetchEvents[K]) => void) => events.on(type, listener),
    chains,
    refund,
    restore: async () => {
      if (chainOptions && store) await restore();
    },
  });
}
