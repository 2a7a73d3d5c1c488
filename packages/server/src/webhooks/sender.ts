/**
 * One webhook attempt: POST the body, wait at most the timeout, read at most a little of
 * the answer. Redirects are not followed (a 3xx is a failure), so an endpoint cannot
 * bounce Sluice somewhere else. When private addresses are blocked, the check runs inside
 * the connection's own DNS lookup (no DNS rebinding between check and connect), and IP
 * literals are checked before connecting.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isPublicAddress, publicOnlyLookup } from '../lightning/public-address.js';

/** How much of the receiver's answer the delivery log keeps. */
export const RESPONSE_EXCERPT_BYTES = 1024;

export interface SendResult {
  statusCode: number | null;
  error: string | null;
  responseExcerpt: string | null;
  durationMs: number;
}

export interface Sender {
  send(url: string, headers: Record<string, string>, body: string): Promise<SendResult>;
  /** Aborts attempts under way and closes kept-alive connections. */
  close(): void;
}

export interface SenderOptions {
  timeoutMs: number;
  allowPrivateAddresses: boolean;
  /** Kept-alive sockets per host (the per-endpoint concurrency is a good value). */
  maxSocketsPerHost: number;
}

export function createSender(options: SenderOptions): Sender {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSocketsPerHost, ...(options.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup }) };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const under = new Set<http.ClientRequest>();

  const send = (url: string, headers: Record<string, string>, body: string): Promise<SendResult> => {
    const started = performance.now();
    const elapsed = () => Math.max(0, Math.round(performance.now() - started));
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      return Promise.resolve({ statusCode: null, error: 'invalid URL', responseExcerpt: null, durationMs: 0 });
    }
    const host = target.hostname.replace(/^\[|\]$/g, '');
    if (!options.allowPrivateAddresses && isIP(host) !== 0 && !isPublicAddress(host)) {
      return Promise.resolve({ statusCode: null, error: `${host} is not a public address`, responseExcerpt: null, durationMs: 0 });
    }
    const transport = target.protocol === 'https:' ? https : http;
    const payload = Buffer.from(body, 'utf8');
    return new Promise<SendResult>((resolve) => {
      let settled = false;
      const finish = (result: Omit<SendResult, 'durationMs'>): void => {
        if (settled) return;
        settled = true;
        under.delete(request);
        clearTimeout(timer);
        resolve({ ...result, durationMs: elapsed() });
      };
      const request = transport.request(target, {
        method: 'POST',
        agent: target.protocol === 'https:' ? httpsAgent : httpAgent,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(payload.length), 'user-agent': 'Sluice-Webhooks/1' },
      }, (response) => {
        const chunks: Buffer[] = [];
        let length = 0;
        response.on('data', (chunk: Buffer) => {
          if (length < RESPONSE_EXCERPT_BYTES) chunks.push(chunk);
          length += chunk.length;
        });
        response.on('error', (error) => finish({ statusCode: response.statusCode ?? null, error: error.message, responseExcerpt: null }));
        response.on('end', () => {
          const excerpt = Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString('utf8');
          finish({ statusCode: response.statusCode ?? null, error: null, responseExcerpt: excerpt === '' ? null : excerpt });
        });
      });
      // The whole attempt (connect, send, answer) has one deadline, not one per socket event.
      const timer = setTimeout(() => {
        request.destroy(new Error(`no answer within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      under.add(request);
      request.on('error', (error) => finish({ statusCode: null, error: error.message || String(error), responseExcerpt: null }));
      request.end(payload);
    });
  };

  return {
    send,
    close() {
      for (const request of under) request.destroy(new Error('Sluice is shutting down'));
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
