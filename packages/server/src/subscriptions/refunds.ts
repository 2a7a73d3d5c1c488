/**
 * Refunds of a subscription's unused balance: to an invoice, a Lightning address or a
 * keysend key, through the payments service (in flight before it is sent, reconciled by
 * payment hash). The app lends the routing-fee budget so the customer gets every unused
 * msat; what the route does not use goes back to the app. Each attempt is committed
 * before its payment, in one transaction with the loan: its destination, amount, budget,
 * the exact invoice it pays and, for an invoice, its payment hash. So a start can finish an
 * attempt a crash cut off: reconcile it with the payment made under its idempotency key, or
 * send that same payment now if none began. Every function here runs under the
 * subscription's lock (service.ts).
 *
 * An attempt a version before migration 3 left pending saved no invoice and no budget, and
 * perhaps no hash. It is still finished once, for these reasons: its payment key has always
 * been `sub:<id>:refund:<attempt>`, so a payment that began is found by it (and taken as
 * the attempt's, whatever its hash) and is never sent again; one that never began is sent
 * now under that key (a Lightning address is asked again: nothing went out under the key,
 * so its new invoice is not a second payment), or fails if it cannot be rebuilt. Its budget
 * is the loan transfer under `sub:<id>:refund:<attempt>:fee` (the payment's fee budget was
 * that loan), never the balance beyond the refund, which also holds a payment that arrived
 * meanwhile; and the amount left is recomputed from the balance at the end, so the
 * refundMsat those versions overwrote on a late payment is not paid out. A loan they lent
 * without committing its attempt is returned by returnStrayLoan.
 */
import type { Logger } from 'pino';
import { appAccountId } from '../apps/service.js';
import type { Ledger } from '../ledger/group-commit.js';
import { balanceOf, type LedgerOp, type TransferId } from '../ledger/store.js';
import { decodeBolt11 } from '../lightning/bolt11/index.js';
import type { invoiceFromLightningAddress } from '../lightning/lnurl.js';
import { msat, type Msat } from '../money/msat.js';
import { defaultMaxFeeMsat, type PaymentService, type PaymentTarget, type PaymentView } from '../payments/service.js';
import type { BillingOutcome } from './billing.js';
import { cloneRow, type LiveSubscription } from './live.js';
import type { RefundDestination, SubscriptionRow } from './model.js';
import type { Fail } from './service.js';
import { LedgerOpRefused } from './store.js';

/** The idempotency key of attempt `attempt`'s fee loan (the ledger replays it, never lends twice). */
const feeAdvanceKey = (subscriptionId: string, attempt: number): string => `sub:${subscriptionId}:refund:${attempt}:fee`;
/** Gives an attempt's unused fee loan back to the app (the same key whoever returns it, so it is returned once). */
function feeReturnOp(row: SubscriptionRow, attempt: number, amountMsat: Msat): LedgerOp {
  return {
    kind: 'transfer', debitAccountId: row.accountId, creditAccountId: appAccountId(row.appId), amountMsat,
    code: 'subscription_refund_fee_return', reference: `${row.id}/refund/${attempt}`, idempotencyKey: `sub:${row.id}:refund:${attempt}:fee-return`,
  };
}
/** The idempotency key of an attempt's refund payment. */
const refundPaymentKey = (subscriptionId: string, attempt: number): string => `sub:${subscriptionId}:refund:${attempt}`;
/** Where a refund goes without the customer asking: the Lightning address or keysend key kept (an invoice pays once), or null. */
export function keptDestination(row: SubscriptionRow): RefundDestination | null {
  const kept = row.refundDestination;
  return kept !== null && kept.kind !== 'invoice' ? kept : null;
}
/** A refund attempt's payment: what it pays and the fee budget the app lent it. */
interface AttemptPayment {
  target: PaymentTarget;
  maxFeeMsat: Msat;
}
/** What a refund pays; for an invoice (a Lightning address's too) with the hash it was decoded for once. */
type RefundTarget = { ok: true; target: PaymentTarget; paymentHash: string | null };
/** Pays invoice `paymentRequest` (asking `invoiceAmountMsat`, null: any) for a refund of `refundMsat`: an amountless invoice is told the amount. */
function invoiceTarget(paymentRequest: string, invoiceAmountMsat: Msat | null, refundMsat: Msat): PaymentTarget {
  return { kind: 'invoice', paymentRequest, amountMsat: invoiceAmountMsat === null ? refundMsat : null };
}
/** How many of an ended subscription's newest transfers one read takes (a stray loan is looked for among them; an old attempt's loan is paged for). */
const TRANSFERS_PER_READ = 100;

