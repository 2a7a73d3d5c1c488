// The local L402 verifier: headers, signature, preimage and every caveat, each refusal
// with its code.
import { createHash, randomBytes } from 'node:crypto';
import macaroonLib from 'macaroon';
import { describe, expect, it } from 'vitest';
import { mintCaveats } from '../../../src/paycall/l402/caveats.js';
import { claimsL402 } from '../../../src/paycall/l402/credential.js';
import { encodeMacaroonV2, mintMacaroon } from '../../../src/paycall/l402/macaroon.js';
import { createL402Verifier, type L402RequestContext, type L402Verification } from '../../../src/paycall/l402/verifier.js';

const NOW_S = 1_800_000_000;
const secret = randomBytes(32);
const verifier = createL402Verifier({ secret, nowMs: () => NOW_S * 1000 });
const context: L402RequestContext = { service: 'api', capability: 'get' };

function token(caveats: string[], options: { preimage?: Buffer; secret?: Buffer } = {}) {
  const preimage = options.preimage ?? randomBytes(32);
  const paymentHash = createHash('sha256').update(preimage).digest();
  const macaroon = mintMacaroon({ secret: options.secret ?? secret, paymentHash, tokenId: randomBytes(32), caveats });
  return { macaroon, preimage, header: `L402 ${macaroon.toString('base64')}:${preimage.toString('hex')}` };
}

const standard = () => mintCaveats({ service: 'api', validUntilS: NOW_S + 60, budgetMsat: 5000n, calls: null });

/** The holder appends caveats (no root key needed). */
function attenuate(macaroon: Buffer, extra: string[]): Buffer {
  const imported = macaroonLib.importMacaroon(macaroon);
  for (const caveat of extra) imported.addFirstPartyCaveat(caveat);
  return encodeMacaroonV2({ identifier: imported.identifier, caveats: imported.caveats.map((caveat) => caveat.identifier), signature: imported.signature });
}

function expectRefused(result: L402Verification, code: string): void {
  expect(result.ok ? 'accepted' : result.code).toBe(code);
}

describe('accepted credentials', () => {
  it('L402 and LSAT, any case, standard or URL-safe base64, padded or not', () => {
    const { macaroon, preimage } = token(standard());
    const b64 = macaroon.toString('base64');
    const hex = preimage.toString('hex');
    for (const header of [
      `L402 ${b64}:${hex}`,
      `LSAT ${b64}:${hex}`,
      `l402 ${b64}:${hex.toUpperCase()}`,
      `L402 ${macaroon.toString('base64url')}:${hex}`,
      `L402  ${b64.replace(/=+$/, '')}:${hex}`,
    ]) {
      const result = verifier.verify(header, context);
      expect(result.ok, header).toBe(true);
      if (result.ok) {
        expect(result.budget).toEqual({ msatLimit: 5000n, callsLimit: null });
        expect(result.paymentHash).toBe(createHash('sha256').update(preimage).digest('hex'));
        expect(result.tokenId).toMatch(/^[0-9a-f]{64}$/);
      }
    }
    expect(verifier.verify(`LSAT ${b64}:${hex}`, context)).toMatchObject({ ok: true, scheme: 'LSAT' });
  });

  it('unknown caveats and caveats for other services are skipped', () => {
    const { header } = token([...standard(), 'ip=10.0.0.1', 'other_capabilities=none', 'other_valid_until=1', 'no equals sign']);
    expect(verifier.verify(header, context).ok).toBe(true);
  });

  it('the most restrictive budget wins; a calls caveat is read', () => {
    const { macaroon, preimage } = token(standard());
    const attenuated = attenuate(macaroon, ['api_budget_msat=7000', 'api_budget_msat=3000', 'api_calls=2']);
    const result = verifier.verify(`L402 ${attenuated.toString('base64')}:${preimage.toString('hex')}`, context);
    expect(result).toMatchObject({ ok: true, budget: { msatLimit: 3000n, callsLimit: 2n } });
  });

  it('a matching preimage caveat is fine', () => {
    const preimage = randomBytes(32);
    const { header } = token([...standard(), `preimage=${preimage.toString('hex')}`], { preimage });
    expect(verifier.verify(header, context).ok).toBe(true);
  });
});

