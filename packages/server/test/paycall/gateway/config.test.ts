import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig, parseGatewayConfig, validateGatewayConfig } from '../../../src/paycall/gateway/config.js';

const minimal = { listen: { host: '127.0.0.1', port: 8080 }, upstream: 'http://127.0.0.1:3000', routes: [{ path: '/paid/*', price_msat: '5000' }, { path: '/free/*', price_msat: '0' }] };

describe('gateway config: valid files', () => {
  it('reads the minimal config with defaults', () => {
    const result = validateGatewayConfig(minimal);
    expect(result).toEqual({
      ok: true,
      config: {
        listen: { host: '127.0.0.1', port: 8080 },
        upstreamOrigin: 'http://127.0.0.1:3000',
        upstreamBasePath: '',
        routes: [
          { path: '/paid/*', priceMsat: 5000n, methods: null, service: null },
          { path: '/free/*', priceMsat: 0n, methods: null, service: null },
        ],
        appId: null,
        service: 'gateway',
        chainStepMsat: null,
        upstreamTimeoutMs: 30_000,
        healthPath: '/_sluice/health',
        upstreamHealthPath: '/',
        trustForwardedHeaders: false,
        upstreamConnections: 128,
        publicUrl: null,
        challengesPerMinute: 600,
        cors: null,
      },
    });
  });

  it('reads every optional field, and an upstream with a base path', () => {
    const result = validateGatewayConfig({
      ...minimal,
      upstream: 'https://api.example.com/v2/',
      routes: [{ path: '/write/*', price_msat: 7, methods: ['post', 'PUT'], service: 'writes' }],
      app_id: 'app_123', service: 'jokes', chain_step_msat: '250', upstream_timeout_ms: 1500, health_path: '/healthz',
      upstream_health_path: '/status', trust_forwarded_headers: true, upstream_connections: 16,
      public_url: 'https://pay.example.com/gw/', challenges_per_minute: 0,
    });
    expect(result.ok && result.config).toMatchObject({
      upstreamOrigin: 'https://api.example.com', upstreamBasePath: '/v2',
      routes: [{ path: '/write/*', priceMsat: 7n, methods: ['POST', 'PUT'], service: 'writes' }],
      appId: 'app_123', service: 'jokes', chainStepMsat: 250n, upstreamTimeoutMs: 1500, healthPath: '/healthz',
      upstreamHealthPath: '/status', trustForwardedHeaders: true, upstreamConnections: 16,
      publicUrl: 'https://pay.example.com/gw', challengesPerMinute: 0,
    });
  });

  it('reads the same config from YAML and from JSON', () => {
    const yaml = `listen:\n  host: 127.0.0.1\n  port: 8080\nupstream: http://127.0.0.1:3000\nroutes:\n  - path: /paid/*\n    price_msat: "5000"\n  - path: /free/*\n    price_msat: 0\n`;
    const fromYaml = parseGatewayConfig(yaml, 'gateway.yaml');
    const fromJson = parseGatewayConfig(JSON.stringify(minimal), 'gateway.json');
    expect(fromYaml).toEqual(fromJson);
    expect(fromYaml.ok).toBe(true);
  });
});

