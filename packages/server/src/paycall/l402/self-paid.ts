/**
 * A credential exactly as a client holds one after paying, minted without an invoice (the
 * preimage is drawn here): for benchmarks and tests of verification, which must not
 * depend on Lightning. Never used to serve real calls.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mintCaveats } from './caveats.js';
import { mintMacaroon } from './macaroon.js';

export interface SelfPaidCredential {
  /** The Authorization header value: `L402 <base64 macaroon>:<hex preimage>`. */
  authorization: string;
  tokenId: string;
  paymentHash: string;
}

export function mintSelfPaidCredential(input: { secret: Buffer; service: string; budgetMsat: bigint | null; validUntilS: number; calls?: bigint }): SelfPaidCredential {
  const preimage = randomBytes(32);
  const paymentHash = createHash('sha256').update(preimage).digest();
  const tokenId = randomBytes(32);
  const caveats = mintCaveats({ service: input.service, validUntilS: input.validUntilS, budgetMsat: input.budgetMsat, calls: input.calls ?? null });
  const macaroon = mintMacaroon({ secret: input.secret, paymentHash, tokenId, caveats });
  return {
    authorization: `L402 ${macaroon.toString('base64')}:${preimage.toString('hex')}`,
    tokenId: tokenId.toString('hex'),
    paymentHash: paymentHash.toString('hex'),
  };
}
