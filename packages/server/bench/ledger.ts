/**
 * Ledger benchmark: durable transfers per second, one transaction per transfer versus group
 * commit, with 1, 16 and 256 concurrent callers, on SQLite (a file on disk, WAL,
 * synchronous=FULL) and PostgreSQL (the local server, a database of its own,
 * synchronous_commit as configured, printed below).
 *
 *   npx tsx packages/server/bench/ledger.ts [--seconds 3] [--json out.json] [--no-postgres]
 *     [--callers 1,16,256] [--workloads random-keys,no-keys] [--modes per-transfer,group-commit]
 *
 * Workload (what Sluice does most): every caller is one metered stream, a payer account
 * with a prepaid balance paying one of 4 app accounts 1000 msat per event; two workloads:
 * every transfer with its own random idempotency key (a UUID: the worst case for a
 * key-ordered index), and no keys. A caller sends its next transfer only after the
 * previous one was answered, and a transfer is counted only when its promise
 * resolved, which the ledger does after the commit holding it returned (fsync done). After
 * each run the app accounts' credits are checked against the count and the sum of
 * balances against zero, so a run that lost or invented transfers fails loudly.
 *
 * All runs of one store share one database, in the order printed, so later runs meet a
 * bigger idempotency table. "index merges" counts merges of the SQLite idempotency index's
 * recent tier during a run (src/ledger/sqlite/idempotency.ts); their cost is in the rate.
 * A run shorter than the time to fill the recent tier (131072 records) shows no merge, so
 * for the steady state run longer: `--seconds 20 --no-postgres --modes group-commit --callers 256`.
 *
 * BENCH_SQLITE_PRAGMAS="wal_autocheckpoint=10000;cache_size=-65536" applies extra pragmas to the
 * benchmark's SQLite connection, to try settings before proposing them for src/db/sqlite.ts;
 * published numbers are taken without it (the production settings).
 *
 * PostgreSQL: SLUICE_BENCH_DATABASE_URL (default: SLUICE_TEST_DATABASE_URL, then
 * postgres://postgres@127.0.0.1:5432/test) names an admin database; the benchmark creates
 * and drops its own database next to it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { connectPostgres, type PostgresSql } from '../src/db/postgres.js';
import { openSqlite } from '../src/db/sqlite.js';
import { createLedger } from '../src/ledger/group-commit.js';
import { createPostgresLedgerStore, migratePostgresLedger } from '../src/ledger/postgres/store.js';
import { idempotencyIndexFor } from '../src/ledger/sqlite/idempotency.js';
import { createSqliteLedgerStore, migrateSqliteLedger, SERVER_LEDGER_STORE_OPTIONS } from '../src/ledger/sqlite/store.js';
import type { LedgerOp, LedgerStore } from '../src/ledger/store.js';
import type { Msat } from '../src/money/msat.js';
import { quantileOfSorted } from './quantile.js';

export type BenchMode = 'per-transfer' | 'group-commit';
/**
 * `random-keys`: every transfer carries its own random idempotency key (a UUID, as clients
 * send them), the worst case for the key index since consecutive keys land anywhere in it.
 * `no-keys`: transfers without a key.
 */
export type BenchWorkload = 'random-keys' | 'no-keys';

export interface LedgerBenchRow {
  store: 'sqlite' | 'postgres';
  workload: BenchWorkload;
  mode: BenchMode;
  callers: number;
  transfers: number;
  seconds: number;
  transfersPerSecond: number;
  commits: number;
  meanBatch: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
  /** SQLite: merges of the idempotency index's recent tier during the run (their cost is in the rate). */
  indexMerges: number;
}

export interface LedgerBenchReport {
  machine: { cpus: number; node: string };
  settings: Record<string, string>;
  rows: LedgerBenchRow[];
  notes: string[];
}

export interface LedgerBenchOptions {
  secondsPerRun?: number;
  callers?: readonly number[];
  workloads?: readonly BenchWorkload[];
  modes?: readonly BenchMode[];
  postgres?: boolean;
  postgresAdminUrl?: string;
}

const AMOUNT = 1000n as Msat;
const APPS = 4;

interface Backend {
  name: 'sqlite' | 'postgres';
  store: LedgerStore;
  settings: Record<string, string>;
  /** Merges of the idempotency index so far (SQLite), 0 where there is none. */
  merges(): number;
  close(): Promise<void>;
}