describe('gateway config: bad files get clear messages', () => {
  const rows: { description: string; document: unknown; errors: RegExp[] }[] = [
    { description: 'not an object', document: ['a'], errors: [/must hold an object with listen, upstream and routes, got a list/] },
    { description: 'everything missing', document: {}, errors: [/^listen: required/, /^upstream: required/, /^routes: required/] },
    { description: 'a typo in a field', document: { ...minimal, upstream_timout_ms: 5 }, errors: [/^upstream_timout_ms: unknown field/] },
    { description: 'a port out of range', document: { ...minimal, listen: { port: 70000 } }, errors: [/^listen\.port: must be an integer from 0 to 65535, got 70000/] },
    { description: 'a port as text', document: { ...minimal, listen: { port: '8080' } }, errors: [/^listen\.port: must be an integer/] },
    { description: 'no port', document: { ...minimal, listen: { host: '0.0.0.0' } }, errors: [/^listen\.port: required/] },
    { description: 'an upstream that is not a URL', document: { ...minimal, upstream: 'localhost:3000' }, errors: [/^upstream: must start with http:\/\/ or https:\/\//] },
    { description: 'an upstream with a query', document: { ...minimal, upstream: 'http://a/?x=1' }, errors: [/^upstream: must not have a query string/] },
    { description: 'an upstream with credentials', document: { ...minimal, upstream: 'http://u:p@a/' }, errors: [/^upstream: must not hold a user name or password/] },
    { description: 'empty routes', document: { ...minimal, routes: [] }, errors: [/^routes: must be a non-empty list/] },
    { description: 'a float price', document: { ...minimal, routes: [{ path: '/a', price_msat: 1.5 }] }, errors: [/^routes\[0\]\.price_msat: must be a whole number of millisatoshis written as digits, such as "5000", got 1\.5 \(number\)/] },
    { description: 'a negative price', document: { ...minimal, routes: [{ path: '/a', price_msat: '-1' }] }, errors: [/^routes\[0\]\.price_msat: must be a whole number/] },
    { description: 'a missing price', document: { ...minimal, routes: [{ path: '/a' }] }, errors: [/^routes\[0\]\.price_msat: required/] },
    { description: 'a bad pattern', document: { ...minimal, routes: [{ path: '/a', price_msat: '1' }, { path: 'paid/*', price_msat: '1' }] }, errors: [/^routes\[1\]\.path: "paid\/\*" must start with "\/"/] },
    { description: 'a star inside a segment', document: { ...minimal, routes: [{ path: '/pa*', price_msat: '1' }] }, errors: [/^routes\[0\]\.path: "\/pa\*" has "\*" inside a segment/] },
    { description: 'bad methods', document: { ...minimal, routes: [{ path: '/a', price_msat: '1', methods: 'GET' }] }, errors: [/^routes\[0\]\.methods: must be a non-empty list of HTTP methods/] },
    { description: 'an unknown route field', document: { ...minimal, routes: [{ path: '/a', price: '1', price_msat: '1' }] }, errors: [/^routes\[0\]\.price: unknown field/] },
    { description: 'a zero chain step', document: { ...minimal, chain_step_msat: '0' }, errors: [/^chain_step_msat: must be a whole number of millisatoshis above 0/] },
    { description: 'a timeout of zero', document: { ...minimal, upstream_timeout_ms: 0 }, errors: [/^upstream_timeout_ms: must be an integer from 1/] },
    { description: 'a relative health path', document: { ...minimal, health_path: 'health' }, errors: [/^health_path: must be a path starting with "\/"/] },
    { description: 'a public URL that is not one', document: { ...minimal, public_url: 'pay.example.com' }, errors: [/^public_url: must be the http\(s\) URL/] },
    { description: 'trust as text', document: { ...minimal, trust_forwarded_headers: 'yes' }, errors: [/^trust_forwarded_headers: must be true or false/] },
  ];
  for (const row of rows) {
    it(row.description, () => {
      const result = validateGatewayConfig(row.document);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toHaveLength(row.errors.length);
      row.errors.forEach((pattern, index) => expect(result.errors[index]).toMatch(pattern));
    });
  }

  it('reports a YAML syntax error with its line', () => {
    const result = parseGatewayConfig('listen:\n  port: 80\n routes: [\n', 'gw.yaml');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.errors[0]).toMatch(/^gw\.yaml is not valid YAML: .*line/s);
  });

  it('reports a JSON syntax error, a duplicate YAML key, and a missing file', () => {
    expect(parseGatewayConfig('{"listen": ', 'gw.json')).toMatchObject({ ok: false, errors: [expect.stringMatching(/^gw\.json is not valid JSON/)] });
    expect(parseGatewayConfig('upstream: http://a\nupstream: http://b\n', 'gw.yml')).toMatchObject({ ok: false, errors: [expect.stringMatching(/not valid YAML.*[Mm]ap keys must be unique/s)] });
    const missing = path.join(os.tmpdir(), 'sluice-no-such-gateway.yaml');
    expect(loadGatewayConfig(missing)).toEqual({ ok: false, errors: [`cannot read ${missing}: no such file`] });
  });

  it('loads a file from disk', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-gw-config-'));
    const file = path.join(dir, 'gateway.json');
    fs.writeFileSync(file, JSON.stringify(minimal));
    expect(loadGatewayConfig(file).ok).toBe(true);
  });
});
