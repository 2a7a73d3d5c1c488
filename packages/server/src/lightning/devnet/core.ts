/**
 * What every part of one open devnet shares: the store, the clock, the faults, the nodes,
 * the settle notifications that wake invoice watchers, and the payments in progress.
 */
import type { Clock } from '../../clock.js';
import type { DevnetFaults } from './faults.js';
import type { NodeKey } from './keys.js';
import type { DevnetStore } from './store.js';

export interface DevnetNode extends NodeKey {
  name: string;
}

export interface DevnetCore {
  readonly store: DevnetStore;
  readonly clock: Clock;
  readonly faults: DevnetFaults;
  /** Unix ms when this devnet was first created (its "genesis"); block height counts from it. */
  readonly createdAtMs: number;
  node(name: string): DevnetNode;
  nodeByPubkey(pubkey: string): DevnetNode | null;
  nodeNames(): string[];
  /** Wakes the invoice watchers of `nodeName`. */
  notifySettled(nodeName: string): void;
  onSettled(nodeName: string, listener: () => void): () => void;
  /** Payments being executed, by `${payer}:${paymentHash}`; close() waits for them. */
  readonly paymentsInProgress: Map<string, Promise<unknown>>;
  /** Watchers to stop on close. */
  readonly watchers: Set<{ stop(): Promise<void> }>;
  isClosed(): boolean;
  /** Aborted when the devnet starts closing: injected latency ends early. */
  readonly closing: AbortSignal;
}

export function createDevnetCore(parts: {
  store: DevnetStore;
  clock: Clock;
  faults: DevnetFaults;
  createdAtMs: number;
  nodes: readonly DevnetNode[];
}): DevnetCore & { markClosed(): void } {
  const byName = new Map(parts.nodes.map((node) => [node.name, node]));
  const byPubkey = new Map(parts.nodes.map((node) => [node.pubkey, node]));
  const listeners = new Map<string, Set<() => void>>();
  let closed = false;
  const closing = new AbortController();
  return {
    store: parts.store,
    clock: parts.clock,
    faults: parts.faults,
    createdAtMs: parts.createdAtMs,
    node(name) {
      const node = byName.get(name);
      if (node === undefined) throw new Error(`the devnet has no node named ${JSON.stringify(name)} (nodes: ${[...byName.keys()].join(', ')})`);
      return node;
    },
    nodeByPubkey: (pubkey) => byPubkey.get(pubkey) ?? null,
    nodeNames: () => [...byName.keys()],
    notifySettled(nodeName) {
      for (const listener of listeners.get(nodeName) ?? []) listener();
    },
    onSettled(nodeName, listener) {
      let set = listeners.get(nodeName);
      if (set === undefined) {
        set = new Set();
        listeners.set(nodeName, set);
      }
      set.add(listener);
      return () => set.delete(listener);
    },
    paymentsInProgress: new Map(),
    watchers: new Set(),
    isClosed: () => closed,
    closing: closing.signal,
    markClosed() {
      closed = true;
      closing.abort();
    },
  };
}
