// Unit tests of the BOLT 11 codec's parts and of each decode error, following the
// requirements of BOLT #11 (../shared/reference/bolts/11-payment-encoding.md):
// "Human-Readable Part", "Data Part", "Tagged Fields" and "Feature Bits".
import { bech32 } from '@scure/base';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Msat } from '../../src/money/msat.js';
import { decodeBech32, encodeBech32 } from '../../src/lightning/bolt11/bech32.js';
import {
  BOLT11_AMOUNT_MAX_MSAT,
  decodeBolt11,
  encodeBolt11,
  hrpAmountFromMsat,
  networkFromPrefix,
  parseHrpAmount,
  prefixForNetwork,
  type Bolt11EncodeFields,
  type Bolt11Error,
  type Bolt11NamedFields,
  type Bolt11Tag,
} from '../../src/lightning/bolt11/index.js';

const KEY = hexToBytes('e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734');
const OTHER_KEY = hexToBytes('0101010101010101010101010101010101010101010101010101010101010101');
const HASH = '0001020304050607080900010203040506070809000102030405060708090102';
const PAYEE = '03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad';
const SECRET = '1111111111111111111111111111111111111111111111111111111111111111';
const msat = (value: bigint): Msat => value as Msat;

const BASE: Bolt11NamedFields = {
  network: 'mainnet',
  amountMsat: msat(1_000n),
  timestamp: 1_700_000_000,
  paymentHash: HASH,
  paymentSecret: SECRET,
  description: 'test',
};

const baseTags = (): Bolt11Tag[] => [
  { type: 'paymentSecret', value: SECRET },
  { type: 'paymentHash', value: HASH },
  { type: 'description', value: 'test' },
];

function ordered(tags: Bolt11Tag[]): Bolt11EncodeFields {
  return { network: 'mainnet', amountMsat: msat(1_000n), timestamp: 1_700_000_000, tags };
}

/** Rewrites an invoice's hrp or data words with a fresh checksum (the signature is then stale). */
function rebuilt(text: string, change: { hrp?: string; words?: (words: number[]) => number[] }): string {
  const decoded = bech32.decode(text as `${string}1${string}`, false);
  const words = change.words ? change.words([...decoded.words]) : decoded.words;
  return bech32.encode(change.hrp ?? decoded.prefix, words, false);
}

describe('prefixes', () => {
  it.each([
    ['mainnet', 'lnbc'],
    ['testnet', 'lntb'],
    ['signet', 'lntbs'],
    ['regtest', 'lnbcrt'],
  ] as const)('%s is %s and back', (network, prefix) => {
    expect(prefixForNetwork(network)).toBe(prefix);
    expect(networkFromPrefix(prefix)).toBe(network);
  });
  it.each(['ln', 'lnsb', 'bc', 'lnbcr', 'LNBC', ''])('%j is unknown', (prefix) => {
    expect(networkFromPrefix(prefix)).toBeNull();
  });
});

describe('hrp amounts', () => {
  it.each([
    ['', null],
    ['1', 100_000_000_000n],
    ['25m', 2_500_000_000n],
    ['2500u', 250_000_000n],
    ['10n', 1_000n],
    ['1n', 100n],
    ['10p', 1n],
    ['9678785340p', 967_878_534n],
    ['2500000000m', 250_000_000_000_000_000n],
    ['21000000', BOLT11_AMOUNT_MAX_MSAT],
  ])('reads %j as %s msat', (text, expected) => {
    expect(parseHrpAmount(text)).toEqual({ ok: true, amountMsat: expected });
  });

  it.each([
    ['0', /zero/],
    ['0m', /zero/],
    ['010u', /leading zero/],
    ['1p', /whole number of msat/],
    ['2500000001p', /whole number of msat/],
    ['2500x', /digits with an optional/],
    ['m', /digits with an optional/],
    ['1.5m', /digits with an optional/],
    ['-1', /digits with an optional/],
    ['1mm', /digits with an optional/],
    ['21000001', /21 million/],
    ['1'.repeat(22), /too large/],
  ])('refuses %j', (text, detail) => {
    const result = parseHrpAmount(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.detail).toMatch(detail);
  });

  it.each([
    [1n, '10p'],
    [99n, '990p'],
    [100n, '1n'],
    [1_000n, '10n'],
    [100_000n, '1u'],
    [250_000_000n, '2500u'],
    [2_500_000_000n, '25m'],
    [100_000_000_000n, '1'],
    [1_000_000_000_000n, '10'],
    [967_878_534n, '9678785340p'],
    [BOLT11_AMOUNT_MAX_MSAT, '21000000'],
  ])('writes %s msat as %j', (amount, text) => {
    expect(hrpAmountFromMsat(msat(amount))).toBe(text);
  });

  it.each([0n, -1n, BOLT11_AMOUNT_MAX_MSAT + 1n])('refuses to write %s msat', (amount) => {
    expect(() => hrpAmountFromMsat(msat(amount))).toThrow(RangeError);
  });

  it('round-trips every amount with the largest multiplier that is exact', () => {
    const unitMsat: Record<string, bigint> = { '': 100_000_000_000n, m: 100_000_000n, u: 100_000n, n: 100n, p: 1n };
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: BOLT11_AMOUNT_MAX_MSAT }), (amount) => {
        const text = hrpAmountFromMsat(msat(amount));
        expect(parseHrpAmount(text)).toEqual({ ok: true, amountMsat: amount });
        const multiplier = /[munp]?$/.exec(text)?.[0] ?? '';
        const larger = ['', 'm', 'u', 'n', 'p'].slice(0, ['', 'm', 'u', 'n', 'p'].indexOf(multiplier));
        for (const bigger of larger) expect(amount % (unitMsat[bigger] as bigint)).not.toBe(0n);
      }),
    );
  });
});

