/**
 * Mappers from database rows (either dialect) to record types. Both drivers are set up
 * to return 64-bit integers as bigint; times become numbers (ms since 1970 fit exactly).
 */
import { msat, type Msat } from '../money/msat.js';
import type { ApiKeyRow, AppRow, InvoiceRow, PaymentRow } from './model.js';

type Row = Record<string, unknown>;

const str = (row: Row, name: string): string => {
  const value = row[name];
  if (typeof value !== 'string') throw new Error(`column ${name} is not text`);
  return value;
};
const strOrNull = (row: Row, name: string): string | null => (row[name] === null ? null : str(row, name));
const time = (row: Row, name: string): number => {
  const value = row[name];
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number') return value;
  throw new Error(`column ${name} is not an integer`);
};
const timeOrNull = (row: Row, name: string): number | null => (row[name] === null ? null : time(row, name));
const amount = (row: Row, name: string): Msat => {
  const value = row[name];
  if (typeof value === 'bigint') return msat(value);
  if (typeof value === 'number') return msat(value);
  throw new Error(`column ${name} is not an amount`);
};
const amountOrNull = (row: Row, name: string): Msat | null => (row[name] === null ? null : amount(row, name));

export function appFromRow(row: Row): AppRow {
  return {
    id: str(row, 'id'),
    name: str(row, 'name'),
    accountId: str(row, 'account_id'),
    createdAt: time(row, 'created_at'),
    revokedAt: timeOrNull(row, 'revoked_at'),
  };
}

export function apiKeyFromRow(row: Row): ApiKeyRow {
  return {
    id: str(row, 'id'),
    appId: str(row, 'app_id'),
    keyHash: str(row, 'key_hash'),
    prefix: str(row, 'prefix'),
    createdAt: time(row, 'created_at'),
    revokedAt: timeOrNull(row, 'revoked_at'),
  };
}

export function invoiceFromRow(row: Row): InvoiceRow {
  return {
    paymentHash: str(row, 'payment_hash'),
    appId: str(row, 'app_id'),
    creditAccountId: str(row, 'credit_account_id'),
    preimage: str(row, 'preimage'),
    paymentRequest: strOrNull(row, 'payment_request'),
    amountMsat: amount(row, 'amount_msat'),
    description: str(row, 'description'),
    descriptionHash: strOrNull(row, 'description_hash'),
    createdAt: time(row, 'created_at'),
    expiresAt: time(row, 'expires_at'),
    status: str(row, 'status') as InvoiceRow['status'],
    amountPaidMsat: amountOrNull(row, 'amount_paid_msat'),
    paidAt: timeOrNull(row, 'paid_at'),
    idempotencyKey: strOrNull(row, 'idempotency_key'),
    requestFingerprint: strOrNull(row, 'request_fingerprint'),
  };
}

export function paymentFromRow(row: Row): PaymentRow {
  return {
    id: str(row, 'id'),
    appId: str(row, 'app_id'),
    debitAccountId: str(row, 'debit_account_id'),
    kind: str(row, 'kind') as PaymentRow['kind'],
    paymentHash: str(row, 'payment_hash'),
    paymentRequest: strOrNull(row, 'payment_request'),
    destination: str(row, 'destination'),
    amountMsat: amount(row, 'amount_msat'),
    maxFeeMsat: amount(row, 'max_fee_msat'),
    feeMsat: amountOrNull(row, 'fee_msat'),
    status: str(row, 'status') as PaymentRow['status'],
    failureReason: strOrNull(row, 'failure_reason'),
    preimage: strOrNull(row, 'preimage'),
    holdTransferId: str(row, 'hold_transfer_id'),
    idempotencyKey: str(row, 'idempotency_key'),
    requestFingerprint: str(row, 'request_fingerprint'),
    createdAt: time(row, 'created_at'),
    resolvedAt: timeOrNull(row, 'resolved_at'),
  };
}

/** Column order shared by both dialects' INSERT statements. */
export const INVOICE_COLUMNS = [
  'payment_hash', 'app_id', 'credit_account_id', 'preimage', 'payment_request', 'amount_msat', 'description', 'description_hash',
  'created_at', 'expires_at', 'status', 'amount_paid_msat', 'paid_at', 'idempotency_key', 'request_fingerprint',
] as const;

export function invoiceValues(invoice: InvoiceRow): unknown[] {
  return [
    invoice.paymentHash, invoice.appId, invoice.creditAccountId, invoice.preimage, invoice.paymentRequest, invoice.amountMsat,
    invoice.description, invoice.descriptionHash, invoice.createdAt, invoice.expiresAt, invoice.status,
    invoice.amountPaidMsat, invoice.paidAt, invoice.idempotencyKey, invoice.requestFingerprint,
  ];
}

export const PAYMENT_COLUMNS = [
  'id', 'app_id', 'debit_account_id', 'kind', 'payment_hash', 'payment_request', 'destination', 'amount_msat', 'max_fee_msat',
  'fee_msat', 'status', 'failure_reason', 'preimage', 'hold_transfer_id', 'idempotency_key',
  'request_fingerprint', 'created_at', 'resolved_at',
] as const;

export function paymentValues(payment: PaymentRow): unknown[] {
  return [
    payment.id, payment.appId, payment.debitAccountId, payment.kind, payment.paymentHash, payment.paymentRequest, payment.destination,
    payment.amountMsat, payment.maxFeeMsat, payment.feeMsat, payment.status, payment.failureReason,
    payment.preimage, payment.holdTransferId, payment.idempotencyKey, payment.requestFingerprint,
    payment.createdAt, payment.resolvedAt,
  ];
}

/** Parameters for INSERT: "?, ?, ..." (SQLite) or "$1, $2, ..." (PostgreSQL). */
export function placeholders(count: number, dialect: 'sqlite' | 'postgres'): string {
  return Array.from({ length: count }, (_, index) => (dialect === 'sqlite' ? '?' : `$${index + 1}`)).join(', ');
}
