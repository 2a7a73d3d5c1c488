// BOLT 11 test vectors: every invoice of the sections "Examples" and "Examples of Invalid
// Invoices" of BOLT #11 (../shared/reference/bolts/11-payment-encoding.md from the repository
// root), read from that file at test time. Each example is matched to one row below by the start
// of its title; a test fails if the file has an example without a row or a row without an example.
// All valid examples are signed with the spec's priv_key e126f68f...b734.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bech32 } from '@scure/base';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import type { Network } from '../../src/lightning/backend.js';
import type { Msat } from '../../src/money/msat.js';
import {
  decodeBolt11,
  encodeBolt11,
  fieldsFromInvoice,
  signingHash,
  type Bolt11Error,
  type Bolt11Invoice,
  type Bolt11RouteHop,
} from '../../src/lightning/bolt11/index.js';

const SPEC_PATH = fileURLToPath(new URL('../../../../../shared/reference/bolts/11-payment-encoding.md', import.meta.url));
const PRIVATE_KEY = hexToBytes('e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734');
const PAYEE = '03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad';
const PAYMENT_HASH = '0001020304050607080900010203040506070809000102030405060708090102';
const SECRET = '1111111111111111111111111111111111111111111111111111111111111111';
const TIMESTAMP = 1496314658;
const CAKE_HASH = '3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1';
const CAKE =
  'One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, one slice of salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, and one slice of watermelon';

interface SpecExample {
  title: string;
  invoice: string;
  /** From "Signature breakdown", when the example has one. */
  signatureHex?: string;
  recoveryFlag?: number;
  signingDataHex?: string;
  signingHashHex?: string;
}

