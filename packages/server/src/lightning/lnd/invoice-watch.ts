/**
 * Watches LND for settled invoices and hands them over in settle order, resuming after
 * any disconnect from the last settle index delivered (the pattern of
 * alexbosworth/lightning `subscribe_to_invoices.js`).
 *
 * How LND's SubscribeInvoices behaves, and what we do about it:
 * - `settle_index=N` (N > 0) first replays every invoice settled after N, in order, then
 *   streams live events. We reconnect with the last index we delivered, and drop any
 *   event at or below it, so nothing is missed and nothing is handed over twice.
 * - `settle_index=0` replays nothing. So "from the start" (cursor 0) is served by
 *   listing the invoices (ListInvoices, paged) and handing over the settled ones sorted
 *   by settle index; the subscription then resumes from the highest. If none is settled
 *   yet we subscribe live, and the first settlement seen sends us back to the listing,
 *   which then contains it and anything settled before it. A settlement landing between
 *   that listing and the moment LND registers the live subscription would reach neither
 *   (a REST client cannot tell when that moment is), so while nothing has settled the
 *   live subscription is ended after a while and the invoices listed again: 1 s, then
 *   doubling up to 5 min (`emptyRelist`). Once anything has settled, the settle index
 *   replay covers every gap.
 * - We do not pass `add_index`: its replay carries each invoice's current state, so an
 *   invoice settled during an outage would arrive there before the settle replay, out
 *   of order. Add events (OPEN invoices) are of no use to a settlement watcher anyway.
 */
import type { Clock } from '../../clock.js';
import type { InvoiceRecord, InvoiceWatch, SettledInvoice, WatchInvoicesOptions } from '../backend.js';
import { LndError } from './errors.js';
import { invoiceFromLndInvoice } from './mappers.js';
import { LndInvoiceStreamLineSchema, LndListInvoiceResponseSchema, parseLndResponse } from './schemas.js';
import { rpcError, type LndTransport } from './transport.js';
import type { LndLogger } from './logger.js';

export interface InvoiceWatchDeps {
  transport: LndTransport;
  clock: Clock;
  logger: LndLogger;
  retry: { initialDelayMs: number; maxDelayMs: number };
  /** Invoices per ListInvoices page during a catch-up from settle index 0. */
  listPageSize: number;
  /** Bound on the catch-up: more pages than this is an error, not an endless loop. */
  listMaxPages: number;
  /** While nothing has settled: how long a live subscription runs before the invoices are listed again (doubling to the maximum). */
  emptyRelist: { initialDelayMs: number; maxDelayMs: number };
}

type StreamEnd = 'relist' | 'ended';

