// One contract for RecordStore, run against SQLite (a file) and PostgreSQL (the machine's
// server, a database of its own): the composite operations that write a row and move
// money in one transaction, and the races they must settle.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { LIGHTNING_ACCOUNT_ID, SYSTEM_ACCOUNTS } from '../../src/ledger/accounts.js';
import { applyOpsInTransaction as applyPostgres, createPostgresLedgerStore, migratePostgresLedger } from '../../src/ledger/postgres/store.js';
import { applyOpsInTransaction as applySqlite, createSqliteLedgerStore, migrateSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { balanceOf, type LedgerStore, type TransferOp } from '../../src/ledger/store.js';
import { msat } from '../../src/money/msat.js';
import type { PaymentRow, RecordStore } from '../../src/records/model.js';
import { createPostgresRecordStore } from '../../src/records/postgres.js';
import { createSqliteRecordStore } from '../../src/records/sqlite.js';
import { randomHex } from '../../src/util/fingerprint.js';
import { createTestDatabase, postgresAvailable } from '../support/postgres.js';

interface Fixture {
  records: RecordStore;
  ledger: LedgerStore;
  close(): Promise<void>;
}

const usePostgres = await postgresAvailable();

const makers: { name: string; enabled: boolean; make(): Promise<Fixture> }[] = [
  {
    name: 'sqlite',
    enabled: true,
    async make() {
      const db = openSqlite({ path: path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-records-')), 'db.sqlite') });
      migrateSqliteLedger(db);
      const ledger = createSqliteLedgerStore(db);
      const records = createSqliteRecordStore(db, (tx, ops, now) => applySqlite(tx, ops, now));
      return { records, ledger, close: async () => void db.close() };
    },
  },
  {
    name: 'postgres',
    enabled: usePostgres,
    async make() {
      const database = await createTestDatabase('sluice_records');
      await migratePostgresLedger(database.sql);
      const ledger = createPostgresLedgerStore(database.sql);
      const records = await createPostgresRecordStore(database.sql, (tx, ops, now) => applyPostgres(tx, ops, now));
      return { records, ledger, close: () => database.drop() };
    },
  },
];

for (const maker of makers) {
  describe.skipIf(!maker.enabled)(`RecordStore contract: ${maker.name}`, () => {
    let f: Fixture;
    let appId: string;
    const account = () => `app:${appId}`;

    beforeAll(async () => {
      f = await maker.make();
      for (const spec of SYSTEM_ACCOUNTS) await f.ledger.createAccount(spec);
    });
    afterAll(async () => f?.close());

    async function newApp(): Promise<string> {
      const id = `app_${randomHex(6)}`;
      await f.ledger.createAccount({ id: `app:${id}`, ownerId: id, limitMsat: msat(0n), code: 'app' });
      await f.records.insertApp(
        { id, name: id, accountId: `app:${id}`, createdAt: Date.now(), revokedAt: null },
        { id: `key_${id}`, appId: id, keyHash: randomHex(32), prefix: 'sk_abc', createdAt: Date.now(), revokedAt: null },
      );
      return id;
    }

    async function fund(amount: bigint): Promise<void> {
      const hash = randomHex(32);
      await f.records.insertInvoice({
        paymentHash: hash, appId, creditAccountId: account(), preimage: randomHex(32), paymentRequest: null, amountMsat: msat(amount), description: '',
        descriptionHash: null, createdAt: Date.now(), expiresAt: Date.now() + 3600_000, status: 'creating',
        amountPaidMsat: null, paidAt: null, idempotencyKey: null, requestFingerprint: null,
      });
      await f.records.markInvoiceOpen(hash, 'lnbcrt-test');
      const settled = await f.records.settleInvoice(hash, { amountPaidMsat: msat(amount), paidAt: Date.now() }, credit(hash, amount));
      expect(settled.ok).toBe(true);
    }

    const credit = (hash: string, amount: bigint): TransferOp => ({
      kind: 'transfer', debitAccountId: LIGHTNING_ACCOUNT_ID, creditAccountId: account(), amountMsat: msat(amount), code: 'invoice', reference: hash, idempotencyKey: `invoice:${hash}`,
    });

    const paymentRow = (overrides: Partial<Omit<PaymentRow, 'debitAccountId'>> = {}): Omit<PaymentRow, 'holdTransferId'> => ({
      id: `pay_${randomHex(6)}`, appId, debitAccountId: account(), kind: 'invoice', paymentHash: randomHex(32), paymentRequest: 'lnbcrt-x', destination: '02' + '11'.repeat(32),
      amountMsat: msat(1000n), maxFeeMsat: msat(100n), feeMsat: null, status: 'in_flight', failureReason: null, preimage: null,
      idempotencyKey: `k-${randomHex(4)}`, requestFingerprint: 'fp', createdAt: Date.now(), resolvedAt: null, ...overrides,
    });
    const hold = (amount: bigint): TransferOp => ({
      kind: 'transfer', debitAccountId: account(), creditAccountId: LIGHTNING_ACCOUNT_ID, amountMsat: msat(amount), pending: true, code: 'payment',
    });
    const balances = async () => {
      const a = await f.ledger.getAccount(account());
      return { balance: balanceOf(a!), held: a!.debitsPendingMsat };
    };

    beforeAll(async () => {
      appId = await newApp();
    });

    it('keeps meta values, and setMetaIfAbsent keeps the first', async () => {
      expect(await f.records.getMeta('x')).toBeNull();
      await f.records.setMeta('x', '1');
      await f.records.setMeta('x', '2');
      expect(await f.records.getMeta('x')).toBe('2');
      expect(await f.records.setMetaIfAbsent('y', 'first')).toBe('first');
      expect(await f.records.setMetaIfAbsent('y', 'second')).toBe('first');
    });

    it('finds keys by hash with their app, and revokes apps with their keys', async () => {
      const id = await newApp();
      const keys = await f.records.listApiKeys(id);
      const found = await f.records.findApiKeyByHash(keys[0]!.keyHash);
      expect(found?.app.id).toBe(id);
      expect(await f.records.revokeApp(id, 123)).toBe(true);
      expect(await f.records.revokeApp(id, 456)).toBe(false);
      const after = await f.records.findApiKeyByHash(keys[0]!.keyHash);
      expect(after?.app.revokedAt).toBe(123);
      expect(after?.key.revokedAt).toBe(123);
    });

    it('refuses a second invoice with the same idempotency key', async () => {
      const base = {
        appId, creditAccountId: account(), preimage: randomHex(32), paymentRequest: null, amountMsat: msat(5n), description: '', descriptionHash: null,
        createdAt: 1, expiresAt: 2, status: 'creating' as const, amountPaidMsat: null, paidAt: null, idempotencyKey: 'inv-key', requestFingerprint: 'a',
      };
      expect(await f.records.insertInvoice({ ...base, paymentHash: randomHex(32) })).toBe('ok');
      expect(await f.records.insertInvoice({ ...base, paymentHash: randomHex(32) })).toBe('DuplicateKey');
    });

    it('credits a settled invoice once', async () => {
      await fund(50_000n);
      expect(await balances()).toEqual({ balance: 50_000n, held: 0n });
      const [latest] = await f.records.listInvoices(appId, 1);
      const again = await f.records.settleInvoice(latest!.paymentHash, { amountPaidMsat: msat(50_000n), paidAt: Date.now() }, credit(latest!.paymentHash, 50_000n));
      expect(again).toEqual({ ok: false, error: 'AlreadyPaid' });
      expect(await balances()).toEqual({ balance: 50_000n, held: 0n });
      expect(await f.records.settleInvoice(randomHex(32), { amountPaidMsat: msat(1n), paidAt: 1 }, credit(randomHex(32), 1n))).toEqual({ ok: false, error: 'UnknownInvoice' });
    });

    it('lists the paid invoices among many payment hashes in one call', async () => {
      await fund(1_000n);
      const [paid] = await f.records.listInvoices(appId, 1);
      const open = randomHex(32);
      await f.records.insertInvoice({
        paymentHash: open, appId, creditAccountId: account(), preimage: randomHex(32), paymentRequest: null, amountMsat: msat(5n), description: '',
        descriptionHash: null, createdAt: Date.now(), expiresAt: Date.now() + 3600_000, status: 'creating', amountPaidMsat: null, paidAt: null, idempotencyKey: null, requestFingerprint: null,
      });
      await f.records.markInvoiceOpen(open, 'lnbcrt-open');
      // More hashes than SQLite's 999-parameter limit of old: they go as one JSON array.
      const unknown = Array.from({ length: 1500 }, () => randomHex(32));
      const found = await f.records.listPaidInvoices([...unknown, open, paid!.paymentHash]);
      expect(found.map((row) => row.paymentHash)).toEqual([paid!.paymentHash]);
      expect(found[0]).toMatchObject({ status: 'paid', amountPaidMsat: 1_000n });
      expect(await f.records.listPaidInvoices([])).toEqual([]);
      expect(await f.records.listPaidInvoices([open])).toEqual([]);
    });

    it('begins a payment with its hold atomically, and writes nothing when the hold is refused', async () => {
      const before = await balances();
      const refused = await f.records.beginPayment(paymentRow({ amountMsat: msat(10_000_000n) }), hold(10_000_100n));
      expect(refused).toEqual({ ok: false, error: 'LimitExceeded' });
      expect(await f.records.listPayments(appId, 100)).toHaveLength(0);
      expect(await balances()).toEqual(before);

      const begun = await f.records.beginPayment(paymentRow(), hold(1100n));
      expect(begun.ok).toBe(true);
      expect(await balances()).toEqual({ balance: before.balance, held: 1100n });
      expect((await f.records.listInFlightPayments()).map((p) => p.id)).toContain(begun.ok && begun.payment.id);
    });

    it('posts the hold with the actual fee on success, voids it on failure, and finishes only once', async () => {
      const start = await balances();
      const ok = await f.records.beginPayment(paymentRow(), hold(1100n));
      const bad = await f.records.beginPayment(paymentRow(), hold(1100n));
      if (!ok.ok || !bad.ok) throw new Error('begin failed');
      expect(await f.records.finishPayment(ok.payment.id, {
        status: 'succeeded', feeMsat: msat(7n), failureReason: null, preimage: randomHex(32), resolvedAt: Date.now(),
        ledgerOp: { kind: 'post', pendingId: ok.payment.holdTransferId, amountMsat: msat(1007n) },
      })).toBe(true);
      expect(await f.records.finishPayment(bad.payment.id, {
        status: 'failed', feeMsat: null, failureReason: 'no_route', preimage: null, resolvedAt: Date.now(),
        ledgerOp: { kind: 'void', pendingId: bad.payment.holdTransferId },
      })).toBe(true);
      expect(await f.records.finishPayment(ok.payment.id, {
        status: 'failed', feeMsat: null, failureReason: 'late', preimage: null, resolvedAt: Date.now(),
        ledgerOp: { kind: 'void', pendingId: ok.payment.holdTransferId },
      })).toBe(false);
      expect(await balances()).toEqual({ balance: start.balance - 1007n, held: start.held });
      expect((await f.records.getPayment(ok.payment.id))).toMatchObject({ status: 'succeeded', feeMsat: 7n });
      expect((await f.records.getPayment(bad.payment.id))).toMatchObject({ status: 'failed', failureReason: 'no_route' });
      expect(await f.ledger.sumOfBalances()).toBe(0n);
    });

    it('lets only one of many concurrent payments of the same hash through', async () => {
      const paymentHash = randomHex(32);
      const before = await balances();
      const results = await Promise.all(Array.from({ length: 8 }, () => f.records.beginPayment(paymentRow({ paymentHash }), hold(1100n))));
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.error)).toEqual(Array(7).fill('HashInUse'));
      expect(await balances()).toEqual({ balance: before.balance, held: before.held + 1100n });
    });

    it('lets only one of many concurrent payments with the same idempotency key through', async () => {
      const before = await balances();
      const results = await Promise.all(Array.from({ length: 8 }, () => f.records.beginPayment(paymentRow({ idempotencyKey: 'same-key' }), hold(1100n))));
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(new Set(results.filter((r) => !r.ok).map((r) => !r.ok && r.error))).toEqual(new Set(['DuplicateKey']));
      expect((await balances()).held).toBe(before.held + 1100n);
    });

    it('allows a new attempt after a failed payment of the same hash', async () => {
      const paymentHash = randomHex(32);
      const first = await f.records.beginPayment(paymentRow({ paymentHash }), hold(1100n));
      if (!first.ok) throw new Error('begin failed');
      await f.records.finishPayment(first.payment.id, {
        status: 'failed', feeMsat: null, failureReason: 'no_route', preimage: null, resolvedAt: Date.now(),
        ledgerOp: { kind: 'void', pendingId: first.payment.holdTransferId },
      });
      const second = await f.records.beginPayment(paymentRow({ paymentHash }), hold(1100n));
      expect(second.ok).toBe(true);
      expect((await f.records.latestPaymentByHash(paymentHash))?.id).toBe(second.ok && second.payment.id);
    });

    it("lists an account's payments, any status, oldest first", async () => {
      await fund(5_000n);
      const begin = async (createdAt: number): Promise<PaymentRow> => {
        const begun = await f.records.beginPayment(paymentRow({ createdAt }), hold(1100n));
        if (!begun.ok) throw new Error('begin failed');
        return begun.payment;
      };
      // Begun out of order: the list follows created_at (older than every other test's payment).
      const newest = await begin(3);
      const oldest = await begin(1);
      const middle = await begin(2);
      await f.records.finishPayment(oldest.id, {
        status: 'succeeded', feeMsat: msat(0n), failureReason: null, preimage: randomHex(32), resolvedAt: 4,
        ledgerOp: { kind: 'post', pendingId: oldest.holdTransferId, amountMsat: msat(1000n) },
      });
      await f.records.finishPayment(middle.id, {
        status: 'failed', feeMsat: null, failureReason: 'no_route', preimage: null, resolvedAt: 5,
        ledgerOp: { kind: 'void', pendingId: middle.holdTransferId },
      });
      const listed = await f.records.listPaymentsOf(account());
      expect(listed.slice(0, 3).map((row) => [row.id, row.status])).toEqual([[oldest.id, 'succeeded'], [middle.id, 'failed'], [newest.id, 'in_flight']]);
      expect(listed.length).toBe((await f.records.listPayments(appId, 1000)).length);
      expect(listed.every((row, i) => row.debitAccountId === account() && (i === 0 || listed[i - 1]!.createdAt <= row.createdAt))).toBe(true);
      expect(await f.records.listPaymentsOf('stream:none')).toEqual([]);
    });
  });
}
