/**
 * Invoices an app asks Sluice to issue, and the watcher that credits the app when one
 * is paid.
 *
 * Threat model: money arrives at the node whatever our database says, so every invoice
 * the node knows must be attributable to an app. The row (with the preimage we drew) is
 * written BEFORE the node is asked to create the invoice; a crash in between leaves a
 * "creating" row that start-up completes, never an orphan invoice. Settlements are
 * credited exactly once: the credit and the "paid" mark are one transaction, and the
 * watcher's cursor is saved only after it.
 */
import type { Clock } from '../clock.js';
import type { Logger } from 'pino';
import type { InvoiceWatch, LightningBackend, SettledInvoice } from '../lightning/backend.js';
import type { Msat } from '../money/msat.js';
import type { InvoiceRow, RecordStore } from '../records/model.js';
import { appAccountId } from '../apps/service.js';
import { fingerprint, randomHex, sha256Hex } from '../util/fingerprint.js';
import { LIGHTNING_ACCOUNT_ID } from '../ledger/accounts.js';
import { BOLT11_AMOUNT_MAX_MSAT } from '../lightning/bolt11/index.js';

export const SETTLE_INDEX_META = 'invoices.settle_index';
/** BOLT 11 `d` fields hold at most 639 bytes. */
export const DESCRIPTION_MAX_BYTES = 639;

export type InvoiceStatus = 'open' | 'paid' | 'expired';

export interface InvoiceView {
  paymentHash: string;
  paymentRequest: string;
  amountMsat: Msat;
  description: string;
  status: InvoiceStatus;
  createdAt: number;
  expiresAt: number;
  paidAt: number | null;
  amountPaidMsat: Msat | null;
}

export interface CreateInvoiceInput {
  amountMsat: Msat;
  description: string;
  expiryS: number;
  idempotencyKey: string | null;
  /** The account credited when paid; default the app's own. Streams use their payer account. */
  creditAccountId?: string;
}

/** Told after an invoice has been credited (durably); listeners must not throw. */
export type InvoicePaidListener = (invoice: InvoiceRow) => void;
/**
 * Awaited before a settled invoice is credited: what a module must make durable before the
 * money lands (a crash may come between the credit and the paid listeners). Throwing leaves
 * the invoice uncredited (the watcher tries it again). It may return a function, called once
 * that credit attempt is over (credited and told, already paid, or failed).
 */
export type InvoiceCreditHook = (invoice: InvoiceRow) => Promise<void | (() => void)>;

export type CreateInvoiceResult =
  | { ok: true; invoice: InvoiceView; replayed: boolean }
  | { ok: false; error: 'IdempotencyConflict' | 'DescriptionTooLong' | 'AmountTooLarge' | 'LightningUnavailable'; detail?: string };

export interface InvoiceService {
  createInvoice(appId: string, input: CreateInvoiceInput): Promise<CreateInvoiceResult>;
  /** Only the owning app sees an invoice. */
  getInvoice(appId: string, paymentHash: string): Promise<InvoiceView | null>;
  /** The app's paid invoices among these payment hashes, in any order (one read). */
  listPaidInvoices(appId: string, paymentHashes: readonly string[]): Promise<InvoiceView[]>;
  listInvoices(appId: string, limit: number): Promise<InvoiceView[]>;
  /** Completes invoices whose creation a crash interrupted, then follows settlements. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Credits one settlement (idempotent); exposed for the watcher and tests. */
  handleSettled(invoice: SettledInvoice): Promise<void>;
  onPaid(listener: InvoicePaidListener): () => void;
  beforeCredit(hook: InvoiceCreditHook): () => void;
}

export interface InvoiceServiceDeps {
  records: RecordStore;
  backend: LightningBackend;
  clock: Clock;
  logger: Logger;
}

