// The paying fetch's pure parts: the hash chain against node:crypto and docs/paycall.md's
// worked example, and the header and invoice readers against the wire texts the server sends.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { invoiceAmountMsat, parseChainBalance, parseChainOffer, parseL402Challenge, priceFromBody, stepsForPrice } from '../../src/paycall/challenges.js';
import { fromHex, HashChain, toHex } from '../../src/paycall/hashchain.js';

const sha = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(bytes).digest());

describe('HashChain', () => {
  it('matches the worked example of docs/paycall.md', async () => {
    const chain = await HashChain.build(fromHex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'), 10);
    expect(toHex(chain.anchor)).toBe('ecb807a1906b5e5268b738f97d957a382e6e318fe30d404a46492494473761a0');
    expect(toHex(await chain.linkAt(2))).toBe('df01f0bd30b89f4187c3919067c99d5aee753a45894e1e31be4f0e26a26dd27b');
    expect(toHex(await chain.linkAt(7))).toBe('4e05063392f42b5180353ef82da86c714042155044d91ab3253f1bab08120a0a');
    expect(toHex(await chain.linkAt(10))).toBe('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
  });

  for (const steps of [1, 2, 3, 15, 16, 17, 100, 1000]) {
    it(`every link of a ${steps}-step chain hashes to the one before (checkpoints and segments agree with node:crypto)`, async () => {
      const seed = new Uint8Array(32).map((_, i) => (i * 7 + steps) & 0xff);
      const chain = await HashChain.build(seed, steps);
      // Expected links straight from node:crypto.
      const expected: Uint8Array[] = [seed];
      for (let i = 0; i < steps; i += 1) expected.unshift(sha(expected[0] as Uint8Array));
      expect(toHex(chain.anchor)).toBe(toHex(expected[0] as Uint8Array));
      for (let i = 0; i <= steps; i += 1) expect(toHex(await chain.linkAt(i))).toBe(toHex(expected[i] as Uint8Array));
      // Going back (a resync to a lower index) recomputes the segment.
      expect(toHex(await chain.linkAt(0))).toBe(toHex(expected[0] as Uint8Array));
      await expect(chain.linkAt(steps + 1)).rejects.toThrow(RangeError);
    });
  }
});

describe('header readers', () => {
  it('reads the chain offer; refuses unreadable ones', () => {
    expect(parseChainOffer('buy="http://127.0.0.1:8402/v1/paycall/chains", app="app_demo", step_msat="250", steps_per_call="2"')).toEqual({
      buyUrl: 'http://127.0.0.1:8402/v1/paycall/chains', appId: 'app_demo', stepMsat: 250n, stepsPerCall: 2,
    });
    expect(parseChainOffer('buy="http://x/v1/paycall/chains", app="a", step_msat="1.5", steps_per_call="2"')).toBeNull();
    expect(parseChainOffer('buy="ftp://x/", app="a", step_msat="1", steps_per_call="2"')).toBeNull();
    expect(parseChainOffer('app="a", step_msat="1", steps_per_call="2"')).toBeNull();
    expect(parseChainOffer(null)).toBeNull();
  });

  it('an offer without steps_per_call leaves k to ceil(price / step), rounded against the caller', () => {
    expect(parseChainOffer('buy="http://x/v1/paycall/chains", app="a", step_msat="250"')).toMatchObject({ stepMsat: 250n, stepsPerCall: null });
    expect(stepsForPrice(600n, 250n)).toBe(3);
    expect(stepsForPrice(500n, 250n)).toBe(2);
    expect(stepsForPrice(1n, 1000n)).toBe(1);
    expect(priceFromBody('{"error":{"code":"payment_required"},"price_msat":"5000"}')).toBe(5000n);
    expect(priceFromBody('{"price_msat":5000}')).toBeNull();
    expect(priceFromBody('<html>')).toBeNull();
  });

  it('reads the L402 challenge from the joined WWW-Authenticate lines', () => {
    const joined = 'L402 version="0", token="AgJCAA+/==", macaroon="AgJCAA+/==", invoice="lnbcrt50n1pabc", LSAT macaroon="AgJCAA+/==", invoice="lnbcrt50n1pabc"';
    expect(parseL402Challenge(joined)).toEqual({ token: 'AgJCAA+/==', invoice: 'lnbcrt50n1pabc' });
    expect(parseL402Challenge('LSAT macaroon="m", invoice="lnbc1u1p"')).toEqual({ token: 'm', invoice: 'lnbc1u1p' });
    expect(parseL402Challenge('Bearer realm="x", L402 token="t", invoice="lnbc10n1p"')).toEqual({ token: 't', invoice: 'lnbc10n1p' });
    expect(parseL402Challenge('Bearer realm="x"')).toBeNull();
  });

  it('reads the balance header', () => {
    expect(parseChainBalance('steps=8; msat=2000; index=2')).toEqual({ steps: 8, msat: 2000n, index: 2 });
    expect(parseChainBalance('steps=8')).toBeNull();
  });

  // Amount vectors from BOLT 11's examples (../shared/reference/bolts/11-payment-encoding.md):
  // lnbc2500u, lnbc20m, lnbc9678785340p, and the invalid lnbc2500000001p (pico not a multiple of 10).
  it('reads BOLT 11 amounts exactly, sub-satoshi included', () => {
    expect(invoiceAmountMsat('lnbc2500000001p1pvjluez')).toBeNull();
    expect(invoiceAmountMsat('lnbc25m1pvjluez')).toBe(2_500_000_000n);
    expect(invoiceAmountMsat('lnbcrt50n1p4sx7s')).toBe(5000n);
    expect(invoiceAmountMsat('lnbc2500u1pvjluez')).toBe(250_000_000n);
    expect(invoiceAmountMsat('lnbc20m1pvjluez')).toBe(2_000_000_000n);
    expect(invoiceAmountMsat('lnbc9678785340p1pwmna7l')).toBe(967_878_534n);
    expect(invoiceAmountMsat('lntb1500n1p')).toBe(150_000n);
    expect(invoiceAmountMsat('LNBCRT1U1P')).toBe(100_000n);
    expect(invoiceAmountMsat('lnbc1pvjluez')).toBeNull();
    expect(invoiceAmountMsat('lnbc15p1p')).toBeNull();
    expect(invoiceAmountMsat('lnbc010n1p')).toBeNull();
    expect(invoiceAmountMsat('not an invoice')).toBeNull();
  });
});
