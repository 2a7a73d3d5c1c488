/**
 * The L402 header texts: the `WWW-Authenticate` challenges Sluice sends and the
 * `Authorization` credential it reads.
 *
 * Challenges: two header lines, as Aperture sends them,
 *   L402 version="0", token="<b64>", macaroon="<b64>", invoice="<bolt11>"
 *   LSAT macaroon="<b64>", invoice="<bolt11>"
 * `token=` is the current name, `macaroon=` the older one (lsat-js reads only that). A
 * client that joins both lines into one (fetch's Headers.get does) still finds every
 * value, because both lines carry the same macaroon and invoice.
 *
 * Credential: `L402 <b64 macaroon>:<hex preimage>` or `LSAT ...` (scheme name in any
 * case). Standard or URL-safe base64, padded or not. One macaroon only: Sluice mints one
 * per invoice, so a comma-separated list is refused as malformed.
 */
export const MAX_AUTHORIZATION_LENGTH = 8192;

const CLAIM = /^\s*(L402|LSAT)\s/i;
const CREDENTIAL = /^\s*(L402|LSAT)\s+([A-Za-z0-9+/_-]+={0,2}):([0-9A-Fa-f]{64})\s*$/i;

export interface L402Credential {
  scheme: 'L402' | 'LSAT';
  macaroon: Buffer;
  preimage: Buffer;
}

/** True when the Authorization header uses the L402 or LSAT scheme (well formed or not). */
export function claimsL402(authorization: string | undefined): boolean {
  return authorization !== undefined && CLAIM.test(authorization);
}

/** Null when the header is not exactly one macaroon and a 32-byte hex preimage. */
export function parseCredential(authorization: string | undefined): L402Credential | null {
  if (authorization === undefined || authorization.length > MAX_AUTHORIZATION_LENGTH) return null;
  const match = CREDENTIAL.exec(authorization);
  if (!match) return null;
  const macaroon = Buffer.from(match[2] as string, 'base64');
  if (macaroon.length === 0) return null;
  return {
    scheme: (match[1] as string).toUpperCase() as 'L402' | 'LSAT',
    macaroon,
    preimage: Buffer.from(match[3] as string, 'hex'),
  };
}

/** Both challenge lines for one macaroon (standard base64, padded) and its invoice. */
export function challengeHeaders(macaroon: Buffer, invoice: string): string[] {
  const token = macaroon.toString('base64');
  return [
    `L402 version="0", token="${token}", macaroon="${token}", invoice="${invoice}"`,
    `LSAT macaroon="${token}", invoice="${invoice}"`,
  ];
}
