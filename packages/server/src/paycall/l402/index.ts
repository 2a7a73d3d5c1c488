/** L402 for pay per call: macaroons bound to invoices, local verification, token budgets. */
export { createL402Service, loadL402Secret, L402_SECRET_META, type L402Service, type L402ServiceDeps } from './service.js';
export { createL402Scheme, caveatServiceName, L402_BALANCE_HEADER, type L402SchemeDeps, type L402SchemeOptions } from './scheme.js';
export { createL402Verifier, type L402Verifier, type L402Verification, type L402RefusalCode, type L402RequestContext } from './verifier.js';
export { createBudgetLedger, type BudgetLedger, type BudgetResult } from './budget.js';
export { createSqliteL402BudgetStore, createPostgresL402BudgetStore, type L402BudgetStore, type BudgetUse } from './budget-store.js';
export { mintMacaroon, parseMacaroon, encodeIdentifier, decodeIdentifier, encodeMacaroonV2, deriveRootKey, signatureIsValid } from './macaroon.js';
export { mintCaveats, checkCaveats, type Budget } from './caveats.js';
export { parseCredential, challengeHeaders, claimsL402 } from './credential.js';
export { mintSelfPaidCredential, type SelfPaidCredential } from './self-paid.js';
