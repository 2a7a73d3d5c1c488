/**
 * Structured logs (pino). Secrets never reach them: API keys, macaroons and preimages of
 * unpaid invoices are redacted by path wherever they might appear, and our own log calls
 * never pass them.
 */
import pino, { type Logger } from 'pino';

export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["grpc-metadata-macaroon"]',
  'headers.authorization',
  'apiKey',
  'api_key',
  'adminKey',
  'macaroon',
  'preimage',
  '*.apiKey',
  '*.api_key',
  '*.preimage',
  '*.macaroon',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, base: { service: 'sluice' } }, destination);
}
