/**
 * The two locks on the link to LND: the pinned TLS certificate and the macaroon. Each
 * refusal must be a clear error (or, for payments, an `unknown` outcome), never a
 * silent success against the wrong server.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDevnet, type Devnet } from '../../src/lightning/devnet/index.js';
import { createLndBackend, LndError } from '../../src/lightning/lnd/index.js';
import { msat } from '../../src/money/msat.js';
import { generateSelfSignedTls, startLndStandin, type LndStandin } from '../support/lnd-standin.js';
import { rawRequest } from './support.js';

describe('TLS pinning and the macaroon', () => {
  let devnet: Devnet;
  let standin: LndStandin;
  const extraStandins: LndStandin[] = [];

  beforeAll(async () => {
    devnet = await openDevnet({ dataDir: null, seed: 'lnd-connection' });
    standin = await startLndStandin({ backend: devnet.backendFor('sluice') });
  });

  afterAll(async () => {
    for (const other of extraStandins) await other.close();
    await standin.close();
    await devnet.close();
  });

  const client = (overrides: { tlsCert?: string; macaroonHex?: string; restUrl?: string } = {}) =>
    createLndBackend({ restUrl: standin.url, macaroonHex: standin.macaroonHex, tlsCert: standin.certPem, timeoutMs: 5_000, ...overrides });

  it('talks to the server whose certificate is pinned', async () => {
    const lnd = client();
    try {
      expect(await lnd.getInfo()).toMatchObject({ backend: 'lnd', network: 'regtest', pubkey: devnet.nodePubkey('sluice') });
    } finally {
      await lnd.close();
    }
  });

  it('refuses a server with another certificate, and a payment through it is unknown, not sent', async () => {
    const impostor = await generateSelfSignedTls({ commonName: 'impostor' });
    const lnd = client({ tlsCert: impostor.certPem });
    try {
      const error: unknown = await lnd.getInfo().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(LndError);
      expect(error).toMatchObject({ kind: 'tls_pin_mismatch' });
      expect((error as Error).message).toMatch(/LND_TLS_CERT_PATH/);
      const invoice = await devnet.backendFor('bob').createInvoice({ amountMsat: msat(1_000), description: 'x', expiryS: 600 });
      const outcome = await lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: msat(1_000), timeoutS: 5 });
      expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash });
      expect(await devnet.backendFor('sluice').lookupPayment(invoice.paymentHash)).toMatchObject({ status: 'not_found' });
    } finally {
      await lnd.close();
    }
  });

  it('refuses a certificate issued by the pinned one: only the pinned certificate itself is trusted', async () => {
    const pinned = await generateSelfSignedTls({ commonName: 'pinned' });
    const issued = await generateSelfSignedTls({ commonName: 'issued by pinned', signer: pinned });
    const other = await startLndStandin({ backend: devnet.backendFor('sluice'), tls: issued });
    extraStandins.push(other);
    const lnd = createLndBackend({ restUrl: other.url, macaroonHex: other.macaroonHex, tlsCert: pinned.certPem });
    try {
      await expect(lnd.getInfo()).rejects.toMatchObject({ kind: 'tls_pin_mismatch' });
    } finally {
      await lnd.close();
    }
  });

  it('does not care which host name the pinned certificate names (LND’s often names none we dial)', async () => {
    const elsewhere = await generateSelfSignedTls({ commonName: 'lnd', dnsNames: ['lnd.internal'], ipAddresses: ['10.9.8.7'] });
    const other = await startLndStandin({ backend: devnet.backendFor('sluice'), tls: elsewhere });
    extraStandins.push(other);
    const lnd = createLndBackend({ restUrl: other.url, macaroonHex: other.macaroonHex, tlsCert: elsewhere.certPem });
    try {
      expect((await lnd.getInfo()).pubkey).toBe(devnet.nodePubkey('sluice'));
    } finally {
      await lnd.close();
    }
  });

  it('a wrong macaroon is a clear error that does not repeat the macaroon', async () => {
    const wrongMacaroon = randomBytes(40).toString('hex');
    const lnd = client({ macaroonHex: wrongMacaroon });
    try {
      const error: unknown = await lnd.createInvoice({ amountMsat: msat(1_000), description: 'x', expiryS: 60 }).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ kind: 'macaroon_rejected' });
      const message = (error as Error).message;
      expect(message).toMatch(/LND rejected the macaroon \(verification failed/);
      expect(message).toMatch(/LND_MACAROON_PATH/);
      expect(message).not.toContain(wrongMacaroon);
      expect(message).not.toContain(standin.macaroonHex);
    } finally {
      await lnd.close();
    }
  });

  it('a payment with a wrong macaroon is unknown, and lookupPayment later tells it was never sent', async () => {
    const lnd = client({ macaroonHex: randomBytes(40).toString('hex') });
    const good = client();
    try {
      const invoice = await devnet.backendFor('bob').createInvoice({ amountMsat: msat(2_000), description: 'y', expiryS: 600 });
      const outcome = await lnd.payInvoice({ paymentRequest: invoice.paymentRequest, feeLimitMsat: msat(1_000), timeoutS: 5 });
      expect(outcome).toMatchObject({ status: 'unknown', paymentHash: invoice.paymentHash });
      expect(outcome.status === 'unknown' && outcome.detail).toMatch(/macaroon/);
      expect(await good.lookupPayment(invoice.paymentHash)).toEqual({ status: 'not_found', paymentHash: invoice.paymentHash });
    } finally {
      await lnd.close();
      await good.close();
    }
  });

  it('the stand-in refuses a request without the macaroon header as LND does', async () => {
    const unary = await rawRequest(standin, 'GET', '/v1/getinfo', { macaroonHex: null });
    expect(unary.status).toBe(500);
    expect(JSON.parse(unary.text)).toEqual({ code: 2, message: 'expected 1 macaroon, got 0', details: [] });
    const streamed = await rawRequest(standin, 'GET', '/v1/invoices/subscribe', { macaroonHex: null });
    expect(streamed.status).toBe(500);
    expect(JSON.parse(streamed.text)).toEqual({ error: { code: 2, message: 'expected 1 macaroon, got 0', details: [] } });
    expect(standin.violations).toEqual([]);
  });

  it('refuses to start with a configuration it cannot use', () => {
    const base = { restUrl: standin.url, macaroonHex: standin.macaroonHex, tlsCert: standin.certPem };
    expect(() => createLndBackend({ ...base, restUrl: 'http://127.0.0.1:8080' })).toThrow(/InvalidRestUrl/);
    expect(() => createLndBackend({ ...base, macaroonHex: 'xyz' })).toThrow(/InvalidMacaroon/);
    expect(() => createLndBackend({ ...base, macaroonHex: undefined })).toThrow(/MissingMacaroon/);
    expect(() => createLndBackend({ ...base, macaroon: Buffer.from('02', 'hex') })).toThrow(/InvalidMacaroon/);
    expect(() => createLndBackend({ ...base, tlsCert: 'not a certificate' })).toThrow(/InvalidTlsCert/);
    expect(() => createLndBackend({ ...base, timeoutMs: 0 })).toThrow(/InvalidTimeout/);
  });
});
