/**
 * Errors the LND client can raise from calls that are allowed to reject (getInfo,
 * createInvoice, lookupInvoice, lookupPayment). payInvoice and keysend never reject:
 * they turn every one of these into a payment outcome.
 *
 * Messages name what to check (a file, a variable) and never contain the macaroon.
 */

export type LndErrorKind =
  /** Could not connect, connection reset, or the stream broke. */
  | 'transport'
  /** No complete answer within the configured time. */
  | 'timeout'
  /** The server's TLS certificate is not the pinned tls.cert. */
  | 'tls_pin_mismatch'
  /** LND refused the macaroon (missing, wrong node, or lacking permissions). */
  | 'macaroon_rejected'
  /** LND answered with a gRPC error status. */
  | 'rpc'
  /** LND answered with something we cannot trust (bad JSON, a field of the wrong shape, a lie). */
  | 'invalid_response'
  /** The backend was closed. */
  | 'closed';

export class LndError extends Error {
  override readonly name = 'LndError';
  readonly kind: LndErrorKind;
  /** gRPC status code when LND sent one (5 NotFound, 6 AlreadyExists, ...). */
  readonly grpcCode: number | null;
  readonly httpStatus: number | null;
  /** LND's own message for `rpc` errors, unprefixed, for matching known refusals. */
  readonly rpcMessage: string | null;

  constructor(
    kind: LndErrorKind,
    message: string,
    details: { grpcCode?: number; httpStatus?: number; rpcMessage?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = kind;
    this.grpcCode = details.grpcCode ?? null;
    this.httpStatus = details.httpStatus ?? null;
    this.rpcMessage = details.rpcMessage ?? null;
  }
}

/** gRPC status codes LND uses that change what we do. */
export const GRPC_CODE = {
  unknown: 2,
  invalidArgument: 3,
  notFound: 5,
  alreadyExists: 6,
} as const;

export function isLndError(error: unknown): error is LndError {
  return error instanceof LndError;
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
