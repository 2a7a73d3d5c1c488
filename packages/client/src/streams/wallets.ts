/**
 * Wallet adapters: how `SluicePayer` pays top-up invoices and, when the wallet can,
 * makes the invoices that refunds and winnings are paid to.
 *
 * Threat model: an adapter spends the payer's money on whatever invoice it is handed.
 * `SluicePayer` hands it only the stream's own top-up invoices within the allowance the
 * payer set; an adapter used directly has no such limit. Credentials (a payer token, a
 * macaroon) go only to the address given and are never logged.
 */
import { SluiceClient, type FetchFunction } from '../client.js';
import { SluiceError } from '../errors.js';

/**
 * What a wallet hands back for a payment it made: the preimage, and the routing fee it paid
 * on top of the invoice's amount when it can tell (`feeMsat`, msat). A wallet that does not
 * report the fee leaves `feeMsat` out; 0n means it reported no fee paid.
 *
 * @example
 * ```ts
 * const paid: WalletPayment = { preimage: '0f'.repeat(32), feeMsat: 1001n };
 * ```
 */
export interface WalletPayment {
  preimage: string;
  /** The routing fee paid, in msat, when the wallet reports it. */
  feeMsat?: bigint | undefined;
}

/**
 * What `SluicePayer` and `createPayingFetch` need from a wallet. `payInvoice` resolves once
 * paid (with the preimage, and the routing fee when the wallet can tell) and rejects
 * otherwise; a `SluiceError` with code `network_error` or `timeout` means the outcome is
 * unknown. `makeInvoice` is optional: without it, payouts wait for a person (or a payout
 * destination set with `setPayout`).
 *
 * `maxFeeMsat` is optional too: the most routing fee one payment of this wallet can cost,
 * when the wallet enforces such a limit. `createPayingFetch` keeps it free in its budget
 * before each payment, so that budget is never passed by fees (see docs/sdk-fetch.md).
 * Declare it only if the wallet really refuses routes that cost more.
 *
 * @example
 * ```ts
 * const wallet: WalletAdapter = {
 *   name: 'my wallet',
 *   maxFeeMsat: 5_000n, // myNode.pay is called with this fee limit
 *   async payInvoice(paymentRequest) {
 *     const { preimage, feeMsat } = await myNode.pay(paymentRequest, { feeLimitMsat: 5_000n });
 *     return { preimage, feeMsat };
 *   },
 * };
 * ```
 */
export interface WalletAdapter {
  readonly name: string;
  /** The most routing fee, in msat, one payment can cost (the wallet's enforced fee limit), if it has one. */
  readonly maxFeeMsat?: bigint | undefined;
  payInvoice(paymentRequest: string): Promise<WalletPayment>;
  makeInvoice?(amountMsat: bigint, description: string): Promise<{ paymentRequest: string }>;
}

/**
 * The WebLN provider API (`window.webln`) as far as the adapter uses it.
 *
 * @example
 * ```ts
 * const provider = (window as unknown as { webln?: WebLnProvider }).webln;
 * ```
 */
export interface WebLnProvider {
  enable(): Promise<void>;
  /** Some providers (Alby among them) add the route taken, with `total_fees` in whole sats. */
  sendPayment(paymentRequest: string): Promise<{ preimage: string; route?: { total_fees?: unknown } | undefined }>;
  makeInvoice?(args: { amount: string | number; defaultMemo?: string }): Promise<{ paymentRequest: string }>;
}

/**
 * The routing fee a WebLN provider reports, in msat: `route.total_fees` (whole sats, a
 * non-negative integer number or decimal string), else undefined. WebLN itself returns only
 * the preimage; anything else there is checked like user input.
 */
function feeMsatFromWebLnPayment(paid: { route?: { total_fees?: unknown } | undefined }): bigint | undefined {
  const totalFeesSat = paid.route?.total_fees;
  if (typeof totalFeesSat === 'number' && Number.isSafeInteger(totalFeesSat) && totalFeesSat >= 0) return BigInt(totalFeesSat) * 1000n;
  if (typeof totalFeesSat === 'string' && /^\d{1,15}$/.test(totalFeesSat)) return BigInt(totalFeesSat) * 1000n;
  return undefined;
}

