/**
 * The L402 service as the composition root wires it: the persistent secret, the local
 * verifier, the budget ledger (group commit) and the `l402` payment scheme.
 *
 * The secret (32 random bytes) is drawn on the first start and kept in the records meta
 * table, so every process sharing a PostgreSQL database verifies every token, and a
 * restart keeps every token valid. Rotating it revokes every token ever minted.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { InvoiceService } from '../../invoices/service.js';
import type { RecordStore } from '../../records/model.js';
import { randomHex } from '../../util/fingerprint.js';
import type { PaymentScheme } from '../gate.js';
import { createBudgetLedger, type BudgetLedger } from './budget.js';
import type { L402BudgetStore } from './budget-store.js';
import { createL402Scheme, type L402SchemeOptions } from './scheme.js';
import { createL402Verifier, type L402Verifier } from './verifier.js';

export const L402_SECRET_META = 'l402.root_key';

export interface L402Service {
  /** The `l402` scheme for a pay-per-call gate. */
  readonly scheme: PaymentScheme;
  /** Pure verification (header, signature, preimage, caveats): what the benchmark measures. */
  readonly verifier: L402Verifier;
  readonly budgets: BudgetLedger;
  /** Waits until every counted call is durable; call before closing the database. */
  close(): Promise<void>;
}

export interface L402ServiceDeps extends L402SchemeOptions {
  records: RecordStore;
  store: L402BudgetStore;
  invoices: InvoiceService;
  clock: Clock;
  logger: Logger;
  maxBatch?: number;
}

/** The stored secret, drawn on the first start (the first writer wins on a shared database). */
export async function loadL402Secret(records: RecordStore): Promise<Buffer> {
  const hex = await records.setMetaIfAbsent(L402_SECRET_META, randomHex(32));
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`meta ${L402_SECRET_META} does not hold 32 bytes of hex`);
  return Buffer.from(hex, 'hex');
}

export async function createL402Service(deps: L402ServiceDeps): Promise<L402Service> {
  const secret = await loadL402Secret(deps.records);
  const verifier = createL402Verifier({ secret, nowMs: () => deps.clock.now() });
  const budgets = createBudgetLedger({ store: deps.store, ...(deps.maxBatch === undefined ? {} : { maxBatch: deps.maxBatch }) });
  const scheme = createL402Scheme({
    secret,
    verifier,
    budgets,
    invoices: deps.invoices,
    clock: deps.clock,
    logger: deps.logger,
    callsPerToken: deps.callsPerToken,
    tokenTtlS: deps.tokenTtlS,
    invoiceExpiryS: deps.invoiceExpiryS,
    ...(deps.capabilityOf ? { capabilityOf: deps.capabilityOf } : {}),
  });
  return { scheme, verifier, budgets, close: () => budgets.close() };
}
