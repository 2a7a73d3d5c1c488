// L402 macaroons: identifier layout, minting, the V2 encoding and the signature chain,
// checked against the `macaroon` package itself and against lsat-js's identifier decoder.
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import macaroonLib from 'macaroon';
import { describe, expect, it } from 'vitest';
import {
  decodeIdentifier,
  deriveRootKey,
  encodeIdentifier,
  encodeMacaroonV2,
  mintMacaroon,
  parseMacaroon,
  signatureIsValid,
} from '../../../src/paycall/l402/macaroon.js';

const require = createRequire(import.meta.url);
// lsat-js is CommonJS without types we need here; only its identifier decoding is used.
const lsat = require('lsat-js') as {
  Identifier: { fromString(text: string): { version: number; paymentHash: Buffer; tokenId: Buffer } };
  decodeIdentifierFromMacaroon(raw: string): string;
  Lsat: { fromMacaroon(raw: string): { paymentHash: string; getCaveats(): { condition: string; value: string }[] } };
};

const secret = randomBytes(32);
const preimage = randomBytes(32);
const paymentHash = createHash('sha256').update(preimage).digest();
const tokenId = randomBytes(32);
const caveats = ['services=api:0', 'api_valid_until=4102444800', 'api_budget_msat=5000'];

describe('identifier', () => {
  it('is u16 version 0 | payment hash | token id (66 bytes)', () => {
    const identifier = encodeIdentifier(paymentHash, tokenId);
    expect(identifier.length).toBe(66);
    expect(identifier.readUInt16BE(0)).toBe(0);
    expect(identifier.subarray(2, 34).equals(paymentHash)).toBe(true);
    expect(identifier.subarray(34).equals(tokenId)).toBe(true);
    const decoded = decodeIdentifier(identifier);
    expect(decoded?.paymentHash.equals(paymentHash)).toBe(true);
    expect(decoded?.tokenId.equals(tokenId)).toBe(true);
  });

  it('refuses other lengths and versions', () => {
    expect(decodeIdentifier(Buffer.alloc(65))).toBeNull();
    const v1 = encodeIdentifier(paymentHash, tokenId);
    v1.writeUInt16BE(1, 0);
    expect(decodeIdentifier(v1)).toBeNull();
  });

  it('reads the same in lsat-js', () => {
    const token = mintMacaroon({ secret, paymentHash, tokenId, caveats }).toString('base64');
    const identifier = lsat.Identifier.fromString(lsat.decodeIdentifierFromMacaroon(token));
    expect(identifier.version).toBe(0);
    expect(Buffer.from(identifier.paymentHash).equals(paymentHash)).toBe(true);
    expect(Buffer.from(identifier.tokenId).equals(tokenId)).toBe(true);
    const parsed = lsat.Lsat.fromMacaroon(token);
    expect(parsed.paymentHash).toBe(paymentHash.toString('hex'));
    expect(parsed.getCaveats().map((caveat) => `${caveat.condition}=${caveat.value}`)).toEqual(caveats);
  });
});

describe('V2 encoding', () => {
  it('is byte for byte what the package exports (up to 2 caveats, where its export still works)', () => {
    const identifier = encodeIdentifier(paymentHash, tokenId);
    for (let count = 0; count <= 2; count += 1) {
      const macaroon = macaroonLib.newMacaroon({ identifier, rootKey: deriveRootKey(secret, identifier), version: 2 });
      for (const caveat of caveats.slice(0, count)) macaroon.addFirstPartyCaveat(caveat);
      const ours = encodeMacaroonV2({ identifier: macaroon.identifier, caveats: macaroon.caveats.map((caveat) => caveat.identifier), signature: macaroon.signature });
      expect(ours.equals(Buffer.from(macaroon.exportBinary()))).toBe(true);
    }
  });

  it('with a location and long fields round-trips through the package', () => {
    const longCaveat = 'x='.padEnd(300, 'y');
    const encoded = encodeMacaroonV2({ identifier: Buffer.alloc(200, 7), location: 'sluice', caveats: [Buffer.from(longCaveat)], signature: Buffer.alloc(32, 1) });
    const imported = macaroonLib.importMacaroon(encoded);
    expect(imported.location).toBe('sluice');
    expect(Buffer.from(imported.identifier).equals(Buffer.alloc(200, 7))).toBe(true);
    expect(Buffer.from(imported.caveats[0]?.identifier ?? []).toString()).toBe(longCaveat);
  });
});

