/**
 * The devnet keeps its state in <dataDir>/devnet.sqlite: keys, balances, invoices,
 * payments and settle indexes survive a close and reopen, and a killed process (SIGKILL,
 * in a child process) loses nothing that was committed. A payment in flight when the
 * process died is failed on reopen (no money moved; see payments.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SettledInvoice } from '../../src/lightning/backend.js';
import { openDevnet, RESTART_FAILURE_DETAIL, type Devnet } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';
import { balances, FEE_LIMIT } from './support.js';

let dataDir: string;
let opened: Devnet[] = [];

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-devnet-'));
});
afterEach(async () => {
  await Promise.all(opened.map((devnet) => devnet.close()));
  opened = [];
  rmSync(dataDir, { recursive: true, force: true });
});

async function open(seed?: string): Promise<Devnet> {
  const devnet = await openDevnet({ dataDir, ...(seed === undefined ? {} : { seed }) });
  opened.push(devnet);
  return devnet;
}

async function closeAll(): Promise<void> {
  await Promise.all(opened.map((devnet) => devnet.close()));
  opened = [];
}

function collect(devnet: Devnet, node: string, afterSettleIndex: string) {
  const seen: SettledInvoice[] = [];
  const watch = devnet.backendFor(node).watchInvoices({ afterSettleIndex, onSettled: async (invoice) => void seen.push(invoice) });
  return { seen, watch };
}

async function eventually(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('devnet persistence', () => {
  it('keeps keys, balances, invoices, payments and settle order across a restart', async () => {
    const first = await open();
    expect(existsSync(join(dataDir, 'devnet.sqlite'))).toBe(true);
    const pubkey = first.nodePubkey('sluice');
    const paid = await first.backendFor('sluice').createInvoice({ amountMsat: msat(10_000), description: 'one', expiryS: 3600 });
    const alsoPaid = await first.backendFor('sluice').createInvoice({ amountMsat: msat(20_000), description: 'two', expiryS: 3600 });
    const open_ = await first.backendFor('sluice').createInvoice({ amountMsat: msat(30_000), description: 'three', expiryS: 3600 });
    for (const invoice of [paid, alsoPaid]) {
      expect((await first.backendFor('alice').payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status).toBe('succeeded');
    }
    const balancesBefore = balances(first);
    const totalBefore = first.totalBalanceMsat();
    const paymentBefore = await first.backendFor('alice').lookupPayment(paid.paymentHash);
    await closeAll();

    // No seed: the random keys must come back from the file.
    const second = await open();
    expect(second.nodePubkey('sluice')).toBe(pubkey);
    expect(balances(second)).toEqual(balancesBefore);
    expect(second.totalBalanceMsat()).toBe(totalBefore);
    expect(await second.backendFor('alice').lookupPayment(paid.paymentHash)).toEqual(paymentBefore);
    expect(await second.backendFor('sluice').lookupInvoice(paid.paymentHash)).toMatchObject({ state: 'settled', settleIndex: '1' });
    expect(await second.backendFor('sluice').lookupInvoice(open_.paymentHash)).toMatchObject({ state: 'open' });

    // Watchers resume from a cursor, including settlements from before the restart.
    const fromStart = collect(second, 'sluice', '0');
    const fromOne = collect(second, 'sluice', '1');
    await eventually(() => fromStart.seen.length === 2 && fromOne.seen.length === 1);
    expect(fromStart.seen.map((invoice) => invoice.paymentHash)).toEqual([paid.paymentHash, alsoPaid.paymentHash]);
    expect(fromOne.seen.map((invoice) => invoice.settleIndex)).toEqual(['2']);

    // The open invoice is still payable, and the settle index continues.
    expect((await second.backendFor('bob').payInvoice({ paymentRequest: open_.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 })).status).toBe('succeeded');
    await eventually(() => fromStart.seen.length === 3 && fromOne.seen.length === 2);
    expect(fromStart.seen[2]).toMatchObject({ paymentHash: open_.paymentHash, settleIndex: '3', amountPaidMsat: 30_000n });
    await Promise.all([fromStart.watch.stop(), fromOne.watch.stop()]);
  });

  it('keeps each node its own settle index', async () => {
    const devnet = await open('indexes');
    const toSluice = await devnet.backendFor('sluice').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    const toBob = await devnet.backendFor('bob').createInvoice({ amountMsat: msat(1000), expiryS: 600 });
    for (const invoice of [toSluice, toBob]) {
      await devnet.backendFor('alice').payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    }
    expect((await devnet.backendFor('sluice').lookupInvoice(toSluice.paymentHash))?.settleIndex).toBe('1');
    expect((await devnet.backendFor('bob').lookupInvoice(toBob.paymentHash))?.settleIndex).toBe('1');
  });
});

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'crash-child.ts');

/** Runs crash-child.ts; `killWhen` lets the parent kill it on a line of its output. */
function runChild(mode: string, killWhen?: (message: Record<string, string>) => boolean) {
  return new Promise<{ signal: NodeJS.Signals | null; messages: Record<string, string>[]; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const messages: Record<string, string>[] = [];
    let buffered = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffered.slice(0, newline)) as Record<string, string>;
        buffered = buffered.slice(newline + 1);
        messages.push(message);
        if (killWhen?.(message)) child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (_code, signal) => resolve({ signal, messages, stderr }));
  });
}

