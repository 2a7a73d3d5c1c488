// Crash safety of outgoing payments: the process is killed (SIGKILL) between the moment
// the Lightning payment happens and the moment Sluice records it, or while the payment is
// still in flight. After a restart every payment is resolved by its payment hash: nothing
// is paid twice and no msat is lost, checked against the devnet's own balances and the
// ledger's double-entry sum.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { createSqliteLedgerStore } from '../../src/ledger/sqlite/store.js';
import { startSluiceProcess, type SluiceProcess } from '../support/sluice-process.js';

const ADMIN = 'sa_crash-test-admin-key-000';
const running: SluiceProcess[] = [];

afterEach(async () => {
  for (const sluice of running.splice(0)) {
    sluice.child.kill('SIGKILL');
    await sluice.exited;
  }
});

async function start(dataDir: string, extra: Record<string, string> = {}): Promise<SluiceProcess> {
  const sluice = await startSluiceProcess({ SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN, SLUICE_DEVNET_SEED: 'crash', ...extra });
  running.push(sluice);
  return sluice;
}

async function fundedApp(sluice: SluiceProcess, amountMsat: string): Promise<string> {
  const app = await sluice.request('POST', '/v1/apps', ADMIN, { name: 'crash' });
  const key = app.body.api_key as string;
  const invoice = await sluice.request('POST', '/v1/invoices', key, { amount_msat: amountMsat });
  const paid = await sluice.request('POST', '/v1/devnet/pay', key, { payment_request: invoice.body.payment_request, wallet: 'alice' });
  expect(paid.status).toBe(200);
  return key;
}

async function walletBalance(sluice: SluiceProcess, key: string, name: string): Promise<bigint> {
  const wallets = await sluice.request('GET', '/v1/devnet/wallets', key);
  return BigInt(wallets.body.wallets.find((wallet: { name: string }) => wallet.name === name).balance_msat);
}

async function ledgerSum(dataDir: string): Promise<bigint> {
  const db = openSqlite({ path: path.join(dataDir, 'sluice.sqlite') });
  try {
    return await createSqliteLedgerStore(db).sumOfBalances();
  } finally {
    db.close();
  }
}

describe('a crash between send and record', () => {
  it('records the payment exactly once after a SIGKILL right after the devnet settled it', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-crash-'));
    const first = await start(dataDir, { SLUICE_DEVNET_CRASH_AFTER_PAYMENT: '1' });
    const key = await fundedApp(first, '1000000');
    const payout = await first.request('POST', '/v1/devnet/invoices', key, { amount_msat: '300000', wallet: 'bob' });
    const bobBefore = await walletBalance(first, key, 'bob');

    const attempt = await first.request('POST', '/v1/payments', key, { payment_request: payout.body.payment_request, idempotency_key: 'crash-1' })
      .then(() => 'answered', () => 'connection lost');
    expect(attempt).toBe('connection lost');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const second = await start(dataDir);
    const payment = await second.request('GET', `/v1/payments/${payout.body.payment_hash}`, key);
    expect(payment.body).toMatchObject({ status: 'succeeded', amount_msat: '300000' });
    const fee = BigInt(payment.body.fee_msat);
    const balance = (await second.request('GET', '/v1/balance', key)).body;
    expect(balance).toEqual({ balance_msat: String(1000000n - 300000n - fee), held_msat: '0', available_msat: String(1000000n - 300000n - fee) });
    expect(await walletBalance(second, key, 'bob')).toBe(bobBefore + 300000n);

    // The client retries after the lost connection: same key, same answer, no second payment.
    const retry = await second.request('POST', '/v1/payments', key, { payment_request: payout.body.payment_request, idempotency_key: 'crash-1' });
    expect(retry.body).toEqual(payment.body);
    const otherKey = await second.request('POST', '/v1/payments', key, { payment_request: payout.body.payment_request, idempotency_key: 'crash-2' });
    expect(otherKey.body.error.code).toBe('invoice_already_paid');
    expect(await walletBalance(second, key, 'bob')).toBe(bobBefore + 300000n);

    await second.stop();
    expect(await ledgerSum(dataDir)).toBe(0n);
  });

  it('resolves a payment that was in flight inside the node when the process died', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-crash-'));
    const first = await start(dataDir, { SLUICE_DEVNET_LATENCY_MS: '3000' });
    const key = await fundedApp(first, '1000000');
    const payout = await first.request('POST', '/v1/devnet/invoices', key, { amount_msat: '200000', wallet: 'carol' });
    const carolBefore = await walletBalance(first, key, 'carol');
    const aliceBefore = await walletBalance(first, key, 'alice');

    const attempt = first.request('POST', '/v1/payments', key, { payment_request: payout.body.payment_request, idempotency_key: 'inflight-1' })
      .then(() => 'answered', () => 'connection lost');
    // Wait until the payment is recorded in flight (its hold is visible), then kill.
    for (let i = 0; i < 100; i += 1) {
      const balance = (await first.request('GET', '/v1/balance', key)).body;
      if (balance.held_msat !== '0') break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect((await first.request('GET', `/v1/payments/${payout.body.payment_hash}`, key)).body.status).toBe('pending');
    first.child.kill('SIGKILL');
    expect(await attempt).toBe('connection lost');
    await first.exited;

    const second = await start(dataDir);
    const payment = (await second.request('GET', `/v1/payments/${payout.body.payment_hash}`, key)).body;
    expect(['succeeded', 'failed']).toContain(payment.status);
    const balance = (await second.request('GET', '/v1/balance', key)).body;
    const carolAfter = await walletBalance(second, key, 'carol');
    if (payment.status === 'succeeded') {
      const fee = BigInt(payment.fee_msat);
      expect(BigInt(balance.balance_msat)).toBe(1000000n - 200000n - fee);
      expect(carolAfter).toBe(carolBefore + 200000n);
    } else {
      expect(balance.balance_msat).toBe('1000000');
      expect(carolAfter).toBe(carolBefore);
    }
    expect(balance.held_msat).toBe('0');
    expect(await walletBalance(second, key, 'alice')).toBe(aliceBefore);
    await second.stop();
    expect(await ledgerSum(dataDir)).toBe(0n);
  });
});
