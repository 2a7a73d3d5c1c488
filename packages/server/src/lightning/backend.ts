/**
 * The narrow interface Sluice needs from a Lightning node.
 *
 * Threat model: the backend is a separate system that can crash, lag, lie by omission or
 * answer slowly. Implementations check what the node returns like user input. Payment
 * outcomes are three-valued: `unknown` means "we do not know whether money left", and
 * callers must never treat it as failed (that would refund money that may have been
 * paid). Only `failed` and `not_found` (the node has no record of the payment, so it was
 * never sent) release reserved funds.
 *
 * All amounts are msat bigints; hashes, preimages and pubkeys are lowercase hex.
 */
import type { Msat } from '../money/msat.js';

export type BackendKind = 'devnet' | 'lnd';
export type Network = 'mainnet' | 'testnet' | 'signet' | 'regtest';

export interface NodeInfo {
  backend: BackendKind;
  network: Network;
  /** 33-byte compressed secp256k1 public key, hex. */
  pubkey: string;
  alias: string;
  blockHeight: number;
  syncedToChain: boolean;
}

export interface CreateInvoiceRequest {
  amountMsat: Msat;
  /** Exactly one of description and descriptionHash (32 bytes, hex) may be set; neither means "". */
  description?: string;
  descriptionHash?: string;
  expiryS: number;
  /** 32 bytes hex. When absent the node draws a random preimage. */
  preimage?: string;
}

export interface CreatedInvoice {
  paymentHash: string;
  paymentRequest: string;
  amountMsat: Msat;
  /** Unix milliseconds. */
  createdAt: number;
  expiresAt: number;
}

export type InvoiceState = 'open' | 'settled' | 'canceled' | 'expired';

export interface InvoiceRecord {
  paymentHash: string;
  paymentRequest: string;
  amountMsat: Msat;
  state: InvoiceState;
  /** What the payer actually paid; set when settled (may exceed amountMsat). */
  amountPaidMsat: Msat | null;
  createdAt: number;
  expiresAt: number;
  settledAt: number | null;
  /** Position of this settlement in the node's settle order (decimal string); set when settled. */
  settleIndex: string | null;
  /** Hex; only for settled invoices. */
  preimage: string | null;
}

export type SettledInvoice = InvoiceRecord & { state: 'settled'; settleIndex: string; settledAt: number; amountPaidMsat: Msat };

export interface WatchInvoicesOptions {
  /**
   * Deliver every invoice settled strictly after this settle index ("0": from the start).
   * Callers persist the index of the last invoice they handled and pass it back after a
   * restart, so no settlement is missed and none needs to be handled twice (handlers are
   * idempotent anyway).
   */
  afterSettleIndex: string;
  /** Called in settle order, one at a time; the next call waits for the promise. */
  onSettled(invoice: SettledInvoice): Promise<void>;
  /** Transport errors; the watcher reconnects by itself and resumes after the last delivered index. */
  onError?(error: unknown): void;
}

export interface InvoiceWatch {
  stop(): Promise<void>;
}

export interface PayInvoiceRequest {
  paymentRequest: string;
  /** Only for invoices without an amount. */
  amountMsat?: Msat;
  feeLimitMsat: Msat;
  timeoutS: number;
}

export interface KeysendRequest {
  destinationPubkey: string;
  amountMsat: Msat;
  feeLimitMsat: Msat;
  timeoutS: number;
  /** 32 bytes hex, drawn and stored by the caller before sending so a retry has the same hash. */
  preimage: string;
}

export type PaymentFailureReason =
  | 'no_route'
  | 'insufficient_balance'
  | 'timeout'
  | 'incorrect_payment_details'
  | 'invoice_expired'
  | 'already_paid'
  | 'error';

export type PaymentOutcome =
  | { status: 'succeeded'; paymentHash: string; preimage: string; amountMsat: Msat; feeMsat: Msat }
  | { status: 'failed'; paymentHash: string; reason: PaymentFailureReason; detail: string }
  | { status: 'unknown'; paymentHash: string; detail: string };

/** What a look-up can add: the node never heard of this payment hash, so nothing was sent. */
export type PaymentLookup = PaymentOutcome | { status: 'not_found'; paymentHash: string };

export interface LightningBackend {
  readonly kind: BackendKind;
  getInfo(): Promise<NodeInfo>;
  createInvoice(request: CreateInvoiceRequest): Promise<CreatedInvoice>;
  /** null when the node has no invoice with this hash. */
  lookupInvoice(paymentHash: string): Promise<InvoiceRecord | null>;
  watchInvoices(options: WatchInvoicesOptions): InvoiceWatch;
  /** Never rejects: transport errors and timeouts without a final answer are `unknown`. */
  payInvoice(request: PayInvoiceRequest): Promise<PaymentOutcome>;
  /** Never rejects, as payInvoice. */
  keysend(request: KeysendRequest): Promise<PaymentOutcome>;
  lookupPayment(paymentHash: string): Promise<PaymentLookup>;
  close(): Promise<void>;
}
