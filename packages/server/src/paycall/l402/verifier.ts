/**
 * Local L402 verification: header, macaroon signature, payment proof and caveats, with
 * no database read and no Lightning call. Budgets (state) are checked afterwards by the
 * scheme; this part is pure, so the benchmark measures exactly it.
 *
 * The payment proof is sha256(preimage) == the payment hash in the identifier: only the
 * invoice's payer learns the preimage, so a valid preimage means the invoice was paid.
 */
import { createHash } from 'node:crypto';
import { checkCaveats, type Budget } from './caveats.js';
import { parseCredential } from './credential.js';
import { decodeIdentifier, parseMacaroon, signatureIsValid } from './macaroon.js';

export type L402RefusalCode = 'l402_malformed' | 'l402_invalid_macaroon' | 'l402_wrong_preimage' | 'l402_expired' | 'l402_caveat_violated';

export type L402Verification =
  | { ok: true; scheme: 'L402' | 'LSAT'; tokenId: string; paymentHash: string; budget: Budget }
  /** The token is genuine, just past its time: its id lets the 402 renew it. */
  | { ok: false; code: 'l402_expired'; message: string; tokenId: string }
  | { ok: false; code: Exclude<L402RefusalCode, 'l402_expired'>; message: string };

export interface L402RequestContext {
  service: string;
  capability: string | null;
}

export interface L402Verifier {
  /** Judges an Authorization header value for a request of this service and capability. */
  verify(authorization: string | undefined, context: L402RequestContext): L402Verification;
}

const sha256 = (bytes: Buffer): Buffer => createHash('sha256').update(bytes).digest();

export function createL402Verifier(deps: { secret: Buffer; nowMs: () => number }): L402Verifier {
  const { secret } = deps;
  return {
    verify(authorization, context) {
      const credential = parseCredential(authorization);
      if (!credential) {
        return { ok: false, code: 'l402_malformed', message: 'Authorization must be "L402 <base64 macaroon>:<64 hex preimage>" (or LSAT).' };
      }
      const macaroon = parseMacaroon(credential.macaroon);
      const identifier = macaroon ? decodeIdentifier(macaroon.identifier) : null;
      if (!macaroon || !identifier) {
        return { ok: false, code: 'l402_invalid_macaroon', message: 'The macaroon is not a version 0 L402 macaroon this server can read.' };
      }
      if (!signatureIsValid(secret, macaroon)) {
        return { ok: false, code: 'l402_invalid_macaroon', message: 'The macaroon signature is not valid (tampered, or minted by another server).' };
      }
      if (!sha256(credential.preimage).equals(identifier.paymentHash)) {
        return { ok: false, code: 'l402_wrong_preimage', message: "The preimage does not hash to the macaroon's payment hash." };
      }
      const verdict = checkCaveats(macaroon.caveats, {
        service: context.service,
        capability: context.capability,
        nowS: Math.floor(deps.nowMs() / 1000),
        paymentHash: identifier.paymentHash,
        sha256,
      });
      if (!verdict.ok) {
        return verdict.reason === 'expired'
          ? { ok: false, code: 'l402_expired', message: verdict.detail, tokenId: identifier.tokenId.toString('hex') }
          : { ok: false, code: 'l402_caveat_violated', message: verdict.detail };
      }
      return {
        ok: true,
        scheme: credential.scheme,
        tokenId: identifier.tokenId.toString('hex'),
        paymentHash: identifier.paymentHash.toString('hex'),
        budget: verdict.budget,
      };
    },
  };
}
