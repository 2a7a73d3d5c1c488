// The charge and reward acks are written as JSON text directly (ws.ts ackFields), not through
// an object and JSON.stringify: this checks the bytes are the same as the object's would be,
// for any seq, amount, balance (negative too: a postpaid payer in debt) and replay flag.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { msat } from '../../src/money/msat.js';
import { ackJson } from '../../src/streams/routes.js';
import { ackFields } from '../../src/streams/ws.js';

describe('ws ack text', () => {
  it('is byte for byte JSON.stringify of ackJson, in the same key order', () => {
    fc.assert(fc.property(
      fc.nat(),
      fc.bigInt({ min: 1n, max: (1n << 63n) - 1n }),
      fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
      fc.boolean(),
      fc.string({ minLength: 1, maxLength: 64 }),
      (seq, amount, balance, replayed, id) => {
        const ack = { ok: true as const, seq, amountMsat: msat(amount), balanceMsat: balance, replayed };
        expect(`{${ackFields(ack).json}}`).toBe(JSON.stringify(ackJson(ack)));
        // As handle() sends it, with any request id (quotes, backslashes, control characters).
        expect(`{"type":"ok","id":${JSON.stringify(id)},${ackFields(ack).json}}`).toBe(JSON.stringify({ type: 'ok', id, ...ackJson(ack) }));
      },
    ));
  });
});
