// The SDK's LND REST wallet (lndRestWallet in @sluice/client) against the LND stand-in,
// which checks every path and field against LND's REST description and forwards to the
// devnet node `sluice`: it pays invoices (and refuses a second payment) and makes invoices
// that another node pays.
import { createHash } from 'node:crypto';
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lndRestWallet, SluiceError, type FetchFunction } from '@sluice/client';
import { msat } from '../../src/money/msat.js';
import { openLndOverDevnet, type LndOverDevnet } from './support.js';

/** fetch over node:https that trusts exactly the stand-in's certificate (what a Node app passes in). */
function fetchTrusting(certPem: string): FetchFunction {
  return (input, init) =>
    new Promise((resolve, reject) => {
      const request = https.request(input, {
        method: init?.method ?? 'GET',
        headers: init?.headers as Record<string, string>,
        ca: certPem,
        checkServerIdentity: () => undefined,
      }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: response.statusCode ?? 500 })));
        response.on('error', reject);
      });
      request.on('error', reject);
      if (typeof init?.body === 'string') request.write(init.body);
      request.end();
    });
}

describe('SDK lndRestWallet against the LND stand-in', () => {
  let setup: LndOverDevnet;
  beforeAll(async () => {
    setup = await openLndOverDevnet('sdk-wallet');
  });
  afterAll(async () => setup?.close());

  const wallet = () => lndRestWallet({ restUrl: setup.standin.url, macaroonHex: setup.standin.macaroonHex, fetch: fetchTrusting(setup.standin.certPem), timeoutS: 30 });

  it('pays an invoice and returns its preimage; a second payment is refused', async () => {
    const bob = setup.devnet.backendFor('bob');
    const invoice = await bob.createInvoice({ amountMsat: msat(5000n), description: 'sdk wallet test', expiryS: 600 });
    const before = setup.devnet.nodeBalanceMsat('bob');
    const payerBefore = setup.devnet.nodeBalanceMsat('sluice');
    const { preimage, feeMsat } = await wallet().payInvoice(invoice.paymentRequest);
    expect(createHash('sha256').update(Buffer.from(preimage, 'hex')).digest('hex')).toBe(invoice.paymentHash);
    expect(setup.devnet.nodeBalanceMsat('bob')).toBe(before + 5000n);
    // The routing fee LND reports (fee_msat) is what the paying node paid above the amount.
    expect(feeMsat).toBe(payerBefore - setup.devnet.nodeBalanceMsat('sluice') - 5000n);
    const again = await wallet().payInvoice(invoice.paymentRequest).catch((error: unknown) => error);
    expect(again).toBeInstanceOf(SluiceError);
    expect(setup.devnet.nodeBalanceMsat('bob')).toBe(before + 5000n);
  });

  it('makes an invoice that another node pays', async () => {
    const { paymentRequest } = await wallet().makeInvoice!(7000n, 'refund');
    const outcome = await setup.devnet.backendFor('alice').payInvoice({ paymentRequest, feeLimitMsat: msat(100_000n), timeoutS: 30 });
    expect(outcome.status).toBe('succeeded');
    if (outcome.status === 'succeeded') expect(outcome.amountMsat).toBe(7000n);
  });

  it('reports a refused macaroon as an error, not a payment', async () => {
    const bad = lndRestWallet({ restUrl: setup.standin.url, macaroonHex: '00'.repeat(32), fetch: fetchTrusting(setup.standin.certPem) });
    const invoice = await setup.devnet.backendFor('carol').createInvoice({ amountMsat: msat(1000n), description: 'x', expiryS: 600 });
    await expect(bad.payInvoice(invoice.paymentRequest)).rejects.toBeInstanceOf(SluiceError);
  });
});
