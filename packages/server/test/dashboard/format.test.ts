// What the pages show for amounts and times: exact msat as sats (bigint, never a float), durations.
import { describe, expect, it } from 'vitest';
import { duration, sats, satsInput, short } from '../../src/dashboard/web/format.js';

describe('dashboard formatting', () => {
  it('shows msat as sats exactly, with up to three decimals and grouped thousands', () => {
    expect(sats('0')).toBe('0 sat');
    expect(sats('1')).toBe('0.001 sat');
    expect(sats('1500')).toBe('1.5 sat');
    expect(sats('27591')).toBe('27.591 sat');
    expect(sats('49999978998')).toBe('49,999,978.998 sat');
    expect(sats(-2500n)).toBe('−2.5 sat');
    // Past 2^53: a float would lose the last msat.
    expect(sats('9223372036854775807')).toBe('9,223,372,036,854,775.807 sat');
  });

  it('takes whole sats typed by a person as msat, and refuses anything else', () => {
    expect(satsInput('30')).toBe('30000');
    expect(satsInput('0')).toBe('0');
    for (const bad of ['', '1.5', '-1', '1e3', '12345678901', ' 1']) expect(() => satsInput(bad), bad).toThrow('whole sats');
  });

  it('shows durations with their two largest units', () => {
    expect(duration(0)).toBe('0s');
    expect(duration(59)).toBe('59s');
    expect(duration(3600)).toBe('1h');
    expect(duration(7260)).toBe('2h 1m');
    expect(duration(30 * 86_400 + 5)).toBe('30d');
    expect(duration(86_400 + 3600 * 5 + 7)).toBe('1d 5h');
    expect(duration(-5)).toBe('0s');
    expect(duration(Number.POSITIVE_INFINITY)).toBe('∞');
    expect(short('st_abcdefghijklmnop', 5)).toBe('st_ab…');
  });
});
