// Structured logs carry no secrets; a graceful shutdown lets requests in progress finish.
import { Writable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSluice } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { ADMIN_KEY } from '../support/sluice.js';

function configFor(env: Record<string, string> = {}) {
  const loaded = loadConfig({
    SLUICE_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-logs-')),
    SLUICE_ADMIN_KEY: ADMIN_KEY,
    PORT: '0',
    ...env,
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  return loaded.config;
}

async function json(url: string, method: string, key: string, body?: unknown) {
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() as any };
}

describe('logs', () => {
  it('never contain API keys, the admin key or the preimage of an unpaid invoice', async () => {
    let captured = '';
    const sink = new Writable({ write(chunk, _encoding, done) { captured += chunk.toString(); done(); } });
    const sluice = await createSluice(configFor(), { logger: createLogger('trace', sink) });
    try {
      const base = await sluice.listen();
      const app = await json(`${base}/v1/apps`, 'POST', ADMIN_KEY, { name: 'logged' });
      const key = app.body.api_key as string;
      const unpaid = await json(`${base}/v1/invoices`, 'POST', key, { amount_msat: '1000' });
      const paidInvoice = await json(`${base}/v1/invoices`, 'POST', key, { amount_msat: '50000' });
      await json(`${base}/v1/devnet/pay`, 'POST', key, { payment_request: paidInvoice.body.payment_request });
      const payout = await json(`${base}/v1/devnet/invoices`, 'POST', key, { amount_msat: '1000', wallet: 'bob' });
      await json(`${base}/v1/payments`, 'POST', key, { payment_request: payout.body.payment_request, idempotency_key: 'log-1' });
      await json(`${base}/v1/balance`, 'GET', 'sk_wrong-key-in-header');
      const secret = (await sluice.records.getInvoice(unpaid.body.payment_hash))?.preimage as string;

      expect(captured.length).toBeGreaterThan(0);
      expect(captured).toContain('"service":"sluice"');
      expect(captured).not.toContain(key);
      expect(captured).not.toContain(ADMIN_KEY);
      expect(captured).not.toContain('sk_wrong-key-in-header');
      expect(captured).not.toContain(secret);
    } finally {
      await sluice.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes a payment in progress, then refuses new connections', async () => {
    const sluice = await createSluice(configFor({ SLUICE_DEVNET_LATENCY_MS: '700' }), { logger: createLogger('silent') });
    const base = await sluice.listen();
    const app = await json(`${base}/v1/apps`, 'POST', ADMIN_KEY, { name: 'drain' });
    const key = app.body.api_key as string;
    const invoice = await json(`${base}/v1/invoices`, 'POST', key, { amount_msat: '100000' });
    await json(`${base}/v1/devnet/pay`, 'POST', key, { payment_request: invoice.body.payment_request });
    const payout = await json(`${base}/v1/devnet/invoices`, 'POST', key, { amount_msat: '1000', wallet: 'bob' });

    const inProgress = json(`${base}/v1/payments`, 'POST', key, { payment_request: payout.body.payment_request, idempotency_key: 'drain-1' });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const closed = sluice.close();
    const answer = await inProgress;
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe('succeeded');
    await closed;
    await expect(fetch(`${base}/v1/health`)).rejects.toThrow();
  });
});
