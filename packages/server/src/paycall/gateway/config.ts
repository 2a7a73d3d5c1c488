/**
 * The `sluice gateway --config FILE` file: JSON (`.json`) or YAML (`.yaml`, `.yml`; any
 * other name is read as YAML, of which JSON is a subset). Every problem is reported at
 * once, each naming its field (`routes[1].price_msat: ...`), and unknown fields are
 * refused so that a typo cannot silently drop a price. docs/gateway.md documents each field.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { parseMsatLoose, type Msat } from '../../money/msat.js';
import { routePatternError, type RoutePriceRule } from '../route-prices.js';

export interface GatewayConfig {
  listen: { host: string; port: number };
  /** Origin of the upstream, e.g. "http://127.0.0.1:3000". */
  upstreamOrigin: string;
  /** Path prefix every forwarded path is put under ("" or "/api"). */
  upstreamBasePath: string;
  routes: RoutePriceRule[];
  /** The app paid; null: the gateway's own app, created on first start. */
  appId: string | null;
  /** What is sold, for routes without their own `service`. */
  service: string;
  /** The step price of the app's chain offer; null keeps Sluice's setting. */
  chainStepMsat: Msat | null;
  /** Most time to the upstream's response head, and between two body chunks. */
  upstreamTimeoutMs: number;
  /** Where the gateway answers its own health check (never forwarded). */
  healthPath: string;
  /** What the health check asks the upstream (any HTTP answer means reachable). */
  upstreamHealthPath: string;
  /** Keep X-Forwarded-* sent by the client (only behind a proxy you trust). */
  trustForwardedHeaders: boolean;
  /** Most connections open to the upstream at once. */
  upstreamConnections: number;
  /**
   * The URL clients reach the gateway at (no trailing slash), for the absolute buy URL in
   * chain offers; null: built from each request's Host header.
   */
  publicUrl: string | null;
  /** Most 402 challenges per client address per minute; 0 for no limit. */
  challengesPerMinute: number;
  /** Cross-origin access for browser pages; null: no CORS headers at all. */
  cors: GatewayCors | null;
}

export interface GatewayCors {
  /** The page origins allowed ("https://app.example.com"), or "*" for any. */
  origins: string[] | '*';
  /** How long a browser may keep a preflight answer. */
  maxAgeS: number;
}

export type GatewayConfigResult = { ok: true; config: GatewayConfig } | { ok: false; errors: string[] };

