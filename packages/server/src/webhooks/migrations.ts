/** Tables of the webhook outbox (module "webhooks"), both dialects. Times are unix ms. */
import type { ModuleMigrations } from '../db/migrate.js';

const tables = (int8: string) => `
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  url TEXT NOT NULL,
  description TEXT NOT NULL,
  event_types TEXT NOT NULL,
  secret TEXT NOT NULL,
  previous_secret TEXT,
  previous_secret_expires_at ${int8},
  status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
  disabled_reason TEXT CHECK (disabled_reason IS NULL OR disabled_reason IN ('manual', 'failing')),
  consecutive_failures INTEGER NOT NULL CHECK (consecutive_failures >= 0),
  failing_since ${int8},
  created_at ${int8} NOT NULL,
  updated_at ${int8} NOT NULL,
  deleted_at ${int8}
);
CREATE INDEX webhook_endpoints_app ON webhook_endpoints(app_id, created_at);
-- One row per type an endpoint asked for ('*' for all), so the fan-out is one INSERT ... SELECT.
CREATE TABLE webhook_endpoint_types (
  endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
  event_type TEXT NOT NULL,
  PRIMARY KEY (endpoint_id, event_type)
);
CREATE TABLE webhook_events (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  type TEXT NOT NULL,
  source_key TEXT UNIQUE,
  payload TEXT NOT NULL,
  created_at ${int8} NOT NULL
);
CREATE INDEX webhook_events_app ON webhook_events(app_id, created_at);
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL REFERENCES webhook_events(id),
  endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
  app_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
  attempts INTEGER NOT NULL CHECK (attempts >= 0),
  next_attempt_at ${int8} NOT NULL,
  deadline_at ${int8} NOT NULL,
  leased_until ${int8},
  last_status_code INTEGER,
  last_error TEXT,
  manual INTEGER NOT NULL CHECK (manual IN (0, 1)),
  created_at ${int8} NOT NULL,
  updated_at ${int8} NOT NULL,
  delivered_at ${int8}
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries(event_id);
CREATE TABLE webhook_attempts (
  delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id),
  attempt INTEGER NOT NULL CHECK (attempt >= 1),
  at ${int8} NOT NULL,
  duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
  status_code INTEGER,
  error TEXT,
  response_excerpt TEXT,
  PRIMARY KEY (delivery_id, attempt)
);
`;

/** What retention prunes: finished deliveries by age, events by age. */
const retentionIndexes = `
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries(updated_at) WHERE status <> 'pending';
CREATE INDEX webhook_events_created ON webhook_events(created_at);
`;

export const sqliteWebhookMigrations: ModuleMigrations = {
  module: 'webhooks',
  migrations: [
    { version: 1, name: 'webhook endpoints, events, deliveries, attempts', sql: tables('INTEGER') },
    { version: 2, name: 'indexes for retention', sql: retentionIndexes },
  ],
};

export const postgresWebhookMigrations: ModuleMigrations = {
  module: 'webhooks',
  migrations: [
    { version: 1, name: 'webhook endpoints, events, deliveries, attempts', sql: tables('BIGINT') },
    { version: 2, name: 'indexes for retention', sql: retentionIndexes },
  ],
};
