/** JSON of the refund payment (decimal-string amounts, unix seconds). */
import type { PaymentView } from '../../payments/service.js';

export const payment = (view: PaymentView) => ({
  payment_hash: view.paymentHash,
  status: view.status,
  amount_msat: view.amountMsat.toString(),
  max_fee_msat: view.maxFeeMsat.toString(),
  fee_msat: view.feeMsat === null ? null : view.feeMsat.toString(),
  failure_reason: view.failureReason,
});
