/**
 * A real Sluice (SQLite in a temp dir, devnet, or PostgreSQL when asked) for API tests,
 * driven through Fastify's inject (no sockets) or over a socket after listen().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSluice, type Sluice } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import type { StreamSocketLimits } from '../../src/streams/ws.js';

export const ADMIN_KEY = 'sa_test-admin-key-0123456789';

export interface TestSluice {
  sluice: Sluice;
  dataDir: string;
  /** JSON request through inject; returns status and parsed body. */
  call(method: string, url: string, options?: { key?: string | null; body?: unknown; rawBody?: string; contentType?: string }): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  createApp(name?: string): Promise<{ id: string; apiKey: string }>;
  close(): Promise<void>;
}

export async function startTestSluice(options: { env?: Record<string, string>; clock?: Clock; dataDir?: string; streamSocketLimits?: Partial<StreamSocketLimits>; sdkDir?: string } = {}): Promise<TestSluice> {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-test-'));
  const loaded = loadConfig({
    SLUICE_DATA_DIR: dataDir,
    SLUICE_ADMIN_KEY: ADMIN_KEY,
    SLUICE_DEVNET_SEED: 'sluice-tests',
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const sluice = await createSluice(loaded.config, {
    logger: createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent'),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.streamSocketLimits ? { streamSocketLimits: options.streamSocketLimits } : {}),
    ...(options.sdkDir ? { sdkDir: options.sdkDir } : {}),
  });
  const call: TestSluice['call'] = async (method, url, callOptions = {}) => {
    const key = callOptions.key === undefined ? ADMIN_KEY : callOptions.key;
    const headers: Record<string, string> = {};
    if (key !== null) headers.authorization = `Bearer ${key}`;
    let payload: string | undefined;
    if (callOptions.rawBody !== undefined) payload = callOptions.rawBody;
    else if (callOptions.body !== undefined) payload = JSON.stringify(callOptions.body);
    if (payload !== undefined) headers['content-type'] = callOptions.contentType ?? 'application/json';
    const response = await sluice.http.inject({ method: method as 'GET', url, headers, ...(payload === undefined ? {} : { payload }) });
    let body: unknown = response.body;
    try {
      body = JSON.parse(response.body);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.statusCode, body, headers: response.headers };
  };
  return {
    sluice,
    dataDir,
    call,
    async createApp(name = 'test app') {
      const created = await call('POST', '/v1/apps', { body: { name } });
      if (created.status !== 201) throw new Error(`could not create app: ${JSON.stringify(created.body)}`);
      return { id: created.body.id, apiKey: created.body.api_key };
    },
    close: () => sluice.close(),
  };
}
