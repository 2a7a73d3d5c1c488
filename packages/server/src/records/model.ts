/**
 * Rows Sluice keeps next to the ledger: apps and their API keys, invoices it issued,
 * payments it sent, and small settings (cursors, the admin key hash).
 *
 * Operations that must change a row and the ledger together (an invoice settles and the
 * app is credited; a payment is recorded as in flight together with its hold) are single
 * methods here, implemented in one database transaction per store. Callers never
 * sequence "write row, then move money" themselves.
 */
import type { Msat } from '../money/msat.js';
import type { LedgerError, LedgerOp, Transfer, TransferOp } from '../ledger/store.js';

export interface AppRow {
  id: string;
  name: string;
  accountId: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface ApiKeyRow {
  id: string;
  appId: string;
  /** SHA-256 of the key, hex. The key itself is shown once and never stored. */
  keyHash: string;
  /** The first characters of the key, so people can tell keys apart. */
  prefix: string;
  createdAt: number;
  revokedAt: number | null;
}

export type InvoiceRowStatus = 'creating' | 'open' | 'paid';

export interface InvoiceRow {
  paymentHash: string;
  appId: string;
  /** The ledger account credited when the invoice is paid: the app's, or a stream's. */
  creditAccountId: string;
  /** Secret until paid; never logged. Kept so a creation interrupted by a crash can be completed. */
  preimage: string;
  paymentRequest: string | null;
  amountMsat: Msat;
  description: string;
  descriptionHash: string | null;
  createdAt: number;
  expiresAt: number;
  status: InvoiceRowStatus;
  amountPaidMsat: Msat | null;
  paidAt: number | null;
  idempotencyKey: string | null;
  requestFingerprint: string | null;
}

export type PaymentKind = 'invoice' | 'keysend';
export type PaymentRowStatus = 'in_flight' | 'succeeded' | 'failed';

export interface PaymentRow {
  id: string;
  appId: string;
  /** The ledger account that pays (amount + fee): the app's, or a stream's for payouts to a payer. */
  debitAccountId: string;
  kind: PaymentKind;
  paymentHash: string;
  paymentRequest: string | null;
  destination: string;
  amountMsat: Msat;
  maxFeeMsat: Msat;
  feeMsat: Msat | null;
  status: PaymentRowStatus;
  failureReason: string | null;
  /** For keysend, drawn before sending (secret until it succeeds); for invoices, learned on success. */
  preimage: string | null;
  holdTransferId: string;
  idempotencyKey: string;
  requestFingerprint: string;
  createdAt: number;
  resolvedAt: number | null;
}

export type BeginPaymentResult =
  | { ok: true; payment: PaymentRow }
  | { ok: false; error: 'DuplicateKey' | 'HashInUse' | LedgerError };

export type SettleInvoiceResult =
  | { ok: true; invoice: InvoiceRow; transfer: Transfer }
  | { ok: false; error: 'UnknownInvoice' | 'AlreadyPaid' | LedgerError };

export interface FinishPayment {
  status: 'succeeded' | 'failed';
  feeMsat: Msat | null;
  failureReason: string | null;
  preimage: string | null;
  resolvedAt: number;
  /** post (succeeded, with amount + fee) or void (failed) of the payment's hold. */
  ledgerOp: LedgerOp;
}

export interface RecordStore {
  readonly dialect: 'sqlite' | 'postgres';

  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;
  /** Sets the value only if none is set yet; returns the value now stored. */
  setMetaIfAbsent(key: string, value: string): Promise<string>;

  insertApp(app: AppRow, firstKey: ApiKeyRow): Promise<void>;
  getApp(id: string): Promise<AppRow | null>;
  listApps(): Promise<AppRow[]>;
  revokeApp(id: string, at: number): Promise<boolean>;
  insertApiKey(key: ApiKeyRow): Promise<void>;
  listApiKeys(appId: string): Promise<ApiKeyRow[]>;
  revokeApiKey(appId: string, keyId: string, at: number): Promise<boolean>;
  /** The key and its app, whether revoked or not (the caller decides). */
  findApiKeyByHash(keyHash: string): Promise<{ key: ApiKeyRow; app: AppRow } | null>;

  /** 'DuplicateKey' when (appId, idempotencyKey) exists. */
  insertInvoice(invoice: InvoiceRow): Promise<'ok' | 'DuplicateKey'>;
  markInvoiceOpen(paymentHash: string, paymentRequest: string): Promise<void>;
  getInvoice(paymentHash: string): Promise<InvoiceRow | null>;
  findInvoiceByKey(appId: string, idempotencyKey: string): Promise<InvoiceRow | null>;
  listInvoices(appId: string, limit: number): Promise<InvoiceRow[]>;
  listCreatingInvoices(): Promise<InvoiceRow[]>;
  /** The paid invoices among these payment hashes, in any order (one query, however many). */
  listPaidInvoices(paymentHashes: readonly string[]): Promise<InvoiceRow[]>;
  /** Marks the invoice paid and applies the credit, atomically. */
  settleInvoice(paymentHash: string, paid: { amountPaidMsat: Msat; paidAt: number }, credit: TransferOp): Promise<SettleInvoiceResult>;

  /** Applies the hold and inserts the in-flight row, atomically; nothing is written when refused. */
  beginPayment(payment: Omit<PaymentRow, 'holdTransferId'>, hold: TransferOp): Promise<BeginPaymentResult>;
  /** Resolves an in-flight payment and posts or voids its hold, atomically. False if it was not in flight. */
  finishPayment(paymentId: string, finish: FinishPayment): Promise<boolean>;
  getPayment(id: string): Promise<PaymentRow | null>;
  findPaymentByKey(appId: string, idempotencyKey: string): Promise<PaymentRow | null>;
  /** The newest payment for this hash (any app), or null. */
  latestPaymentByHash(paymentHash: string): Promise<PaymentRow | null>;
  listPayments(appId: string, limit: number): Promise<PaymentRow[]>;
  listInFlightPayments(): Promise<PaymentRow[]>;
  /** Every payment this account paid (any status), oldest first (created_at, then id). */
  listPaymentsOf(debitAccountId: string): Promise<PaymentRow[]>;

  close(): Promise<void>;
}
