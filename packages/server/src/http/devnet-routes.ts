/**
 * /v1/devnet/*: the devnet's wallets, to pay Sluice invoices and to issue invoices that
 * Sluice pays out to. FAKE MONEY: these routes exist only when SLUICE_LIGHTNING=devnet.
 */
import { Type } from 'typebox';
import { ApiError } from '../errors/codes.js';
import type { LightningBackend, PaymentOutcome } from '../lightning/backend.js';
import { AmountSchema, errorResponses, parseAmount } from './wire.js';
import type { SluiceFastify } from './server.js';
import { msat, type Msat } from '../money/msat.js';

export interface DevnetWallets {
  names(): string[];
  backendFor(name: string): LightningBackend;
  balanceMsat(name: string): bigint;
  pubkey(name: string): string;
}

export const DEFAULT_DEVNET_WALLET = 'alice';
/** Devnet nodes that are not wallets: Sluice's own node and the routing hub. */
const NOT_WALLETS = new Set(['sluice', 'hub']);

/** The wallets a person may use: the devnet's nodes but Sluice's own and the hub. */
export function devnetWalletNames(wallets: DevnetWallets): string[] {
  return wallets.names().filter((name) => !NOT_WALLETS.has(name));
}

/** The wallets and their balances, as /v1/devnet/wallets and the dashboard show them. */
export function devnetWalletsJson(wallets: DevnetWallets): { name: string; pubkey: string; balance_msat: string }[] {
  return devnetWalletNames(wallets).map((name) => ({ name, pubkey: wallets.pubkey(name), balance_msat: wallets.balanceMsat(name).toString() }));
}

/**
 * The named wallet (default alice) and the name it goes by, which an answer repeats;
 * devnet_only off the devnet, invalid_request for a name that is not a wallet.
 */
export function devnetWallet(wallets: DevnetWallets | null, requested: string | undefined): { name: string; backend: LightningBackend } {
  if (!wallets) throw new ApiError('devnet_only');
  const name = requested ?? DEFAULT_DEVNET_WALLET;
  const names = devnetWalletNames(wallets);
  if (!names.includes(name)) {
    throw new ApiError('invalid_request', `wallet must be one of ${names.join(', ')}`);
  }
  return { name, backend: wallets.backendFor(name) };
}

/**
 * A devnet wallet pays an invoice (FAKE MONEY), for /v1/devnet/pay and the dashboard's pay
 * route, so both refuse a bad invoice with the same code: invoice_invalid,
 * invoice_already_paid, invoice_expired, else devnet_payment_failed. `afterWalletPaid`
 * credits Sluice's invoice before this returns, so a caller that pays and then reads its
 * balance sees the money (the watcher would credit it a moment later anyway).
 */
export async function payFromDevnetWallet(
  wallet: LightningBackend,
  afterWalletPaid: (paymentHash: string) => Promise<void>,
  request: { paymentRequest: string; amountMsat?: Msat },
): Promise<Extract<PaymentOutcome, { status: 'succeeded' }>> {
  const outcome = await wallet.payInvoice({
    paymentRequest: request.paymentRequest.trim(),
    ...(request.amountMsat === undefined ? {} : { amountMsat: request.amountMsat }),
    feeLimitMsat: msat(1_000_000_000n),
    timeoutS: 60,
  });
  if (outcome.status !== 'succeeded') {
    const detail = outcome.status === 'failed' ? `${outcome.reason}: ${outcome.detail}` : outcome.detail;
    if (outcome.status === 'failed' && outcome.reason === 'incorrect_payment_details' && /decode|invalid|bech32|checksum/i.test(outcome.detail)) {
      throw new ApiError('invoice_invalid', detail);
    }
    if (outcome.status === 'failed' && outcome.reason === 'already_paid') throw new ApiError('invoice_already_paid', detail);
    if (outcome.status === 'failed' && outcome.reason === 'invoice_expired') throw new ApiError('invoice_expired', detail);
    throw new ApiError('devnet_payment_failed', detail);
  }
  await afterWalletPaid(outcome.paymentHash);
  return outcome;
}

