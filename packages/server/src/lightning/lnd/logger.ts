/**
 * The logging the LND client needs: a subset of pino's Logger, so the app passes its
 * pino instance and tests pass nothing. Never given a macaroon or an unpaid preimage.
 */
export interface LndLogger {
  debug(details: object, message: string): void;
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export const silentLndLogger: LndLogger = {
  debug() {},
  info() {},
  warn() {},
};