export function startInvoiceWatch(deps: InvoiceWatchDeps, options: WatchInvoicesOptions): InvoiceWatch {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(options.afterSettleIndex)) {
    throw new RangeError(`afterSettleIndex must be a decimal index, got ${JSON.stringify(options.afterSettleIndex)}`);
  }
  let cursor = BigInt(options.afterSettleIndex);
  let failures = 0;
  let emptyRelists = 0;
  const stopping = new AbortController();

  async function deliver(invoice: SettledInvoice): Promise<void> {
    await options.onSettled(invoice);
    cursor = BigInt(invoice.settleIndex);
  }

  async function catchUpByListing(): Promise<void> {
    const settled: SettledInvoice[] = [];
    let offset = 0n;
    for (let page = 0; ; page += 1) {
      if (page >= deps.listMaxPages) {
        throw new LndError('invalid_response', `ListInvoices did not end within ${deps.listMaxPages} pages`);
      }
      const raw = await deps.transport.unary({
        method: 'GET',
        path: '/v1/invoices',
        query: { index_offset: offset.toString(), num_max_invoices: String(deps.listPageSize) },
      });
      const response = parseLndResponse(LndListInvoiceResponseSchema, raw, 'invoice list');
      const now = deps.clock.now();
      for (const invoice of response.invoices) {
        if (invoice.state === 'SETTLED') settled.push(asSettled(invoiceFromLndInvoice(invoice, now)));
      }
      const next = BigInt(response.last_index_offset);
      // An empty page, or one that does not move forward, is the end.
      if (response.invoices.length === 0 || next <= offset) break;
      offset = next;
    }
    settled.sort((a, b) => compareIndexes(a.settleIndex, b.settleIndex));
    for (const invoice of settled) {
      if (stopping.signal.aborted) return;
      if (BigInt(invoice.settleIndex) > cursor) await deliver(invoice);
    }
  }

  async function followStream(): Promise<StreamEnd> {
    // Nothing settled yet: this subscription ends after a while so the invoices are listed again (see above).
    const relist = new AbortController();
    const relistTimer = cursor === 0n ? setTimeout(() => relist.abort(), backoffMs(++emptyRelists, deps.emptyRelist)) : null;
    try {
      return await readStream(AbortSignal.any([stopping.signal, relist.signal]));
    } catch (error) {
      if (relist.signal.aborted && !stopping.signal.aborted) return 'relist';
      throw error;
    } finally {
      if (relistTimer) clearTimeout(relistTimer);
    }
  }

  async function readStream(signal: AbortSignal): Promise<StreamEnd> {
    const query: Record<string, string> = cursor > 0n ? { settle_index: cursor.toString() } : {};
    const lines = deps.transport.stream({ method: 'GET', path: '/v1/invoices/subscribe', query }, signal);
    for await (const raw of lines) {
      const line = parseLndResponse(LndInvoiceStreamLineSchema, raw, 'invoice update');
      if (line.error !== undefined) throw rpcError(line.error, 'GET /v1/invoices/subscribe');
      if (line.result === undefined) throw new LndError('invalid_response', 'LND sent an invoice update with neither result nor error');
      failures = 0;
      if (line.result.state !== 'SETTLED') continue;
      const invoice = asSettled(invoiceFromLndInvoice(line.result, deps.clock.now()));
      if (BigInt(invoice.settleIndex) <= cursor) continue;
      if (cursor === 0n) return 'relist';
      await deliver(invoice);
      if (stopping.signal.aborted) return 'ended';
    }
    return 'ended';
  }

  function reportError(error: unknown): void {
    deps.logger.warn({ err: describe(error), afterSettleIndex: cursor.toString() }, 'LND invoice watch interrupted; resuming');
    try {
      options.onError?.(error);
    } catch (handlerError) {
      deps.logger.warn({ err: describe(handlerError) }, 'invoice watch onError handler threw');
    }
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      let end: StreamEnd | 'failed';
      try {
        if (cursor === 0n) await catchUpByListing();
        if (stopping.signal.aborted) return;
        end = await followStream();
        if (end === 'ended' && !stopping.signal.aborted) {
          throw new LndError('transport', 'LND ended the invoice subscription');
        }
      } catch (error) {
        if (stopping.signal.aborted) return;
        failures += 1;
        end = 'failed';
        reportError(error);
      }
      if (end === 'failed') await sleep(backoffMs(failures, deps.retry), stopping.signal);
    }
  }

  const running = run();
  return {
    async stop() {
      stopping.abort();
      await running;
    },
  };
}

function asSettled(record: InvoiceRecord): SettledInvoice {
  if (record.state !== 'settled' || record.settleIndex === null || record.settledAt === null || record.amountPaidMsat === null) {
    throw new Error('invoiceFromLndInvoice returned a settled invoice without its settlement fields');
  }
  return record as SettledInvoice;
}

function compareIndexes(a: string, b: string): number {
  const difference = BigInt(a) - BigInt(b);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}

/** Capped exponential backoff: initial, 2x, 4x, ... up to the maximum. */
export function backoffMs(failures: number, retry: { initialDelayMs: number; maxDelayMs: number }): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 20);
  return Math.min(retry.initialDelayMs * 2 ** exponent, retry.maxDelayMs);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
