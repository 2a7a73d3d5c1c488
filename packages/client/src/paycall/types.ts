/** Public types of the paying fetch (see fetch.ts). */
import type { WalletAdapter } from '../streams/wallets.js';
import type { ChainStorage } from './storage.js';

/**
 * The `fetch` the paying fetch sends through: the global one by default.
 *
 * @example
 * ```ts
 * const logged: PayCallBaseFetch = (input, init) => {
 *   console.log(init?.method ?? 'GET', input);
 *   return fetch(input, init);
 * };
 * ```
 */
export type PayCallBaseFetch = (input: string, init?: RequestInit) => Promise<Response>;

/**
 * How the paying fetch uses hash-chain tokens (docs/paycall.md).
 *
 * @example
 * ```ts
 * const chain: PayCallChainOptions = { steps: 500, storage: localStorage };
 * ```
 */
export interface PayCallChainOptions {
  /**
   * Steps to buy per chain (1 to 10,000,000); default 1000. Fewer are bought when the budget
   * left cannot pay for that many (but never fewer than one call's worth). Building a chain
   * costs about 2 hashes per step over its life (see hashchain.ts).
   */
  steps?: number | undefined;
  /** Where chains are kept across sessions (`localStorage`, or your own). Default: memory only. */
  storage?: ChainStorage | undefined;
  /** How long to wait for a paid chain to become active; default 60000 ms. */
  activationTimeoutMs?: number | undefined;
}

/**
 * Options of `createPayingFetch`.
 *
 * @example
 * ```ts
 * const options: PayingFetchOptions = { wallet: weblnWallet(), budgetMsat: 100_000n }; // 100 sat
 * ```
 */
export interface PayingFetchOptions {
  /** Pays the invoices: `weblnWallet()`, `lndRestWallet(...)`, `devnetWallet(...)` or your own. */
  wallet: WalletAdapter;
  /**
   * Most msat the wallet may pay, in total, over the life of this fetch: chain purchases and
   * L402 invoices, plus the routing fees the wallet reports (`spent().feesMsat`). A payment is
   * refused before the wallet is asked when its amount, plus everything paid so far (fees
   * included), plus the wallet's fee limit when it declares one (`wallet.maxFeeMsat`, as
   * `lndRestWallet` does), would pass it. With such a wallet the budget is never passed;
   * with one that declares no limit (`devnetWallet`, `weblnWallet`, most custom adapters) the
   * last payment's own fee can pass it, by at most what that wallet allows itself to pay in
   * fees. Refunds do not raise it.
   */
  budgetMsat: bigint;
  /** Hash-chain tokens: on (default), off (`false`), or tuned. Preferred when a server offers them. */
  chain?: PayCallChainOptions | false | undefined;
  /** L402 tokens when no chain is offered (or chains are off); default true. */
  l402?: boolean | undefined;
  /** The fetch to send through; default the global `fetch`. */
  fetch?: PayCallBaseFetch | undefined;
}

/**
 * What one call through the paying fetch cost. Amounts are msat.
 *
 * @example
 * ```ts
 * const response = await paidFetch('https://api.example.com/paid/joke');
 * const receipt: PaidCallReceipt | undefined = paidFetch.receipt(response);
 * console.log(receipt?.scheme, receipt?.costMsat);
 * ```
 */
export interface PaidCallReceipt {
  url: string;
  method: string;
  /** How the call was paid; null when it needed no payment (or none could be made). */
  scheme: 'chain' | 'l402' | null;
  /** What the call consumed: steps x step price for a chain, the L402 budget it used. */
  costMsat: bigint;
  /** What the wallet paid while making this call (a chain purchase, an L402 invoice); usually 0. */
  paidMsat: bigint;
  /** The routing fees of those payments, counted as in `spent().feesMsat`; usually 0. */
  feesMsat: bigint;
  /** The HTTP status returned to the caller. */
  status: number;
  /** For a chain call: the chain and its balance after the call (from `Sluice-Chain-Balance`). */
  chain?: { chainId: string; index: number; remainingSteps: number; remainingMsat: bigint } | undefined;
  /** For an L402 call: what the token has left (from `Sluice-L402-Balance`), when the server says. */
  l402RemainingMsat?: bigint | undefined;
}

/**
 * Totals of a paying fetch, in msat.
 *
 * @example
 * ```ts
 * const { paidMsat, feesMsat, remainingBudgetMsat } = paidFetch.spent();
 * ```
 */
