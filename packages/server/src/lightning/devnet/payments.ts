/**
 * Sending payments across the devnet: invoice payments and keysend.
 *
 * A payment goes through these steps:
 *   1. checks that need no network (invoice decodes, network, amount, expiry, destination
 *      known, not already paid). A refusal here is not recorded: nothing was sent, and
 *      lookupPayment answers not_found, which means exactly that.
 *   2. the payment is written `in_flight` (committed) before anything else happens.
 *   3. injected latency (real time), bounded by the request's timeout.
 *   4. one synchronous step and one SQLite transaction: injected failure, the payee's
 *      checks, pathfinding over the current balances, the balance moves along the route,
 *      the payee's invoice settled and the payment marked succeeded, or marked failed.
 *      Nothing awaits between pathfinding and the commit, so concurrent payments cannot
 *      spend the same balance twice.
 *   5. faults that act after the outcome is committed (kill, withheld outcome).
 *
 * So a row that is still `in_flight` never moved money. Restart rule: every payment found
 * in flight when the devnet opens is marked failed (reason 'error'), which is the truth:
 * its balance moves, had they happened, would have been committed together with
 * `succeeded`.
 */
import { isMsat, type Msat } from '../../money/msat.js';
import type { KeysendRequest, PayInvoiceRequest, PaymentFailureReason, PaymentLookup, PaymentOutcome } from '../backend.js';
import type { DevnetCore, DevnetNode } from './core.js';
import type { PaymentEnds } from './faults.js';
import { decodeInvoice } from './invoice-codec.js';
import { bytesFromHex, isHex32, sha256Hex } from './keys.js';
import { applyRoute, findRoute, localBalanceMsat, type Route } from './network.js';

/** The TLV record type that carries the sender's preimage in a keysend payment. */
export const KEYSEND_RECORD_TYPE = 5482373484n;

/** A keysend payee gets an invoice record that "expires" a day after it settles (as LND's, it is never payable). */
const KEYSEND_INVOICE_EXPIRY_MS = 24 * 3600 * 1000;
/** The detail of payments failed by the restart rule (see the header). */
export const RESTART_FAILURE_DETAIL = "devnet stopped before this payment's HTLCs were locked in; no money moved";

interface PaymentPlan {
  kind: 'invoice' | 'keysend';
  payer: DevnetNode;
  payee: DevnetNode;
  paymentHash: string;
  amountMsat: Msat;
  feeLimitMsat: Msat;
  timeoutS: number;
  /** The invoice's payment secret, which the payee checks (invoice payments). */
  paymentSecret: string | null;
  /** TLV records delivered to the payee (keysend: the preimage under KEYSEND_RECORD_TYPE). */
  customRecords: ReadonlyMap<bigint, string>;
}

function endsOf(plan: PaymentPlan): PaymentEnds {
  return { payer: plan.payer.name, payee: plan.payee.name };
}

function failed(paymentHash: string, reason: PaymentFailureReason, detail: string): PaymentOutcome {
  return { status: 'failed', paymentHash, reason, detail };
}

function requestProblem(feeLimitMsat: unknown, timeoutS: unknown): string | null {
  if (!isMsat(feeLimitMsat)) return 'feeLimitMsat must be an msat amount';
  if (typeof timeoutS !== 'number' || !Number.isSafeInteger(timeoutS) || timeoutS <= 0) return 'timeoutS must be a positive integer';
  return null;
}

export async function payInvoice(core: DevnetCore, payerName: string, request: PayInvoiceRequest): Promise<PaymentOutcome> {
  const payer = core.node(payerName);
  const decoded = decodeInvoice(request.paymentRequest);
  if (!decoded.ok) return failed('', 'incorrect_payment_details', `invoice does not decode (${decoded.error}): ${decoded.detail}`);
  const invoice = decoded.invoice;
  const hash = invoice.paymentHash;
  const problem = requestProblem(request.feeLimitMsat, request.timeoutS);
  if (problem !== null) return failed(hash, 'error', problem);
  if (invoice.network !== 'regtest') {
    return failed(hash, 'incorrect_payment_details', `invoice is for ${invoice.network}; the devnet is regtest (lnbcrt)`);
  }
  const amount = invoiceAmount(invoice.amountMsat, request.amountMsat);
  if (!amount.ok) return failed(hash, 'incorrect_payment_details', amount.detail);
  if (core.clock.now() >= invoice.expiresAt * 1000) {
    return failed(hash, 'invoice_expired', `invoice expired at ${new Date(invoice.expiresAt * 1000).toISOString()}`);
  }
  const payee = core.nodeByPubkey(invoice.payeePubkey);
  if (payee === null) return failed(hash, 'no_route', `no devnet node has pubkey ${invoice.payeePubkey}`);
  return execute(core, {
    kind: 'invoice',
    payer,
    payee,
    paymentHash: hash,
    amountMsat: amount.amountMsat,
    feeLimitMsat: request.feeLimitMsat,
    timeoutS: request.timeoutS,
    paymentSecret: invoice.paymentSecret,
    customRecords: new Map(),
  });
}

