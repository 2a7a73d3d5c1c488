/**
 * HTTPS to LND's REST gateway, with the node's own certificate pinned.
 *
 * Threat model: the network between Sluice and LND is not trusted. Whoever could answer
 * in LND's place could make us believe an invoice was paid, so we trust exactly the
 * configured tls.cert: it is the only CA (so any chain not rooted in it fails), and the
 * peer certificate's SHA-256 fingerprint must equal the pinned one (so a certificate
 * that the pinned one signed is refused too). LND's self-signed certificate often does
 * not name the host we dial (a container name, an IP), so the hostname check is
 * replaced by the fingerprint check rather than added to it.
 *
 * The macaroon travels in the `Grpc-Metadata-macaroon` header, hex encoded. It is never
 * logged and never put in an error message.
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { PeerCertificate } from 'node:tls';
import { LndError } from './errors.js';

/** Largest unary JSON body we read (a ListInvoices page of 1000 invoices fits easily). */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Largest single line of a streamed response (one invoice or payment update). */
const MAX_STREAM_LINE_BYTES = 1024 * 1024;

export interface LndTransportConfig {
  restUrl: string;
  macaroonHex: string;
  tlsCertPem: string;
  timeoutMs: number;
}

export type HttpMethod = 'GET' | 'POST';

export interface LndRequest {
  method: HttpMethod;
  path: string;
  query?: Record<string, string>;
  body?: object;
}

export interface LndTransport {
  /** One request, one JSON answer. Rejects with LndError; `timeoutMs` bounds the whole call. */
  unary(request: LndRequest): Promise<unknown>;
  /**
   * A streamed answer: newline-delimited JSON values. The caller bounds the time with
   * `signal`. A non-200 status rejects before the first value (LND sends `{"error": ...}`
   * or a bare status body). Breaking out of the loop closes the connection.
   */
  stream(request: LndRequest, signal: AbortSignal): AsyncGenerator<unknown, void, undefined>;
  close(): void;
}

export function createLndTransport(config: LndTransportConfig): LndTransport {
  const base = new URL(config.restUrl);
  const pinnedFingerprint = new X509Certificate(config.tlsCertPem).fingerprint256;
  const agent = new https.Agent({
    keepAlive: true,
    ca: config.tlsCertPem,
    // Cap the sockets so a flood of calls queues instead of opening thousands of
    // connections to the node.
    maxSockets: 64,
    checkServerIdentity: (_host: string, certificate: PeerCertificate) => checkPinnedCertificate(certificate, pinnedFingerprint),
  });
  const closing = new AbortController();
  // Requests in progress, so close() can end them (payments then answer `unknown`).
  const active = new Set<ReturnType<typeof https.request>>();

  function send(request: LndRequest, signal: AbortSignal): Promise<IncomingMessage> {
    if (closing.signal.aborted) return Promise.reject(new LndError('closed', 'the LND backend is closed'));
    const url = new URL(request.path, base);
    for (const [key, value] of Object.entries(request.query ?? {})) url.searchParams.set(key, value);
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    const headers: Record<string, string> = { 'Grpc-Metadata-macaroon': config.macaroonHex, accept: 'application/json' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve, reject) => {
      const outgoing = https.request(url, { method: request.method, agent, headers, signal }, resolve);
      active.add(outgoing);
      outgoing.on('close', () => active.delete(outgoing));
      outgoing.on('error', (error) => reject(transportError(error, signal, closing.signal)));
      outgoing.end(body);
    });
  }

  async function unary(request: LndRequest): Promise<unknown> {
    const signal = AbortSignal.timeout(config.timeoutMs);
    try {
      const response = await send(request, signal);
      const text = await readBody(response, MAX_BODY_BYTES);
      const status = response.statusCode ?? 0;
      const parsed = parseJson(text, request);
      if (status !== 200) throw errorFromStatusBody(status, parsed, request);
      return parsed;
    } catch (error) {
      throw transportError(error, signal, closing.signal);
    }
  }

  async function* stream(request: LndRequest, signal: AbortSignal): AsyncGenerator<unknown, void, undefined> {
    let response: IncomingMessage | undefined;
    try {
      response = await send(request, signal);
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        const text = await readBody(response, MAX_BODY_BYTES);
        throw errorFromStatusBody(status, parseJson(text, request), request);
      }
      let pending = '';
      for await (const chunk of response) {
        pending += (chunk as Buffer).toString('utf8');
        let newline = pending.indexOf('\n');
        while (newline !== -1) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line.length > 0) yield parseJson(line, request);
          newline = pending.indexOf('\n');
        }
        if (pending.length > MAX_STREAM_LINE_BYTES) {
          throw new LndError('invalid_response', `LND sent a streamed line longer than ${MAX_STREAM_LINE_BYTES} bytes on ${request.path}`);
        }
      }
      if (pending.trim().length > 0) yield parseJson(pending.trim(), request);
    } catch (error) {
      throw transportError(error, signal, closing.signal);
    } finally {
      // Leaving the loop early (a final update, a deadline) must close the connection,
      // not leave LND streaming into a socket nobody reads.
      response?.destroy();
    }
  }

  return {
    unary,
    stream,
    close() {
      closing.abort();
      for (const outgoing of active) outgoing.destroy(new LndError('closed', 'the LND backend is closed'));
      active.clear();
      agent.destroy();
    },
  };
}

