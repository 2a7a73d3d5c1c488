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