/**
 * A browser wallet through WebLN (`window.webln`: Alby and other extensions). The wallet
 * asks its user to confirm as it sees fit. WebLN invoices are made in whole satoshis, so a
 * payout of an amount that is not a whole number of sats is left for a person.
 *
 * Routing fees: reported (`feeMsat`) only when the provider adds `route.total_fees` to its
 * answer, as some do; that is in whole sats, so a fee under 1 sat may read as 0. WebLN sets
 * no fee limit the adapter could declare: the wallet applies its own.
 *
 * @example
 * ```ts
 * const payer = await SluicePayer.connect({ baseUrl, payerToken, wallet: weblnWallet(), allowance });
 * ```
 */
export function weblnWallet(provider?: WebLnProvider): WalletAdapter {
  let enabled: Promise<void> | null = null;
  const webln = (): WebLnProvider => {
    const found = provider ?? (globalThis as { webln?: WebLnProvider }).webln;
    if (found === undefined) throw new SluiceError('invalid_request', 'no WebLN wallet in this browser (window.webln is missing)');
    return found;
  };
  const ready = async (): Promise<WebLnProvider> => {
    const found = webln();
    enabled ??= found.enable();
    await enabled;
    return found;
  };
  return {
    name: 'webln',
    async payInvoice(paymentRequest) {
      const paid = await (await ready()).sendPayment(paymentRequest);
      const feeMsat = feeMsatFromWebLnPayment(paid);
      return feeMsat === undefined ? { preimage: paid.preimage } : { preimage: paid.preimage, feeMsat };
    },
    async makeInvoice(amountMsat, description) {
      const found = await ready();
      if (found.makeInvoice === undefined) throw new SluiceError('invalid_request', 'this WebLN wallet cannot make invoices');
      if (amountMsat % 1000n !== 0n) throw new SluiceError('invalid_amount', `WebLN invoices are in whole sats; ${amountMsat} msat is not`);
      const { paymentRequest } = await found.makeInvoice({ amount: (amountMsat / 1000n).toString(), defaultMemo: description });
      return { paymentRequest };
    },
  };
}

/**
 * A devnet wallet (FAKE MONEY): pays through `POST /v1/devnet/pay` and makes payout
 * invoices through `POST /v1/devnet/invoices` on the Sluice server, authenticated with
 * the payer token (or any key). Only on a server running the devnet. Reports the routing
 * fee the devnet charged (`fee_msat` of the pay answer: the hub's 1 sat + 100 ppm on the
 * default topology). The devnet's own fee limit is far above any fee it charges, so no
 * `maxFeeMsat` is declared.
 *
 * @example
 * ```ts
 * const wallet = devnetWallet({ baseUrl: 'http://127.0.0.1:8402', key: payerToken, wallet: 'alice' });
 * ```
 */
