// Property tests: invoices made by encodeBolt11 from random fields decode to the same fields
// with our decoder (and re-encode to the same text), and with two independent decoders,
// `bolt11` (bitcoinjs; checks the signature and recovers the payee) and `light-bolt11-decoder`.
import bolt11 from 'bolt11';
import { decode as lightDecode } from 'light-bolt11-decoder';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Network } from '../../src/lightning/backend.js';
import type { Msat } from '../../src/money/msat.js';
import {
  BOLT11_AMOUNT_MAX_MSAT,
  decodeBolt11,
  encodeBolt11,
  fieldsFromInvoice,
  type Bolt11FallbackInput,
  type Bolt11NamedFields,
  type Bolt11RouteHop,
} from '../../src/lightning/bolt11/index.js';

const hex = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map(bytesToHex);

const amountArb: fc.Arbitrary<Msat | null> = fc.option(
  fc.oneof(
    fc.bigInt({ min: 1n, max: 10_000_000n }),
    fc.bigInt({ min: 1n, max: 21_000_000n * 100_000_000_000n }),
    fc.bigInt({ min: 1n, max: 1000n }).map((value) => value * 100_000n),
    fc.bigInt({ min: 1n, max: BOLT11_AMOUNT_MAX_MSAT }),
  ).map((value) => value as Msat),
  { freq: 5 },
);

const hopArb: fc.Arbitrary<Bolt11RouteHop> = fc.record({
  pubkey: fc.constantFrom('02', '03').chain((parity) => hex(32).map((x) => parity + x)),
  shortChannelId: fc
    .tuple(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 0, max: 0xffff }))
    .map(([block, transaction, output]) => `${block}x${transaction}x${output}`),
  feeBaseMsat: fc.integer({ min: 0, max: 0xffffffff }).map((value) => BigInt(value) as Msat),
  feeProportionalMillionths: fc.integer({ min: 0, max: 0xffffffff }),
  cltvExpiryDelta: fc.integer({ min: 0, max: 0xffff }),
});

const fallbackArb: fc.Arbitrary<Bolt11FallbackInput> = fc.oneof(
  hex(20).map((program) => ({ version: 17, program })),
  hex(20).map((program) => ({ version: 18, program })),
  hex(20).map((program) => ({ version: 0, program })),
  hex(32).map((program) => ({ version: 0, program })),
  hex(32).map((program) => ({ version: 1, program })),
);

/** Known features (both parities) and odd unknown ones; basic_mpp brings payment_secret. */
const featuresArb = fc
  .subarray([8, 9, 14, 15, 16, 17, 24, 25, 48, 49, 99, 101, 255])
  .map((bits) => (bits.some((bit) => bit === 16 || bit === 17) && !bits.some((bit) => bit === 14 || bit === 15) ? [...bits, 15] : bits));

const fieldsArb: fc.Arbitrary<Bolt11NamedFields> = fc
  .record({
    network: fc.constantFrom<Network>('mainnet', 'testnet', 'signet', 'regtest'),
    amountMsat: amountArb,
    timestamp: fc.integer({ min: 0, max: 2 ** 35 - 1 }),
    paymentHash: hex(32),
    paymentSecret: hex(32),
    describe: fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 60 }).map((description) => ({ description })),
      hex(32).map((descriptionHash) => ({ descriptionHash })),
    ),
    expiryS: fc.option(fc.integer({ min: 0, max: 2 ** 31 }), { nil: undefined }),
    minFinalCltvExpiry: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
    includePayeePubkey: fc.boolean(),
    metadata: fc.option(fc.uint8Array({ minLength: 1, maxLength: 40 }).map(bytesToHex), { nil: undefined }),
    fallbackAddresses: fc.array(fallbackArb, { maxLength: 2 }),
    routeHints: fc.array(fc.array(hopArb, { minLength: 1, maxLength: 3 }), { maxLength: 2 }),
    features: featuresArb,
  })
  .map(({ describe, expiryS, minFinalCltvExpiry, metadata, ...rest }) => ({
    ...rest,
    ...describe,
    ...(expiryS === undefined ? {} : { expiryS }),
    ...(minFinalCltvExpiry === undefined ? {} : { minFinalCltvExpiry }),
    ...(metadata === undefined ? {} : { metadata }),
  }));

const keyArb = fc.uint8Array({ minLength: 48, maxLength: 48 }).map((seed) => secp256k1.utils.randomSecretKey(seed));

