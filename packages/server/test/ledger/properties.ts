/**
 * Ledger invariants as fast-check properties, shared by the SQLite and PostgreSQL suites:
 *   - the sum of all balances is zero;
 *   - no account passes its limit (pending debits included), no counter is negative;
 *   - replaying any request with its idempotency key changes nothing and returns the
 *     first result;
 *   - concurrent transfers never overdraw (many callers through group commit).
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { createLedger } from '../../src/ledger/group-commit.js';
import {
  availableOf,
  type Account,
  type LedgerOp,
  type LedgerResult,
  type LedgerStore,
} from '../../src/ledger/store.js';
import { m, uniqueId } from './contract.js';

const LIMITS = [null, 0n, 0n, 300n, 1000n] as const;

type Command =
  | { type: 'transfer'; from: number; to: number; amount: number; pending: boolean; keyed: boolean }
  | { type: 'post'; pick: number; amount: number | null; keyed: boolean }
  | { type: 'void'; pick: number; keyed: boolean }
  | { type: 'replay'; pick: number }
  | { type: 'conflict'; pick: number };

const account = fc.integer({ min: 0, max: LIMITS.length - 1 });
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ type: fc.constant('transfer' as const), from: account, to: account, amount: fc.integer({ min: 0, max: 1500 }), pending: fc.boolean(), keyed: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('post' as const), pick: fc.nat(), amount: fc.option(fc.integer({ min: 0, max: 1500 })), keyed: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('void' as const), pick: fc.nat(), keyed: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('replay' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('conflict' as const), pick: fc.nat() }) },
);
/** Commands, split into batches (each batch is one applyOps call). */
const scenarioArb = fc.array(fc.array(commandArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 6 });

function assertInvariants(accounts: Account[], sum: bigint): void {
  expect(sum).toBe(0n);
  for (const a of accounts) {
    expect(a.debitsPendingMsat >= 0n && a.debitsPostedMsat >= 0n).toBe(true);
    expect(a.creditsPendingMsat >= 0n && a.creditsPostedMsat >= 0n).toBe(true);
    const available = availableOf(a);
    if (available !== null) expect(available >= 0n).toBe(true);
  }
}

async function loadAll(store: LedgerStore, ids: readonly string[]): Promise<Account[]> {
  const accounts = await Promise.all(ids.map((id) => store.getAccount(id)));
  return accounts.map((a) => {
    if (!a) throw new Error('account vanished');
    return a;
  });
}

/** Expected answer to a replay of a request whose first answer was `first`. */
function replayOf(first: LedgerResult): LedgerResult {
  // A conflict was never recorded under the key (the key belongs to another request).
  if (!first.ok && first.error === 'IdempotencyConflict') return first;
  return { ...first, replayed: true };
}

