/**
 * The LedgerStore contract: one suite, run against every implementation (SQLite and
 * PostgreSQL), so the two stores cannot drift apart. Each test uses fresh account ids, so
 * one database serves the whole suite.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { MSAT_MAX, type Msat } from '../../src/money/msat.js';
import {
  availableOf,
  balanceOf,
  type Account,
  type LedgerError,
  type LedgerOp,
  type LedgerResult,
  type LedgerStore,
  type Transfer,
} from '../../src/ledger/store.js';

export interface StoreHarness {
  store: LedgerStore;
  close(): Promise<void>;
}

export type MakeStore = (clock: ManualClock) => Promise<StoreHarness>;

export const m = (value: bigint | number): Msat => BigInt(value) as Msat;

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Accounts used by most tests: an unlimited system account and two prepaid users. */
export interface Fixture {
  system: string;
  /** A second unlimited account, so overflow cases can be set up on either side. */
  system2: string;
  alice: string;
  bob: string;
  /** A user that may go 500 msat below zero. */
  carol: string;
}

export async function createFixture(store: LedgerStore, aliceFundsMsat = 1000n): Promise<Fixture> {
  const fixture: Fixture = {
    system: uniqueId('system'),
    system2: uniqueId('system'),
    alice: uniqueId('alice'),
    bob: uniqueId('bob'),
    carol: uniqueId('carol'),
  };
  const specs = [
    { id: fixture.system, ownerId: 'system', limitMsat: null, code: 'lightning' },
    { id: fixture.system2, ownerId: 'system', limitMsat: null, code: 'fees' },
    { id: fixture.alice, ownerId: uniqueId('owner'), limitMsat: m(0), code: 'payer' },
    { id: fixture.bob, ownerId: uniqueId('owner'), limitMsat: m(0), code: 'app' },
    { id: fixture.carol, ownerId: uniqueId('owner'), limitMsat: m(500), code: 'payer' },
  ];
  for (const spec of specs) {
    const created = await store.createAccount(spec);
    if (!created.ok || !created.created) throw new Error(`fixture account ${spec.id} not created`);
  }
  if (aliceFundsMsat > 0n) {
    const [funded] = await store.applyOps([transfer(fixture.system, fixture.alice, aliceFundsMsat)]);
    if (!funded?.ok) throw new Error('fixture funding refused');
  }
  return fixture;
}

export function transfer(
  debitAccountId: string,
  creditAccountId: string,
  amount: bigint | number,
  extra: Partial<Extract<LedgerOp, { kind: 'transfer' }>> = {},
): LedgerOp {
  return { kind: 'transfer', debitAccountId, creditAccountId, amountMsat: m(amount), code: 'charge', ...extra };
}

async function accountOrThrow(store: LedgerStore, id: string): Promise<Account> {
  const account = await store.getAccount(id);
  if (!account) throw new Error(`account ${id} missing`);
  return account;
}

async function snapshot(store: LedgerStore, ids: readonly string[]): Promise<Account[]> {
  return Promise.all(ids.map((id) => accountOrThrow(store, id)));
}

function ok(result: LedgerResult | undefined): Transfer {
  if (!result?.ok) throw new Error(`expected success, got ${JSON.stringify(result)}`);
  return result.transfer;
}

interface ErrorRow {
  description: string;
  expected: LedgerError;
  /** Ops applied (and expected to succeed) before the refused op; may use the fixture. */
  setup?: (f: Fixture) => LedgerOp[];
  /** Then post or void every transfer that setup created. */
  thenResolve?: 'post' | 'void';
  /** The refused op; `pendingIds` are the ids of pending transfers created by setup. */
  op: (f: Fixture, pendingIds: string[]) => LedgerOp;
}

const NEAR_MAX = MSAT_MAX - 5n;