/** Reads the examples: a quoted title line ("> ### ..."), then the first invoice-looking line. */
function readSpecExamples(): { valid: SpecExample[]; invalid: SpecExample[] } {
  const lines = readFileSync(SPEC_PATH, 'utf8').split('\n');
  const start = lines.findIndex((line) => line.trim() === '# Examples');
  const invalidStart = lines.findIndex((line) => line.trim() === '# Examples of Invalid Invoices');
  const end = lines.findIndex((line, index) => index > invalidStart && /^# /.test(line));
  expect(start).toBeGreaterThan(0);
  expect(invalidStart).toBeGreaterThan(start);
  const valid: SpecExample[] = [];
  const invalid: SpecExample[] = [];
  let current: SpecExample | null = null;
  let pendingTitle: string | null = null;
  for (let index = start; index < (end < 0 ? lines.length : end); index++) {
    const line = (lines[index] as string).replace(/^>\s?/, '').trim();
    const title = /^#+\s+(.*)$/.exec(line);
    if ((lines[index] as string).startsWith('>') && title) {
      pendingTitle = title[1] as string;
      continue;
    }
    if (pendingTitle !== null && /^[a-z0-9]{60,}$/i.test(line)) {
      current = { title: pendingTitle, invoice: line };
      (index > invalidStart ? invalid : valid).push(current);
      pendingTitle = null;
      continue;
    }
    if (current === null) continue;
    const breakdown = /^\* `([0-9a-f]+|[0-3])` (?:\(int\) )?(hex of signature data|recovery flag|hex of data for signing|hex of SHA256)/.exec(line);
    if (!breakdown) continue;
    const value = breakdown[1] as string;
    if (breakdown[2] === 'hex of signature data') current.signatureHex = value;
    if (breakdown[2] === 'recovery flag') current.recoveryFlag = Number(value);
    if (breakdown[2] === 'hex of data for signing') current.signingDataHex = value;
    if (breakdown[2] === 'hex of SHA256') current.signingHashHex = value;
  }
  return { valid, invalid };
}

interface ValidRow {
  /** Start of the example's title in the spec. */
  title: string;
  network: Network;
  amountMsat: bigint | null;
  timestamp?: number;
  paymentHash?: string;
  description?: string | null;
  descriptionHash?: string | null;
  expiryS?: number;
  minFinalCltvExpiry?: number;
  features?: number[];
  fallbacks?: { version: number; address: string; program?: string }[];
  routeHints?: Bolt11RouteHop[][];
  metadata?: string | null;
  payee?: string;
  unknownTagCodes?: number[];
}

const msat = (value: bigint): Msat => value as Msat;

const VALID: ValidRow[] = [
  {
    title: 'Please make a donation of any amount',
    network: 'mainnet', amountMsat: null, description: 'Please consider supporting this project', descriptionHash: null,
    expiryS: 3600, minFinalCltvExpiry: 18, features: [8, 14],
  },
  { title: 'Please send $3 for a cup of coffee', network: 'mainnet', amountMsat: 250_000_000n, description: '1 cup coffee', expiryS: 60, features: [8, 14] },
  { title: 'Please send 0.0025 BTC for a cup of nonsense', network: 'mainnet', amountMsat: 250_000_000n, description: 'ナンセンス 1杯', expiryS: 60 },
  { title: 'Now send $24 for an entire list of things (hashed)', network: 'mainnet', amountMsat: 2_000_000_000n, description: null, descriptionHash: CAKE_HASH },
  {
    title: 'The same, on testnet, with a fallback address',
    network: 'testnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 17, address: 'mk2QpYatsKicvFVuTAQLBryyccRXMUaGHP', program: '3172b5654f6683c8fb146959d347ce303cae4ca7' }],
  },
  {
    title: 'On mainnet, with fallback address 1RustyRX2oai4EYYDpQGWvEL62BBGqN9T with extra routing info',
    network: 'mainnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 17, address: '1RustyRX2oai4EYYDpQGWvEL62BBGqN9T', program: '04b61f7dc1ea0dc99424464cc4064dc564d91e89' }],
    routeHints: [[
      { pubkey: '029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255', shortChannelId: '66051x263430x1800', feeBaseMsat: msat(1n), feeProportionalMillionths: 20, cltvExpiryDelta: 3 },
      { pubkey: '039e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255', shortChannelId: '197637x395016x2314', feeBaseMsat: msat(2n), feeProportionalMillionths: 30, cltvExpiryDelta: 4 },
    ]],
  },
  {
    title: 'On mainnet, with fallback (P2SH) address', network: 'mainnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 18, address: '3EktnHQD7RiAE6uzMj2ZifT9YgRrkSgzQX', program: '8f55563b9a19f321c211e9b9f38cdf686ea07845' }],
  },
  {
    title: 'On mainnet, with fallback (P2WPKH) address', network: 'mainnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 0, address: 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', program: '751e76e8199196d454941c45d1b3a323f1433bd6' }],
  },
  {
    title: 'On mainnet, with fallback (P2WSH) address', network: 'mainnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 0, address: 'bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3', program: '1863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262' }],
  },
  {
    title: 'On mainnet, with fallback (P2TR) address', network: 'mainnet', amountMsat: 2_000_000_000n, descriptionHash: CAKE_HASH,
    fallbacks: [{ version: 1, address: 'bc1pptdvg0d2nj99568qn6ssdy4cygnwuxgw2ukmnwgwz7jpqjz2kszse2s3lm', program: '0adac43daa9c8a5a68e09ea10692b82226ee190e572db9b90e17a410484ab405' }],
  },
  {
    title: 'Please send 0.00967878534 BTC for a list of items within one week, amount in pico-BTC',
    network: 'mainnet', amountMsat: 967_878_534n, timestamp: 1572468703,
    paymentHash: '462264ede7e14047e9b249da94fefc47f41f7d02ee9b091815a5506bc8abf75f',
    description: 'Blockstream Store: 88.85 USD for Blockstream Ledger Nano S x 1, "Back In My Day" Sticker x 2, "I Got Lightning Working" Sticker x 2 and 1 more items',
    expiryS: 604800, minFinalCltvExpiry: 10, features: [8, 14],
    routeHints: [[
      { pubkey: '03d06758583bb5154774a6eb221b1276c9e82d65bbaceca806d90e20c108f4b1c7', shortChannelId: '589390x3312x1', feeBaseMsat: msat(1000n), feeProportionalMillionths: 2500, cltvExpiryDelta: 40 },
    ]],
  },
  { title: 'Please send $30 for coffee beans', network: 'mainnet', amountMsat: 2_500_000_000n, description: 'coffee beans', features: [8, 14, 99] },
  { title: 'Same, but all upper case.', network: 'mainnet', amountMsat: 2_500_000_000n, description: 'coffee beans', features: [8, 14, 99] },
  {
    title: 'Same, but including fields which must be ignored.',
    network: 'mainnet', amountMsat: 2_500_000_000n, description: 'coffee beans', features: [8, 14, 99], fallbacks: [],
    // Unknown type 10 ("2"), f version 19, then p, p, h, h, s, s, n, n of the wrong lengths.
    unknownTagCodes: [10, 9, 1, 1, 23, 23, 16, 16, 19, 19],
  },
  { title: 'Please send 0.01 BTC with payment metadata 0x01fafaf0', network: 'mainnet', amountMsat: 1_000_000_000n, description: 'payment metadata inside', metadata: '01fafaf0', features: [8, 14, 48] },
  {
    // The example keeps the low-S example's recovery flag (1) next to the negated s. Recovery
    // with that flag is valid but yields another key than the spec's payee; see the test below.
    title: 'Public-key recovery with high-S signature',
    network: 'mainnet', amountMsat: null, description: 'Please consider supporting this project',
    payee: '02d0139ce7427d6dfffd26a326c18be754ef1e64672b42694ba5b23ef6e6e7803d',
  },
];

