/**
 * The devnet's network model: nodes, channels with a balance on each side, routing fee
 * policies, and pathfinding. Pure functions over plain values; persistence lives in
 * store.ts.
 *
 * A payment moves along a route of channels. On each hop the sending side's balance goes
 * down and the receiving side's goes up by the same amount, so a channel's capacity never
 * changes and the sum of all balances is conserved (fees move from the payer to the
 * forwarding nodes, they are not created).
 */
import { msat, type Msat } from '../../money/msat.js';

/** BOLT 7 `fee_base_msat` and `fee_proportional_millionths` of one channel direction. */
export interface FeePolicy {
  baseMsat: Msat;
  /** Parts per million of the forwarded amount. */
  ppm: bigint;
}

export interface Channel {
  id: number;
  nodeA: string;
  nodeB: string;
  capacityMsat: Msat;
  balanceAMsat: Msat;
  balanceBMsat: Msat;
  /** What nodeA charges to forward into this channel towards nodeB. */
  policyA: FeePolicy;
  /** What nodeB charges to forward into this channel towards nodeA. */
  policyB: FeePolicy;
}

export interface TopologyChannel {
  nodes: readonly [string, string];
  balancesMsat: readonly [Msat, Msat];
  policies?: readonly [FeePolicy, FeePolicy];
}

export interface DevnetTopology {
  nodes: readonly string[];
  channels: readonly TopologyChannel[];
}

const ZERO_POLICY: FeePolicy = { baseMsat: msat(0), ppm: 0n };
/** The hub charges 1 sat + 100 ppm: small, but visible in every multi-hop payment. */
export const HUB_POLICY: FeePolicy = { baseMsat: msat(1000), ppm: 100n };

const BTC_MSAT = 100_000_000_000n;

/**
 * Sluice and every wallet have one channel with the hub, so every payment between them
 * takes two hops and pays the hub's fee. Balances are half on each side, so each node can
 * both send and receive. All of it is fake money.
 */
export const DEFAULT_TOPOLOGY: DevnetTopology = {
  nodes: ['sluice', 'hub', 'alice', 'bob', 'carol', 'dave', 'erin'],
  channels: [
    { nodes: ['hub', 'sluice'], balancesMsat: [msat(BTC_MSAT), msat(BTC_MSAT)], policies: [HUB_POLICY, ZERO_POLICY] },
    ...['alice', 'bob', 'carol', 'dave', 'erin'].map(
      (wallet): TopologyChannel => ({
        nodes: ['hub', wallet],
        balancesMsat: [msat(BTC_MSAT / 2n), msat(BTC_MSAT / 2n)],
        policies: [HUB_POLICY, ZERO_POLICY],
      }),
    ),
  ],
};

const NODE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
export const MAX_ROUTE_HOPS = 20;

export function assertValidTopology(topology: DevnetTopology): void {
  const names = new Set<string>();
  for (const name of topology.nodes) {
    if (!NODE_NAME.test(name)) throw new Error(`devnet node name ${JSON.stringify(name)} must match ${NODE_NAME}`);
    if (names.has(name)) throw new Error(`devnet node ${name} is listed twice`);
    names.add(name);
  }
  if (!names.has('sluice')) throw new Error('devnet topology must have a node named sluice');
  for (const channel of topology.channels) {
    const [a, b] = channel.nodes;
    if (!names.has(a) || !names.has(b)) throw new Error(`devnet channel ${a}-${b} names an unknown node`);
    if (a === b) throw new Error(`devnet channel ${a}-${b} joins a node to itself`);
    const [balanceA, balanceB] = channel.balancesMsat;
    if (balanceA + balanceB <= 0n) throw new Error(`devnet channel ${a}-${b} has no capacity`);
    for (const policy of channel.policies ?? []) {
      if (policy.ppm < 0n) throw new Error(`devnet channel ${a}-${b} has a negative fee rate`);
    }
  }
}

/** BOLT 7: fee_base_msat + amount_to_forward * fee_proportional_millionths / 1000000, rounded down. */
export function forwardingFeeMsat(policy: FeePolicy, amountToForwardMsat: Msat): Msat {
  return msat(policy.baseMsat + (amountToForwardMsat * policy.ppm) / 1_000_000n);
}

export interface RouteHop {
  channelId: number;
  from: string;
  to: string;
  /** What crosses this channel: the amount `to` receives. */
  amountMsat: Msat;
  /** What `from` keeps for forwarding (0 on the first hop: the payer charges itself nothing). */
  feeMsat: Msat;
}

export interface Route {
  hops: RouteHop[];
  /** What the payer sends: the amount plus every fee. */
  totalMsat: Msat;
  feeMsat: Msat;
}

interface Edge {
  channel: Channel;
  from: string;
  to: string;
  fromBalanceMsat: Msat;
  policy: FeePolicy;
}

function edgesInto(channels: readonly Channel[], node: string): Edge[] {
  const edges: Edge[] = [];
  for (const channel of channels) {
    if (channel.nodeB === node) {
      edges.push({ channel, from: channel.nodeA, to: node, fromBalanceMsat: channel.balanceAMsat, policy: channel.policyA });
    }
    if (channel.nodeA === node) {
      edges.push({ channel, from: channel.nodeB, to: node, fromBalanceMsat: channel.balanceBMsat, policy: channel.policyB });
    }
  }
  return edges;
}

interface Label {
  /** What must arrive at this node for the payment to reach the destination. */
  arrivingMsat: Msat;
  /** The hop this node forwards over, towards the destination (absent at the destination). */
  next: { edge: Edge; hops: number } | null;
}

