/**
 * A test Sluice with the demo routes. createSluice makes Fastify ready before it returns,
 * and Fastify takes no routes after that; so until app.ts registers the demo itself, the
 * demo routes live on a second Fastify instance (same error handling and auth) that the
 * listening server hands the home page, /demo and /sdk requests to.
 */
import { execFileSync } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerDemoRoutes } from '../../src/demo/routes.js';
import { createHttpServer, type SluiceFastify } from '../../src/http/server.js';
import { registerStreamSocket } from '../../src/streams/ws.js';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The SDK's ES modules, compiled now so the page gets the code under test. */
export function buildSdk(): string {
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'packages/client'], { cwd: REPO_ROOT, stdio: 'pipe' });
  return path.join(REPO_ROOT, 'packages/client/dist');
}

const DEMO_PATHS = /^\/($|\?|demo($|[/?])|sdk\/)/;

export interface DemoSluice {
  t: TestSluice;
  demo: SluiceFastify;
  baseUrl: string;
  close(): Promise<void>;
}

export async function startDemoSluice(): Promise<DemoSluice> {
  const t = await startTestSluice();
  const { sluice } = t;
  const demo = await createHttpServer({
    logger: sluice.http.log as never,
    apps: sluice.apps,
    bodyLimitBytes: 1024 * 1024,
    rateLimitPerMinute: 100_000,
    version: 'test',
    authenticatePayer: async (token) => {
      const stream = await sluice.streams.authenticatePayer(token);
      return stream ? { streamId: stream.id } : null;
    },
  });
  const devnet = sluice.devnet;
  registerDemoRoutes(demo, {
    apps: sluice.apps,
    streams: sluice.streams,
    invoices: sluice.invoices,
    ledger: sluice.ledger,
    wallets: devnet
      ? { names: () => devnet.nodeNames(), backendFor: (name) => devnet.backendFor(name), balanceMsat: (name) => devnet.nodeBalanceMsat(name), pubkey: (name) => devnet.nodePubkey(name) }
      : null,
    afterWalletPaid: async (paymentHash) => {
      const invoice = await sluice.backend.lookupInvoice(paymentHash);
      if (invoice?.state === 'settled' && invoice.settleIndex !== null && invoice.settledAt !== null && invoice.amountPaidMsat !== null) {
        await sluice.invoices.handleSettled({ ...invoice, state: 'settled', settleIndex: invoice.settleIndex, settledAt: invoice.settledAt, amountPaidMsat: invoice.amountPaidMsat });
      }
    },
    logger: sluice.http.log as never,
    now: () => Date.now(),
    sdkDir: buildSdk(),
  });
  await demo.ready();
  const server = sluice.http.server;
  // app.ts may already serve sluice.v1; otherwise serve it here.
  const socket = server.listenerCount('upgrade') > 0 ? null : registerStreamSocket(sluice.http, { streams: sluice.streams, apps: sluice.apps, logger: sluice.http.log });
  const original = server.listeners('request') as ((request: IncomingMessage, response: ServerResponse) => void)[];
  server.removeAllListeners('request');
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    if (DEMO_PATHS.test(request.url ?? '')) demo.routing(request, response);
    else for (const listener of original) listener.call(server, request, response);
  });
  const baseUrl = await sluice.listen();
  return {
    t,
    demo,
    baseUrl,
    async close() {
      await socket?.close();
      await t.close();
      await demo.close();
    },
  };
}
