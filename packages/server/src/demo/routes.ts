/**
 * The demo: a home page at `/`, a small browser game at `/demo/` (a shooting gallery:
 * each shot costs msat, each hit earns sats) and the SDK's ES modules at `/sdk/`.
 *
 * The game's server side runs here, inside Sluice, exactly as a real game server would
 * through SluiceApp: a demo app (created once, found by name afterwards) creates a
 * stream per game and charges and rewards on game events through the StreamService. The
 * house (the demo app's balance) is topped up from the devnet wallet `bob` when low.
 *
 * Threat model: FAKE MONEY only. Without the devnet the game is not offered (the home
 * page says why): it would spend real sats from the server's node on rewards. A shot is
 * charged only for the player holding the stream's payer token (sent as the bearer), and
 * hits are decided here from the target's motion, not by the browser. Static files are
 * served from two fixed folders by names matched against a strict pattern, so no path
 * can leave them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import qrcode from 'qrcode-generator';
import { Type } from 'typebox';
import { appAccountId, type AppService } from '../apps/service.js';
import { ApiError, errorBody } from '../errors/codes.js';
import type { DevnetWallets } from '../http/devnet-routes.js';
import type { SluiceFastify } from '../http/server.js';
import type { InvoiceService } from '../invoices/service.js';
import { balanceOf, type Account } from '../ledger/store.js';
import { msat } from '../money/msat.js';
import { createInputFromBody, streamError } from '../streams/routes.js';
import type { StreamService } from '../streams/service.js';

export const DEMO_APP_NAME = 'Sluice demo game (devnet)';

/** The game's economy, in msat. */
export const DEMO_TERMS = {
  shotMsat: 1_500n,
  hitRewardMsat: 4_000n,
  settleThresholdMsat: 20_000n,
  settleToMsat: 60_000n,
  maxChargeMsat: 10_000n,
  /** The house is topped up to this from the devnet wallet `bob` when under a tenth of it. */
  houseMsat: 2_000_000n,
} as const;

/** Half the target's width, as a fraction of the field; the target moves 0.1..0.9. */
const TARGET_HALF_WIDTH = 0.07;
const MAX_GAMES = 1000;
const HOUSE_WALLET = 'bob';

export interface DemoDeps {
  apps: AppService;
  streams: StreamService;
  invoices: InvoiceService;
  ledger: { getAccount(id: string): Promise<Account | null> };
  /** The devnet's wallets; null on a real backend (then only the home page is served). */
  wallets: DevnetWallets | null;
  /** Credits a Sluice invoice a devnet wallet just paid (as /v1/devnet/pay does). */
  afterWalletPaid: (paymentHash: string) => Promise<void>;
  logger: Logger;
  /** Unix ms (the injected clock). */
  now: () => number;
  /** Where the SDK's compiled ES modules are (default: @sluice/client's dist). */
  sdkDir?: string;
}

interface Game {
  streamId: string;
  startedAtMs: number;
  periodMs: number;
  phase: number;
  shots: number;
  hits: number;
}

/** The target's centre at a time, 0.1..0.9 of the field's width: the browser draws the same function. */
export function targetX(game: Pick<Game, 'startedAtMs' | 'periodMs' | 'phase'>, atMs: number): number {
  return 0.5 + 0.4 * Math.sin((2 * Math.PI * (atMs - game.startedAtMs)) / game.periodMs + game.phase);
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The game's files: beside this module in src/, or in src/ when running from dist/. */
function publicDir(): string {
  const candidates = [path.join(HERE, 'public'), path.join(HERE, '..', '..', 'src', 'demo', 'public')];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'index.html'))) ?? (candidates[0] as string);
}

/** @sluice/client's dist folder: found through node_modules upwards from here. */
function findSdkDir(): string | null {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', '@sluice', 'client', 'dist');
    if (fs.existsSync(path.join(candidate, 'index.js'))) return fs.realpathSync(candidate);
    if (path.dirname(dir) === dir) return null;
  }
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

const PUBLIC_FILE = /^[a-z0-9-]+\.(html|js|css)$/;
const SDK_FILE = /^([a-z0-9-]+\/)?[a-z0-9-]+\.js$/;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export function qrSvg(data: string): string {
  const code = qrcode(0, 'M');
  // BOLT 11 in upper case fits QR's alphanumeric mode: a smaller, easier to scan code.
  const upper = data.toUpperCase();
  code.addData(upper, /^[0-9A-Z $%*+\-./:]*$/.test(upper) ? 'Alphanumeric' : 'Byte');
  code.make();
  return code.createSvgTag({ cellSize: 4, margin: 2, scalable: true });
}