function invoiceAmount(
  invoiceAmountMsat: Msat | null,
  requestAmountMsat: Msat | undefined,
): { ok: true; amountMsat: Msat } | { ok: false; detail: string } {
  if (requestAmountMsat !== undefined && (!isMsat(requestAmountMsat) || requestAmountMsat === 0n)) {
    return { ok: false, detail: 'amountMsat must be a positive msat amount' };
  }
  if (invoiceAmountMsat === null) {
    if (requestAmountMsat === undefined) return { ok: false, detail: 'the invoice has no amount; give amountMsat' };
    return { ok: true, amountMsat: requestAmountMsat };
  }
  if (requestAmountMsat === undefined) return { ok: true, amountMsat: invoiceAmountMsat };
  if (requestAmountMsat < invoiceAmountMsat) {
    return { ok: false, detail: `amountMsat ${requestAmountMsat} is below the invoice amount ${invoiceAmountMsat}` };
  }
  return { ok: true, amountMsat: requestAmountMsat };
}

export async function keysend(core: DevnetCore, payerName: string, request: KeysendRequest): Promise<PaymentOutcome> {
  const payer = core.node(payerName);
  if (!isHex32(request.preimage)) return failed('', 'error', 'preimage must be 32 bytes of lowercase hex');
  const hash = sha256Hex(bytesFromHex(request.preimage));
  const problem = requestProblem(request.feeLimitMsat, request.timeoutS);
  if (problem !== null) return failed(hash, 'error', problem);
  if (!isMsat(request.amountMsat) || request.amountMsat === 0n) {
    return failed(hash, 'incorrect_payment_details', 'amountMsat must be a positive msat amount');
  }
  const payee = core.nodeByPubkey(request.destinationPubkey);
  if (payee === null) return failed(hash, 'no_route', `no devnet node has pubkey ${request.destinationPubkey}`);
  return execute(core, {
    kind: 'keysend',
    payer,
    payee,
    paymentHash: hash,
    amountMsat: request.amountMsat,
    feeLimitMsat: request.feeLimitMsat,
    timeoutS: request.timeoutS,
    paymentSecret: null,
    customRecords: new Map([[KEYSEND_RECORD_TYPE, request.preimage]]),
  });
}

async function execute(core: DevnetCore, plan: PaymentPlan): Promise<PaymentOutcome> {
  const { payer, payee, paymentHash } = plan;
  if (core.isClosed()) return failed(paymentHash, 'error', 'the devnet is closed');
  if (payer.name === payee.name) return failed(paymentHash, 'no_route', 'the devnet refuses self-payments');
  const key = `${payer.name}:${paymentHash}`;
  // Synchronous from here to beginPayment: no other payment can slip in between the checks and the record.
  if (core.paymentsInProgress.has(key)) {
    return { status: 'unknown', paymentHash, detail: 'a payment for this hash is already in flight from this node' };
  }
  const previous = core.store.payment(payer.name, paymentHash);
  if (previous?.status === 'succeeded') return failed(paymentHash, 'already_paid', 'this node has already paid this payment hash');
  const payeeInvoice = core.store.invoice(payee.name, paymentHash);
  if (payeeInvoice?.state === 'settled') return failed(paymentHash, 'already_paid', 'the payee has already been paid for this hash');

  core.store.beginPayment({
    node: payer.name,
    paymentHash,
    kind: plan.kind,
    destination: payee.pubkey,
    amountMsat: plan.amountMsat,
    feeLimitMsat: plan.feeLimitMsat,
    createdAt: core.clock.now(),
  });
  const running = run(core, plan);
  core.paymentsInProgress.set(key, running);
  try {
    return await running;
  } finally {
    core.paymentsInProgress.delete(key);
  }
}

