/**
 * Wire conventions shared by every route: amounts as decimal strings of msat, the error
 * body, idempotency keys, and the TypeBox schemas that describe them in /openapi.json.
 */
import { Type, type TSchema } from 'typebox';
import { parseMsatLoose, type Msat } from '../money/msat.js';
import { ApiError } from '../errors/codes.js';

/** An amount: a decimal string of digits. Safe-integer JSON numbers are tolerated; everything else is refused in the handler with invalid_amount. */
export const AmountSchema = Type.Unknown({
  description: 'Millisatoshis as a decimal string of digits, e.g. "1500" (0 to 2^63-1).',
  examples: ['1500'],
});

export const IdempotencyKeySchema = Type.String({
  description: 'Makes the request safe to retry: the same key with the same arguments returns the first result.',
});

const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;

export const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

export function parseAmount(value: unknown, field: string, options: { allowZero?: boolean } = {}): Msat {
  const parsed = parseMsatLoose(value);
  if (!parsed.ok) throw new ApiError('invalid_amount', `${field} must be a decimal string of msat (${parsed.error})`);
  if (parsed.value === 0n && !options.allowZero) throw new ApiError('invalid_amount', `${field} must be at least 1 msat`);
  return parsed.value;
}

export function parseIdempotencyKey(value: string | undefined): string | null {
  if (value === undefined) return null;
  if (!IDEMPOTENCY_KEY.test(value)) throw new ApiError('idempotency_key_invalid');
  return value;
}

export const HexHashSchema = Type.String({ pattern: '^[0-9a-f]{64}$', description: '32 bytes, lowercase hex.' });

/** Response schemas list the error codes a route can return, for the OpenAPI document. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorSchema]));
}

export function isoTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
