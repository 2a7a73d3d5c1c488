import { describe, expect, it } from 'vitest';
import { ambiguousPathReason, createRoutePrices, routePatternError, routePricesFrom } from '../../../src/paycall/route-prices.js';
import type { Msat } from '../../../src/money/msat.js';

const rule = (path: string, price: number, methods: string[] | null = null) => ({ path, priceMsat: BigInt(price) as Msat, methods, service: null });

describe('route prices: first match wins', () => {
  const routes = createRoutePrices([
    rule('/health', 0),
    rule('/paid/cheap', 10),
    rule('/paid/*', 5000),
    rule('/users/*/photos', 20),
    rule('/write/*', 7, ['POST']),
    rule('/a/', 1),
    rule('/', 2),
  ]);
  const rows: { method?: string; path: string; expected: number | null }[] = [
    { path: '/health', expected: 0 },
    { path: '/health/x', expected: null },
    { path: '/paid/cheap', expected: 10 },
    { path: '/paid', expected: 5000 },
    { path: '/paid/', expected: 5000 },
    { path: '/paid/a/b/c', expected: 5000 },
    { path: '/paidx', expected: null },
    { path: '/users/42/photos', expected: 20 },
    { path: '/users//photos', expected: null },
    { path: '/users/photos', expected: null },
    { path: '/users/42/photos/1', expected: null },
    { method: 'POST', path: '/write/x', expected: 7 },
    { method: 'GET', path: '/write/x', expected: null },
    { path: '/a/', expected: 1 },
    { path: '/a', expected: null },
    { path: '/', expected: 2 },
    { path: '/PAID/x', expected: null },
  ];
  for (const row of rows) {
    it(`${row.method ?? 'GET'} ${row.path} -> ${row.expected ?? 'no rule'}`, () => {
      const match = routes.match(row.method ?? 'GET', row.path);
      expect(match === null ? null : Number(match.rule.priceMsat)).toBe(row.expected);
    });
  }

  it('a rule for GET covers HEAD', () => {
    const table = createRoutePrices([rule('/x', 3, ['GET'])]);
    expect(table.match('HEAD', '/x')?.rule.priceMsat).toBe(3n);
    expect(table.match('POST', '/x')).toBeNull();
  });

  it('"/*" matches every path, including "/"', () => {
    const table = createRoutePrices([rule('/*', 9)]);
    for (const path of ['/', '/a', '/a/b/']) expect(table.match('GET', path)?.index).toBe(0);
  });
});

describe('route patterns', () => {
  const rows: { pattern: string; error: RegExp | null }[] = [
    { pattern: '/paid/*', error: null },
    { pattern: '/*', error: null },
    { pattern: '/', error: null },
    { pattern: '/files/my%20doc', error: null },
    { pattern: 'paid/*', error: /start with "\/"/ },
    { pattern: '/pa*d', error: /inside a segment/ },
    { pattern: '/a/../b', error: /"\." or "\.\."/ },
    { pattern: '/a//b', error: /empty segment/ },
    { pattern: '/a b', error: /cannot hold/ },
    { pattern: '/a?b=1', error: /cannot hold/ },
  ];
  for (const row of rows) {
    it(`${row.pattern}: ${row.error ?? 'valid'}`, () => {
      const error = routePatternError(row.pattern);
      if (row.error === null) expect(error).toBeNull();
      else expect(error).toMatch(row.error);
    });
  }

  it('routePricesFrom reads decimal strings and refuses other amounts', () => {
    expect(routePricesFrom([{ path: '/x', price_msat: '5000' }]).match('GET', '/x')?.rule.priceMsat).toBe(5000n);
    expect(() => routePricesFrom([{ path: '/x', price_msat: '1.5' }])).toThrow(/routes\[0\]\.price_msat/);
    expect(() => routePricesFrom([{ path: 'x', price_msat: '1' }])).toThrow(/must start with/);
  });
});

describe('ambiguous request paths (a proxy refuses them)', () => {
  const rows: { path: string; ambiguous: boolean }[] = [
    { path: '/paid/x', ambiguous: false },
    { path: '/files/my%20doc', ambiguous: false },
    { path: '/a/', ambiguous: false },
    { path: '/free/../paid/x', ambiguous: true },
    { path: '/free/./x', ambiguous: true },
    { path: '/free/%2e%2e/paid/x', ambiguous: true },
    { path: '/free%2fpaid', ambiguous: true },
    { path: '/free%5Cpaid', ambiguous: true },
    { path: '/%70aid/x', ambiguous: true },
    { path: '/paid%7Ex', ambiguous: true },
    { path: '//paid', ambiguous: true },
    { path: '/a\\b', ambiguous: true },
    { path: '/a%zz', ambiguous: true },
    { path: 'http://evil/paid', ambiguous: true },
    { path: '/caf\u00e9', ambiguous: true },
  ];
  for (const row of rows) {
    it(`${row.path}: ${row.ambiguous ? 'refused' : 'fine'}`, () => {
      expect(ambiguousPathReason(row.path) !== null).toBe(row.ambiguous);
    });
  }
});