describe('refusals', () => {
  it('malformed headers', () => {
    const { macaroon, preimage } = token(standard());
    const b64 = macaroon.toString('base64');
    const hex = preimage.toString('hex');
    for (const header of [
      undefined,
      '',
      'L402',
      `L402 ${b64}`,
      `L402 ${b64}:`,
      `L402 :${hex}`,
      `L402 ${b64}:${hex.slice(2)}`,
      `L402 ${b64}:${hex}00`,
      `L402 ${b64}:${hex.replace(/^../, 'zz')}`,
      `L402 ${b64},${b64}:${hex}`,
      `L402 ${b64}!:${hex}`,
      `Bearer ${b64}:${hex}`,
      `L402 ${'A'.repeat(9000)}:${hex}`,
    ]) {
      expectRefused(verifier.verify(header, context), 'l402_malformed');
    }
  });

  it('a tampered or foreign macaroon', () => {
    const { macaroon, preimage } = token(standard());
    const hex = preimage.toString('hex');
    const flipped = Buffer.from(macaroon);
    const budgetAt = flipped.indexOf('api_budget_msat=5000') + 'api_budget_msat='.length;
    flipped[budgetAt] = '9'.charCodeAt(0);
    expectRefused(verifier.verify(`L402 ${flipped.toString('base64')}:${hex}`, context), 'l402_invalid_macaroon');
    const foreign = token(standard(), { secret: randomBytes(32) });
    expectRefused(verifier.verify(foreign.header, context), 'l402_invalid_macaroon');
    expectRefused(verifier.verify(`L402 ${Buffer.from('not a macaroon at all').toString('base64')}:${hex}`, context), 'l402_invalid_macaroon');
    const truncated = macaroon.subarray(0, macaroon.length - 1);
    expectRefused(verifier.verify(`L402 ${truncated.toString('base64')}:${hex}`, context), 'l402_invalid_macaroon');
    // A macaroon whose identifier is not the L402 layout.
    const other = macaroonLib.newMacaroon({ identifier: 'just-an-id', rootKey: randomBytes(32), version: 2 });
    expectRefused(verifier.verify(`L402 ${Buffer.from(other.exportBinary()).toString('base64')}:${hex}`, context), 'l402_invalid_macaroon');
  });

  it('a wrong preimage', () => {
    const { macaroon } = token(standard());
    expectRefused(verifier.verify(`L402 ${macaroon.toString('base64')}:${randomBytes(32).toString('hex')}`, context), 'l402_wrong_preimage');
    const other = token(standard());
    expectRefused(verifier.verify(`L402 ${macaroon.toString('base64')}:${other.preimage.toString('hex')}`, context), 'l402_wrong_preimage');
  });

  it('every caveat violated', () => {
    const { macaroon, preimage } = token(standard());
    const check = (extra: string[], requestContext = context) =>
      verifier.verify(`L402 ${attenuate(macaroon, extra).toString('base64')}:${preimage.toString('hex')}`, requestContext);
    expectRefused(verifier.verify(token(standard()).header, { service: 'other', capability: 'get' }), 'l402_caveat_violated');
    expectRefused(check(['services=other:0']), 'l402_caveat_violated');
    expectRefused(check(['services=api']), 'l402_caveat_violated');
    expectRefused(check(['api_capabilities=post,put']), 'l402_caveat_violated');
    expectRefused(check(['api_capabilities=get'], { service: 'api', capability: null }), 'l402_caveat_violated');
    expect(check(['api_capabilities=post,get']).ok).toBe(true);
    expectRefused(check(['api_capabilities=get;drop']), 'l402_caveat_violated');
    expectRefused(check(['api_valid_until=soon']), 'l402_caveat_violated');
    expectRefused(check(['api_budget_msat=-1']), 'l402_caveat_violated');
    expectRefused(check(['api_budget_msat=1.5']), 'l402_caveat_violated');
    expectRefused(check(['api_budget_msat=99999999999999999999']), 'l402_caveat_violated');
    expectRefused(check(['api_calls=0x10']), 'l402_caveat_violated');
    expectRefused(check([`preimage=${randomBytes(32).toString('hex')}`]), 'l402_caveat_violated');
    expectRefused(check(['preimage=xyz']), 'l402_caveat_violated');
  });

  it('expired: at and after valid_until, whichever caveat is earliest', () => {
    const { macaroon, preimage } = token(standard());
    const hex = preimage.toString('hex');
    const at = (nowS: number, mac = macaroon) =>
      createL402Verifier({ secret, nowMs: () => nowS * 1000 }).verify(`L402 ${mac.toString('base64')}:${hex}`, context);
    expect(at(NOW_S + 59).ok).toBe(true);
    expectRefused(at(NOW_S + 60), 'l402_expired');
    expect(at(NOW_S + 10).ok).toBe(true);
    expectRefused(at(NOW_S + 10, attenuate(macaroon, ['valid_until=' + (NOW_S + 5)])), 'l402_expired');
    expectRefused(at(NOW_S + 10, attenuate(macaroon, ['api_valid_until=' + (NOW_S + 5), 'api_valid_until=' + (NOW_S + 100)])), 'l402_expired');
  });
});

describe('claims', () => {
  it('claims L402 and LSAT Authorization headers only', () => {
    expect(claimsL402('L402 abc:def')).toBe(true);
    expect(claimsL402('lsat x')).toBe(true);
    expect(claimsL402('L402')).toBe(false);
    expect(claimsL402('Bearer sk_x')).toBe(false);
    expect(claimsL402(undefined)).toBe(false);
  });
});
