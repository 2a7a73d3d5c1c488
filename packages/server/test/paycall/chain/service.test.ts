// The chain service and its `chain` scheme on a real Sluice (devnet, manual clock), as a
// contract suite run on SQLite AND PostgreSQL: purchase paid by a devnet wallet, calls of
// 1 and k steps, every refusal of the wire contract (state unchanged), racing requests,
// a restart on the same data, expiry, refunds exact to the msat, and the ledger
// invariants (chain account = unused steps x step; app revenue = index x step; sum zero).
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../../src/clock.js';
import { msat } from '../../../src/money/msat.js';
import { buildChain, createChainScheme, createChainService, createPostgresChainStore, formatChainHeader, type ChainService } from '../../../src/paycall/chain/index.js';
import { applyOpsInTransaction as applyPostgresOps } from '../../../src/ledger/postgres/store.js';
import { createLogger } from '../../../src/logger.js';
import type { CallPrice, GateRequest } from '../../../src/paycall/gate.js';
import { startTestSluice, type TestSluice } from '../../support/sluice.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../../support/postgres.js';

const usePostgres = await postgresAvailable();
const BUY_URL = 'http://sluice.test/v1/paycall/chains';

for (const store of ['sqlite', 'postgres'] as const) {
describe.skipIf(store === 'postgres' && !usePostgres)(`hash-chain tokens on ${store}`, () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let database: TestDatabase | null = null;
  let app: { id: string; apiKey: string };
  let other: { id: string; apiKey: string };

  const start = async (dataDir?: string) => {
    t = await startTestSluice({ clock, ...(dataDir ? { dataDir } : {}), env: database ? { SLUICE_DATABASE_URL: database.url } : {} });
  };
  beforeAll(async () => {
    database = store === 'postgres' ? await createTestDatabase('sluice_chain') : null;
    await start();
    app = await t.createApp('api');
    other = await t.createApp('other api');
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  const chains = (): ChainService => t.sluice.chains;
  /** A balance once every spent step is settled (chains pay their apps in sweeps). */
  const balance = async (accountId: string): Promise<bigint> => {
    await t.sluice.chains.settleSpent();
    const account = await t.sluice.ledger.getAccount(accountId);
    return account ? account.creditsPostedMsat - account.debitsPostedMsat : 0n;
  };

  /** Activation follows the invoice's settlement asynchronously (one status write). */
  const waitActive = async (id: string) => {
    for (let i = 0; i < 200 && (await chains().get(id))?.status === 'pending'; i += 1) await new Promise((r) => setTimeout(r, 5));
  };

  /** Buys a chain over REST and has the devnet wallet alice pay it. */
  async function buy(steps: number, options: { pay?: boolean; appId?: string } = {}) {
    const seed = randomBytes(32);
    const links = buildChain(seed, steps);
    const bought = await t.call('POST', '/v1/paycall/chains', {
      key: null,
      body: { app_id: options.appId ?? app.id, anchor: (links[0] as Buffer).toString('hex'), steps },
    });
    expect(bought.status, JSON.stringify(bought.body)).toBe(201);
    if (options.pay !== false) {
      const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } });
      expect(paid.status, JSON.stringify(paid.body)).toBe(200);
      await waitActive(bought.body.chain_id);
    }
    return { id: bought.body.chain_id as string, links, body: bought.body };
  }

  const price = (priceMsat: bigint, appId = app.id): CallPrice => ({ priceMsat: msat(priceMsat), appId, service: 'api' });
  const request = (header: string | undefined): GateRequest => ({ method: 'GET', path: '/paid', headers: header === undefined ? {} : { 'sluice-chain': header } });
  const spend = (id: string, index: number, link: Buffer, priceMsat = 1000n) => chains().spend(id, index, link, { appId: app.id, priceMsat: msat(priceMsat) });

  it('names chains in the order they were bought', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      ids.push((await buy(10, { pay: false })).id);
      clock.advanceMs(1);
    }
    expect([...ids].sort()).toEqual(ids);
  });

  it('sells a chain for steps x step price; it is pending until paid, then active with the money on its own account', async () => {
    const appBefore = await balance(`app:${app.id}`);
    const { id, links, body } = await buy(100, { pay: false });
    expect(body).toMatchObject({
      app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 100, step_msat: '1000', amount_msat: '100000',
      status: 'pending', index: 0, remaining_steps: 100, remaining_msat: '100000',
    });
    // The creation time, then 96 random bits (ADR 0020, as stream ids).
    expect(body.chain_id).toBe(`ch_${Math.floor(clock.now()).toString(16).padStart(12, '0')}${(body.chain_id as string).slice(15)}`);
    expect(body.chain_id).toMatch(/^ch_[0-9a-f]{12}[A-Za-z0-9_-]{16}$/);
    expect(body.expires_at).toBe(Math.floor(clock.now() / 1000) + 2_592_000);
    expect(body.invoice.payment_request).toMatch(/^lnbcrt1/);
    expect(await spend(id, 1, links[1] as Buffer)).toMatchObject({ ok: false, error: 'Unpaid' });

    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: body.invoice.payment_request, wallet: 'alice' } });
    expect(paid.status).toBe(200);
    await waitActive(id);
    const got = await t.call('GET', `/v1/paycall/chains/${id}`, { key: null });
    expect(got.body).toMatchObject({ status: 'active', index: 0, remaining_msat: '100000' });
    expect(await balance(`chain:${id}`)).toBe(100_000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore);
  });

  it('accepts each next link once, k steps for a pricier call, and pays the app exactly', async () => {
    const { id, links } = await buy(50);
    const appBefore = await balance(`app:${app.id}`);
    const scheme = createChainScheme(chains(), { buyUrl: BUY_URL });
    const one = await scheme.authorize(request(formatChainHeader({ chainId: id, index: 1, link: links[1] as Buffer })), price(1000n));
    expect(one).toEqual({ kind: 'allowed', scheme: 'chain', chargedMsat: 1000n, responseHeaders: { 'sluice-chain-balance': 'steps=49; msat=49000; index=1' } });
    // 2,500 msat at 1,000 a step: ceil = 3 steps, so the call reveals w_4.
    const three = await scheme.authorize(request(formatChainHeader({ chainId: id, index: 4, link: links[4] as Buffer })), price(2500n));
    expect(three).toMatchObject({ kind: 'allowed', chargedMsat: 3000n, responseHeaders: { 'sluice-chain-balance': 'steps=46; msat=46000; index=4' } });
    expect(await balance(`chain:${id}`)).toBe(46_000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 4000n);
    expect((await chains().get(id))?.index).toBe(4);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('verify judges a link as spend would, and spends nothing', async () => {
    const { id, links } = await buy(10);
    const call = { appId: app.id, priceMsat: msat(1000n) };
    const forged = Buffer.from(links[1] as Buffer);
    forged[0] = (forged[0] as number) ^ 1;
    expect(chains().verify(id, 1, forged, call)).toMatchObject({ ok: false, error: 'Invalid' });
    expect(chains().verify(id, 2, links[2] as Buffer, call)).toMatchObject({ ok: false, error: 'Skipped' });
    expect(chains().verify(id, 1, links[1] as Buffer, { appId: other.id, priceMsat: msat(1000n) })).toMatchObject({ ok: false, error: 'Unknown' });
    expect(chains().verify('ch_notheldhere', 1, links[1] as Buffer, call)).toBeNull();
    // Verified twice, still unspent: the same link is then accepted once.
    for (let i = 0; i < 2; i += 1) expect(chains().verify(id, 1, links[1] as Buffer, call)).toEqual({ ok: true, index: 1, steps: 1, remainingSteps: 9, stepMsat: 1000n });
    expect((await chains().get(id))?.index).toBe(0);
    expect(await balance(`chain:${id}`)).toBe(10_000n);
    expect(await spend(id, 1, links[1] as Buffer)).toMatchObject({ ok: true, index: 1 });
    expect(chains().verify(id, 1, links[1] as Buffer, call)).toMatchObject({ ok: false, error: 'Replayed' });
  });

  it('refuses forged, replayed, out-of-order, skipped, short, malformed and foreign links, changing nothing', async () => {
    const { id, links } = await buy(10);
    expect(await spend(id, 1, links[1] as Buffer)).toMatchObject({ ok: true, index: 1 });
    const forged = Buffer.from(links[2] as Buffer);
    forged[31] = (forged[31] as number) ^ 0x80;
    const scheme = createChainScheme(chains(), { buyUrl: BUY_URL });
    const rows: { description: string; header: string; price?: bigint; status: number; code: string }[] = [
      { description: 'forged link', header: formatChainHeader({ chainId: id, index: 2, link: forged }), status: 401, code: 'chain_link_invalid' },
      { description: 'a link of another chain', header: formatChainHeader({ chainId: id, index: 2, link: randomBytes(32) }), status: 401, code: 'chain_link_invalid' },
      { description: 'replayed link', header: formatChainHeader({ chainId: id, index: 1, link: links[1] as Buffer }), status: 401, code: 'chain_link_replayed' },
      { description: 'an older link', header: formatChainHeader({ chainId: id, index: 1, link: links[0] as Buffer }), status: 401, code: 'chain_link_replayed' },
      { description: 'out of order (w_3 before w_2)', header: formatChainHeader({ chainId: id, index: 3, link: links[3] as Buffer }), status: 401, code: 'chain_link_skipped' },
      { description: 'skipped ahead', header: formatChainHeader({ chainId: id, index: 9, link: links[9] as Buffer }), status: 401, code: 'chain_link_skipped' },
      { description: 'short: 1 step for a 2-step call', header: formatChainHeader({ chainId: id, index: 2, link: links[2] as Buffer }), price: 2000n, status: 402, code: 'chain_link_short' },
      { description: 'more steps than left', header: formatChainHeader({ chainId: id, index: 10, link: links[10] as Buffer }), price: 10_000n, status: 402, code: 'chain_exhausted' },
      { description: 'malformed', header: `${id} 2 ${(links[2] as Buffer).toString('hex').toUpperCase()}`, status: 401, code: 'chain_malformed' },
      { description: 'garbage', header: 'hello', status: 401, code: 'chain_malformed' },
      { description: 'unknown chain', header: formatChainHeader({ chainId: 'ch_nosuchchain', index: 2, link: links[2] as Buffer }), status: 401, code: 'chain_unknown' },
    ];
    for (const row of rows) {
      const outcome = await scheme.authorize(request(row.header), price(row.price ?? 1000n));
      expect(outcome, row.description).toMatchObject({ kind: 'refused', status: row.status, code: row.code });
      if (row.status === 402 && outcome.kind === 'refused') expect(outcome.responseHeaders['sluice-chain-offer'], row.description).toContain('buy="http://sluice.test');
    }
    // A chain pays only its own app.
    expect(await scheme.authorize(request(formatChainHeader({ chainId: id, index: 2, link: links[2] as Buffer })), price(1000n, other.id)))
      .toMatchObject({ kind: 'refused', code: 'chain_unknown' });
    expect(await balance(`chain:${id}`)).toBe(9000n);
    // Nothing moved: the honest next call still works, and the out-of-order one after it.
    expect(await spend(id, 2, links[2] as Buffer)).toMatchObject({ ok: true, index: 2, remainingSteps: 8 });
    expect(await spend(id, 3, links[3] as Buffer)).toMatchObject({ ok: true, index: 3 });
  });

  it('serves exactly one of two (or twenty) requests racing with the same link', async () => {
    const { id, links } = await buy(10);
    const results = await Promise.all(Array.from({ length: 20 }, () => spend(id, 1, links[1] as Buffer)));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.error === 'Replayed')).toBe(true);
    // Racing distinct next links of many chains: all accepted, in one or a few commits.
    const many = await Promise.all(Array.from({ length: 8 }, () => buy(5)));
    const spent = await Promise.all(many.map(({ id: chainId, links: chainLinks }) => spend(chainId, 1, chainLinks[1] as Buffer)));
    expect(spent.every((r) => r.ok)).toBe(true);
    expect(await balance(`chain:${id}`)).toBe(9000n);
  });

  it('a commit that fails refuses its calls, spends nothing, and the same link works afterwards', async () => {
    const { id, links } = await buy(10);
    expect(await spend(id, 2, links[2] as Buffer, 2000n)).toMatchObject({ ok: true });
    // Make the database refuse this chain's index 3 and beyond (a stand-in for a full disk).
    const inject = store === 'sqlite'
      ? (() => {
          const db = new Database(path.join(t.dataDir, 'sluice.sqlite'));
          db.exec(`CREATE TRIGGER chain_fault BEFORE UPDATE ON paycall_chains WHEN NEW.id = '${id}' AND NEW.current_index >= 3 BEGIN SELECT RAISE(ABORT, 'injected fault'); END`);
          return async () => {
            db.exec('DROP TRIGGER chain_fault');
            db.close();
          };
        })()
      : await (async () => {
          const sql = (database as TestDatabase).sql;
          await sql.unsafe(`ALTER TABLE paycall_chains ADD CONSTRAINT chain_fault CHECK (id <> '${id}' OR current_index < 3) NOT VALID`);
          return async () => void (await sql.unsafe('ALTER TABLE paycall_chains DROP CONSTRAINT chain_fault'));
        })();
    const [first, second] = await Promise.all([spend(id, 3, links[3] as Buffer), spend(id, 4, links[4] as Buffer)]);
    expect(first).toMatchObject({ ok: false, error: 'Overloaded' });
    // The second call built on the first, which never became durable: refused too.
    expect(second.ok).toBe(false);
    expect(await balance(`chain:${id}`)).toBe(8000n);
    expect((await chains().get(id))?.index).toBe(2);
    await inject();
    expect(await spend(id, 3, links[3] as Buffer)).toMatchObject({ ok: true, index: 3, remainingSteps: 7 });
    expect(await balance(`chain:${id}`)).toBe(7000n);
  });

  it('prices steps below one satoshi exactly', async () => {
    chains().setStepMsat(other.id, msat(250n));
    const { id, links, body } = await buy(7, { appId: other.id });
    expect(body).toMatchObject({ step_msat: '250', amount_msat: '1750' });
    const before = await balance(`app:${other.id}`);
    // 600 msat at 250 a step: 3 steps (750 msat), rounded against the caller.
    expect(await chains().spend(id, 3, links[3] as Buffer, { appId: other.id, priceMsat: msat(600n) })).toMatchObject({ ok: true, steps: 3, remainingSteps: 4 });
    expect(await balance(`app:${other.id}`)).toBe(before + 750n);
    expect(await balance(`chain:${id}`)).toBe(1000n);
  });

  it('refuses calls after expiry, but still refunds an expired chain exactly', async () => {
    const { id, links } = await buy(20);
    expect(await spend(id, 1, links[1] as Buffer)).toMatchObject({ ok: true });
    clock.advanceMs(2_592_000 * 1000);
    expect(await spend(id, 2, links[2] as Buffer)).toMatchObject({ ok: false, error: 'Expired' });
    expect((await t.call('GET', `/v1/paycall/chains/${id}`, { key: null })).body).toMatchObject({ status: 'expired', index: 1, remaining_msat: '19000' });
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '19000', wallet: 'carol' } });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const refunded = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 2, link: (links[2] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    expect(refunded.body).toMatchObject({ status: 'refunded', refund: { amount_msat: '19000' } });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 19_000n);
  });

  it('refunds unused steps exactly; the app lends the fee budget and pays only the routing fee; then the chain pays for nothing', async () => {
    const { id, links } = await buy(100);
    for (let i = 1; i <= 30; i += 1) expect(await spend(id, i, links[i] as Buffer)).toMatchObject({ ok: true });
    const appBefore = await balance(`app:${app.id}`);
    const wrongAmount = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '69999', wallet: 'carol' } });
    const refusals: [string, Record<string, unknown>, number, string][] = [
      ['a replayed proof', { index: 30, link: (links[30] as Buffer).toString('hex'), invoice: wrongAmount.body.payment_request }, 401, 'chain_link_replayed'],
      ['a skipped proof', { index: 32, link: (links[32] as Buffer).toString('hex'), invoice: wrongAmount.body.payment_request }, 401, 'chain_link_skipped'],
      ['a forged proof', { index: 31, link: randomBytes(32).toString('hex'), invoice: wrongAmount.body.payment_request }, 401, 'chain_link_invalid'],
      ['an invoice for another amount', { index: 31, link: (links[31] as Buffer).toString('hex'), invoice: wrongAmount.body.payment_request }, 400, 'payout_amount_mismatch'],
      ['no destination', { index: 31, link: (links[31] as Buffer).toString('hex') }, 400, 'invalid_request'],
      ['a bad invoice', { index: 31, link: (links[31] as Buffer).toString('hex'), invoice: 'lnbcrt1garbage' }, 400, 'invoice_invalid'],
    ];
    for (const [description, body, status, code] of refusals) {
      const refused = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body });
      expect(refused.status, description).toBe(status);
      expect(refused.body.error.code, description).toBe(code);
    }
    // Refusals changed nothing: the chain still pays.
    expect(await spend(id, 31, links[31] as Buffer)).toMatchObject({ ok: true, remainingSteps: 69 });

    // A payment the payments service refuses (an expired invoice) leaves the chain as it was.
    const stale = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '69000', wallet: 'carol', expiry_s: 60 } });
    clock.advanceMs(61_000);
    const expired = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 32, link: (links[32] as Buffer).toString('hex'), invoice: stale.body.payment_request } });
    expect(expired.status, JSON.stringify(expired.body)).toBe(409);
    expect(expired.body.error.code).toBe('invoice_expired');
    expect((await t.call('GET', `/v1/paycall/chains/${id}`, { key: null })).body).toMatchObject({ status: 'active', index: 31, remaining_msat: '69000' });
    expect(await balance(`chain:${id}`)).toBe(69_000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 1000n);

    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '69000', wallet: 'carol' } });
    const refunded = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 32, link: (links[32] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    expect(refunded.body).toMatchObject({ status: 'refunded', remaining_msat: '0', refund: { amount_msat: '69000', payment: { status: 'succeeded', amount_msat: '69000' } } });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 69_000n);
    const fee = BigInt(refunded.body.refund.payment.fee_msat);
    for (let i = 0; i < 50 && (await balance(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore + 1000n - fee);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);

    expect(await spend(id, 32, links[32] as Buffer)).toMatchObject({ ok: false, error: 'Refunded' });
    // Asked again: the same refund, not a second one.
    const again = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 32, link: (links[32] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(again.body).toMatchObject({ status: 'refunded', refund: { amount_msat: '69000', payment: { status: 'succeeded' } } });
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 69_000n);
  });

  it('refunds once when asked several times at the same moment', async () => {
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
    const { id, links } = await buy(20);
    expect(await spend(id, 5, links[5] as Buffer, 5000n)).toMatchObject({ ok: true });
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '15000', wallet: 'carol' } });
    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const body = { index: 6, link: (links[6] as Buffer).toString('hex'), invoice: invoice.body.payment_request };
    const answers = await Promise.all([1, 2, 3].map(() => t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body })));
    for (const answer of answers) expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(new Set(answers.map((answer) => answer.body.refund.payment.payment_hash)).size).toBe(1);
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 15_000n);
    for (let i = 0; i < 50 && (await balance(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });

  it('a refund payment that fails on the way keeps the money on the chain; asking again pays it', async () => {
    const float = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '50000', description: 'float' } });
    expect((await t.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
    const { id, links } = await buy(10);
    expect(await spend(id, 4, links[4] as Buffer, 4000n)).toMatchObject({ ok: true });
    const appBefore = await balance(`app:${app.id}`);
    const proof = { index: 5, link: (links[5] as Buffer).toString('hex') };
    t.sluice.devnet?.faults.failNextPayments(1, 'no_route', { payer: 'sluice', payee: 'carol' });
    const first = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '6000', wallet: 'carol' } });
    const failed = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { ...proof, invoice: first.body.payment_request } });
    expect(failed.status, JSON.stringify(failed.body)).toBe(200);
    expect(failed.body).toMatchObject({ status: 'refunded', refund: { payment: { status: 'failed' } } });
    // No call is accepted any more; the money (and nothing else) is still on the chain.
    expect(await spend(id, 5, links[5] as Buffer)).toMatchObject({ ok: false, error: 'Refunded' });
    for (let i = 0; i < 50 && (await balance(`app:${app.id}`)) !== appBefore; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`chain:${id}`)).toBe(6000n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore);

    const carolBefore = t.sluice.devnet?.nodeBalanceMsat('carol') as bigint;
    const second = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '6000', wallet: 'carol' } });
    const paid = await t.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { ...proof, invoice: second.body.payment_request } });
    expect(paid.body).toMatchObject({ status: 'refunded', refund: { amount_msat: '6000', payment: { status: 'succeeded' } } });
    expect(paid.body.refund.payment.payment_hash).toBe(second.body.payment_hash);
    expect(t.sluice.devnet?.nodeBalanceMsat('carol')).toBe(carolBefore + 6000n);
    for (let i = 0; i < 50 && (await balance(`chain:${id}`)) !== 0n; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(await balance(`chain:${id}`)).toBe(0n);
    expect(await balance(`app:${app.id}`)).toBe(appBefore - BigInt(paid.body.refund.payment.fee_msat));
  });

  it('refuses to refund a chain that was never paid or whose steps are all spent', async () => {
    const unpaid = await buy(3, { pay: false });
    const invoice = await t.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '3000', wallet: 'carol' } });
    const body = (index: number, link: Buffer) => ({ index, link: link.toString('hex'), invoice: invoice.body.payment_request });
    expect((await t.call('POST', `/v1/paycall/chains/${unpaid.id}/refund`, { key: null, body: body(1, unpaid.links[1] as Buffer) })).body.error.code).toBe('chain_unpaid');
    const spentOut = await buy(2);
    expect(await spend(spentOut.id, 2, spentOut.links[2] as Buffer, 2000n)).toMatchObject({ ok: true, remainingSteps: 0 });
    expect((await chains().get(spentOut.id))?.status).toBe('exhausted');
    expect(await spend(spentOut.id, 3, randomBytes(32))).toMatchObject({ ok: false, error: 'Exhausted' });
    expect((await t.call('POST', `/v1/paycall/chains/${spentOut.id}/refund`, { key: null, body: body(3, randomBytes(32)) })).body.error.code).toBe('chain_nothing_to_refund');
    expect((await t.call('POST', '/v1/paycall/chains/ch_nosuch/refund', { key: null, body: body(1, randomBytes(32)) })).status).toBe(404);
  });

  it('an unpaid chain whose invoice expired is expired, not pending', async () => {
    const { id, links } = await buy(3, { pay: false });
    expect((await t.call('GET', `/v1/paycall/chains/${id}`, { key: null })).body.status).toBe('pending');
    clock.advanceMs(3601 * 1000);
    expect((await t.call('GET', `/v1/paycall/chains/${id}`, { key: null })).body.status).toBe('expired');
    expect(await spend(id, 1, links[1] as Buffer)).toMatchObject({ ok: false, error: 'Expired' });
  });

  it('refuses bad purchases with a code', async () => {
    const anchor = randomBytes(32).toString('hex');
    const rows: [string, Record<string, unknown>, number, string][] = [
      ['unknown app', { app_id: 'app_nosuch', anchor, steps: 10 }, 404, 'app_not_found'],
      ['uppercase anchor', { app_id: app.id, anchor: anchor.toUpperCase(), steps: 10 }, 400, 'invalid_request'],
      ['short anchor', { app_id: app.id, anchor: anchor.slice(2), steps: 10 }, 400, 'invalid_request'],
      ['zero steps', { app_id: app.id, anchor, steps: 0 }, 400, 'invalid_request'],
      ['too many steps', { app_id: app.id, anchor, steps: 10_000_001 }, 400, 'invalid_request'],
      ['extra field', { app_id: app.id, anchor, steps: 10, seed: anchor }, 400, 'unknown_field'],
    ];
    for (const [description, body, status, code] of rows) {
      const refused = await t.call('POST', '/v1/paycall/chains', { key: null, body });
      expect(refused.status, description).toBe(status);
      expect(refused.body.error.code, description).toBe(code);
    }
    expect((await t.call('GET', '/v1/paycall/chains/ch_nosuch', { key: null })).status).toBe(404);
  });

  it('a restart on the same data cannot accept a spent link again', async () => {
    const { id, links } = await buy(10);
    for (let i = 1; i <= 4; i += 1) expect(await spend(id, i, links[i] as Buffer)).toMatchObject({ ok: true });
    const pending = await buy(3, { pay: false });
    const dataDir = t.dataDir;
    await t.close();
    await start(dataDir);
    expect(await spend(id, 4, links[4] as Buffer)).toMatchObject({ ok: false, error: 'Replayed' });
    expect(await spend(id, 3, links[3] as Buffer)).toMatchObject({ ok: false, error: 'Replayed' });
    expect(await spend(id, 5, links[5] as Buffer)).toMatchObject({ ok: true, index: 5, remainingSteps: 5 });
    expect(await balance(`chain:${id}`)).toBe(5000n);
    // A chain bought before the restart can still be paid and used after it.
    const paid = await t.call('POST', '/v1/devnet/pay', { body: { payment_request: pending.body.invoice.payment_request, wallet: 'alice' } });
    expect(paid.status).toBe(200);
    await waitActive(pending.id);
    expect(await spend(pending.id, 1, pending.links[1] as Buffer)).toMatchObject({ ok: true });
    expect(await t.sluice.ledger.sumOfBalances()).toBe(0n);
  });
});
}