describe('bech32', () => {
  it('encodes like @scure/base and decodes back, at any length', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z]{1,10}$/),
        fc.array(fc.integer({ min: 0, max: 31 }), { maxLength: 2000 }),
        (hrp, words) => {
          const text = encodeBech32(hrp, Uint8Array.from(words));
          expect(text).toBe(bech32.encode(hrp, words, false));
          const decoded = decodeBech32(text);
          expect(decoded.ok && { hrp: decoded.hrp, words: [...decoded.words] }).toEqual({ hrp, words });
          expect(decodeBech32(text.toUpperCase()).ok).toBe(true);
        },
      ),
    );
  });

  it('detects any one changed character', () => {
    const text = encodeBech32('lnbc', Uint8Array.from({ length: 300 }, (_, index) => index % 32));
    fc.assert(
      fc.property(fc.integer({ min: 5, max: text.length - 1 }), fc.constantFrom(...'qpzry9x8gf2tvdw0s3jn54khce6mua7l'), (index, character) => {
        fc.pre(text[index] !== character);
        const changed = text.slice(0, index) + character + text.slice(index + 1);
        expect(decodeBech32(changed)).toMatchObject({ ok: false, error: 'BadChecksum' });
      }),
    );
  });

  it.each([
    ['no separator', 'lnbcqqqqqqqq', 'BadBech32'],
    ['empty hrp', '1qqqqqqqq', 'BadBech32'],
    ['short data', 'lnbc1qqqqq', 'BadBech32'],
    ['character outside the alphabet', 'lnbc1qqqqqqb', 'BadBech32'],
    ['non-ASCII', 'lnbc1qqqqqqé', 'BadBech32'],
    ['mixed case', 'lnbc1qqqqqQ', 'MixedCase'],
    ['bad checksum', 'lnbc1qqqqqqqq', 'BadChecksum'],
  ])('refuses %s', (_, text, error) => {
    expect(decodeBech32(text)).toMatchObject({ ok: false, error });
  });
});

