// Two Sluice processes on one PostgreSQL database: they share the L402 secret (a token
// minted by one verifies on the other) and the budgets (a one-call token racing on both is
// served once).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { msat } from '../../../src/money/msat.js';
import type { CallPrice, GateRequest } from '../../../src/paycall/gate.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';

const available = await postgresAvailable();

describe.skipIf(!available)('L402 across two Sluice processes sharing PostgreSQL', () => {
  let database: TestDatabase;
  let first: TestSluice;
  let second: TestSluice;
  let price: CallPrice;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_l402_shared');
    first = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
    second = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
    price = { priceMsat: msat(2000n), appId: (await first.createApp('shared')).id, service: 'api' };
  });
  afterAll(async () => {
    await first?.close();
    await second?.close();
    await database?.drop();
  });

  it('a token minted by one process is served once, whichever processes race for it', async () => {
    const bare: GateRequest = { method: 'GET', path: '/paid', headers: {} };
    const challenge = await first.sluice.l402.scheme.challenge(bare, price);
    const line = (challenge['www-authenticate'] as string[])[0] as string;
    const token = /token="([^"]+)"/.exec(line)![1] as string;
    const invoice = /invoice="([^"]+)"/.exec(line)![1] as string;
    const paid = await first.sluice.devnet!.backendFor('alice').payInvoice({ paymentRequest: invoice, feeLimitMsat: msat(100_000n), timeoutS: 30 });
    if (paid.status !== 'succeeded') throw new Error(`payment ${paid.status}`);
    const request: GateRequest = { ...bare, headers: { authorization: `L402 ${token}:${paid.preimage}` } };
    const outcomes = await Promise.all([
      first.sluice.l402.scheme.authorize(request, price),
      second.sluice.l402.scheme.authorize(request, price),
      second.sluice.l402.scheme.authorize(request, price),
      first.sluice.l402.scheme.authorize(request, price),
    ]);
    expect(outcomes.filter((outcome) => outcome.kind === 'allowed')).toHaveLength(1);
    for (const outcome of outcomes) {
      if (outcome.kind === 'refused') expect(outcome.code).toBe('l402_budget_exhausted');
    }
  });
});
