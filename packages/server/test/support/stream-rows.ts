/** A money-rows stream's row, for the money store's tests and the SQLite money benchmarks (streams-archive.ts, streams-recent-memory.ts): a sweep reads its account, app and settled seq there. */
import { msat } from '../../src/money/msat.js';
import type { StreamRow } from '../../src/streams/model.js';

export function moneyStreamRow(id: string, appId: string, maximumMsat: bigint): StreamRow {
  return {
    id, appId, accountId: `stream:${id}`, payerTokenHash: `hash-${id}`, prices: {}, rateMsatPerS: msat(0n), maximumMsat: msat(maximumMsat),
    settleThresholdMsat: msat(0n), settleToMsat: msat(0n), maxChargeMsat: msat(10n ** 12n), payoutThresholdMsat: msat(0n), expiresAt: null,
    payoutDestination: null, status: 'open', meter: 'stopped', meterSegment: 0, meterSegmentStartedAt: null, meterSecondsCharged: 0,
    metadata: '', createdAt: 1, closedAt: null, moneyRows: true,
  };
}