export function devnetWallet(options: { baseUrl: string; key: string; wallet?: string; fetch?: FetchFunction }): WalletAdapter {
  const client = new SluiceClient({ baseUrl: options.baseUrl, apiKey: options.key, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const wallet = options.wallet ?? 'alice';
  return {
    name: `devnet:${wallet}`,
    async payInvoice(paymentRequest) {
      const paid = await client.devnetPay({ payment_request: paymentRequest, wallet });
      return { preimage: paid.preimage, feeMsat: paid.fee_msat };
    },
    async makeInvoice(amountMsat, description) {
      const created = await client.devnetInvoice({ amount_msat: amountMsat, description, wallet });
      return { paymentRequest: created.payment_request };
    },
  };
}

/**
 * Options of `lndRestWallet`.
 *
 * @example
 * ```ts
 * const options: LndRestWalletOptions = { restUrl: 'https://127.0.0.1:8080', macaroonHex: process.env.LND_MACAROON_HEX! };
 * ```
 */
export interface LndRestWalletOptions {
  /** LND's REST address, e.g. `https://127.0.0.1:8080`. */
  restUrl: string;
  /** A macaroon that may send payments (and create invoices, for payouts), as hex. */
  macaroonHex: string;
  /** A fetch that trusts LND's certificate (in Node: a fetch with an undici Agent holding tls.cert). */
  fetch?: FetchFunction;
  /** Routing fee limit per payment (LND's `fee_limit_msat`, also the adapter's `maxFeeMsat`); default 10000 (10 sat). */
  maxFeeMsat?: bigint;
  /** How long LND may try; default 60. */
  timeoutS?: number;
}

function lndLines(text: string): Record<string, unknown>[] {
  return text.split('\n').map((line) => line.trim()).filter((line) => line !== '').flatMap((line) => {
    try {
      const parsed: unknown = JSON.parse(line);
      return typeof parsed === 'object' && parsed !== null ? [parsed as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/**
 * The routing fee of a payment LND reports (`lnrpc.Payment.fee_msat`, an int64 as a decimal
 * string), or undefined when it is missing or not a non-negative integer: LND's answer is
 * checked like user input.
 */
function feeMsatFromLndPayment(payment: { fee_msat?: unknown }): bigint | undefined {
  const fee = payment.fee_msat;
  if (typeof fee === 'string' && /^\d{1,19}$/.test(fee)) return BigInt(fee);
  if (typeof fee === 'number' && Number.isSafeInteger(fee) && fee >= 0) return BigInt(fee);
  return undefined;
}

/**
 * The payer's own LND node over REST (Node, or a browser that may reach the node):
 * pays with `POST /v2/router/send` and makes payout invoices with `POST /v1/invoices`.
 * Reports the routing fee LND paid (the final update's `result.fee_msat`) and declares its
 * fee limit as `maxFeeMsat`, so a paying fetch's budget is never passed by fees.
 *
 * @example
 * ```ts
 * const wallet = lndRestWallet({ restUrl: 'https://127.0.0.1:8080', macaroonHex, fetch: fetchTrustingLndCert });
 * const payer = await SluicePayer.connect({ baseUrl, payerToken, wallet, allowance, WebSocket });
 * ```
 */
export function lndRestWallet(options: LndRestWalletOptions): WalletAdapter {
  const base = options.restUrl.replace(/\/+$/, '');
  const maxFeeMsat = options.maxFeeMsat ?? 10_000n;
  if (typeof maxFeeMsat !== 'bigint' || maxFeeMsat < 0n) throw new TypeError('maxFeeMsat must be a non-negative bigint of msat');
  const doFetch: FetchFunction = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const timeoutS = options.timeoutS ?? 60;
  const post = async (path: string, body: unknown): Promise<string> => {
    let response: Response;
    try {
      response = await doFetch(base + path, {
        method: 'POST',
        headers: { 'Grpc-Metadata-macaroon': options.macaroonHex, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout((timeoutS + 30) * 1000),
      });
    } catch (cause) {
      throw new SluiceError('network_error', `could not reach LND at ${base}: ${(cause as Error).message}; the outcome is unknown`, { cause });
    }
    const text = await response.text().catch(() => '');
    if (!response.ok) {
      const message = lndLines(text)[0]?.message ?? (lndLines(text)[0]?.error as { message?: string } | undefined)?.message;
      throw new SluiceError(response.status >= 500 ? 'network_error' : 'invalid_request', `LND answered HTTP ${response.status}: ${String(message ?? text.slice(0, 200))}`, { status: response.status });
    }
    return text;
  };
  return {
    name: 'lnd-rest',
    maxFeeMsat,
    async payInvoice(paymentRequest) {
      const text = await post('/v2/router/send', {
        payment_request: paymentRequest,
        timeout_seconds: timeoutS,
        no_inflight_updates: true,
        fee_limit_msat: maxFeeMsat.toString(),
      });
      // A stream of JSON lines: {"result": Payment} updates, or {"error": ...}; the last one counts.
      const updates = lndLines(text);
      const last = updates[updates.length - 1];
      const result = last?.result as { status?: string; payment_preimage?: string; failure_reason?: string; fee_msat?: unknown } | undefined;
      if (result?.status === 'SUCCEEDED' && typeof result.payment_preimage === 'string') {
        const feeMsat = feeMsatFromLndPayment(result);
        return feeMsat === undefined ? { preimage: result.payment_preimage } : { preimage: result.payment_preimage, feeMsat };
      }
      if (result?.status === 'FAILED') throw new SluiceError('invalid_request', `LND could not pay: ${result.failure_reason ?? 'FAILED'}`);
      const error = last?.error as { message?: string } | undefined;
      if (error?.message && /already (paid|exists)|ALREADY/i.test(error.message)) throw new SluiceError('invoice_already_paid', error.message);
      throw new SluiceError('network_error', `LND gave no final payment status (${error?.message ?? 'no result'}); the outcome is unknown`);
    },
    async makeInvoice(amountMsat, description) {
      const text = await post('/v1/invoices', { value_msat: amountMsat.toString(), memo: description, expiry: '3600' });
      const created = lndLines(text)[0];
      if (typeof created?.payment_request !== 'string') throw new SluiceError('invalid_response', 'LND answered without payment_request');
      return { paymentRequest: created.payment_request };
    },
  };
}
