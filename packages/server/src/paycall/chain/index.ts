/**
 * Hash-chain tokens (issue 4, section 1): the stable entry point for the gateway, the
 * middleware and tests. docs/paycall.md is the wire specification.
 */
export { createChainScheme, type ChainSchemeOptions } from './scheme.js';
export {
  createChainService, ChainConflictError,
  type CallCost, type ChainError, type ChainFail, type ChainService, type ChainServiceDeps, type PurchaseInput,
  type RefundDestination, type RefundProof, type SpendAck, type SpendMap,
} from './service.js';
export { createPostgresChainStore, createSqliteChainStore, type ChainStore } from './store.js';
export { registerChainRoutes, chainJson } from './routes.js';
export { CHAIN_ERROR_CODES, chainErrorCode } from './errors.js';
export { chainAccountId, type ChainRow, type ChainStatus, type ChainView } from './model.js';
export {
  buildChain, CHAIN_BALANCE_HEADER, CHAIN_HEADER, CHAIN_OFFER_HEADER, formatBalanceHeader, formatChainHeader, formatOfferHeader,
  hashLink, hashLinkTimes, linkAt, MAX_CHAIN_STEPS, MAX_STEPS_PER_CALL, parseChainHeader, stepsForPrice, verifyLink,
  type ChainCredential,
} from './math.js';
