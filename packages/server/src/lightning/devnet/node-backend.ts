/**
 * One devnet node seen through the LightningBackend interface. `backendFor('sluice')` is
 * what Sluice uses; wallets (`alice`, ...) use the same interface to pay Sluice's invoices
 * and to issue invoices for payouts.
 */
import { msat, isMsat } from '../../money/msat.js';
import type {
  CreateInvoiceRequest,
  CreatedInvoice,
  InvoiceRecord,
  InvoiceWatch,
  LightningBackend,
  NodeInfo,
  SettledInvoice,
  WatchInvoicesOptions,
} from '../backend.js';
import type { DevnetCore } from './core.js';
import { encodeDevnetInvoice } from './invoice-codec.js';
import { bytesFromHex, isHex32, random32Hex, sha256Hex } from './keys.js';
import { keysend, lookupPayment, payInvoice } from './payments.js';
import type { InvoiceRow } from './store.js';

/** LND's limit: an invoice may live at most a year. */
const INVOICE_EXPIRY_S_MAX = 365 * 24 * 3600;
/** Regtest chains start with coinbase maturity (101 blocks); one block per 10 minutes of devnet clock after that. */
const GENESIS_HEIGHT = 101;
const BLOCK_INTERVAL_MS = 600_000;
const WATCH_BATCH = 100;
const WATCH_RETRY_MS_MIN = 50;
const WATCH_RETRY_MS_MAX = 5_000;

export const DEVNET_ALIAS_SUFFIX = 'devnet (fake money)';

export function createDevnetNodeBackend(core: DevnetCore, nodeName: string): LightningBackend {
  const node = core.node(nodeName);
  const ownWatchers = new Set<InvoiceWatch>();

  function assertOpen(): void {
    if (core.isClosed()) throw new Error('the devnet is closed');
  }

  return {
    kind: 'devnet',

    async getInfo(): Promise<NodeInfo> {
      assertOpen();
      const elapsedMs = Math.max(0, core.clock.now() - core.createdAtMs);
      return {
        backend: 'devnet',
        network: 'regtest',
        pubkey: node.pubkey,
        alias: `${node.name} · ${DEVNET_ALIAS_SUFFIX}`,
        blockHeight: GENESIS_HEIGHT + Math.floor(elapsedMs / BLOCK_INTERVAL_MS),
        syncedToChain: true,
      };
    },

    async createInvoice(request: CreateInvoiceRequest): Promise<CreatedInvoice> {
      assertOpen();
      assertInvoiceRequest(request);
      const preimage = request.preimage ?? random32Hex();
      const paymentHash = sha256Hex(bytesFromHex(preimage));
      if (core.store.invoice(node.name, paymentHash) !== null) {
        throw new Error(`${node.name} already has an invoice with payment hash ${paymentHash}`);
      }
      const paymentSecret = random32Hex();
      // BOLT 11 timestamps are whole seconds; createdAt/expiresAt agree with what any decoder reads.
      const timestamp = Math.floor(core.clock.now() / 1000);
      const paymentRequest = encodeDevnetInvoice(
        {
          amountMsat: request.amountMsat === 0n ? null : request.amountMsat,
          timestamp,
          expiryS: request.expiryS,
          paymentHash,
          paymentSecret,
          ...(request.descriptionHash !== undefined
            ? { descriptionHash: request.descriptionHash }
            : { description: request.description ?? '' }),
        },
        node.privateKey,
      );
      const createdAt = timestamp * 1000;
      const expiresAt = (timestamp + request.expiryS) * 1000;
      core.store.insertInvoice({
        node: node.name,
        paymentHash,
        paymentRequest,
        preimage,
        paymentSecret,
        amountMsat: request.amountMsat,
        createdAt,
        expiresAt,
      });
      return { paymentHash, paymentRequest, amountMsat: request.amountMsat, createdAt, expiresAt };
    },

    async lookupInvoice(paymentHash: string): Promise<InvoiceRecord | null> {
      assertOpen();
      if (!isHex32(paymentHash)) return null;
      const row = core.store.invoice(node.name, paymentHash);
      return row === null ? null : invoiceRecordFromRow(row, core.clock.now());
    },

    watchInvoices(options: WatchInvoicesOptions): InvoiceWatch {
      assertOpen();
      const watch = startWatch(core, node.name, options);
      const tracked: InvoiceWatch = {
        stop: async () => {
          ownWatchers.delete(tracked);
          core.watchers.delete(tracked);
          await watch.stop();
        },
      };
      ownWatchers.add(tracked);
      core.watchers.add(tracked);
      return tracked;
    },

    payInvoice: (request) => payInvoice(core, node.name, request).catch((error: unknown) => unknownOutcome('', error)),
    keysend: (request) => keysend(core, node.name, request).catch((error: unknown) => unknownOutcome('', error)),

    async lookupPayment(paymentHash: string) {
      assertOpen();
      return lookupPayment(core, node.name, paymentHash);
    },

    /** Stops the watchers started through this view; the devnet itself stays open (Devnet.close closes it). */
    async close(): Promise<void> {
      await Promise.all([...ownWatchers].map((watch) => watch.stop()));
    },
  };
}

