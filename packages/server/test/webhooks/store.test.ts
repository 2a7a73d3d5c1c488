// The webhook outbox store, one contract on SQLite (a file) and PostgreSQL (a database of
// its own): fan-out by event type in the event's transaction, idempotent events, leases,
// per-endpoint limits, guarded outcomes, disabling and parking, deletes, and the
// in-transaction emit other modules use (rolled back with their transaction).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite, type SqliteDatabase } from '../../src/db/sqlite.js';
import type { PostgresSql, PostgresTransaction } from '../../src/db/postgres.js';
import type { AttemptOutcome, EndpointRow, EventRow } from '../../src/webhooks/model.js';
import {
  createPostgresWebhookStore, createSqliteWebhookStore, eventStatements, PARKED_AT, runPostgresStatements, runSqliteStatements,
  type WebhookStore,
} from '../../src/webhooks/store.js';
import { randomHex } from '../../src/util/fingerprint.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';

const usePostgres = await postgresAvailable();

interface Fixture {
  store: WebhookStore;
  /** Runs the statements in a transaction that then rolls back or commits. */
  inTransaction(statements: ReturnType<typeof eventStatements>, commit: boolean): Promise<void>;
  close(): Promise<void>;
}

class Rollback extends Error {}

const makers: { name: string; enabled: boolean; make(): Promise<Fixture> }[] = [
  {
    name: 'sqlite',
    enabled: true,
    async make() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-webhooks-'));
      const db: SqliteDatabase = openSqlite({ path: path.join(dir, 'db.sqlite') });
      const store = createSqliteWebhookStore(db);
      return {
        store,
        async inTransaction(statements, commit) {
          try {
            db.transaction(() => {
              runSqliteStatements(db, statements);
              if (!commit) throw new Rollback();
            }).immediate();
          } catch (error) {
            if (!(error instanceof Rollback)) throw error;
          }
        },
        async close() {
          db.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'postgres',
    enabled: usePostgres,
    async make() {
      const database: TestDatabase = await createTestDatabase('sluice_webhooks');
      const sql: PostgresSql = database.sql;
      const store = await createPostgresWebhookStore(sql);
      return {
        store,
        async inTransaction(statements, commit) {
          try {
            await sql.begin(async (tx) => {
              await runPostgresStatements(tx as PostgresTransaction, statements);
              if (!commit) throw new Rollback();
            });
          } catch (error) {
            if (!(error instanceof Rollback)) throw error;
          }
        },
        close: () => database.drop(),
      };
    },
  },
];

const T0 = Date.UTC(2026, 0, 1);

function endpoint(appId: string, types: string[], overrides: Partial<EndpointRow> = {}): EndpointRow {
  return {
    id: 'we_' + randomHex(8), appId, url: 'http://127.0.0.1:1/hook', description: '', eventTypes: types, secret: 'whsec_test',
    previousSecret: null, previousSecretExpiresAt: null, status: 'enabled', disabledReason: null, consecutiveFailures: 0,
    failingSince: null, createdAt: T0, updatedAt: T0, ...overrides,
  };
}

function event(appId: string, type: string, at = T0 + 1000): EventRow {
  const id = 'evt_' + randomHex(12);
  return { id, appId, type, sourceKey: null, payload: JSON.stringify({ id, type }), createdAt: at };
}

const fanOut = { nextAttemptAt: T0 + 1000, deadlineAt: T0 + 1000 + 3 * 86_400_000 };

function failure(deliveryId: string, endpointId: string, attempt: number, at: number, nextAttemptAt: number | null): AttemptOutcome {
  return {
    deliveryId, endpointId, delivered: false, nextAttemptAt,
    attempt: { deliveryId, attempt, at, durationMs: 3, statusCode: 500, error: 'HTTP 500', responseExcerpt: 'no' },
  };
}

const claimAll = (store: WebhookStore, now: number, perEndpoint = 100) =>
  store.claimDue({ now, leaseUntil: now + 70_000, limit: 100, perEndpoint, skipEndpoints: [], skipIds: [] });

for (const maker of makers) {
  describe.skipIf(!maker.enabled)(`webhook store on ${maker.name}`, () => {
    let fixture: Fixture;
    beforeAll(async () => {
      fixture = await maker.make();
    });
    afterAll(async () => {
      await fixture?.close();
    });

    it('fans an event out to the enabled endpoints of its app that asked for its type, in one write', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const paid = endpoint(app, ['invoice.paid']);
      const star = endpoint(app, ['*']);
      const other = endpoint(app, ['payment.failed']);
      const disabled = endpoint(app, ['*'], { status: 'disabled', disabledReason: 'manual' });
      const later = endpoint(app, ['*'], { createdAt: T0 + 5000 }); // created after the event is written
      const foreign = endpoint('app_' + randomHex(4), ['*']);
      for (const row of [paid, star, other, disabled, later, foreign]) await store.insertEndpoint(row);

      const first = event(app, 'invoice.paid');
      expect(await store.insertEvent(first, fanOut)).toBe(true);
      const deliveredTo = async (endpointId: string) => store.listDeliveries(endpointId, { limit: 10 });
      expect((await deliveredTo(paid.id)).map((d) => d.eventId)).toEqual([first.id]);
      expect((await deliveredTo(star.id)).map((d) => d.eventId)).toEqual([first.id]);
      for (const none of [other, disabled, later, foreign]) expect(await deliveredTo(none.id)).toEqual([]);
      const [delivery] = await deliveredTo(paid.id);
      expect(delivery).toMatchObject({ status: 'pending', attempts: 0, nextAttemptAt: fanOut.nextAttemptAt, deadlineAt: fanOut.deadlineAt, manual: false });

      // The same event again (a listener and the catch-up racing): nothing new.
      expect(await store.insertEvent(first, fanOut)).toBe(false);
      expect(await deliveredTo(paid.id)).toHaveLength(1);
      expect(await store.getEvent(app, first.id)).toMatchObject({ id: first.id, type: 'invoice.paid' });
      expect(await store.getEvent('someone else', first.id)).toBeNull();
    });

    it('a source key makes one event of one cause', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const a = { ...event(app, 'invoice.paid'), sourceKey: 'invoice.paid:abc' + randomHex(4) };
      expect(await store.insertEvent(a, fanOut)).toBe(true);
      const b = { ...event(app, 'invoice.paid'), sourceKey: a.sourceKey };
      expect(await store.insertEvent(b, fanOut)).toBe(false);
      expect((await store.listEvents(app, 10)).map((row) => row.id)).toEqual([a.id]);
    });

    it('writes an event inside a caller transaction, and nothing when that transaction rolls back', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const hook = endpoint(app, ['subscription.renewed']);
      await store.insertEndpoint(hook);
      const rolledBack = event(app, 'subscription.renewed');
      await fixture.inTransaction(eventStatements(rolledBack, fanOut), false);
      expect(await store.getEvent(app, rolledBack.id)).toBeNull();
      expect(await store.listDeliveries(hook.id, { limit: 10 })).toEqual([]);
      const committed = event(app, 'subscription.renewed');
      await fixture.inTransaction(eventStatements(committed, fanOut), true);
      expect(await store.getEvent(app, committed.id)).not.toBeNull();
      expect((await store.listDeliveries(hook.id, { limit: 10 })).map((d) => d.eventId)).toEqual([committed.id]);
    });

    it('claims due deliveries once (leases), at most N per endpoint, and records guarded outcomes', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const busy = endpoint(app, ['*']);
      const quiet = endpoint(app, ['*']);
      await store.insertEndpoint(busy);
      for (let i = 0; i < 5; i += 1) await store.insertEvent(event(app, 'payment.failed'), fanOut);
      await store.insertEndpoint({ ...quiet, createdAt: T0 + 2000 });
      // Written after the second endpoint exists, so both get it.
      await store.insertEvent(event(app, 'payment.failed', T0 + 3000), { ...fanOut, nextAttemptAt: T0 + 3000 });
      const now = T0 + 3000;

      const claimed = (await claimAll(store, now, 2)).filter((c) => c.delivery.appId === app);
      const perEndpoint = (id: string) => claimed.filter((c) => c.delivery.endpointId === id).length;
      expect(perEndpoint(busy.id)).toBe(2);
      expect(perEndpoint(quiet.id)).toBe(1);
      expect(claimed[0]?.payload).toContain('payment.failed');
      // Leased: not claimable again until the lease ends.
      const again = (await claimAll(store, now, 100)).filter((c) => c.delivery.appId === app);
      expect(again.map((c) => c.delivery.id).some((id) => claimed.some((c) => c.delivery.id === id))).toBe(false);

      const first = claimed[0]!;
      const outcome = failure(first.delivery.id, first.delivery.endpointId, 1, now, now + 5000);
      await store.recordOutcomes([outcome], now, { failures: 100, periodMs: 0 });
      // The same attempt reported twice (a lost lease) is not counted twice.
      await store.recordOutcomes([outcome], now, { failures: 100, periodMs: 0 });
      const [log] = await store.listAttempts([first.delivery.id]).then((rows) => [rows]);
      expect(log).toHaveLength(1);
      const after = await store.getDelivery(app, first.delivery.id);
      expect(after).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: now + 5000, leasedUntil: null, lastStatusCode: 500 });
      expect((await store.getEndpoint(app, first.delivery.endpointId))?.consecutiveFailures).toBe(1);

      // Delivered on the second attempt: the failure streak resets.
      await store.recordOutcomes([{
        deliveryId: first.delivery.id, endpointId: first.delivery.endpointId, delivered: true, nextAttemptAt: null,
        attempt: { deliveryId: first.delivery.id, attempt: 2, at: now + 5000, durationMs: 2, statusCode: 204, error: null, responseExcerpt: null },
      }], now + 5000, { failures: 100, periodMs: 0 });
      expect(await store.getDelivery(app, first.delivery.id)).toMatchObject({ status: 'delivered', attempts: 2, deliveredAt: now + 5000 });
      expect((await store.getEndpoint(app, first.delivery.endpointId))?.consecutiveFailures).toBe(0);
      expect((await store.listAttempts([first.delivery.id])).map((a) => a.statusCode)).toEqual([500, 204]);
    });

    it('fails a delivery whose window closed, disables a failing endpoint and parks its queue; enabling resumes it', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const hook = endpoint(app, ['*']);
      await store.insertEndpoint(hook);
      await store.insertEvent(event(app, 'stream.closed'), fanOut);
      await store.insertEvent(event(app, 'stream.closed'), fanOut);
      const [a, b] = await store.listDeliveries(hook.id, { limit: 10 });
      const policy = { failures: 2, periodMs: 60_000 };
      let now = fanOut.nextAttemptAt;
      expect(await store.recordOutcomes([failure(a!.id, hook.id, 1, now, null)], now, policy)).toEqual([]);
      expect((await store.getDelivery(app, a!.id))?.status).toBe('failed');
      // Two failures but within the period: still enabled.
      expect(await store.recordOutcomes([failure(b!.id, hook.id, 1, now, now + 1000)], now, policy)).toEqual([]);
      now += 61_000;
      expect(await store.recordOutcomes([failure(b!.id, hook.id, 2, now, now + 1000)], now, policy)).toEqual([hook.id]);
      const disabled = await store.getEndpoint(app, hook.id);
      expect(disabled).toMatchObject({ status: 'disabled', disabledReason: 'failing', consecutiveFailures: 3 });
      expect((await store.getDelivery(app, b!.id))?.nextAttemptAt).toBe(PARKED_AT);
      await store.insertEvent(event(app, 'stream.closed'), fanOut);
      expect(await store.listDeliveries(hook.id, { limit: 10 })).toHaveLength(2);

      await store.updateEndpoint({ ...disabled!, status: 'enabled', disabledReason: null, consecutiveFailures: 0, failingSince: null, updatedAt: now }, false);
      expect((await store.getDelivery(app, b!.id))?.nextAttemptAt).toBe(now);
      expect((await claimAll(store, now)).map((c) => c.delivery.id)).toContain(b!.id);
    });

    it('prunes finished deliveries and their attempts, and events nothing waits for, never pending ones', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const hook = endpoint(app, ['*']);
      await store.insertEndpoint(hook);
      const old = event(app, 'invoice.paid', T0 + 1000);
      const waiting = event(app, 'invoice.paid', T0 + 1000);
      const orphan = event(app, 'invoice.paid', T0 + 1000);
      await store.insertEvent(old, fanOut);
      await store.insertEvent(waiting, fanOut);
      const [done] = await store.listDeliveries(hook.id, { limit: 10, eventId: old.id });
      await store.recordOutcomes([{
        deliveryId: done!.id, endpointId: hook.id, delivered: true, nextAttemptAt: null,
        attempt: { deliveryId: done!.id, attempt: 1, at: T0 + 2000, durationMs: 1, statusCode: 200, error: null, responseExcerpt: null },
      }], T0 + 2000, { failures: 100, periodMs: 0 });
      await store.insertEvent(orphan, { ...fanOut, nextAttemptAt: T0 - 1 }); // before the endpoint existed: no delivery

      let pruned = { deliveries: 0, events: 0 };
      for (let round = 0; round < 10; round += 1) {
        const step = await store.prune(T0 + 10_000, 1000);
        pruned = { deliveries: pruned.deliveries + step.deliveries, events: pruned.events + step.events };
        if (step.deliveries === 0 && step.events === 0) break;
      }
      expect(pruned.deliveries).toBeGreaterThanOrEqual(1);
      expect(await store.getDelivery(app, done!.id)).toBeNull();
      expect(await store.listAttempts([done!.id])).toEqual([]);
      expect(await store.getEvent(app, old.id)).toBeNull();
      expect(await store.getEvent(app, orphan.id)).toBeNull();
      // Still pending: kept with its event.
      expect(await store.listDeliveries(hook.id, { limit: 10, eventId: waiting.id })).toHaveLength(1);
      expect(await store.getEvent(app, waiting.id)).not.toBeNull();
    });

    it('deletes an endpoint softly and cancels its pending deliveries', async () => {
      const { store } = fixture;
      const app = 'app_' + randomHex(4);
      const hook = endpoint(app, ['*']);
      await store.insertEndpoint(hook);
      await store.insertEvent(event(app, 'invoice.paid'), fanOut);
      expect(await store.countEndpoints(app)).toBe(1);
      expect(await store.deleteEndpoint(app, hook.id, T0 + 9000)).toBe(true);
      expect(await store.deleteEndpoint(app, hook.id, T0 + 9000)).toBe(false);
      expect(await store.getEndpoint(app, hook.id)).toBeNull();
      expect(await store.countEndpoints(app)).toBe(0);
      expect((await store.listDeliveries(hook.id, { limit: 10 })).map((d) => d.status)).toEqual(['cancelled']);
    });
  });
}

