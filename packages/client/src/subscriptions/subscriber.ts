/**
 * `SluiceSubscriber`: the customer's side of a subscription, with the payer token the
 * merchant handed over (`spt_...`). It reads the subscription, pays its prepayment
 * invoices automatically within an allowance the customer sets, asks for an invoice, and
 * cancels with the refund sent where the customer says.
 *
 * Threat model: as with `SluicePayer`, the wallet is the dangerous part: the server decides
 * which invoice a subscription shows. So the SDK pays only the subscription's own open
 * invoice, each payment hash once, unexpired, and only while both limits hold: what this
 * subscriber paid to the subscription stays within `perSubscriptionMsat`, and its automatic
 * payments of the last hour within `perHourMsat`. Anything else waits for a person
 * (`allowance_exceeded`). The default allowance is zero: nothing is paid unasked.
 */
import { SluiceError, isSluiceServerErrorCode } from '../errors.js';
import type { FetchFunction } from '../client.js';
import { Emitter } from '../streams/emitter.js';
import type { SpendRecord } from '../streams/payer.js';
import type { WalletAdapter } from '../streams/wallets.js';

/**
 * How much `SluiceSubscriber` may pay without asking: in total to this subscription, and
 * in the last hour. Zero: never pay automatically.
 *
 * @example
 * ```ts
 * const allowance: SubscriptionAllowance = { perSubscriptionMsat: 60_000_000n, perHourMsat: 2_000_000n }; // 60,000 and 2,000 sats
 * ```
 */
export interface SubscriptionAllowance {
  perSubscriptionMsat: bigint;
  perHourMsat: bigint;
}

/**
 * A subscription as its customer sees it (amounts in msat as bigint, times as Date).
 *
 * @example
 * ```ts
 * const serve = (s: Subscription) => ['active', 'trialing', 'past_due'].includes(s.status);
 * ```
 */
export interface Subscription {
  id: string;
  status: 'created' | 'trialing' | 'active' | 'past_due' | 'suspended' | 'paused' | 'cancelled' | 'expired';
  plan: { id: string; name: string; price_msat_per_increment: bigint; increment_s: number; prepayment_s: number; grace_s: number; contract_s: number | null };
  balance_msat: bigint;
  owed_msat: bigint;
  charged_msat: bigint;
  paid_through: Date | null;
  time_left_s: number | null;
  grace_ends_at: Date | null;
  contract_ends_at: Date | null;
  invoice: { payment_request: string; payment_hash: string; amount_msat: bigint; expires_at: Date } | null;
  refund: { status: string; amount_msat: bigint; payment_hash: string | null };
}

/**
 * Where a refund goes: exactly one of an invoice (no amount, or exactly the refund), a
 * Lightning address, or a node's public key (keysend).
 *
 * @example
 * ```ts
 * const refund: SubscriptionRefund = { lightning_address: 'me@wallet.example' };
 * ```
 */
export type SubscriptionRefund = { payment_request: string } | { lightning_address: string } | { keysend_pubkey: string };

/**
 * Options of `SluiceSubscriber.open`.
 *
 * @example
 * ```ts
 * const options: SluiceSubscriberOptions = { baseUrl: location.origin, subscriptionId, payerToken, wallet: weblnWallet(), allowance };
 * ```
 */
export interface SluiceSubscriberOptions {
  baseUrl: string;
  subscriptionId: string;
  /** The payer token (`spt_...`) the merchant handed over. */
  payerToken: string;
  wallet?: WalletAdapter | undefined;
  /** Default zero: pay nothing automatically. */
  allowance?: SubscriptionAllowance | undefined;
  /** How often to read the subscription (and pay a due invoice); default 60,000 ms; 0: only on `refresh()`. */
  pollIntervalMs?: number | undefined;
  /** Automatic payments already made (restored from storage); they count toward both limits. */
  spent?: readonly SpendRecord[] | undefined;
  fetch?: FetchFunction | undefined;
  /** Unix ms; default Date.now. */
  now?: (() => number) | undefined;
}

/**
 * Events of `SluiceSubscriber`: `update` after every read; `spend` when an automatic payment
 * starts (store it for the allowance); `paid` once the wallet paid; `allowance_exceeded`
 * when an invoice waits for a person; `error` for a failed read or payment.
 *
 * @example
 * ```ts
 * subscriber.on('allowance_exceeded', ({ invoice }) => showQr(invoice.payment_request));
 * ```
 */
export interface SluiceSubscriberEvents extends Record<string, unknown> {
  update: Subscription;
  spend: SpendRecord;
  paid: { payment_hash: string; amount_msat: bigint };
  allowance_exceeded: { invoice: NonNullable<Subscription['invoice']>; reason: 'per_subscription' | 'per_hour' | 'no_wallet' };
  error: SluiceError;
}

const HOUR_MS = 3_600_000;

