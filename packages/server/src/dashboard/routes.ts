/**
 * The dashboards: the merchant's at `/dashboard/` (admin key: apps and keys; app key:
 * balance, streams, invoices, payments, webhooks, devnet wallets, plans and subscriptions)
 * and the customer's at `/me/` (payer tokens: each stream or subscription, its balance,
 * top-ups with a QR code, pause, close or cancel with the refund).
 *
 * The pages are static shells (pages.ts) and compiled ES modules (dashboard/web, built by
 * tsc into dist/dashboard/web); they talk to the public REST API with the key the person
 * typed, plus three small routes below that the API lacks: who a key is (subscriptions'
 * payer tokens included, which the shared auth hook does not take), a devnet wallet paying
 * for any of those keys, and a stream payer's own top-up invoice.
 *
 * Threat model: keys are bearer secrets typed into the page; they stay in the tab
 * (sessionStorage) and travel only in the Authorization header, never in a URL (so never in
 * logs, history or Referer). Everything shown comes from the API and is inserted as text
 * nodes (no HTML parsing of data), and the CSP below allows only this origin's scripts and
 * styles, so injected markup could not run even if it slipped in. Static files come from
 * one fixed folder by names matched against a strict pattern, so no path can leave it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AppService } from '../apps/service.js';
import { qrSvg } from '../demo/routes.js';
import { ApiError, errorBody, type ErrorCode } from '../errors/codes.js';
import { devnetWallet, devnetWalletsJson, payFromDevnetWallet, type DevnetWallets } from '../http/devnet-routes.js';
import { requireBearerKey, type SluiceFastify } from '../http/server.js';
import { AmountSchema, errorResponses, IdempotencyKeySchema, parseAmount, parseIdempotencyKey } from '../http/wire.js';
import { invoiceJson, InvoiceSchema } from '../invoices/routes.js';
import type { CreateInvoiceResult, InvoiceService } from '../invoices/service.js';
import { PAYER_TOKEN_PREFIX, streamAccountId, type StreamService } from '../streams/service.js';
import { SUBSCRIPTION_TOKEN_PREFIX } from '../subscriptions/service.js';
import { CUSTOMER_HTML, ICON_SVG, MERCHANT_HTML, STYLE_CSS } from './pages.js';

/**
 * Only this origin's scripts, styles, images and API; no inline code, no plugins, no
 * framing, no form posts elsewhere. `img-src data:` is not needed: QR codes are SVG from
 * /dashboard/qr.svg.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** A payer's own top-up: at most 1,000,000 sat per invoice, a guard against typos rather than a policy. */
export const PAYER_TOP_UP_MAX_MSAT = 1_000_000_000n;

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The compiled browser modules: beside this file in dist/, or dist/ when running from src/ (tests). */
export function dashboardWebDir(): string {
  const candidates = [path.join(HERE, 'web'), path.join(HERE, '..', '..', 'dist', 'dashboard', 'web')];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'merchant.js'))) ?? (candidates[0] as string);
}

const ASSET_FILE = /^[a-z0-9-]+\.js$/;

const INVOICE_ERRORS: Record<Exclude<CreateInvoiceResult, { ok: true }>['error'], ErrorCode> = {
  IdempotencyConflict: 'idempotency_key_reused',
  DescriptionTooLong: 'description_too_long',
  AmountTooLarge: 'invalid_amount',
  LightningUnavailable: 'lightning_unavailable',
};

export interface DashboardDeps {
  apps: AppService;
  streams: StreamService;
  invoices: InvoiceService;
  /** The devnet's wallets, or null on a real backend (the pages then offer no wallets). */
  wallets: DevnetWallets | null;
  /** Credits a Sluice invoice a devnet wallet just paid (as /v1/devnet/pay does). */
  afterWalletPaid: (paymentHash: string) => Promise<void>;
  topUpExpiryS: number;
  /** Subscriptions' payer tokens (spt_...), when the server has subscriptions. */
  subscriptions?: { authenticatePayer(token: string): Promise<{ row: { id: string; appId: string } } | null> } | null;
}

