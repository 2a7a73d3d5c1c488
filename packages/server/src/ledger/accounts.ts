/**
 * System accounts every Sluice ledger has.
 *
 * `lightning` stands for the Lightning node: invoices paid to an app debit it, payments
 * sent for an app credit it. Its balance is minus what Sluice owes its apps through the
 * node, so it has no limit.
 */
import type { AccountSpec } from './store.js';

export const LIGHTNING_ACCOUNT_ID = 'lightning';

export const SYSTEM_ACCOUNTS: readonly AccountSpec[] = [
  { id: LIGHTNING_ACCOUNT_ID, ownerId: 'system', limitMsat: null, code: 'lightning' },
];
