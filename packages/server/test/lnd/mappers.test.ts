/** The LND mappers, one row per case each can meet, including the lies they must catch. */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { msat } from '../../src/money/msat.js';
import { LndError } from '../../src/lightning/lnd/errors.js';
import {
  KEYSEND_RECORD_TYPE,
  invoiceFromLndInvoice,
  lndAddInvoiceRequestFromCreateInvoice,
  lndSendRequestFromKeysend,
  lndSendRequestFromPayInvoice,
  nodeInfoFromLndGetInfo,
  paymentFailureReasonFromLndFailureReason,
  paymentOutcomeFromLndPayment,
  paymentOutcomeFromLndSendError,
} from '../../src/lightning/lnd/mappers.js';
import type { LndGetInfoResponse, LndInvoice, LndPayment } from '../../src/lightning/lnd/schemas.js';
import { loadLndSwagger } from '../support/swagger.js';

const sha256Hex = (hex: string) => createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
const PREIMAGE = 'aa'.repeat(32);
const HASH = sha256Hex(PREIMAGE);
const CREATED_S = 1_767_225_600; // 2026-01-01
const NOW_MS = (CREATED_S + 10) * 1000;

function lndInvoice(overrides: Partial<LndInvoice> = {}): LndInvoice {
  return {
    r_hash: b64(HASH),
    r_preimage: b64(PREIMAGE),
    payment_request: 'lnbcrt10n1...',
    value_msat: '1000',
    creation_date: String(CREATED_S),
    settle_date: '0',
    expiry: '600',
    add_index: '3',
    settle_index: '0',
    amt_paid_msat: '0',
    state: 'OPEN',
    ...overrides,
  };
}

const settledFields: Partial<LndInvoice> = { state: 'SETTLED', settle_index: '7', settle_date: String(CREATED_S + 5), amt_paid_msat: '1200' };

describe('invoiceFromLndInvoice', () => {
  const rows: Array<{ description: string; invoice: LndInvoice; nowMs?: number; expected?: object; error?: RegExp }> = [
    {
      description: 'an open invoice hides the preimage LND returns',
      invoice: lndInvoice(),
      expected: { paymentHash: HASH, amountMsat: 1000n, state: 'open', preimage: null, settleIndex: null, amountPaidMsat: null, createdAt: CREATED_S * 1000, expiresAt: (CREATED_S + 600) * 1000 },
    },
    {
      description: 'a settled invoice carries index, time, amount paid and preimage',
      invoice: lndInvoice(settledFields),
      expected: { state: 'settled', settleIndex: '7', settledAt: (CREATED_S + 5) * 1000, amountPaidMsat: 1200n, preimage: PREIMAGE },
    },
    { description: 'ACCEPTED (held HTLCs) is still open', invoice: lndInvoice({ state: 'ACCEPTED' }), expected: { state: 'open' } },
    { description: 'OPEN past its expiry reads as expired', invoice: lndInvoice(), nowMs: (CREATED_S + 600) * 1000, expected: { state: 'expired' } },
    { description: 'CANCELED before expiry is canceled', invoice: lndInvoice({ state: 'CANCELED' }), expected: { state: 'canceled' } },
    { description: 'CANCELED after expiry is expired', invoice: lndInvoice({ state: 'CANCELED' }), nowMs: (CREATED_S + 601) * 1000, expected: { state: 'expired' } },
    { description: 'URL-safe base64 is accepted', invoice: lndInvoice({ r_hash: Buffer.from(HASH, 'hex').toString('base64url') }), expected: { paymentHash: HASH } },
    { description: 'a hash that is not 32 bytes is a lie', invoice: lndInvoice({ r_hash: b64('abcd') }), error: /r_hash is not 32 bytes/ },
    { description: 'non-canonical base64 is refused', invoice: lndInvoice({ r_hash: b64(HASH).replace(/=$/, 'B') }), error: /r_hash/ },
    { description: 'a settled invoice whose preimage does not hash to it is a lie', invoice: lndInvoice({ ...settledFields, r_preimage: b64('bb'.repeat(32)) }), error: /does not hash/ },
    { description: 'a settled invoice without a settle index is a lie', invoice: lndInvoice({ ...settledFields, settle_index: '0' }), error: /no settle_index/ },
    { description: 'an amount beyond 2^63-1 msat is refused', invoice: lndInvoice({ value_msat: '9223372036854775808' }), error: /value_msat is not an amount/ },
    { description: 'an amount with a leading zero is refused', invoice: lndInvoice({ value_msat: '01000' }), error: /value_msat/ },
    { description: 'a creation date past year 9999 is refused', invoice: lndInvoice({ creation_date: '99999999999999' }), error: /creation_date is out of range/ },
  ];
  it.each(rows)('$description', ({ invoice, nowMs, expected, error }) => {
    if (error !== undefined) {
      expect(() => invoiceFromLndInvoice(invoice, nowMs ?? NOW_MS)).toThrow(error);
      expect(() => invoiceFromLndInvoice(invoice, nowMs ?? NOW_MS)).toThrow(LndError);
    } else {
      expect(invoiceFromLndInvoice(invoice, nowMs ?? NOW_MS)).toMatchObject(expected ?? {});
    }
  });
});

