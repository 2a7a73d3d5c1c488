/** The subscriptions module: per-second plans with a prepaid buffer, grace and cancel at any time (docs/subscriptions.md). */
export * from './model.js';
export { createSubscriptionService, subscriptionAccountId, SUBSCRIPTION_TOKEN_PREFIX, type SubscriptionService, type SubscriptionView } from './service.js';
export { createPostgresSubscriptionStore, createSqliteSubscriptionStore, type SubscriptionStore } from './store.js';
export { registerSubscriptionRoutes } from './routes.js';
export { seedDemoBusinesses, DEMO_BUSINESSES } from './demo.js';
export { checkPlan, DEFAULT_MIN_SETTLEMENT_MSAT } from './plans.js';
