/**
 * The devnet: Sluice's embedded default Lightning backend. An in-process simulated
 * Lightning network with FAKE MONEY: nodes with real secp256k1 keys, real regtest BOLT 11
 * invoices, real preimages and payment secrets, channels with balances and routing fees,
 * keysend, failure injection, and state kept in `<dataDir>/devnet.sqlite`.
 *
 * Threat model: none of it is money. The devnet exists so Sluice runs, demos and tests
 * without a Lightning node; every node says "devnet (fake money)" in its alias and uses
 * regtest invoices (`lnbcrt`) that no real wallet on mainnet will pay. What it does
 * guarantee, because Sluice's own tests lean on it: money is conserved (the sum of all
 * channel balances never changes), a payment is recorded in flight before it moves money
 * and its outcome is committed together with the balance moves, so lookupPayment tells the
 * truth after a crash (see payments.ts for the restart rule).
 *
 * One process per data dir: payments in progress are tracked in memory.
 */
import { systemClock, type Clock } from '../../clock.js';
import { msat, type Msat } from '../../money/msat.js';
import type { LightningBackend } from '../backend.js';
import { createDevnetCore, type DevnetNode } from './core.js';
import { createDevnetFaults, type DevnetFaultController, type DevnetFaultOptions } from './faults.js';
import { bytesFromHex, generateNodeKey, nodeKeyFromPrivateKey } from './keys.js';
import { assertValidTopology, DEFAULT_TOPOLOGY, localBalanceMsat, type DevnetTopology } from './network.js';
import { createDevnetNodeBackend } from './node-backend.js';
import { RESTART_FAILURE_DETAIL } from './payments.js';
import { openDevnetStore, type NodeRow } from './store.js';

export type { DevnetFaultController, DevnetFaultOptions, DevnetFaultScope } from './faults.js';
export type { DevnetTopology, FeePolicy, TopologyChannel } from './network.js';
export { DEFAULT_TOPOLOGY, HUB_POLICY, forwardingFeeMsat } from './network.js';
export { KEYSEND_RECORD_TYPE, RESTART_FAILURE_DETAIL } from './payments.js';
export { DEVNET_ALIAS_SUFFIX } from './node-backend.js';

export interface DevnetOptions {
  /** Where devnet.sqlite lives; null keeps everything in memory (tests). */
  dataDir: string | null;
  /** Invoice timestamps and expiry, payment times, block height. Default: the system clock. */
  clock?: Clock;
  faults?: DevnetFaultOptions;
  /** Deterministic node keys (tests). Only used when the network is created; stored keys win afterwards. */
  seed?: string;
  /** The network to create on first open (default DEFAULT_TOPOLOGY); an existing devnet.sqlite keeps its own. */
  topology?: DevnetTopology;
}

export interface Devnet {
  readonly network: 'regtest';
  nodeNames(): string[];
  /** That node seen through the LightningBackend interface. */
  backendFor(nodeName: string): LightningBackend;
  /** The sum of the node's local channel balances. */
  nodeBalanceMsat(nodeName: string): Msat;
  /** The sum of every channel balance: constant for the life of the devnet. */
  totalBalanceMsat(): Msat;
  /** Change faults at run time (tests). */
  faults: DevnetFaultController;
  /** The node's 33-byte public key, hex. */
  nodePubkey(nodeName: string): string;
  /** Stops every watcher, waits for payments in progress, closes the database. */
  close(): Promise<void>;
}

const META_CREATED_AT = 'created_at_ms';

export async function openDevnet(options: DevnetOptions): Promise<Devnet> {
  const clock = options.clock ?? systemClock;
  const faults = createDevnetFaults(options.faults);
  const store = openDevnetStore(options.dataDir);
  try {
    if (store.nodes().length === 0) createNetwork(store, options.topology ?? DEFAULT_TOPOLOGY, options.seed, clock.now());
    store.failInFlightPayments(RESTART_FAILURE_DETAIL, clock.now());
  } catch (error) {
    store.close();
    throw error;
  }
  const nodes: DevnetNode[] = store.nodes().map((row) => {
    const node = { name: row.name, ...nodeKeyFromPrivateKey(bytesFromHex(row.privateKeyHex)) };
    if (node.pubkey !== row.pubkey) throw new Error(`devnet node ${row.name}: stored pubkey does not match its key`);
    return node;
  });
  const createdAtMs = Number(store.getMeta(META_CREATED_AT) ?? clock.now());
  const core = createDevnetCore({ store, clock, faults, createdAtMs, nodes });

  return {
    network: 'regtest',
    nodeNames: () => core.nodeNames(),
    backendFor: (nodeName) => createDevnetNodeBackend(core, nodeName),
    nodeBalanceMsat: (nodeName) => localBalanceMsat(store.channels(), core.node(nodeName).name),
    totalBalanceMsat() {
      let total = 0n;
      for (const channel of store.channels()) total += channel.balanceAMsat + channel.balanceBMsat;
      return msat(total);
    },
    faults,
    nodePubkey: (nodeName) => core.node(nodeName).pubkey,
    async close() {
      if (core.isClosed()) return;
      core.markClosed();
      await Promise.all([...core.watchers].map((watch) => watch.stop()));
      await Promise.allSettled([...core.paymentsInProgress.values()]);
      store.close();
    },
  };
}

function createNetwork(store: ReturnType<typeof openDevnetStore>, topology: DevnetTopology, seed: string | undefined, nowMs: number): void {
  assertValidTopology(topology);
  const nodes: NodeRow[] = topology.nodes.map((name) => {
    const key = generateNodeKey(name, seed);
    return { name, privateKeyHex: Buffer.from(key.privateKey).toString('hex'), pubkey: key.pubkey };
  });
  const zero = { baseMsat: msat(0), ppm: 0n };
  const channels = topology.channels.map((channel) => ({
    nodeA: channel.nodes[0],
    nodeB: channel.nodes[1],
    capacityMsat: msat(channel.balancesMsat[0] + channel.balancesMsat[1]),
    balanceAMsat: channel.balancesMsat[0],
    balanceBMsat: channel.balancesMsat[1],
    policyA: channel.policies?.[0] ?? zero,
    policyB: channel.policies?.[1] ?? zero,
  }));
  store.initialize(nodes, channels, { [META_CREATED_AT]: String(nowMs) });
}