const INVALID: { title: string; error: Bolt11Error; detail?: RegExp }[] = [
  { title: 'Same, but adding invalid unknown feature 100', error: 'UnknownRequiredFeature', detail: /bit 100/ },
  { title: 'Bech32 checksum is invalid.', error: 'BadChecksum' },
  { title: 'Malformed bech32 string (no 1)', error: 'BadBech32' },
  { title: 'Malformed bech32 string (mixed case)', error: 'MixedCase' },
  { title: 'Signature is not recoverable.', error: 'BadSignature', detail: /recoverable/ },
  { title: 'String is too short.', error: 'TooShort' },
  { title: 'Invalid multiplier', error: 'BadAmount' },
  { title: 'Invalid sub-millisatoshi precision.', error: 'BadAmount', detail: /whole number of msat/ },
  { title: 'Missing required `s` field.', error: 'MissingPaymentSecret' },
  { title: "Non canonical signature (high-S) with 'n' field defined", error: 'BadSignature', detail: /high-S/ },
];

const spec = readSpecExamples();

function rowFor<Row extends { title: string }>(rows: Row[], example: SpecExample): Row {
  const matches = rows.filter((row) => example.title.startsWith(row.title));
  expect(matches, `rows for "${example.title}"`).toHaveLength(1);
  return matches[0] as Row;
}

function decodeOk(text: string): Bolt11Invoice {
  const result = decodeBolt11(text);
  if (!result.ok) throw new Error(`expected ${text.slice(0, 20)}... to decode, got ${result.error}: ${result.detail}`);
  return result.invoice;
}

describe('BOLT 11 examples: the table covers the spec', () => {
  it('finds every example in the reference file', () => {
    expect(spec.valid).toHaveLength(VALID.length);
    expect(spec.invalid).toHaveLength(INVALID.length);
  });
  it('reads every signature breakdown (11 examples have one)', () => {
    const withBreakdown = spec.valid.filter(
      (example) => example.signatureHex && example.recoveryFlag !== undefined && example.signingDataHex && example.signingHashHex,
    );
    expect(withBreakdown).toHaveLength(11);
  });
  it('matches each valid example to exactly one row, and each row to one example', () => {
    for (const row of VALID) expect(spec.valid.filter((example) => example.title.startsWith(row.title)), row.title).toHaveLength(1);
    for (const example of spec.valid) rowFor(VALID, example);
  });
  it('matches each invalid example to exactly one row, and each row to one example', () => {
    for (const row of INVALID) expect(spec.invalid.filter((example) => example.title.startsWith(row.title)), row.title).toHaveLength(1);
    for (const example of spec.invalid) rowFor(INVALID, example);
  });
});

