/**
 * Webhook signatures: `Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * "<t>.<body>", keyed by the endpoint's secret (the whole "whsec_..." string, as UTF-8).
 * During a secret rotation the body is signed with both secrets: two v1 entries, so a
 * receiver holding either one verifies. The timestamp is signed too, which is what lets a
 * receiver refuse replays older than its window.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
export const SIGNATURE_HEADER = 'sluice-signature';
export const ID_HEADER = 'sluice-webhook-id';
export const TIMESTAMP_HEADER = 'sluice-webhook-timestamp';

/** 32 random bytes, base64url: "whsec_" + 43 characters. */
export function newSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64url');
}

export function signatureHex(secret: string, timestampS: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampS}.${body}`).digest('hex');
}

/** The header value: one v1 entry per secret, newest first. */
export function signatureHeader(secrets: readonly string[], timestampS: number, body: string): string {
  if (secrets.length === 0) throw new Error('no secret to sign with');
  return [`t=${timestampS}`, ...secrets.map((secret) => `v1=${signatureHex(secret, timestampS, body)}`)].join(',');
}

export type VerifyResult = { ok: true; timestampS: number } | { ok: false; reason: 'malformed' | 'too_old' | 'too_new' | 'mismatch' };

/**
 * What a receiver does (Sluice uses it only in tests and docs): parse the header, refuse a
 * timestamp outside the window, accept if any v1 entry matches, comparing in constant time.
 */
export function verifySignature(input: { secret: string; header: string; body: string; nowS: number; toleranceS?: number }): VerifyResult {
  const tolerance = input.toleranceS ?? 300;
  let timestampS: number | null = null;
  const candidates: string[] = [];
  for (const part of input.header.split(',')) {
    const [key, value] = part.split('=', 2) as [string, string | undefined];
    if (key === 't' && value !== undefined && /^[0-9]{1,12}$/.test(value)) timestampS = Number(value);
    if (key === 'v1' && value !== undefined && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (timestampS === null || candidates.length === 0) return { ok: false, reason: 'malformed' };
  if (input.nowS - timestampS > tolerance) return { ok: false, reason: 'too_old' };
  if (timestampS - input.nowS > tolerance) return { ok: false, reason: 'too_new' };
  const expected = Buffer.from(signatureHex(input.secret, timestampS, input.body), 'hex');
  const match = candidates.some((candidate) => timingSafeEqual(Buffer.from(candidate, 'hex'), expected));
  return match ? { ok: true, timestampS } : { ok: false, reason: 'mismatch' };
}
