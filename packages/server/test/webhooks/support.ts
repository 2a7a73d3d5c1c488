/**
 * A real HTTP receiver for webhook tests: records every request (headers and raw body) and
 * answers with whatever status the test sets; "down" closes connections without answering.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export interface ReceivedRequest {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Receiver {
  url: string;
  received: ReceivedRequest[];
  /** The status to answer, or "down" to drop the connection. */
  mode: number | 'down';
  /** Resolves when `count` requests have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

export async function startReceiver(mode: number | 'down' = 200, port = 0): Promise<Receiver> {
  const received: ReceivedRequest[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const receiver: Receiver = {
    url: '',
    received,
    mode,
    async waitFor(count, timeoutMs = 10_000) {
      if (received.length < count) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`receiver got ${received.length} requests, waited for ${count}`)), timeoutMs);
          waiters.push({ count, resolve: () => { clearTimeout(timer); resolve(); } });
        });
      }
      return received;
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (receiver.mode === 'down') {
        request.socket.destroy();
        return;
      }
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      for (const waiter of waiters.filter((entry) => received.length >= entry.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      response.writeHead(receiver.mode, { 'content-type': 'text/plain' });
      response.end(receiver.mode >= 200 && receiver.mode < 300 ? 'ok' : 'not now');
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}

/**
 * Verifies a delivery with an independent implementation: Python's hmac and hashlib, not
 * Sluice's code. Prints "ok" or the reason; throws when python3 is missing.
 */
export function verifyWithPython(input: { secret: string; header: string; body: string; nowS: number; toleranceS?: number }): string {
  const script = path.resolve(__dirname, 'verify_signature.py');
  return execFileSync('python3', [script], {
    input: JSON.stringify({ secret: input.secret, header: input.header, body: input.body, now: input.nowS, tolerance: input.toleranceS ?? 300 }),
    encoding: 'utf8',
  }).trim();
}