describe('BOLT 11 valid examples', () => {
  for (const example of spec.valid) {
    const row = VALID.find((candidate) => example.title.startsWith(candidate.title));
    describe(example.title.slice(0, 80), () => {
      it('decodes to the fields the spec describes', () => {
        expect(row).toBeDefined();
        if (!row) return;
        const invoice = decodeOk(example.invoice);
        expect(invoice.network).toBe(row.network);
        expect(invoice.prefix).toBe({ mainnet: 'lnbc', testnet: 'lntb', signet: 'lntbs', regtest: 'lnbcrt' }[row.network]);
        expect(invoice.amountMsat).toBe(row.amountMsat);
        expect(invoice.timestamp).toBe(row.timestamp ?? TIMESTAMP);
        expect(invoice.paymentHash).toBe(row.paymentHash ?? PAYMENT_HASH);
        expect(invoice.paymentSecret).toBe(SECRET);
        if (row.description !== undefined) expect(invoice.description).toBe(row.description);
        if (row.descriptionHash !== undefined) expect(invoice.descriptionHash).toBe(row.descriptionHash);
        expect(invoice.payeePubkey).toBe(row.payee ?? PAYEE);
        expect(invoice.payeePubkeyInInvoice).toBe(false);
        expect(invoice.expiryS).toBe(row.expiryS ?? 3600);
        expect(invoice.expiresAt).toBe(invoice.timestamp + invoice.expiryS);
        expect(invoice.minFinalCltvExpiry).toBe(row.minFinalCltvExpiry ?? 18);
        expect(invoice.features).toEqual(row.features ?? [8, 14]);
        expect(invoice.metadata).toBe(row.metadata ?? null);
        expect(invoice.routeHints).toEqual(row.routeHints ?? []);
        const fallbacks = row.fallbacks ?? [];
        expect(invoice.fallbackAddresses.map(({ version, address }) => ({ version, address }))).toEqual(
          fallbacks.map(({ version, address }) => ({ version, address })),
        );
        fallbacks.forEach((fallback, index) => {
          if (fallback.program) expect(invoice.fallbackAddresses[index]?.program).toBe(fallback.program);
        });
        expect(invoice.unknownTags.map((tag) => tag.code)).toEqual(row.unknownTagCodes ?? []);
        expect(invoice.paymentRequest).toBe(example.invoice.toLowerCase());
      });

      it('matches the signature breakdown', () => {
        const invoice = decodeOk(example.invoice);
        if (example.signatureHex !== undefined) expect(invoice.signature).toBe(example.signatureHex);
        if (example.recoveryFlag !== undefined) expect(invoice.recoveryFlag).toBe(example.recoveryFlag);
        const { prefix, words } = bech32.decode(example.invoice.toLowerCase() as `${string}1${string}`, false);
        const signedWords = Uint8Array.from(words.slice(0, -104));
        if (example.signingDataHex !== undefined) {
          expect(bytesToHex(sha256(hexToBytes(example.signingDataHex)))).toBe(example.signingHashHex);
        }
        if (example.signingHashHex !== undefined) expect(bytesToHex(signingHash(prefix, signedWords))).toBe(example.signingHashHex);
      });

      if (row?.title === 'Public-key recovery with high-S signature') {
        it('re-encodes: the same fields give the low-S example, and a high-S signature by the spec key differs only in the flag', () => {
          const invoice = decodeOk(example.invoice);
          const lowS = encodeBolt11(fieldsFromInvoice(invoice), PRIVATE_KEY);
          expect(lowS).toBe(spec.valid[0]?.invoice);
          const highS = decodeOk(encodeBolt11(fieldsFromInvoice(invoice), PRIVATE_KEY, { lowS: false }));
          expect(highS.signature).toBe(invoice.signature);
          expect(highS.payeePubkey).toBe(PAYEE);
          expect(highS.recoveryFlag).toBe(0);
          expect(invoice.recoveryFlag).toBe(1);
        });
      } else {
        it('re-encodes with the spec key to exactly the same string', () => {
          const invoice = decodeOk(example.invoice);
          expect(encodeBolt11(fieldsFromInvoice(invoice), PRIVATE_KEY)).toBe(example.invoice.toLowerCase());
        });
      }
    });
  }

  it('describes the hashed description example by the SHA-256 of its text', () => {
    expect(bytesToHex(sha256(new TextEncoder().encode(CAKE)))).toBe(CAKE_HASH);
  });
});

describe('BOLT 11 invalid examples', () => {
  for (const example of spec.invalid) {
    const row = INVALID.find((candidate) => example.title.startsWith(candidate.title));
    it(`refuses: ${example.title}`, () => {
      expect(row).toBeDefined();
      if (!row) return;
      const result = decodeBolt11(example.invoice);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error).toBe(row.error);
      if (row.detail) expect(result.detail).toMatch(row.detail);
    });
  }
});
