/**
 * /v1/apps (admin: create, list, revoke apps and their keys) and /v1/balance (an app's
 * own balance).
 */
import { Type } from 'typebox';
import { ApiError } from '../errors/codes.js';
import { appOf, type SluiceFastify } from '../http/server.js';
import { errorResponses, isoTime } from '../http/wire.js';
import type { LedgerStore } from '../ledger/store.js';
import { balanceOf } from '../ledger/store.js';
import type { ApiKeyRow, AppRow } from '../records/model.js';
import type { AppService } from './service.js';

const AppSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const KeySchema = Type.Object({
  id: Type.String(),
  prefix: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const appJson = (app: AppRow) => ({ id: app.id, name: app.name, created_at: isoTime(app.createdAt) as string, revoked_at: isoTime(app.revokedAt) });
const keyJson = (key: ApiKeyRow) => ({ id: key.id, prefix: key.prefix, created_at: isoTime(key.createdAt) as string, revoked_at: isoTime(key.revokedAt) });

const AppIdParams = Type.Object({ app_id: Type.String({ maxLength: 64 }) });

export interface AppRouteDeps {
  apps: AppService;
  ledger: LedgerStore;
  /**
   * Pays the apps what is due to them in sweeps (stream charges, hash-chain spends) before a
   * balance is read, so the balance an app reads holds every charge and call it was answered for.
   */
  settleDue?: (appId: string) => Promise<void>;
}

export function registerAppRoutes(app: SluiceFastify, deps: AppRouteDeps): void {
  app.post('/v1/apps', {
    config: { auth: 'admin' },
    schema: {
      summary: 'Create an app and its first API key (admin)',
      tags: ['apps'],
      body: Type.Optional(Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) }, { additionalProperties: false })),
      response: {
        201: Type.Object({ id: Type.String(), name: Type.String(), api_key: Type.String(), key_id: Type.String(), created_at: Type.String() }),
        ...errorResponses(400, 401, 403),
      },
    },
  }, async (request, reply) => {
    const name = request.body?.name ?? 'app';
    const created = await deps.apps.createApp(name);
    return reply.code(201).send({
      id: created.app.id,
      name: created.app.name,
      api_key: created.apiKey,
      key_id: created.key.id,
      created_at: isoTime(created.app.createdAt) as string,
    });
  });

  app.get('/v1/apps', {
    config: { auth: 'admin' },
    schema: { summary: 'List apps (admin)', tags: ['apps'], response: { 200: Type.Object({ apps: Type.Array(AppSchema) }), ...errorResponses(401, 403) } },
  }, async () => ({ apps: (await deps.apps.listApps()).map(appJson) }));

  app.post('/v1/apps/:app_id/revoke', {
    config: { auth: 'admin' },
    schema: { summary: 'Revoke an app and every key it has (admin)', tags: ['apps'], params: AppIdParams, response: { 200: AppSchema, ...errorResponses(401, 403, 404) } },
  }, async (request) => {
    const { app_id } = request.params;
    if (!(await deps.apps.getApp(app_id))) throw new ApiError('app_not_found');
    await deps.apps.revokeApp(app_id);
    return appJson((await deps.apps.getApp(app_id)) as AppRow);
  });

  app.post('/v1/apps/:app_id/keys', {
    config: { auth: 'admin' },
    schema: {
      summary: 'Add an API key to an app (admin); the key is shown once',
      tags: ['apps'],
      params: AppIdParams,
      response: { 201: Type.Object({ id: Type.String(), api_key: Type.String(), prefix: Type.String(), created_at: Type.String() }), ...errorResponses(401, 403, 404) },
    },
  }, async (request, reply) => {
    const created = await deps.apps.createApiKey(request.params.app_id);
    if (!created) throw new ApiError('app_not_found', 'no active app with this id');
    return reply.code(201).send({ id: created.key.id, api_key: created.apiKey, prefix: created.key.prefix, created_at: isoTime(created.key.createdAt) as string });
  });

  app.get('/v1/apps/:app_id/keys', {
    config: { auth: 'admin' },
    schema: { summary: "List an app's API keys (admin)", tags: ['apps'], params: AppIdParams, response: { 200: Type.Object({ keys: Type.Array(KeySchema) }), ...errorResponses(401, 403, 404) } },
  }, async (request) => {
    if (!(await deps.apps.getApp(request.params.app_id))) throw new ApiError('app_not_found');
    return { keys: (await deps.apps.listApiKeys(request.params.app_id)).map(keyJson) };
  });

  app.post('/v1/apps/:app_id/keys/:key_id/revoke', {
    config: { auth: 'admin' },
    schema: {
      summary: 'Revoke one API key (admin)',
      tags: ['apps'],
      params: Type.Object({ app_id: Type.String({ maxLength: 64 }), key_id: Type.String({ maxLength: 64 }) }),
      response: { 200: KeySchema, ...errorResponses(401, 403, 404) },
    },
  }, async (request) => {
    const { app_id, key_id } = request.params;
    await deps.apps.revokeApiKey(app_id, key_id);
    const key = (await deps.apps.listApiKeys(app_id)).find((candidate) => candidate.id === key_id);
    if (!key) throw new ApiError('api_key_not_found');
    return keyJson(key);
  });

  app.get('/v1/balance', {
    config: { auth: 'app' },
    schema: {
      summary: "The calling app's balance",
      tags: ['balance'],
      response: {
        200: Type.Object({
          balance_msat: Type.String({ description: 'Posted balance, with every stream charge and hash-chain call answered so far (their sweeps are made first).' }),
          held_msat: Type.String({ description: 'Held by payments in flight.' }),
          available_msat: Type.String({ description: 'What new payments may use: balance minus holds.' }),
        }),
        ...errorResponses(401, 403),
      },
    },
  }, async (request) => {
    await deps.settleDue?.(appOf(request).id);
    const account = await deps.ledger.getAccount(appOf(request).accountId);
    if (!account) throw new Error(`the account of app ${appOf(request).id} is missing`);
    const balance = balanceOf(account);
    return {
      balance_msat: balance.toString(),
      held_msat: account.debitsPendingMsat.toString(),
      available_msat: (balance - account.debitsPendingMsat).toString(),
    };
  });
}