/**
 * The cheapest route from `source` to `destination` delivering `amountMsat`, using only
 * channel directions whose sending side holds enough for what crosses them (the devnet
 * sees every balance, which a real node cannot; payments here do not need probing).
 *
 * Dijkstra backwards from the destination, as LND does: fees depend on the amount
 * forwarded downstream, which is only known walking back from the payee. Costs are the
 * amount that must arrive at a node; forwarding fees are non-negative and grow with the
 * amount, so the first time a node is settled its cost is minimal. null: no route.
 */
export function findRoute(channels: readonly Channel[], source: string, destination: string, amountMsat: Msat): Route | null {
  if (source === destination) return null;
  const labels = new Map<string, Label>([[destination, { arrivingMsat: amountMsat, next: null }]]);
  const settled = new Set<string>();
  let sourceBest: { totalMsat: Msat; edge: Edge; hops: number } | null = null;

  for (;;) {
    const current = cheapestOpen(labels, settled);
    if (current === null) break;
    const [node, label] = current;
    settled.add(node);
    if (sourceBest !== null && label.arrivingMsat >= sourceBest.totalMsat) break;
    const hopsBelow = label.next?.hops ?? 0;
    if (hopsBelow + 1 > MAX_ROUTE_HOPS) continue;
    for (const edge of edgesInto(channels, node)) {
      if (edge.fromBalanceMsat < label.arrivingMsat) continue;
      if (edge.from === source) {
        if (sourceBest === null || label.arrivingMsat < sourceBest.totalMsat) {
          sourceBest = { totalMsat: label.arrivingMsat, edge, hops: hopsBelow + 1 };
        }
        continue;
      }
      if (settled.has(edge.from)) continue;
      const arrivingMsat = msat(label.arrivingMsat + forwardingFeeMsat(edge.policy, label.arrivingMsat));
      const known = labels.get(edge.from);
      if (known === undefined || arrivingMsat < known.arrivingMsat) {
        labels.set(edge.from, { arrivingMsat, next: { edge, hops: hopsBelow + 1 } });
      }
    }
  }
  if (sourceBest === null) return null;
  return routeFrom(labels, sourceBest.edge, amountMsat);
}

function cheapestOpen(labels: Map<string, Label>, settled: Set<string>): [string, Label] | null {
  let best: [string, Label] | null = null;
  for (const entry of labels) {
    if (settled.has(entry[0])) continue;
    if (best === null || entry[1].arrivingMsat < best[1].arrivingMsat) best = entry;
  }
  return best;
}

function routeFrom(labels: Map<string, Label>, firstEdge: Edge, amountMsat: Msat): Route {
  const hops: RouteHop[] = [];
  let edge: Edge | null = firstEdge;
  let feeOfFrom = msat(0);
  while (edge !== null) {
    const label = labels.get(edge.to);
    if (label === undefined) throw new Error(`devnet route is broken at ${edge.to}`);
    hops.push({ channelId: edge.channel.id, from: edge.from, to: edge.to, amountMsat: label.arrivingMsat, feeMsat: feeOfFrom });
    const next: Edge | null = label.next?.edge ?? null;
    feeOfFrom = next === null ? msat(0) : msat(label.arrivingMsat - labels.get(next.to)!.arrivingMsat);
    edge = next;
  }
  const first = hops[0];
  if (first === undefined) throw new Error('devnet route has no hops');
  const route: Route = { hops, totalMsat: first.amountMsat, feeMsat: msat(first.amountMsat - amountMsat) };
  assertRouteConsistent(route, amountMsat);
  return route;
}

/** Postconditions: amounts shrink by exactly each forwarder's fee and the last hop delivers the amount. */
function assertRouteConsistent(route: Route, amountMsat: Msat): void {
  const last = route.hops[route.hops.length - 1];
  if (last === undefined || last.amountMsat !== amountMsat) throw new Error('devnet route does not deliver the amount');
  let fees = 0n;
  route.hops.forEach((hop, index) => {
    const next = route.hops[index + 1];
    if (next !== undefined && hop.amountMsat - next.amountMsat !== next.feeMsat) {
      throw new Error('devnet route fees do not add up');
    }
    fees += hop.feeMsat;
  });
  if (fees !== route.feeMsat) throw new Error('devnet route fee total is wrong');
}

/** Moves the route's amounts across its channels. Returns new channel values; the inputs are not changed. */
export function applyRoute(channels: readonly Channel[], route: Route): Channel[] {
  const byId = new Map(channels.map((channel) => [channel.id, { ...channel }]));
  for (const hop of route.hops) {
    const channel = byId.get(hop.channelId);
    if (channel === undefined) throw new Error(`devnet route uses unknown channel ${hop.channelId}`);
    if (hop.from === channel.nodeA && hop.to === channel.nodeB) {
      channel.balanceAMsat = msat(channel.balanceAMsat - hop.amountMsat);
      channel.balanceBMsat = msat(channel.balanceBMsat + hop.amountMsat);
    } else if (hop.from === channel.nodeB && hop.to === channel.nodeA) {
      channel.balanceBMsat = msat(channel.balanceBMsat - hop.amountMsat);
      channel.balanceAMsat = msat(channel.balanceAMsat + hop.amountMsat);
    } else {
      throw new Error(`devnet route hop ${hop.from}->${hop.to} does not match channel ${hop.channelId}`);
    }
    if (channel.balanceAMsat + channel.balanceBMsat !== channel.capacityMsat) {
      throw new Error(`devnet channel ${channel.id} no longer adds up to its capacity`);
    }
  }
  return [...byId.values()];
}

export function localBalanceMsat(channels: readonly Channel[], node: string): Msat {
  let total = 0n;
  for (const channel of channels) {
    if (channel.nodeA === node) total += channel.balanceAMsat;
    if (channel.nodeB === node) total += channel.balanceBMsat;
  }
  return msat(total);
}
