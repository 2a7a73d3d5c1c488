/** The paying fetch (issue 4): see fetch.ts and docs/sdk-fetch.md. */
export { createPayingFetch } from './fetch.js';
export { CHAIN_STORAGE_KEY, type ChainStorage } from './storage.js';
export type {
  HeldChainInfo,
  PaidCallReceipt,
  PayCallBaseFetch,
  PayCallChainOptions,
  PayCallPayment,
  PayCallRefund,
  PayCallRefundOptions,
  PayCallSpending,
  PayingFetch,
  PayingFetchEvents,
  PayingFetchOptions,
} from './types.js';
