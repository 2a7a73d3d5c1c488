/**
 * `SluicePayer`: the player's side of a stream, with the payer token the game handed over.
 * It shows the balance, pays top-up invoices automatically within an allowance the player
 * sets, answers payouts (refunds, winnings) with invoices from the wallet, pauses and closes.
 *
 * Threat model: the payer token lets its holder read the stream, pause, close and choose
 * where payouts go; it can never charge. The dangerous part is the wallet: the game (or
 * whoever controls the server) decides which invoices are pushed. So the SDK pays only
 * `invoice` events of this stream, each once, unexpired, and only while both limits hold:
 * the stream's total funding stays within `perStreamMsat` and the automatic payments of
 * the last hour within `perHourMsat`. Anything else is left for a person
 * (`allowance_exceeded`). The default allowance is zero: nothing is paid unasked.
 */
import { SluiceError } from '../errors.js';
import { Connection, type ConnectionEvents, type ConnectionOptions } from './connection.js';
import { Emitter } from './emitter.js';
import type { ConnectionState, InvoiceEvent, PayoutDestination, Stream, StreamEvent } from './types.js';
import type { WalletAdapter } from './wallets.js';
import { integer, streamFromWire } from './wire.js';
import { memorySpendLog, type SpendLog, type SpendRecord } from './spend-log.js';

export type { SpendRecord } from './spend-log.js';

/**
 * How much `SluicePayer` may pay without asking: the stream's total funding (every
 * `funded` event of the stream, paid by anyone) and the automatic payments of the last
 * hour (by this SluicePayer). Zero: never pay automatically.
 *
 * Both limits count invoice amounts only: the routing fee a wallet pays on top of a top-up
 * invoice (even one it reports as `feeMsat`) is not counted against them. Bound fees with
 * the wallet's own fee limit (`lndRestWallet`'s `maxFeeMsat`, the WebLN wallet's settings).
 * (`createPayingFetch`'s budget, by contrast, counts reported fees: docs/sdk-fetch.md.)
 *
 * @example
 * ```ts
 * const allowance: Allowance = { perStreamMsat: 200_000n, perHourMsat: 100_000n }; // 200 and 100 sats
 * ```
 */
export interface Allowance {
  perStreamMsat: bigint;
  perHourMsat: bigint;
}

/**
 * Options of `SluicePayer.connect`.
 *
 * @example
 * ```ts
 * const options: SluicePayerOptions = {
 *   baseUrl: location.origin, payerToken, wallet: weblnWallet(), allowance: { perStreamMsat: 100_000n, perHourMsat: 50_000n },
 * };
 * ```
 */
export interface SluicePayerOptions extends ConnectionOptions {
  /** The payer token (`pt_...`) the game handed over. */
  payerToken: string;
  /** Pays invoices and (if it can) makes payout invoices; without one, everything waits for a person. */
  wallet?: WalletAdapter | undefined;
  /** Default zero: pay nothing automatically. */
  allowance?: Allowance | undefined;
  /** Answer payout_invoice_needed with an invoice from the wallet (default true). */
  answerPayouts?: boolean | undefined;
  /** Automatic payments already made (e.g. restored from storage after a reload); they count toward perHourMsat. */
  spent?: readonly SpendRecord[] | undefined;
  /**
   * Where automatic payments are counted for perHourMsat (default: in memory, seeded with
   * `spent`). `storageSpendLog(localStorage)` keeps the hour across reloads and shares it
   * between every payer of the page that uses it.
   */
  spendLog?: SpendLog | undefined;
  /** Unix ms; default Date.now (tests pass their own clock). */
  now?: (() => number) | undefined;
}

/**
 * Why an invoice was left for a person.
 *
 * @example
 * ```ts
 * payer.on('allowance_exceeded', ({ reason }: { reason: AllowanceExceededReason }) => console.log(reason));
 * ```
 */
export type AllowanceExceededReason = 'per_stream' | 'per_hour' | 'no_wallet' | 'paused';

/**
 * The events `SluicePayer` emits.
 *
 * - `event`: every event of the stream, once each (also across reconnects);
 * - `balance`: the payer's balance changed (signed msat);
 * - `invoice_paid`: a top-up invoice was paid (automatically or by `payInvoice`);
 * - `allowance_exceeded`: an invoice waits for a person (`pendingInvoice`);
 * - `payment_failed`: the wallet could not pay (`unknown`: it may still be paid);
 * - `payout_invoice_sent`: a refund or winnings invoice went to the server;
 * - `spend`: an automatic payment was started (store it for the per-hour allowance);
 * - `connection`, `error`: as for `SluiceApp`.
 *
 * @example
 * ```ts
 * payer.on('invoice_paid', ({ invoice, automatic }) => console.log(automatic ? 'topped up' : 'paid', invoice.amount_msat));
 * ```
 */
