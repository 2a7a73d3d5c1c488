/**
 * The data of the events Sluice emits itself, built from the rows the causes committed.
 * The live path (a service's listener) and the catch-up at start build the same data
 * from the same row, so an event looks the same whichever path wrote it. Invoices and
 * payments go through the services' views of their rows and the REST API's own
 * serializers, so an event's `data` is exactly what `GET /v1/invoices/{hash}` or
 * `GET /v1/payments/{hash}` answers.
 */
import { isoTime } from '../http/wire.js';
import { invoiceJson } from '../invoices/routes.js';
import { invoiceViewFromRow } from '../invoices/service.js';
import { paymentJson } from '../payments/routes.js';
import { paymentViewFromRow, type PaymentView } from '../payments/service.js';
import type { InvoiceRow, PaymentRow } from '../records/model.js';
import type { NewEvent } from './model.js';

export function invoicePaidEvent(invoice: InvoiceRow): NewEvent {
  // Only a settled invoice has this event; the listener and the catch-up both pass the row as settlement left it.
  if (invoice.status !== 'paid') throw new Error(`invoice.paid of invoice ${invoice.paymentHash} in status ${invoice.status}`);
  return {
    appId: invoice.appId,
    type: 'invoice.paid',
    key: `invoice.paid:${invoice.paymentHash}`,
    createdAt: invoice.paidAt ?? undefined,
    // A paid invoice's view does not depend on the time it is read.
    data: invoiceJson(invoiceViewFromRow(invoice, invoice.paidAt ?? invoice.createdAt)),
  };
}

/** A payment with its final outcome: the payments service's view (resolved listener) or a PaymentRow (catch-up). */
export type ResolvedPayment = Omit<PaymentView, 'status'> & { appId: string; status: 'succeeded' | 'failed' };

export function paymentResolvedEvent(payment: ResolvedPayment): NewEvent {
  return {
    appId: payment.appId,
    type: payment.status === 'succeeded' ? 'payment.succeeded' : 'payment.failed',
    key: `payment.${payment.status}:${payment.id}`,
    createdAt: payment.resolvedAt ?? undefined,
    // Both paths pass the service's view: the preimage (the proof of payment) only once succeeded.
    data: paymentJson(payment),
  };
}

export function paymentFromRecord(row: PaymentRow): ResolvedPayment | null {
  if (row.status === 'in_flight') return null;
  return { ...paymentViewFromRow(row), appId: row.appId, status: row.status };
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
      created_at: isoTime(stream.createdAt),
      closed_at: isoTime(stream.closedAt),
    },
  };
}
