/**
 * Outgoing Lightning payments for apps: write in flight, send, record the outcome, and
 * reconcile whatever a crash or an unanswered node left open.
 *
 * Threat model: between "send" and "record" the process can die and the node can go
 * silent. So (1) a payment and the hold on the app's funds (amount + max fee) are
 * written in one transaction before anything is sent; (2) the node's answer moves the
 * payment to succeeded (post amount + actual fee) or failed (void the hold); (3) an
 * outcome we do not know stays in flight and is asked about again by payment hash, with
 * capped backoff, for as long as it takes: it is never refunded on a guess. The one
 * exception is `not_found` (the node never heard of the hash, so nothing was sent),
 * which is final only when no live process can still be about to send it.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { appAccountId } from '../apps/service.js';
import { decodeBolt11 } from '../lightning/bolt11/index.js';
import type { LightningBackend, NodeInfo, PaymentLookup, PaymentOutcome } from '../lightning/backend.js';
import { LIGHTNING_ACCOUNT_ID } from '../ledger/accounts.js';
import { addMsat, msat, mulDivCeil, type Msat } from '../money/msat.js';
import type { PaymentRow, RecordStore } from '../records/model.js';
import { fingerprint, randomId, sha256Hex } from '../util/fingerprint.js';

export type PaymentTarget =
  | { kind: 'invoice'; paymentRequest: string; amountMsat: Msat | null }
  | { kind: 'keysend'; destinationPubkey: string; amountMsat: Msat };

export interface PayInput {
  target: PaymentTarget;
  maxFeeMsat: Msat | null;
  idempotencyKey: string;
  /** The account that pays; default the app's own. Stream payouts pay from the stream's payer account. */
  debitAccountId?: string;
}

/** Told after a payment reached a final state (durably); listeners must not throw. */
export type PaymentResolvedListener = (payment: PaymentView & { appId: string; debitAccountId: string }) => void;

export type PaymentStatus = 'pending' | 'succeeded' | 'failed';

export interface PaymentView {
  id: string;
  paymentHash: string;
  kind: 'invoice' | 'keysend';
  destination: string;
  amountMsat: Msat;
  maxFeeMsat: Msat;
  feeMsat: Msat | null;
  status: PaymentStatus;
  failureReason: string | null;
  /** Only once succeeded: the proof of payment. */
  preimage: string | null;
  createdAt: number;
  resolvedAt: number | null;
}

export type PayError =
  | 'InvoiceInvalid'
  | 'InvoiceWrongNetwork'
  | 'InvoiceExpired'
  | 'InvoiceAlreadyPaid'
  | 'InvoiceAmountRequired'
  | 'InvoiceAmountMismatch'
  | 'PaymentToSelf'
  | 'PaymentInFlight'
  | 'InsufficientBalance'
  | 'IdempotencyConflict'
  | 'InvalidAmount';

export type PayResult = { ok: true; payment: PaymentView; replayed: boolean } | { ok: false; error: PayError; detail?: string };

export interface PaymentService {
  pay(appId: string, input: PayInput): Promise<PayResult>;
  getPayment(appId: string, paymentHash: string): Promise<PaymentView | null>;
  /** The app's payment made under this idempotency key, or null (unlike by hash, never another payment of the same invoice). */
  getPaymentByKey(appId: string, idempotencyKey: string): Promise<PaymentView | null>;
  listPayments(appId: string, limit: number): Promise<PaymentView[]>;
  /** The app's payments paid from this account (a stream's payouts), any status, oldest first. */
  listPaymentsOf(appId: string, debitAccountId: string): Promise<PaymentView[]>;
  /** Resolves every payment left in flight by an earlier run, then keeps asking about unknown ones. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One pass over in-flight payments (the background loop calls this; tests may too). */
  reconcileInFlight(): Promise<{ resolved: number; stillUnknown: number }>;
  onResolved(listener: PaymentResolvedListener): () => void;
}

export interface PaymentServiceDeps {
  records: RecordStore;
  backend: LightningBackend;
  nodeInfo: () => NodeInfo;
  clock: Clock;
  logger: Logger;
  paymentTimeoutS: number;
  /**
   * How long after its creation a payment the node has never heard of counts as "never
   * sent". 0 is right when this process is the only one that sends (SQLite: one process)
   * and start-up runs before any new payment; PostgreSQL deployments may share the
   * database between processes, so one must wait past any other process's send.
   */
  notFoundFinalAfterMs: number;
  reconcileIntervalMs?: number;
}

