/**
 * Lightning addresses (LUD-16) over LNURL-pay (LUD-06): `name@domain` ->
 * `https://domain/.well-known/lnurlp/name` -> a callback that returns a BOLT 11 invoice for
 * the amount asked.
 *
 * Threat model: the address is chosen by a payer, so the domain is untrusted. Only https is
 * used (plain http only for loopback hosts, for local development and tests), loopback and
 * private addresses are refused unless the operator allows them (devnet), responses are
 * size- and time-limited, and the invoice returned is checked before anyone pays it: the
 * exact amount asked, and a description hash equal to SHA-256 of the metadata the service
 * published (LUD-06), so the service cannot swap in an invoice for something else.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isPublicAddress, publicOnlyLookup } from './public-address.js';
import { decodeBolt11 } from './bolt11/index.js';
import type { Msat } from '../money/msat.js';

export type LightningAddressError = 'InvalidAddress' | 'Unreachable' | 'BadResponse' | 'AmountOutOfRange' | 'InvoiceMismatch';

export type LightningAddressResult =
  | { ok: true; paymentRequest: string }
  | { ok: false; error: LightningAddressError; detail: string };

export interface LightningAddressOptions {
  timeoutMs?: number;
  /**
   * Connect to loopback and private addresses too (default false). Only for development
   * and tests on the devnet: a payer chooses the address, and must not be able to point
   * Sluice at the operator's own network.
   */
  allowPrivateAddresses?: boolean;
}

const ADDRESS = /^([a-z0-9._+-]{1,64})@([a-z0-9.-]{1,253}(?::[0-9]{1,5})?)$/i;
const RESPONSE_BYTES_MAX = 64 * 1024;
const LOOPBACK = /^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$/i;

export function lightningAddressUrl(address: string): string | null {
  const match = ADDRESS.exec(address.trim());
  if (!match) return null;
  const [, name, host] = match as unknown as [string, string, string];
  const scheme = LOOPBACK.test(host) ? 'http' : 'https';
  return `${scheme}://${host.toLowerCase()}/.well-known/lnurlp/${name.toLowerCase()}`;
}

type JsonResult = { ok: true; body: Record<string, unknown> } | { ok: false; error: LightningAddressError; detail: string };

/**
 * GETs a URL and parses its JSON body, refusing what a hostile service could abuse: bodies
 * past RESPONSE_BYTES_MAX (counted while reading, not after), redirects, slow answers, and
 * (unless private addresses are allowed) any host that is or resolves to a loopback,
 * private, link-local or otherwise non-public address. The address check happens inside
 * the connection's own DNS lookup, so a name cannot resolve to a public address when
 * checked and to a private one when connected (DNS rebinding).
 */
