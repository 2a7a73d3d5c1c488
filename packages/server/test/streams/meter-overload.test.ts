// The meter's charge refused because the money steps' group commit is overloaded (its queue
// full: nothing was written) is not the payer running out of money: the meter runs on and the seconds are
// charged by the next try, never paused as insufficient_funds, never charged twice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import type { MoneyStep } from '../../src/streams/money-store.js';
import { balanceOf } from '../../src/ledger/store.js';
import { streamAccountId } from '../../src/streams/service.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

describe('meter charges on an overloaded ledger', () => {
  const clock = createManualClock(Date.now());
  let t: TestSluice;
  let overloaded = false;
  beforeAll(async () => {
    t = await startTestSluice({ clock });
    // The group commit answers the meter's steps Overloaded while `overloaded` is set, as a full queue does.
    const committer = t.sluice.streamMoney;
    const submit = committer.submit.bind(committer);
    committer.submit = async (step: MoneyStep) => {
      if (overloaded && step.name === 'meter') return 'Overloaded';
      return submit(step);
    };
  });
  afterAll(async () => t?.close());

  let apiKey = '';
  const meteredStream = async (): Promise<string> => {
    const app = await t.createApp();
    apiKey = app.apiKey;
    const created = await t.call('POST', '/v1/streams', {
      key: app.apiKey,
      body: { rate_msat_per_s: '1000', maximum_msat: '100000000', max_charge_msat: '100000', settle_to_msat: '0', settle_threshold_msat: '0' },
    });
    expect(created.status).toBe(201);
    const streamId = created.body.id as string;
    expect((await t.sluice.streams.meter(streamId, 'start', 'app')).ok).toBe(true);
    return streamId;
  };
  const ledgerBalance = async (streamId: string): Promise<bigint> => {
    await t.sluice.streams.settleCharges();
    return balanceOf((await t.sluice.ledger.getAccount(streamAccountId(streamId)))!);
  };
  const meterEvents = async (streamId: string) => (await t.sluice.streams.eventsAfter(streamId, 0)).filter((e) => ['paused', 'metered'].includes(e.type));

  it("keeps the meter running when the clock's charge is refused as overloaded, and charges those seconds at the next tick", async () => {
    const streamId = await meteredStream();
    clock.advanceMs(3000);
    overloaded = true;
    try {
      await t.sluice.streams.tick();
    } finally {
      overloaded = false;
    }
    expect((await t.sluice.streams.get(streamId, null))?.meter).toBe('running');
    expect(await meterEvents(streamId)).toEqual([]);
    expect(await ledgerBalance(streamId)).toBe(0n);
    clock.advanceMs(1000);
    await t.sluice.streams.tick();
    expect((await t.sluice.streams.get(streamId, null))?.meter).toBe('running');
    expect(await ledgerBalance(streamId)).toBe(-4000n);
    expect((await meterEvents(streamId)).map((e) => e.type)).toEqual(['metered']);
  });

  it('refuses a pause whose last charge is overloaded, leaving the meter running, and pauses on the retry', async () => {
    const streamId = await meteredStream();
    clock.advanceMs(2500);
    overloaded = true;
    try {
      expect(await t.sluice.streams.meter(streamId, 'pause', 'payer')).toMatchObject({ ok: false, error: 'Overloaded' });
    } finally {
      overloaded = false;
    }
    expect((await t.sluice.streams.get(streamId, null))?.meter).toBe('running');
    expect(await ledgerBalance(streamId)).toBe(0n);
    const paused = await t.sluice.streams.meter(streamId, 'pause', 'payer');
    expect(paused.ok).toBe(true);
    expect(await ledgerBalance(streamId)).toBe(-2500n);
  });

  it('refuses a close whose last meter charge is overloaded, leaving the stream open, and closes on the retry', async () => {
    const streamId = await meteredStream();
    clock.advanceMs(1500);
    overloaded = true;
    try {
      const refused = await t.call('POST', `/v1/streams/${streamId}/close`, { key: apiKey });
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('overloaded');
    } finally {
      overloaded = false;
    }
    expect((await t.sluice.streams.get(streamId, null))?.status).toBe('open');
    expect(await ledgerBalance(streamId)).toBe(0n);
    const closed = await t.sluice.streams.close(streamId, 'payer');
    expect(closed.ok).toBe(true);
    expect(await ledgerBalance(streamId)).toBe(-1500n);
  });
});