describe('paymentFailureReasonFromLndFailureReason', () => {
  const expected: Record<string, string> = {
    FAILURE_REASON_NONE: 'error',
    FAILURE_REASON_TIMEOUT: 'timeout',
    FAILURE_REASON_NO_ROUTE: 'no_route',
    FAILURE_REASON_ERROR: 'error',
    FAILURE_REASON_INCORRECT_PAYMENT_DETAILS: 'incorrect_payment_details',
    FAILURE_REASON_INSUFFICIENT_BALANCE: 'insufficient_balance',
    FAILURE_REASON_CANCELED: 'error',
  };
  it('maps every value of LND’s failure_reason enum (and only those are in the table)', () => {
    const enumeration = loadLndSwagger().definition('lnrpcPaymentFailureReason').schema.enum ?? [];
    expect([...enumeration].sort()).toEqual(Object.keys(expected).sort());
    for (const value of enumeration) expect(paymentFailureReasonFromLndFailureReason(value)).toBe(expected[value]);
  });
  it('reads a reason from a newer LND as error: the payment still failed', () => {
    expect(paymentFailureReasonFromLndFailureReason('FAILURE_REASON_SOMETHING_NEW')).toBe('error');
  });
});

describe('paymentOutcomeFromLndPayment', () => {
  const base: LndPayment = { payment_hash: HASH, payment_preimage: '', value_msat: '5000', fee_msat: '3', status: 'IN_FLIGHT', failure_reason: 'FAILURE_REASON_NONE' };
  const rows: Array<{ description: string; payment: LndPayment; expected?: object | null; error?: RegExp }> = [
    { description: 'IN_FLIGHT is not final', payment: base, expected: null },
    { description: 'INITIATED is not final', payment: { ...base, status: 'INITIATED' }, expected: null },
    {
      description: 'SUCCEEDED with a preimage that hashes to the payment hash',
      payment: { ...base, status: 'SUCCEEDED', payment_preimage: PREIMAGE },
      expected: { status: 'succeeded', paymentHash: HASH, preimage: PREIMAGE, amountMsat: 5000n, feeMsat: 3n },
    },
    {
      description: 'FAILED with its reason',
      payment: { ...base, status: 'FAILED', failure_reason: 'FAILURE_REASON_NO_ROUTE' },
      expected: { status: 'failed', paymentHash: HASH, reason: 'no_route', detail: 'LND: FAILURE_REASON_NO_ROUTE' },
    },
    { description: 'SUCCEEDED with a wrong preimage is a lie', payment: { ...base, status: 'SUCCEEDED', payment_preimage: 'bb'.repeat(32) }, error: /does not hash/ },
    { description: 'SUCCEEDED without a preimage is a lie', payment: { ...base, status: 'SUCCEEDED' }, error: /does not hash/ },
    { description: 'an update about another payment is a lie', payment: { ...base, payment_hash: 'cc'.repeat(32) }, error: /another payment hash/ },
    { description: 'a fee that is not an amount', payment: { ...base, status: 'SUCCEEDED', payment_preimage: PREIMAGE, fee_msat: '-1' }, error: /fee_msat/ },
  ];
  it.each(rows)('$description', ({ payment, expected, error }) => {
    if (error !== undefined) expect(() => paymentOutcomeFromLndPayment(payment, HASH)).toThrow(error);
    else expect(paymentOutcomeFromLndPayment(payment, HASH)).toEqual(expected === null ? null : expect.objectContaining(expected));
  });
});

