// The demo's routes over a real socket: the home page links to the game and the API, the
// game's files and the SDK's modules are served as UTF-8 with the right types (and nothing
// outside their folders), the QR code is an SVG, a new game is a real stream, and a shot is
// charged only with the game's payer token, with hits decided on the server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { targetX } from '../../src/demo/routes.js';
import { startDemoSluice, type DemoSluice } from './support.js';

let d: DemoSluice;
beforeAll(async () => {
  d = await startDemoSluice();
});
afterAll(async () => {
  await d?.close();
});

const get = (path: string) => fetch(d.baseUrl + path);

describe('demo routes', () => {
  it('serves a home page that links to the demo and to the OpenAPI document', async () => {
    const response = await get('/');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await response.text();
    expect(html).toContain('href="/demo/"');
    expect(html).toContain('href="/openapi.json"');
    expect(html).toContain('devnet — fake money');
    expect((await get('/openapi.json')).status).toBe(200); // still Sluice's own route
  });

  it.each([
    { path: '/demo/', type: 'text/html; charset=utf-8', contains: 'devnet — fake money' },
    { path: '/demo/game.js', type: 'text/javascript; charset=utf-8', contains: "from '/sdk/index.js'" },
    { path: '/demo/style.css', type: 'text/css; charset=utf-8', contains: '.wallet' },
    { path: '/sdk/index.js', type: 'text/javascript; charset=utf-8', contains: 'SluicePayer' },
    { path: '/sdk/streams/payer.js', type: 'text/javascript; charset=utf-8', contains: 'class SluicePayer' },
  ])('serves $path as $type', async ({ path, type, contains }) => {
    const response = await get(path);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(type);
    expect(await response.text()).toContain(contains);
  });

  it.each(['/demo/..%2Froutes.ts', '/demo/routes.ts', '/sdk/..%2F..%2Fpackage.json', '/sdk/../../package.json', '/sdk/index.d.ts', '/sdk/nope.js'])('refuses %s', async (path) => {
    const response = await get(path);
    expect(response.status).toBe(404);
  });

  it('draws a QR code of an invoice as SVG', async () => {
    const response = await get(`/demo/api/qr?data=${encodeURIComponent('lightning:lnbcrt10n1abc')}`);
    expect(response.headers.get('content-type')).toBe('image/svg+xml; charset=utf-8');
    expect(await response.text()).toMatch(/^<svg[^>]*>.*<\/svg>$/s);
    expect((await get('/demo/api/qr')).status).toBe(400);
  });

  it('starts a game as a stream of the demo app and charges shots only for the holder of its payer token', async () => {
    const created = await fetch(d.baseUrl + '/demo/api/games', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(created.status).toBe(201);
    const game = await created.json();
    expect(game).toMatchObject({ fake_money: true, shot_msat: '1500', hit_reward_msat: '4000' });
    const stream = await d.t.sluice.streams.get(game.stream_id, null);
    expect(stream?.terms.settleToMsat).toBe(60_000n);
    // The house was funded so that hits can be paid.
    const house = await (await get('/demo/api/house')).json();
    expect(BigInt(house.house_msat)).toBeGreaterThanOrEqual(2_000_000n);

    const shoot = (aim: number, ref: string, token: string | null) => fetch(`${d.baseUrl}/demo/api/games/${game.stream_id}/shots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ aim, ref }),
    });
    expect((await shoot(0.5, 'a', null)).status).toBe(401);
    const other = await (await fetch(d.baseUrl + '/demo/api/games', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).json();
    expect((await shoot(0.5, 'a', other.payer_token)).status).toBe(401);
    const broke = await shoot(0.5, 'a', game.payer_token);
    expect(broke.status).toBe(409);
    expect((await broke.json()).error.code).toBe('stream_limit_exceeded');

    const pay = await d.t.call('POST', '/v1/devnet/pay', { key: game.payer_token, body: { payment_request: (await d.t.sluice.streams.eventsAfter(game.stream_id, 0)).find((event) => event.type === 'invoice')?.data.payment_request } });
    expect(pay.status).toBe(200);
    // Aim where the target will be a moment from now (the server decides at arrival), and far from it.
    const target = game.target;
    const aimAt = (atMs: number) => targetX({ startedAtMs: target.started_at_ms, periodMs: target.period_ms, phase: target.phase }, atMs);
    const hit = await (await shoot(aimAt(Date.now() + 5), 'h1', game.payer_token)).json();
    const missAim = aimAt(Date.now()) > 0.5 ? 0 : 1;
    const miss = await (await shoot(missAim, 'm1', game.payer_token)).json();
    expect(miss).toMatchObject({ hit: false, charged_msat: '1500', rewarded_msat: '0' });
    expect(hit).toMatchObject({ hit: true, charged_msat: '1500', rewarded_msat: '4000' });
    expect((await d.t.sluice.streams.get(game.stream_id, null))?.balanceMsat).toBe(60_000n - 3_000n + 4_000n);
  });
});
