/**
 * The devnet's routing arithmetic and pathfinding, on hand-built channel sets.
 * Fee formula from BOLT 7 (`channel_update`): fee_base_msat + amount * fee_proportional_millionths / 1000000.
 */
import { describe, expect, it } from 'vitest';
import { msat } from '../../src/money/msat.js';
import {
  applyRoute,
  findRoute,
  forwardingFeeMsat,
  localBalanceMsat,
  MAX_ROUTE_HOPS,
  type Channel,
  type FeePolicy,
} from '../../src/lightning/devnet/network.js';

const free: FeePolicy = { baseMsat: msat(0), ppm: 0n };
const policy = (baseMsat: number, ppm: number): FeePolicy => ({ baseMsat: msat(baseMsat), ppm: BigInt(ppm) });

let nextId = 1;
function channel(nodeA: string, nodeB: string, balanceA: number, balanceB: number, policyA = free, policyB = free): Channel {
  return {
    id: nextId++,
    nodeA,
    nodeB,
    capacityMsat: msat(balanceA + balanceB),
    balanceAMsat: msat(balanceA),
    balanceBMsat: msat(balanceB),
    policyA,
    policyB,
  };
}

describe('forwardingFeeMsat', () => {
  const rows = [
    { description: 'base only', policy: policy(1000, 0), amount: 5_000_000, expected: 1000n },
    { description: 'base and rate', policy: policy(1000, 100), amount: 1_000_000, expected: 1100n },
    { description: 'rate rounds down', policy: policy(1000, 100), amount: 9_999, expected: 1000n },
    { description: 'free', policy: free, amount: 123_456_789, expected: 0n },
    { description: '100% rate', policy: policy(0, 1_000_000), amount: 5, expected: 5n },
    { description: 'large amount', policy: policy(1, 2500), amount: 100_000_000_000, expected: 250_000_001n },
  ];
  for (const row of rows) {
    it(row.description, () => {
      expect(forwardingFeeMsat(row.policy, msat(row.amount))).toBe(row.expected);
    });
  }
});

describe('findRoute', () => {
  it('pays the forwarding node its fee for the outgoing channel only', () => {
    // a -> hub -> b: hub charges by its policy on hub->b; a's own policy is irrelevant.
    const channels = [channel('a', 'hub', 10_000_000, 0, policy(999, 999)), channel('hub', 'b', 10_000_000, 0, policy(1000, 100))];
    const route = findRoute(channels, 'a', 'b', msat(1_000_000));
    expect(route?.feeMsat).toBe(1100n);
    expect(route?.totalMsat).toBe(1_001_100n);
    expect(route?.hops.map((hop) => [hop.from, hop.to, hop.amountMsat, hop.feeMsat])).toEqual([
      ['a', 'hub', 1_001_100n, 0n],
      ['hub', 'b', 1_000_000n, 1100n],
    ]);
  });

  it('compounds fees backwards along a longer route', () => {
    const channels = [
      channel('a', 'x', 10_000_000, 0),
      channel('x', 'y', 10_000_000, 0, policy(10, 1000)),
      channel('y', 'b', 10_000_000, 0, policy(5, 500_000)),
    ];
    const route = findRoute(channels, 'a', 'b', msat(1000));
    // y forwards 1000: fee 5 + 500 = 505, so 1505 must reach y; x forwards 1505: fee 10 + 1 = 11.
    expect(route?.hops.map((hop) => hop.amountMsat)).toEqual([1516n, 1505n, 1000n]);
    expect(route?.feeMsat).toBe(516n);
  });

  it('takes a direct channel for free', () => {
    const channels = [channel('a', 'hub', 10_000, 10_000), channel('hub', 'b', 10_000, 10_000, policy(1000, 0)), channel('a', 'b', 5_000, 0)];
    const route = findRoute(channels, 'a', 'b', msat(5_000));
    expect(route?.hops).toHaveLength(1);
    expect(route?.feeMsat).toBe(0n);
  });

  it('prefers the cheaper of two routes', () => {
    const channels = [
      channel('a', 'dear', 1_000_000, 0),
      channel('dear', 'b', 1_000_000, 0, policy(5000, 0)),
      channel('a', 'cheap', 1_000_000, 0),
      channel('cheap', 'b', 1_000_000, 0, policy(10, 0)),
    ];
    expect(findRoute(channels, 'a', 'b', msat(1000))?.hops.map((hop) => hop.to)).toEqual(['cheap', 'b']);
  });

  it('goes around a channel whose sending side is too small', () => {
    const channels = [
      channel('a', 'cheap', 1_000_000, 0),
      channel('cheap', 'b', 999, 1_000_000, policy(10, 0)),
      channel('a', 'dear', 1_000_000, 0),
      channel('dear', 'b', 1_000_000, 0, policy(5000, 0)),
    ];
    expect(findRoute(channels, 'a', 'b', msat(1000))?.hops.map((hop) => hop.to)).toEqual(['dear', 'b']);
  });

  it('counts the fees when checking the first hop', () => {
    // a holds exactly the amount, but the hub wants a fee on top: no route.
    const channels = [channel('a', 'hub', 1000, 0), channel('hub', 'b', 10_000, 0, policy(1, 0))];
    expect(findRoute(channels, 'a', 'b', msat(1000))).toBeNull();
    expect(findRoute(channels, 'a', 'b', msat(999))?.totalMsat).toBe(1000n);
  });

  it('finds nothing when the balance sits on the wrong side', () => {
    const channels = [channel('a', 'hub', 0, 1_000_000), channel('hub', 'b', 1_000_000, 0)];
    expect(findRoute(channels, 'a', 'b', msat(1))).toBeNull();
  });

  it('refuses a route to itself', () => {
    expect(findRoute([channel('a', 'b', 10, 10)], 'a', 'a', msat(1))).toBeNull();
  });

  it(`gives up beyond ${MAX_ROUTE_HOPS} hops`, () => {
    const names = Array.from({ length: MAX_ROUTE_HOPS + 2 }, (_, index) => `n${index}`);
    const chain = names.slice(1).map((name, index) => channel(names[index] as string, name, 1_000_000, 0));
    expect(findRoute(chain, 'n0', `n${MAX_ROUTE_HOPS}`, msat(1))?.hops).toHaveLength(MAX_ROUTE_HOPS);
    expect(findRoute(chain, 'n0', `n${MAX_ROUTE_HOPS + 1}`, msat(1))).toBeNull();
  });
});

describe('applyRoute', () => {
  it('moves each hop amount across its channel and conserves every capacity', () => {
    const channels = [channel('a', 'hub', 2_000_000, 0), channel('b', 'hub', 0, 2_000_000, free, policy(1000, 100))];
    const route = findRoute(channels, 'a', 'b', msat(1_000_000));
    expect(route).not.toBeNull();
    const after = applyRoute(channels, route!);
    expect(localBalanceMsat(after, 'a')).toBe(2_000_000n - 1_001_100n);
    expect(localBalanceMsat(after, 'b')).toBe(1_000_000n);
    expect(localBalanceMsat(after, 'hub')).toBe(2_000_000n + 1100n);
    for (const changed of after) expect(changed.balanceAMsat + changed.balanceBMsat).toBe(changed.capacityMsat);
    // The inputs are left alone.
    expect(localBalanceMsat(channels, 'a')).toBe(2_000_000n);
  });
});