describe('signature', () => {
  it('a minted macaroon verifies, here and in the package', () => {
    const bytes = mintMacaroon({ secret, paymentHash, tokenId, caveats });
    const parsed = parseMacaroon(bytes);
    expect(parsed?.caveats).toEqual(caveats);
    expect(signatureIsValid(secret, parsed!)).toBe(true);
    const seen: string[] = [];
    macaroonLib.importMacaroon(bytes).verify(deriveRootKey(secret, encodeIdentifier(paymentHash, tokenId)), (condition) => {
      seen.push(condition);
      return null;
    });
    expect(seen).toEqual(caveats);
  });

  it('a caveat the holder appends (attenuation) keeps it valid', () => {
    const imported = macaroonLib.importMacaroon(mintMacaroon({ secret, paymentHash, tokenId, caveats }));
    imported.addFirstPartyCaveat('api_calls=1');
    const reencoded = encodeMacaroonV2({ identifier: imported.identifier, caveats: imported.caveats.map((caveat) => caveat.identifier), signature: imported.signature });
    const parsed = parseMacaroon(reencoded);
    expect(parsed?.caveats.at(-1)).toBe('api_calls=1');
    expect(signatureIsValid(secret, parsed!)).toBe(true);
  });

  it('tampering anywhere breaks it, here and in the package', () => {
    const bytes = mintMacaroon({ secret, paymentHash, tokenId, caveats });
    const parsed = parseMacaroon(bytes)!;
    const variants = [
      { ...parsed, caveats: parsed.caveats.slice(0, 2), caveatBytes: parsed.caveatBytes.slice(0, 2) },
      { ...parsed, caveatBytes: [parsed.caveatBytes[0]!, parsed.caveatBytes[1]!, Buffer.from('api_budget_msat=9999999')] },
      { ...parsed, identifier: encodeIdentifier(paymentHash, randomBytes(32)) },
      { ...parsed, signature: Buffer.from(parsed.signature.map((byte, index) => (index === 0 ? byte ^ 1 : byte))) },
    ];
    for (const variant of variants) {
      expect(signatureIsValid(secret, variant)).toBe(false);
      const encoded = encodeMacaroonV2({ identifier: variant.identifier, caveats: variant.caveatBytes, signature: variant.signature });
      expect(() => macaroonLib.importMacaroon(encoded).verify(deriveRootKey(secret, variant.identifier), () => null)).toThrow();
    }
    expect(signatureIsValid(randomBytes(32), parsed)).toBe(false);
  });

  it('each macaroon has its own root key', () => {
    const a = deriveRootKey(secret, encodeIdentifier(paymentHash, tokenId));
    const b = deriveRootKey(secret, encodeIdentifier(paymentHash, randomBytes(32)));
    expect(a.equals(b)).toBe(false);
  });

  it('garbage and third-party caveats do not parse', () => {
    expect(parseMacaroon(Buffer.from('not a macaroon'))).toBeNull();
    expect(parseMacaroon(Buffer.alloc(0))).toBeNull();
    const bytes = mintMacaroon({ secret, paymentHash, tokenId, caveats });
    expect(parseMacaroon(bytes.subarray(0, bytes.length - 3))).toBeNull();
    expect(parseMacaroon(Buffer.concat([bytes, Buffer.from([0])]))).toBeNull();
    // A third-party caveat (it has a verification id, field 4) cannot be discharged here.
    const identifier = encodeIdentifier(paymentHash, tokenId);
    const withVid = Buffer.concat([
      Buffer.from([2, 2, identifier.length]), identifier, Buffer.from([0]),
      Buffer.from([2, 5]), Buffer.from('third'), Buffer.from([4, 3, 1, 2, 3, 0]),
      Buffer.from([0, 6, 32]), Buffer.alloc(32, 9),
    ]);
    expect(macaroonLib.importMacaroon(withVid).caveats[0]?.vid).toBeDefined();
    expect(parseMacaroon(withVid)).toBeNull();
  });
});

describe('V2 decoding agrees with the package', () => {
  const macaroonArb = fc.record({
    identifier: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    location: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: undefined }),
    caveats: fc.array(fc.string({ minLength: 1, maxLength: 200 }), { maxLength: 8 }),
    signature: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  });

  it('reads every well-formed macaroon exactly as the package does', () => {
    fc.assert(fc.property(macaroonArb, (input) => {
      const encoded = encodeMacaroonV2({ ...input, caveats: input.caveats.map((caveat) => Buffer.from(caveat, 'utf8')) });
      const ours = parseMacaroon(encoded);
      const theirs = macaroonLib.importMacaroon(encoded);
      expect(ours).not.toBeNull();
      expect(ours!.identifier.equals(Buffer.from(theirs.identifier))).toBe(true);
      expect(ours!.signature.equals(Buffer.from(theirs.signature))).toBe(true);
      expect(ours!.caveatBytes.map((caveat) => caveat.toString('hex'))).toEqual(theirs.caveats.map((caveat) => Buffer.from(caveat.identifier).toString('hex')));
    }), { numRuns: 300 });
  });

  it('whatever it accepts from mangled bytes, the package reads the same way', () => {
    const mangled = fc.tuple(macaroonArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), fc.boolean())
      .map(([input, edits, cut, truncate]) => {
        const bytes = Buffer.from(encodeMacaroonV2({ ...input, caveats: input.caveats.map((caveat) => Buffer.from(caveat, 'utf8')) }));
        for (const [position, value] of edits) bytes[position % bytes.length] = value;
        return truncate ? bytes.subarray(0, cut % bytes.length) : bytes;
      });
    fc.assert(fc.property(mangled, (bytes) => {
      const ours = parseMacaroon(bytes);
      if (ours === null) return;
      const theirs = macaroonLib.importMacaroon(bytes);
      expect(ours.identifier.equals(Buffer.from(theirs.identifier))).toBe(true);
      expect(ours.signature.equals(Buffer.from(theirs.signature))).toBe(true);
      expect(theirs.caveats.every((caveat) => caveat.vid === undefined)).toBe(true);
      expect(ours.caveatBytes.map((caveat) => caveat.toString('hex'))).toEqual(theirs.caveats.map((caveat) => Buffer.from(caveat.identifier).toString('hex')));
    }), { numRuns: 2000 });
  });
});