export interface RefundDeps {
  ledger: Ledger;
  payments: PaymentService;
  logger: Logger;
  lightningAddress: typeof invoiceFromLightningAddress;
  /** Commits the subscription's new row (with ledger ops) and makes it the live state. */
  commit(state: LiveSubscription, row: SubscriptionRow, outcome: BillingOutcome, extraOps?: LedgerOp[]): Promise<void>;
  /** Drops an ended subscription whose refund is settled from memory. */
  forget(state: LiveSubscription): void;
}

export interface Refunds {
  /** What to pay for a refund of `amountMsat` to `destination` (checks an invoice; asks a Lightning address). */
  target(destination: RefundDestination, amountMsat: Msat): Promise<RefundTarget | Fail>;
  /** Pays the held balance to `destination`. */
  send(state: LiveSubscription, destination: RefundDestination): Promise<{ ok: true } | Fail>;
  /** Sends a held refund to the kept destination, if there is one (else it waits for a request); a refusal is logged with `context`. */
  sendToKept(state: LiveSubscription, context: string): Promise<void>;
  /**
   * At start: finishes the pending attempt a crash cut off (reconciled with the payment made
   * under its key, or sent once under it). Returns the destination a fresh attempt is owed
   * to when it had to fail.
   */
  resume(state: LiveSubscription): Promise<RefundDestination | null>;
  /** At start: gives back a fee loan an earlier version lent without saving its attempt. */
  returnStrayLoan(state: LiveSubscription): Promise<void>;
  /** A refund payment reached a final state. */
  resolve(state: LiveSubscription, payment: { paymentHash: string; status: string; feeMsat: bigint | null }): Promise<void>;
}

