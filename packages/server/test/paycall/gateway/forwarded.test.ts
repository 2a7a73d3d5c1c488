/**
 * The gateway's header rewriting, both directions, as plain functions (proxy.test.ts checks
 * the same over real sockets). Hop-by-hop headers per RFC 9110 section 7.6.1.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../../src/paycall/gateway/forwarded.js';

const FORWARDED = { 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'gw' };

describe('upstreamRequestHeaders', () => {
  const rows: { description: string; headers: IncomingHttpHeaders; strip?: string[]; upgrade?: boolean; expected: IncomingHttpHeaders }[] = [
    {
      description: 'keeps end-to-end headers and sets X-Forwarded-*',
      headers: { host: 'gw', accept: '*/*', 'set-cookie': ['a=1', 'b=2'] },
      expected: { host: 'gw', accept: '*/*', 'set-cookie': ['a=1', 'b=2'], ...FORWARDED },
    },
    {
      description: 'drops hop-by-hop headers and those Connection names',
      headers: { connection: 'close, X-Hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', upgrade: 'h2c', 'proxy-authorization': 'Basic eA==', expect: '100-continue', 'x-kept': 'yes' },
      expected: { 'x-kept': 'yes', ...FORWARDED },
    },
    {
      description: "replaces the client's X-Forwarded-* and Forwarded, never appends to them",
      headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil', forwarded: 'for=6.6.6.6', 'x-kept': 'yes' },
      expected: { 'x-kept': 'yes', ...FORWARDED },
    },
    {
      description: 'strips the claimed payment credentials only',
      headers: { 'sluice-chain': 'c 1 00', authorization: 'Bearer upstream' },
      strip: ['sluice-chain'],
      expected: { authorization: 'Bearer upstream', ...FORWARDED },
    },
    {
      description: 'keeps Connection: Upgrade and Upgrade for a WebSocket upgrade',
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k', 'keep-alive': '1' },
      upgrade: true,
      expected: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k', ...FORWARDED },
    },
  ];
  for (const row of rows) {
    it(row.description, () => {
      const before = structuredClone(row.headers);
      expect(upstreamRequestHeaders(row.headers, row.strip ?? [], FORWARDED, { upgrade: row.upgrade })).toEqual(row.expected);
      expect(row.headers, 'the input is not changed').toEqual(before);
    });
  }
});

describe('downstreamResponseHeaders', () => {
  it("drops the upstream's hop-by-hop headers and those its Connection names; the scheme's headers win", () => {
    const upstream = { connection: 'keep-alive, x-internal', 'keep-alive': 'timeout=5', 'x-internal': '1', 'transfer-encoding': 'chunked', 'content-type': 'text/plain', 'sluice-chain-balance': 'forged' };
    expect(downstreamResponseHeaders(upstream, { 'sluice-chain-balance': 'steps=9' })).toEqual({ 'content-type': 'text/plain', 'sluice-chain-balance': 'steps=9' });
  });
});