describe.skipIf(!usePostgres)('unpaid chains are bounded', () => {
  let database: TestDatabase;
  let t: TestSluice;
  const clock = createManualClock(Date.now());
  beforeAll(async () => {
    database = await createTestDatabase('sluice_chain_unpaid');
    t = await startTestSluice({ clock, env: { SLUICE_DATABASE_URL: database.url } });
  });
  afterAll(async () => {
    await t?.close();
    await database?.drop();
  });

  it('refuses purchases past the limit until the unpaid ones can no longer be paid', async () => {
    const app = await t.createApp('bounded');
    // A second service on the same database with a limit of 2 (the Sluice's own holds 100,000).
    const store = await createPostgresChainStore(database.sql, (tx, ops, now) => applyPostgresOps(tx, ops, now));
    const s = t.sluice;
    const service = createChainService({
      store, ledger: s.ledger, invoices: s.invoices, payments: s.payments, records: s.records, apps: s.apps, clock, logger: createLogger('silent'),
      defaultStepMsat: msat(1000n), ttlS: 86_400, invoiceExpiryS: 600, maxUnpaidChains: 2,
    });
    const buyOne = () => service.purchase({ appId: app.id, anchor: randomBytes(32).toString('hex'), steps: 5 });
    expect(await buyOne()).toMatchObject({ ok: true });
    const second = await buyOne();
    expect(second).toMatchObject({ ok: true });
    expect(await buyOne()).toMatchObject({ ok: false, error: 'Overloaded' });
    clock.advanceMs(601_000);
    // The first two invoices expired: they leave memory, the store still answers for them.
    expect(await buyOne()).toMatchObject({ ok: true });
    if (second.ok) expect((await service.get(second.chain.id))?.status).toBe('expired');
    await service.stop();
  });
});

