/** The edge's view of chain failures: one public code per service error (exhaustive). */
import { ApiError, ERROR_CODES, type ErrorCode } from '../../errors/codes.js';
import type { ChainError, ChainFail } from './service.js';

export const CHAIN_ERROR_CODES: Record<ChainError, ErrorCode> = {
  Unknown: 'chain_unknown',
  Unpaid: 'chain_unpaid',
  Replayed: 'chain_link_replayed',
  Skipped: 'chain_link_skipped',
  Short: 'chain_link_short',
  Invalid: 'chain_link_invalid',
  Exhausted: 'chain_exhausted',
  Expired: 'chain_expired',
  Refunded: 'chain_refunded',
  TooManySteps: 'chain_call_too_costly',
  AppNotFound: 'app_not_found',
  InvalidPurchase: 'invalid_request',
  LightningUnavailable: 'lightning_unavailable',
  RefundUnavailable: 'chain_refund_unavailable',
  RefundInvoiceInvalid: 'invoice_invalid',
  RefundInvoiceExpired: 'invoice_expired',
  RefundInvoiceWrongNetwork: 'invoice_wrong_network',
  RefundInvoiceAlreadyPaid: 'invoice_already_paid',
  RefundToSelf: 'payment_to_self',
  RefundAmountMismatch: 'payout_amount_mismatch',
  RefundAddressFailed: 'refund_address_failed',
  NothingToRefund: 'chain_nothing_to_refund',
  Overloaded: 'overloaded',
};

export function chainErrorCode(failure: ChainFail): ErrorCode {
  return CHAIN_ERROR_CODES[failure.error];
}

export function chainApiError(failure: ChainFail): ApiError {
  return new ApiError(chainErrorCode(failure), failure.detail);
}

export function chainErrorStatus(failure: ChainFail): number {
  return ERROR_CODES[chainErrorCode(failure)].status;
}