const TOP_FIELDS = new Set([
  'listen', 'upstream', 'routes', 'app_id', 'service', 'chain_step_msat', 'upstream_timeout_ms', 'health_path',
  'upstream_health_path', 'trust_forwarded_headers', 'upstream_connections', 'public_url',
  'challenges_per_minute', 'cors',
]);
const CORS_FIELDS = new Set(['origins', 'max_age_s']);
const ROUTE_FIELDS = new Set(['path', 'price_msat', 'methods', 'service']);
const LISTEN_FIELDS = new Set(['host', 'port']);
const MAX_ROUTES = 10_000;
const SERVICE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${JSON.stringify(value)} (${typeof value})`;
}

/** Checks an already parsed document. */
export function validateGatewayConfig(document: unknown): GatewayConfigResult {
  const errors: string[] = [];
  if (!isObject(document)) return { ok: false, errors: [`the file must hold an object with listen, upstream and routes, got ${describe(document)}`] };
  for (const key of Object.keys(document)) {
    if (!TOP_FIELDS.has(key)) errors.push(`${key}: unknown field (expected one of ${[...TOP_FIELDS].join(', ')})`);
  }

  const integer = (name: string, value: unknown, fallback: number, min: number, max: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      errors.push(`${name}: must be an integer from ${min} to ${max}, got ${describe(value)}`);
      return fallback;
    }
    return value;
  };
  const pathField = (name: string, value: unknown, fallback: string): string => {
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !/^\/[A-Za-z0-9\-._~!$&'()+,;=:@/%]*$/.test(value)) {
      errors.push(`${name}: must be a path starting with "/", got ${describe(value)}`);
      return fallback;
    }
    return value;
  };

  // listen
  let listen = { host: '127.0.0.1', port: 0 };
  if (document.listen === undefined) errors.push('listen: required, e.g. {"host": "127.0.0.1", "port": 8080}');
  else if (!isObject(document.listen)) errors.push(`listen: must be an object {"host", "port"}, got ${describe(document.listen)}`);
  else {
    for (const key of Object.keys(document.listen)) if (!LISTEN_FIELDS.has(key)) errors.push(`listen.${key}: unknown field (expected host, port)`);
    const host = document.listen.host ?? '127.0.0.1';
    if (typeof host !== 'string' || host === '') errors.push(`listen.host: must be an address such as "127.0.0.1" or "0.0.0.0", got ${describe(host)}`);
    if (document.listen.port === undefined) errors.push('listen.port: required (0 picks a free port)');
    listen = { host: typeof host === 'string' ? host : '127.0.0.1', port: integer('listen.port', document.listen.port, 0, 0, 65535) };
  }

  // upstream
  let upstreamOrigin = '';
  let upstreamBasePath = '';
  if (document.upstream === undefined) errors.push('upstream: required, the API to put behind the gateway, e.g. "http://127.0.0.1:3000"');
  else if (typeof document.upstream !== 'string') errors.push(`upstream: must be a URL string, got ${describe(document.upstream)}`);
  else {
    let url: URL | null = null;
    try {
      url = new URL(document.upstream);
    } catch {
      errors.push(`upstream: ${JSON.stringify(document.upstream)} is not a URL (expected e.g. "http://127.0.0.1:3000")`);
    }
    if (url !== null) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') errors.push(`upstream: must start with http:// or https://, got ${JSON.stringify(document.upstream)}`);
      else if (url.username !== '' || url.password !== '') errors.push('upstream: must not hold a user name or password');
      else if (url.search !== '' || url.hash !== '') errors.push('upstream: must not have a query string or a fragment');
      else {
        upstreamOrigin = url.origin;
        upstreamBasePath = url.pathname.replace(/\/+$/, '');
      }
    }
  }

  // routes
  const routes: RoutePriceRule[] = [];
  if (document.routes === undefined) errors.push('routes: required, a list such as [{"path": "/paid/*", "price_msat": "5000"}]');
  else if (!Array.isArray(document.routes) || document.routes.length === 0) errors.push(`routes: must be a non-empty list, got ${describe(document.routes)}`);
  else if (document.routes.length > MAX_ROUTES) errors.push(`routes: at most ${MAX_ROUTES} rules, got ${document.routes.length}`);
  else {
    document.routes.forEach((route: unknown, index) => {
      const where = `routes[${index}]`;
      if (!isObject(route)) {
        errors.push(`${where}: must be an object {"path", "price_msat"}, got ${describe(route)}`);
        return;
      }
      for (const key of Object.keys(route)) if (!ROUTE_FIELDS.has(key)) errors.push(`${where}.${key}: unknown field (expected path, price_msat, methods, service)`);
      let rulePath = '';
      if (typeof route.path !== 'string') errors.push(`${where}.path: required, a pattern such as "/paid/*", got ${describe(route.path)}`);
      else {
        const problem = routePatternError(route.path);
        if (problem !== null) errors.push(`${where}.path: ${JSON.stringify(route.path)} ${problem}`);
        rulePath = route.path;
      }
      const price = parseMsatLoose(route.price_msat);
      if (route.price_msat === undefined) errors.push(`${where}.price_msat: required, a decimal string of millisatoshis such as "5000" ("0" for free)`);
      else if (!price.ok) errors.push(`${where}.price_msat: must be a whole number of millisatoshis written as digits, such as "5000", got ${describe(route.price_msat)}`);
      let methods: string[] | null = null;
      if (route.methods !== undefined) {
        if (!Array.isArray(route.methods) || route.methods.length === 0 || !route.methods.every((method) => typeof method === 'string' && /^[A-Za-z]+$/.test(method))) {
          errors.push(`${where}.methods: must be a non-empty list of HTTP methods such as ["GET", "POST"], got ${describe(route.methods)}`);
        } else methods = (route.methods as string[]).map((method) => method.toUpperCase());
      }
      let service: string | null = null;
      if (route.service !== undefined) {
        if (typeof route.service !== 'string' || !SERVICE.test(route.service)) errors.push(`${where}.service: must be 1-64 letters, digits, ".", "_" or "-", got ${describe(route.service)}`);
        else service = route.service;
      }
      if (price.ok) routes.push({ path: rulePath, priceMsat: price.value, methods, service });
    });
  }

  let appId: string | null = null;
  if (document.app_id !== undefined) {
    if (typeof document.app_id !== 'string' || document.app_id === '') errors.push(`app_id: must be the id of an app (sluice apps list), got ${describe(document.app_id)}`);
    else appId = document.app_id;
  }
  let service = 'gateway';
  if (document.service !== undefined) {
    if (typeof document.service !== 'string' || !SERVICE.test(document.service)) errors.push(`service: must be 1-64 letters, digits, ".", "_" or "-", got ${describe(document.service)}`);
    else service = document.service;
  }
  let chainStepMsat: Msat | null = null;
  if (document.chain_step_msat !== undefined) {
    const step = parseMsatLoose(document.chain_step_msat);
    if (!step.ok || step.value === 0n) errors.push(`chain_step_msat: must be a whole number of millisatoshis above 0 written as digits, such as "1000", got ${describe(document.chain_step_msat)}`);
    else chainStepMsat = step.value;
  }
  const upstreamTimeoutMs = integer('upstream_timeout_ms', document.upstream_timeout_ms, 30_000, 1, 3_600_000);
  const upstreamConnections = integer('upstream_connections', document.upstream_connections, 128, 1, 65_536);
  const challengesPerMinute = integer('challenges_per_minute', document.challenges_per_minute, 600, 0, 10_000_000);
  const healthPath = pathField('health_path', document.health_path, '/_sluice/health');
  const upstreamHealthPath = pathField('upstream_health_path', document.upstream_health_path, '/');
  let trustForwardedHeaders = false;
  if (document.trust_forwarded_headers !== undefined) {
    if (typeof document.trust_forwarded_headers !== 'boolean') errors.push(`trust_forwarded_headers: must be true or false, got ${describe(document.trust_forwarded_headers)}`);
    else trustForwardedHeaders = document.trust_forwarded_headers;
  }

  let publicUrl: string | null = null;
  if (document.public_url !== undefined) {
    let url: URL | null = null;
    try {
      url = typeof document.public_url === 'string' ? new URL(document.public_url) : null;
    } catch {
      url = null;
    }
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
      errors.push(`public_url: must be the http(s) URL clients reach the gateway at, such as "https://api.example.com", got ${describe(document.public_url)}`);
    } else publicUrl = url.origin + url.pathname.replace(/\/+$/, '');
  }

  let cors: GatewayCors | null = null;
  if (document.cors !== undefined) {
    if (!isObject(document.cors)) errors.push(`cors: must be an object {"origins", "max_age_s"}, got ${describe(document.cors)}`);
    else {
      for (const key of Object.keys(document.cors)) if (!CORS_FIELDS.has(key)) errors.push(`cors.${key}: unknown field (expected origins, max_age_s)`);
      const origins = corsOrigins(document.cors.origins, errors);
      const maxAgeS = integer('cors.max_age_s', document.cors.max_age_s, 600, 0, 86_400);
      if (origins !== null) cors = { origins, maxAgeS };
    }
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    config: {
      listen, upstreamOrigin, upstreamBasePath, routes, appId, service, chainStepMsat, upstreamTimeoutMs, healthPath,
      upstreamHealthPath, trustForwardedHeaders, upstreamConnections, publicUrl, challengesPerMinute, cors,
    },
  };
}

