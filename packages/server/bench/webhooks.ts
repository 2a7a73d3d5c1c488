/**
 * Webhooks benchmark (issue 5 §5): signed deliveries per second to a local receiver.
 *
 *   npx tsx packages/server/bench/webhooks.ts [--events 5000] [--json out.json]
 *
 * What counts as a delivery: a POST of a signed event (HMAC-SHA256 headers) that the
 * receiver answered 2xx AND whose outcome Sluice then committed to its store (status
 * delivered, attempt logged); the run ends when the store counts every delivery as
 * delivered. Events are written first (each in its own transaction with its fan-out, as
 * the services' listeners do; that rate is reported too), then the dispatcher is started
 * and timed until the queue is empty.
 *
 * Processes: the outbox (SQLite in a fresh temp dir, WAL, synchronous=FULL; or
 * PostgreSQL when SLUICE_BENCH_DATABASE_URL or the test database answers) and its
 * dispatcher run in this process; the receiver, a bare node:http server answering 204, runs
 * as its own process, so on a 2-core machine each side has about one core. Loopback HTTP
 * with keep-alive. Settings: SLUICE_WEBHOOK_CONCURRENCY 64 and ENDPOINT_CONCURRENCY as in
 * the rows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import postgres from 'postgres';
import { systemClock } from '../src/clock.js';
import { connectPostgres } from '../src/db/postgres.js';
import { openSqlite } from '../src/db/sqlite.js';
import { createWebhookService, DEFAULT_WEBHOOK_SETTINGS } from '../src/webhooks/service.js';
import { createPostgresWebhookStore, createSqliteWebhookStore, type WebhookStore } from '../src/webhooks/store.js';

export interface WebhookBenchRow {
  store: 'sqlite' | 'postgres';
  endpoints: number;
  endpointConcurrency: number;
  deliveries: number;
  /** Events written per second (one transaction each, fan-out included). */
  eventsPerSecond: number;
  seconds: number;
  deliveriesPerSecond: number;
}

const RECEIVER = `
const http = require('node:http');
let count = 0;
const server = http.createServer((request, response) => {
  request.on('data', () => {});
  request.on('end', () => { count += 1; response.writeHead(204); response.end(); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
process.on('message', () => process.send({ count }));
`;

async function startReceiver(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => resolve((JSON.parse(chunk.toString()) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  return { child, port };
}

const PAYLOAD = { payment_hash: 'ab'.repeat(32), amount_msat: '250000', amount_paid_msat: '250000', description: 'bench', status: 'paid' };

async function openStore(kind: 'sqlite' | 'postgres'): Promise<{ store: WebhookStore; meta: Map<string, string>; close(): Promise<void> } | null> {
  const meta = new Map<string, string>();
  if (kind === 'sqlite') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-webhooks-'));
    const db = openSqlite({ path: path.join(dir, 'bench.sqlite') });
    return { store: createSqliteWebhookStore(db), meta, close: async () => { db.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
  }
  const adminUrl = process.env.SLUICE_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const admin = postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });
  const name = `sluice_bench_webhooks_${process.pid}`;
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch {
    await admin.end();
    return null;
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = connectPostgres({ url: url.toString() });
  return {
    store: await createPostgresWebhookStore(sql),
    meta,
    async close() {
      await sql.end({ timeout: 5 });
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

async function runRow(kind: 'sqlite' | 'postgres', events: number, endpoints: number, endpointConcurrency: number, port: number): Promise<WebhookBenchRow | null> {
  const opened = await openStore(kind);
  if (!opened) return null;
  const { store, meta } = opened;
  const webhooks = createWebhookService({
    store,
    meta: { getMeta: async (key) => meta.get(key) ?? null, setMeta: async (key, value) => void meta.set(key, value) },
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    settings: { ...DEFAULT_WEBHOOK_SETTINGS, allowPrivateAddresses: true, concurrency: 64, endpointConcurrency, pollIntervalMs: 50 },
  });
  const appId = 'app_bench';
  for (let i = 0; i < endpoints; i += 1) {
    const created = await webhooks.createEndpoint(appId, { url: `http://127.0.0.1:${port}/hook/${i}`, eventTypes: ['*'] });
    if (!created.ok) throw new Error(created.error);
  }
  const writeStarted = process.hrtime.bigint();
  for (let i = 0; i < events; i += 1) await webhooks.emit(appId, 'invoice.paid', { ...PAYLOAD, n: i });
  const writeSeconds = Number(process.hrtime.bigint() - writeStarted) / 1e9;
  const deliveries = events * endpoints;

  const started = process.hrtime.bigint();
  await webhooks.start();
  for (;;) {
    if ((await store.countDeliveries('delivered')) >= deliveries) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await webhooks.stop();
  const failed = await store.countDeliveries('failed');
  if (failed > 0) throw new Error(`${failed} deliveries failed`);
  await opened.close();
  return { store: kind, endpoints, endpointConcurrency, deliveries, eventsPerSecond: events / writeSeconds, seconds, deliveriesPerSecond: deliveries / seconds };
}

export async function runWebhooksBenchmark(options: { events?: number; stores?: ('sqlite' | 'postgres')[] } = {}): Promise<WebhookBenchRow[]> {
  const events = options.events ?? 5000;
  const receiver = await startReceiver();
  const rows: WebhookBenchRow[] = [];
  try {
    for (const kind of options.stores ?? ['sqlite', 'postgres']) {
      for (const [endpoints, concurrency] of [[1, 4], [1, 16], [4, 16]] as const) {
        const row = await runRow(kind, Math.ceil(events / endpoints), endpoints, concurrency, receiver.port);
        if (row) rows.push(row);
      }
    }
  } finally {
    receiver.child.kill();
  }
  return rows;
}

export function webhooksMarkdown(rows: WebhookBenchRow[]): string {
  const lines = [
    '| store | endpoints | attempts in flight per endpoint | deliveries | events written/s | seconds | deliveries/s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((row) => `| ${row.store} | ${row.endpoints} | ${row.endpointConcurrency} | ${row.deliveries} | ${Math.round(row.eventsPerSecond)} | ${row.seconds.toFixed(2)} | ${Math.round(row.deliveriesPerSecond)} |`),
  ];
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const index = args.indexOf(name);
    return index === -1 ? undefined : args[index + 1];
  };
  const rows = await runWebhooksBenchmark({ events: Number(flag('--events') ?? '5000') });
  console.log(webhooksMarkdown(rows));
  const json = flag('--json');
  if (json) fs.writeFileSync(json, JSON.stringify(rows, null, 2));
}