async function run(core: DevnetCore, plan: PaymentPlan): Promise<PaymentOutcome> {
  let outcome: PaymentOutcome;
  try {
    const latencyMs = core.faults.latencyMs();
    const timeoutMs = plan.timeoutS * 1000;
    const timesOut = latencyMs >= timeoutMs;
    if (latencyMs > 0) await sleep(timesOut ? timeoutMs : latencyMs, core.closing);
    if (core.isClosed()) {
      // Closing cut the wait short; nothing moved yet, so this is a plain failure.
      outcome = recordFailure(core, plan, 'error', 'the devnet closed before the payment was sent');
    } else if (timesOut) {
      outcome = recordFailure(core, plan, 'timeout', `no answer within ${plan.timeoutS} s (devnet latency ${latencyMs} ms)`);
    } else {
      outcome = settleNow(core, plan);
    }
  } catch (error) {
    return unexpected(core, plan, error);
  }
  if (outcome.status === 'succeeded') {
    core.notifySettled(plan.payee.name);
    if (core.faults.shouldKillAfterSettle(plan.payer.name)) killThisProcess();
  }
  if (core.faults.drawWithheldOutcome(endsOf(plan))) {
    return { status: 'unknown', paymentHash: plan.paymentHash, detail: 'devnet fault: the outcome was withheld; look the payment up' };
  }
  return outcome;
}

/**
 * A bug or a closed database mid-payment. The settle transaction is atomic, so a payment
 * still in flight moved no money and may be marked failed; if even that fails, the
 * caller hears `unknown` and the restart rule resolves it.
 */
function unexpected(core: DevnetCore, plan: PaymentPlan, error: unknown): PaymentOutcome {
  const detail = `devnet error: ${error instanceof Error ? error.message : String(error)}`;
  try {
    const row = core.store.payment(plan.payer.name, plan.paymentHash);
    if (row?.status === 'in_flight') core.store.failPayment(plan.payer.name, plan.paymentHash, 'error', detail, core.clock.now());
  } catch {
    // The store is unusable; the row stays in flight and is failed when the devnet reopens.
  }
  return { status: 'unknown', paymentHash: plan.paymentHash, detail };
}

function killThisProcess(): never {
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL to ourselves does not return in practice; if it somehow did, never answer.
  throw new Error('devnet fault: the process should have been killed');
}

function recordFailure(core: DevnetCore, plan: PaymentPlan, reason: PaymentFailureReason, detail: string): PaymentOutcome {
  core.store.failPayment(plan.payer.name, plan.paymentHash, reason, detail, core.clock.now());
  return failed(plan.paymentHash, reason, detail);
}

type PayeeAcceptance = { ok: true; preimage: string; keysendInvoice: { createdAt: number; expiresAt: number } | null } | { ok: false; reason: PaymentFailureReason; detail: string };

/** What the payee checks when the HTLC arrives (BOLT 4 final-node checks, as far as the devnet models them). */
function payeeAccepts(core: DevnetCore, plan: PaymentPlan, now: number): PayeeAcceptance {
  const { payee, paymentHash, amountMsat } = plan;
  if (plan.kind === 'keysend') {
    const preimage = plan.customRecords.get(KEYSEND_RECORD_TYPE);
    if (preimage === undefined || !isHex32(preimage) || sha256Hex(bytesFromHex(preimage)) !== paymentHash) {
      return { ok: false, reason: 'incorrect_payment_details', detail: 'keysend record does not hash to the payment hash' };
    }
    if (core.store.invoice(payee.name, paymentHash) !== null) {
      return { ok: false, reason: 'already_paid', detail: 'the payee has already received this payment hash' };
    }
    return { ok: true, preimage, keysendInvoice: { createdAt: now, expiresAt: now + KEYSEND_INVOICE_EXPIRY_MS } };
  }
  const invoice = core.store.invoice(payee.name, paymentHash);
  if (invoice === null) return { ok: false, reason: 'incorrect_payment_details', detail: 'the payee has no invoice with this hash' };
  if (invoice.state === 'settled') return { ok: false, reason: 'already_paid', detail: 'the payee has already been paid for this hash' };
  if (now >= invoice.expiresAt) return { ok: false, reason: 'invoice_expired', detail: 'the invoice expired before the payment arrived' };
  if (invoice.paymentSecret !== plan.paymentSecret) {
    return { ok: false, reason: 'incorrect_payment_details', detail: 'the payment secret does not match the invoice' };
  }
  if (invoice.amountMsat > 0n && amountMsat < invoice.amountMsat) {
    return { ok: false, reason: 'incorrect_payment_details', detail: 'the amount is below the invoice amount' };
  }
  // BOLT 4: a final node should refuse more than twice the amount it asked for.
  if (invoice.amountMsat > 0n && amountMsat > invoice.amountMsat * 2n) {
    return { ok: false, reason: 'incorrect_payment_details', detail: 'the amount is more than twice the invoice amount' };
  }
  return { ok: true, preimage: invoice.preimage, keysendInvoice: null };
}

