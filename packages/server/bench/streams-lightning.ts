/**
 * Lightning payments per million charges: prepaid streams (`maximum_msat` 0) with a
 * game's terms, charged until each has `chargesPerStream` acknowledged charges, with a
 * payer per stream that pays every `invoice` event (the first funding and each top-up)
 * from a devnet wallet (POST /v1/devnet/pay) as soon as it arrives, then names a keysend
 * destination and closes the stream, which pays the rest back (one payout).
 *
 * The app sends one charge at a time per stream (the next after the previous reply), all
 * streams at once. A charge refused with `stream_limit_exceeded` (the top-up was not paid
 * yet) moved nothing; it is counted and sent again with a new ref once the stream is
 * funded. Counted Lightning payments: invoices paid to Sluice (`funded` events) and
 * payouts by Sluice (`settled` events). Per million charges = payments × 10^6 / charges.
 */
import type { Requester } from './streams-load.js';

export interface GameTerms {
  name: string;
  priceMsat: bigint;
  settleThresholdMsat: bigint;
  settleToMsat: bigint;
}

export interface LightningRow {
  terms: GameTerms;
  streams: number;
  charges: number;
  /** Invoices paid (first funding included). */
  invoicesPaid: number;
  payouts: number;
  refusals: Record<string, number>;
  seconds: number;
  /** Charges one top-up pays for once a stream runs: the steady state, computed from the terms. */
  chargesPerTopUp: number;
}

/** Charges from settle_to down to under the threshold (when the top-up is asked for). */
export function chargesPerTopUp(terms: GameTerms): number {
  return Number((terms.settleToMsat - terms.settleThresholdMsat) / terms.priceMsat) + 1;
}

export interface LightningDeps {
  /** A connection authenticated as the app. */
  app: Requester;
  /** A new connection authenticated with a payer token. */
  openPayer(payerToken: string): Promise<Requester>;
  /** Pays a BOLT 11 invoice from a devnet wallet; resolves once Sluice has credited it. */
  pay(paymentRequest: string): Promise<void>;
  /** A devnet wallet's node public key, for the refund payouts. */
  payoutPubkey: string;
}

interface PayerView {
  funded: number;
  settled: number;
  failures: string[];
  waiters: (() => void)[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runLightningBenchmark(deps: LightningDeps, terms: GameTerms, options: { streams: number; chargesPerStream: number; refPrefix: string }): Promise<LightningRow> {
  const started = Date.now();
  const refusals: Record<string, number> = {};
  const runs = await Promise.all(Array.from({ length: options.streams }, async (_, index) => {
    const created = await deps.app.request({
      type: 'stream.create',
      prices: { hit: terms.priceMsat.toString() },
      maximum_msat: '0',
      settle_threshold_msat: terms.settleThresholdMsat.toString(),
      settle_to_msat: terms.settleToMsat.toString(),
      metadata: `bench player ${index}`,
    });
    if (created.type !== 'ok') throw new Error(`stream.create refused: ${JSON.stringify(created)}`);
    const streamId = created.stream.id as string;
    const payer = await deps.openPayer(created.payer_token);
    const view: PayerView = { funded: 0, settled: 0, failures: [], waiters: [] };
    const paid = new Set<string>();
    const wake = () => {
      for (const waiter of view.waiters.splice(0)) waiter();
    };
    payer.onEvent((event) => {
      if (event.type === 'invoice' && !paid.has(event.payment_hash)) {
        paid.add(event.payment_hash);
        deps.pay(event.payment_request).catch((error: unknown) => view.failures.push(`pay: ${String(error)}`));
      } else if (event.type === 'funded') {
        view.funded += 1;
        wake();
      } else if (event.type === 'settled') {
        view.settled += 1;
        wake();
      } else if (event.type === 'payout_failed' || event.type === 'payout_invoice_needed') {
        view.failures.push(`${event.type}: ${JSON.stringify(event)}`);
        wake();
      }
    });
    const subscribed = await payer.request({ type: 'subscribe', after_seq: 0 });
    if (subscribed.type !== 'ok') throw new Error(`subscribe refused: ${JSON.stringify(subscribed)}`);
    return { streamId, payer, view };
  }));

  const waitFor = async (view: PayerView, done: () => boolean, what: string): Promise<void> => {
    const until = Date.now() + 30_000;
    while (!done()) {
      if (view.failures.length > 0) throw new Error(view.failures.join('; '));
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await Promise.race([new Promise<void>((resolve) => view.waiters.push(resolve)), sleep(100)]);
    }
  };

  let charges = 0;
  await Promise.all(runs.map(async ({ streamId, view }, index) => {
    await waitFor(view, () => view.funded > 0, 'the first funding');
    let attempt = 0;
    for (let acked = 0; acked < options.chargesPerStream;) {
      const fundedBefore = view.funded;
      const reply = await deps.app.request({ type: 'charge', stream_id: streamId, event: 'hit', ref: `${options.refPrefix}-${index}-${attempt++}` });
      if (reply.type === 'ok' && reply.replayed === false) {
        acked += 1;
        charges += 1;
        continue;
      }
      const code = reply.type === 'error' ? (reply.error.code as string) : 'replayed';
      refusals[code] = (refusals[code] ?? 0) + 1;
      if (code !== 'stream_limit_exceeded') throw new Error(`charge refused: ${JSON.stringify(reply)}`);
      await waitFor(view, () => view.funded > fundedBefore, 'a top-up');
    }
  }));

  await Promise.all(runs.map(async ({ payer, view }) => {
    const set = await payer.request({ type: 'payout.set', destination: { keysend: { pubkey: deps.payoutPubkey } } });
    if (set.type !== 'ok') throw new Error(`payout.set refused: ${JSON.stringify(set)}`);
    const closed = await payer.request({ type: 'close' });
    if (closed.type !== 'ok') throw new Error(`close refused: ${JSON.stringify(closed)}`);
    await waitFor(view, () => view.settled > 0, 'the refund payout');
    // Top-ups asked for just before the close may still be paid: let them land.
    await sleep(200);
    payer.close();
  }));

  return {
    terms,
    streams: options.streams,
    charges,
    invoicesPaid: runs.reduce((sum, run) => sum + run.view.funded, 0),
    payouts: runs.reduce((sum, run) => sum + run.view.settled, 0),
    refusals,
    seconds: (Date.now() - started) / 1000,
    chargesPerTopUp: chargesPerTopUp(terms),
  };
}
