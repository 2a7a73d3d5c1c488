// Pure parts of webhooks, table-driven: the backoff schedule, URL and event-type checks,
// the signature header (Sluice's own verifier; the independent Python one runs against
// real deliveries in delivery.test.ts), and the event data built from records at catch-up.
import { describe, expect, it } from 'vitest';
import { backoffMs, checkEventTypes, checkUrl, DEFAULT_WEBHOOK_SETTINGS, eventIdFor } from '../../src/webhooks/service.js';
import { newSecret, signatureHeader, signatureHex, verifySignature } from '../../src/webhooks/signing.js';
import { invoicePaidEvent, paymentFromRecord, paymentResolvedEvent } from '../../src/webhooks/payloads.js';
import { invoiceJson } from '../../src/invoices/routes.js';
import { invoiceViewFromRow } from '../../src/invoices/service.js';
import { paymentJson } from '../../src/payments/routes.js';
import { paymentViewFromRow } from '../../src/payments/service.js';
import type { InvoiceRow, PaymentRow } from '../../src/records/model.js';
import { msat } from '../../src/money/msat.js';

describe('backoff', () => {
  const settings = { backoffBaseMs: 5000, backoffMaxMs: 3_600_000 };
  it('doubles from 5 s, is capped at the maximum, and jitters between half and all of it', () => {
    expect([1, 2, 3, 4].map((attempt) => backoffMs(attempt, settings, 1))).toEqual([5000, 10_000, 20_000, 40_000]);
    expect([1, 2, 3].map((attempt) => backoffMs(attempt, settings, 0))).toEqual([2500, 5000, 10_000]);
    expect(backoffMs(11, settings, 1)).toBe(3_600_000);
    expect(backoffMs(500, settings, 0.5)).toBe(2_700_000);
  });
  it('spans the three-day window in a bounded number of attempts', () => {
    for (const random of [0, 0.5, 1]) {
      let elapsed = 0;
      let attempts = 1;
      while (elapsed + backoffMs(attempts, settings, random) <= DEFAULT_WEBHOOK_SETTINGS.retryWindowMs) {
        elapsed += backoffMs(attempts, settings, random);
        attempts += 1;
      }
      expect(attempts).toBeGreaterThan(70);
      expect(attempts).toBeLessThan(160);
    }
  });
});

describe('checkUrl', () => {
  const rows: { url: string; allowPrivate: boolean; error?: string }[] = [
    { url: 'https://example.com/hook', allowPrivate: false },
    { url: 'http://127.0.0.1:9000/hook', allowPrivate: true },
    { url: 'http://127.0.0.1:9000/hook', allowPrivate: false, error: 'UrlNotPublic' },
    { url: 'http://[fe80::1]/hook', allowPrivate: false, error: 'UrlNotPublic' },
    { url: 'http://192.168.1.10/hook', allowPrivate: false, error: 'UrlNotPublic' },
    { url: 'http://LOCALHOST./hook', allowPrivate: false, error: 'UrlNotPublic' },
    { url: 'http://8.8.8.8/hook', allowPrivate: false },
    { url: 'ws://example.com/hook', allowPrivate: true, error: 'UrlScheme' },
    { url: 'javascript:alert(1)', allowPrivate: true, error: 'UrlScheme' },
    { url: '/relative', allowPrivate: true, error: 'UrlInvalid' },
    { url: 'https://a:b@example.com/', allowPrivate: true, error: 'UrlInvalid' },
    { url: 'https://example.com/#x', allowPrivate: true, error: 'UrlInvalid' },
  ];
  for (const row of rows) {
    it(`${row.url} (${row.allowPrivate ? 'allow' : 'block'}) -> ${row.error ?? 'ok'}`, () => {
      const result = checkUrl(row.url, row.allowPrivate);
      if (row.error) expect(result).toMatchObject({ ok: false, error: row.error });
      else expect(result.ok).toBe(true);
    });
  }
});

describe('checkEventTypes', () => {
  it('sorts and deduplicates, lets "*" stand for all, refuses unknown and empty lists', () => {
    expect(checkEventTypes(['stream.closed', 'invoice.paid', 'invoice.paid'])).toEqual({ ok: true, types: ['invoice.paid', 'stream.closed'] });
    expect(checkEventTypes(['invoice.paid', '*'])).toEqual({ ok: true, types: ['*'] });
    expect(checkEventTypes(['subscription.balance_low'])).toEqual({ ok: true, types: ['subscription.balance_low'] });
    expect(checkEventTypes(['invoice.created'])).toMatchObject({ ok: false, error: 'EventTypeUnknown' });
    expect(checkEventTypes([])).toMatchObject({ ok: false, error: 'EventTypeUnknown' });
  });
});

describe('event ids', () => {
  it('derive from the cause when there is one, and are random otherwise', () => {
    expect(eventIdFor('invoice.paid:ab')).toBe(eventIdFor('invoice.paid:ab'));
    expect(eventIdFor('invoice.paid:ab')).not.toBe(eventIdFor('invoice.paid:ac'));
    expect(eventIdFor(undefined)).not.toBe(eventIdFor(undefined));
    expect(eventIdFor(undefined)).toMatch(/^evt_[0-9a-f]{24}$/);
  });
});

