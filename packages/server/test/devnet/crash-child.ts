/**
 * A child process for the devnet crash tests (persistence.test.ts), run with
 * `node --import tsx crash-child.ts <mode> <dataDir>`. It prints one JSON line per step so
 * the parent knows what happened before the process died.
 *
 * Modes:
 *   kill-after-settle  pays two invoices from alice; the fault kills the process with
 *                      SIGKILL right after the second one is settled and committed.
 *   hang-in-flight     starts a payment that waits a minute of injected latency; the
 *                      parent kills the process while it is in flight.
 */
import { openDevnet } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';

const [mode, dataDir] = process.argv.slice(2);
if (dataDir === undefined) throw new Error('usage: crash-child.ts <mode> <dataDir>');
const say = (message: object) => process.stdout.write(JSON.stringify(message) + '\n');
const request = (paymentRequest: string) => ({ paymentRequest, feeLimitMsat: msat(100_000), timeoutS: 120 });

if (mode === 'kill-after-settle') {
  const devnet = await openDevnet({ dataDir, seed: 'crash', faults: { killAfterSettle: { afterSettledPayments: 2, payer: 'alice' } } });
  const sluice = devnet.backendFor('sluice');
  // A payment by another node does not count towards the kill.
  const payout = await devnet.backendFor('bob').createInvoice({ amountMsat: msat(1_000), expiryS: 600 });
  say({ step: 'payout', outcome: (await sluice.payInvoice(request(payout.paymentRequest))).status });
  const first = await sluice.createInvoice({ amountMsat: msat(10_000), expiryS: 600 });
  const second = await sluice.createInvoice({ amountMsat: msat(20_000), expiryS: 600 });
  say({ step: 'invoices', first: first.paymentHash, second: second.paymentHash });
  say({ step: 'first', outcome: (await devnet.backendFor('alice').payInvoice(request(first.paymentRequest))).status });
  const outcome = await devnet.backendFor('alice').payInvoice(request(second.paymentRequest));
  say({ step: 'second returned', outcome: outcome.status });
} else if (mode === 'hang-in-flight') {
  const devnet = await openDevnet({ dataDir, seed: 'crash', faults: { latencyMs: 60_000 } });
  const invoice = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(10_000), expiryS: 600 });
  void devnet.backendFor('alice').payInvoice(request(invoice.paymentRequest));
  say({ step: 'in flight', paymentHash: invoice.paymentHash });
} else {
  throw new Error(`unknown mode ${mode}`);
}
