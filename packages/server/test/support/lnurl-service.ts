/**
 * A local LNURL-pay service (LUD-06 / LUD-16) for tests: `<name>@<host>` answers a
 * payRequest whose callback has a devnet wallet issue an invoice for the amount asked, with
 * the description hash of the published metadata. `cheat` makes it misbehave on purpose
 * (a wrong amount or hash), so tests can check that Sluice refuses such invoices. Loopback
 * only: Sluice allows it on the devnet (or with allowPrivateAddresses).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LightningBackend } from '../../src/lightning/backend.js';
import { msat } from '../../src/money/msat.js';

export interface LnurlService {
  /** host:port, for addresses `name@host`. */
  readonly host: string;
  /** The metadata the service publishes (its SHA-256 is the invoices' description hash). */
  readonly metadata: string;
  cheat: 'none' | 'amount' | 'hash';
  close(): Promise<void>;
}

export interface LnurlServiceOptions {
  /** The address's name (default `erin`). */
  name?: string;
  /** The wallet that issues the invoices. */
  wallet: LightningBackend;
  /** Text of the metadata (default: "Payments for <name> (devnet)"). */
  description?: string;
  minSendableMsat?: number;
  /** Extra paths, answered before the LNURL ones (for malformed-service tests). */
  extra?: (path: string, response: http.ServerResponse, host: string) => boolean;
}

export async function startLnurlService(options: LnurlServiceOptions): Promise<LnurlService> {
  const name = options.name ?? 'erin';
  const metadata = JSON.stringify([['text/plain', options.description ?? `Payments for ${name} (devnet)`]]);
  let host = '';
  const service: LnurlService = {
    get host() {
      return host;
    },
    metadata,
    cheat: 'none',
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://x');
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (options.extra?.(url.pathname, response, host)) return;
    if (url.pathname === `/.well-known/lnurlp/${name}`) {
      send(200, { tag: 'payRequest', callback: `http://${host}/lnurlp/${name}/callback`, minSendable: options.minSendableMsat ?? 1000, maxSendable: 1_000_000_000, metadata });
    } else if (url.pathname === `/lnurlp/${name}/callback`) {
      const amount = BigInt(url.searchParams.get('amount') ?? '0') + (service.cheat === 'amount' ? 1000n : 0n);
      const hashed = service.cheat === 'hash' ? 'other metadata' : metadata;
      const invoice = await options.wallet.createInvoice({ amountMsat: msat(amount), descriptionHash: createHash('sha256').update(hashed).digest('hex'), expiryS: 600 });
      send(200, { pr: invoice.paymentRequest, routes: [] });
    } else {
      send(404, { status: 'ERROR', reason: 'no such user' });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return service;
}