export type SluicePayerEvents = ConnectionEvents & {
  balance: bigint;
  invoice_paid: { invoice: InvoiceEvent; preimage: string; automatic: boolean };
  allowance_exceeded: { invoice: InvoiceEvent; reason: AllowanceExceededReason; allowance: Allowance; spentOnStreamMsat: bigint; spentThisHourMsat: bigint };
  payment_failed: { invoice: InvoiceEvent; error: SluiceError; outcome: 'failed' | 'unknown' };
  payout_invoice_sent: { amount_msat: bigint };
  spend: SpendRecord;
};

const HOUR_MS = 3_600_000;

function checkAllowance(allowance: Allowance): Allowance {
  for (const field of ['perStreamMsat', 'perHourMsat'] as const) {
    if (typeof allowance[field] !== 'bigint' || allowance[field] < 0n) throw new TypeError(`allowance.${field} must be a non-negative bigint of msat`);
  }
  return { ...allowance };
}

function unknownOutcome(error: SluiceError): boolean {
  return error.code === 'network_error' || error.code === 'timeout' || error.code === 'unknown_error' || error.code === 'invalid_response' || error.code === 'internal_error';
}

/**
 * The player's side of one stream.
 *
 * @example
 * ```ts
 * import { SluicePayer, weblnWallet } from '@sluice/client';
 *
 * const payer = await SluicePayer.connect({
 *   baseUrl: location.origin,
 *   payerToken, // from the game
 *   wallet: weblnWallet(),
 *   allowance: { perStreamMsat: 100_000n, perHourMsat: 50_000n },
 * });
 * payer.on('balance', (balance) => render(balance));
 * payer.on('allowance_exceeded', ({ invoice }) => showQr(invoice.payment_request));
 * // ... later
 * await payer.close(); // the rest of the balance comes back as a refund
 * ```
 */
export class SluicePayer extends Emitter<SluicePayerEvents> {
  readonly #connection: Connection;
  readonly #wallet: WalletAdapter | null;
  readonly #answerPayouts: boolean;
  readonly #now: () => number;
  /** The stream this payer token opens. */
  readonly streamId: string;
  #allowance: Allowance;
  #paused = false;
  #balance: bigint | null = null;
  #stream: Stream | null = null;
  #closed = false;
  #caughtUp = false;
  #onCaughtUp: (() => void) | null = null;
  /** Top-up invoices seen and not (yet) funded, by payment hash. */
  readonly #invoices = new Map<string, InvoiceEvent>();
  readonly #funded = new Set<string>();
  #fundedTotal = 0n;
  /** Payments this payer started and whose funded event has not arrived: hash -> amount. */
  readonly #paying = new Map<string, bigint>();
  /** A decision under the shared spend log's lock is under way / was asked for meanwhile. */
  #deciding = false;
  #decideAgain = false;
  readonly #spendLog: SpendLog;
  #payoutAsked: bigint | null = null;
  #answeringPayout = false;

