/**
 * The LND stand-in holds clients to LND's REST description: a request LND would not
 * understand is answered with an error and recorded, so a client that leaned on an
 * undescribed path, parameter or field would fail its tests.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDevnet, type Devnet } from '../../src/lightning/devnet/index.js';
import { startLndStandin, type LndStandin } from '../support/lnd-standin.js';
import { rawRequest } from './support.js';

describe('LND stand-in strictness', () => {
  let devnet: Devnet;
  let standin: LndStandin;

  beforeAll(async () => {
    devnet = await openDevnet({ dataDir: null, seed: 'lnd-standin' });
    standin = await startLndStandin({ backend: devnet.backendFor('sluice') });
  });
  beforeEach(() => {
    standin.violations.length = 0;
  });
  afterAll(async () => {
    await standin.close();
    await devnet.close();
  });

  const rows: Array<{ description: string; method: string; path: string; body?: unknown; status: number; violation: RegExp }> = [
    { description: 'a path LND does not have', method: 'GET', path: '/v1/invoice_stats', status: 404, violation: /LND has no such path/ },
    { description: 'an undescribed query parameter', method: 'GET', path: '/v1/invoices/subscribe?settle_index=1&from=2', status: 400, violation: /query parameter from is not described/ },
    { description: 'an undescribed body field', method: 'POST', path: '/v1/invoices', body: { value_msat: '1000', amount_msat: '1000' }, status: 400, violation: /field "amount_msat" is not described/ },
    { description: 'a badly typed body field', method: 'POST', path: '/v2/router/send', body: { timeout_seconds: '30' }, status: 400, violation: /expected an integer/ },
    { description: 'a described field the stand-in does not emulate', method: 'POST', path: '/v1/invoices', body: { value_msat: '1000', private: true }, status: 501, violation: /request field private is not emulated/ },
    { description: 'a described call the stand-in does not emulate', method: 'GET', path: '/v1/balance/channels', status: 501, violation: /Lightning_ChannelBalance .* not emulated/ },
  ];

  it.each(rows)('answers and records $description', async ({ method, path, body, status, violation }) => {
    const response = await rawRequest(standin, method, path, body === undefined ? {} : { body });
    expect(response.status).toBe(status);
    expect(standin.violations.length).toBeGreaterThan(0);
    expect(standin.violations.join('\n')).toMatch(violation);
  });

  it('answers a described request without recording anything', async () => {
    const response = await rawRequest(standin, 'POST', '/v1/invoices', { body: { value_msat: '1500', memo: 'ok', expiry: '60' } });
    expect(response.status).toBe(200);
    expect(Object.keys(JSON.parse(response.text)).sort()).toEqual(['add_index', 'payment_addr', 'payment_request', 'r_hash']);
    expect(standin.violations).toEqual([]);
  });

  it('answers an unknown invoice with NotFound as LND does', async () => {
    const response = await rawRequest(standin, 'GET', `/v1/invoice/${'ab'.repeat(32)}`);
    expect(response.status).toBe(404);
    expect(JSON.parse(response.text)).toEqual({ code: 5, message: 'unable to locate invoice', details: [] });
    const track = await rawRequest(standin, 'GET', `/v2/router/track/${Buffer.from('ab'.repeat(32), 'hex').toString('base64url')}=`);
    expect(track.status).toBe(404);
    expect(JSON.parse(track.text)).toEqual({ error: { code: 5, message: "payment isn't initiated", details: [] } });
    expect(standin.violations).toEqual([]);
  });
});