function amount(value: unknown, field: string): bigint {
  if (typeof value !== 'string' || !/^[0-9]{1,19}$/.test(value)) throw new SluiceError('invalid_response', `${field} is not a decimal string of msat`);
  return BigInt(value);
}
const time = (value: unknown): Date | null => (typeof value === 'string' ? new Date(value) : null);

function subscriptionFromWire(json: unknown): Subscription {
  const body = json as Record<string, any>;
  if (typeof body?.id !== 'string' || typeof body.status !== 'string') throw new SluiceError('invalid_response', 'not a subscription');
  const invoice = body.invoice as Record<string, unknown> | null;
  return {
    id: body.id,
    status: body.status as Subscription['status'],
    plan: {
      id: body.plan.id, name: body.plan.name, price_msat_per_increment: amount(body.plan.price_msat_per_increment, 'plan.price_msat_per_increment'),
      increment_s: body.plan.increment_s, prepayment_s: body.plan.prepayment_s, grace_s: body.plan.grace_s, contract_s: body.plan.contract_s ?? null,
    },
    balance_msat: amount(body.balance_msat, 'balance_msat'),
    owed_msat: amount(body.owed_msat, 'owed_msat'),
    charged_msat: amount(body.charged_msat, 'charged_msat'),
    paid_through: time(body.paid_through),
    time_left_s: typeof body.time_left_s === 'number' ? body.time_left_s : null,
    grace_ends_at: time(body.grace_ends_at),
    contract_ends_at: time(body.contract_ends_at),
    invoice: invoice === null || invoice === undefined ? null : {
      payment_request: String(invoice.payment_request), payment_hash: String(invoice.payment_hash),
      amount_msat: amount(invoice.amount_msat, 'invoice.amount_msat'), expires_at: new Date(String(invoice.expires_at)),
    },
    refund: { status: body.refund.status, amount_msat: amount(body.refund.amount_msat, 'refund.amount_msat'), payment_hash: body.refund.payment_hash ?? null },
  };
}

/**
 * The customer's handle on one subscription.
 *
 * @example
 * ```ts
 * const subscriber = await SluiceSubscriber.open({
 *   baseUrl: location.origin, subscriptionId, payerToken, wallet: weblnWallet(),
 *   allowance: { perSubscriptionMsat: 60_000_000n, perHourMsat: 2_000_000n },
 * });
 * subscriber.on('update', (s) => render(s.status, s.time_left_s));
 * await subscriber.cancel({ lightning_address: 'me@wallet.example' });
 * ```
 */
export class SluiceSubscriber extends Emitter<SluiceSubscriberEvents> {
  readonly #options: SluiceSubscriberOptions;
  readonly #allowance: SubscriptionAllowance;
  readonly #spent: SpendRecord[];
  readonly #attempted = new Set<string>();
  readonly #fetch: FetchFunction;
  #subscription: Subscription | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;

