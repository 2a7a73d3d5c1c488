/**
 * One chain the paying fetch holds: its links, the next index to hand out, and the calls in
 * flight. Concurrency rule (docs/paycall.md: the server accepts index == current + k only):
 *
 * - Indexes are handed out under a lock, in order, so two concurrent calls never share one.
 * - Requests are sent at once (no waiting for the previous answer). If the network delivers
 *   them out of order, the later index is refused (`chain_link_skipped` or
 *   `chain_link_short`) and nothing is spent.
 * - A refused call (skipped, short, replayed) never patches the local index by guessing: its
 *   next attempt takes the lock, waits until no call of this chain is in flight, reads the
 *   server's index (`GET`), takes the next index from there and KEEPS the lock until it is
 *   answered. Being the only call in flight, it cannot be reordered, so it is served on that
 *   attempt; calls refused together are repaired one after another.
 * - Any other refused call marks the chain so the next reservation asks the server first.
 */
import type { BaseFetch, ChainView } from './chain-api.js';
import { getChain } from './chain-api.js';
import { HashChain, toHex } from './hashchain.js';
import { InFlight, Mutex } from './sync.js';

/** What the paying fetch stores about a chain so a later session can spend or refund it. */
export interface StoredChain {
  chain_id: string;
  app_id: string;
  buy_url: string;
  step_msat: string;
  steps: number;
  /** The seed, hex: a secret (whoever holds it can spend the chain). */
  seed: string;
}

/** A reserved call: the header to send and the index it claims. */
export interface ChainTicket {
  index: number;
  steps: number;
  header: string;
  /** Sent alone: the chain was resynced for it and no other call goes until it settles. */
  alone: boolean;
  /** Frees the chain for other calls (alone tickets); called by `settle`. */
  release: () => void;
}

export class HeldChain {
  readonly id: string;
  readonly appId: string;
  readonly buyUrl: string;
  readonly stepMsat: bigint;
  readonly links: HashChain;
  /** The index after the last call handed out (or the server's, after a resync). */
  #next: number;
  /** The highest index the server is known to have accepted. */
  confirmedIndex: number;
  status: ChainView['status'];
  readonly #lock = new Mutex();
  readonly #inFlight = new InFlight();
  #dirty = false;
  #retired = false;

  constructor(view: { chainId: string; appId: string; stepMsat: bigint; index: number; status: ChainView['status'] }, buyUrl: string, links: HashChain) {
    this.id = view.chainId;
    this.appId = view.appId;
    this.buyUrl = buyUrl;
    this.stepMsat = view.stepMsat;
    this.links = links;
    this.#next = view.index;
    this.confirmedIndex = view.index;
    this.status = view.status;
  }

  get steps(): number {
    return this.links.steps;
  }

  /** Steps not yet handed out. */
  get unreservedSteps(): number {
    return this.steps - this.#next;
  }

  get usable(): boolean {
    return !this.#retired && this.status === 'active';
  }

  /** What a store keeps to spend or refund this chain later. */
  stored(): StoredChain {
    return { chain_id: this.id, app_id: this.appId, buy_url: this.buyUrl, step_msat: this.stepMsat.toString(), steps: this.steps, seed: toHex(this.links.seed) };
  }

  /**
   * Hands out the next `k` steps: the index and header for one call, counted in flight until
   * `settle`. Null when fewer than `k` steps are left (buy another chain).
   */
  async reserve(k: number, fetch: BaseFetch, alone = false): Promise<ChainTicket | null> {
    let release: () => void = () => undefined;
    const held = alone ? new Promise<void>((resolve) => (release = resolve)) : null;
    const index = await new Promise<number | null>((resolve, reject) => {
      void this.#lock.run(async () => {
        try {
          if (this.#dirty || alone) {
            // A call's outcome is unknown (lost answer, served without a balance), or a refused
            // call is repairing: ask the server where the chain stands once nothing is in flight.
            await this.#inFlight.drained();
            this.#apply(await getChain(fetch, this.buyUrl, this.id));
            this.#dirty = false;
          }
          if (!this.usable || this.#next + k > this.steps) {
            resolve(null);
            return;
          }
          this.#next += k;
          this.#inFlight.enter();
          resolve(this.#next);
        } catch (error) {
          reject(error);
          return;
        }
        // A repairing call keeps the lock until it is answered: it is the only call in
        // flight, so the network cannot reorder it and it is served on this attempt.
        if (held) await held;
      });
    });
    if (index === null) {
      release();
      return null;
    }
    try {
      const link = await this.links.linkAt(index);
      return { index, steps: k, header: `${this.id} ${index} ${toHex(link)}`, alone, release };
    } catch (error) {
      this.#inFlight.leave();
      release();
      throw error;
    }
  }

  /**
   * The call is answered or failed: `accepted` with the index the server confirmed, `refused`
   * (nothing spent), or `unknown` (the next reservation asks the server first).
   */
  settle(ticket: ChainTicket, outcome: { kind: 'accepted'; index: number } | { kind: 'refused' } | { kind: 'unknown' }): void {
    if (outcome.kind === 'accepted' && outcome.index > this.confirmedIndex) this.confirmedIndex = outcome.index;
    if (outcome.kind === 'unknown') this.#dirty = true;
    if (outcome.kind === 'refused') {
      // Refused: nothing was spent. A call that went alone knows where the server stands
      // (where it was told before the call); any other leaves the next reservation to ask.
      if (ticket.alone) this.#next = ticket.index - ticket.steps;
      else this.#dirty = true;
    }
    this.#inFlight.leave();
    ticket.release();
  }

  /**
   * Learns the server's index once nothing is in flight, and hands out from there. Returns
   * the server's view (its status may say the chain is spent, expired or refunded).
   */
  async resync(fetch: BaseFetch): Promise<ChainView> {
    return this.#lock.run(async () => {
      await this.#inFlight.drained();
      const view = await getChain(fetch, this.buyUrl, this.id);
      this.#apply(view);
      this.#dirty = false;
      return view;
    });
  }

  /** Runs `task` with the chain to itself: the lock held and nothing in flight (refunds). */
  async exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      await this.#inFlight.drained();
      return task();
    });
  }

  /** Gives up on this chain for new calls (spent, expired, refunded, or unknown to the server). */
  retire(): void {
    this.#retired = true;
  }

  /** Undoes `retire` (a refund that did not happen). */
  reinstate(): void {
    this.#retired = false;
  }

  get retired(): boolean {
    return this.#retired;
  }

  #apply(view: ChainView): void {
    this.#next = view.index;
    if (view.index > this.confirmedIndex) this.confirmedIndex = view.index;
    this.status = view.status;
  }

  /** Records a server view read while holding `exclusive`. */
  applyView(view: ChainView): void {
    this.#apply(view);
  }
}
