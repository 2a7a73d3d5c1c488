/**
 * The `sluice` package's programmatic entry: run Sluice inside another Node process, or use
 * its building blocks (the Msat money type, the BOLT 11 codec, the backends).
 */
export { createSluice, VERSION, type Sluice, type SluiceOptions } from './app.js';
export { loadConfig, SETTINGS, type Config } from './config.js';
export { ERROR_CODES, ApiError, type ErrorCode } from './errors/codes.js';
export * from './money/msat.js';
export { decodeBolt11, encodeBolt11 } from './lightning/bolt11/index.js';
export type * from './lightning/backend.js';
export { openDevnet, type Devnet, type DevnetOptions } from './lightning/devnet/index.js';
export { createLogger } from './logger.js';
// Pay per call: the gate, its middleware and the gateway (docs/gateway.md).
export type { CallPrice, GateOutcome, GateRequest, PayCallGate, PaymentScheme } from './paycall/gate.js';
export { createPayCallGate, payCallErrorBody, type CombinedPayCallGate, type PayCallErrorBody, type PayCallGateOptions } from './paycall/gate-combined.js';
export { createRoutePrices, routePricesFrom, type RoutePriceInput, type RoutePriceRule, type RoutePrices } from './paycall/route-prices.js';
export type { PaidCall, PayCallOptions } from './paycall/middleware/core.js';
export { addPayCallHook, payCallFastify } from './paycall/middleware/fastify.js';
export { payCallExpress, type ExpressLikeMiddleware, type ExpressLikeRequest } from './paycall/middleware/express.js';
export { withPayCall, type PaidIncomingMessage, type WithPayCallOptions } from './paycall/middleware/node-http.js';
export { createChainScheme, type ChainSchemeOptions } from './paycall/chain/index.js';
export { createGateway, loadGatewayConfig, startGatewayBeside, type Gateway, type GatewayConfig } from './paycall/gateway/index.js';
