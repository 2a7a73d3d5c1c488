/**
 * The caveats Sluice mints and checks, as `condition=value` text (Aperture's names):
 *
 *   services=<service>:<tier>[,...]     the request's service must be listed
 *   <service>_capabilities=<a>[,...]    the request's capability must be listed
 *   <service>_valid_until=<unix s>      expired at and after that second (also `valid_until`)
 *   <service>_budget_msat=<n>           all calls of this token may cost at most n msat
 *   <service>_calls=<n>                 this token may make at most n calls
 *   preimage=<hex>                      sha256(preimage) must be the payment hash
 *
 * A holder may append caveats (attenuation) but never remove them. When a condition
 * appears more than once every occurrence must hold, so the most restrictive one rules
 * (this is what Aperture's "each must be stricter than the one before" protects; checking
 * them all is at least as strict). Caveats about other services, and conditions we do not
 * know, are skipped as the L402 specification asks. A known condition with a value we
 * cannot read is a violation, never ignored.
 */
import { MSAT_MAX } from '../../money/msat.js';

export interface CaveatContext {
  service: string;
  /** What the request does, for `<service>_capabilities`; null when the route names none. */
  capability: string | null;
  /** Unix seconds. */
  nowS: number;
  paymentHash: Buffer;
  sha256: (bytes: Buffer) => Buffer;
}

/** Limits on the token's use; null means no limit of that kind. */
export interface Budget {
  msatLimit: bigint | null;
  callsLimit: bigint | null;
}

export type CaveatVerdict =
  | { ok: true; budget: Budget }
  | { ok: false; reason: 'violated'; detail: string }
  | { ok: false; reason: 'expired'; detail: string };

export const SERVICE_NAME = /^[A-Za-z0-9.-]{1,64}$/;
const SERVICE_ENTRY = /^([A-Za-z0-9.-]{1,64}):([0-9]{1,3})$/;
const CAPABILITY = /^[A-Za-z0-9._-]{1,64}$/;
const INTEGER = /^(0|[1-9][0-9]{0,18})$/;
const HEX_32 = /^[0-9a-f]{64}$/;

function readInteger(value: string): bigint | null {
  if (!INTEGER.test(value)) return null;
  const parsed = BigInt(value);
  return parsed > MSAT_MAX ? null : parsed;
}

const min = (a: bigint | null, b: bigint): bigint => (a === null || b < a ? b : a);

/** Splits `condition=value` at the first `=`; spaces around either side are tolerated (lsat-js writes none, others do). */
export function splitCaveat(caveat: string): { condition: string; value: string } | null {
  const at = caveat.indexOf('=');
  if (at <= 0) return null;
  return { condition: caveat.slice(0, at).trim(), value: caveat.slice(at + 1).trim() };
}

/** The caveats of a fresh token. */
export function mintCaveats(input: { service: string; validUntilS: number; budgetMsat: bigint | null; calls: bigint | null; capabilities?: readonly string[] }): string[] {
  const { service } = input;
  const caveats = [`services=${service}:0`];
  if (input.capabilities && input.capabilities.length > 0) caveats.push(`${service}_capabilities=${input.capabilities.join(',')}`);
  caveats.push(`${service}_valid_until=${input.validUntilS}`);
  if (input.budgetMsat !== null) caveats.push(`${service}_budget_msat=${input.budgetMsat}`);
  if (input.calls !== null) caveats.push(`${service}_calls=${input.calls}`);
  return caveats;
}

export function checkCaveats(caveats: readonly string[], context: CaveatContext): CaveatVerdict {
  const { service } = context;
  const budget: Budget = { msatLimit: null, callsLimit: null };
  let expired: string | null = null;
  const violated = (detail: string): CaveatVerdict => ({ ok: false, reason: 'violated', detail });

  for (const caveat of caveats) {
    const parts = splitCaveat(caveat);
    // Not `condition=value`: not a caveat we know, so skipped as unknown.
    if (!parts) continue;
    const { condition, value } = parts;

    if (condition === 'services') {
      const names: string[] = [];
      for (const entry of value.split(',')) {
        const match = SERVICE_ENTRY.exec(entry.trim());
        if (!match) return violated(`unreadable services caveat`);
        names.push(match[1] as string);
      }
      if (!names.includes(service)) return violated(`the token is not valid for the service ${service}`);
    } else if (condition === `${service}_capabilities`) {
      const allowed = value.split(',').map((entry) => entry.trim());
      if (allowed.some((entry) => !CAPABILITY.test(entry))) return violated('unreadable capabilities caveat');
      if (context.capability === null || !allowed.includes(context.capability)) {
        return violated(`the token does not allow the capability ${context.capability ?? '(none)'}`);
      }
    } else if (condition === `${service}_valid_until` || condition === 'valid_until') {
      const until = readInteger(value);
      if (until === null) return violated('unreadable valid_until caveat');
      if (BigInt(context.nowS) >= until) expired = `the token expired at ${until} (unix seconds)`;
    } else if (condition === `${service}_budget_msat`) {
      const limit = readInteger(value);
      if (limit === null) return violated('unreadable budget_msat caveat');
      budget.msatLimit = min(budget.msatLimit, limit);
    } else if (condition === `${service}_calls`) {
      const limit = readInteger(value);
      if (limit === null) return violated('unreadable calls caveat');
      budget.callsLimit = min(budget.callsLimit, limit);
    } else if (condition === 'preimage') {
      const hex = value.toLowerCase();
      if (!HEX_32.test(hex) || !context.sha256(Buffer.from(hex, 'hex')).equals(context.paymentHash)) {
        return violated('the preimage caveat does not match the payment hash');
      }
    }
  }
  if (expired !== null) return { ok: false, reason: 'expired', detail: expired };
  return { ok: true, budget };
}