describe.skipIf(!usePostgres)('two Sluices sharing one PostgreSQL database', () => {
  let database: TestDatabase;
  let first: TestSluice;
  let second: TestSluice;
  beforeAll(async () => {
    database = await createTestDatabase('sluice_chain_two');
    first = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
    await database?.drop();
  });

  it('never accepts the same link in both: the stale process refuses, then catches up from the database', async () => {
    const app = await first.createApp('shared');
    const links = buildChain(randomBytes(32), 10);
    const bought = await first.call('POST', '/v1/paycall/chains', { key: null, body: { app_id: app.id, anchor: (links[0] as Buffer).toString('hex'), steps: 10 } });
    expect((await first.call('POST', '/v1/devnet/pay', { body: { payment_request: bought.body.invoice.payment_request, wallet: 'alice' } })).status).toBe(200);
    const id = bought.body.chain_id as string;
    await new Promise((r) => setTimeout(r, 20));
    // The second process loads the active chain at index 0.
    second = await startTestSluice({ env: { SLUICE_DATABASE_URL: database.url } });
    const call = (sluice: TestSluice, index: number) => sluice.sluice.chains.spend(id, index, links[index] as Buffer, { appId: app.id, priceMsat: msat(1000n) });
    expect(await call(first, 1)).toMatchObject({ ok: true, index: 1 });
    // Its copy is stale: its write is refused by the database, so the link is not accepted twice.
    expect(await call(second, 1)).toMatchObject({ ok: false, error: 'Replayed' });
    // It dropped its copy; the next call reads the chain back and goes on.
    expect(await call(second, 2)).toMatchObject({ ok: true, index: 2 });
    // Either process's sweep pays the app for what the database says was spent, once.
    await first.sluice.chains.settleSpent();
    await second.sluice.chains.settleSpent();
    const account = await second.sluice.ledger.getAccount(`chain:${id}`);
    expect((account?.creditsPostedMsat ?? 0n) - (account?.debitsPostedMsat ?? 0n)).toBe(8000n);
    const revenue = await second.sluice.ledger.getAccount(`app:${app.id}`);
    expect((revenue?.creditsPostedMsat ?? 0n) - (revenue?.debitsPostedMsat ?? 0n)).toBe(2000n);

    // The first process catches up (its stale call is refused, the next reloads) and spends w_3.
    expect(await call(first, 2)).toMatchObject({ ok: false, error: 'Replayed' });
    expect(await call(first, 3)).toMatchObject({ ok: true, index: 3 });
    // Now the second one is stale (it holds index 2): its refund must follow the database (index 3).
    const float = await second.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '20000', description: 'float' } });
    expect((await second.call('POST', '/v1/devnet/pay', { body: { payment_request: float.body.payment_request, wallet: 'alice' } })).status).toBe(200);
    const invoice = await second.call('POST', '/v1/devnet/invoices', { body: { amount_msat: '7000', wallet: 'carol' } });
    const refunded = await second.call('POST', `/v1/paycall/chains/${id}/refund`, { key: null, body: { index: 4, link: (links[4] as Buffer).toString('hex'), invoice: invoice.body.payment_request } });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(200);
    expect(refunded.body).toMatchObject({ status: 'refunded', index: 3, refund: { amount_msat: '7000', payment: { status: 'succeeded' } } });
    // The first process still holds the chain as active at index 3: the database refuses its write.
    expect(await call(first, 4)).toMatchObject({ ok: false, error: 'Replayed' });
    expect(await call(first, 5)).toMatchObject({ ok: false, error: 'Refunded' });
    const chainAccount = await first.sluice.ledger.getAccount(`chain:${id}`);
    expect((chainAccount?.creditsPostedMsat ?? 0n) - (chainAccount?.debitsPostedMsat ?? 0n)).toBe(0n);
  });
});
