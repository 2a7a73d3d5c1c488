/**
 * The devnet's one door to the BOLT 11 codec: devnet invoices are real regtest invoices
 * (`lnbcrt...`), signed with the payee node's key, with a payment secret and the features
 * every current wallet expects (var_onion_optin, payment_secret).
 */
import { decodeBolt11, encodeBolt11, type Bolt11DecodeResult } from '../bolt11/index.js';
import type { Msat } from '../../money/msat.js';

export interface DevnetInvoiceFields {
  /** null: any amount. */
  amountMsat: Msat | null;
  /** Unix seconds. */
  timestamp: number;
  expiryS: number;
  paymentHash: string;
  paymentSecret: string;
  /** Exactly one of description and descriptionHash. */
  description?: string;
  descriptionHash?: string;
}

export function encodeDevnetInvoice(fields: DevnetInvoiceFields, privateKey: Uint8Array): string {
  return encodeBolt11(
    {
      network: 'regtest',
      amountMsat: fields.amountMsat,
      timestamp: fields.timestamp,
      paymentHash: fields.paymentHash,
      paymentSecret: fields.paymentSecret,
      ...(fields.descriptionHash !== undefined ? { descriptionHash: fields.descriptionHash } : { description: fields.description ?? '' }),
      expiryS: fields.expiryS,
    },
    privateKey,
  );
}

export function decodeInvoice(paymentRequest: string): Bolt11DecodeResult {
  return decodeBolt11(paymentRequest);
}
