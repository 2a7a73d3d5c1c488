/**
 * /v1/paycall/chains: buy a hash-chain token, read it, get the unused part refunded.
 * No API key: the buyer is whoever pays the invoice, and the chain id is unguessable
 * (96 random bits after its creation time). Spending happens on the priced routes themselves (scheme.ts).
 */
import { Type } from 'typebox';
import { ApiError } from '../../errors/codes.js';
import type { SluiceFastify } from '../../http/server.js';
import { errorResponses } from '../../http/wire.js';
import { lightningAddressUrl } from '../../lightning/lnurl.js';
import type { InvoiceView } from '../../invoices/service.js';
import { payment as paymentJson } from './wire.js';
import { chainApiError } from './errors.js';
import { isLinkHex, MAX_CHAIN_STEPS } from './math.js';
import type { ChainView } from './model.js';
import type { ChainService, RefundDestination, RefundProof } from './service.js';

export const unixSeconds = (ms: number): number => Math.floor(ms / 1000);

export const chainJson = (chain: ChainView) => ({
  chain_id: chain.id,
  app_id: chain.appId,
  anchor: chain.anchor,
  steps: chain.steps,
  step_msat: chain.stepMsat.toString(),
  amount_msat: chain.amountMsat.toString(),
  status: chain.status,
  index: chain.index,
  remaining_steps: chain.remainingSteps,
  remaining_msat: chain.remainingMsat.toString(),
  expires_at: unixSeconds(chain.expiresAt),
  invoice_payment_hash: chain.invoiceHash,
});

const invoiceJson = (invoice: InvoiceView) => ({
  payment_request: invoice.paymentRequest,
  payment_hash: invoice.paymentHash,
  expires_at: unixSeconds(invoice.expiresAt),
});

const ChainSchema = Type.Object({
  chain_id: Type.String(),
  app_id: Type.String(),
  anchor: Type.String(),
  steps: Type.Integer(),
  step_msat: Type.String(),
  amount_msat: Type.String(),
  status: Type.String({ description: 'pending | active | exhausted | expired | refunded' }),
  index: Type.Integer({ description: 'Index of the last accepted link (0: none yet).' }),
  remaining_steps: Type.Integer(),
  remaining_msat: Type.String(),
  expires_at: Type.Integer({ description: 'Unix seconds.' }),
  invoice_payment_hash: Type.String(),
});

const LinkSchema = Type.String({ description: '32 bytes, lowercase hex.' });
const ChainParams = Type.Object({ chain_id: Type.String({ maxLength: 80 }) });

export function registerChainRoutes(app: SluiceFastify, deps: { chains: ChainService }): void {
  const { chains } = deps;

  app.post('/v1/paycall/chains', {
    config: { auth: 'none' },
    schema: {
      summary: 'Buy a hash-chain token: steps x the app\'s step price, paid with one invoice',
      tags: ['paycall'],
      body: Type.Object({
        app_id: Type.String({ minLength: 1, maxLength: 80 }),
        anchor: LinkSchema,
        steps: Type.Integer({ minimum: 1, maximum: MAX_CHAIN_STEPS }),
      }, { additionalProperties: false }),
      response: {
        201: Type.Intersect([ChainSchema, Type.Object({ invoice: Type.Object({ payment_request: Type.String(), payment_hash: Type.String(), expires_at: Type.Integer() }) })]),
        ...errorResponses(400, 404, 429, 503),
      },
    },
  }, async (request, reply) => {
    const body = request.body;
    if (!isLinkHex(body.anchor)) throw new ApiError('invalid_request', 'anchor must be 64 lowercase hex digits (w_0)');
    const bought = await chains.purchase({ appId: body.app_id, anchor: body.anchor, steps: body.steps });
    if (!bought.ok) throw chainApiError(bought);
    return reply.code(201).send({ ...chainJson(bought.chain), invoice: invoiceJson(bought.invoice) });
  });

  app.get('/v1/paycall/chains/:chain_id', {
    config: { auth: 'none' },
    schema: { summary: 'A chain\'s status and balance', tags: ['paycall'], params: ChainParams, response: { 200: ChainSchema, ...errorResponses(404) } },
  }, async (request) => {
    const chain = await chains.get(request.params.chain_id);
    if (!chain) throw new ApiError('not_found', 'no chain with this id');
    return chainJson(chain);
  });

  app.post('/v1/paycall/chains/:chain_id/refund', {
    config: { auth: 'none' },
    schema: {
      summary: 'Pay back the unused steps (and any overpayment): prove ownership with the next link (index = current + 1), or with the purchase preimage once every step is spent',
      tags: ['paycall'],
      params: ChainParams,
      body: Type.Object({
        index: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CHAIN_STEPS })),
        link: Type.Optional(LinkSchema),
        preimage: Type.Optional(Type.String({ maxLength: 64, description: "Instead of index and link, once every step is spent: the purchase invoice's preimage (64 hex digits)." })),
        invoice: Type.Optional(Type.String({ maxLength: 8192, description: 'A BOLT 11 invoice for exactly remaining_msat, or with no amount.' })),
        lightning_address: Type.Optional(Type.String({ maxLength: 320 })),
      }, { additionalProperties: false }),
      response: {
        200: Type.Intersect([ChainSchema, Type.Object({ refund: Type.Object({}, { additionalProperties: true }) })]),
        ...errorResponses(400, 401, 402, 404, 409, 503),
      },
    },
  }, async (request) => {
    const body = request.body;
    let proof: RefundProof;
    if (body.preimage !== undefined) {
      if (body.index !== undefined || body.link !== undefined) throw new ApiError('invalid_request', 'send either index and link, or preimage');
      if (!isLinkHex(body.preimage)) throw new ApiError('chain_malformed', 'preimage must be 64 lowercase hex digits');
      proof = { preimage: Buffer.from(body.preimage, 'hex') };
    } else {
      if (body.index === undefined || body.link === undefined) throw new ApiError('invalid_request', 'send index and link (or, for a chain whose every step is spent, preimage)');
      if (!isLinkHex(body.link)) throw new ApiError('chain_malformed', 'link must be 64 lowercase hex digits');
      proof = { index: body.index, link: Buffer.from(body.link, 'hex') };
    }
    if ((body.invoice === undefined) === (body.lightning_address === undefined)) {
      throw new ApiError('invalid_request', 'send exactly one of invoice and lightning_address');
    }
    let destination: RefundDestination;
    if (body.lightning_address !== undefined) {
      if (lightningAddressUrl(body.lightning_address) === null) throw new ApiError('invalid_request', 'lightning_address must look like name@example.com');
      destination = { kind: 'lightning_address', address: body.lightning_address.toLowerCase() };
    } else {
      destination = { kind: 'invoice', paymentRequest: (body.invoice as string).trim() };
    }
    const refunded = await chains.refund(request.params.chain_id, proof, destination);
    if (!refunded.ok) {
      if (refunded.error === 'Unknown') throw new ApiError('not_found', 'no chain with this id');
      throw chainApiError(refunded);
    }
    return {
      ...chainJson(refunded.chain),
      refund: { amount_msat: refunded.amountMsat.toString(), payment: refunded.payment ? paymentJson(refunded.payment) : null },
    };
  });
}