describe('devnet after a killed process', () => {
  it('the kill-after-settle fault dies after the commit, and the payment is there on reopen', async () => {
    const result = await runChild('kill-after-settle');
    expect(result.stderr).toBe('');
    expect(result.signal).toBe('SIGKILL');
    expect(result.messages.map((message) => message['step'])).toEqual(['payout', 'invoices', 'first']);
    const { first, second } = result.messages[1] as { first: string; second: string };

    const devnet = await open('crash');
    const lookup = await devnet.backendFor('alice').lookupPayment(second);
    expect(lookup).toMatchObject({ status: 'succeeded', amountMsat: 20_000n });
    expect(await devnet.backendFor('sluice').lookupInvoice(second)).toMatchObject({ state: 'settled', amountPaidMsat: 20_000n, settleIndex: '2' });
    expect(await devnet.backendFor('alice').lookupPayment(first)).toMatchObject({ status: 'succeeded' });

    const fresh = await openDevnet({ dataDir: null, seed: 'crash' });
    expect(devnet.totalBalanceMsat()).toBe(fresh.totalBalanceMsat());
    const payoutFee = 1000n + (1000n * 100n) / 1_000_000n;
    expect(devnet.nodeBalanceMsat('sluice') - fresh.nodeBalanceMsat('sluice')).toBe(30_000n - 1_000n - payoutFee);
    await fresh.close();
  }, 60_000);

  it('a payment in flight when the process died is failed on reopen, and no money moved', async () => {
    const result = await runChild('hang-in-flight', (message) => message['step'] === 'in flight');
    expect(result.signal).toBe('SIGKILL');
    const paymentHash = result.messages[0]?.['paymentHash'] as string;

    const devnet = await open('crash');
    expect(await devnet.backendFor('alice').lookupPayment(paymentHash)).toEqual({
      status: 'failed',
      paymentHash,
      reason: 'error',
      detail: RESTART_FAILURE_DETAIL,
    });
    expect(await devnet.backendFor('sluice').lookupInvoice(paymentHash)).toMatchObject({ state: 'open' });
    const fresh = await openDevnet({ dataDir: null, seed: 'crash' });
    expect(balances(devnet)).toEqual(balances(fresh));
    await fresh.close();
    // The invoice can still be paid.
    const invoice = await devnet.backendFor('sluice').lookupInvoice(paymentHash);
    const retry = await devnet.backendFor('alice').payInvoice({ paymentRequest: invoice!.paymentRequest, feeLimitMsat: FEE_LIMIT, timeoutS: 30 });
    expect(retry.status).toBe('succeeded');
  }, 60_000);
});