export interface PayCallSpending {
  budgetMsat: bigint;
  /** Invoice amounts paid by the wallet (chain purchases + L402 invoices); includes payments under way and payments whose outcome is unknown. Routing fees are not in it: see `feesMsat`. */
  paidMsat: bigint;
  /**
   * Routing fees the wallet paid on top of `paidMsat`, as it reported them (`feeMsat` of
   * `payInvoice`). For a payment under way, one whose outcome is unknown, or one the wallet
   * reported no fee for, the wallet's `maxFeeMsat` (the most it can be; 0 when the wallet
   * declares no limit, so such a wallet's unreported fees are not counted).
   */
  feesMsat: bigint;
  /** `budgetMsat - paidMsat - feesMsat`, or 0 when fees passed the budget. */
  remainingBudgetMsat: bigint;
  /** Consumed by calls: chain steps the servers accepted x step price, and L402 budgets used. */
  usedMsat: bigint;
  /** Given back by chain refunds (succeeded or under way). */
  refundedMsat: bigint;
  /** Calls served with a payment. */
  paidCalls: number;
}

/**
 * One payment the wallet made (or was asked to make).
 *
 * @example
 * ```ts
 * paidFetch.on('payment', (payment: PayCallPayment) => console.log(payment.kind, payment.amountMsat));
 * ```
 */
export interface PayCallPayment {
  kind: 'chain_purchase' | 'l402_invoice';
  amountMsat: bigint;
  paymentRequest: string;
  /** The URL whose call needed it. */
  url: string;
  chainId?: string | undefined;
}

/**
 * A chain the paying fetch holds.
 *
 * @example
 * ```ts
 * for (const chain of paidFetch.chains()) console.log(chain.chainId, chain.remainingSteps);
 * ```
 */
export interface HeldChainInfo {
  chainId: string;
  appId: string;
  buyUrl: string;
  steps: number;
  stepMsat: bigint;
  /** The highest index the server is known to have accepted. */
  index: number;
  remainingSteps: number;
  remainingMsat: bigint;
  /** The server's last known status. */
  status: 'pending' | 'active' | 'exhausted' | 'expired' | 'refunded';
  /** Still used for new calls (false once spent, refunded or replaced). */
  inUse: boolean;
}

/**
 * Where a chain refund goes: an invoice for exactly the unused amount (or for no amount), a
 * Lightning address, or (neither) an invoice made by the wallet (`makeInvoice`).
 *
 * @example
 * ```ts
 * const refunds = await paidFetch.refund({ lightningAddress: 'me@example.com' });
 * ```
 */
export interface PayCallRefundOptions {
  /** Only this chain; default every held chain with unused steps. */
  chainId?: string | undefined;
  invoice?: string | undefined;
  lightningAddress?: string | undefined;
}

/**
 * A refund of a chain's unused steps.
 *
 * @example
 * ```ts
 * const [refund]: PayCallRefund[] = await paidFetch.refund();
 * console.log(refund?.amountMsat, refund?.status);
 * ```
 */
export interface PayCallRefund {
  chainId: string;
  amountMsat: bigint;
  paymentHash: string;
  status: 'pending' | 'succeeded' | 'failed';
}

/**
 * Events of a paying fetch.
 *
 * - `payment`: the wallet is about to pay (the budget already counts it);
 * - `call`: a call finished, with its receipt;
 * - `refund`: a chain refund was asked for.
 *
 * @example
 * ```ts
 * paidFetch.on('call', (receipt) => console.log(receipt.url, receipt.costMsat));
 * ```
 */
export interface PayingFetchEvents {
  payment: PayCallPayment;
  call: PaidCallReceipt;
  refund: PayCallRefund;
  [key: string]: unknown;
}

/**
 * A `fetch` that pays: same signature as the global `fetch`, plus what it spent.
 *
 * @example
 * ```ts
 * const paidFetch: PayingFetch = createPayingFetch({ wallet, budgetMsat: 50_000n });
 * const response = await paidFetch('https://api.example.com/paid/joke');
 * console.log(paidFetch.spent().paidMsat);
 * ```
 */
export interface PayingFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Totals so far. */
  spent(): PayCallSpending;
  /** The receipt of a response this fetch returned. */
  receipt(response: Response): PaidCallReceipt | undefined;
  /** Listens to an event; returns the function that stops listening. */
  on<K extends keyof PayingFetchEvents & string>(type: K, listener: (value: PayingFetchEvents[K]) => void): () => void;
  /** The chains held (in use, and replaced ones that may still hold refundable steps). */
  chains(): HeldChainInfo[];
  /** Refunds the unused steps of held chains (waits for their calls in flight). */
  refund(options?: PayCallRefundOptions): Promise<PayCallRefund[]>;
  /** Loads the chains kept in `chain.storage` (done by the first call anyway). */
  restore(): Promise<void>;
}
