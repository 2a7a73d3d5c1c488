/**
 * How spent steps reach the app. A call's commit makes only the chain's new index durable;
 * the value of the steps it spent moves from the chain's account to the app's account in a
 * later sweep (settler.ts), one transfer per chain for every step spent since the last one.
 * The row's `settled_index` says how far the app was paid, so a sweep is exact and never
 * pays a step twice, whichever process runs it and however often it is retried:
 *   app revenue from the chain = settled_index x step_msat
 *   chain account = (steps - settled_index) x step_msat (+ anything paid above the invoice)
 */
import { appAccountId } from '../../apps/service.js';
import type { LedgerOp } from '../../ledger/store.js';
import { msat, type Msat } from '../../money/msat.js';

/** What a sweep needs of one chain whose index moved past its settled index. */
export interface UnsettledChain {
  id: string;
  appId: string;
  accountId: string;
  stepMsat: Msat;
  settledIndex: number;
  index: number;
}

/** The transfer that pays the app for the chain's steps from its settled index to its index. */
export function settlementOp(chain: UnsettledChain): LedgerOp {
  return {
    kind: 'transfer',
    debitAccountId: chain.accountId,
    creditAccountId: appAccountId(chain.appId),
    amountMsat: msat(BigInt(chain.index - chain.settledIndex) * chain.stepMsat),
    code: 'chain_spend',
    // Unique per chain: a settled index only grows (and the commits before sweeps used the same form).
    reference: `${chain.id}/${chain.index}`,
  };
}
