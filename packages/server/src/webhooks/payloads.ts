/**
 * The data of the events Sluice emits itself, built from the rows the causes committed.
 * The live path (a service's listener) and the catch-up at start build the same data
 * from the same row, so an event looks the same whichever path wrote it. Field names and
 * formats are those of the REST API (amounts as decimal strings of msat, ISO times).
 */
import type { InvoiceRow, PaymentRow } from '../records/model.js';
import type { NewEvent } from './model.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function invoicePaidEvent(invoice: InvoiceRow): NewEvent {
  return {
    appId: invoice.appId,
    type: 'invoice.paid',
    key: `invoice.paid:${invoice.paymentHash}`,
    createdAt: invoice.paidAt ?? undefined,
    data: {
      payment_hash: invoice.paymentHash,
      payment_request: invoice.paymentRequest,
      amount_msat: invoice.amountMsat.toString(),
      amount_paid_msat: invoice.amountPaidMsat === null ? null : invoice.amountPaidMsat.toString(),
      description: invoice.description,
      status: 'paid',
      created_at: iso(invoice.createdAt),
      expires_at: iso(invoice.expiresAt),
      paid_at: iso(invoice.paidAt),
    },
  };
}

/** The fields a payment event needs; both PaymentRow and the payments service's resolved view carry them. */
export interface ResolvedPayment {
  id: string;
  appId: string;
  paymentHash: string;
  kind: 'invoice' | 'keysend';
  destination: string;
  amountMsat: bigint;
  maxFeeMsat: bigint;
  feeMsat: bigint | null;
  status: 'succeeded' | 'failed';
  failureReason: string | null;
  preimage: string | null;
  createdAt: number;
  resolvedAt: number | null;
}

export function paymentResolvedEvent(payment: ResolvedPayment): NewEvent {
  return {
    appId: payment.appId,
    type: payment.status === 'succeeded' ? 'payment.succeeded' : 'payment.failed',
    key: `payment.${payment.status}:${payment.id}`,
    createdAt: payment.resolvedAt ?? undefined,
    data: {
      id: payment.id,
      payment_hash: payment.paymentHash,
      kind: payment.kind,
      destination: payment.destination,
      amount_msat: payment.amountMsat.toString(),
      max_fee_msat: payment.maxFeeMsat.toString(),
      fee_msat: payment.feeMsat === null ? null : payment.feeMsat.toString(),
      status: payment.status,
      failure_reason: payment.failureReason,
      // The proof of payment, as GET /v1/payments/{hash} shows it once succeeded.
      ...(payment.status === 'succeeded' && payment.preimage !== null ? { preimage: payment.preimage } : {}),
      created_at: iso(payment.createdAt),
      resolved_at: iso(payment.resolvedAt),
    },
  };
}

export function paymentFromRecord(row: PaymentRow): ResolvedPayment | null {
  if (row.status === 'in_flight') return null;
  return { ...row, status: row.status };
}

export interface ClosedStream {
  id: string;
  appId: string;
  metadata: string;
  createdAt: number;
  closedAt: number | null;
  /** Who closed it: "app", "payer" or "expiry". */
  closedBy: string;
}

export function streamClosedEvent(stream: ClosedStream): NewEvent {
  return {
    appId: stream.appId,
    type: 'stream.closed',
    key: `stream.closed:${stream.id}`,
    createdAt: stream.closedAt ?? undefined,
    data: {
      stream_id: stream.id,
      closed_by: stream.closedBy,
      metadata: stream.metadata,
      created_at: iso(stream.createdAt),
      closed_at: iso(stream.closedAt),
    },
  };
}