function unknownOutcome(paymentHash: string, error: unknown) {
  return {
    status: 'unknown' as const,
    paymentHash,
    detail: `devnet error: ${error instanceof Error ? error.message : String(error)}`,
  };
}

/** Bad requests are caller bugs: the interface has no failure value for createInvoice. */
function assertInvoiceRequest(request: CreateInvoiceRequest): void {
  if (!isMsat(request.amountMsat)) throw new RangeError('amountMsat must be an msat amount (0 for any amount)');
  if (!Number.isSafeInteger(request.expiryS) || request.expiryS <= 0 || request.expiryS > INVOICE_EXPIRY_S_MAX) {
    throw new RangeError(`expiryS must be an integer in 1..${INVOICE_EXPIRY_S_MAX}, got ${request.expiryS}`);
  }
  if (request.description !== undefined && request.descriptionHash !== undefined) {
    throw new RangeError('give description or descriptionHash, not both');
  }
  if (request.descriptionHash !== undefined && !isHex32(request.descriptionHash)) {
    throw new RangeError('descriptionHash must be 32 bytes of lowercase hex');
  }
  if (request.preimage !== undefined && !isHex32(request.preimage)) throw new RangeError('preimage must be 32 bytes of lowercase hex');
}

export function invoiceRecordFromRow(row: InvoiceRow, nowMs: number): InvoiceRecord {
  const settled = row.state === 'settled';
  return {
    paymentHash: row.paymentHash,
    paymentRequest: row.paymentRequest,
    amountMsat: row.amountMsat,
    state: settled ? 'settled' : nowMs >= row.expiresAt ? 'expired' : 'open',
    amountPaidMsat: row.amountPaidMsat,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    settledAt: row.settledAt,
    settleIndex: row.settleIndex === null ? null : row.settleIndex.toString(),
    // The preimage of an unpaid invoice is a secret: it would let anyone claim the payment.
    preimage: settled ? row.preimage : null,
  };
}

function settledInvoiceFromRow(row: InvoiceRow): SettledInvoice {
  if (row.state !== 'settled' || row.settleIndex === null || row.settledAt === null || row.amountPaidMsat === null) {
    throw new Error(`devnet invoice ${row.paymentHash} is not settled`);
  }
  return {
    ...invoiceRecordFromRow(row, row.settledAt),
    state: 'settled',
    settleIndex: row.settleIndex.toString(),
    settledAt: row.settledAt,
    amountPaidMsat: msat(row.amountPaidMsat),
  };
}

const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;

/**
 * Delivers settled invoices after the cursor, in settle order, one at a time. It reads
 * from the database, so invoices settled while nobody watched (or before a restart) are
 * delivered too. A handler that throws is reported to onError and its invoice is offered
 * again after a capped backoff: the cursor only moves past an invoice once it is handled.
 */
function startWatch(core: DevnetCore, nodeName: string, options: WatchInvoicesOptions): InvoiceWatch {
  if (!DECIMAL.test(options.afterSettleIndex)) throw new RangeError(`afterSettleIndex must be a decimal index, got ${options.afterSettleIndex}`);
  let cursor = BigInt(options.afterSettleIndex);
  let stopped = false;
  let wake: (() => void) | null = null;
  const wakeUp = (): void => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  const unsubscribe = core.onSettled(nodeName, wakeUp);
  const pause = (ms: number | null): Promise<void> =>
    new Promise((resolve) => {
      const timer = ms === null ? null : setTimeout(wakeUp, ms);
      wake = () => {
        if (timer !== null) clearTimeout(timer);
        resolve();
      };
    });

  const loop = async (): Promise<void> => {
    let retryMs = WATCH_RETRY_MS_MIN;
    while (!stopped) {
      let batch: InvoiceRow[];
      try {
        batch = core.store.settledAfter(nodeName, cursor, WATCH_BATCH);
      } catch (error) {
        options.onError?.(error);
        return;
      }
      // Checking and waiting happen in one tick: no settlement can fall between them.
      if (batch.length === 0) {
        await pause(null);
        continue;
      }
      for (const row of batch) {
        if (stopped) return;
        try {
          await options.onSettled(settledInvoiceFromRow(row));
        } catch (error) {
          options.onError?.(error);
          await pause(retryMs);
          retryMs = Math.min(retryMs * 2, WATCH_RETRY_MS_MAX);
          break;
        }
        retryMs = WATCH_RETRY_MS_MIN;
        cursor = row.settleIndex as bigint;
      }
    }
  };
  const done = loop().finally(unsubscribe);
  return {
    async stop() {
      stopped = true;
      wakeUp();
      await done;
    },
  };
}
