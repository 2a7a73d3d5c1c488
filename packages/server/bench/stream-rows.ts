/** A postpaid money-rows stream of app `app_b`, as the SQLite money benchmarks create them (streams-archive.ts, streams-recent-memory.ts). */
import { msat } from '../src/money/msat.js';
import type { StreamRow } from '../src/streams/model.js';

export function benchStreamRow(id: string, index: number): StreamRow {
  return {
    id, appId: 'app_b', accountId: `stream:${id}`, payerTokenHash: `hash-${index}`, prices: {}, rateMsatPerS: msat(0n), maximumMsat: msat(10n ** 15n),
    settleThresholdMsat: msat(0n), settleToMsat: msat(0n), maxChargeMsat: msat(10n ** 12n), payoutThresholdMsat: msat(0n), expiresAt: null,
    payoutDestination: null, status: 'open', meter: 'stopped', meterSegment: 0, meterSegmentStartedAt: null, meterSecondsCharged: 0,
    metadata: '', createdAt: 1, closedAt: null, moneyRows: true,
  };
}