  private constructor(connection: Connection, streamId: string, options: SluicePayerOptions) {
    super();
    this.#connection = connection;
    this.streamId = streamId;
    this.#wallet = options.wallet ?? null;
    this.#answerPayouts = options.answerPayouts ?? true;
    this.#now = options.now ?? Date.now;
    this.#allowance = checkAllowance(options.allowance ?? { perStreamMsat: 0n, perHourMsat: 0n });
    this.#spendLog = options.spendLog ?? memorySpendLog(options.spent ?? []);
    if (options.spendLog !== undefined) for (const record of options.spent ?? []) options.spendLog.add(record);
    connection.on('event', (event) => this.#onEvent(event));
    connection.on('connection', (state) => {
      if (state !== 'open') this.#caughtUp = false; // the balance event after the resubscribe says when we are current again
      this.emit('connection', state);
    });
    connection.on('error', (error) => this.emit('error', error));
  }

  /**
   * Connects with the payer token, reads the stream's history (to know which invoices are
   * paid) and resolves once current. Then pays the pending top-up invoice if the allowance
   * lets it. Rejects with `invalid_api_key` for an unknown token.
   *
   * @example
   * ```ts
   * const payer = await SluicePayer.connect({ baseUrl, payerToken, wallet, allowance, WebSocket });
   * console.log(payer.balanceMsat);
   * ```
   */
  static async connect(options: SluicePayerOptions): Promise<SluicePayer> {
    if (typeof options.payerToken !== 'string' || !options.payerToken.startsWith('pt_')) throw new TypeError('payerToken must be a payer token (pt_...)');
    const connection = new Connection(options, { payer_token: options.payerToken });
    const auth = await connection.open();
    if (auth.role !== 'payer' || auth.stream_id === null) {
      connection.close();
      throw new SluiceError('forbidden', 'this is not a payer token');
    }
    const payer = new SluicePayer(connection, auth.stream_id, options);
    try {
      await payer.refresh();
      const current = new Promise<void>((resolve) => {
        payer.#onCaughtUp = resolve;
      });
      await connection.subscribe(auth.stream_id, 0);
      await current;
    } catch (error) {
      connection.close();
      throw error;
    }
    return payer;
  }

  /**
   * The payer's balance on the stream (signed msat; negative: the payer owes the game).
   *
   * @example
   * ```ts
   * console.log(`${payer.balanceMsat / 1000n} sats`);
   * ```
   */
  get balanceMsat(): bigint {
    return this.#balance ?? 0n;
  }

  /**
   * The stream as last read (`refresh()`, pause, resume, close).
   *
   * @example
   * ```ts
   * console.log(payer.stream?.prices);
   * ```
   */
  get stream(): Stream | null {
    return this.#stream;
  }

  /**
   * The allowance in force.
   *
   * @example
   * ```ts
   * console.log(payer.allowance.perHourMsat);
   * ```
   */
  get allowance(): Allowance {
    return { ...this.#allowance };
  }

  /**
   * Everything that funded this stream so far (paid by anyone), plus payments in flight:
   * invoice amounts, routing fees not included (see `Allowance`).
   *
   * @example
   * ```ts
   * const left = payer.allowance.perStreamMsat - payer.spentOnStreamMsat;
   * ```
   */
  get spentOnStreamMsat(): bigint {
    let total = this.#fundedTotal;
    for (const amount of this.#paying.values()) total += amount;
    return total;
  }

  /**
   * Automatic payments of the last hour: invoice amounts, routing fees not included (see `Allowance`).
   *
   * @example
   * ```ts
   * console.log(payer.spentThisHourMsat);
   * ```
   */
  get spentThisHourMsat(): bigint {
    return this.#spendLog.since(this.#now() - HOUR_MS).reduce((total, record) => total + record.amount_msat, 0n);
  }

  /**
   * The newest unpaid, unexpired top-up invoice: the one a person should pay (show it as a QR code).
   *
   * @example
   * ```ts
   * const invoice = payer.pendingInvoice;
   * if (invoice) showQr(invoice.payment_request);
   * ```
   */
  get pendingInvoice(): InvoiceEvent | null {
    let newest: InvoiceEvent | null = null;
    for (const invoice of this.#invoices.values()) {
      if (this.#funded.has(invoice.payment_hash) || this.#paying.has(invoice.payment_hash)) continue;
      if (invoice.expires_at.getTime() <= this.#now()) continue;
      if (newest === null || invoice.seq > newest.seq) newest = invoice;
    }
    return this.#closed ? null : newest;
  }

  /**
   * Whether automatic payments are paused (`pause()`).
   *
   * @example
   * ```ts
   * button.textContent = payer.paused ? 'Resume' : 'Pause';
   * ```
   */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Whether the stream is closed.
   *
   * @example
   * ```ts
   * if (payer.closed) showRefund();
   * ```
   */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The connection's state.
   *
   * @example
   * ```ts
   * statusLine.textContent = payer.connectionState;
   * ```
   */
  get connectionState(): ConnectionState {
    return this.#connection.state;
  }

  /**
   * Changes the allowance; a waiting invoice that now fits is paid.
   *
   * @example
   * ```ts
   * payer.setAllowance({ perStreamMsat: 500_000n, perHourMsat: 200_000n });
   * ```
   */
  setAllowance(allowance: Allowance): void {
    this.#allowance = checkAllowance(allowance);
    this.#considerPending();
  }

  /**
   * Pays a top-up invoice now, whatever the allowance says (a person decided): the pending
   * one by default. Resolves once paid; rejects with the wallet's error.
   *
   * @example
   * ```ts
   * payButton.onclick = () => payer.payInvoice();
   * ```
   */
  async payInvoice(invoice: InvoiceEvent | null = this.pendingInvoice): Promise<void> {
    if (invoice === null) throw new SluiceError('invalid_request', 'no invoice is waiting to be paid');
    if (invoice.stream_id !== this.streamId) throw new SluiceError('invalid_request', 'this invoice is not of this stream');
    const error = await this.#pay(invoice, false);
    if (error) throw error;
  }

  /**
   * Stops automatic payments and pauses the stream's per-second meter if it runs.
   *
   * @example
   * ```ts
   * await payer.pause();
   * ```
   */
  async pause(): Promise<void> {
    this.#paused = true;
    const stream = await this.refresh();
    if (stream.meter === 'running') this.#stream = streamFromWire((await this.#connection.request('meter', { action: 'pause' }, { resendable: false })).stream);
  }

  /**
   * Resumes automatic payments (and the meter, if it was paused).
   *
   * @example
   * ```ts
   * await payer.resume();
   * ```
   */
  async resume(): Promise<void> {
    this.#paused = false;
    const stream = await this.refresh();
    if (stream.meter === 'paused') this.#stream = streamFromWire((await this.#connection.request('meter', { action: 'resume' }, { resendable: false })).stream);
    this.#considerPending();
  }

  /**
   * Closes the stream. The positive balance is paid back: to the payout destination, or
   * (by default) to an invoice the wallet makes when the server asks for one; watch for
   * the `settled` event.
   *
   * @example
   * ```ts
   * payer.on('event', (event) => { if (event.type === 'settled') console.log('refund', event.amount_msat); });
   * await payer.close();
   * ```
   */
  async close(): Promise<Stream> {
    const reply = await this.#connection.request('close', {}, { resendable: false });
    integer(reply, 'seq');
    this.#stream = streamFromWire(reply.stream);
    this.#closed = true;
    return this.#stream;
  }

  /**
   * Says where payouts go (refunds, winnings) instead of answering each with an invoice.
   *
   * @example
   * ```ts
   * await payer.setPayout({ keysend: { pubkey: myNodePubkey } });
   * ```
   */
  async setPayout(destination: PayoutDestination): Promise<Stream> {
    const reply = await this.#connection.request('payout.set', { destination }, { resendable: true });
    this.#stream = streamFromWire(reply.stream);
    return this.#stream;
  }

  /**
   * Reads the stream again (balance, status, meter).
   *
   * @example
   * ```ts
   * const stream = await payer.refresh();
   * ```
   */
  async refresh(): Promise<Stream> {
    const stream = streamFromWire((await this.#connection.request('stream.get', {}, { resendable: true })).stream);
    this.#stream = stream;
    if (stream.status === 'closed') this.#closed = true;
    this.#setBalance(stream.balance_msat);
    return stream;
  }

  /**
   * Drops the socket as a network failure would; the SDK reconnects and resumes.
   *
   * @example
   * ```ts
   * payer.reconnect();
   * ```
   */
  reconnect(): void {
    this.#connection.dropSocket();
  }

  /**
   * Closes the connection (not the stream: see `close()`).
   *
   * @example
   * ```ts
   * window.addEventListener('pagehide', () => payer.disconnect());
   * ```
   */
  disconnect(): void {
    this.#connection.close();
  }

  // ---- internals ----

  #setBalance(balance: bigint): void {
    if (this.#balance === balance) return;
    this.#balance = balance;
    this.emit('balance', balance);
  }

  #onEvent(event: StreamEvent): void {
    if (event.stream_id !== this.streamId) return;
    switch (event.type) {
      case 'invoice':
        this.#invoices.set(event.payment_hash, event);
        break;
      case 'funded':
        if (!this.#funded.has(event.payment_hash)) {
          this.#funded.add(event.payment_hash);
          this.#fundedTotal += event.amount_msat;
        }
        this.#paying.delete(event.payment_hash);
        this.#invoices.delete(event.payment_hash);
        break;
      case 'payout_invoice_needed':
        this.#payoutAsked = event.amount_msat;
        break;
      case 'settled':
      case 'payout_failed':
      case 'payout_requested':
      case 'payout_destination_set':
        this.#payoutAsked = null;
        break;
      case 'closed':
        this.#closed = true;
        break;
    }
    // Money events sent again on resume carry no balance; the balance event after them does.
    if (event.balance_msat !== null) this.#setBalance(event.balance_msat);
    this.emit('event', event);
    if (event.type === 'balance' && !this.#caughtUp) {
      this.#caughtUp = true;
      const resolve = this.#onCaughtUp;
      this.#onCaughtUp = null;
      resolve?.();
    }
    if (!this.#caughtUp) return; // history: decide only once current, or a paid invoice might look unpaid
    if (event.type === 'invoice' || event.type === 'balance') this.#considerPending();
    if (event.type === 'payout_invoice_needed' || event.type === 'balance') this.#answerPayout();
  }

  /**
   * Pays the pending invoice automatically if the allowance allows it. With a spend log shared
   * with other tabs, the check and the record are made under the log's lock (one decision at a
   * time; one asked for meanwhile is made after it, on what is pending then).
   */
  #considerPending(): void {
    const log = this.#spendLog;
    if (log.exclusively === undefined) {
      this.#decidePending();
      return;
    }
    if (this.#deciding) {
      this.#decideAgain = true;
      return;
    }
    this.#deciding = true;
    void log.exclusively(() => this.#decidePending()).finally(() => {
      this.#deciding = false;
      if (!this.#decideAgain) return;
      this.#decideAgain = false;
      this.#considerPending();
    });
  }

  /** The allowance check, then (in the same synchronous step) the payment's record and its start. */
  #decidePending(): void {
    const invoice = this.pendingInvoice;
    if (invoice === null || !this.#caughtUp) return;
    const spentOnStreamMsat = this.spentOnStreamMsat;
    const spentThisHourMsat = this.spentThisHourMsat;
    let reason: AllowanceExceededReason | null = null;
    if (this.#wallet === null) reason = 'no_wallet';
    else if (this.#paused) reason = 'paused';
    else if (spentOnStreamMsat + invoice.amount_msat > this.#allowance.perStreamMsat) reason = 'per_stream';
    else if (spentThisHourMsat + invoice.amount_msat > this.#allowance.perHourMsat) reason = 'per_hour';
    if (reason !== null) {
      this.emit('allowance_exceeded', { invoice, reason, allowance: this.allowance, spentOnStreamMsat, spentThisHourMsat });
      return;
    }
    void this.#pay(invoice, true);
  }

  /** Pays once; resolves to the error, if any (automatic payments report it as an event only). */
  async #pay(invoice: InvoiceEvent, automatic: boolean): Promise<SluiceError | null> {
    const wallet = this.#wallet;
    if (wallet === null) return new SluiceError('invalid_request', 'no wallet: pay the invoice from another wallet (QR code)');
    if (this.#paying.has(invoice.payment_hash) || this.#funded.has(invoice.payment_hash)) return null;
    // Counted before the wallet is asked, so concurrent invoices cannot both pass the allowance.
    this.#paying.set(invoice.payment_hash, invoice.amount_msat);
    const record: SpendRecord = { at: this.#now(), amount_msat: invoice.amount_msat, id: invoice.payment_hash };
    if (automatic) {
      this.#spendLog.add(record);
      this.emit('spend', record);
    }
    try {
      const { preimage } = await wallet.payInvoice(invoice.payment_request);
      this.emit('invoice_paid', { invoice, preimage, automatic });
      return null;
    } catch (cause) {
      const error = cause instanceof SluiceError ? cause : new SluiceError('unknown_error', `the wallet failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
      if (error.code === 'invoice_already_paid') return null; // paid elsewhere: the funded event follows
      const outcome = unknownOutcome(error) ? 'unknown' : 'failed';
      if (outcome === 'failed') {
        // Certainly not paid: free the allowance and let a person (or a later retry) pay it.
        this.#paying.delete(invoice.payment_hash);
        if (automatic) this.#forget(record);
      }
      this.emit('payment_failed', { invoice, error, outcome });
      return error;
    }
  }

  /** Takes a failed payment's record out of the spend log (under its lock when shared, as every write). */
  #forget(record: SpendRecord): void {
    const log = this.#spendLog;
    if (log.exclusively === undefined) log.remove(record);
    else void log.exclusively(() => log.remove(record));
  }

  #answerPayout(): void {
    const amountMsat = this.#payoutAsked;
    const wallet = this.#wallet;
    if (amountMsat === null || this.#answeringPayout || !this.#answerPayouts || wallet?.makeInvoice === undefined) return;
    this.#answeringPayout = true;
    void (async () => {
      try {
        const { paymentRequest } = await (wallet.makeInvoice as NonNullable<WalletAdapter['makeInvoice']>)(amountMsat, `Sluice payout from stream ${this.streamId}`);
        await this.#connection.request('payout.invoice', { payment_request: paymentRequest }, { resendable: false });
        if (this.#payoutAsked === amountMsat) this.#payoutAsked = null;
        this.emit('payout_invoice_sent', { amount_msat: amountMsat });
      } catch (cause) {
        const error = cause instanceof SluiceError ? cause : new SluiceError('unknown_error', String(cause), { cause });
        if (error.code !== 'no_payout_requested') this.emit('error', error);
      } finally {
        this.#answeringPayout = false;
      }
    })();
  }
}
