/**
 * Prices per route: a list of `{path, price_msat}` rules, the first one that matches a
 * request wins. Shared by the middleware and the gateway, so one config means the same
 * thing everywhere.
 *
 * Pattern rules (docs/gateway.md, "Routes"):
 * - A pattern starts with "/" and is compared with the request path as the client sent it
 *   (percent-encoded, without the query string), case-sensitively.
 * - A last segment `*` matches the prefix itself and everything under it: "/paid/*" matches
 *   "/paid", "/paid/" and "/paid/a/b", not "/paidx". "/*" matches every path.
 * - A `*` segment anywhere else matches exactly one non-empty segment: "/users/* /photos"
 *   (without the space) matches "/users/42/photos", not "/users/photos".
 * - Every other segment matches itself exactly; a trailing slash counts ("/a" is not "/a/").
 * - `methods` (optional) limits a rule to those methods; a rule for GET also covers HEAD.
 *
 * Threat model: a price is only as good as the path it is matched against. A reverse proxy
 * must refuse paths that an upstream could read differently from the matcher (dot segments,
 * encoded slashes, encoded unreserved characters): see `ambiguousPathReason`.
 */
import { formatMsat, parseMsatLoose, type Msat } from '../money/msat.js';

export interface RoutePriceRule {
  /** The pattern, e.g. "/paid/*". */
  path: string;
  priceMsat: Msat;
  /** Upper-case methods this rule is limited to; null for every method. */
  methods: readonly string[] | null;
  /** What is sold (L402 `services` caveat, shown in challenges); null for the default. */
  service: string | null;
}

export interface RouteMatch {
  rule: RoutePriceRule;
  /** The rule's position in the list (0-based), for logs and tests. */
  index: number;
}

export interface RoutePrices {
  readonly rules: readonly RoutePriceRule[];
  /** The first rule matching this method and path (path without query), or null. */
  match(method: string, path: string): RouteMatch | null;
}

interface CompiledRule {
  rule: RoutePriceRule;
  /** Literal segments, with null for a one-segment `*`. */
  segments: (string | null)[];
  /** True when the last pattern segment was `*` (prefix rule). */
  prefix: boolean;
}

const METHOD = /^[A-Z]+$/;
/** RFC 3986 pchar, which is what a path segment may hold once percent-encoded. */
const SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()+,;=:@]|%[0-9A-Fa-f]{2})*$/;

/** Why a pattern is not valid, or null when it is. */
export function routePatternError(pattern: string): string | null {
  if (!pattern.startsWith('/')) return 'must start with "/"';
  if (pattern.length > 2048) return 'is longer than 2048 characters';
  const segments = pattern.slice(1).split('/');
  for (const [index, segment] of segments.entries()) {
    if (segment === '*') continue;
    if (segment.includes('*')) return `has "*" inside a segment ("${segment}"); "*" must be a whole segment`;
    if (segment === '.' || segment === '..') return 'has a "." or ".." segment';
    if (segment === '' && index !== segments.length - 1) return 'has an empty segment ("//")';
    if (!SEGMENT.test(segment)) return `has a character that a path cannot hold unencoded in "${segment}"`;
  }
  return null;
}

function compile(rule: RoutePriceRule): CompiledRule {
  const error = routePatternError(rule.path);
  if (error !== null) throw new Error(`route pattern ${JSON.stringify(rule.path)} ${error}`);
  const parts = rule.path === '/' ? [] : rule.path.slice(1).split('/');
  const prefix = parts[parts.length - 1] === '*';
  if (prefix) parts.pop();
  return { rule, segments: parts.map((part) => (part === '*' ? null : part)), prefix };
}

function methodMatches(methods: readonly string[] | null, method: string): boolean {
  if (methods === null) return true;
  return methods.includes(method) || (method === 'HEAD' && methods.includes('GET'));
}

