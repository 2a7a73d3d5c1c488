/** The strict checker of requests and responses against LND's REST description. */
import { describe, expect, it } from 'vitest';
import { loadLndSwagger } from '../support/swagger.js';

const swagger = loadLndSwagger();
const url = (path: string) => new URL(path, 'https://lnd.invalid');

describe('checkRequest', () => {
  const rows: Array<{ description: string; method: string; path: string; body?: unknown; violations: RegExp[] }> = [
    { description: 'getinfo', method: 'GET', path: '/v1/getinfo', violations: [] },
    { description: 'a path LND does not have', method: 'GET', path: '/v1/getinfo2', violations: [/LND has no such path/] },
    { description: 'a method LND does not have on the path', method: 'DELETE', path: '/v1/getinfo', violations: [/LND has no such path/] },
    { description: 'an undescribed query parameter', method: 'GET', path: '/v1/invoices/subscribe?settle_index=3&since=4', violations: [/query parameter since is not described/] },
    { description: 'a described query parameter of the wrong type', method: 'GET', path: '/v1/invoices/subscribe?settle_index=-3', violations: [/not a uint64/] },
    { description: 'a boolean query parameter', method: 'GET', path: '/v2/router/track/qqqq?no_inflight_updates=yes', violations: [/not a boolean/] },
    { description: 'a body where LND takes none', method: 'GET', path: '/v1/getinfo', body: {}, violations: [/takes no request body/] },
    { description: 'add invoice without a body', method: 'POST', path: '/v1/invoices', violations: [/requires a request body/] },
    { description: 'add invoice with described fields', method: 'POST', path: '/v1/invoices', body: { value_msat: '1000', memo: 'x', expiry: '60', r_preimage: 'qqqq' }, violations: [] },
    { description: 'an undescribed body field', method: 'POST', path: '/v1/invoices', body: { value_msat: '1000', amount_msat: '1000' }, violations: [/field "amount_msat" is not described/] },
    { description: 'an int64 sent as a JSON number', method: 'POST', path: '/v1/invoices', body: { value_msat: 1000 }, violations: [/expected a string/] },
    { description: 'bytes that are not base64', method: 'POST', path: '/v1/invoices', body: { r_preimage: 'not base64!' }, violations: [/not base64/] },
    { description: 'an int32 as a string', method: 'POST', path: '/v2/router/send', body: { timeout_seconds: '30' }, violations: [/expected an integer/] },
    { description: 'custom records: map of bytes', method: 'POST', path: '/v2/router/send', body: { dest_custom_records: { '5482373484': 'qqqq' } }, violations: [] },
    { description: 'custom records: a value that is not bytes', method: 'POST', path: '/v2/router/send', body: { dest_custom_records: { '5482373484': 7 } }, violations: [/expected a string/] },
    { description: 'a literal path wins over a template', method: 'GET', path: '/v1/invoices/subscribe', violations: [] },
  ];
  it.each(rows)('$description', ({ method, path, body, violations }) => {
    const found = swagger.checkRequest(method, url(path), body);
    expect(found.length).toBe(violations.length);
    violations.forEach((pattern, index) => expect(found[index]).toMatch(pattern));
  });

  it('finds the operation and its path parameters', () => {
    const match = swagger.findOperation('GET', '/v2/router/track/abc%3D');
    expect(match?.operation.operationId).toBe('Router_TrackPaymentV2');
    expect(match?.pathParams).toEqual({ payment_hash: 'abc=' });
    expect(match?.streamed).toBe(true);
    expect(swagger.findOperation('GET', '/v1/invoice/ab')?.streamed).toBe(false);
  });
});

describe('checkResponse', () => {
  const send = swagger.findOperation('POST', '/v2/router/send');
  const lookup = swagger.findOperation('GET', '/v1/invoice/ab');
  if (send === null || lookup === null) throw new Error('LND description lacks the payment or look-up operation');
  const rows = [
    { description: 'a streamed result', match: send, status: 200, body: { result: { payment_hash: 'ab', status: 'SUCCEEDED', failure_reason: 'FAILURE_REASON_NONE' } }, ok: true },
    { description: 'a streamed error', match: send, status: 409, body: { error: { code: 6, message: 'invoice is already paid', details: [] } }, ok: true },
    { description: 'an enum value LND does not have', match: send, status: 200, body: { result: { status: 'HALF_DONE' } }, ok: false },
    { description: 'an undescribed result field', match: send, status: 200, body: { result: { preimage: 'ab' } }, ok: false },
    { description: 'an unwrapped streamed message', match: send, status: 200, body: { payment_hash: 'ab' }, ok: false },
    { description: 'a unary error status', match: lookup, status: 404, body: { code: 5, message: 'unable to locate invoice', details: [] }, ok: true },
    { description: 'a null field', match: lookup, status: 200, body: { memo: null }, ok: false },
  ];
  it.each(rows)('$description', ({ match, status, body, ok }) => {
    expect(swagger.checkResponse(match, status, body).length === 0).toBe(ok);
  });
});
