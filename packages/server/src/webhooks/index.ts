/** The webhooks module: signed events from a durable outbox (see service.ts). */
export * from './model.js';
export { createWebhookService, DEFAULT_WEBHOOK_SETTINGS, type WebhookService, type WebhookSettings, type PreparedEvent, type WebhookEmitter, type EmitOptions } from './service.js';
export { createPostgresWebhookStore, createSqliteWebhookStore, runPostgresStatements, runSqliteStatements, type WebhookStore } from './store.js';
export { registerWebhookRoutes } from './routes.js';
export { observeStreamCloses } from './hooks.js';
export { signatureHeader, verifySignature } from './signing.js';