const RUNS = Number(process.env.BOLT11_RUNS ?? 150);

function scidHex(text: string): string {
  const [block, transaction, output] = text.split('x').map(Number) as [number, number, number];
  return block.toString(16).padStart(6, '0') + transaction.toString(16).padStart(6, '0') + output.toString(16).padStart(4, '0');
}

function bitsOf(features: readonly number[]): Set<number> {
  return new Set(features);
}

/** bolt11 knows mainnet, testnet, regtest and simnet; signet needs its parameters. */
const BOLT11_NETWORKS: Record<Network, Parameters<typeof bolt11.decode>[1]> = {
  mainnet: undefined,
  testnet: undefined,
  regtest: undefined,
  signet: { bech32: 'tbs', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
};

describe('encodeBolt11 / decodeBolt11 round trip', () => {
  it('decodes what it encodes, field by field, and re-encodes to the same text', () => {
    fc.assert(
      fc.property(fieldsArb, keyArb, (fields, key) => {
        const text = encodeBolt11(fields, key);
        const result = decodeBolt11(text);
        if (!result.ok) throw new Error(`${result.error}: ${result.detail}`);
        const invoice = result.invoice;
        const pubkey = bytesToHex(secp256k1.getPublicKey(key, true));
        expect(invoice.network).toBe(fields.network);
        expect(invoice.amountMsat).toBe(fields.amountMsat);
        expect(invoice.timestamp).toBe(fields.timestamp);
        expect(invoice.paymentHash).toBe(fields.paymentHash);
        expect(invoice.paymentSecret).toBe(fields.paymentSecret);
        expect(invoice.description).toBe(fields.description ?? null);
        expect(invoice.descriptionHash).toBe(fields.descriptionHash ?? null);
        expect(invoice.expiryS).toBe(fields.expiryS ?? 3600);
        expect(invoice.minFinalCltvExpiry).toBe(fields.minFinalCltvExpiry ?? 18);
        expect(invoice.payeePubkey).toBe(pubkey);
        expect(invoice.payeePubkeyInInvoice).toBe(fields.includePayeePubkey);
        expect(invoice.metadata).toBe(fields.metadata ?? null);
        expect(invoice.features).toEqual([...new Set(fields.features)].sort((a, b) => a - b));
        expect(invoice.routeHints).toEqual(fields.routeHints);
        expect(invoice.fallbackAddresses.map(({ version, program }) => ({ version, program }))).toEqual(fields.fallbackAddresses);
        expect(encodeBolt11(fieldsFromInvoice(invoice), key)).toBe(text);
        expect(decodeBolt11(text.toUpperCase())).toEqual(result);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('independent decoders agree with encodeBolt11', () => {
  it('bolt11 (bitcoinjs) reads the same fields and recovers the same payee', () => {
    fc.assert(
      fc.property(fieldsArb, keyArb, (fields, key) => {
        const text = encodeBolt11(fields, key);
        const ours = decodeBolt11(text);
        if (!ours.ok) throw new Error(ours.error);
        const theirs = bolt11.decode(text, BOLT11_NETWORKS[fields.network]);
        const tags = theirs.tagsObject;
        expect(theirs.complete).toBe(true);
        expect(theirs.millisatoshis ?? null).toBe(fields.amountMsat === null ? null : fields.amountMsat.toString());
        expect(theirs.timestamp).toBe(fields.timestamp);
        expect(theirs.payeeNodeKey).toBe(ours.invoice.payeePubkey);
        expect(theirs.signature).toBe(ours.invoice.signature);
        expect(theirs.recoveryFlag).toBe(ours.invoice.recoveryFlag);
        expect(tags.payment_hash).toBe(fields.paymentHash);
        expect(tags.payment_secret).toBe(fields.paymentSecret);
        expect(tags.description).toBe(fields.description);
        expect(tags.purpose_commit_hash).toBe(fields.descriptionHash);
        expect(tags.expire_time).toBe(fields.expiryS);
        expect(tags.min_final_cltv_expiry).toBe(fields.minFinalCltvExpiry);
        expect(tags.payee_node_key).toBe(fields.includePayeePubkey ? ours.invoice.payeePubkey : undefined);
        const routes = theirs.tags.filter((tag) => tag.tagName === 'routing_info').map((tag) => tag.data);
        expect(routes).toEqual(
          fields.routeHints?.map((route) =>
            route.map((hop) => ({
              pubkey: hop.pubkey,
              short_channel_id: scidHex(hop.shortChannelId),
              fee_base_msat: Number(hop.feeBaseMsat),
              fee_proportional_millionths: hop.feeProportionalMillionths,
              cltv_expiry_delta: hop.cltvExpiryDelta,
            })),
          ),
        );
        const fallbacks = theirs.tags.filter((tag) => tag.tagName === 'fallback_address').map((tag) => tag.data);
        // For signet, bolt11 spells addresses with the invoice prefix ("tbs1..."), not signet's "tb1...".
        const sameAddresses = fields.network !== 'signet';
        expect(fallbacks.map((data) => sameAddresses ? data : { ...(data as object), address: undefined })).toEqual(
          ours.invoice.fallbackAddresses.map((fallback) => ({
            code: fallback.version,
            address: sameAddresses ? fallback.address : undefined,
            addressHash: fallback.program,
          })),
        );
        const features = tags.feature_bits;
        const bits = bitsOf(fields.features ?? []);
        if (bits.size > 0 && features) {
          expect(features.var_onion_optin?.required).toBe(bits.has(8));
          expect(features.var_onion_optin?.supported).toBe(bits.has(9));
          expect(features.payment_secret?.required).toBe(bits.has(14));
          expect(features.payment_secret?.supported).toBe(bits.has(15));
          expect(features.basic_mpp?.required).toBe(bits.has(16));
          expect(features.basic_mpp?.supported).toBe(bits.has(17));
          const extra = features.extra_bits?.bits ?? [];
          extra.forEach((set, index) => expect(set, `bit ${index + 20}`).toBe(bits.has(index + 20)));
        } else {
          expect(features).toBeUndefined();
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('light-bolt11-decoder reads the same sections', () => {
    fc.assert(
      fc.property(fieldsArb, keyArb, (fields, key) => {
        const text = encodeBolt11(fields, key);
        const ours = decodeBolt11(text);
        if (!ours.ok) throw new Error(ours.error);
        const theirs = lightDecode(text);
        const section = (name: string) => theirs.sections.find((candidate) => candidate.name === name) as { value?: unknown } | undefined;
        expect(section('amount')?.value).toBe(fields.amountMsat === null ? undefined : fields.amountMsat.toString());
        expect(section('timestamp')?.value).toBe(fields.timestamp);
        expect(section('payment_hash')?.value).toBe(fields.paymentHash);
        expect(section('payment_secret')?.value).toBe(fields.paymentSecret);
        expect(section('description')?.value).toBe(fields.description);
        expect(section('description_hash')?.value).toBe(fields.descriptionHash);
        expect(section('metadata')?.value).toBe(fields.metadata);
        expect(section('min_final_cltv_expiry')?.value).toBe(fields.minFinalCltvExpiry);
        expect(theirs.expiry).toBe(fields.expiryS); // undefined when there is no x field
        expect(section('signature')?.value).toBe(ours.invoice.signature + ours.invoice.recoveryFlag.toString(16).padStart(2, '0'));
        expect(theirs.route_hints).toEqual(
          (fields.routeHints ?? []).map((route) =>
            route.map((hop) => ({
              pubkey: hop.pubkey,
              short_channel_id: scidHex(hop.shortChannelId),
              fee_base_msat: Number(hop.feeBaseMsat),
              fee_proportional_millionths: hop.feeProportionalMillionths,
              cltv_expiry_delta: hop.cltvExpiryDelta,
            })),
          ),
        );
        const features = section('feature_bits')?.value as Record<string, unknown> | undefined;
        const bits = bitsOf(fields.features ?? []);
        if (bits.size > 0) {
          const state = (even: number) => (bits.has(even) ? 'required' : bits.has(even + 1) ? 'supported' : 'unsupported');
          expect(features?.var_onion_optin).toBe(state(8));
          expect(features?.payment_secret).toBe(state(14));
          expect(features?.basic_mpp).toBe(state(16));
          const extra = (features?.extra_bits as { bits: boolean[] } | undefined)?.bits ?? [];
          extra.forEach((set, index) => expect(set, `bit ${index + 20}`).toBe(bits.has(index + 20)));
        } else {
          expect(features).toBeUndefined();
        }
      }),
      { numRuns: RUNS },
    );
  });
});