describe('signatures', () => {
  const secret = newSecret();
  const body = '{"id":"evt_1","type":"invoice.paid"}';
  const header = signatureHeader([secret], 1_800_000_000, body);
  const rows: { description: string; input: Parameters<typeof verifySignature>[0]; expected: ReturnType<typeof verifySignature> }[] = [
    { description: 'valid', input: { secret, header, body, nowS: 1_800_000_010 }, expected: { ok: true, timestampS: 1_800_000_000 } },
    { description: 'tampered body', input: { secret, header, body: body + ' ', nowS: 1_800_000_000 }, expected: { ok: false, reason: 'mismatch' } },
    { description: 'other secret', input: { secret: newSecret(), header, body, nowS: 1_800_000_000 }, expected: { ok: false, reason: 'mismatch' } },
    { description: 'replayed late', input: { secret, header, body, nowS: 1_800_000_301 }, expected: { ok: false, reason: 'too_old' } },
    { description: 'from the future', input: { secret, header, body, nowS: 1_799_999_699 }, expected: { ok: false, reason: 'too_new' } },
    { description: 'no timestamp', input: { secret, header: header.replace(/^t=\d+,/, ''), body, nowS: 1_800_000_000 }, expected: { ok: false, reason: 'malformed' } },
    { description: 'timestamp changed', input: { secret, header: header.replace('t=1800000000', 't=1800000001'), body, nowS: 1_800_000_000 }, expected: { ok: false, reason: 'mismatch' } },
  ];
  for (const row of rows) {
    it(row.description, () => expect(verifySignature(row.input)).toEqual(row.expected));
  }
  it('during a rotation carries one v1 per secret, each verifying on its own', () => {
    const old = newSecret();
    const both = signatureHeader([secret, old], 1_800_000_000, body);
    expect(both).toBe(`t=1800000000,v1=${signatureHex(secret, 1_800_000_000, body)},v1=${signatureHex(old, 1_800_000_000, body)}`);
    for (const key of [secret, old]) expect(verifySignature({ secret: key, header: both, body, nowS: 1_800_000_000 }).ok).toBe(true);
  });
});

describe('payloads from records (the catch-up path)', () => {
  const T = Date.UTC(2026, 0, 1);
  const payment = (overrides: Partial<PaymentRow>): PaymentRow => ({
    id: 'pay_1', appId: 'app_1', debitAccountId: 'app:app_1', kind: 'keysend', paymentHash: 'ab'.repeat(32), paymentRequest: null,
    destination: '02' + 'cd'.repeat(32), amountMsat: msat(5000n), maxFeeMsat: msat(10_000n), feeMsat: null, status: 'failed',
    failureReason: 'no_route', preimage: 'ef'.repeat(32), holdTransferId: 'tr_1', idempotencyKey: 'k', requestFingerprint: 'f',
    createdAt: T, resolvedAt: T + 1000, ...overrides,
  });
  const rows = [
    { description: 'a failed keysend keeps its preimage secret', args: payment({}), expected: { type: 'payment.failed', preimage: undefined } },
    { description: 'a succeeded payment shows its preimage, the proof of payment', args: payment({ status: 'succeeded', feeMsat: msat(3n), failureReason: null }), expected: { type: 'payment.succeeded', preimage: 'ef'.repeat(32) } },
  ];
  for (const { description, args, expected } of rows) {
    it(description, () => {
      const event = paymentResolvedEvent(paymentFromRecord(args)!);
      expect(event.type).toBe(expected.type);
      expect(event.data.preimage).toBe(expected.preimage);
      // Field for field what GET /v1/payments/{hash} answers for the record.
      expect(event.data).toEqual(paymentJson(paymentViewFromRow(args)));
    });
  }
  it('a payment still in flight has no event', () => {
    expect(paymentFromRecord(payment({ status: 'in_flight' }))).toBeNull();
  });
  it('a paid invoice\'s data is what GET /v1/invoices/{hash} answers, whenever it is built', () => {
    const invoice: InvoiceRow = {
      paymentHash: '12'.repeat(32), appId: 'app_1', creditAccountId: 'app:app_1', preimage: '34'.repeat(32), paymentRequest: 'lnbcrt1...',
      amountMsat: msat(2000n), description: 'top-up', descriptionHash: null, createdAt: T, expiresAt: T + 60_000, status: 'paid',
      amountPaidMsat: msat(2000n), paidAt: T + 30_000, idempotencyKey: null, requestFingerprint: null,
    };
    const event = invoicePaidEvent(invoice);
    expect(event.data).toEqual(invoiceJson(invoiceViewFromRow(invoice, T + 86_400_000)));
    expect(event.data).toMatchObject({ status: 'paid', amount_paid_msat: '2000', payment_request: 'lnbcrt1...' });
    expect(() => invoicePaidEvent({ ...invoice, status: 'open' })).toThrow();
  });
});