/** One row per LedgerError the store can return (and a few per error where the rule has cases). */
export const errorRows: ErrorRow[] = [
  { description: 'debit account does not exist', expected: 'AccountNotFound', op: (f) => transfer('nobody', f.bob, 1) },
  { description: 'credit account does not exist', expected: 'AccountNotFound', op: (f) => transfer(f.alice, 'nobody', 1) },
  { description: 'debit and credit are the same account', expected: 'SameAccount', op: (f) => transfer(f.alice, f.alice, 1) },
  { description: 'transfer of zero', expected: 'ZeroAmount', op: (f) => transfer(f.alice, f.bob, 0) },
  {
    description: 'post of zero',
    expected: 'ZeroAmount',
    setup: (f) => [transfer(f.alice, f.bob, 100, { pending: true })],
    op: (_f, [id]) => ({ kind: 'post', pendingId: id as string, amountMsat: m(0) }),
  },
  { description: 'prepaid account spends more than its balance', expected: 'LimitExceeded', op: (f) => transfer(f.alice, f.bob, 1001) },
  { description: 'prepaid account with nothing spends 1 msat', expected: 'LimitExceeded', op: (f) => transfer(f.bob, f.alice, 1) },
  { description: 'account with a limit goes past it', expected: 'LimitExceeded', op: (f) => transfer(f.carol, f.bob, 501) },
  {
    description: 'pending holds count against the limit',
    expected: 'LimitExceeded',
    setup: (f) => [transfer(f.alice, f.bob, 600, { pending: true })],
    op: (f) => transfer(f.alice, f.bob, 401),
  },
  {
    description: 'a pending hold is refused past the limit too',
    expected: 'LimitExceeded',
    op: (f) => transfer(f.alice, f.bob, 1001, { pending: true }),
  },
  {
    description: 'credit posted would pass 2^63-1',
    expected: 'Overflow',
    setup: (f) => [transfer(f.system2, f.bob, NEAR_MAX)],
    op: (f) => transfer(f.system, f.bob, 11),
  },
  {
    description: 'debit posted of an unlimited account would pass 2^63-1',
    expected: 'Overflow',
    setup: (f) => [transfer(f.system2, f.bob, NEAR_MAX)],
    op: (f) => transfer(f.system2, f.carol, 11),
  },
  { description: 'post of an unknown transfer', expected: 'TransferNotFound', op: () => ({ kind: 'post', pendingId: 'f'.repeat(32) }) },
  { description: 'void of an unknown transfer', expected: 'TransferNotFound', op: () => ({ kind: 'void', pendingId: 'f'.repeat(32) }) },
  {
    description: 'post of a one-phase (posted) transfer',
    expected: 'TransferNotPending',
    setup: (f) => [transfer(f.alice, f.bob, 100)],
    op: (_f, [id]) => ({ kind: 'post', pendingId: id as string }),
  },
  {
    description: 'void of an already posted hold',
    expected: 'TransferNotPending',
    setup: (f) => [transfer(f.alice, f.bob, 100, { pending: true })],
    thenResolve: 'post',
    op: (_f, [id]) => ({ kind: 'void', pendingId: id as string }),
  },
  {
    description: 'post of a voided hold',
    expected: 'TransferNotPending',
    setup: (f) => [transfer(f.alice, f.bob, 100, { pending: true })],
    thenResolve: 'void',
    op: (_f, [id]) => ({ kind: 'post', pendingId: id as string }),
  },
  {
    description: 'void of a one-phase (posted) transfer',
    expected: 'TransferNotPending',
    setup: (f) => [transfer(f.alice, f.bob, 100)],
    op: (_f, [id]) => ({ kind: 'void', pendingId: id as string }),
  },
  {
    description: 'post more than the hold',
    expected: 'AmountExceedsPending',
    setup: (f) => [transfer(f.alice, f.bob, 100, { pending: true })],
    op: (_f, [id]) => ({ kind: 'post', pendingId: id as string, amountMsat: m(101) }),
  },
  {
    description: 'same key, different amount',
    expected: 'IdempotencyConflict',
    setup: (f) => [transfer(f.alice, f.bob, 100, { idempotencyKey: `key-${f.alice}` })],
    op: (f) => transfer(f.alice, f.bob, 101, { idempotencyKey: `key-${f.alice}` }),
  },
  {
    description: 'same key, different kind of op',
    expected: 'IdempotencyConflict',
    setup: (f) => [transfer(f.alice, f.bob, 100, { pending: true, idempotencyKey: `key-${f.alice}` })],
    op: (f, [id]) => ({ kind: 'post', pendingId: id as string, idempotencyKey: `key-${f.alice}` }),
  },
];