/** Who a bearer key is, for the pages: resolved here because the shared hook does not know subscriptions' payer tokens. */
interface Identity {
  kind: 'admin' | 'app' | 'payer';
  app: { id: string; name: string } | null;
  stream_id: string | null;
  subscription_id: string | null;
}

function secure(reply: FastifyReply, contentType: string): FastifyReply {
  return reply
    .header('content-type', contentType)
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cache-control', 'no-cache');
}

export function registerDashboardRoutes(http: SluiceFastify, deps: DashboardDeps): void {
  const webDir = dashboardWebDir();
  const hidden = { config: { auth: 'none' as const }, schema: { hide: true } };
  const html = 'text/html; charset=utf-8';

  http.get('/dashboard', hidden, async (_request, reply) => reply.redirect('/dashboard/'));
  http.get('/dashboard/', hidden, async (_request, reply) => secure(reply, html).send(MERCHANT_HTML));
  http.get('/me', hidden, async (_request, reply) => reply.redirect('/me/'));
  http.get('/me/', hidden, async (_request, reply) => secure(reply, html).send(CUSTOMER_HTML));
  http.get('/dashboard/assets/style.css', hidden, async (_request, reply) => secure(reply, 'text/css; charset=utf-8').send(STYLE_CSS));
  http.get('/dashboard/assets/icon.svg', hidden, async (_request, reply) => secure(reply, 'image/svg+xml').send(ICON_SVG));
  http.get('/dashboard/assets/:file', { ...hidden, schema: { hide: true, params: Type.Object({ file: Type.String({ maxLength: 64 }) }) } }, async (request, reply) => {
    const name = request.params.file;
    if (!ASSET_FILE.test(name)) return reply.code(404).send(errorBody('not_found', `no file ${name}`));
    let body: Buffer;
    try {
      body = await fs.promises.readFile(path.join(webDir, name));
    } catch {
      return reply.code(404).send(errorBody('not_found', `no file ${name} (is the dashboard built? npm run build)`));
    }
    return secure(reply, 'text/javascript; charset=utf-8').send(body);
  });
  http.get('/dashboard/qr.svg', {
    ...hidden,
    schema: { hide: true, querystring: Type.Object({ data: Type.String({ minLength: 1, maxLength: 2000 }) }) },
  }, async (request, reply) => secure(reply, 'image/svg+xml; charset=utf-8').send(qrSvg(request.query.data)));

  const identify = async (request: FastifyRequest): Promise<Identity> => {
    const key = requireBearerKey(request);
    const appOf = async (appId: string) => {
      const app = await deps.apps.getApp(appId);
      return app ? { id: app.id, name: app.name } : null;
    };
    if (key.startsWith(SUBSCRIPTION_TOKEN_PREFIX) && deps.subscriptions) {
      const subscription = await deps.subscriptions.authenticatePayer(key);
      if (!subscription) throw new ApiError('invalid_api_key', 'the payer token is unknown');
      return { kind: 'payer', app: await appOf(subscription.row.appId), stream_id: null, subscription_id: subscription.row.id };
    }
    if (key.startsWith(PAYER_TOKEN_PREFIX)) {
      const stream = await deps.streams.authenticatePayer(key);
      if (!stream) throw new ApiError('invalid_api_key', 'the payer token is unknown');
      return { kind: 'payer', app: await appOf(stream.appId), stream_id: stream.id, subscription_id: null };
    }
    const result = await deps.apps.authenticate(key);
    if (!result.ok) throw new ApiError('invalid_api_key');
    const principal = result.principal;
    if (principal.kind === 'app') return { kind: 'app', app: { id: principal.app.id, name: principal.app.name }, stream_id: null, subscription_id: null };
    return { kind: 'admin', app: null, stream_id: null, subscription_id: null };
  };

  // auth 'none' for the shared hook: these routes resolve the key themselves (identify).
  http.get('/dashboard/api/session', {
    config: { auth: 'none' },
    schema: {
      summary: 'Who the bearer key is (admin, app, or the payer of a stream or subscription) and, on the devnet, its wallets',
      tags: ['dashboard'],
      security: [{ bearer: [] }],
      response: {
        200: Type.Object({
          kind: Type.Union([Type.Literal('admin'), Type.Literal('app'), Type.Literal('payer')]),
          devnet: Type.Boolean(),
          app: Type.Union([Type.Object({ id: Type.String(), name: Type.String() }), Type.Null()]),
          stream_id: Type.Union([Type.String(), Type.Null()]),
          subscription_id: Type.Union([Type.String(), Type.Null()]),
          devnet_wallets: Type.Array(Type.Object({ name: Type.String(), pubkey: Type.String(), balance_msat: Type.String() })),
        }),
        ...errorResponses(401),
      },
    },
  }, async (request) => ({ ...(await identify(request)), devnet: deps.wallets !== null, devnet_wallets: deps.wallets ? devnetWalletsJson(deps.wallets) : [] }));

  http.post('/dashboard/api/devnet/pay', {
    config: { auth: 'none' },
    schema: {
      summary: 'A devnet wallet pays an invoice, for any key the dashboards know, subscription payer tokens included (fake money)',
      tags: ['dashboard'],
      security: [{ bearer: [] }],
      body: Type.Object({ payment_request: Type.String({ maxLength: 8192 }), wallet: Type.Optional(Type.String({ maxLength: 32 })) }, { additionalProperties: false }),
      response: {
        200: Type.Object({ payment_hash: Type.String(), amount_msat: Type.String(), fee_msat: Type.String(), wallet: Type.String() }),
        ...errorResponses(400, 401, 404, 409),
      },
    },
  }, async (request) => {
    await identify(request);
    const wallet = devnetWallet(deps.wallets, request.body.wallet);
    // The same payment and error codes as /v1/devnet/pay; credited before answering, so the page's next read shows the money.
    const paid = await payFromDevnetWallet(wallet.backend, deps.afterWalletPaid, { paymentRequest: request.body.payment_request });
    return { payment_hash: paid.paymentHash, amount_msat: paid.amountMsat.toString(), fee_msat: paid.feeMsat.toString(), wallet: wallet.name };
  });

  http.post('/dashboard/api/top-up', {
    config: { auth: 'any' },
    schema: {
      summary: "A payer's own top-up invoice for its stream, of the amount it chooses (payer token)",
      tags: ['dashboard'],
      body: Type.Object({ amount_msat: AmountSchema, idempotency_key: Type.Optional(IdempotencyKeySchema) }, { additionalProperties: false }),
      response: { 201: InvoiceSchema, 200: InvoiceSchema, ...errorResponses(400, 401, 403, 404, 409, 503) },
    },
  }, async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind !== 'payer') throw new ApiError('forbidden', 'only the payer may do this (use the payer token)');
    const amountMsat = parseAmount(request.body.amount_msat, 'amount_msat');
    if (amountMsat > PAYER_TOP_UP_MAX_MSAT) throw new ApiError('invalid_amount', `amount_msat must be at most ${PAYER_TOP_UP_MAX_MSAT}`);
    const stream = await deps.streams.get(principal.streamId, null);
    if (!stream) throw new ApiError('stream_not_found');
    if (stream.status !== 'open') throw new ApiError('stream_closed');
    const key = parseIdempotencyKey(request.body.idempotency_key);
    const created = await deps.invoices.createInvoice(stream.appId, {
      amountMsat,
      description: `Top-up for stream ${stream.id}`,
      expiryS: deps.topUpExpiryS,
      // Scoped to the stream, so two payers' keys never meet.
      idempotencyKey: key === null ? null : `dash:${stream.id}:${key}`,
      // The stream's own account: the stream service sees the payment as funding.
      creditAccountId: streamAccountId(stream.id),
    });
    if (!created.ok) throw new ApiError(INVOICE_ERRORS[created.error], created.detail);
    return reply.code(created.replayed ? 200 : 201).send(invoiceJson(created.invoice));
  });
}