describe.skipIf(!usePostgres)('webhook store on postgres, two processes', () => {
  it('never leases one delivery to two processes claiming at the same time', async () => {
    const database = await createTestDatabase('sluice_webhooks_race');
    const second = (await import('../../src/db/postgres.js')).connectPostgres({ url: database.url });
    try {
      const a = await createPostgresWebhookStore(database.sql);
      const b = await createPostgresWebhookStore(second);
      const app = 'app_race';
      const hooks = [endpoint(app, ['*']), endpoint(app, ['*']), endpoint(app, ['*'])];
      for (const hook of hooks) await a.insertEndpoint(hook);
      for (let i = 0; i < 100; i += 1) await a.insertEvent(event(app, 'invoice.paid'), fanOut);
      const now = fanOut.nextAttemptAt;
      const taken: string[][] = [[], []];
      // Both pick the oldest due rows, so one often loses the race for a pick (and claims
      // nothing that round); it must never win a row the other one won.
      let rounds = 0;
      await Promise.all([a, b].map(async (store, index) => {
        while (taken[0]!.length + taken[1]!.length < 300 && rounds < 2000) {
          rounds += 1;
          const claimed = await store.claimDue({ now, leaseUntil: now + 70_000, limit: 7, perEndpoint: 3, skipEndpoints: [], skipIds: [] });
          taken[index]!.push(...claimed.map((c) => c.delivery.id));
        }
      }));
      const all = [...taken[0]!, ...taken[1]!];
      expect(all).toHaveLength(300);
      expect(new Set(all).size).toBe(300);
    } finally {
      await second.end({ timeout: 5 });
      await database.drop();
    }
  });
});
