/**
 * Paid WebSocket upgrades: the upgrade request is priced and judged like any request; once
 * allowed, the gateway opens the same upgrade to the upstream and, when the upstream
 * switches protocols, pipes the two sockets together byte for byte. The gateway never
 * parses WebSocket frames, so any subprotocol and extension the two ends agree on works.
 *
 * A refused upgrade gets a plain HTTP answer (status, challenge headers, JSON error body)
 * and the socket is closed; an upstream that answers the upgrade without switching has
 * its answer relayed as it is.
 */
import http, { STATUS_CODES, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';

export interface UpgradeRefusal {
  status: number;
  headers: Record<string, string | string[]>;
  body: unknown;
}

/** Writes an HTTP/1.1 answer on a socket that was going to be upgraded, then closes it. */
export function writeSocketResponse(socket: Duplex, answer: UpgradeRefusal): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(answer.body);
  const lines = [`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}`];
  for (const [name, value] of Object.entries(answer.headers)) {
    for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
  }
  lines.push('content-type: application/json; charset=utf-8', `content-length: ${Buffer.byteLength(body)}`, 'connection: close');
  socket.end(lines.join('\r\n') + '\r\n\r\n' + body);
}

function headerLines(rawHeaders: readonly string[], extra: Record<string, string>, drop: readonly string[] = []): string[] {
  const extraNames = new Set([...Object.keys(extra).map((name) => name.toLowerCase()), ...drop]);
  const lines: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!extraNames.has((rawHeaders[i] as string).toLowerCase())) lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  }
  for (const [name, value] of Object.entries(extra)) lines.push(`${name}: ${value}`);
  return lines;
}

export interface TunnelOptions {
  /** Full URL of the upstream resource (origin + base path + path + query). */
  target: URL;
  method: string;
  headers: http.OutgoingHttpHeaders;
  /** Headers the gate wants on the 101 (e.g. the chain balance). */
  responseHeaders: Record<string, string>;
  timeoutMs: number;
  /** Called when the upstream cannot be reached (502) or is too slow to answer (504). */
  onUpstreamError(kind: 'timeout' | 'unavailable', error: Error): UpgradeRefusal;
  /** Every tunnel that opens, so the gateway can cut them at close. */
  track(sockets: readonly Duplex[]): void;
}

/** Opens the upgrade upstream and, once it switches protocols, joins the two sockets. */
export function tunnelUpgrade(request: IncomingMessage, clientSocket: Duplex, head: Buffer, options: TunnelOptions): void {
  const { target } = options;
  const client = target.protocol === 'https:' ? https : http;
  const upstreamRequest = client.request({
    protocol: target.protocol,
    hostname: target.hostname,
    port: target.port,
    method: options.method,
    path: target.pathname + target.search,
    headers: options.headers,
    ...(target.protocol === 'https:' ? { rejectUnauthorized: true } : {}),
  });
  let answered = false;
  const fail = (kind: 'timeout' | 'unavailable', error: Error): void => {
    if (answered) return;
    answered = true;
    upstreamRequest.destroy();
    writeSocketResponse(clientSocket, options.onUpstreamError(kind, error));
  };
  upstreamRequest.setTimeout(options.timeoutMs, () => fail('timeout', new Error(`the upstream did not answer the upgrade within ${options.timeoutMs} ms`)));
  upstreamRequest.on('error', (error) => fail('unavailable', error));
  // The client gave up before the upstream answered.
  clientSocket.on('close', () => {
    if (!answered) {
      answered = true;
      upstreamRequest.destroy();
    }
  });

  upstreamRequest.on('response', (response) => {
    // The upstream did not switch protocols: relay its answer and close.
    if (answered) return response.resume();
    answered = true;
    const lines = [`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}`, ...headerLines(response.rawHeaders, { ...options.responseHeaders, connection: 'close' }, ['transfer-encoding'])];
    // Node has already removed any chunked framing from `response`: the body is sent raw and
    // ends when the connection closes.
    clientSocket.write(lines.join('\r\n') + '\r\n\r\n');
    response.pipe(clientSocket);
  });

  upstreamRequest.on('upgrade', (response, upstreamSocket, upstreamHead) => {
    if (answered || clientSocket.destroyed) {
      upstreamSocket.destroy();
      return;
    }
    answered = true;
    upstreamRequest.setTimeout(0);
    const lines = [`HTTP/1.1 101 ${response.statusMessage ?? 'Switching Protocols'}`, ...headerLines(response.rawHeaders, options.responseHeaders)];
    clientSocket.write(lines.join('\r\n') + '\r\n\r\n');
    if (upstreamHead.length > 0) clientSocket.write(upstreamHead);
    if (head.length > 0) upstreamSocket.write(head);
    const cut = (): void => {
      clientSocket.destroy();
      upstreamSocket.destroy();
    };
    clientSocket.on('error', cut);
    upstreamSocket.on('error', cut);
    clientSocket.on('close', cut);
    upstreamSocket.on('close', cut);
    options.track([clientSocket, upstreamSocket]);
    upstreamSocket.pipe(clientSocket);
    clientSocket.pipe(upstreamSocket);
  });

  upstreamRequest.end();
}
