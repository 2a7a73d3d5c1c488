// Webhooks survive SIGKILL: Sluice runs as a real process, an invoice is paid while the
// receiver answers 503, the process is killed mid-retry, the receiver comes back, and the
// restarted Sluice (same data dir) delivers the event exactly once more with the same
// event id. Real clock, so the retry cap is set to its 5 s minimum to keep this short.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSluiceProcess, type SluiceProcess } from '../support/sluice-process.js';
import { startReceiver, verifyWithPython } from './support.js';

const ADMIN = 'sa_webhook-crash-admin-key-00';
const running: SluiceProcess[] = [];
afterEach(async () => {
  for (const sluice of running.splice(0)) {
    sluice.child.kill('SIGKILL');
    await sluice.exited;
  }
});

async function start(dataDir: string): Promise<SluiceProcess> {
  const sluice = await startSluiceProcess({
    SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN, SLUICE_DEVNET_SEED: 'webhook-crash', SLUICE_WEBHOOK_BACKOFF_MAX_S: '5',
  });
  running.push(sluice);
  return sluice;
}

async function waitUntil<T>(probe: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('webhooks across SIGKILL', () => {
  it('resumes a delivery killed mid-retry and delivers it once, with the same event id', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-webhook-crash-'));
    const receiver = await startReceiver(503);
    try {
      const first = await start(dataDir);
      const app = (await first.request('POST', '/v1/apps', ADMIN, { name: 'shop' })).body;
      const endpoint = (await first.request('POST', '/v1/webhooks', app.api_key, { url: receiver.url, event_types: ['invoice.paid'] })).body;
      const invoice = (await first.request('POST', '/v1/invoices', app.api_key, { amount_msat: '42000' })).body;
      expect((await first.request('POST', '/v1/devnet/pay', app.api_key, { payment_request: invoice.payment_request, wallet: 'alice' })).status).toBe(200);

      // Two refused attempts recorded, then the kill.
      const pending = await waitUntil(async () => {
        const [delivery] = (await first.request('GET', `/v1/webhooks/${endpoint.id}/deliveries`, app.api_key)).body.deliveries;
        return delivery?.attempts >= 2 ? delivery : null;
      }, 'two failed attempts');
      expect(pending.status).toBe('pending');
      first.child.kill('SIGKILL');
      await first.exited;

      receiver.mode = 200;
      const refusedBefore = receiver.received.length;
      const second = await start(dataDir);
      const delivered = await waitUntil(async () => {
        const [delivery] = (await second.request('GET', `/v1/webhooks/${endpoint.id}/deliveries`, app.api_key)).body.deliveries;
        return delivery?.status === 'delivered' ? delivery : null;
      }, 'the delivery after the restart');
      expect(delivered.id).toBe(pending.id);
      expect(delivered.event_id).toBe(pending.event_id);
      const accepted = receiver.received.slice(refusedBefore);
      expect(accepted).toHaveLength(1);
      expect(accepted[0]!.headers['sluice-webhook-id']).toBe(pending.event_id);
      expect(JSON.parse(accepted[0]!.body)).toMatchObject({ id: pending.event_id, type: 'invoice.paid', data: { payment_hash: invoice.payment_hash, amount_paid_msat: '42000' } });
      expect(verifyWithPython({
        secret: endpoint.secret,
        header: accepted[0]!.headers['sluice-signature'] as string,
        body: accepted[0]!.body,
        nowS: Math.floor(Date.now() / 1000),
      })).toBe('ok');
      // Every attempt before and after the kill carried the same event id.
      expect(new Set(receiver.received.map((request) => request.headers['sluice-webhook-id']))).toEqual(new Set([pending.event_id]));
      await second.stop();
    } finally {
      await receiver.close();
    }
  });
});