describe('paymentOutcomeFromLndSendError', () => {
  const rows = [
    { description: 'already paid (AlreadyExists)', status: { code: 6, message: 'invoice is already paid' }, expected: { status: 'failed', reason: 'already_paid' } },
    { description: 'in transition: an earlier attempt may still pay', status: { code: 6, message: 'payment is in transition' }, expected: { status: 'unknown' } },
    { description: 'expired invoice', status: { code: 2, message: 'invoice expired. Valid until 2026-01-01 00:00:00 +0000 UTC' }, expected: { status: 'failed', reason: 'invoice_expired' } },
    { description: 'amount on an invoice that has one', status: { code: 2, message: 'amount must not be specified when paying a non-zero amount invoice' }, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'no amount on an invoice without one', status: { code: 2, message: 'amount must be specified when paying a zero amount invoice' }, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'invoice for another network', status: { code: 2, message: "invoice not for current active network 'regtest'" }, expected: { status: 'failed', reason: 'incorrect_payment_details' } },
    { description: 'InvalidArgument', status: { code: 3, message: 'bad request' }, expected: { status: 'failed', reason: 'error' } },
    { description: 'anything else stays unknown', status: { code: 2, message: 'routerrpc server shutting down' }, expected: { status: 'unknown' } },
  ];
  it.each(rows)('$description', ({ status, expected }) => {
    expect(paymentOutcomeFromLndSendError(status, HASH)).toMatchObject({ ...expected, paymentHash: HASH, detail: `LND: ${status.message}` });
  });
});

describe('nodeInfoFromLndGetInfo', () => {
  const info = (network: string, chains = [{ network }]): LndGetInfoResponse => ({
    identity_pubkey: '02' + 'ab'.repeat(32),
    alias: 'node',
    block_height: 800_000,
    synced_to_chain: true,
    chains,
  });
  it.each([
    ['mainnet', 'mainnet'],
    ['testnet', 'testnet'],
    ['testnet4', 'testnet'],
    ['signet', 'signet'],
    ['regtest', 'regtest'],
  ])('network %s is %s', (lnd, ours) => {
    expect(nodeInfoFromLndGetInfo(info(lnd))).toEqual({ backend: 'lnd', network: ours, pubkey: '02' + 'ab'.repeat(32), alias: 'node', blockHeight: 800_000, syncedToChain: true });
  });
  it('refuses simnet and an empty chain list', () => {
    expect(() => nodeInfoFromLndGetInfo(info('simnet'))).toThrow(/unsupported network/);
    expect(() => nodeInfoFromLndGetInfo(info('regtest', []))).toThrow(/no chain/);
  });
});

describe('request mappers produce bodies LND describes', () => {
  const swagger = loadLndSwagger();
  const url = (path: string) => new URL(path, 'https://lnd.invalid');
  const preimage = randomBytes(32).toString('hex');
  const rows = [
    { description: 'add invoice with memo and preimage', path: '/v1/invoices', body: lndAddInvoiceRequestFromCreateInvoice({ amountMsat: msat(1500), description: 'coffee', expiryS: 600, preimage }) },
    { description: 'add invoice with description hash', path: '/v1/invoices', body: lndAddInvoiceRequestFromCreateInvoice({ amountMsat: msat(0), descriptionHash: HASH, expiryS: 60 }) },
    { description: 'pay an invoice', path: '/v2/router/send', body: lndSendRequestFromPayInvoice({ paymentRequest: 'lnbcrt1...', feeLimitMsat: msat(10), timeoutS: 30 }) },
    { description: 'pay an invoice without an amount', path: '/v2/router/send', body: lndSendRequestFromPayInvoice({ paymentRequest: 'lnbcrt1...', amountMsat: msat(7), feeLimitMsat: msat(10), timeoutS: 30 }) },
    { description: 'keysend', path: '/v2/router/send', body: lndSendRequestFromKeysend({ destinationPubkey: '03' + 'cd'.repeat(32), amountMsat: msat(4000), feeLimitMsat: msat(10), timeoutS: 30, preimage }) },
  ];
  it.each(rows)('$description', ({ path, body }) => {
    expect(swagger.checkRequest('POST', url(path), JSON.parse(JSON.stringify(body)))).toEqual([]);
  });

  it('keysend carries the preimage under record 5482373484 and its hash as payment_hash', () => {
    const body = lndSendRequestFromKeysend({ destinationPubkey: '03' + 'cd'.repeat(32), amountMsat: msat(4000), feeLimitMsat: msat(10), timeoutS: 30, preimage });
    expect(KEYSEND_RECORD_TYPE).toBe('5482373484');
    expect(body.dest_custom_records).toEqual({ '5482373484': b64(preimage) });
    expect(body.payment_hash).toBe(b64(sha256Hex(preimage)));
    expect(body.dest).toBe(b64('03' + 'cd'.repeat(32)));
  });
});