export function describeLedgerStoreContract(name: string, makeStore: MakeStore, options: { skip?: boolean } = {}): void {
  describe.skipIf(options.skip === true)(`LedgerStore contract: ${name}`, () => {
    const clock = createManualClock();
    let harness: StoreHarness;
    let store: LedgerStore;

    beforeAll(async () => {
      harness = await makeStore(clock);
      store = harness.store;
    });
    afterAll(async () => {
      await harness?.close();
    });

    describe('accounts', () => {
      it('creates an account with zero counters, idempotently', async () => {
        const id = uniqueId('acct');
        const spec = { id, ownerId: 'owner-1', limitMsat: m(5), code: 'payer' };
        const first = await store.createAccount(spec);
        expect(first).toEqual({
          ok: true,
          created: true,
          account: {
            ...spec,
            debitsPendingMsat: 0n,
            debitsPostedMsat: 0n,
            creditsPendingMsat: 0n,
            creditsPostedMsat: 0n,
            createdAt: clock.now(),
          },
        });
        const again = await store.createAccount(spec);
        expect(again).toEqual({ ok: true, created: false, account: first.ok ? first.account : null });
        expect(await store.getAccount(id)).toEqual(first.ok ? first.account : null);
      });

      it.each([
        { description: 'another owner', change: { ownerId: 'owner-2' } },
        { description: 'another limit', change: { limitMsat: m(6) } },
        { description: 'no limit', change: { limitMsat: null } },
        { description: 'another code', change: { code: 'app' } },
      ])('refuses the same id with $description: AccountExists', async ({ change }) => {
        const id = uniqueId('acct');
        const spec = { id, ownerId: 'owner-1', limitMsat: m(5), code: 'payer' };
        expect((await store.createAccount(spec)).ok).toBe(true);
        expect(await store.createAccount({ ...spec, ...change })).toEqual({ ok: false, error: 'AccountExists' });
      });

      it('returns null for an unknown account and lists accounts by owner', async () => {
        expect(await store.getAccount(uniqueId('missing'))).toBeNull();
        const owner = uniqueId('owner');
        const ids = [uniqueId('b'), uniqueId('a')];
        for (const id of ids) await store.createAccount({ id, ownerId: owner, limitMsat: m(0), code: 'payer' });
        const listed = await store.listAccounts(owner);
        expect(listed.map((a) => a.id)).toEqual([...ids].sort());
        expect(await store.listAccounts(uniqueId('nobody'))).toEqual([]);
      });
    });

    describe('refusals', () => {
      it.each(errorRows)('$description: $expected', async (row) => {
        const f = await createFixture(store);
        const setupResults = row.setup ? await store.applyOps(row.setup(f)) : [];
        const pendingIds = setupResults.map((result) => ok(result).id);
        if (row.thenResolve) {
          const kind = row.thenResolve;
          const resolved = await store.applyOps(pendingIds.map((pendingId) => ({ kind, pendingId })));
          resolved.forEach(ok);
        }
        const ids = [f.system, f.system2, f.alice, f.bob, f.carol];
        const before = await snapshot(store, ids);
        const [refused] = await store.applyOps([row.op(f, pendingIds)]);
        expect(refused).toEqual({ ok: false, error: row.expected, replayed: false });
        expect(await snapshot(store, ids)).toEqual(before);
        expect(await store.sumOfBalances()).toBe(0n);
      });

      it('a refusal with a key is replayed even after the state changed', async () => {
        const f = await createFixture(store);
        const op = transfer(f.alice, f.bob, 1500, { idempotencyKey: uniqueId('key') });
        expect(await store.applyOps([op])).toEqual([{ ok: false, error: 'LimitExceeded', replayed: false }]);
        ok((await store.applyOps([transfer(f.system, f.alice, 1000)]))[0]);
        expect(await store.applyOps([op])).toEqual([{ ok: false, error: 'LimitExceeded', replayed: true }]);
        // The same key with other arguments is still a conflict, not a fresh try.
        const other = { ...op, amountMsat: m(1400) };
        expect(await store.applyOps([other])).toEqual([{ ok: false, error: 'IdempotencyConflict', replayed: false }]);
        expect((await store.getAccount(f.alice))?.debitsPostedMsat).toBe(0n);
      });

      it('a refusal without a key leaves no trace', async () => {
        const f = await createFixture(store);
        const op = transfer(f.alice, f.bob, 1500);
        expect((await store.applyOps([op]))[0]).toMatchObject({ ok: false, error: 'LimitExceeded' });
        ok((await store.applyOps([transfer(f.system, f.alice, 1000)]))[0]);
        expect((await store.applyOps([op]))[0]).toMatchObject({ ok: true, replayed: false });
      });
    });

    describe('transfers', () => {
      it('moves money one-phase and stamps the transfer', async () => {
        clock.advanceMs(1000);
        const f = await createFixture(store);
        const [result] = await store.applyOps([transfer(f.alice, f.bob, 300, { reference: 'ref-1', code: 'fee' })]);
        const t = ok(result);
        expect(t).toEqual({
          id: t.id,
          debitAccountId: f.alice,
          creditAccountId: f.bob,
          amountMsat: 300n,
          state: 'posted',
          code: 'fee',
          reference: 'ref-1',
          idempotencyKey: null,
          createdAt: clock.now(),
          resolvedAt: clock.now(),
        });
        expect(t.id).toMatch(/^[0-9a-f]{32}$/);
        expect(await store.getTransfer(t.id)).toEqual(t);
        const alice = await accountOrThrow(store, f.alice);
        const bob = await accountOrThrow(store, f.bob);
        expect(balanceOf(alice)).toBe(700n);
        expect(balanceOf(bob)).toBe(300n);
        expect(await store.sumOfBalances()).toBe(0n);
      });

      it('lets an account with a limit go exactly to it', async () => {
        const f = await createFixture(store, 0n);
        ok((await store.applyOps([transfer(f.carol, f.bob, 500)]))[0]);
        const carol = await accountOrThrow(store, f.carol);
        expect(balanceOf(carol)).toBe(-500n);
        expect(availableOf(carol)).toBe(0n);
        expect((await store.applyOps([transfer(f.carol, f.bob, 1)]))[0]).toMatchObject({ error: 'LimitExceeded' });
      });

      it('holds, then posts less than the hold and releases the rest', async () => {
        const f = await createFixture(store);
        const hold = ok((await store.applyOps([transfer(f.alice, f.bob, 600, { pending: true })]))[0]);
        expect(hold).toMatchObject({ state: 'pending', amountMsat: 600n, resolvedAt: null });
        let alice = await accountOrThrow(store, f.alice);
        expect(alice).toMatchObject({ debitsPendingMsat: 600n, debitsPostedMsat: 0n });
        expect(availableOf(alice)).toBe(400n);
        expect(await accountOrThrow(store, f.bob)).toMatchObject({ creditsPendingMsat: 600n, creditsPostedMsat: 0n });

        clock.advanceMs(5);
        const posted = ok((await store.applyOps([{ kind: 'post', pendingId: hold.id, amountMsat: m(250) }]))[0]);
        expect(posted).toEqual({ ...hold, state: 'posted', amountMsat: 250n, resolvedAt: clock.now() });
        alice = await accountOrThrow(store, f.alice);
        expect(alice).toMatchObject({ debitsPendingMsat: 0n, debitsPostedMsat: 250n });
        expect(availableOf(alice)).toBe(750n);
        expect(await accountOrThrow(store, f.bob)).toMatchObject({ creditsPendingMsat: 0n, creditsPostedMsat: 250n });
        expect(await store.getTransfer(hold.id)).toEqual(posted);
        expect(await store.sumOfBalances()).toBe(0n);
      });

      it('posts the whole hold by default', async () => {
        const f = await createFixture(store);
        const hold = ok((await store.applyOps([transfer(f.alice, f.bob, 600, { pending: true })]))[0]);
        const posted = ok((await store.applyOps([{ kind: 'post', pendingId: hold.id }]))[0]);
        expect(posted.amountMsat).toBe(600n);
        expect(balanceOf(await accountOrThrow(store, f.bob))).toBe(600n);
      });

      it('voids a hold: nothing moves', async () => {
        const f = await createFixture(store);
        const hold = ok((await store.applyOps([transfer(f.alice, f.bob, 600, { pending: true })]))[0]);
        const voided = ok((await store.applyOps([{ kind: 'void', pendingId: hold.id }]))[0]);
        expect(voided).toMatchObject({ state: 'voided', amountMsat: 600n, resolvedAt: clock.now() });
        expect(await accountOrThrow(store, f.alice)).toMatchObject({ debitsPendingMsat: 0n, debitsPostedMsat: 0n });
        expect(await accountOrThrow(store, f.bob)).toMatchObject({ creditsPendingMsat: 0n, creditsPostedMsat: 0n });
        expect((await store.applyOps([{ kind: 'post', pendingId: hold.id }]))[0]).toMatchObject({ error: 'TransferNotPending' });
      });

      it('applies a batch in order, each op seeing the ones before it', async () => {
        const f = await createFixture(store, 0n);
        const results = await store.applyOps([
          transfer(f.alice, f.bob, 1), // refused: alice has nothing yet
          transfer(f.system, f.alice, 100),
          transfer(f.alice, f.bob, 100, { pending: true }),
          transfer(f.alice, f.bob, 1), // refused: the hold takes everything
        ]);
        expect(results.map((r) => (r.ok ? r.transfer.state : r.error))).toEqual([
          'LimitExceeded',
          'posted',
          'pending',
          'LimitExceeded',
        ]);
        const holdId = ok(results[2]).id;
        const more = await store.applyOps([
          { kind: 'post', pendingId: holdId, amountMsat: m(40) },
          transfer(f.alice, f.bob, 60),
          transfer(f.alice, f.bob, 1),
        ]);
        expect(more.map((r) => (r.ok ? r.transfer.state : r.error))).toEqual(['posted', 'posted', 'LimitExceeded']);
        expect(balanceOf(await accountOrThrow(store, f.bob))).toBe(100n);
      });

      it('resolves one hold and creates another in the same batch', async () => {
        const f = await createFixture(store);
        const hold = ok((await store.applyOps([transfer(f.alice, f.bob, 1000, { pending: true })]))[0]);
        // The new hold fits only because the void before it released the first one.
        const results = await store.applyOps([{ kind: 'void', pendingId: hold.id }, transfer(f.alice, f.bob, 900, { pending: true })]);
        const second = ok(results[1]);
        expect(await store.getTransfer(hold.id)).toMatchObject({ state: 'voided' });
        const [posted] = await store.applyOps([{ kind: 'post', pendingId: second.id, amountMsat: m(7) }, transfer(f.alice, f.bob, 993)]);
        expect(ok(posted)).toMatchObject({ state: 'posted', amountMsat: 7n });
        expect(await accountOrThrow(store, f.alice)).toMatchObject({ debitsPendingMsat: 0n, debitsPostedMsat: 1000n });
      });

      it('returns null for an unknown transfer and lists transfers newest first, paged', async () => {
        expect(await store.getTransfer('0'.repeat(32))).toBeNull();
        const f = await createFixture(store);
        const created: Transfer[] = [];
        for (let i = 0; i < 5; i++) {
          clock.advanceMs(1);
          const op = i % 2 === 0 ? transfer(f.alice, f.bob, 10 + i) : transfer(f.system, f.alice, 10 + i);
          created.push(ok((await store.applyOps([op]))[0]));
        }
        const newestFirst = [...created].reverse();
        const page1 = await store.listTransfers({ accountId: f.alice, limit: 3 });
        expect(page1).toEqual(newestFirst.slice(0, 3));
        const page2 = await store.listTransfers({ accountId: f.alice, limit: 3, beforeId: page1[2]?.id as string });
        // The fixture's funding transfer is the oldest of alice's.
        expect(page2.slice(0, 2)).toEqual(newestFirst.slice(3));
        expect(page2).toHaveLength(3);
        const bobs = await store.listTransfers({ accountId: f.bob, limit: 10 });
        expect(bobs.map((t) => t.id)).toEqual(newestFirst.filter((t) => t.creditAccountId === f.bob).map((t) => t.id));
      });
    });

    describe('idempotency', () => {
      it('replays a transfer with its first result', async () => {
        const f = await createFixture(store);
        const op = transfer(f.alice, f.bob, 100, { idempotencyKey: uniqueId('key') });
        const [first] = await store.applyOps([op]);
        const before = await snapshot(store, [f.alice, f.bob]);
        clock.advanceMs(10);
        const [again] = await store.applyOps([op]);
        expect(again).toEqual({ ...first, replayed: true });
        expect(await snapshot(store, [f.alice, f.bob])).toEqual(before);
        // Omitting a default and passing it are the same request.
        const [explicit] = await store.applyOps([{ ...op, reference: '', pending: false } as LedgerOp]);
        expect(explicit).toEqual({ ...first, replayed: true });
      });

      it('replays a hold as it was created, even after it was posted', async () => {
        const f = await createFixture(store);
        const op = transfer(f.alice, f.bob, 100, { pending: true, idempotencyKey: uniqueId('key') });
        const [first] = await store.applyOps([op]);
        const hold = ok(first);
        const postKey = uniqueId('key');
        const postOp: LedgerOp = { kind: 'post', pendingId: hold.id, amountMsat: m(60), idempotencyKey: postKey };
        const [posted] = await store.applyOps([postOp]);
        expect(await store.applyOps([op])).toEqual([{ ...first, replayed: true }]);
        expect(await store.applyOps([postOp])).toEqual([{ ...posted, replayed: true }]);
        expect(balanceOf(await accountOrThrow(store, f.bob))).toBe(60n);
        const voidOp: LedgerOp = { kind: 'void', pendingId: hold.id, idempotencyKey: uniqueId('key') };
        expect(await store.applyOps([voidOp, voidOp])).toEqual([
          { ok: false, error: 'TransferNotPending', replayed: false },
          { ok: false, error: 'TransferNotPending', replayed: true },
        ]);
      });

      it('sees a key written earlier in the same batch', async () => {
        const f = await createFixture(store);
        const key = uniqueId('key');
        const op = transfer(f.alice, f.bob, 100, { idempotencyKey: key });
        const results = await store.applyOps([op, op, { ...op, amountMsat: m(5) } as LedgerOp]);
        expect(results[1]).toEqual({ ...results[0], replayed: true });
        expect(results[2]).toEqual({ ok: false, error: 'IdempotencyConflict', replayed: false });
        expect(balanceOf(await accountOrThrow(store, f.bob))).toBe(100n);
      });
    });

    it('rejects malformed ops as bugs, before touching anything', async () => {
      const f = await createFixture(store);
      await expect(store.applyOps([transfer(f.alice, f.bob, -1)])).rejects.toThrow(RangeError);
      await expect(store.applyOps([{ ...transfer(f.alice, f.bob, 1), code: '' } as LedgerOp])).rejects.toThrow(RangeError);
      await expect(store.applyOps([{ kind: 'burn' } as unknown as LedgerOp])).rejects.toThrow(TypeError);
      expect((await accountOrThrow(store, f.alice)).debitsPostedMsat).toBe(0n);
    });

    it('keeps the sum of all balances at zero', async () => {
      expect(await store.sumOfBalances()).toBe(0n);
    });
  });
}