/**
 * `cors.origins`: "*" or a list of exact origins as a browser sends them (scheme, host,
 * port if not the default; no path, no trailing slash), since the Origin header is
 * compared as a string.
 */
function corsOrigins(value: unknown, errors: string[]): string[] | '*' | null {
  if (value === '*') return '*';
  if (!Array.isArray(value) || value.length === 0) {
    errors.push(`cors.origins: required, "*" or a non-empty list of origins such as ["https://app.example.com"], got ${describe(value)}`);
    return null;
  }
  const origins: string[] = [];
  value.forEach((origin: unknown, index) => {
    let url: URL | null = null;
    try {
      url = typeof origin === 'string' ? new URL(origin) : null;
    } catch {
      url = null;
    }
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin) {
      errors.push(`cors.origins[${index}]: must be an origin such as "https://app.example.com" (no path, no trailing slash), got ${describe(origin)}`);
    } else origins.push(url.origin);
  });
  return origins.length === value.length ? origins : null;
}

/** Parses the text of a config file; `fileName` picks JSON or YAML and names the file in errors. */
export function parseGatewayConfig(text: string, fileName: string): GatewayConfigResult {
  let document: unknown;
  if (path.extname(fileName).toLowerCase() === '.json') {
    try {
      document = JSON.parse(text);
    } catch (error) {
      return { ok: false, errors: [`${fileName} is not valid JSON: ${(error as Error).message}`] };
    }
  } else {
    try {
      document = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
    } catch (error) {
      const detail = error instanceof YAMLParseError ? error.message : String(error);
      return { ok: false, errors: [`${fileName} is not valid YAML: ${detail}`] };
    }
  }
  return validateGatewayConfig(document);
}

/** Reads and checks a config file; a missing or unreadable file is an error message too. */
export function loadGatewayConfig(file: string): GatewayConfigResult {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as { code?: string }).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    return { ok: false, errors: [`cannot read ${file}: ${reason}`] };
  }
  return parseGatewayConfig(text, file);
}
