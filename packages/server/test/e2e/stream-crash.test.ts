// A stream survives SIGKILL: thousands of charges are acknowledged, the server is killed in
// the middle of the traffic, and after a restart every acknowledged charge is there exactly
// once (re-sending unacknowledged ones with the same ref never applies them twice), and the
// stream's balance agrees with the Lightning funding and refund to the msat.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSluiceProcess, type SluiceProcess } from '../support/sluice-process.js';

const ADMIN = 'sa_stream-crash-admin-key-00';
const running: SluiceProcess[] = [];
afterEach(async () => {
  for (const sluice of running.splice(0)) {
    sluice.child.kill('SIGKILL');
    await sluice.exited;
  }
});

async function start(dataDir: string, port?: number): Promise<SluiceProcess> {
  const sluice = await startSluiceProcess({ SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN, SLUICE_DEVNET_SEED: 'stream-crash' }, port ? { port } : {});
  running.push(sluice);
  return sluice;
}

describe('a stream killed mid-traffic', () => {
  it('keeps every acknowledged charge exactly once across SIGKILL and restart', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-stream-crash-'));
    const first = await start(dataDir);
    const app = (await first.request('POST', '/v1/apps', ADMIN, { name: 'arcade' })).body;
    const alice = (await first.request('GET', '/v1/devnet/wallets', app.api_key)).body;
    expect(alice.fake_money).toBe(true);
    const created = await first.request('POST', '/v1/streams', app.api_key, { prices: { shot: '7' }, settle_to_msat: '10000000', max_charge_msat: '1000' });
    const streamId = created.body.id as string;
    const token = created.body.payer_token as string;
    const funding = (await first.request('GET', `/v1/streams/${streamId}/events`, token)).body.events.find((e: { type: string }) => e.type === 'invoice');
    await first.request('POST', '/v1/devnet/pay', token, { payment_request: funding.payment_request, wallet: 'alice' });

    // Fire charges from 8 concurrent senders; kill the server after ~1,500 acks.
    const acked = new Map<string, number>();
    const sent: string[] = [];
    let killed = false;
    const sender = async (lane: number) => {
      for (let i = 0; !killed; i += 1) {
        const ref = `shot-${lane}-${i}`;
        sent.push(ref);
        try {
          const ack = await first.request('POST', `/v1/streams/${streamId}/charge`, app.api_key, { event: 'shot', ref });
          if (ack.status === 200) acked.set(ref, ack.body.seq);
          if (acked.size >= 1500 && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        } catch {
          return; // connection lost: the server is gone
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, lane) => sender(lane)));
    await first.exited;
    expect(acked.size).toBeGreaterThanOrEqual(1500);

    const second = await start(dataDir);
    // The client re-sends everything it is not sure about; acknowledged ones come back with their first seq.
    let applied = 0;
    for (const ref of sent) {
      const again = await second.request('POST', `/v1/streams/${streamId}/charge`, app.api_key, { event: 'shot', ref });
      expect(again.status, JSON.stringify(again.body)).toBe(200);
      if (acked.has(ref)) {
        expect(again.body.replayed).toBe(true);
        expect(again.body.seq).toBe(acked.get(ref));
      }
      applied += 1;
    }
    const stream = (await second.request('GET', `/v1/streams/${streamId}`, token)).body;
    expect(stream.balance_msat).toBe(String(10000000n - 7n * BigInt(applied)));
    const appBalance = (await second.request('GET', '/v1/balance', app.api_key)).body.balance_msat;
    expect(appBalance).toBe(String(7n * BigInt(applied)));

    // Close with a refund to alice: what she gets back, the routing fee and the dust left
    // below a payout's cost add up to what she funded minus what the app earned.
    const wallets = (await second.request('GET', '/v1/devnet/wallets', token)).body.wallets;
    const aliceWallet = wallets.find((wallet: { name: string }) => wallet.name === 'alice');
    await second.request('POST', `/v1/streams/${streamId}/payout`, token, { destination: { keysend: { pubkey: aliceWallet.pubkey } } });
    const closed = await second.request('POST', `/v1/streams/${streamId}/close`, token);
    expect(closed.body.status).toBe('closed');
    // The app earned too little to lend the refund's fee budget, so the payer's balance pays
    // it: the refund goes out as the balance minus that budget, and what the route did not
    // use goes back in a second payout once the first has settled (until what is left is
    // below a payout's cost).
    type Settled = { amount_msat: string; fee_msat: string };
    const settledEvents = async (): Promise<Settled[]> =>
      (await second.request('GET', `/v1/streams/${streamId}/events`, token)).body.events.filter((e: { type: string }) => e.type === 'settled');
    const dustOf = async () => BigInt((await second.request('GET', `/v1/streams/${streamId}`, token)).body.balance_msat);
    for (let i = 0; i < 100 && ((await settledEvents()).length === 0 || (await dustOf()) >= 10_000n); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const settled = await settledEvents();
    expect(settled.length).toBeGreaterThanOrEqual(1);
    const refunded = settled.reduce((sum, event) => sum + BigInt(event.amount_msat), 0n);
    const fees = settled.reduce((sum, event) => sum + BigInt(event.fee_msat), 0n);
    const aliceAfter = (await second.request('GET', '/v1/devnet/wallets', token)).body.wallets.find((wallet: { name: string }) => wallet.name === 'alice');
    expect(BigInt(aliceAfter.balance_msat)).toBe(BigInt(aliceWallet.balance_msat) + refunded);
    const dust = await dustOf();
    expect(dust).toBeLessThan(10_000n);
    // Every msat is accounted for: the payer's balance went to alice, to routing fees, or is
    // the dust left; a fee the app lent for a later refund (once it had earned enough) came
    // from the app's earnings, to the msat.
    const funded = 10000000n - 7n * BigInt(applied);
    const paidByApp = refunded + fees + dust - funded;
    expect(paidByApp >= 0n && paidByApp <= fees).toBe(true);
    expect((await second.request('GET', '/v1/balance', app.api_key)).body.balance_msat).toBe(String(7n * BigInt(applied) - paidByApp));
  });
});
