// Subscriptions survive SIGKILL in the middle of billing: Sluice runs as a real process
// (SQLite, devnet), 20 funded hourly subscriptions, a clock advance of ten hours is sent
// and the process is killed while it bills; the restarted Sluice (same data dir) bills on
// from where the committed state stands. Nothing lost, nothing charged twice: for every
// subscription paid = charged + balance, and the app's balance is the sum of the charges.
// Also: the demo businesses that `sluice start` seeds on the devnet exist once each; and a
// kill right after a refund payment settled, before Sluice recorded its outcome, is
// finished by the next start: the refund is paid once, the fee loan goes back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSluiceProcess, type SluiceProcess } from '../support/sluice-process.js';

const ADMIN = 'sa_subscription-crash-admin-key';
const running: SluiceProcess[] = [];
afterEach(async () => {
  for (const sluice of running.splice(0)) {
    sluice.child.kill('SIGKILL');
    await sluice.exited;
  }
});

async function start(dataDir: string, env: Record<string, string> = {}): Promise<SluiceProcess> {
  const sluice = await startSluiceProcess({ SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN, SLUICE_DEVNET_SEED: 'subscription-crash', ...env });
  running.push(sluice);
  return sluice;
}

describe('subscriptions across SIGKILL', () => {
  it('a kill during a billing pass loses nothing and charges nothing twice', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-subs-crash-'));
    const first = await start(dataDir);
    const app = (await first.request('POST', '/v1/apps', ADMIN, { name: 'digital sea' })).body;
    const plan = (await first.request('POST', '/v1/plans', app.api_key, { name: 'server', rate_msat_per_increment: '72000', increment_s: 3600, prepayment_s: 86_400, grace_s: 3600, min_settlement_msat: '1000' })).body;
    const subscriptions: { id: string; paid: bigint }[] = [];
    for (let index = 0; index < 20; index += 1) {
      const created = (await first.request('POST', '/v1/subscriptions', app.api_key, { plan_id: plan.id })).body;
      const paid = await first.request('POST', '/v1/devnet/pay', app.api_key, { payment_request: created.invoice.payment_request, wallet: 'alice' });
      expect(paid.status).toBe(200);
      subscriptions.push({ id: created.id, paid: BigInt(paid.body.amount_msat) });
    }
    // The advance is sent and the process killed while it works (before, during or after the
    // billing commit: the answer is never read).
    void first.request('POST', '/v1/devnet/clock/advance', ADMIN, { seconds: 36_000 }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 15));
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await start(dataDir);
    await second.request('POST', '/v1/devnet/clock/advance', ADMIN, { seconds: 60 });
    let charged = 0n;
    for (const subscription of subscriptions) {
      const sub = (await second.request('GET', `/v1/subscriptions/${subscription.id}`, app.api_key)).body;
      expect(sub.status).toBe('active');
      expect(BigInt(sub.charged_msat) + BigInt(sub.balance_msat)).toBe(subscription.paid);
      // Whole increments only: the first, plus the ten hours if the advance was saved before the kill.
      expect([72_000n, 11n * 72_000n]).toContain(BigInt(sub.charged_msat));
      charged += BigInt(sub.charged_msat);
    }
    // `sluice start` on the devnet seeds the demo businesses, once across restarts.
    const names = (await second.request('GET', '/v1/apps', ADMIN)).body.apps.map((row: { name: string }) => row.name);
    for (const business of ['Echelon Mobile', 'Webflix', 'Perpetual Insurance', 'Digital Sea', 'Pedal Bike Rental']) {
      expect(names.filter((name: string) => name === business)).toHaveLength(1);
    }
    const balance = (await second.request('GET', '/v1/balance', app.api_key)).body;
    expect(BigInt(balance.balance_msat)).toBe(charged);
    const events = (await second.request('GET', '/v1/webhooks/events?limit=1000', app.api_key)).body;
    if (events?.events) {
      const activated = events.events.filter((event: { type: string }) => event.type === 'subscription.activated');
      expect(activated).toHaveLength(20);
    }
  });

  it('a kill right after a keysend refund settled at the node, before Sluice recorded it: the next start finishes it, paid once', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-subs-refund-crash-'));
    // The devnet kills the process right after the first payment Sluice sends has settled.
    const first = await start(dataDir, { SLUICE_DEVNET_CRASH_AFTER_PAYMENT: '1' });
    const app = (await first.request('POST', '/v1/apps', ADMIN, { name: 'refund crash' })).body;
    const wallets = (await first.request('GET', '/v1/devnet/wallets', app.api_key)).body.wallets as { name: string; pubkey: string; balance_msat: string }[];
    const bob = wallets.find((wallet) => wallet.name === 'bob')!;
    const plan = (await first.request('POST', '/v1/plans', app.api_key, { name: 'minutes', rate_msat_per_s: '10', increment_s: 60, prepayment_s: 3600, min_settlement_msat: '1000' })).body;
    const created = (await first.request('POST', '/v1/subscriptions', app.api_key, { plan_id: plan.id, refund: { keysend_pubkey: bob.pubkey } })).body;
    const paid = await first.request('POST', '/v1/devnet/pay', app.api_key, { payment_request: created.invoice.payment_request, wallet: 'alice' });
    expect(paid.status).toBe(200);
    let sub = (await first.request('GET', `/v1/subscriptions/${created.id}`, app.api_key)).body;
    for (let attempt = 0; sub.status !== 'active' && attempt < 100; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      sub = (await first.request('GET', `/v1/subscriptions/${created.id}`, app.api_key)).body;
    }
    expect(sub.status).toBe('active');
    await first.request('POST', '/v1/devnet/clock/advance', ADMIN, { seconds: 300 });
    const cancel = await first.request('POST', `/v1/subscriptions/${created.id}/cancel`, created.payer_token, {}).then(() => 'answered', () => 'connection lost');
    expect(cancel).toBe('connection lost');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const second = await start(dataDir);
    const refund = 36_000n - 6n * 600n;
    for (let attempt = 0; attempt < 100; attempt += 1) {
      sub = (await second.request('GET', `/v1/subscriptions/${created.id}`, app.api_key)).body;
      if (sub.refund.status !== 'pending') break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(sub).toMatchObject({ status: 'cancelled', charged_msat: String(6n * 600n), refund: { status: 'succeeded', amount_msat: String(refund) } });
    const payments = (await second.request('GET', '/v1/payments?limit=100', app.api_key)).body.payments as { destination: string; status: string; amount_msat: string; fee_msat: string | null }[];
    const toBob = payments.filter((payment) => payment.destination === bob.pubkey);
    expect(toBob.map((payment) => [payment.status, payment.amount_msat])).toEqual([['succeeded', String(refund)]]);
    const bobAfter = (await second.request('GET', '/v1/devnet/wallets', app.api_key)).body.wallets.find((wallet: { name: string }) => wallet.name === 'bob');
    expect(BigInt(bobAfter.balance_msat) - BigInt(bob.balance_msat)).toBe(refund);
    // The app keeps the charges less the refund's routing fee: the rest of the loan came back.
    const balance = (await second.request('GET', '/v1/balance', app.api_key)).body;
    expect(BigInt(balance.balance_msat)).toBe(6n * 600n - BigInt(toBob[0]!.fee_msat ?? '0'));
  });
});
