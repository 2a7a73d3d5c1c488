/**
 * The types of streams as the SDK hands them out: the wire's snake_case names, amounts as
 * bigint msat, times as Date (see `wire.ts` for the mapping from the sluice.v1 JSON).
 */

/**
 * Where payouts (refunds, winnings) go: exactly one of the three.
 *
 * @example
 * ```ts
 * const destination: PayoutDestination = { keysend: { pubkey: '02' + 'ab'.repeat(32) } };
 * ```
 */
export type PayoutDestination =
  | { keysend: { pubkey: string } }
  | { lightning_address: string }
  | { invoice: true };

/**
 * A stream: its terms, its balance and its last sequence number.
 *
 * @example
 * ```ts
 * const stream: Stream = await app.getStream('st_...');
 * console.log(stream.status, stream.balance_msat); // 'open' 50000n
 * ```
 */
export interface Stream {
  id: string;
  status: 'open' | 'closed';
  meter: 'stopped' | 'running' | 'paused';
  seq: number;
  /** Signed: negative when the payer owes the app. */
  balance_msat: bigint;
  /** Held by payouts in flight. */
  held_msat: bigint;
  prices: Record<string, bigint>;
  rate_msat_per_s: bigint;
  maximum_msat: bigint;
  settle_threshold_msat: bigint;
  settle_to_msat: bigint;
  max_charge_msat: bigint;
  payout_threshold_msat: bigint;
  expires_at: Date | null;
  payout: PayoutDestination | null;
  metadata: string;
  created_at: Date;
  closed_at: Date | null;
}

/**
 * The terms of a new stream; every one is optional (see `docs/protocol.md`, stream.create).
 *
 * @example
 * ```ts
 * const terms: StreamTerms = { prices: { shot: 200n }, settle_threshold_msat: 20_000n, settle_to_msat: 50_000n };
 * ```
 */
export interface StreamTerms {
  /** Event name -> msat per event. */
  prices?: Record<string, bigint>;
  rate_msat_per_s?: bigint;
  /** How far the payer may fall into debt; 0 (default): prepaid only. */
  maximum_msat?: bigint;
  /** When the balance falls under this, a top-up invoice is pushed... */
  settle_threshold_msat?: bigint;
  /** ...for the amount that brings the balance back to this. 0 (default): no invoices. */
  settle_to_msat?: bigint;
  max_charge_msat?: bigint;
  payout_threshold_msat?: bigint;
  expires_in_s?: number;
  payout?: PayoutDestination;
  metadata?: string;
}

/**
 * The answer to a charge or a reward: sent by the server only once the step is durable.
 *
 * @example
 * ```ts
 * const step: StepResult = await app.charge(streamId, { event: 'shot' });
 * console.log(step.seq, step.balance_msat, step.replayed);
 * ```
 */
export interface StepResult {
  seq: number;
  amount_msat: bigint;
  /** The payer's balance on the stream right after this step (signed). */
  balance_msat: bigint;
  /** true: this ref had been applied already; nothing moved again. */
  replayed: boolean;
  /** The ref the step was sent with (generated when the caller gave none). */
  ref: string;
}

interface EventBase {
  stream_id: string;
  seq: number;
  at: Date;
}

/**
 * An event of a stream, pushed by the server. Narrow on `type`. Money events
 * (`charged`, `rewarded`, `metered`) sent again after a reconnect carry `balance_msat: null`.
 *
 * @example
 * ```ts
 * app.on('event', (event: StreamEvent) => {
 *   if (event.type === 'charged') console.log(event.event, event.amount_msat);
 * });
 * ```
 */
export type StreamEvent =
  | (EventBase & { type: 'created'; balance_msat: bigint })
  | InvoiceEvent
  | (EventBase & { type: 'funded'; amount_msat: bigint; payment_hash: string; balance_msat: bigint })
  | (EventBase & { type: 'charged' | 'rewarded' | 'metered'; event: string; amount_msat: bigint; balance_msat: bigint | null })
  | (EventBase & { type: 'meter_started' | 'paused' | 'resumed' | 'meter_stopped'; reason: string; balance_msat: bigint })
  | (EventBase & { type: 'payout_requested'; amount_msat: bigint; payment_hash: string; balance_msat: bigint })
  | (EventBase & { type: 'payout_destination_set'; destination: string; balance_msat: bigint })
  | (EventBase & { type: 'payout_invoice_needed'; amount_msat: bigint; balance_msat: bigint })
  | (EventBase & { type: 'settled'; amount_msat: bigint; fee_msat: bigint; payment_hash: string; balance_msat: bigint })
  | (EventBase & { type: 'payout_failed'; amount_msat: bigint; reason: string; balance_msat: bigint })
  | (EventBase & { type: 'closed'; by: string; balance_msat: bigint })
  | (EventBase & { type: 'balance'; balance_msat: bigint; held_msat: bigint });

/**
 * A top-up invoice pushed by the server: pay it to fund the stream.
 *
 * @example
 * ```ts
 * payer.on('allowance_exceeded', ({ invoice }: { invoice: InvoiceEvent }) => showQr(invoice.payment_request));
 * ```
 */
export interface InvoiceEvent extends EventBase {
  type: 'invoice';
  payment_request: string;
  payment_hash: string;
  amount_msat: bigint;
  expires_at: Date;
  balance_msat: bigint;
}

/**
 * The state of the SDK's WebSocket connection: `connecting` (first time or again after a
 * drop), `open` (authenticated, subscriptions resumed), `closed` (for good: `close()` was
 * called, the key was refused, or reconnecting gave up).
 *
 * @example
 * ```ts
 * app.on('connection', (state: ConnectionState) => console.log('connection', state));
 * ```
 */
export type ConnectionState = 'connecting' | 'open' | 'closed';