/** Step 4 of the header: synchronous, one transaction when it succeeds. */
function settleNow(core: DevnetCore, plan: PaymentPlan): PaymentOutcome {
  const injected = core.faults.drawFailure(endsOf(plan));
  if (injected !== null) return recordFailure(core, plan, injected.reason, injected.detail);
  const now = core.clock.now();
  const acceptance = payeeAccepts(core, plan, now);
  if (!acceptance.ok) return recordFailure(core, plan, acceptance.reason, acceptance.detail);

  const channels = core.store.channels();
  const spendable = localBalanceMsat(channels, plan.payer.name);
  if (spendable < plan.amountMsat) {
    return recordFailure(core, plan, 'insufficient_balance', `${plan.payer.name} holds ${spendable} msat, less than ${plan.amountMsat}`);
  }
  const route = findRoute(channels, plan.payer.name, plan.payee.name, plan.amountMsat);
  if (route === null) {
    return recordFailure(core, plan, 'no_route', `no route with enough balance to deliver ${plan.amountMsat} msat`);
  }
  if (route.feeMsat > plan.feeLimitMsat) {
    return recordFailure(core, plan, 'no_route', `the cheapest route costs ${route.feeMsat} msat in fees, over the limit of ${plan.feeLimitMsat}`);
  }
  // The payer checks what it gets back, as it would from any node.
  if (sha256Hex(bytesFromHex(acceptance.preimage)) !== plan.paymentHash) throw new Error('devnet payee returned a preimage that does not match');
  core.store.settlePayment({
    payer: plan.payer.name,
    paymentHash: plan.paymentHash,
    payee: plan.payee.name,
    preimage: acceptance.preimage,
    amountMsat: plan.amountMsat,
    route,
    channels: touchedChannels(applyRoute(channels, route), route),
    keysendInvoice: acceptance.keysendInvoice,
    now,
  });
  return {
    status: 'succeeded',
    paymentHash: plan.paymentHash,
    preimage: acceptance.preimage,
    amountMsat: plan.amountMsat,
    feeMsat: route.feeMsat,
  };
}

function touchedChannels<T extends { id: number }>(channels: readonly T[], route: Route): T[] {
  const ids = new Set(route.hops.map((hop) => hop.channelId));
  return channels.filter((channel) => ids.has(channel.id));
}

export function lookupPayment(core: DevnetCore, payerName: string, paymentHash: string): PaymentLookup {
  const row = core.store.payment(core.node(payerName).name, paymentHash);
  if (row === null) return { status: 'not_found', paymentHash };
  switch (row.status) {
    case 'in_flight':
      return { status: 'unknown', paymentHash, detail: 'the payment is in flight' };
    case 'succeeded':
      if (row.preimage === null || row.feeMsat === null) throw new Error(`devnet payment ${paymentHash} succeeded without preimage or fee`);
      return { status: 'succeeded', paymentHash, preimage: row.preimage, amountMsat: row.amountMsat, feeMsat: row.feeMsat };
    case 'failed':
      if (row.failureReason === null) throw new Error(`devnet payment ${paymentHash} failed without a reason`);
      return { status: 'failed', paymentHash, reason: row.failureReason, detail: row.failureDetail ?? '' };
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