/** Exported for tests: the pin check on its own. */
export function checkPinnedCertificate(certificate: PeerCertificate, pinnedFingerprint: string): Error | undefined {
  if (certificate.fingerprint256 === pinnedFingerprint) return undefined;
  const error = new Error(`LND's TLS certificate (${certificate.fingerprint256}) is not the pinned tls.cert (${pinnedFingerprint})`);
  (error as NodeJS.ErrnoException).code = 'ERR_LND_TLS_PIN_MISMATCH';
  return error;
}

/** The codes OpenSSL and our pin check give when the peer is not the pinned certificate. */
const PIN_MISMATCH_CODES = new Set([
  'ERR_LND_TLS_PIN_MISMATCH',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function transportError(error: unknown, signal: AbortSignal, closing: AbortSignal): LndError {
  if (error instanceof LndError) return error;
  if (closing.aborted) return new LndError('closed', 'the LND backend is closed', { cause: error });
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof LndError) return reason;
    return new LndError('timeout', 'LND did not answer in time', { cause: error });
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && PIN_MISMATCH_CODES.has(code)) {
    return new LndError(
      'tls_pin_mismatch',
      `refused LND's TLS certificate: it is not the configured tls.cert (LND_TLS_CERT_PATH) [${code}]`,
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new LndError('transport', `cannot reach LND: ${message}${code === undefined ? '' : ` [${code}]`}`, { cause: error });
}

function readBody(response: IncomingMessage, limitBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        response.destroy();
        reject(new LndError('invalid_response', `LND sent a body larger than ${limitBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.on('error', reject);
    response.on('close', () => {
      if (!response.complete) reject(new LndError('transport', 'LND closed the connection mid-answer'));
    });
  });
}

function parseJson(text: string, request: LndRequest): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new LndError('invalid_response', `LND sent something that is not JSON on ${request.method} ${request.path}`);
  }
}

/**
 * A non-200 answer. The REST gateway sends a gRPC status (`{code, message, details}`),
 * wrapped in `{"error": ...}` on streamed calls; older gateways added `error` as a string.
 */
function errorFromStatusBody(httpStatus: number, body: unknown, request: LndRequest): LndError {
  const status = rpcStatusOf(body);
  const where = `${request.method} ${request.path}`;
  if (status === null) return new LndError('invalid_response', `LND answered ${where} with HTTP ${httpStatus} and no gRPC status`, { httpStatus });
  return rpcError(status, where, httpStatus);
}

/** An LND gRPC status as an error, from a non-200 answer or an `{"error": ...}` stream line. */
export function rpcError(status: { code: number; message: string }, where: string, httpStatus?: number): LndError {
  if (isMacaroonRefusal(status.message)) {
    return new LndError(
      'macaroon_rejected',
      `LND rejected the macaroon (${status.message}): check that LND_MACAROON_PATH is this node's macaroon with invoice and offchain permissions`,
      { grpcCode: status.code, ...(httpStatus === undefined ? {} : { httpStatus }) },
    );
  }
  return new LndError('rpc', `LND refused ${where}: ${status.message} (gRPC code ${status.code})`, {
    grpcCode: status.code,
    rpcMessage: status.message,
    ...(httpStatus === undefined ? {} : { httpStatus }),
  });
}

/** Reads `{code, message}` or `{"error": {code, message}}` without trusting either. */
export function rpcStatusOf(body: unknown): { code: number; message: string } | null {
  if (typeof body !== 'object' || body === null) return null;
  const record = body as Record<string, unknown>;
  const inner = typeof record['error'] === 'object' && record['error'] !== null ? (record['error'] as Record<string, unknown>) : record;
  const code = inner['code'];
  const message = inner['message'];
  if (typeof code !== 'number' || !Number.isInteger(code) || typeof message !== 'string') return null;
  return { code, message: message.slice(0, 500) };
}

/** LND's wording when the macaroon is missing, for another node, or lacks a permission. */
export function isMacaroonRefusal(message: string): boolean {
  return /macaroon|verification failed|permission denied/i.test(message);
}
