// Msat: the one parser and formatter of money. Table-driven: one row per refusal.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  describeMsat, formatMsat, msat, MSAT_MAX, msatToSatCeil, msatToSatFloor, mulDivCeil, mulDivFloor, parseMsat,
  parseMsatLoose, parseSatDecimal, satToMsat, subtractMsat,
} from '../../src/money/msat.js';

describe('parseMsat', () => {
  const rows: { description: string; input: unknown; expected?: bigint; error?: string }[] = [
    { description: 'zero', input: '0', expected: 0n },
    { description: 'one', input: '1', expected: 1n },
    { description: 'a typical amount', input: '250000', expected: 250000n },
    { description: 'the largest amount, 2^63-1', input: '9223372036854775807', expected: MSAT_MAX },
    { description: '2^63', input: '9223372036854775808', error: 'TooLarge' },
    { description: 'twenty digits', input: '10000000000000000000', error: 'TooLarge' },
    { description: 'a thousand digits', input: '9'.repeat(1000), error: 'TooLarge' },
    { description: 'empty', input: '', error: 'Empty' },
    { description: 'a fraction', input: '1.5', error: 'NotDigits' },
    { description: 'negative', input: '-1', error: 'NotDigits' },
    { description: 'explicit plus', input: '+1', error: 'NotDigits' },
    { description: 'exponent', input: '1e3', error: 'NotDigits' },
    { description: 'hex', input: '0x10', error: 'NotDigits' },
    { description: 'leading space', input: ' 1', error: 'NotDigits' },
    { description: 'trailing newline', input: '1\n', error: 'NotDigits' },
    { description: 'thousands separator', input: '1,000', error: 'NotDigits' },
    { description: 'underscore separator', input: '1_000', error: 'NotDigits' },
    { description: 'non-ASCII digits', input: '١٢٣', error: 'NotDigits' },
    { description: 'leading zero', input: '007', error: 'LeadingZero' },
    { description: 'a number', input: 1000, error: 'NotAString' },
    { description: 'a bigint', input: 1000n, error: 'NotAString' },
    { description: 'null', input: null, error: 'NotAString' },
  ];
  for (const row of rows) {
    it(row.description, () => {
      const result = parseMsat(row.input);
      if (row.error) expect(result).toEqual({ ok: false, error: row.error });
      else expect(result).toEqual({ ok: true, value: row.expected });
    });
  }

  it('round-trips every amount through formatMsat', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: MSAT_MAX }), (value) => {
      expect(parseMsat(formatMsat(msat(value)))).toEqual({ ok: true, value });
    }));
  });
});

describe('parseMsatLoose (JSON numbers)', () => {
  const rows: { description: string; input: unknown; expected?: bigint; error?: string }[] = [
    { description: 'a safe integer', input: 1000, expected: 1000n },
    { description: 'the largest safe integer', input: Number.MAX_SAFE_INTEGER, expected: BigInt(Number.MAX_SAFE_INTEGER) },
    { description: '2^53 + 1, already rounded by JSON.parse', input: JSON.parse('9007199254740993'), error: 'UnsafeNumber' },
    { description: 'a fraction', input: 1.5, error: 'UnsafeNumber' },
    { description: '1e300', input: 1e300, error: 'UnsafeNumber' },
    { description: 'NaN', input: Number.NaN, error: 'UnsafeNumber' },
    { description: 'negative', input: -1, error: 'NotDigits' },
    { description: 'strings still parse strictly', input: '1.0', error: 'NotDigits' },
  ];
  for (const row of rows) {
    it(row.description, () => {
      const result = parseMsatLoose(row.input);
      if (row.error) expect(result).toEqual({ ok: false, error: row.error });
      else expect(result).toEqual({ ok: true, value: row.expected });
    });
  }
});

describe('conversions name their rounding', () => {
  it('floors and ceils to whole satoshis', () => {
    expect(msatToSatFloor(msat(1999n))).toBe(1n);
    expect(msatToSatCeil(msat(1999n))).toBe(2n);
    expect(msatToSatFloor(msat(2000n))).toBe(2n);
    expect(msatToSatCeil(msat(2000n))).toBe(2n);
    expect(msatToSatCeil(msat(0n))).toBe(0n);
    expect(satToMsat(21n)).toBe(21000n);
  });

  it('floor <= exact <= ceil for every amount', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: MSAT_MAX - 1000n }), (value) => {
      const amount = msat(value);
      expect(msatToSatFloor(amount) * 1000n <= value).toBe(true);
      expect(msatToSatCeil(amount) * 1000n >= value).toBe(true);
      expect(msatToSatCeil(amount) - msatToSatFloor(amount) <= 1n).toBe(true);
    }));
  });

  it('proportional shares round in the named direction and never overshoot', () => {
    expect(mulDivFloor(msat(10n), 1n, 3n)).toBe(3n);
    expect(mulDivCeil(msat(10n), 1n, 3n)).toBe(4n);
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 1n, max: 1000n }), (value, numerator, denominator) => {
      const floor = mulDivFloor(msat(value), numerator, denominator);
      const ceil = mulDivCeil(msat(value), numerator, denominator);
      expect(floor * denominator <= value * numerator).toBe(true);
      expect(ceil * denominator >= value * numerator).toBe(true);
    }));
  });

  it('parses decimal satoshis with at most three decimals, refusing more precision', () => {
    expect(parseSatDecimal('1.5')).toEqual({ ok: true, value: 1500n });
    expect(parseSatDecimal('0.001')).toEqual({ ok: true, value: 1n });
    expect(parseSatDecimal('12')).toEqual({ ok: true, value: 12000n });
    expect(parseSatDecimal('0.0001')).toEqual({ ok: false, error: 'NotDigits' });
    expect(parseSatDecimal('-1')).toEqual({ ok: false, error: 'NotDigits' });
  });
});

describe('arithmetic guards', () => {
  it('refuses to build a negative or oversized amount (a bug, so it throws)', () => {
    expect(() => msat(-1n)).toThrow(RangeError);
    expect(() => msat(MSAT_MAX + 1n)).toThrow(RangeError);
    expect(() => msat(1.5)).toThrow(RangeError);
    expect(() => subtractMsat(msat(1n), msat(2n))).toThrow(RangeError);
  });

  it('describes amounts for people', () => {
    expect(describeMsat(msat(1234567n))).toBe('1,234,567 msat (1,234.567 sat)');
    expect(describeMsat(msat(5000n))).toBe('5,000 msat (5 sat)');
  });
});