  private constructor(options: SluiceSubscriberOptions) {
    super();
    this.#options = options;
    const allowance = options.allowance ?? { perSubscriptionMsat: 0n, perHourMsat: 0n };
    if (typeof allowance.perSubscriptionMsat !== 'bigint' || typeof allowance.perHourMsat !== 'bigint' || allowance.perSubscriptionMsat < 0n || allowance.perHourMsat < 0n) {
      throw new TypeError('allowance amounts must be non-negative bigints of msat');
    }
    this.#allowance = { ...allowance };
    this.#spent = [...(options.spent ?? [])];
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /**
   * Reads the subscription (paying a due invoice within the allowance) and starts polling.
   *
   * @example
   * ```ts
   * const subscriber = await SluiceSubscriber.open({ baseUrl, subscriptionId, payerToken });
   * ```
   */
  static async open(options: SluiceSubscriberOptions): Promise<SluiceSubscriber> {
    const subscriber = new SluiceSubscriber(options);
    await subscriber.refresh();
    subscriber.#schedule();
    return subscriber;
  }

  /**
   * The subscription as last read.
   *
   * @example
   * ```ts
   * console.log(subscriber.subscription.paid_through);
   * ```
   */
  get subscription(): Subscription {
    return this.#subscription as Subscription;
  }

  /**
   * Reads the subscription now; pays its open invoice if the allowance allows.
   *
   * @example
   * ```ts
   * const s = await subscriber.refresh();
   * ```
   */
  async refresh(): Promise<Subscription> {
    const subscription = await this.#request('GET', '');
    await this.#maybePay(subscription);
    return this.#subscription as Subscription;
  }

  /**
   * Asks for a prepayment invoice (for `amountMsat`, else what is due, else one prepayment) and pays it within the allowance.
   *
   * @example
   * ```ts
   * const s = await subscriber.requestInvoice(1_000_000n); // top up 1,000 sat
   * ```
   */
  async requestInvoice(amountMsat?: bigint): Promise<Subscription> {
    if (amountMsat !== undefined && (typeof amountMsat !== 'bigint' || amountMsat <= 0n)) throw new TypeError('amountMsat must be a positive bigint');
    const subscription = await this.#request('POST', '/pay', amountMsat === undefined ? {} : { amount_msat: amountMsat.toString() });
    await this.#maybePay(subscription);
    return this.#subscription as Subscription;
  }

  /**
   * Cancels now; the unused balance is refunded exactly to `refund` (or kept for a later refund).
   *
   * @example
   * ```ts
   * const s = await subscriber.cancel({ keysend_pubkey: myNodePubkey });
   * ```
   */
  async cancel(refund?: SubscriptionRefund): Promise<Subscription> {
    const subscription = await this.#request('POST', '/cancel', refund === undefined ? {} : { refund });
    this.close();
    return subscription;
  }

  /**
   * Pauses the subscription, if its plan allows it (`subscription_pause_not_allowed` otherwise).
   *
   * @example
   * ```ts
   * await subscriber.pause();   // away for the weekend
   * await subscriber.resume();  // back: billing starts again now
   * ```
   */
  async pause(): Promise<Subscription> {
    return this.#request('POST', '/pause', {});
  }

  /**
   * Resumes a paused subscription now.
   *
   * @example
   * ```ts
   * const s = await subscriber.resume();
   * ```
   */
  async resume(): Promise<Subscription> {
    const subscription = await this.#request('POST', '/resume', {});
    await this.#maybePay(subscription);
    return this.#subscription as Subscription;
  }

  /**
   * Stops polling.
   *
   * @example
   * ```ts
   * subscriber.close();
   * ```
   */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule(): void {
    const interval = this.#options.pollIntervalMs ?? 60_000;
    if (this.#closed || interval <= 0) return;
    this.#timer = setTimeout(() => {
      this.refresh().catch((error) => this.emit('error', error instanceof SluiceError ? error : new SluiceError('network_error', String(error)))).finally(() => this.#schedule());
    }, interval);
  }

  async #maybePay(subscription: Subscription): Promise<void> {
    const invoice = subscription.invoice;
    const now = (this.#options.now ?? Date.now)();
    if (!invoice || this.#attempted.has(invoice.payment_hash) || invoice.expires_at.getTime() <= now) return;
    if (!this.#options.wallet) return this.emit('allowance_exceeded', { invoice, reason: 'no_wallet' });
    const total = this.#spent.reduce((sum, record) => sum + record.amount_msat, 0n);
    const lastHour = this.#spent.filter((record) => record.at > now - HOUR_MS).reduce((sum, record) => sum + record.amount_msat, 0n);
    if (total + invoice.amount_msat > this.#allowance.perSubscriptionMsat) return this.emit('allowance_exceeded', { invoice, reason: 'per_subscription' });
    if (lastHour + invoice.amount_msat > this.#allowance.perHourMsat) return this.emit('allowance_exceeded', { invoice, reason: 'per_hour' });
    // Counted before paying: an outcome we never learn still counts against the allowance.
    this.#attempted.add(invoice.payment_hash);
    const record: SpendRecord = { at: now, amount_msat: invoice.amount_msat };
    this.#spent.push(record);
    this.emit('spend', record);
    try {
      await this.#options.wallet.payInvoice(invoice.payment_request);
    } catch (error) {
      this.emit('error', error instanceof SluiceError ? error : new SluiceError('network_error', error instanceof Error ? error.message : String(error)));
      return;
    }
    this.emit('paid', { payment_hash: invoice.payment_hash, amount_msat: invoice.amount_msat });
    await this.#request('GET', '');
  }

  async #request(method: 'GET' | 'POST', suffix: string, body?: Record<string, unknown>): Promise<Subscription> {
    const url = `${this.#options.baseUrl.replace(/\/+$/, '')}/v1/subscriptions/${encodeURIComponent(this.#options.subscriptionId)}${suffix}`;
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${this.#options.payerToken}` };
    const init: RequestInit = { method, headers };
    if (method === 'POST') {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body ?? {});
    }
    let response: Response;
    try {
      response = await this.#fetch(url, init);
    } catch (cause) {
      throw new SluiceError('network_error', `could not reach ${this.#options.baseUrl}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new SluiceError('invalid_response', `HTTP ${response.status} with a body that is not JSON`, { status: response.status });
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: unknown; message?: unknown } }).error;
      const code = typeof error?.code === 'string' ? error.code : '';
      const message = typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`;
      throw isSluiceServerErrorCode(code) ? new SluiceError(code, message, { status: response.status }) : new SluiceError('unknown_error', message, { status: response.status });
    }
    const subscription = subscriptionFromWire(json);
    this.#subscription = subscription;
    this.emit('update', subscription);
    return subscription;
  }
}
