/**
 * Request headers for the upstream: the payment credentials removed, X-Forwarded-* set.
 * Shared by plain HTTP requests and WebSocket upgrades.
 *
 * Without `trust_forwarded_headers` the client's own X-Forwarded-* are replaced, never
 * appended to: a client cannot make the upstream believe it comes from another address.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

export interface ForwardedOptions {
  trustForwardedHeaders: boolean;
}

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function forwardedHeaders(request: IncomingMessage, options: ForwardedOptions): Record<string, string> {
  const clientAddress = request.socket.remoteAddress ?? 'unknown';
  const proto = (request.socket as TLSSocket).encrypted ? 'https' : 'http';
  const host = firstValue(request.headers.host) ?? '';
  if (!options.trustForwardedHeaders) {
    return { 'x-forwarded-for': clientAddress, 'x-forwarded-proto': proto, 'x-forwarded-host': host };
  }
  const previousFor = request.headers['x-forwarded-for'];
  const chain = Array.isArray(previousFor) ? previousFor.join(', ') : previousFor;
  return {
    'x-forwarded-for': chain === undefined || chain === '' ? clientAddress : `${chain}, ${clientAddress}`,
    'x-forwarded-proto': firstValue(request.headers['x-forwarded-proto']) ?? proto,
    'x-forwarded-host': firstValue(request.headers['x-forwarded-host']) ?? host,
  };
}

/** A copy of `headers` without `strip`, with X-Forwarded-* from `forwarded`. */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, strip: readonly string[], forwarded: Record<string, string>): IncomingHttpHeaders {
  const copy: IncomingHttpHeaders = { ...headers };
  for (const name of strip) delete copy[name];
  delete copy['x-forwarded-for'];
  delete copy['x-forwarded-proto'];
  delete copy['x-forwarded-host'];
  delete copy.forwarded;
  return { ...copy, ...forwarded };
}
