/** Invoice watchers and closing: redelivery after a failing handler, order under load, clean shutdown. */
import { afterEach, describe, expect, it } from 'vitest';
import type { SettledInvoice } from '../../src/lightning/backend.js';
import type { Devnet } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';
import { FEE_LIMIT, openTestDevnet } from './support.js';

let opened: Devnet | null = null;
async function open(options: Parameters<typeof openTestDevnet>[0] = {}) {
  const result = await openTestDevnet(options);
  opened = result.devnet;
  return result;
}
afterEach(async () => {
  await opened?.close();
  opened = null;
});

async function eventually(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function payNewInvoice(devnet: Devnet, amountMsat: number): Promise<string> {
  const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(amountMsat), expiryS: 600 });
  const outcome = await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
  expect(outcome.status).toBe('succeeded');
  return created.paymentHash;
}

describe('devnet invoice watchers', () => {
  it('offers an invoice again after its handler throws, and reports the error', async () => {
    const { devnet } = await open();
    const hash = await payNewInvoice(devnet, 1000);
    const errors: unknown[] = [];
    const handled: string[] = [];
    let attempts = 0;
    const watch = devnet.backendFor('sluice').watchInvoices({
      afterSettleIndex: '0',
      onSettled: async (invoice) => {
        attempts += 1;
        if (attempts === 1) throw new Error('handler hiccup');
        handled.push(invoice.paymentHash);
      },
      onError: (error) => errors.push(error),
    });
    await eventually(() => handled.length === 1);
    expect(handled).toEqual([hash]);
    expect(errors).toHaveLength(1);
    await watch.stop();
  });

  it('delivers many settlements once each, in settle order, one handler at a time', async () => {
    const { devnet } = await open();
    const seen: SettledInvoice[] = [];
    let running = 0;
    let mostRunning = 0;
    const watch = devnet.backendFor('sluice').watchInvoices({
      afterSettleIndex: '0',
      onSettled: async (invoice) => {
        running += 1;
        mostRunning = Math.max(mostRunning, running);
        await new Promise((resolve) => setImmediate(resolve));
        seen.push(invoice);
        running -= 1;
      },
    });
    const hashes: string[] = [];
    for (let index = 0; index < 150; index++) hashes.push(await payNewInvoice(devnet, 1000 + index));
    await eventually(() => seen.length === 150);
    expect(mostRunning).toBe(1);
    expect(seen.map((invoice) => invoice.paymentHash)).toEqual(hashes);
    expect(seen.map((invoice) => invoice.settleIndex)).toEqual(hashes.map((_, index) => String(index + 1)));
    await watch.stop();
  });

  it('refuses a cursor that is not a decimal index', async () => {
    const { devnet } = await open();
    expect(() => devnet.backendFor('sluice').watchInvoices({ afterSettleIndex: '-1', onSettled: async () => {} })).toThrow(RangeError);
  });

  it('stops the watchers of a backend view on its close(), and the devnet stays usable', async () => {
    const { devnet } = await open();
    const view = devnet.backendFor('sluice');
    const seen: string[] = [];
    view.watchInvoices({ afterSettleIndex: '0', onSettled: async (invoice) => void seen.push(invoice.paymentHash) });
    await view.close();
    await payNewInvoice(devnet, 1000);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(seen).toEqual([]);
  });
});

describe('closing the devnet', () => {
  it('stops watchers and fails payments still waiting on latency, without moving money', async () => {
    const { devnet } = await open({ faults: { latencyMs: 60_000 } });
    const watch = devnet.backendFor('sluice').watchInvoices({ afterSettleIndex: '0', onSettled: async () => {} });
    const created = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    const pending = devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 120 });
    await devnet.close();
    expect(await pending).toMatchObject({ status: 'failed', reason: 'error' });
    await watch.stop();
    // After close, payments answer without rejecting.
    expect(await devnet.backendFor('alice').payInvoice({ paymentRequest: created.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).toMatchObject({
      status: 'failed',
      reason: 'error',
    });
  });
});
