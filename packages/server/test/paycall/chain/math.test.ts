// The chain math as docs/paycall.md specifies it: w_(i-1) = SHA-256(w_i), a call of k
// steps reveals w_(current+k), the header grammar and ceil rounding of the step count.
// SHA-256 vectors from FIPS 180-4 (NIST CSRC examples): SHA-256("abc") and of 32 zero bytes.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildChain, formatBalanceHeader, formatChainHeader, formatOfferHeader, hashLink, hashLinkTimes, linkAt,
  parseChainHeader, stepsForPrice, verifyLink,
} from '../../../src/paycall/chain/math.js';
import { msat } from '../../../src/money/msat.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const seed = Buffer.alloc(32, 0x11);

describe('hashing', () => {
  it('is SHA-256 (FIPS 180-4 vector, and 32 zero bytes)', () => {
    expect(hex(hashLink(Buffer.from('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hex(hashLink(Buffer.alloc(32)))).toBe('66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925');
  });

  it('builds w_N -> w_0 with w_(i-1) = SHA-256(w_i)', () => {
    const chain = buildChain(seed, 10);
    expect(chain).toHaveLength(11);
    expect(hex(chain[10] as Buffer)).toBe(hex(seed));
    for (let i = 1; i <= 10; i += 1) {
      expect(hex(chain[i - 1] as Buffer)).toBe(createHash('sha256').update(chain[i] as Buffer).digest('hex'));
      expect(hex(linkAt(seed, 10, i))).toBe(hex(chain[i] as Buffer));
    }
    expect(hex(hashLinkTimes(seed, 10))).toBe(hex(chain[0] as Buffer));
  });

  it('verifies a link k steps beyond the current one, and nothing else', () => {
    const chain = buildChain(seed, 20);
    const rows = [
      { description: 'next link, k=1', link: 1, current: 0, k: 1, expected: true },
      { description: 'k=3', link: 7, current: 4, k: 3, expected: true },
      { description: 'k too small', link: 7, current: 4, k: 2, expected: false },
      { description: 'k too large', link: 7, current: 4, k: 4, expected: false },
      { description: 'the current link itself', link: 4, current: 4, k: 1, expected: false },
      { description: 'an earlier link', link: 3, current: 4, k: 1, expected: false },
      { description: 'k = 0 is never a payment', link: 4, current: 4, k: 0, expected: false },
    ];
    for (const row of rows) {
      expect(verifyLink(chain[row.link] as Buffer, chain[row.current] as Buffer, row.k), row.description).toBe(row.expected);
    }
    const forged = Buffer.from(chain[5] as Buffer);
    forged[0] = (forged[0] as number) ^ 1;
    expect(verifyLink(forged, chain[4] as Buffer, 1)).toBe(false);
    expect(verifyLink(Buffer.alloc(31), chain[4] as Buffer, 1)).toBe(false);
  });
});

describe('stepsForPrice (ceil: rounded against the caller)', () => {
  const rows: { price: bigint; step: bigint; expected: number }[] = [
    { price: 0n, step: 1000n, expected: 0 },
    { price: 1n, step: 1000n, expected: 1 },
    { price: 1000n, step: 1000n, expected: 1 },
    { price: 1001n, step: 1000n, expected: 2 },
    { price: 5000n, step: 250n, expected: 20 },
    { price: 5000n, step: 1n, expected: 5000 },
    { price: 7n, step: 3n, expected: 3 },
  ];
  for (const row of rows) {
    it(`${row.price} msat at ${row.step} msat a step is ${row.expected} steps`, () => {
      expect(stepsForPrice(msat(row.price), msat(row.step))).toBe(row.expected);
    });
  }
  it('refuses a zero step price', () => {
    expect(() => stepsForPrice(msat(1n), msat(0n))).toThrow(RangeError);
  });
});

describe('the Sluice-Chain header', () => {
  const link = 'ab'.repeat(32);
  it('parses the canonical form and round-trips', () => {
    const parsed = parseChainHeader(`ch_abc-_9 12 ${link}`);
    expect(parsed).toEqual({ chainId: 'ch_abc-_9', index: 12, link: Buffer.from(link, 'hex') });
    expect(formatChainHeader(parsed as NonNullable<typeof parsed>)).toBe(`ch_abc-_9 12 ${link}`);
    expect(parseChainHeader(`  ch_x 1 ${link}  `)).not.toBeNull();
  });

  const malformed: [string, unknown][] = [
    ['missing', undefined],
    ['repeated header', [`ch_x 1 ${link}`, `ch_x 2 ${link}`]],
    ['empty', ''],
    ['two fields', `ch_x ${link}`],
    ['four fields', `ch_x 1 ${link} extra`],
    ['double space', `ch_x  1 ${link}`],
    ['tab', `ch_x\t1 ${link}`],
    ['no ch_ prefix', `x 1 ${link}`],
    ['index 0', `ch_x 0 ${link}`],
    ['leading zero', `ch_x 01 ${link}`],
    ['negative', `ch_x -1 ${link}`],
    ['index past 10,000,000', `ch_x 10000001 ${link}`],
    ['decimal index', `ch_x 1.0 ${link}`],
    ['uppercase hex', `ch_x 1 ${link.toUpperCase()}`],
    ['short link', `ch_x 1 ${link.slice(2)}`],
    ['long link', `ch_x 1 ${link}00`],
    ['non-hex', `ch_x 1 ${'zz'.repeat(32)}`],
    ['too long', `ch_${'a'.repeat(300)} 1 ${link}`],
  ];
  for (const [description, value] of malformed) {
    it(`refuses ${description}`, () => {
      expect(parseChainHeader(value as string)).toBeNull();
    });
  }
  for (const [description, value] of [
    ['an id of 65 characters', `ch_${'a'.repeat(65)} 1 ${link}`],
    ['an id with a non-ASCII letter', `ch_\u00e9 1 ${link}`],
    ['an id with a dot', `ch_a.b 1 ${link}`],
    ['an empty id after ch_', `ch_ 1 ${link}`],
    ['a hex digit past f', `ch_x 1 ${link.slice(0, 63)}g`],
    ['a non-ASCII hex digit', `ch_x 1 ${link.slice(0, 63)}\u0661`],
    ['a mixed-case link', `ch_x 1 ${link.slice(0, 62)}AB`],
  ] as const) {
    it(`refuses ${description}`, () => {
      expect(parseChainHeader(value)).toBeNull();
    });
  }

  it('agrees with the rule written as regular expressions, on random and mutated headers', () => {
    // The parser is hand-written for speed; this is the same rule in its plain form.
    const reference = (value: string): { chainId: string; index: number; link: string } | null => {
      if (value.length > 256) return null;
      const match = /^(ch_[A-Za-z0-9_-]{1,64}) ([1-9][0-9]{0,7}) ([0-9a-f]{64})$/.exec(value.trim());
      if (!match || Number(match[2]) > 10_000_000) return null;
      return { chainId: match[1] as string, index: Number(match[2]), link: match[3] as string };
    };
    // Every kind of whitespace String#trim removes (and chars it keeps) at both ends too.
    const alphabet = 'ch_ 0123456789abcdefABCDEFxyz-.\t\n\r\v\f\u0001\u00a0\u2028\ufeff\u00e9\u0661';
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 20_000; i += 1) {
      let value = `ch_${'abcXYZ09_-'.slice(0, 1 + random(10))} ${1 + random(10_000_001)} ${randomBytes(32).toString('hex')}`;
      for (let edits = random(3); edits > 0; edits -= 1) {
        const at = random(value.length + 1);
        const kind = random(3);
        const char = alphabet[random(alphabet.length)] as string;
        value = kind === 0 ? value.slice(0, at) + char + value.slice(at) : kind === 1 ? value.slice(0, at) + value.slice(at + 1) : value.slice(0, at) + char + value.slice(at + 1);
      }
      const expected = reference(value);
      const parsed = parseChainHeader(value);
      expect(parsed === null ? null : { chainId: parsed.chainId, index: parsed.index, link: parsed.link.toString('hex') }, value).toEqual(expected);
    }
  });
});

describe('response headers', () => {
  it('formats the balance and the offer', () => {
    expect(formatBalanceHeader(97, msat(250n), 3)).toBe('steps=97; msat=24250; index=3');
    expect(formatOfferHeader({ buyUrl: 'http://127.0.0.1:8402/v1/paycall/chains', appId: 'app_1', stepMsat: msat(250n), stepsPerCall: 4 }))
      .toBe('buy="http://127.0.0.1:8402/v1/paycall/chains", app="app_1", step_msat="250", steps_per_call="4"');
  });
});
