/**
 * TEST-ONLY payment schemes for the delivery tests (middleware and gateway mechanics).
 * They are not Sluice's schemes and move no money: they let a test say "this request is
 * paid", "this one is refused" without a devnet purchase. The end-to-end tests use the
 * real chain and L402 schemes.
 *
 * - testTokenScheme ('chain' slot): header `test-token: ok` is allowed (balance header
 *   falls by one per call), `test-token: <anything else>` is refused 401.
 * - testAuthorizationScheme ('l402' slot): `Authorization: TESTPAY ok` is allowed; other
 *   Authorization values (e.g. Bearer) are not claimed, so they are never stripped.
 */
import type { CallPrice, GateOutcome, GateRequest, PaymentScheme } from '../../../src/paycall/gate.js';

export interface TestScheme extends PaymentScheme {
  /** Every call the scheme judged: what it saw. */
  readonly seen: { path: string; price: CallPrice }[];
}

export function testTokenScheme(options: { balance?: number } = {}): TestScheme {
  let balance = options.balance ?? 100;
  const seen: TestScheme['seen'] = [];
  return {
    name: 'chain',
    credentialHeaders: ['test-token'],
    seen,
    claims: (request) => request.headers['test-token'] !== undefined,
    async authorize(request: GateRequest, price: CallPrice): Promise<GateOutcome> {
      seen.push({ path: request.path, price });
      if (request.headers['test-token'] !== 'ok') {
        return { kind: 'refused', status: 401, code: 'chain_link_invalid', message: 'test token refused', responseHeaders: {} };
      }
      balance -= 1;
      return { kind: 'allowed', scheme: 'chain', chargedMsat: price.priceMsat, responseHeaders: { 'test-balance': String(balance) } };
    },
    async challenge(_request, price) {
      return { 'test-offer': `price="${price.priceMsat}", app="${price.appId}", service="${price.service}"` };
    },
  };
}

export function testAuthorizationScheme(): TestScheme {
  const seen: TestScheme['seen'] = [];
  const credential = (request: GateRequest): string | null => {
    const value = request.headers.authorization;
    return typeof value === 'string' && value.startsWith('TESTPAY ') ? value.slice('TESTPAY '.length) : null;
  };
  return {
    name: 'l402',
    credentialHeaders: ['authorization'],
    seen,
    claims: (request) => credential(request) !== null,
    async authorize(request, price) {
      seen.push({ path: request.path, price });
      if (credential(request) !== 'ok') return { kind: 'refused', status: 401, code: 'unauthorized', message: 'test authorization refused', responseHeaders: {} };
      return { kind: 'allowed', scheme: 'l402', chargedMsat: price.priceMsat, responseHeaders: {} };
    },
    async challenge() {
      return { 'www-authenticate': 'TESTPAY realm="test"' };
    },
  };
}
