import { describe, expect, it } from 'vitest';
import { createPayCallGate, payCallErrorBody } from '../../../src/paycall/gate-combined.js';
import type { CallPrice, GateRequest, PaymentScheme } from '../../../src/paycall/gate.js';
import type { Msat } from '../../../src/money/msat.js';
import { testAuthorizationScheme, testTokenScheme } from './test-scheme.js';

const price = (msat: number): CallPrice => ({ priceMsat: BigInt(msat) as Msat, appId: 'app_1', service: 'api' });
const request = (headers: GateRequest['headers'] = {}): GateRequest => ({ method: 'GET', path: '/paid/x', headers });

describe('createPayCallGate', () => {
  it('serves a price of 0 free without asking any scheme', async () => {
    const token = testTokenScheme();
    const gate = createPayCallGate([token]);
    const outcome = await gate.authorize(request({ 'test-token': 'bad' }), price(0));
    expect(outcome).toMatchObject({ kind: 'allowed', scheme: 'free', chargedMsat: 0n });
    expect(token.seen).toHaveLength(0);
  });

  it('answers 402 payment_required with every scheme challenge when no credential is sent', async () => {
    const gate = createPayCallGate([testTokenScheme(), testAuthorizationScheme()]);
    const outcome = await gate.authorize(request(), price(5000));
    expect(outcome.kind).toBe('refused');
    if (outcome.kind !== 'refused') return;
    expect(outcome.status).toBe(402);
    expect(outcome.code).toBe('payment_required');
    expect(outcome.responseHeaders).toEqual({ 'test-offer': 'price="5000", app="app_1", service="api"', 'www-authenticate': 'TESTPAY realm="test"' });
    expect(payCallErrorBody(outcome, 5000n as Msat)).toEqual({ error: { code: 'payment_required', message: outcome.message }, price_msat: '5000' });
  });

  it('hands a request with a credential to the scheme that claims it, and to that one only', async () => {
    const token = testTokenScheme();
    const auth = testAuthorizationScheme();
    const gate = createPayCallGate([token, auth]);
    expect(await gate.authorize(request({ authorization: 'TESTPAY ok' }), price(10))).toMatchObject({ kind: 'allowed', scheme: 'l402' });
    expect(await gate.authorize(request({ 'test-token': 'forged' }), price(10))).toMatchObject({ kind: 'refused', status: 401, code: 'chain_link_invalid' });
    expect(token.seen).toHaveLength(1);
    expect(auth.seen).toHaveLength(1);
  });

  it('does not take a Bearer key for a payment credential', async () => {
    const gate = createPayCallGate([testTokenScheme(), testAuthorizationScheme()]);
    expect(gate.credentialHeaders).toEqual(['test-token', 'authorization']);
    expect(gate.credentialHeadersIn(request({ authorization: 'Bearer upstream-key' }))).toEqual([]);
    expect(gate.credentialHeadersIn(request({ authorization: 'TESTPAY ok', 'test-token': 'x' }))).toEqual(['test-token', 'authorization']);
    expect(await gate.authorize(request({ authorization: 'Bearer upstream-key' }), price(10))).toMatchObject({ kind: 'refused', status: 402 });
  });

  it('merges a header two schemes both set into a list', async () => {
    const other: PaymentScheme = { ...testAuthorizationScheme(), name: 'chain', challenge: async () => ({ 'WWW-Authenticate': 'OTHER x' }) };
    const gate = createPayCallGate([other, testAuthorizationScheme()]);
    const outcome = await gate.authorize(request(), price(1));
    expect(outcome.kind === 'refused' && outcome.responseHeaders['www-authenticate']).toEqual(['OTHER x', 'TESTPAY realm="test"']);
  });

  it('never serves when a scheme throws: 503, and the error is reported', async () => {
    const errors: string[] = [];
    const broken: PaymentScheme = { ...testTokenScheme(), authorize: async () => { throw new Error('store down'); } };
    const gate = createPayCallGate([broken], { onSchemeError: (name, error) => errors.push(`${name}: ${(error as Error).message}`) });
    expect(await gate.authorize(request({ 'test-token': 'ok' }), price(1))).toMatchObject({ kind: 'refused', status: 503 });
    expect(errors).toEqual(['chain: store down']);
  });

  it('keeps the challenges that worked when one scheme cannot challenge, and answers 503 when none can', async () => {
    const failing: PaymentScheme = { ...testAuthorizationScheme(), challenge: async () => { throw new Error('lightning down'); } };
    const some = createPayCallGate([testTokenScheme(), failing]);
    expect(await some.authorize(request(), price(1))).toMatchObject({ kind: 'refused', status: 402, responseHeaders: { 'test-offer': expect.any(String) } });
    const none = createPayCallGate([failing]);
    expect(await none.authorize(request(), price(1))).toMatchObject({ kind: 'refused', status: 503, code: 'lightning_unavailable' });
  });

  it('refuses to be built without schemes or with one twice', () => {
    expect(() => createPayCallGate([])).toThrow();
    expect(() => createPayCallGate([testTokenScheme(), testTokenScheme()])).toThrow();
  });
});