/** What a payment record shows (the API, webhook events): the preimage only once succeeded. */
export function paymentViewFromRow(row: PaymentRow): PaymentView {
  return {
    id: row.id,
    paymentHash: row.paymentHash,
    kind: row.kind,
    destination: row.destination,
    amountMsat: row.amountMsat,
    maxFeeMsat: row.maxFeeMsat,
    feeMsat: row.feeMsat,
    status: row.status === 'in_flight' ? 'pending' : row.status,
    failureReason: row.failureReason,
    preimage: row.status === 'succeeded' ? row.preimage : null,
    createdAt: row.createdAt,
    resolvedAt: row.resolvedAt,
  };
}

/** Default fee budget: 0.5% of the amount, at least 10 sat. */
export function defaultMaxFeeMsat(amountMsat: Msat): Msat {
  const proportional = mulDivCeil(amountMsat, 5n, 1000n);
  return proportional > 10_000n ? proportional : msat(10_000n);
}

const FAILURE_FOR_NOT_FOUND = 'never_sent';

export function createPaymentService(deps: PaymentServiceDeps): PaymentService {
  const { records, backend, clock, logger } = deps;
  const sending = new Set<string>();
  const resolvedListeners = new Set<PaymentResolvedListener>();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let reconcileDelayMs = deps.reconcileIntervalMs ?? 2000;
  const reconcileDelayMaxMs = 60_000;

  const view = paymentViewFromRow;

  /** Records a final outcome; returns the row as it now stands. */
  const resolve = async (row: PaymentRow, outcome: PaymentLookup): Promise<PaymentRow> => {
    const resolvedAt = clock.now();
    if (outcome.status === 'succeeded') {
      let feeMsat = outcome.feeMsat;
      if (feeMsat > row.maxFeeMsat) {
        // The node paid more fee than we allowed: the money is gone either way, so post
        // the whole hold and say so loudly rather than leave the payment open.
        logger.error({ paymentId: row.id, feeMsat: feeMsat.toString(), maxFeeMsat: row.maxFeeMsat.toString() }, 'node reported a fee above the limit');
        feeMsat = row.maxFeeMsat;
      }
      await records.finishPayment(row.id, {
        status: 'succeeded',
        feeMsat,
        failureReason: null,
        preimage: outcome.preimage,
        resolvedAt,
        ledgerOp: { kind: 'post', pendingId: row.holdTransferId, amountMsat: addMsat(row.amountMsat, feeMsat) },
      });
    } else if (outcome.status === 'failed' || outcome.status === 'not_found') {
      await records.finishPayment(row.id, {
        status: 'failed',
        feeMsat: null,
        failureReason: outcome.status === 'failed' ? outcome.reason : FAILURE_FOR_NOT_FOUND,
        preimage: null,
        resolvedAt,
        ledgerOp: { kind: 'void', pendingId: row.holdTransferId },
      });
    }
    const final = (await records.getPayment(row.id)) ?? row;
    if (final.status !== 'in_flight') {
      for (const listener of resolvedListeners) {
        try {
          listener({ ...view(final), appId: final.appId, debitAccountId: final.debitAccountId });
        } catch (error) {
          logger.error({ err: error }, 'a payment-resolved listener threw');
        }
      }
    }
    return final;
  };

  const send = async (row: PaymentRow, amountForZeroInvoiceMsat: Msat | null): Promise<PaymentOutcome> => {
    if (row.kind === 'invoice') {
      return backend.payInvoice({
        paymentRequest: row.paymentRequest as string,
        ...(amountForZeroInvoiceMsat === null ? {} : { amountMsat: amountForZeroInvoiceMsat }),
        feeLimitMsat: row.maxFeeMsat,
        timeoutS: deps.paymentTimeoutS,
      });
    }
    return backend.keysend({
      destinationPubkey: row.destination,
      amountMsat: row.amountMsat,
      feeLimitMsat: row.maxFeeMsat,
      timeoutS: deps.paymentTimeoutS,
      preimage: row.preimage as string,
    });
  };

  const replayOrConflict = async (appId: string, key: string, requestFingerprint: string): Promise<PayResult | null> => {
    const existing = await records.findPaymentByKey(appId, key);
    if (!existing) return null;
    if (existing.requestFingerprint !== requestFingerprint) return { ok: false, error: 'IdempotencyConflict' };
    return { ok: true, payment: view(existing), replayed: true };
  };

  const reconcileOne = async (row: PaymentRow): Promise<boolean> => {
    if (sending.has(row.id)) return false;
    const lookup = await backend.lookupPayment(row.paymentHash);
    if (lookup.status === 'unknown') return false;
    if (lookup.status === 'not_found' && clock.now() - row.createdAt < deps.notFoundFinalAfterMs) return false;
    const resolved = await resolve(row, lookup);
    logger.info({ paymentId: row.id, paymentHash: row.paymentHash, status: resolved.status }, 'in-flight payment reconciled');
    return resolved.status !== 'in_flight';
  };

  const reconcileInFlight = async () => {
    let resolved = 0;
    let stillUnknown = 0;
    for (const row of await records.listInFlightPayments()) {
      try {
        if (await reconcileOne(row)) resolved += 1;
        else if (!sending.has(row.id)) stillUnknown += 1;
      } catch (error) {
        stillUnknown += 1;
        logger.warn({ err: error, paymentId: row.id }, 'could not ask the node about an in-flight payment; will ask again');
      }
    }
    return { resolved, stillUnknown };
  };

  const scheduleReconcile = (): void => {
    if (stopped) return;
    timer = setTimeout(async () => {
      const { stillUnknown } = await reconcileInFlight().catch(() => ({ stillUnknown: 1 }));
      reconcileDelayMs = stillUnknown > 0 ? Math.min(reconcileDelayMs * 2, reconcileDelayMaxMs) : deps.reconcileIntervalMs ?? 2000;
      scheduleReconcile();
    }, reconcileDelayMs);
    timer.unref();
  };

  const validateInvoice = (paymentRequest: string, amountMsat: Msat | null):
    | { ok: true; paymentHash: string; destination: string; amountMsat: Msat; zeroAmount: boolean }
    | { ok: false; error: PayError; detail?: string } => {
    const decoded = decodeBolt11(paymentRequest);
    if (!decoded.ok) return { ok: false, error: 'InvoiceInvalid', detail: decoded.detail };
    const invoice = decoded.invoice;
    const node = deps.nodeInfo();
    if (invoice.network !== node.network) {
      return { ok: false, error: 'InvoiceWrongNetwork', detail: `the invoice is for ${invoice.network}, this node is on ${node.network}` };
    }
    if (clock.now() >= invoice.expiresAt * 1000) return { ok: false, error: 'InvoiceExpired' };
    if (invoice.payeePubkey === node.pubkey) return { ok: false, error: 'PaymentToSelf' };
    if (invoice.amountMsat === null && amountMsat === null) return { ok: false, error: 'InvoiceAmountRequired' };
    if (invoice.amountMsat !== null && amountMsat !== null && amountMsat !== invoice.amountMsat) {
      return { ok: false, error: 'InvoiceAmountMismatch' };
    }
    const amount = invoice.amountMsat ?? (amountMsat as Msat);
    if (amount === 0n) return { ok: false, error: 'InvalidAmount', detail: 'a payment must move at least 1 msat' };
    return { ok: true, paymentHash: invoice.paymentHash, destination: invoice.payeePubkey, amountMsat: amount, zeroAmount: invoice.amountMsat === null };
  };

  return {
    async pay(appId, input) {
      const debitAccountId = input.debitAccountId ?? appAccountId(appId);
      const requestFingerprint = fingerprint({ target: input.target, maxFeeMsat: input.maxFeeMsat, debitAccountId });
      const replayed = await replayOrConflict(appId, input.idempotencyKey, requestFingerprint);
      if (replayed) return replayed;

      let paymentHash: string;
      let destination: string;
      let amountMsat: Msat;
      let preimage: string | null = null;
      let zeroAmountInvoice = false;
      if (input.target.kind === 'invoice') {
        const checked = validateInvoice(input.target.paymentRequest, input.target.amountMsat);
        if (!checked.ok) return checked;
        ({ paymentHash, destination, amountMsat } = checked);
        zeroAmountInvoice = checked.zeroAmount;
      } else {
        if (input.target.destinationPubkey === deps.nodeInfo().pubkey) return { ok: false, error: 'PaymentToSelf' };
        if (input.target.amountMsat === 0n) return { ok: false, error: 'InvalidAmount', detail: 'a payment must move at least 1 msat' };
        preimage = randomBytes(32).toString('hex');
        paymentHash = sha256Hex(Buffer.from(preimage, 'hex'));
        destination = input.target.destinationPubkey;
        amountMsat = input.target.amountMsat;
      }

      const previous = await records.latestPaymentByHash(paymentHash);
      if (previous?.status === 'succeeded') return { ok: false, error: 'InvoiceAlreadyPaid' };
      if (previous?.status === 'in_flight') return { ok: false, error: 'PaymentInFlight' };

      const maxFeeMsat = input.maxFeeMsat ?? defaultMaxFeeMsat(amountMsat);
      const holdMsat = addMsat(amountMsat, maxFeeMsat);
      const begun = await records.beginPayment(
        {
          id: randomId('pay_'),
          appId,
          debitAccountId,
          kind: input.target.kind,
          paymentHash,
          paymentRequest: input.target.kind === 'invoice' ? input.target.paymentRequest : null,
          destination,
          amountMsat,
          maxFeeMsat,
          feeMsat: null,
          status: 'in_flight',
          failureReason: null,
          preimage,
          idempotencyKey: input.idempotencyKey,
          requestFingerprint,
          createdAt: clock.now(),
          resolvedAt: null,
        },
        {
          kind: 'transfer',
          debitAccountId,
          creditAccountId: LIGHTNING_ACCOUNT_ID,
          amountMsat: holdMsat,
          pending: true,
          code: 'payment',
          reference: paymentHash,
        },
      );
      if (!begun.ok) {
        switch (begun.error) {
          case 'DuplicateKey':
            return (await replayOrConflict(appId, input.idempotencyKey, requestFingerprint)) ?? { ok: false, error: 'IdempotencyConflict' };
          case 'HashInUse': {
            const live = await records.latestPaymentByHash(paymentHash);
            return { ok: false, error: live?.status === 'succeeded' ? 'InvoiceAlreadyPaid' : 'PaymentInFlight' };
          }
          case 'LimitExceeded':
            return { ok: false, error: 'InsufficientBalance', detail: `the hold is ${holdMsat} msat (amount ${amountMsat} + max fee ${maxFeeMsat})` };
          default:
            throw new Error(`payment hold refused by the ledger: ${begun.error}`);
        }
      }

      const row = begun.payment;
      sending.add(row.id);
      try {
        const outcome = await send(row, zeroAmountInvoice ? amountMsat : null);
        const final = outcome.status === 'unknown' ? row : await resolve(row, outcome);
        if (outcome.status === 'unknown') logger.warn({ paymentId: row.id, detail: outcome.detail }, 'payment outcome unknown; it stays in flight');
        return { ok: true, payment: view(final), replayed: false };
      } finally {
        sending.delete(row.id);
      }
    },

    async getPayment(appId, paymentHash) {
      const row = await records.latestPaymentByHash(paymentHash);
      return row && row.appId === appId ? view(row) : null;
    },

    async getPaymentByKey(appId, idempotencyKey) {
      const row = await records.findPaymentByKey(appId, idempotencyKey);
      return row ? view(row) : null;
    },

    async listPayments(appId, limit) {
      return (await records.listPayments(appId, limit)).map(view);
    },

    async listPaymentsOf(appId, debitAccountId) {
      return (await records.listPaymentsOf(debitAccountId)).filter((row) => row.appId === appId).map(view);
    },

    async start() {
      stopped = false;
      const { resolved, stillUnknown } = await reconcileInFlight();
      if (resolved + stillUnknown > 0) logger.info({ resolved, stillUnknown }, 'start-up reconciliation of in-flight payments');
      scheduleReconcile();
    },

    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },

    reconcileInFlight,

    onResolved(listener) {
      resolvedListeners.add(listener);
      return () => resolvedListeners.delete(listener);
    },
  };
}
