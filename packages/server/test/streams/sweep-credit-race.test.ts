// The start's sweep marks a closed stream with nothing to pay back settled (later starts pass it
// by). A late top-up credited while that mark is being written removes the mark first
// (invoices.beforeCredit), and the mark, written after, would put it back on a stream that now
// holds the payer's money: a crash before its refund, or a refund that fails, then left the
// money there for good. The sweep takes its mark back when a credit landed meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/db/sqlite.js';
import { balanceOf } from '../../src/ledger/store.js';
import { createLogger } from '../../src/logger.js';
import { msat } from '../../src/money/msat.js';
import { createSqliteStreamStore, type StreamStore } from '../../src/streams/store.js';
import { createStreamService, streamAccountId } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('a late top-up credited while the sweep marks its stream settled', () => {
  let t: TestSluice;
  beforeAll(async () => {
    t = await startTestSluice();
  });
  afterAll(async () => t?.close());
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('leaves the stream to the next sweep', async () => {
    const { ledger, invoices, payments, clock } = t.sluice;
    const logger = createLogger('silent');
    const inner = createSqliteStreamStore(openSqlite({ path: ':memory:' }));
    const app = await t.createApp();
    // Keysend to a node the devnet does not know: every refund fails, so the top-up stays on the stream.
    const nowhere = '0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798';
    const first = createStreamService({ store: inner, ledger, invoices, payments, clock, logger });
    const created = await first.create(app.id, {
      prices: { hit: msat(1000n) }, rateMsatPerS: msat(0n), maximumMsat: msat(0n), settleThresholdMsat: msat(0n), settleToMsat: msat(100_000n),
      maxChargeMsat: msat(100_000n), payoutThresholdMsat: msat(0n), expiresAt: null, metadata: '', payoutDestination: { kind: 'keysend', pubkey: nowhere },
    });
    if (!created.ok) throw new Error(created.error);
    const id = created.stream.id;
    const invoice = (await inner.listEventsAfter(id, 0, 100)).find((e) => e.type === 'invoice');
    expect(invoice).toBeDefined();
    expect((await first.close(id, 'payer')).ok).toBe(true);
    await settle();
    await first.stop();

    // The next run's sweep finds nothing to pay back; the old invoice is paid while it writes the mark.
    let paidDuringMark = false;
    const store: StreamStore = {
      ...inner,
      async markSettled(streamId, at) {
        if (at !== null && streamId === id && !paidDuringMark) {
          paidDuringMark = true;
          const paid = await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice?.data.payment_request, wallet: 'carol' } });
          expect(paid.status).toBe(200);
          await settle(); // the stream is told, and its refund fails
        }
        await inner.markSettled(streamId, at);
      },
    };
    const second = createStreamService({ store, ledger, invoices, payments, clock, logger });
    try {
      await second.start();
      expect(paidDuringMark).toBe(true);
      for (let i = 0; i < 50 && !(await inner.listEventsAfter(id, 0, 100)).some((e) => e.type === 'payout_failed'); i += 1) await settle();
    } finally {
      await second.stop();
    }
    expect(balanceOf((await ledger.getAccount(streamAccountId(id)))!)).toBe(100_000n);
    // Still looked at by the next start's sweep.
    expect((await inner.listUnsettledClosedStreams('', 100)).map((row) => row.id)).toContain(id);
  }, 30_000);
});