async function openSqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const db = openSqlite({ path: join(dir, 'ledger.db') });
  if (process.env.BENCH_SQLITE_PRAGMAS) for (const p of process.env.BENCH_SQLITE_PRAGMAS.split(';')) db.pragma(p);
  migrateSqliteLedger(db);
  const pragma = (name: string) => String(db.pragma(name, { simple: true }));
  return {
    name: 'sqlite',
    store: createSqliteLedgerStore(db, SERVER_LEDGER_STORE_OPTIONS),
    merges: () => idempotencyIndexFor(db).merges,
    settings: {
      'sqlite journal_mode': pragma('journal_mode'),
      'sqlite synchronous': pragma('synchronous') === '2' ? 'FULL' : pragma('synchronous'),
      'sqlite wal_autocheckpoint': pragma('wal_autocheckpoint'),
      'sqlite file': join(dir, 'ledger.db'),
    },
    async close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function openPostgresBackend(adminUrl: string): Promise<Backend | string> {
  const admin = postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });
  const name = `sluice_bench_${randomBytes(5).toString('hex')}`;
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end({ timeout: 1 });
    return `PostgreSQL skipped: ${String(error)}`;
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql: PostgresSql = connectPostgres({ url: url.toString(), maxConnections: 10 });
  await migratePostgresLedger(sql);
  const setting = async (key: string) => String((await sql.unsafe(`SHOW ${key}`))[0]?.[key]);
  const settings = {
    'postgres fsync': await setting('fsync'),
    'postgres synchronous_commit': await setting('synchronous_commit'),
    'postgres pool connections': '10',
  };
  return {
    name: 'postgres',
    store: createPostgresLedgerStore(sql),
    merges: () => 0,
    settings,
    async close() {
      await sql.end({ timeout: 5 });
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end({ timeout: 5 });
    },
  };
}

interface Accounts {
  system: string;
  apps: string[];
  payers: string[];
}

async function createAccounts(store: LedgerStore, run: string, callers: number): Promise<Accounts> {
  const accounts: Accounts = {
    system: `${run}-system`,
    apps: Array.from({ length: APPS }, (_, i) => `${run}-app-${i}`),
    payers: Array.from({ length: callers }, (_, i) => `${run}-payer-${i}`),
  };
  await store.createAccount({ id: accounts.system, ownerId: 'system', limitMsat: null, code: 'lightning' });
  for (const id of accounts.apps) await store.createAccount({ id, ownerId: id, limitMsat: 0n as Msat, code: 'app' });
  for (const id of accounts.payers) await store.createAccount({ id, ownerId: id, limitMsat: 0n as Msat, code: 'payer' });
  const funding: LedgerOp[] = accounts.payers.map((id) => ({
    kind: 'transfer',
    debitAccountId: accounts.system,
    creditAccountId: id,
    amountMsat: (10n ** 15n) as Msat,
    code: 'fund',
  }));
  await store.applyOps(funding);
  return accounts;
}