export function createRefunds(deps: RefundDeps): Refunds {
  const { ledger, payments, logger } = deps;
  const commitOne = deps.commit;
  const maybeForget = deps.forget;

  /**
   * Ends the pending attempt. What the route did not use of the loan goes back to the app;
   * everything else in the account is the customer's: the refund itself if it failed, and
   * any payment that arrived while it was in flight (held, and sent on to a destination that
   * can be paid again; an invoice cannot).
   */
  const finishAttempt = async (state: LiveSubscription, outcome: { succeeded: boolean; feeMsat: bigint; paymentHash: string | null }): Promise<void> => {
    const row = cloneRow(state.row);
    const account = await ledger.getAccount(row.accountId);
    if (!account) throw new Error(`subscription ${row.id} has no ledger account`);
    const balance = balanceOf(account);
    const budget = row.refundMaxFeeMsat ?? await legacyLoanMsat(row);
    const returned = budget - (outcome.succeeded ? outcome.feeMsat : 0n);
    const left = balance - returned;
    if (returned < 0n) throw new Error(`subscription ${row.id}: the refund's fee ${outcome.feeMsat} is above its budget ${budget}`);
    if (left < 0n) throw new Error(`subscription ${row.id}: the account holds ${balance} msat, less than the loan's ${returned} to return`);
    if (outcome.paymentHash !== null) row.refundPaymentHash = outcome.paymentHash;
    if (!outcome.succeeded) {
      row.refundStatus = 'failed';
      row.refundMsat = left;
    } else if (left > 0n) {
      row.refundStatus = 'held';
      row.refundMsat = left;
    } else {
      row.refundStatus = 'succeeded';
    }
    const ops: LedgerOp[] = returned > 0n ? [feeReturnOp(row, row.refundAttempts, msat(returned))] : [];
    await commitOne(state, row, { charges: [], occurrences: [], balance: left }, ops);
    await sendToKept(state, 'the refund of a payment that arrived during a refund failed');
    maybeForget(state);
  };

  /** A refund payment reached a final state: give back the unused fee budget, record the outcome. */
  const resolveRefund = async (state: LiveSubscription, payment: { paymentHash: string; status: string; feeMsat: bigint | null }): Promise<void> => {
    const row = state.row;
    // No hash yet: a crash cut a keysend attempt (or an earlier version's) off before its hash was recorded; the account has one refund in flight at most.
    if (row.refundStatus !== 'pending' || (row.refundPaymentHash !== null && row.refundPaymentHash !== payment.paymentHash)) return;
    await finishAttempt(state, { succeeded: payment.status === 'succeeded', feeMsat: payment.feeMsat ?? 0n, paymentHash: payment.paymentHash });
  };

  /** What to pay for a refund of `amountMsat` to `destination` (a Lightning address is asked for an invoice now). */
  const refundTarget = async (destination: RefundDestination, amountMsat: Msat): Promise<RefundTarget | Fail> => {
    if (destination.kind === 'invoice') {
      const decoded = decodeBolt11(destination.paymentRequest);
      if (!decoded.ok) return { ok: false, error: 'RefundInvoiceInvalid', detail: decoded.detail };
      if (decoded.invoice.amountMsat !== null && decoded.invoice.amountMsat !== amountMsat) {
        return { ok: false, error: 'RefundAmountMismatch', detail: `the refund is exactly ${amountMsat} msat` };
      }
      return { ok: true, target: invoiceTarget(destination.paymentRequest, decoded.invoice.amountMsat, amountMsat), paymentHash: decoded.invoice.paymentHash };
    }
    if (destination.kind === 'lightning_address') {
      const resolved = await deps.lightningAddress(destination.address, amountMsat);
      if (!resolved.ok) return { ok: false, error: 'RefundAddressFailed', detail: `${resolved.error}: ${resolved.detail}` };
      // invoiceFromLightningAddress checked the invoice (it decodes, for exactly this amount).
      const decoded = decodeBolt11(resolved.paymentRequest);
      if (!decoded.ok) throw new Error(`a Lightning address's checked invoice does not decode: ${decoded.detail}`);
      return { ok: true, target: invoiceTarget(resolved.paymentRequest, decoded.invoice.amountMsat, amountMsat), paymentHash: decoded.invoice.paymentHash };
    }
    return { ok: true, target: { kind: 'keysend', destinationPubkey: destination.pubkey, amountMsat }, paymentHash: null };
  };

  /**
   * What the pending attempt of an earlier version lent (it did not save its budget): the
   * transfer under the attempt's loan key, which was also its payment's fee budget. Not the
   * balance beyond the refund: that holds a payment that arrived while the attempt was in
   * flight too, which is the customer's (and such versions wrote the whole balance into
   * refundMsat then). Searched newest first back to the last charge (an attempt lends only
   * after the end, when charges have stopped); none found: the app had nothing to lend.
   */
  const legacyLoanMsat = async (row: SubscriptionRow): Promise<Msat> => {
    const key = feeAdvanceKey(row.id, row.refundAttempts);
    let beforeId: TransferId | undefined;
    for (;;) {
      const page = await ledger.listTransfers({ accountId: row.accountId, limit: TRANSFERS_PER_READ, ...(beforeId === undefined ? {} : { beforeId }) });
      for (const transfer of page) {
        if (transfer.idempotencyKey === key) return transfer.state === 'posted' ? transfer.amountMsat : msat(0n);
        if (transfer.code === 'subscription_charge') return msat(0n);
      }
      const oldest = page[page.length - 1];
      if (page.length < TRANSFERS_PER_READ || oldest === undefined) return msat(0n);
      beforeId = oldest.id;
    }
  };

  /** The pending attempt's payment, rebuilt at start from what was committed with it (same target, same budget: a replay, not a conflict). */
  const attemptPayment = async (row: SubscriptionRow): Promise<({ ok: true } & AttemptPayment) | Fail> => {
    const maxFeeMsat = row.refundMaxFeeMsat !== null ? msat(row.refundMaxFeeMsat) : await legacyLoanMsat(row);
    const destination = row.refundDestination;
    if (destination === null) {
      // The first version saved no destination with an attempt that paid an invoice.
      if (row.refundMaxFeeMsat === null) return { ok: false, error: 'RefundUnavailable', detail: 'an earlier version saved no destination with the attempt' };
      throw new Error(`subscription ${row.id} has a pending refund without destination`);
    }
    if (destination.kind === 'keysend') {
      return { ok: true, target: { kind: 'keysend', destinationPubkey: destination.pubkey, amountMsat: msat(row.refundMsat) }, maxFeeMsat };
    }
    if (row.refundPaymentRequest !== null) {
      const decoded = decodeBolt11(row.refundPaymentRequest);
      if (!decoded.ok) throw new Error(`subscription ${row.id}: the saved refund invoice no longer decodes (${decoded.detail})`);
      return { ok: true, target: invoiceTarget(row.refundPaymentRequest, decoded.invoice.amountMsat, msat(row.refundMsat)), maxFeeMsat };
    }
    // An attempt of an earlier version saved only its destination (a Lightning address is asked again).
    const target = await refundTarget(destination, msat(row.refundMsat));
    return target.ok ? { ok: true, target: target.target, maxFeeMsat } : target;
  };

  /**
   * Sends the refund attempt recorded as pending (the fee loan is in the account). Also used
   * at start for an attempt a crash cut off: the same idempotency key with the same payment
   * returns the payment if it had begun, and begins it if not; so it is sent once.
   */
  const payRefund = async (state: LiveSubscription, { target, maxFeeMsat }: AttemptPayment): Promise<{ ok: true } | Fail> => {
    const current = state.row;
    const attempt = current.refundAttempts;
    const result = await payments.pay(current.appId, {
      target, maxFeeMsat, idempotencyKey: refundPaymentKey(current.id, attempt), debitAccountId: current.accountId,
    });
    if (!result.ok) {
      // Nothing was sent under this key (a payment that began would have been replayed, and
      // at start one that began is found by its key before this runs).
      await finishAttempt(state, { succeeded: false, feeMsat: 0n, paymentHash: null });
      const invoiceProblem = ['InvoiceInvalid', 'InvoiceWrongNetwork', 'InvoiceExpired', 'InvoiceAlreadyPaid'].includes(result.error);
      return { ok: false, error: invoiceProblem ? 'RefundInvoiceInvalid' : 'RefundUnavailable', detail: `${result.error}${result.detail ? `: ${result.detail}` : ''}` };
    }
    if (state.row.refundStatus !== 'pending') return { ok: true }; // resolved meanwhile (a replay of a finished payment)
    if (state.row.refundPaymentHash !== result.payment.paymentHash) {
      const withHash = cloneRow(state.row);
      withHash.refundPaymentHash = result.payment.paymentHash;
      await commitOne(state, withHash, { charges: [], occurrences: [], balance: state.balance });
    }
    if (result.payment.status !== 'pending') await resolveRefund(state, result.payment);
    return { ok: true };
  };

  /** Pays the held refund to `destination`. Runs under the lock. */
  const sendRefund = async (state: LiveSubscription, destination: RefundDestination): Promise<{ ok: true } | Fail> => {
    const current = state.row;
    if (current.refundStatus === 'pending') return { ok: false, error: 'RefundInFlight' };
    const account = await ledger.getAccount(current.accountId);
    const amount = account ? balanceOf(account) : 0n;
    if (amount <= 0n) return { ok: false, error: 'NothingToRefund' };
    const amountMsat = msat(amount);
    const target = await refundTarget(destination, amountMsat);
    if (!target.ok) return target;
    const attempt = current.refundAttempts + 1;
    // The app lends the routing-fee budget, so the customer gets every unused msat; what
    // the route does not use goes back to the app (resolveRefund). An app with less than the
    // default budget lends what it has (a smaller budget may find no route: the refund then
    // fails and stays held for a retry).
    const app = await ledger.getAccount(appAccountId(current.appId));
    const available = app ? balanceOf(app) - app.debitsPendingMsat : 0n;
    const budget = defaultMaxFeeMsat(amountMsat);
    const maxFeeMsat = msat(available < budget ? (available > 0n ? available : 0n) : budget);
    const row = cloneRow(current);
    row.refundAttempts = attempt;
    row.refundStatus = 'pending';
    row.refundMsat = amount;
    // Kept with the attempt (an invoice too), so a restart can finish what a crash cut off:
    // the destination, the budget, and the exact invoice with its payment hash (a Lightning
    // address's invoice is known only now; a keysend's hash once the payment is made).
    row.refundDestination = destination;
    row.refundMaxFeeMsat = maxFeeMsat;
    row.refundPaymentRequest = target.target.kind === 'invoice' ? target.target.paymentRequest : null;
    row.refundPaymentHash = target.paymentHash;
    // The loan and the pending attempt commit in ONE transaction: a crash leaves both or
    // neither, never a loan in the account of a subscription that looks held (a later refund
    // would pay the loan to the customer) nor a pending attempt without its budget.
    const loan: LedgerOp[] = maxFeeMsat > 0n
      ? [{
          kind: 'transfer', debitAccountId: appAccountId(current.appId), creditAccountId: current.accountId, amountMsat: maxFeeMsat,
          code: 'subscription_refund_fee_advance', reference: `${current.id}/refund/${attempt}`, idempotencyKey: feeAdvanceKey(current.id, attempt),
        }]
      : [];
    try {
      await commitOne(state, row, { charges: [], occurrences: [], balance: amount + maxFeeMsat }, loan);
    } catch (error) {
      // The app's balance moved since it was read: nothing was written, the balance stays held.
      if (error instanceof LedgerOpRefused) return { ok: false, error: 'RefundUnavailable', detail: `the app cannot lend the ${maxFeeMsat} msat routing-fee budget now` };
      throw error;
    }
    return payRefund(state, { target: target.target, maxFeeMsat });
  };

  /** Sends a held refund to the kept destination, if there is one; a refusal is logged (the balance stays the customer's). */
  const sendToKept = async (state: LiveSubscription, context: string): Promise<void> => {
    const kept = keptDestination(state.row);
    if (state.row.refundStatus !== 'held' || kept === null) return;
    const sent = await sendRefund(state, kept);
    if (!sent.ok) logger.warn({ subscriptionId: state.row.id, error: sent.error, detail: sent.detail }, `${context}; it is held`);
  };

  /**
   * The payment of the pending attempt, found by the attempt's own idempotency key, if it
   * began (and pays the saved hash, when there is one); or null. By key, not by hash: another
   * payment of the same invoice (the merchant paying it itself, or an earlier attempt's) is
   * not this refund's. An attempt of an earlier version may have begun without saving a
   * hash; asked again, its Lightning address would give another invoice (a conflict, not a
   * replay), so its payment is found only this way.
   */
  const ownPayment = async (row: SubscriptionRow): Promise<PaymentView | null> => {
    const payment = await payments.getPaymentByKey(row.appId, refundPaymentKey(row.id, row.refundAttempts));
    return payment && (row.refundPaymentHash === null || payment.paymentHash === row.refundPaymentHash) ? payment : null;
  };

  /**
   * At start: the pending attempt's payment is looked up by its key (the payments service
   * resolved what it could before this runs; one still in flight is reported when it ends).
   * One that never began is sent now under the attempt's key; one that can no longer be sent
   * (its invoice expired meanwhile, or an earlier version's Lightning address cannot be asked
   * for one) fails, and the reusable destination (a Lightning address, a keysend key) it
   * returns is owed a fresh attempt (nothing of the old one was sent). None stays pending
   * without a payment that will report its end.
   */
  const resumeRefund = async (state: LiveSubscription): Promise<RefundDestination | null> => {
    const row = state.row;
    if (row.refundStatus !== 'pending') return null;
    const known = await ownPayment(row);
    if (known) {
      if (known.status !== 'pending') await resolveRefund(state, known);
      return null;
    }
    const payment = await attemptPayment(row);
    // Nothing began under the attempt's key (no payment was found by it): one that cannot be
    // rebuilt (an earlier version's, whose Lightning address cannot be asked now) fails.
    if (!payment.ok) await finishAttempt(state, { succeeded: false, feeMsat: 0n, paymentHash: null });
    const sent = payment.ok ? await payRefund(state, payment) : payment;
    if (sent.ok) return null;
    logger.warn({ subscriptionId: row.id, error: sent.error, detail: sent.detail }, `an interrupted refund could not be resumed; it is ${state.row.refundStatus}`);
    return state.row.refundStatus === 'failed' ? keptDestination(state.row) : null;
  };

  /**
   * Versions before the loan and the attempt shared a transaction lent the budget first: a
   * crash in between left the loan in the account of a subscription whose refund still
   * looked held (or failed), and the next refund paid it to the customer. Such a loan is
   * the next attempt's advance (its idempotency key names it); it goes back to the app, and
   * the attempt number moves past it in the same commit, so it is returned once and the
   * next attempt's keys are new.
   */
  const returnStrayLoan = async (state: LiveSubscription): Promise<void> => {
    const current = state.row;
    if (current.refundStatus !== 'held' && current.refundStatus !== 'failed') return;
    const attempt = current.refundAttempts + 1;
    const transfers = await ledger.listTransfers({ accountId: current.accountId, limit: TRANSFERS_PER_READ });
    const loan = transfers.find((transfer) => transfer.idempotencyKey === feeAdvanceKey(current.id, attempt) && transfer.state === 'posted');
    if (!loan) return;
    const row = cloneRow(current);
    row.refundAttempts = attempt;
    logger.warn({ subscriptionId: current.id, amountMsat: loan.amountMsat.toString() }, 'returning a refund fee loan a crash left without its attempt');
    await commitOne(state, row, { charges: [], occurrences: [], balance: state.balance - loan.amountMsat }, [feeReturnOp(current, attempt, loan.amountMsat)]);
  };

  return { target: refundTarget, send: sendRefund, sendToKept, resume: resumeRefund, resolve: resolveRefund, returnStrayLoan };
}