/** What an invoice record shows at `now` (the API, webhook events): an unpaid one is expired from its expiry on. */
export function invoiceViewFromRow(row: InvoiceRow, now: number): InvoiceView {
  return {
    paymentHash: row.paymentHash,
    paymentRequest: row.paymentRequest ?? '',
    amountMsat: row.amountMsat,
    description: row.description,
    status: row.status === 'paid' ? 'paid' : now >= row.expiresAt ? 'expired' : 'open',
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    paidAt: row.paidAt,
    amountPaidMsat: row.amountPaidMsat,
  };
}

export function createInvoiceService(deps: InvoiceServiceDeps): InvoiceService {
  const { records, backend, clock, logger } = deps;
  let watch: InvoiceWatch | null = null;
  const paidListeners = new Set<InvoicePaidListener>();
  const creditHooks = new Set<InvoiceCreditHook>();

  const view = (row: InvoiceRow): InvoiceView => invoiceViewFromRow(row, clock.now());

  /** Asks the node for the invoice of a "creating" row: it may exist already (crash after create). */
  const completeCreation = async (row: InvoiceRow): Promise<InvoiceRow> => {
    const existing = await backend.lookupInvoice(row.paymentHash);
    const paymentRequest = existing
      ? existing.paymentRequest
      : (await backend.createInvoice({
          amountMsat: row.amountMsat,
          description: row.description,
          expiryS: Math.max(1, Math.ceil((row.expiresAt - clock.now()) / 1000)),
          preimage: row.preimage,
        })).paymentRequest;
    await records.markInvoiceOpen(row.paymentHash, paymentRequest);
    return { ...row, paymentRequest, status: 'open' };
  };

  const handleSettled = async (settled: SettledInvoice): Promise<void> => {
    const row = await records.getInvoice(settled.paymentHash);
    if (!row) {
      logger.warn({ paymentHash: settled.paymentHash }, 'a settled invoice was not issued by Sluice; not credited to any app');
      return;
    }
    if (row.status === 'paid') return;
    // Each hook may hand back what to do once this credit attempt is over, whatever its outcome.
    const afterCredit: (() => void)[] = [];
    try {
      for (const hook of creditHooks) {
        const after = await hook(row);
        if (after) afterCredit.push(after);
      }
      await credit(settled, row);
    } finally {
      for (const after of afterCredit) after();
    }
  };

  const credit = async (settled: SettledInvoice, row: InvoiceRow): Promise<void> => {
    const result = await records.settleInvoice(
      settled.paymentHash,
      { amountPaidMsat: settled.amountPaidMsat, paidAt: settled.settledAt },
      {
        kind: 'transfer',
        debitAccountId: LIGHTNING_ACCOUNT_ID,
        creditAccountId: row.creditAccountId,
        amountMsat: settled.amountPaidMsat,
        code: 'invoice',
        reference: settled.paymentHash,
        idempotencyKey: `invoice:${settled.paymentHash}`,
      },
    );
    if (!result.ok && result.error !== 'AlreadyPaid') {
      throw new Error(`could not credit invoice ${settled.paymentHash}: ${result.error}`);
    }
    if (result.ok) {
      logger.info({ paymentHash: settled.paymentHash, appId: row.appId, amountMsat: settled.amountPaidMsat.toString() }, 'invoice paid');
      for (const listener of paidListeners) {
        try {
          listener(result.invoice);
        } catch (error) {
          logger.error({ err: error }, 'an invoice-paid listener threw');
        }
      }
    }
  };

  return {
    async createInvoice(appId, input) {
      if (Buffer.byteLength(input.description, 'utf8') > DESCRIPTION_MAX_BYTES) return { ok: false, error: 'DescriptionTooLong' };
      if (input.amountMsat > BOLT11_AMOUNT_MAX_MSAT) {
        return { ok: false, error: 'AmountTooLarge', detail: `an invoice may ask for at most ${BOLT11_AMOUNT_MAX_MSAT} msat (21 million BTC)` };
      }
      const creditAccountId = input.creditAccountId ?? appAccountId(appId);
      const requestFingerprint = fingerprint({ amountMsat: input.amountMsat, description: input.description, expiryS: input.expiryS, creditAccountId });
      const replay = async (): Promise<CreateInvoiceResult | null> => {
        if (input.idempotencyKey === null) return null;
        const existing = await records.findInvoiceByKey(appId, input.idempotencyKey);
        if (!existing) return null;
        if (existing.requestFingerprint !== requestFingerprint) return { ok: false, error: 'IdempotencyConflict' };
        const complete = existing.status === 'creating' ? await completeCreation(existing) : existing;
        return { ok: true, invoice: view(complete), replayed: true };
      };
      try {
        const replayed = await replay();
        if (replayed) return replayed;
        const preimage = randomHex(32);
        const createdAt = clock.now();
        const row: InvoiceRow = {
          paymentHash: sha256Hex(Buffer.from(preimage, 'hex')),
          appId,
          creditAccountId,
          preimage,
          paymentRequest: null,
          amountMsat: input.amountMsat,
          description: input.description,
          descriptionHash: null,
          createdAt,
          expiresAt: createdAt + input.expiryS * 1000,
          status: 'creating',
          amountPaidMsat: null,
          paidAt: null,
          idempotencyKey: input.idempotencyKey,
          requestFingerprint: input.idempotencyKey === null ? null : requestFingerprint,
        };
        if ((await records.insertInvoice(row)) === 'DuplicateKey') {
          return (await replay()) ?? { ok: false, error: 'IdempotencyConflict' };
        }
        const created = await backend.createInvoice({
          amountMsat: input.amountMsat,
          description: input.description,
          expiryS: input.expiryS,
          preimage,
        });
        if (created.paymentHash !== row.paymentHash) throw new Error('the node returned an invoice for another payment hash');
        await records.markInvoiceOpen(row.paymentHash, created.paymentRequest);
        return { ok: true, invoice: view({ ...row, paymentRequest: created.paymentRequest, status: 'open' }), replayed: false };
      } catch (error) {
        logger.error({ err: error }, 'invoice creation failed at the Lightning backend');
        return { ok: false, error: 'LightningUnavailable', detail: error instanceof Error ? error.message : String(error) };
      }
    },

    async getInvoice(appId, paymentHash) {
      const row = await records.getInvoice(paymentHash);
      if (!row || row.appId !== appId || row.paymentRequest === null) return null;
      return view(row);
    },

    async listPaidInvoices(appId, paymentHashes) {
      return (await records.listPaidInvoices(paymentHashes)).filter((row) => row.appId === appId && row.paymentRequest !== null).map(view);
    },

    async listInvoices(appId, limit) {
      return (await records.listInvoices(appId, limit)).filter((row) => row.paymentRequest !== null).map(view);
    },

    async start() {
      for (const row of await records.listCreatingInvoices()) {
        try {
          await completeCreation(row);
        } catch (error) {
          logger.error({ err: error, paymentHash: row.paymentHash }, 'could not complete an interrupted invoice creation; will retry at next start');
        }
      }
      const afterSettleIndex = (await records.getMeta(SETTLE_INDEX_META)) ?? '0';
      watch = backend.watchInvoices({
        afterSettleIndex,
        onSettled: async (invoice) => {
          await handleSettled(invoice);
          await records.setMeta(SETTLE_INDEX_META, invoice.settleIndex);
        },
        onError: (error) => logger.warn({ err: error }, 'invoice watch interrupted; resuming'),
      });
    },

    async stop() {
      await watch?.stop();
      watch = null;
    },

    handleSettled,

    onPaid(listener) {
      paidListeners.add(listener);
      return () => paidListeners.delete(listener);
    },

    beforeCredit(hook) {
      creditHooks.add(hook);
      return () => creditHooks.delete(hook);
    },
  };
}
