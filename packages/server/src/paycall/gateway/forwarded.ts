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

/**
 * Hop-by-hop headers (RFC 9110 section 7.6.1): they describe the client's connection to the
 * gateway, not the request, and the upstream connection's own are set by the HTTP client
 * (undici refuses some of them outright). `expect` was already answered to the client.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);
/** What the gateway sets itself (from `forwardedHeaders`): the client's own are never passed on. */
const FORWARDING: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);
const NONE: readonly string[] = [];

/** The header names a `Connection` header lists (lower case); most requests have none worth parsing. */
function connectionNames(connection: string | string[] | undefined): readonly string[] {
  if (typeof connection !== 'string') return NONE;
  // "keep-alive" and "close" are what nearly every client sends: nothing more to remove.
  const lower = connection.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return NONE;
  return lower.split(',').map((token) => token.trim());
}

/**
 * A copy of `headers` without `strip`, the hop-by-hop headers and those `Connection`
 * names, with X-Forwarded-* from `forwarded`. For a WebSocket upgrade (`upgrade: true`)
 * `Connection: Upgrade` and `Upgrade` are kept: they are what is being forwarded.
 * One pass that builds a new object (no `delete`): this runs for every proxied request.
 */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, strip: readonly string[], forwarded: Record<string, string>, options: { upgrade?: boolean } = {}): IncomingHttpHeaders {
  const upgrade = options.upgrade === true;
  const named = connectionNames(headers.connection);
  const copy: IncomingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    const kept = upgrade && (name === 'upgrade' || name === 'connection');
    if (!kept && (HOP_BY_HOP.has(name) || named.includes(name))) continue;
    if (FORWARDING.has(name) || strip.includes(name)) continue;
    copy[name] = headers[name];
  }
  for (const name of Object.keys(forwarded)) copy[name] = forwarded[name];
  return copy;
}

/**
 * The upstream's response headers for the client: its hop-by-hop headers (and those its
 * `Connection` names) removed, so the gateway's own connection handling holds (a client's
 * `Connection: close` is honoured; the upstream's keep-alive timeout is not advertised),
 * then `extra` (the payment scheme's headers) on top.
 */
export function downstreamResponseHeaders(headers: IncomingHttpHeaders, extra: Record<string, string>): IncomingHttpHeaders {
  const named = connectionNames(headers.connection);
  const copy: IncomingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (HOP_BY_HOP.has(name) || named.includes(name)) continue;
    copy[name] = headers[name];
  }
  for (const name of Object.keys(extra)) copy[name] = extra[name];
  return copy;
}
