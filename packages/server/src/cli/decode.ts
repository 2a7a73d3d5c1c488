/** `sluice decode <bolt11>`: reads an invoice locally, with no server and no network. */
import { stringifyJson } from '@sluice/client';
import { decodeBolt11, type Bolt11Invoice } from '../lightning/bolt11/index.js';
import { amount, formatRows } from './format.js';
import { CliError, type CliIo } from './io.js';

export function describeInvoice(invoice: Bolt11Invoice, nowS: number): string {
  const expired = nowS >= invoice.expiresAt;
  const routes = invoice.routeHints.map(
    (route, index) => `route ${index + 1}: ` + route.map((hop) => `${hop.pubkey} via ${hop.shortChannelId}`).join(' -> '),
  );
  return formatRows([
    ['network', `${invoice.network} (${invoice.prefix})`],
    ['amount', invoice.amountMsat === null ? 'any (the payer chooses)' : amount(invoice.amountMsat)],
    ['payment hash', invoice.paymentHash],
    ['description', invoice.description === null ? null : JSON.stringify(invoice.description)],
    ['description hash', invoice.descriptionHash],
    ['payee', `${invoice.payeePubkey} (${invoice.payeePubkeyInInvoice ? 'n field, signature verified' : 'recovered from the signature'})`],
    ['created', new Date(invoice.timestamp * 1000).toISOString()],
    ['expires', `${new Date(invoice.expiresAt * 1000).toISOString()} (${invoice.expiryS} s after creation)${expired ? ' EXPIRED' : ''}`],
    ['min final cltv', String(invoice.minFinalCltvExpiry)],
    ['features', invoice.features.length === 0 ? 'none' : invoice.features.join(', ')],
    ['fallbacks', invoice.fallbackAddresses.length === 0 ? null : invoice.fallbackAddresses.map((fallback) => fallback.address).join(', ')],
    ['route hints', routes.length === 0 ? null : routes.join('; ')],
    ['metadata', invoice.metadata],
    ['unknown fields', invoice.unknownTags.length === 0 ? null : String(invoice.unknownTags.length)],
  ]);
}

export function runDecode(io: CliIo, text: string, options: { json: boolean; nowS: number }): void {
  const decoded = decodeBolt11(text.trim());
  if (!decoded.ok) throw new CliError('invoice_invalid', `not a valid BOLT 11 invoice (${decoded.error}): ${decoded.detail}`);
  if (options.json) {
    io.stdout(stringifyJson(decoded.invoice, 2) + '\n');
    return;
  }
  io.stdout(describeInvoice(decoded.invoice, options.nowS));
}
