/**
 * Bytes on LND's REST gateway are base64; inside Sluice they are lowercase hex.
 * Decoding is strict: a value that does not round-trip is refused, so a field that
 * "looks" like base64 but carries junk cannot slip through as some other hash.
 */
import { createHash } from 'node:crypto';

const HEX_32 = /^[0-9a-f]{64}$/;
const HEX_33 = /^[0-9a-f]{66}$/;

export function isHex32(value: string): boolean {
  return HEX_32.test(value);
}

export function isPubkeyHex(value: string): boolean {
  return HEX_33.test(value) && (value.startsWith('02') || value.startsWith('03'));
}

export function base64FromHex(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/**
 * For bytes in a URL path: the URL-safe alphabet ('/' would split the path), padded,
 * because the gateway decodes path bytes with Go's padded StdEncoding or URLEncoding.
 */
export function base64UrlFromHex(hex: string): string {
  const unpadded = Buffer.from(hex, 'hex').toString('base64url');
  return unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4);
}

/** base64 (either alphabet, padded or not) to hex, or null when it is not canonical base64. */
export function hexFromBase64(text: string): string | null {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return null;
  const bytes = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
  const unpadded = text.replace(/=+$/, '');
  const again = text.includes('-') || text.includes('_') ? bytes.toString('base64url') : bytes.toString('base64').replace(/=+$/, '');
  if (again !== unpadded) return null;
  return bytes.toString('hex');
}

export function sha256Hex(hex: string): string {
  return createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
}