export function ledgerPropertyTests(getStore: () => LedgerStore, numRuns: number): void {
  it('keeps the sum at zero and every account within its limit; replays change nothing', async () => {
    const store = getStore();
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (batches) => {
        const ids = LIMITS.map(() => uniqueId('p'));
        for (const [i, limit] of LIMITS.entries()) {
          const created = await store.createAccount({ id: ids[i] as string, ownerId: 'prop', limitMsat: limit === null ? null : m(limit), code: 'test' });
          expect(created.ok).toBe(true);
        }
        const funding = await store.applyOps(ids.slice(1).map((id) => ({ kind: 'transfer', debitAccountId: ids[0] as string, creditAccountId: id, amountMsat: m(700), code: 'fund' })));
        /** Every transfer created so far, oldest first (what listTransfers must return, reversed). */
        const created: { id: string; debit: string; credit: string }[] = [];
        for (const r of funding) if (r.ok) created.push({ id: r.transfer.id, debit: r.transfer.debitAccountId, credit: r.transfer.creditAccountId });
        const pendingIds: string[] = [];
        const keyed: { op: LedgerOp; first: LedgerResult }[] = [];
        let keyCounter = 0;
        const newKey = () => `${ids[0]}-k${keyCounter++}`;

        for (const batch of batches) {
          const ops: LedgerOp[] = [];
          const expectations: (LedgerResult | null)[] = [];
          for (const command of batch) {
            let op: LedgerOp;
            let expected: LedgerResult | null = null;
            switch (command.type) {
              case 'transfer':
                op = { kind: 'transfer', debitAccountId: ids[command.from] as string, creditAccountId: ids[command.to] as string, amountMsat: m(command.amount), pending: command.pending, code: 'prop', ...(command.keyed ? { idempotencyKey: newKey() } : {}) };
                break;
              case 'post': {
                const pendingId = pendingIds[command.pick % Math.max(pendingIds.length, 1)] ?? 'f'.repeat(32);
                op = { kind: 'post', pendingId, ...(command.amount === null ? {} : { amountMsat: m(command.amount) }), ...(command.keyed ? { idempotencyKey: newKey() } : {}) };
                break;
              }
              case 'void': {
                const pendingId = pendingIds[command.pick % Math.max(pendingIds.length, 1)] ?? 'f'.repeat(32);
                op = { kind: 'void', pendingId, ...(command.keyed ? { idempotencyKey: newKey() } : {}) };
                break;
              }
              case 'replay':
              case 'conflict': {
                const earlier = keyed[command.pick % Math.max(keyed.length, 1)];
                if (!earlier) continue;
                if (command.type === 'replay') {
                  op = earlier.op;
                  expected = replayOf(earlier.first);
                } else {
                  op = earlier.op.kind === 'void'
                    ? { kind: 'post', pendingId: earlier.op.pendingId, idempotencyKey: earlier.op.idempotencyKey as string }
                    : { ...earlier.op, amountMsat: m(1501) } as LedgerOp;
                  expected = { ok: false, error: 'IdempotencyConflict', replayed: false };
                }
                break;
              }
            }
            ops.push(op);
            expectations.push(expected);
          }
          const before = await loadAll(store, ids);
          const results = await store.applyOps(ops);
          expect(results).toHaveLength(ops.length);
          results.forEach((result, i) => {
            const op = ops[i] as LedgerOp;
            const expected = expectations[i];
            if (expected) {
              expect(result).toEqual(expected);
            } else if (op.idempotencyKey !== undefined) {
              keyed.push({ op, first: result });
            }
            if (result.ok && result.transfer.state === 'pending' && !result.replayed) pendingIds.push(result.transfer.id);
            if (result.ok && !result.replayed && op.kind === 'transfer') {
              created.push({ id: result.transfer.id, debit: result.transfer.debitAccountId, credit: result.transfer.creditAccountId });
            }
          });
          const after = await loadAll(store, ids);
          assertInvariants(after, await store.sumOfBalances());
          if (results.every((r) => !r.ok || r.replayed)) expect(after).toEqual(before);
        }

        // Each account lists exactly its transfers, newest first, also when paged.
        for (const id of ids) {
          const expected = created.filter((t) => t.debit === id || t.credit === id).map((t) => t.id).reverse();
          expect((await store.listTransfers({ accountId: id, limit: 1000 })).map((t) => t.id)).toEqual(expected);
          const firstPage = await store.listTransfers({ accountId: id, limit: 2 });
          const lastOfPage = firstPage[firstPage.length - 1];
          if (lastOfPage) {
            const rest = await store.listTransfers({ accountId: id, limit: 1000, beforeId: lastOfPage.id });
            expect([...firstPage, ...rest].map((t) => t.id)).toEqual(expected);
          }
        }

        // Replaying every keyed request, in one batch, changes nothing.
        if (keyed.length > 0) {
          const before = await loadAll(store, ids);
          const replays = await store.applyOps(keyed.map((k) => k.op));
          expect(replays).toEqual(keyed.map((k) => replayOf(k.first)));
          expect(await loadAll(store, ids)).toEqual(before);
        }
      }),
      { numRuns },
    );
  });

  it('never overdraws under many concurrent callers through group commit', async () => {
    const store = getStore();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ amount: fc.integer({ min: 1, max: 400 }), payer: fc.integer({ min: 0, max: 2 }), pending: fc.boolean() }), { minLength: 20, maxLength: 120 }),
        fc.integer({ min: 1, max: 64 }),
        async (requests, maxBatch) => {
          const system = uniqueId('sys');
          const app = uniqueId('app');
          const payers = [uniqueId('payer'), uniqueId('payer'), uniqueId('payer')];
          await store.createAccount({ id: system, ownerId: 'system', limitMsat: null, code: 'lightning' });
          await store.createAccount({ id: app, ownerId: 'app', limitMsat: m(0), code: 'app' });
          for (const payer of payers) await store.createAccount({ id: payer, ownerId: 'payer', limitMsat: m(100), code: 'payer' });
          await store.applyOps(payers.map((payer) => ({ kind: 'transfer', debitAccountId: system, creditAccountId: payer, amountMsat: m(2000), code: 'fund' })));
          const ledger = createLedger({ store, maxBatch });
          const results = await Promise.all(
            requests.map((r) => ledger.apply({ kind: 'transfer', debitAccountId: payers[r.payer] as string, creditAccountId: app, amountMsat: m(r.amount), pending: r.pending, code: 'charge' })),
          );
          await ledger.close();
          for (const [index, payer] of payers.entries()) {
            const moved = requests.reduce((sum, r, i) => {
              const result = results[i];
              return r.payer === index && result?.ok ? sum + BigInt(r.amount) : sum;
            }, 0n);
            const account = await store.getAccount(payer);
            if (!account) throw new Error('payer vanished');
            expect(account.debitsPostedMsat + account.debitsPendingMsat).toBe(moved);
            expect(moved <= 2100n).toBe(true);
            expect(availableOf(account)! >= 0n).toBe(true);
          }
          for (const result of results) if (!result.ok) expect(result.error).toBe('LimitExceeded');
          expect(await store.sumOfBalances()).toBe(0n);
        },
      ),
      { numRuns: Math.max(5, Math.floor(numRuns / 2)) },
    );
  });
}
