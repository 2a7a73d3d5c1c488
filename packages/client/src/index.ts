/**
 * @sluice/client: the typed client of Sluice's HTTP API, for browsers and Node 20+.
 *
 * Conventions: amounts are `bigint` millisatoshis (decimal strings on the wire; a number is
 * refused with a TypeError), times are `Date` objects (ISO 8601 on the wire), field names
 * are the wire's snake_case names, and every failed request rejects with a `SluiceError`
 * whose `code` is stable.
 *
 * @example
 * ```ts
 * import { SluiceClient, newIdempotencyKey } from '@sluice/client';
 * const client = new SluiceClient({ baseUrl: 'http://127.0.0.1:8402', apiKey: 'sk_...' });
 * console.log((await client.balance()).available_msat);
 * ```
 */
export { SluiceClient, newIdempotencyKey, stringifyJson, type FetchFunction, type SluiceClientOptions } from './client.js';
export {
  SluiceError,
  SLUICE_ERROR_CODES,
  SLUICE_CLIENT_ERROR_CODES,
  isSluiceError,
  isSluiceServerErrorCode,
  type SluiceErrorCode,
  type SluiceServerErrorCode,
  type SluiceClientErrorCode,
} from './errors.js';
export type {
  ApiKey,
  App,
  Balance,
  CreatedApiKey,
  CreatedApp,
  CreateInvoiceRequest,
  DevnetInvoice,
  DevnetInvoiceRequest,
  DevnetPayment,
  DevnetPayRequest,
  DevnetWallet,
  DevnetWallets,
  Health,
  Invoice,
  ListOptions,
  Payment,
  PayInvoiceRequest,
  PayKeysendRequest,
  PayRequest,
} from './types.js';
export { SluiceApp, type ChargeRequest, type SluiceAppEvents, type SluiceAppOptions } from './streams/app.js';
export {
  SluicePayer,
  type Allowance,
  type AllowanceExceededReason,
  type SluicePayerEvents,
  type SluicePayerOptions,
  type SpendRecord,
} from './streams/payer.js';
export { memorySpendLog, storageSpendLog, SPEND_LOG_STORAGE_KEY, type SpendLog, type SpendLogLocks, type SyncStorage } from './streams/spend-log.js';
export { devnetWallet, lndRestWallet, weblnWallet, type LndRestWalletOptions, type WalletAdapter, type WalletPayment, type WebLnProvider } from './streams/wallets.js';
export type { ConnectionOptions, WebSocketConstructor, WebSocketLike } from './streams/connection.js';
export {
  createPayingFetch,
  CHAIN_STORAGE_KEY,
  type ChainStorage,
  type HeldChainInfo,
  type PaidCallReceipt,
  type PayCallBaseFetch,
  type PayCallChainOptions,
  type PayCallPayment,
  type PayCallRefund,
  type PayCallRefundOptions,
  type PayCallSpending,
  type PayingFetch,
  type PayingFetchEvents,
  type PayingFetchOptions,
} from './paycall/index.js';
export type { ConnectionState, InvoiceEvent, PayoutDestination, StepResult, Stream, StreamEvent, StreamTerms } from './streams/types.js';
export {
  SluiceSubscriber,
  type Subscription,
  type SubscriptionAllowance,
  type SubscriptionRefund,
  type SluiceSubscriberEvents,
  type SluiceSubscriberOptions,
} from './subscriptions/index.js';
