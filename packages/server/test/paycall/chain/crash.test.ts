// Chains survive SIGKILL: 16 chains are spent over HTTP by concurrent clients, the process
// is killed mid-traffic, and after a restart on the same data every acknowledged link is
// refused as replayed, the server's index is the last acknowledged one or (for a call in
// flight at the kill) one call further, and the ledger agrees to the msat: chain account =
// unused steps x step, app revenue = the sum of the indexes x step.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildChain } from '../../../src/paycall/chain/index.js';

const ADMIN = 'sa_chain-crash-admin-key-000';
const SERVER = path.resolve(__dirname, 'crash-server.ts');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

async function start(dataDir: string, env: Record<string, string> = {}): Promise<{ child: ChildProcess; sluice: string; api: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: {
      ...process.env, SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN, SLUICE_DEVNET_SEED: 'chain-crash', PORT: '0', HOST: '127.0.0.1',
      LOG_LEVEL: 'warn', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let output = '';
  const ready = await new Promise<{ sluice: string; api: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`crash server did not start:\n${output}`)), 60_000);
    child.stdout?.on('data', (chunk) => {
      output += chunk;
      const line = output.split('\n').find((candidate) => candidate.startsWith('{"sluice"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    });
    child.stderr?.on('data', (chunk) => (output += chunk));
    child.once('exit', () => reject(new Error(`crash server exited:\n${output}`)));
  });
  return { child, ...ready, exited };
}

const json = async (url: string, init: { method?: string; key?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...(init.key ? { authorization: `Bearer ${init.key}` } : {}), ...init.headers },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, body: await response.json() as any };
};