function homePage(devnet: boolean): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sluice</title><link rel="icon" href="data:,">
<style>body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1b1f24}
.fake{background:#ffe08a;border:2px solid #c99a00;padding:.4rem .8rem;border-radius:.4rem;font-weight:600;display:inline-block}
a{color:#0b57d0}</style></head>
<body>
<h1>Sluice</h1>
<p>A self-hosted Lightning micropayment server: streams, pay per call, subscriptions.</p>
${devnet ? '<p class="fake">devnet — fake money</p>' : ''}
<ul>
${devnet ? '<li><a href="/demo/">Play the demo game</a>: every shot costs msat, every hit earns sats.</li>' : '<li>The demo game runs only on the devnet (SLUICE_LIGHTNING=devnet): its rewards would spend real sats.</li>'}
<li><a href="/dashboard/">Merchant dashboard</a> (app or admin key) and the <a href="/me/">customer page</a> (payer token).</li>
<li><a href="/openapi.json">The API (OpenAPI)</a></li>
<li><a href="/v1/health">Health</a></li>
</ul>
</body></html>
`;
}

/** Routes for the home page, the demo game and the SDK's modules. Register before the server is ready. */
export function registerDemoRoutes(http: SluiceFastify, deps: DemoDeps): void {
  const { streams, logger } = deps;
  const staticDir = publicDir();
  const sdkDir = deps.sdkDir ?? findSdkDir();
  const games = new Map<string, Game>();
  let demoApp: Promise<string> | null = null;
  let funding: Promise<void> | null = null;

  const sendFile = async (dir: string, name: string, reply: import('fastify').FastifyReply) => {
    const file = path.join(dir, name);
    let body: Buffer;
    try {
      body = await fs.promises.readFile(file);
    } catch {
      return reply.code(404).send(errorBody('not_found', `no file ${name}`));
    }
    return reply.header('content-type', CONTENT_TYPES[path.extname(name)] ?? 'application/octet-stream').header('cache-control', 'no-cache').send(body);
  };

  /** The demo app's id: found by name, or created once. */
  const appId = (): Promise<string> => {
    demoApp ??= (async () => {
      const existing = (await deps.apps.listApps()).find((app) => app.name === DEMO_APP_NAME && app.revokedAt === null);
      return existing?.id ?? (await deps.apps.createApp(DEMO_APP_NAME)).app.id;
    })();
    demoApp.catch(() => {
      demoApp = null;
    });
    return demoApp;
  };

  const houseMsat = async (id: string): Promise<bigint> => {
    // The house is paid for hits in sweeps: made now, so the figure holds every hit the game saw.
    await streams.settleCharges().catch(() => undefined);
    const account = await deps.ledger.getAccount(appAccountId(id));
    return account ? balanceOf(account) : 0n;
  };

  /** Tops the house up from the devnet wallet bob when it runs low, so hits can be paid. */
  const fundHouse = async (id: string): Promise<void> => {
    const wallets = deps.wallets;
    if (!wallets) return;
    const balance = await houseMsat(id);
    if (balance * 10n >= DEMO_TERMS.houseMsat) return;
    funding ??= (async () => {
      const created = await deps.invoices.createInvoice(id, {
        amountMsat: msat(DEMO_TERMS.houseMsat - balance), description: 'Demo game house money (devnet)', expiryS: 600, idempotencyKey: null,
      });
      if (!created.ok) throw new Error(`house invoice: ${created.error}`);
      const paid = await wallets.backendFor(HOUSE_WALLET).payInvoice({
        paymentRequest: created.invoice.paymentRequest, feeLimitMsat: msat(1_000_000n), timeoutS: 30,
      });
      if (paid.status !== 'succeeded') throw new Error(`house funding: ${paid.status}`);
      await deps.afterWalletPaid(created.invoice.paymentHash);
    })().finally(() => {
      funding = null;
    });
    await funding;
  };

  /** The player's game: the payer token (bearer) must open this very stream. */
  const gameOf = async (authorization: string | undefined, streamId: string): Promise<Game> => {
    const token = /^Bearer\s+(pt_\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (token === undefined) throw new ApiError('unauthorized', 'send the payer token of this game as "Authorization: Bearer pt_..."');
    const stream = await streams.authenticatePayer(token);
    if (!stream || stream.id !== streamId) throw new ApiError('invalid_api_key', 'the payer token does not open this game');
    const game = games.get(streamId);
    if (!game) throw new ApiError('stream_not_found', 'no such game on this server (it may have restarted): start a new one');
    return game;
  };

  const devnetOnly = (): void => {
    if (!deps.wallets) throw new ApiError('devnet_only', 'the demo game runs only on the devnet (fake money)');
  };

  const hidden = { config: { auth: 'none' as const }, schema: { hide: true } };

  http.get('/', hidden, async (_request, reply) => reply.header('content-type', 'text/html; charset=utf-8').send(homePage(deps.wallets !== null)));

  http.get('/demo', hidden, async (_request, reply) => reply.redirect('/demo/'));
  http.get('/demo/', hidden, async (_request, reply) => {
    if (!deps.wallets) return reply.code(404).header('content-type', 'text/html; charset=utf-8').send(`<!doctype html><meta charset="utf-8"><p>${escapeHtml('The demo game runs only on the devnet (fake money).')}</p>`);
    return sendFile(staticDir, 'index.html', reply);
  });
  http.get('/demo/:file', { ...hidden, schema: { hide: true, params: Type.Object({ file: Type.String({ maxLength: 64 }) }) } }, async (request, reply) => {
    const name = request.params.file;
    if (!PUBLIC_FILE.test(name)) return reply.code(404).send(errorBody('not_found', `no file ${name}`));
    return sendFile(staticDir, name, reply);
  });

  http.get('/sdk/*', hidden, async (request, reply) => {
    const name = (request.params as { '*': string })['*'];
    if (sdkDir === null) return reply.code(404).send(errorBody('not_found', 'the SDK is not built (npm run build)'));
    if (!SDK_FILE.test(name)) return reply.code(404).send(errorBody('not_found', `no module ${name}`));
    return sendFile(sdkDir, name, reply);
  });

  http.get('/demo/api/qr', { ...hidden, schema: { hide: true, querystring: Type.Object({ data: Type.String({ minLength: 1, maxLength: 2000 }) }) } }, async (request, reply) => {
    return reply.header('content-type', 'image/svg+xml; charset=utf-8').header('cache-control', 'no-cache').send(qrSvg(request.query.data));
  });

  http.get('/demo/api/house', hidden, async () => {
    devnetOnly();
    return { house_msat: (await houseMsat(await appId())).toString(), fake_money: true };
  });

  http.post('/demo/api/games', hidden, async (_request, reply) => {
    devnetOnly();
    const id = await appId();
    await fundHouse(id);
    const created = await streams.create(id, createInputFromBody({
      prices: { shot: DEMO_TERMS.shotMsat.toString() },
      settle_threshold_msat: DEMO_TERMS.settleThresholdMsat.toString(),
      settle_to_msat: DEMO_TERMS.settleToMsat.toString(),
      max_charge_msat: DEMO_TERMS.maxChargeMsat.toString(),
      expires_in_s: 24 * 3600,
      metadata: 'demo game',
    }, deps.now()));
    if (!created.ok) throw streamError(created);
    if (games.size >= MAX_GAMES) games.delete(games.keys().next().value as string);
    const game: Game = { streamId: created.stream.id, startedAtMs: deps.now(), periodMs: 3000 + Math.floor(Math.random() * 2000), phase: Math.random() * 2 * Math.PI, shots: 0, hits: 0 };
    games.set(game.streamId, game);
    return reply.code(201).send({
      stream_id: game.streamId,
      payer_token: created.payerToken,
      fake_money: true,
      shot_msat: DEMO_TERMS.shotMsat.toString(),
      hit_reward_msat: DEMO_TERMS.hitRewardMsat.toString(),
      target: { started_at_ms: game.startedAtMs, period_ms: game.periodMs, phase: game.phase, half_width: TARGET_HALF_WIDTH },
      server_time_ms: deps.now(),
    });
  });

  http.post('/demo/api/games/:stream_id/shots', {
    ...hidden,
    schema: {
      hide: true,
      params: Type.Object({ stream_id: Type.String({ maxLength: 64 }) }),
      body: Type.Object({ aim: Type.Number({ minimum: 0, maximum: 1 }), ref: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }, { additionalProperties: false }),
    },
  }, async (request) => {
    devnetOnly();
    const game = await gameOf(request.headers.authorization, request.params.stream_id);
    const { aim, ref } = request.body;
    const target = targetX(game, deps.now());
    const hit = Math.abs(aim - target) <= TARGET_HALF_WIDTH;
    const charged = await streams.charge(game.streamId, { event: 'shot', ref: `shot-${ref}` });
    if (!charged.ok) throw streamError(charged);
    game.shots += 1;
    let balanceMsat = charged.balanceMsat;
    let rewardedMsat = 0n;
    if (hit) {
      const id = await appId();
      await fundHouse(id).catch((error: unknown) => logger.warn({ err: error }, 'demo: could not top the house up'));
      const rewarded = await streams.reward(game.streamId, { amountMsat: msat(DEMO_TERMS.hitRewardMsat), ref: `hit-${ref}` });
      if (!rewarded.ok) throw streamError(rewarded);
      game.hits += 1;
      balanceMsat = rewarded.balanceMsat;
      rewardedMsat = rewarded.amountMsat;
    }
    return {
      hit,
      target,
      charged_msat: charged.amountMsat.toString(),
      rewarded_msat: rewardedMsat.toString(),
      balance_msat: balanceMsat.toString(),
      house_msat: (await houseMsat(await appId())).toString(),
      shots: game.shots,
      hits: game.hits,
    };
  });
}
