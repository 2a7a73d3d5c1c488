/** Shared set-up for the LND tests: the lnd backend -> the LND stand-in -> a devnet node. */
import https from 'node:https';
import { expect } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import type { LightningBackend } from '../../src/lightning/backend.js';
import { openDevnet, type Devnet } from '../../src/lightning/devnet/index.js';
import { createLndBackend } from '../../src/lightning/lnd/index.js';
import type { LndBackendOptions } from '../../src/lightning/lnd/index.js';
import { startLndStandin, type LndStandin } from '../support/lnd-standin.js';

export const START_MS = Date.UTC(2026, 0, 1);

export interface LndOverDevnet {
  devnet: Devnet;
  clock: ManualClock;
  standin: LndStandin;
  /** The lnd backend under test, talking to the stand-in, which is the devnet node `sluice`. */
  lnd: LightningBackend;
  /** Another lnd client for the same stand-in, with other options. */
  connect(overrides?: Partial<LndBackendOptions>): LightningBackend;
  close(): Promise<void>;
}

export async function openLndOverDevnet(seed = 'lnd-tests'): Promise<LndOverDevnet> {
  const clock = createManualClock(START_MS);
  const devnet = await openDevnet({ dataDir: null, clock, seed });
  const standin = await startLndStandin({ backend: devnet.backendFor('sluice'), clock });
  const clients: LightningBackend[] = [];
  const connect = (overrides: Partial<LndBackendOptions> = {}): LightningBackend => {
    const client = createLndBackend({
      restUrl: standin.url,
      macaroonHex: standin.macaroonHex,
      tlsCert: standin.certPem,
      clock,
      timeoutMs: 5_000,
      watchRetry: { initialDelayMs: 20, maxDelayMs: 200 },
      watchEmptyRelist: { initialDelayMs: 100, maxDelayMs: 400 },
      ...overrides,
    });
    clients.push(client);
    return client;
  };
  const lnd = connect();
  return {
    devnet,
    clock,
    standin,
    lnd,
    connect,
    async close() {
      await Promise.all(clients.map((client) => client.close()));
      await standin.close();
      await devnet.close();
      expect(standin.violations).toEqual([]);
    },
  };
}

/** Waits until `condition` holds, checking every few ms; bounded so a broken watcher fails the test. */
export async function eventually(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A request to the stand-in without the lnd client (to test the stand-in itself). */
export function rawRequest(
  standin: LndStandin,
  method: string,
  path: string,
  options: { body?: unknown; macaroonHex?: string | null } = {},
): Promise<{ status: number; text: string }> {
  const macaroonHex = options.macaroonHex === undefined ? standin.macaroonHex : options.macaroonHex;
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = https.request(
      new URL(path, standin.url),
      {
        method,
        ca: standin.certPem,
        headers: {
          ...(macaroonHex === null ? {} : { 'Grpc-Metadata-macaroon': macaroonHex }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}