export function registerDevnetRoutes(
  app: SluiceFastify,
  deps: {
    wallets: DevnetWallets | null;
    afterWalletPaid: (paymentHash: string) => Promise<void>;
    /** Moves Sluice's clock forward and runs what became due (billing); null: not on this backend. */
    advanceClock?: ((seconds: number) => Promise<{ now: number }>) | null;
  },
): void {
  const WalletField = Type.Optional(Type.String({ maxLength: 32, description: `A devnet wallet name (default ${DEFAULT_DEVNET_WALLET}).` }));

  app.get('/v1/devnet/wallets', {
    config: { auth: 'any' },
    schema: {
      summary: 'Devnet wallets and their balances (fake money)',
      tags: ['devnet'],
      response: { 200: Type.Object({ fake_money: Type.Literal(true), wallets: Type.Array(Type.Object({ name: Type.String(), pubkey: Type.String(), balance_msat: Type.String() })) }), ...errorResponses(401, 404) },
    },
  }, async () => {
    if (!deps.wallets) throw new ApiError('devnet_only');
    return { fake_money: true as const, wallets: devnetWalletsJson(deps.wallets) };
  });

  app.post('/v1/devnet/pay', {
    config: { auth: 'any' },
    schema: {
      summary: 'A devnet wallet pays an invoice (fake money)',
      tags: ['devnet'],
      body: Type.Object({ payment_request: Type.String({ maxLength: 8192 }), wallet: WalletField, amount_msat: Type.Optional(AmountSchema) }, { additionalProperties: false }),
      response: {
        200: Type.Object({ payment_hash: Type.String(), preimage: Type.String(), amount_msat: Type.String(), fee_msat: Type.String(), wallet: Type.String() }),
        ...errorResponses(400, 401, 404, 409),
      },
    },
  }, async (request) => {
    const wallet = devnetWallet(deps.wallets, request.body.wallet);
    const amountMsat = request.body.amount_msat === undefined ? undefined : parseAmount(request.body.amount_msat, 'amount_msat');
    const paid = await payFromDevnetWallet(wallet.backend, deps.afterWalletPaid, {
      paymentRequest: request.body.payment_request,
      ...(amountMsat === undefined ? {} : { amountMsat }),
    });
    return {
      payment_hash: paid.paymentHash,
      preimage: paid.preimage,
      amount_msat: paid.amountMsat.toString(),
      fee_msat: paid.feeMsat.toString(),
      wallet: wallet.name,
    };
  });

  app.post('/v1/devnet/invoices', {
    config: { auth: 'any' },
    schema: {
      summary: 'A devnet wallet issues an invoice, e.g. to test payouts (fake money)',
      tags: ['devnet'],
      body: Type.Object({
        amount_msat: AmountSchema,
        description: Type.Optional(Type.String({ maxLength: 639 })),
        expiry_s: Type.Optional(Type.Integer({ minimum: 60, maximum: 31_536_000 })),
        wallet: WalletField,
      }, { additionalProperties: false }),
      response: {
        201: Type.Object({ payment_hash: Type.String(), payment_request: Type.String(), amount_msat: Type.String(), expires_at: Type.String(), wallet: Type.String() }),
        ...errorResponses(400, 401, 404),
      },
    },
  }, async (request, reply) => {
    const wallet = devnetWallet(deps.wallets, request.body.wallet);
    const created = await wallet.backend.createInvoice({
      amountMsat: parseAmount(request.body.amount_msat, 'amount_msat'),
      description: request.body.description ?? 'devnet invoice (fake money)',
      expiryS: request.body.expiry_s ?? 3600,
    });
    return reply.code(201).send({
      payment_hash: created.paymentHash,
      payment_request: created.paymentRequest,
      amount_msat: created.amountMsat.toString(),
      expires_at: new Date(created.expiresAt).toISOString(),
      wallet: wallet.name,
    });
  });

  app.post('/v1/devnet/clock/advance', {
    config: { auth: 'admin' },
    schema: {
      summary: "Move Sluice's clock forward and bill what became due (devnet only; see docs/subscriptions.md for what moves)",
      tags: ['devnet'],
      body: Type.Object({ seconds: Type.Integer({ minimum: 1, maximum: 315_360_000 }) }, { additionalProperties: false }),
      response: { 200: Type.Object({ now: Type.String(), advanced_s: Type.Integer() }), ...errorResponses(400, 401, 403, 404) },
    },
  }, async (request) => {
    if (!deps.wallets || !deps.advanceClock) throw new ApiError('devnet_only');
    const { now } = await deps.advanceClock(request.body.seconds);
    return { now: new Date(now).toISOString(), advanced_s: request.body.seconds };
  });
}