describe('decodeBolt11 errors', () => {
  const valid = encodeBolt11(BASE, KEY);

  const rows: { description: string; text: () => string; error: Bolt11Error; detail?: RegExp }[] = [
    { description: 'longer than 7089 characters', text: () => 'lnbc1' + 'q'.repeat(7100), error: 'TooLong' },
    { description: 'not bech32', text: () => 'hello world', error: 'BadBech32' },
    { description: 'empty', text: () => '', error: 'BadBech32' },
    { description: 'a changed character', text: () => valid.slice(0, -1) + (valid.endsWith('q') ? 'p' : 'q'), error: 'BadChecksum' },
    { description: 'mixed case', text: () => valid.slice(0, 10) + valid.slice(10).toUpperCase(), error: 'MixedCase' },
    { description: 'an unknown prefix', text: () => rebuilt(valid, { hrp: 'lnsb10n' }), error: 'UnknownPrefix' },
    { description: 'a bitcoin address hrp', text: () => rebuilt(valid, { hrp: 'bc' }), error: 'UnknownPrefix' },
    { description: 'a zero amount', text: () => rebuilt(valid, { hrp: 'lnbc0' }), error: 'BadAmount' },
    { description: 'an amount with a leading zero', text: () => rebuilt(valid, { hrp: 'lnbc010n' }), error: 'BadAmount' },
    { description: 'more than 21 million BTC', text: () => rebuilt(valid, { hrp: 'lnbc21000001' }), error: 'BadAmount' },
    { description: 'no room for a signature', text: () => rebuilt(valid, { words: (words) => words.slice(0, 110) }), error: 'TooShort' },
    {
      description: 'a tagged field longer than the data',
      text: () => rebuilt(valid, { words: (words) => [...words.slice(0, 7), 13, 31, 31, ...words.slice(7)] }),
      error: 'BadField',
      detail: /says 1023 words/,
    },
    {
      description: 'a changed field under a signature checked against an n field',
      text: () => rebuilt(encodeBolt11({ ...BASE, includePayeePubkey: true }, KEY), { words: (words) => words.map((word, index) => (index === 3 ? word ^ 1 : word)) }),
      error: 'BadSignature',
    },
    { description: 'no payment hash', text: () => encodeBolt11(ordered(baseTags().filter((tag) => tag.type !== 'paymentHash')), KEY), error: 'MissingPaymentHash' },
    { description: 'no payment secret', text: () => encodeBolt11(ordered(baseTags().filter((tag) => tag.type !== 'paymentSecret')), KEY), error: 'MissingPaymentSecret' },
    { description: 'no description', text: () => encodeBolt11(ordered(baseTags().filter((tag) => tag.type !== 'description')), KEY), error: 'MissingDescription' },
    {
      description: 'only a wrong-length payment hash (skipped, so missing)',
      text: () => encodeBolt11(ordered([...baseTags().filter((tag) => tag.type !== 'paymentHash'), { type: 'raw', code: 1, words: 'q'.repeat(51) }]), KEY),
      error: 'MissingPaymentHash',
    },
    { description: 'both d and h', text: () => encodeBolt11(ordered([...baseTags(), { type: 'descriptionHash', value: HASH }]), KEY), error: 'DescriptionAndHash' },
    { description: 'an unknown even feature', text: () => encodeBolt11({ ...BASE, features: [8, 14, 100] }, KEY), error: 'UnknownRequiredFeature', detail: /100/ },
    { description: 'basic_mpp without payment_secret', text: () => encodeBolt11({ ...BASE, features: [8, 17] }, KEY), error: 'MissingFeatureDependency' },
    { description: 'an x field with a leading zero word', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 6, words: 'qpu' }]), KEY), error: 'BadField', detail: /x field/ },
    { description: 'a c field with a leading zero word', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 24, words: 'q2' }]), KEY), error: 'BadField', detail: /c field/ },
    { description: 'a 9 field with a leading zero word', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 5, words: 'qsgq' }]), KEY), error: 'BadField', detail: /9 field/ },
    { description: 'an x field above 2^53', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 6, words: 'p' + 'l'.repeat(11) }]), KEY), error: 'BadField' },
    { description: 'a d field that is not UTF-8', text: () => encodeBolt11(ordered([...baseTags().slice(0, 2), { type: 'raw', code: 13, words: 'lu' }]), KEY), error: 'BadField', detail: /UTF-8/ },
    { description: 'a d field with non-zero padding', text: () => encodeBolt11(ordered([...baseTags().slice(0, 2), { type: 'raw', code: 13, words: 'vp' }]), KEY), error: 'BadField', detail: /padding/ },
    { description: 'a P2PKH fallback of 19 bytes', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 9, words: '3' + 'q'.repeat(31) }]), KEY), error: 'BadField', detail: /20-byte/ },
    { description: 'an empty f field', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 9, words: '' }]), KEY), error: 'BadField' },
    { description: 'an r field that is not whole hops', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 3, words: 'q'.repeat(80) }]), KEY), error: 'BadField', detail: /hops/ },
    { description: 'an n field that is not a compressed key', text: () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 19, words: 'y' + 'q'.repeat(52) }]), KEY), error: 'BadField', detail: /compressed/ },
    {
      description: 'an n field of another key',
      text: () => encodeBolt11(ordered([...baseTags(), { type: 'payeePubkey', value: '031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f' }]), KEY),
      error: 'BadSignature',
      detail: /n field key/,
    },
    { description: 'a high-S signature with an n field', text: () => encodeBolt11({ ...BASE, includePayeePubkey: true, description: 'x' }, KEY, { lowS: false }), error: 'BadSignature', detail: /high-S/ },
  ];

  it.each(rows)('refuses $description', ({ text, error, detail }) => {
    const result = decodeBolt11(text());
    expect(result).toMatchObject({ ok: false, error });
    if (detail && !result.ok) expect(result.detail).toMatch(detail);
  });

  it('recovers another payee when a field changes under a signature without an n field', () => {
    const changed = rebuilt(valid, { words: (words) => words.map((word, index) => (index === 3 ? word ^ 1 : word)) });
    const decoded = decodeBolt11(changed);
    expect(decoded.ok).toBe(true);
    expect(decoded.ok && decoded.invoice.payeePubkey).not.toBe(PAYEE);
  });

  it('accepts a high-S signature without an n field (recovery takes both)', () => {
    const text = encodeBolt11(BASE, KEY, { lowS: false });
    const decoded = decodeBolt11(text);
    expect(decoded.ok && decoded.invoice.payeePubkey).toBe(PAYEE);
  });

  it('never throws, whatever the text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^ln[a-z0-9]{0,400}$/)), (text) => {
        expect(decodeBolt11(text).ok).toBe(false);
      }),
    );
  });

  // Without an n field any signature recovers some key, so a changed invoice may decode; what
  // must hold is that it then never names the real signer. One part is not signed: the
  // recovery id (the signature's last byte), which BOLT 11 says to ignore when the n field
  // names the payee ("MUST use the n field to validate the signature instead of performing
  // signature recovery"). A change confined to those bits may still name the signer.
  it('never throws on changed words with a fixed checksum, and never attributes them to the signer', () => {
    const long = encodeBolt11(
      {
        ...BASE,
        expiryS: 600,
        minFinalCltvExpiry: 40,
        metadata: '01fafaf0',
        fallbackAddresses: [{ version: 0, program: '751e76e8199196d454941c45d1b3a323f1433bd6' }],
        routeHints: [[{ pubkey: '03' + '11'.repeat(32), shortChannelId: '1x2x3', feeBaseMsat: msat(1n), feeProportionalMillionths: 2, cltvExpiryDelta: 3 }]],
        includePayeePubkey: true,
      },
      KEY,
    );
    const original = bech32.decode(long as `${string}1${string}`, false).words;
    const length = original.length;
    // The 104 signature words are 520 bits: r and s (512), then the recovery id (8).
    const signedPartOf = (words: readonly number[]): string => {
      const signature = bech32.fromWords(words.slice(length - 104));
      return `${words.slice(0, length - 104).join(',')}|${bytesToHex(signature.slice(0, 64))}`;
    };
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(length - 1), fc.integer({ min: 0, max: 31 })), { minLength: 1, maxLength: 4 }), (changes) => {
        const text = rebuilt(long, {
          words: (words) => {
            for (const [index, word] of changes) words[index] = word;
            return words;
          },
        });
        const result = decodeBolt11(text);
        if (result.ok && result.invoice.payeePubkey === PAYEE) {
          const changed = [...original];
          for (const [index, word] of changes) changed[index] = word;
          expect(signedPartOf(changed)).toBe(signedPartOf(original));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('encodeBolt11', () => {
  it('writes named fields in the order s, p, d, m, x, c, n, f, r, 9', () => {
    const text = encodeBolt11(
      {
        ...BASE,
        metadata: '00',
        expiryS: 60,
        minFinalCltvExpiry: 40,
        includePayeePubkey: true,
        fallbackAddresses: [{ version: 17, program: '00'.repeat(20) }],
        routeHints: [[{ pubkey: '02' + '22'.repeat(32), shortChannelId: '1x1x1', feeBaseMsat: msat(0n), feeProportionalMillionths: 0, cltvExpiryDelta: 0 }]],
      },
      KEY,
    );
    const decoded = decodeBolt11(text);
    expect(decoded.ok && decoded.invoice.tags.map((tag) => tag.type)).toEqual([
      'paymentSecret', 'paymentHash', 'description', 'metadata', 'expiry', 'minFinalCltvExpiry', 'payeePubkey', 'fallbackAddress', 'routeHint', 'features',
    ]);
  });

  it('writes default features 8 and 14, and no 9 field for []', () => {
    const withDefault = decodeBolt11(encodeBolt11(BASE, KEY));
    expect(withDefault.ok && withDefault.invoice.features).toEqual([8, 14]);
    const without = decodeBolt11(encodeBolt11({ ...BASE, features: [] }, KEY));
    expect(without.ok && without.invoice.tags.some((tag) => tag.type === 'features')).toBe(false);
  });

  it('is deterministic (RFC 6979)', () => {
    expect(encodeBolt11(BASE, KEY)).toBe(encodeBolt11(BASE, KEY));
  });

  it('writes zero expiry as an empty x field, and reads it back', () => {
    const decoded = decodeBolt11(encodeBolt11({ ...BASE, expiryS: 0 }, KEY));
    expect(decoded.ok && [decoded.invoice.expiryS, decoded.invoice.expiresAt]).toEqual([0, BASE.timestamp]);
  });

  it('accepts a 639-byte description', () => {
    const decoded = decodeBolt11(encodeBolt11({ ...BASE, description: 'é'.repeat(319) + 'a' }, KEY));
    expect(decoded.ok && decoded.invoice.description?.length).toBe(320);
  });

  it.each<[string, () => unknown]>([
    ['a zero amount', () => encodeBolt11({ ...BASE, amountMsat: msat(0n) }, KEY)],
    ['a timestamp of 2^35', () => encodeBolt11({ ...BASE, timestamp: 2 ** 35 }, KEY)],
    ['a negative timestamp', () => encodeBolt11({ ...BASE, timestamp: -1 }, KEY)],
    ['a short payment hash', () => encodeBolt11({ ...BASE, paymentHash: 'ab' }, KEY)],
    ['upper-case hex', () => encodeBolt11({ ...BASE, paymentHash: HASH.toUpperCase().replace(/0/g, 'A') }, KEY)],
    ['description and hash', () => encodeBolt11({ ...BASE, descriptionHash: HASH }, KEY)],
    ['neither description nor hash', () => encodeBolt11({ ...BASE, description: undefined }, KEY)],
    ['a 640-byte description', () => encodeBolt11({ ...BASE, description: 'a'.repeat(640) }, KEY)],
    ['a fractional expiry', () => encodeBolt11({ ...BASE, expiryS: 1.5 }, KEY)],
    ['a negative feature bit', () => encodeBolt11({ ...BASE, features: [-2] }, KEY)],
    ['a P2WPKH program of 21 bytes', () => encodeBolt11({ ...BASE, fallbackAddresses: [{ version: 0, program: '00'.repeat(21) }] }, KEY)],
    ['fallback version 19', () => encodeBolt11({ ...BASE, fallbackAddresses: [{ version: 19, program: '00'.repeat(20) }] }, KEY)],
    ['an empty route', () => encodeBolt11({ ...BASE, routeHints: [[]] }, KEY)],
    ['a bad short channel id', () => encodeBolt11({ ...BASE, routeHints: [[{ pubkey: '02' + '22'.repeat(32), shortChannelId: '1x2', feeBaseMsat: msat(0n), feeProportionalMillionths: 0, cltvExpiryDelta: 0 }]] }, KEY)],
    ['a fee base above 32 bits', () => encodeBolt11({ ...BASE, routeHints: [[{ pubkey: '02' + '22'.repeat(32), shortChannelId: '1x2x3', feeBaseMsat: msat(2n ** 32n), feeProportionalMillionths: 0, cltvExpiryDelta: 0 }]] }, KEY)],
    ['a raw tag code of 32', () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 32, words: '' }]), KEY)],
    ['raw words outside bech32', () => encodeBolt11(ordered([...baseTags(), { type: 'raw', code: 7, words: 'b' }]), KEY)],
    ['an invalid private key', () => encodeBolt11(BASE, new Uint8Array(32))],
  ])('throws on %s', (_, call) => {
    expect(call).toThrow();
  });

  it('signs with the key whose public key decoding recovers', () => {
    const decoded = decodeBolt11(encodeBolt11(BASE, OTHER_KEY));
    expect(decoded.ok && decoded.invoice.payeePubkey).toBe(bytesToHex(secp256k1.getPublicKey(OTHER_KEY, true)));
    expect(decoded.ok && decoded.invoice.payeePubkey).toBe('031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f');
  });
});