function pathMatches(compiled: CompiledRule, pathSegments: readonly string[]): boolean {
  const { segments, prefix } = compiled;
  if (prefix) {
    // "/paid/*" has segments ["paid"]: "/paid" (["paid"]) and "/paid/..." match.
    if (pathSegments.length < segments.length) return false;
  } else if (pathSegments.length !== segments.length) {
    return false;
  }
  for (let i = 0; i < segments.length; i++) {
    const expected = segments[i];
    const actual = pathSegments[i] as string;
    if (expected === null ? actual === '' : expected !== actual) return false;
  }
  return true;
}

/** Builds the matcher. A bad pattern or method is a configuration bug: it throws. */
export function createRoutePrices(rules: readonly RoutePriceRule[]): RoutePrices {
  const compiled = rules.map((rule) => {
    for (const method of rule.methods ?? []) {
      if (!METHOD.test(method)) throw new Error(`route ${rule.path}: method ${JSON.stringify(method)} is not an upper-case HTTP method`);
    }
    return compile(rule);
  });
  return {
    rules,
    match(method, path) {
      if (!path.startsWith('/')) return null;
      // "/" has no segment; "/a/" has ["a", ""] so that a trailing slash counts.
      const pathSegments = path === '/' ? [] : path.slice(1).split('/');
      for (let index = 0; index < compiled.length; index++) {
        const candidate = compiled[index] as CompiledRule;
        if (methodMatches(candidate.rule.methods, method) && pathMatches(candidate, pathSegments)) return { rule: candidate.rule, index };
      }
      return null;
    },
  };
}

/** The shape of a rule in a config file or a middleware's options. */
export interface RoutePriceInput {
  path: string;
  /** Decimal string of msat ("5000"); a safe integer is accepted too. */
  price_msat: string | number;
  methods?: readonly string[];
  service?: string;
}

/** Reads rules given as plain data; throws with a message naming the bad rule. */
export function routePricesFrom(inputs: readonly RoutePriceInput[]): RoutePrices {
  return createRoutePrices(
    inputs.map((input, index) => {
      const price = parseMsatLoose(input.price_msat);
      if (!price.ok) throw new Error(`routes[${index}].price_msat must be a decimal string of msat, got ${JSON.stringify(input.price_msat)}`);
      return {
        path: input.path,
        priceMsat: price.value,
        methods: input.methods === undefined ? null : input.methods.map((method) => method.toUpperCase()),
        service: input.service ?? null,
      };
    }),
  );
}

/** "GET /paid/* 5000 msat", for banners and logs. */
export function describeRule(rule: RoutePriceRule): string {
  return `${rule.methods === null ? '*' : rule.methods.join(',')} ${rule.path} ${formatMsat(rule.priceMsat)} msat`;
}

const ENCODED_UNRESERVED = /%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DdEe]|5[Ff]|7[Ee])/;

/**
 * Why a request path could be read differently by the matcher and an upstream, or null
 * when it is unambiguous. A reverse proxy refuses such a path (400) instead of guessing
 * how the upstream normalises it: "/free/../paid/x", "/free/%2e%2e/paid/x",
 * "/free%2fpaid", "/%70aid/x" (an encoded "p") and "//paid" all are refused.
 */
export function ambiguousPathReason(path: string): string | null {
  if (!path.startsWith('/')) return 'the request target is not an absolute path';
  if (/[^\x21-\x7e]/.test(path)) return 'the path has a space, a control or a non-ASCII character';
  if (path.includes('\\')) return 'the path has a backslash';
  if (/%2f|%5c/i.test(path)) return 'the path has an encoded slash or backslash';
  if (ENCODED_UNRESERVED.test(path)) return 'the path percent-encodes a character that needs no encoding';
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return 'the path has a malformed percent-encoding';
  const segments = path.slice(1).split('/');
  for (const [index, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') return 'the path has a "." or ".." segment';
    if (segment === '' && index !== segments.length - 1) return 'the path has an empty segment ("//")';
  }
  return null;
}
