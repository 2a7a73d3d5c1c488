/**
 * Options of the LND backend, their checks, and loading them from the environment:
 * LND_REST_URL (https://host:8080), LND_MACAROON_PATH (the binary macaroon file, or a
 * file holding its hex) and LND_TLS_CERT_PATH (LND's tls.cert, PEM).
 *
 * Configuration mistakes are expected failures, returned as values with a message that
 * names the variable to fix; the macaroon itself never appears in a message.
 */
import { X509Certificate } from 'node:crypto';
import { readFile as readFileFromDisk } from 'node:fs/promises';
import type { Clock } from '../../clock.js';
import type { LndLogger } from './logger.js';

export interface LndBackendOptions {
  /** Base URL of LND's REST gateway, e.g. https://127.0.0.1:8080. */
  restUrl: string;
  /** The macaroon, hex. Give this or `macaroon`. */
  macaroonHex?: string;
  /** The macaroon file's bytes. Give this or `macaroonHex`. */
  macaroon?: Uint8Array;
  /** LND's tls.cert (PEM). Exactly this certificate is trusted. */
  tlsCert: string | Uint8Array;
  /** Bound on each plain call, and the grace past a payment's own timeout. Default 30 s. */
  timeoutMs?: number;
  logger?: LndLogger;
  clock?: Clock;
  /** Reconnect pacing of the invoice watch. Default 250 ms doubling up to 10 s. */
  watchRetry?: { initialDelayMs: number; maxDelayMs: number };
  /** While nothing has ever settled on the node: how often the watch lists invoices again. Default 1 s doubling up to 5 min. */
  watchEmptyRelist?: { initialDelayMs: number; maxDelayMs: number };
}

export type LndConfigError =
  | 'MissingRestUrl'
  | 'InvalidRestUrl'
  | 'MissingMacaroon'
  | 'InvalidMacaroon'
  | 'UnreadableMacaroonFile'
  | 'MissingTlsCert'
  | 'InvalidTlsCert'
  | 'UnreadableTlsCertFile'
  | 'InvalidTimeout';

export type LndConfigProblem = { error: LndConfigError; message: string };

/** What the transport needs, checked and normalised. */
export interface ResolvedLndConfig {
  restUrl: string;
  macaroonHex: string;
  tlsCertPem: string;
  timeoutMs: number;
}

export const DEFAULT_LND_TIMEOUT_MS = 30_000;
const MAX_MACAROON_BYTES = 64 * 1024;

export function resolveLndOptions(options: LndBackendOptions): { ok: true; value: ResolvedLndConfig } | ({ ok: false } & LndConfigProblem) {
  const url = parseRestUrl(options.restUrl);
  if (!url.ok) return url;
  const macaroon = macaroonHexOf(options);
  if (!macaroon.ok) return macaroon;
  const tlsCertPem = typeof options.tlsCert === 'string' ? options.tlsCert : Buffer.from(options.tlsCert).toString('utf8');
  if (!isCertificatePem(tlsCertPem)) {
    return { ok: false, error: 'InvalidTlsCert', message: 'the LND TLS certificate is not a PEM certificate (LND_TLS_CERT_PATH should be tls.cert)' };
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_LND_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    return { ok: false, error: 'InvalidTimeout', message: `timeoutMs must be a positive integer, got ${timeoutMs}` };
  }
  return { ok: true, value: { restUrl: url.value, macaroonHex: macaroon.value, tlsCertPem, timeoutMs } };
}

function parseRestUrl(text: string): { ok: true; value: string } | ({ ok: false } & LndConfigProblem) {
  if (text.trim() === '') return { ok: false, error: 'MissingRestUrl', message: 'LND_REST_URL is not set' };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, error: 'InvalidRestUrl', message: 'LND_REST_URL is not a URL' };
  }
  if (url.protocol !== 'https:') {
    return { ok: false, error: 'InvalidRestUrl', message: 'LND_REST_URL must start with https:// (LND serves REST over TLS)' };
  }
  if (url.username !== '' || url.password !== '') {
    return { ok: false, error: 'InvalidRestUrl', message: 'LND_REST_URL must not contain credentials' };
  }
  return { ok: true, value: url.origin };
}

function macaroonHexOf(options: LndBackendOptions): { ok: true; value: string } | ({ ok: false } & LndConfigProblem) {
  if (options.macaroonHex !== undefined && options.macaroon !== undefined) {
    return { ok: false, error: 'InvalidMacaroon', message: 'give the macaroon once: macaroonHex or macaroon, not both' };
  }
  const hex = options.macaroonHex !== undefined ? options.macaroonHex.trim().toLowerCase() : options.macaroon !== undefined ? Buffer.from(options.macaroon).toString('hex') : '';
  if (hex === '') return { ok: false, error: 'MissingMacaroon', message: 'no LND macaroon was given (LND_MACAROON_PATH)' };
  if (!/^(?:[0-9a-f]{2})+$/.test(hex) || hex.length > MAX_MACAROON_BYTES * 2) {
    return { ok: false, error: 'InvalidMacaroon', message: 'the LND macaroon is not hex-encoded bytes' };
  }
  return { ok: true, value: hex };
}

function isCertificatePem(pem: string): boolean {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) return false;
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

export type LndEnvResult = { ok: true; options: LndBackendOptions } | ({ ok: false } & LndConfigProblem);

/**
 * Reads LND_REST_URL, LND_MACAROON_PATH and LND_TLS_CERT_PATH and the two files.
 * A macaroon file may hold the binary macaroon (as LND writes it) or its hex.
 */
export async function loadLndOptionsFromEnv(
  env: Record<string, string | undefined> = process.env,
  readFile: (path: string) => Promise<Buffer> = (path) => readFileFromDisk(path),
): Promise<LndEnvResult> {
  const restUrl = env['LND_REST_URL'] ?? '';
  if (restUrl.trim() === '') return { ok: false, error: 'MissingRestUrl', message: 'LND_REST_URL is not set' };
  const macaroonPath = env['LND_MACAROON_PATH'] ?? '';
  if (macaroonPath === '') return { ok: false, error: 'MissingMacaroon', message: 'LND_MACAROON_PATH is not set' };
  const certPath = env['LND_TLS_CERT_PATH'] ?? '';
  if (certPath === '') return { ok: false, error: 'MissingTlsCert', message: 'LND_TLS_CERT_PATH is not set' };

  let macaroonFile: Buffer;
  try {
    macaroonFile = await readFile(macaroonPath);
  } catch (error) {
    return { ok: false, error: 'UnreadableMacaroonFile', message: `cannot read LND_MACAROON_PATH ${macaroonPath}: ${codeOf(error)}` };
  }
  let certFile: Buffer;
  try {
    certFile = await readFile(certPath);
  } catch (error) {
    return { ok: false, error: 'UnreadableTlsCertFile', message: `cannot read LND_TLS_CERT_PATH ${certPath}: ${codeOf(error)}` };
  }
  const macaroonText = macaroonFile.toString('latin1').trim();
  const options: LndBackendOptions = /^[0-9a-fA-F]+$/.test(macaroonText)
    ? { restUrl, macaroonHex: macaroonText, tlsCert: certFile }
    : { restUrl, macaroon: macaroonFile, tlsCert: certFile };
  const resolved = resolveLndOptions(options);
  if (!resolved.ok) return resolved;
  return { ok: true, options };
}

function codeOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code ?? (error instanceof Error ? error.message : String(error));
}