async function runOne(
  backend: Backend,
  workload: BenchWorkload,
  mode: BenchMode,
  callers: number,
  seconds: number,
): Promise<LedgerBenchRow> {
  const run = randomBytes(4).toString('hex');
  const store = backend.store;
  const accounts = await createAccounts(store, run, callers);
  let commits = 0;
  const ledger = createLedger({ store, maxBatch: 1000, onCommit: () => commits++ });
  const apply =
    mode === 'group-commit'
      ? (op: LedgerOp) => ledger.apply(op)
      : async (op: LedgerOp) => {
          const [result] = await store.applyOps([op]);
          commits++;
          if (!result) throw new Error('no result');
          return result;
        };
  const latencies: number[] = [];
  const mergesBefore = backend.merges();
  let transfers = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    accounts.payers.map(async (payer, stream) => {
      const app = accounts.apps[stream % APPS] as string;
      while (performance.now() < deadline) {
        const begun = performance.now();
        const result = await apply({
          kind: 'transfer',
          debitAccountId: payer,
          creditAccountId: app,
          amountMsat: AMOUNT,
          code: 'charge',
          ...(workload === 'random-keys' ? { idempotencyKey: randomUUID() } : {}),
        });
        if (!result.ok) throw new Error(`transfer refused: ${result.error}`);
        latencies.push(performance.now() - begun);
        transfers++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await ledger.close();
  const indexMerges = backend.merges() - mergesBefore;

  // Honesty checks: every counted transfer is in the ledger, nothing else is.
  let credited = 0n;
  for (const id of accounts.apps) credited += (await store.getAccount(id))?.creditsPostedMsat ?? 0n;
  if (credited !== BigInt(transfers) * AMOUNT) throw new Error(`apps credited ${credited}, expected ${BigInt(transfers) * AMOUNT}`);
  if ((await store.sumOfBalances()) !== 0n) throw new Error('sum of balances is not zero');

  latencies.sort((a, b) => a - b);
  return {
    store: backend.name,
    workload,
    mode,
    callers,
    transfers,
    seconds: Number(elapsed.toFixed(2)),
    transfersPerSecond: Math.round(transfers / elapsed),
    commits,
    meanBatch: Number((transfers / Math.max(commits, 1)).toFixed(1)),
    p50LatencyMs: Number(quantileOfSorted(latencies, 0.5).toFixed(2)),
    p99LatencyMs: Number(quantileOfSorted(latencies, 0.99).toFixed(2)),
    indexMerges,
  };
}

export async function runLedgerBenchmark(options: LedgerBenchOptions = {}): Promise<LedgerBenchReport> {
  const seconds = options.secondsPerRun ?? 3;
  const callerCounts = options.callers ?? [1, 16, 256];
  const workloads = options.workloads ?? ['random-keys', 'no-keys'];
  const modes = options.modes ?? ['per-transfer', 'group-commit'];
  const report: LedgerBenchReport = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    settings: {},
    rows: [],
    notes: [],
  };
  const backends: Backend[] = [await openSqliteBackend()];
  if (options.postgres !== false) {
    const adminUrl =
      options.postgresAdminUrl ??
      process.env.SLUICE_BENCH_DATABASE_URL ??
      process.env.SLUICE_TEST_DATABASE_URL ??
      'postgres://postgres@127.0.0.1:5432/test';
    const pg = await openPostgresBackend(adminUrl);
    if (typeof pg === 'string') report.notes.push(pg);
    else backends.push(pg);
  }
  try {
    for (const backend of backends) {
      Object.assign(report.settings, backend.settings);
      for (const workload of workloads) {
        for (const mode of modes) {
          for (const callers of callerCounts) {
            const row = await runOne(backend, workload, mode, callers, seconds);
            report.rows.push(row);
            process.stderr.write(`${row.store} ${row.workload} ${row.mode} ${row.callers} callers: ${row.transfersPerSecond}/s\n`);
          }
        }
      }
    }
  } finally {
    for (const backend of backends) await backend.close();
  }
  for (const backend of backends) {
    for (const workload of workloads) {
      const rate = (mode: BenchMode, callers: number) =>
        report.rows.find((r) => r.store === backend.name && r.workload === workload && r.mode === mode && r.callers === callers)
          ?.transfersPerSecond;
      const top = Math.max(...callerCounts);
      const group = rate('group-commit', top);
      const single = rate('per-transfer', top);
      if (group !== undefined && single !== undefined) {
        report.notes.push(
          `${backend.name}, ${workload}: group commit at ${top} callers is ${(group / single).toFixed(1)}x one transaction per transfer`,
        );
      }
    }
  }
  return report;
}

export function markdownTable(report: LedgerBenchReport): string {
  const lines = [
    '| store | idempotency keys | mode | callers | transfers/s | transfers | commits | mean batch | p50 ms | p99 ms | index merges |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...report.rows.map(
      (r) =>
        `| ${r.store} | ${r.workload === 'random-keys' ? 'random, one per transfer' : 'none'} | ${r.mode} | ${r.callers} | ${r.transfersPerSecond.toLocaleString('en-US')} | ${r.transfers} | ${r.commits} | ${r.meanBatch} | ${r.p50LatencyMs} | ${r.p99LatencyMs} | ${r.indexMerges} |`,
    ),
  ];
  const settings = Object.entries(report.settings).map(([k, v]) => `- ${k}: ${v}`);
  const notes = report.notes.map((n) => `- ${n}`);
  return [...lines, '', `${report.machine.cpus} CPUs, Node ${report.machine.node}`, ...settings, ...notes].join('\n');
}

function argValue(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const seconds = Number(argValue(args, '--seconds') ?? 3);
  const list = (name: string) => argValue(args, name)?.split(',');
  const report = await runLedgerBenchmark({
    secondsPerRun: seconds,
    postgres: !args.includes('--no-postgres'),
    ...(list('--callers') ? { callers: (list('--callers') as string[]).map(Number) } : {}),
    ...(list('--workloads') ? { workloads: list('--workloads') as BenchWorkload[] } : {}),
    ...(list('--modes') ? { modes: list('--modes') as BenchMode[] } : {}),
  });
  process.stdout.write(`${markdownTable(report)}\n\n\`\`\`json\n${JSON.stringify(report, null, 2)}\n\`\`\`\n`);
  const jsonPath = argValue(args, '--json');
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify(report, null, 2));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