async function getJson(url: string, options: LightningAddressOptions): Promise<JsonResult> {
  const target = new URL(url);
  const hostname = target.hostname.replace(/^\[|\]$/g, '');
  const allowPrivate = options.allowPrivateAddresses ?? false;
  if (!allowPrivate && isIP(hostname) !== 0 && !isPublicAddress(hostname)) {
    return { ok: false, error: 'Unreachable', detail: `${target.host} is not a public address` };
  }
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise<JsonResult>((resolve) => {
    let settled = false;
    const finish = (result: JsonResult): void => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const request = transport.get(
      target,
      {
        headers: { accept: 'application/json' },
        timeout: options.timeoutMs ?? 10_000,
        ...(allowPrivate ? {} : { lookup: publicOnlyLookup }),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 300 && status < 400) {
          response.resume();
          finish({ ok: false, error: 'BadResponse', detail: `${url} redirects (HTTP ${status}); redirects are not followed` });
          return;
        }
        const chunks: Buffer[] = [];
        let length = 0;
        response.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > RESPONSE_BYTES_MAX) {
            finish({ ok: false, error: 'BadResponse', detail: `${url} answered more than ${RESPONSE_BYTES_MAX} bytes` });
            request.destroy();
            return;
          }
          chunks.push(chunk);
        });
        response.on('error', (error) => finish({ ok: false, error: 'Unreachable', detail: `${url}: ${error.message}` }));
        response.on('end', () => finish(parseJsonBody(url, status, Buffer.concat(chunks).toString('utf8'))));
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${options.timeoutMs ?? 10_000} ms`)));
    request.on('error', (error) => finish({ ok: false, error: 'Unreachable', detail: `${url}: ${error.message}` }));
  });
}

function parseJsonBody(url: string, status: number, text: string): JsonResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, error: 'BadResponse', detail: `${url} did not answer JSON (HTTP ${status})` };
  }
  if (typeof body !== 'object' || body === null) return { ok: false, error: 'BadResponse', detail: `${url} answered ${typeof body}` };
  const record = body as Record<string, unknown>;
  if (record.status === 'ERROR') return { ok: false, error: 'BadResponse', detail: `${url}: ${String(record.reason ?? 'error')}` };
  if (status < 200 || status >= 300) return { ok: false, error: 'BadResponse', detail: `${url} answered HTTP ${status}` };
  return { ok: true, body: record };
}

/** Asks the address's LNURL-pay service for an invoice of exactly amountMsat, and checks it. */
export async function invoiceFromLightningAddress(address: string, amountMsat: Msat, options: LightningAddressOptions = {}): Promise<LightningAddressResult> {
  const url = lightningAddressUrl(address);
  if (!url) return { ok: false, error: 'InvalidAddress', detail: `${JSON.stringify(address)} is not name@domain` };
  const first = await getJson(url, options);
  if (!first.ok) return first;
  const { callback, minSendable, maxSendable, metadata, tag } = first.body;
  if (tag !== 'payRequest' || typeof callback !== 'string' || typeof metadata !== 'string' || typeof minSendable !== 'number' || typeof maxSendable !== 'number') {
    return { ok: false, error: 'BadResponse', detail: `${url} is not an LNURL-pay response` };
  }
  if (BigInt(Math.trunc(minSendable)) > amountMsat || BigInt(Math.trunc(maxSendable)) < amountMsat) {
    return { ok: false, error: 'AmountOutOfRange', detail: `${address} accepts ${minSendable}..${maxSendable} msat, not ${amountMsat}` };
  }
  let callbackUrl: URL;
  try {
    callbackUrl = new URL(callback);
  } catch {
    return { ok: false, error: 'BadResponse', detail: `callback ${JSON.stringify(callback)} is not a URL` };
  }
  if (callbackUrl.protocol !== 'https:' && !(callbackUrl.protocol === 'http:' && LOOPBACK.test(callbackUrl.host))) {
    return { ok: false, error: 'BadResponse', detail: 'the callback must use https' };
  }
  callbackUrl.searchParams.set('amount', amountMsat.toString());
  const second = await getJson(callbackUrl.toString(), options);
  if (!second.ok) return second;
  const paymentRequest = second.body.pr;
  if (typeof paymentRequest !== 'string') return { ok: false, error: 'BadResponse', detail: 'the callback answered no pr' };
  const decoded = decodeBolt11(paymentRequest);
  if (!decoded.ok) return { ok: false, error: 'InvoiceMismatch', detail: `the invoice does not decode: ${decoded.detail}` };
  if (decoded.invoice.amountMsat !== amountMsat) {
    return { ok: false, error: 'InvoiceMismatch', detail: `the invoice asks for ${decoded.invoice.amountMsat ?? 'any amount'}, not ${amountMsat} msat` };
  }
  const expectedHash = createHash('sha256').update(metadata, 'utf8').digest('hex');
  if (decoded.invoice.descriptionHash !== expectedHash) {
    return { ok: false, error: 'InvoiceMismatch', detail: 'the invoice description hash is not SHA-256 of the metadata' };
  }
  return { ok: true, paymentRequest };
}