describe('hash-chain tokens killed mid-traffic', () => {
  it('never accepts an acknowledged link again and keeps the money exact across SIGKILL', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chain-crash-'));
    // No sweep before the kill: every spent step is settled by the restart, from the rows.
    const first = await start(dataDir, { SLUICE_CHAIN_SETTLE_INTERVAL_MS: '60000' });
    const app = (await json(`${first.sluice}/v1/apps`, { method: 'POST', key: ADMIN, body: { name: 'crash' } })).body;
    const STEPS = 400;
    const chains = [];
    for (let i = 0; i < 16; i += 1) {
      const links = buildChain(randomBytes(32), STEPS);
      const bought = await json(`${first.sluice}/v1/paycall/chains`, { method: 'POST', body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: STEPS } });
      expect(bought.status).toBe(201);
      expect((await json(`${first.sluice}/v1/devnet/pay`, { method: 'POST', key: ADMIN, body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
      chains.push({ id: bought.body.chain_id as string, links, acked: 0, sent: 0 });
    }

    // Each chain is spent by its own client, 2 steps a call; kill after ~800 acknowledged calls.
    let acks = 0;
    let killed = false;
    const clients = chains.map(async (chain) => {
      while (!killed && chain.sent + 2 <= STEPS) {
        const index = chain.acked + 2;
        chain.sent = index;
        try {
          const call = await json(`${first.api}/${app.id}/call`, { headers: { 'sluice-chain': `${chain.id} ${index} ${(chain.links[index] as Buffer).toString('hex')}` } });
          if (call.status !== 200) throw new Error(`call refused: ${JSON.stringify(call.body)}`);
          chain.acked = index;
          acks += 1;
          if (acks >= 800 && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        } catch (error) {
          if (!killed) throw error;
        }
      }
    });
    await Promise.all(clients);
    await first.exited;
    expect(acks).toBeGreaterThanOrEqual(800);

    const second = await start(dataDir);
    let revenue = 0n;
    for (const chain of chains) {
      const state = (await json(`${second.sluice}/v1/paycall/chains/${chain.id}`)).body;
      // Durable before acknowledged: at least the last ack; at most the one call in flight at the kill.
      expect([chain.acked, chain.sent]).toContain(state.index);
      expect(state.remaining_msat).toBe(String((STEPS - state.index) * 1000));
      revenue += BigInt(state.index) * 1000n;
      if (chain.acked > 0) {
        const replay = await json(`${second.api}/${app.id}/call`, { headers: { 'sluice-chain': `${chain.id} ${chain.acked} ${(chain.links[chain.acked] as Buffer).toString('hex')}` } });
        expect(replay.status).toBe(401);
        expect(replay.body.error.code).toBe('chain_link_replayed');
      }
      // And the chain goes on from where the server is.
      const next = state.index + 2;
      const call = await json(`${second.api}/${app.id}/call`, { headers: { 'sluice-chain': `${chain.id} ${next} ${(chain.links[next] as Buffer).toString('hex')}` } });
      expect(call.status).toBe(200);
      revenue += 2000n;
    }
    // Calls pay the app in sweeps (SLUICE_CHAIN_SETTLE_INTERVAL_MS, 250 ms by default): the
    // balance reaches the revenue within the interval, and never passes it.
    let appBalance = 0n;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      appBalance = BigInt((await json(`${second.sluice}/v1/balance`, { key: app.api_key })).body.balance_msat);
      expect(appBalance).toBeLessThanOrEqual(revenue);
      if (appBalance === revenue) break;
    }
    expect(appBalance).toBe(revenue);
    second.child.kill('SIGTERM');
    await second.exited;
  }, 120_000);

  it('settles a refund whose process was killed right after the payment settled', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chain-refund-crash-'));
    // The devnet SIGKILLs the process right after the first payment Sluice sends settles,
    // before Sluice records it: that payment is the refund.
    const first = await start(dataDir, { SLUICE_DEVNET_CRASH_AFTER_PAYMENT: '1' });
    const app = (await json(`${first.sluice}/v1/apps`, { method: 'POST', key: ADMIN, body: { name: 'refund crash' } })).body;
    const float = await json(`${first.sluice}/v1/invoices`, { method: 'POST', key: app.api_key, body: { amount_msat: '50000', description: 'float' } });
    expect((await json(`${first.sluice}/v1/devnet/pay`, { method: 'POST', key: ADMIN, body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
    const links = buildChain(randomBytes(32), 30);
    const bought = await json(`${first.sluice}/v1/paycall/chains`, { method: 'POST', body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 30 } });
    expect((await json(`${first.sluice}/v1/devnet/pay`, { method: 'POST', key: ADMIN, body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
    const id = bought.body.chain_id as string;
    for (const index of [2, 4, 6]) {
      const call = await json(`${first.api}/${app.id}/call`, { headers: { 'sluice-chain': `${id} ${index} ${(links[index] as Buffer).toString('hex')}` } });
      expect(call.status).toBe(200);
    }
    const invoice = await json(`${first.sluice}/v1/devnet/invoices`, { method: 'POST', key: ADMIN, body: { amount_msat: '24000', wallet: 'carol' } });
    await json(`${first.sluice}/v1/paycall/chains/${id}/refund`, { method: 'POST', body: { index: 7, link: (links[7] as Buffer).toString('hex'), invoice: invoice.body.payment_request } })
      .catch(() => undefined); // the connection dies with the process
    await first.exited;

    const second = await start(dataDir);
    const wallets = (await json(`${second.sluice}/v1/devnet/wallets`, { key: ADMIN })).body;
    expect(JSON.stringify(wallets)).toContain('carol');
    // Reconciled at start-up: the refund succeeded, the chain is refunded, the fee budget is back with the app.
    const chain = (await json(`${second.sluice}/v1/paycall/chains/${id}`)).body;
    expect(chain).toMatchObject({ status: 'refunded', index: 6 });
    const again = await json(`${second.sluice}/v1/paycall/chains/${id}/refund`, { method: 'POST', body: { index: 7, link: (links[7] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(again.body).toMatchObject({ refund: { amount_msat: '24000', payment: { status: 'succeeded' } } });
    const fee = BigInt(again.body.refund.payment.fee_msat);
    let appBalance = 0n;
    for (let i = 0; i < 100; i += 1) {
      appBalance = BigInt((await json(`${second.sluice}/v1/balance`, { key: app.api_key })).body.balance_msat);
      if (appBalance === 50_000n + 6000n - fee) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(appBalance).toBe(50_000n + 6000n - fee);
    const refused = await json(`${second.api}/${app.id}/call`, { headers: { 'sluice-chain': `${id} 8 ${(links[8] as Buffer).toString('hex')}` } });
    expect(refused.body.error.code).toBe('chain_refunded');
    second.child.kill('SIGTERM');
    await second.exited;
  }, 120_000);
});
