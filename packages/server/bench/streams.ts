/**
 * Streams benchmark (issue 3): durable charges acknowledged per second over loopback
 * WebSocket, ack latency at a fixed offered load, Lightning payments per million charges,
 * and, in the same run, the comparison points: a bare `ws` echo server, the same echo replying
 * only after an fdatasync (latency only), and ilp-protocol-stream between two in-process
 * plugins. Prints a markdown section.
 *
 *   npm run build && npx tsx packages/server/bench/streams.ts [--seconds 5] [--json out.json]
 *     [--phases throughput,latency,lightning,ilp] [--streams 100] [--targets sluice]
 *
 * --streams and --targets (echo, durable-echo, sluice) narrow the throughput and latency runs
 * (for A/B comparisons while working on the charge path; the recorded tables come from a full
 * run). The durable echo (streams-echo.ts --durable) runs in the latency phase only.
 *
 * BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the Sluice process;
 * BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test runs Sluice on PostgreSQL (a database
 * made for the run and dropped after) instead of SQLite.
 * BENCH_SERVER_OUTPUT=FILE appends what each server process printed to FILE when it stops
 * (with BENCH_SERVER_NODE_ARGS=--trace-gc, its collections). TMPDIR=/dev/shm puts the data
 * dir on tmpfs, where a sync costs nothing: what is left of the latency is Sluice's own
 * (never a figure to record: nothing is durable there). BENCH_LATENCY_TRACE=PREFIX writes each
 * open-loop run's acks to PREFIX.<target>.<connections>: a `# start <epoch ms>` line, then one
 * "<scheduled ms since start> <latency ms>" line per ack, to see when the slow ones came
 * (bench/latency-trace.ts lists the slow windows and folds them over a period).
 *
 * Processes: Sluice runs as its own process, as `npm start` runs it (`node <SERVER_NODE_FLAGS>
 * packages/server/dist/cli/main.js start`, SQLite in a fresh temp dir: WAL, synchronous=FULL; devnet Lightning), the echo server as
 * another (streams-echo.ts), and the load generator (streams-load.ts, raw `ws` clients, not
 * the SDK) in this process, so on a 2-core machine the server and the client each have
 * about one core. `npm run bench` runs this process with `--initial-old-space-size=256`, as
 * the server runs (ADR 0026): without it the load generator's own Mark-Compacts, every ~3 s
 * under the open loop, held its sends and reads for long enough to show as 150-300 acks over
 * 10 ms in every latency run, Sluice's and the echo servers' alike. Run this file directly as
 * `node --initial-old-space-size=256 --import tsx packages/server/bench/streams.ts` to measure
 * the same way. ILP STREAM runs both of its ends in this process (streams-ilp.ts) after
 * Sluice has stopped.
 *
 * What counts as a charge: an `ok` reply with `replayed: false` to a `charge` with a ref
 * never used before; Sluice sends it only after the transaction holding the charge's row
 * committed and the WAL was synced (group commit, fdatasync). Throughput streams are postpaid with a debt limit far
 * above what a run can charge (`maximum_msat` 10^15, no invoices), so no charge is refused
 * for money; every refusal is counted by code anyway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { SERVER_NODE_FLAGS } from '../src/cli/node-flags.js';
import { runIlpBenchmark, MAX_PACKET_UNITS, type IlpBenchRow } from './streams-ilp.js';
import { runLightningBenchmark, type GameTerms, type LightningRow } from './streams-lightning.js';
import { closedLoop, createRequester, openConnection, openLoop, type LoadConnection, type LoadResult, type Target } from './streams-load.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../dist/cli/main.js');
const ECHO = path.resolve(here, 'streams-echo.ts');
const ADMIN_KEY = `sa_bench-${randomBytes(12).toString('hex')}`;

export const STREAM_COUNTS = [1, 100, 1000] as const;
/** One connection per this many streams: a game server process holding up to 100 players. */
export const STREAMS_PER_CONNECTION = 100;
/** Requests in flight per connection in the closed loop: the SDK's default maxInFlight. */
export const WINDOW = 256;
export const OFFERED_PER_S = 10_000;
export const ILP_PACKETS = 10_000;
export const ILP_CONNECTIONS = [1, 100] as const;
/** Terms of the worked example in docs/protocol.md, and of the demo game (src/demo/routes.ts). */
export const GAME_TERMS: GameTerms[] = [
  { name: 'docs/protocol.md example', priceMsat: 2000n, settleThresholdMsat: 20_000n, settleToMsat: 100_000n },
  { name: 'demo game', priceMsat: 1500n, settleThresholdMsat: 20_000n, settleToMsat: 60_000n },
];

export interface ThroughputRow {
  target: Target;
  streams: number;
  connections: number;
  result: LoadResult;
  serverCpuPercent: number;
}

export interface StreamsReport {
  secondsPerRun: number;
  dataDirFs: string;
  /** Where Sluice kept its rows: SQLite in the data dir, or a PostgreSQL database (BENCH_POSTGRES_URL). */
  database: 'sqlite' | 'postgres';
  throughput: ThroughputRow[];
  latency: ThroughputRow[];
  lightning: LightningRow[];
  ilp: IlpBenchRow[];
}

// ---- child processes ----

interface Child {
  child: ChildProcess;
  output(): string;
  /** utime + stime in seconds, from /proc. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

function track(child: ChildProcess): Child {
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => output,
    cpuSeconds() {
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (CLK_TCK 100)
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      if (process.env.BENCH_SERVER_OUTPUT) fs.appendFileSync(process.env.BENCH_SERVER_OUTPUT, output);
    },
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** BENCH_SERVER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server alone. */
function serverNodeArgs(): string[] {
  return (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
}

/**
 * BENCH_POSTGRES_URL (an admin database, e.g. postgres://postgres@127.0.0.1:5432/test): Sluice
 * runs on a database made there for the run, and dropped after it, instead of SQLite. The
 * server CPU columns then count Sluice's process only, not PostgreSQL's.
 */
async function benchDatabase(): Promise<{ url: string; drop(): Promise<void> } | null> {
  const adminUrl = process.env.BENCH_POSTGRES_URL;
  if (!adminUrl) return null;
  const name = `sluice_bench_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await dropper.end();
      }
    },
  };
}

async function startSluice(dataDir: string): Promise<Child & { url: string }> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const port = await freePort();
  const database = await benchDatabase();
  const tracked = track(spawn(process.execPath, [...SERVER_NODE_FLAGS, ...serverNodeArgs(), CLI, 'start'], {
    env: {
      ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn',
      SLUICE_DATA_DIR: dataDir, SLUICE_ADMIN_KEY: ADMIN_KEY, SLUICE_DEVNET_SEED: 'sluice-bench', SLUICE_LIGHTNING: 'devnet',
      ...(database ? { SLUICE_DATABASE_URL: database.url } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const child: Child = { ...tracked, stop: async () => {
    await tracked.stop();
    await database?.drop();
  } };
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.child.exitCode !== null) {
      await child.stop();
      throw new Error(`sluice exited before serving:\n${child.output()}`);
    }
    try {
      if ((await fetch(`${url}/v1/health`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) {
      await child.stop();
      throw new Error(`sluice did not serve /v1/health within 30 s:\n${child.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { ...child, url };
}

/** The bare echo, or with durableDir the echo that replies only after an fdatasync (streams-echo.ts). */
async function startEcho(durableDir?: string): Promise<Child & { port: number }> {
  const args = durableDir === undefined ? [] : ['--durable', durableDir];
  const child = track(spawn(process.execPath, ['--import', 'tsx', ECHO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const until = Date.now() + 30_000;
  for (;;) {
    const match = /port (\d+)/.exec(child.output());
    if (match) return { ...child, port: Number(match[1]) };
    if (child.child.exitCode !== null || Date.now() > until) throw new Error(`the echo server did not start:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function http(url: string, method: string, key: string, body?: unknown): Promise<any> {
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${text}`);
  return JSON.parse(text);
}

function filesystemOf(dir: string): string {
  const type = fs.statfsSync(dir).type;
  const names: Record<number, string> = { 0xef53: 'ext4', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs (no real fsync!)', 0x794c7630: 'overlayfs' };
  return names[type] ?? `filesystem type 0x${type.toString(16)}`;
}

// ---- the runs ----

async function measure(server: Child, run: () => Promise<LoadResult>): Promise<{ result: LoadResult; serverCpuPercent: number }> {
  // Server CPU over the whole run (warm-up included): close enough for "which side is busy".
  const before = server.cpuSeconds();
  const started = Date.now();
  const result = await run();
  const serverCpuPercent = ((server.cpuSeconds() - before) / ((Date.now() - started) / 1000)) * 100;
  return { result, serverCpuPercent };
}

export type StreamsPhase = 'throughput' | 'latency' | 'lightning' | 'ilp';
export const STREAMS_PHASES: readonly StreamsPhase[] = ['throughput', 'latency', 'lightning', 'ilp'];

export async function runStreamsBenchmark(options: {
  secondsPerRun?: number;
  warmupS?: number;
  phases?: readonly StreamsPhase[];
  /** Only these stream counts in the throughput and latency runs (default: all). */
  streamCounts?: readonly number[];
  targets?: readonly Target[];
  log?: (line: string) => void;
} = {}): Promise<StreamsReport> {
  const phases = new Set(options.phases ?? STREAMS_PHASES);
  const counts = (all: readonly number[]) => all.filter((count) => !options.streamCounts || options.streamCounts.includes(count));
  const chosen = (target: Target) => !options.targets || options.targets.includes(target);
  const targets = (['echo', 'sluice'] as const).filter(chosen);
  // The durable echo only in the latency runs: at a fixed load it shows what the disk's syncs
  // alone cost an ack, beside Sluice, which waits for the same syncs.
  const latencyTargets = (['echo', 'durable-echo', 'sluice'] as const).filter(chosen);
  const seconds = options.secondsPerRun ?? 5;
  const warmupS = options.warmupS ?? 1;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-streams-'));
  const report: StreamsReport = {
    secondsPerRun: seconds, dataDirFs: filesystemOf(dataDir), database: process.env.BENCH_POSTGRES_URL ? 'postgres' : 'sqlite', throughput: [], latency: [], lightning: [], ilp: [],
  };
  const started: Child[] = [];
  const sockets: { close(): void }[] = [];
  try {
    const sluice = await startSluice(dataDir);
    started.push(sluice);
    const echo = await startEcho();
    started.push(echo);
    // Its file in the same data dir as Sluice's database, so both sync the same filesystem.
    const durableEcho = await startEcho(dataDir);
    started.push(durableEcho);
    const app = await http(`${sluice.url}/v1/apps`, 'POST', ADMIN_KEY, { name: 'streams bench' });
    const apiKey = app.api_key as string;
    const wsUrl = sluice.url.replace('http', 'ws') + '/v1/ws';
    const echoUrl = (target: Target) => `ws://127.0.0.1:${(target === 'echo' ? echo : durableEcho).port}/v1/ws`;
    const setup = createRequester(await openConnection(wsUrl, 'sluice.v1', { authorization: `Bearer ${apiKey}` }));
    sockets.push(setup);

    log('creating 1000 streams');
    const maxStreams = Math.max(...STREAM_COUNTS);
    const streamIds: string[] = [];
    for (let batch = 0; batch < maxStreams; batch += 100) {
      const created = await Promise.all(Array.from({ length: Math.min(100, maxStreams - batch) }, () =>
        setup.request({ type: 'stream.create', prices: { hit: '1000' }, maximum_msat: '1000000000000000' })));
      for (const reply of created) {
        if (reply.type !== 'ok') throw new Error(`stream.create refused: ${JSON.stringify(reply)}`);
        streamIds.push(reply.stream.id);
      }
    }

    const connect = async (target: Target, streams: number): Promise<LoadConnection[]> => {
      const count = Math.ceil(streams / STREAMS_PER_CONNECTION);
      return Promise.all(Array.from({ length: count }, async (_, index) => {
        const ws = target === 'sluice'
          ? await openConnection(wsUrl, 'sluice.v1', { authorization: `Bearer ${apiKey}` })
          : await openConnection(echoUrl(target), 'sluice.v1');
        sockets.push(ws);
        return { ws, streamIds: streamIds.slice(0, streams).filter((_, i) => i % count === index) };
      }));
    };
    const server = (target: Target) => (target === 'sluice' ? sluice : target === 'echo' ? echo : durableEcho);
    const closeAll = (connections: LoadConnection[]) => connections.forEach((conn) => conn.ws.close());

    let runTag = 0;
    for (const streams of phases.has('throughput') ? counts(STREAM_COUNTS) : []) {
      for (const target of targets) {
        log(`closed loop: ${target}, ${streams} streams`);
        const connections = await connect(target, streams);
        const measured = await measure(server(target), () =>
          closedLoop({ target, connections, window: WINDOW, warmupS, seconds, refPrefix: `t${++runTag}` }));
        report.throughput.push({ target, streams, connections: connections.length, ...measured });
        closeAll(connections);
      }
    }

    for (const streams of phases.has('latency') ? counts([100, 1000]) : []) {
      for (const target of latencyTargets) {
        log(`open loop at ${OFFERED_PER_S}/s: ${target}, ${streams} streams`);
        const connections = await connect(target, streams);
        const measured = await measure(server(target), () =>
          openLoop({ target, connections, ratePerS: OFFERED_PER_S, warmupS, seconds, refPrefix: `o${++runTag}` }));
        report.latency.push({ target, streams, connections: connections.length, ...measured });
        closeAll(connections);
      }
    }
    await echo.stop();
    await durableEcho.stop();

    const wallets = await http(`${sluice.url}/v1/devnet/wallets`, 'GET', apiKey);
    const payoutPubkey = (wallets.wallets as { name: string; pubkey: string }[]).find((wallet) => wallet.name === 'carol')?.pubkey;
    if (!payoutPubkey) throw new Error('no devnet wallet carol');
    for (const terms of phases.has('lightning') ? GAME_TERMS : []) {
      log(`Lightning payments: ${terms.name}`);
      report.lightning.push(await runLightningBenchmark({
        app: setup,
        async openPayer(payerToken) {
          const requester = createRequester(await openConnection(wsUrl, 'sluice.v1', { authorization: `Bearer ${payerToken}` }));
          sockets.push(requester);
          return requester;
        },
        async pay(paymentRequest) {
          await http(`${sluice.url}/v1/devnet/pay`, 'POST', apiKey, { payment_request: paymentRequest, wallet: 'alice' });
        },
        payoutPubkey,
      }, terms, { streams: 10, chargesPerStream: 2000, refPrefix: `l${++runTag}` }));
    }
  } finally {
    for (const socket of sockets) socket.close();
    // Each stopped (Sluice's database dropped) whatever the others do; a failure to stop is
    // reported after the run's own error, never instead of it.
    const stopped = await Promise.allSettled(started.reverse().map((child) => child.stop()));
    fs.rmSync(dataDir, { recursive: true, force: true });
    for (const result of stopped) if (result.status === 'rejected') log(`a benchmark process did not stop cleanly: ${String(result.reason)}`);
  }

  for (const connections of phases.has('ilp') ? ILP_CONNECTIONS : []) {
    log(`ILP STREAM: ${connections} connections`);
    report.ilp.push(await runIlpBenchmark({ connections, packetsPerConnection: Math.ceil(ILP_PACKETS / connections) }));
  }
  return report;
}

// ---- markdown ----

const int = (value: number) => Math.round(value).toLocaleString('en-US');
const ms = (value: number) => (Number.isNaN(value) ? '—' : value < 10 ? value.toFixed(2) : value.toFixed(1));
const refusalText = (refusals: Record<string, number>) => {
  const entries = Object.entries(refusals);
  return entries.length === 0 ? '0' : entries.map(([code, count]) => `${count} ${code}`).join(', ');
};
const met = (ok: boolean) => (ok ? '**met**' : '**missed**');
const serverName = (target: Target) => (target === 'sluice' ? 'Sluice' : target === 'echo' ? 'bare ws echo' : 'ws echo after fdatasync');
/**
 * Server CPU time per acknowledged message (µs): less noisy than rates on a shared machine.
 * The CPU share covers the warm-up too, so this slightly overstates it (same for every row).
 */
const cpuPerAck = (r: ThroughputRow) => (r.result.perSecond > 0 ? ((r.serverCpuPercent / 100 / r.result.perSecond) * 1e6).toFixed(1) : '—');

export function streamsMarkdown(report: StreamsReport): string {
  const lines: string[] = [];
  const row = (cells: (string | number)[]) => lines.push(`| ${cells.join(' | ')} |`);
  const echoFor = (streams: number) => report.throughput.find((r) => r.target === 'echo' && r.streams === streams);
  const sluiceFor = (streams: number) => report.throughput.find((r) => r.target === 'sluice' && r.streams === streams);
  const ilpFor = (connections: number) => report.ilp.find((r) => r.connections === connections);

  lines.push('### Streams: durable charges per second over loopback WebSocket', '');
  lines.push(
    `Closed loop, ${report.secondsPerRun} s per run after a 1 s warm-up. One WebSocket connection per ${STREAMS_PER_CONNECTION} streams,`,
    `each keeping ${WINDOW} requests in flight (the SDK's default), charges spread round-robin over its streams; every`,
    'charge has its own new ref. Sluice acknowledges a charge only once the commit holding its row is durable',
    report.database === 'postgres'
      ? '(PostgreSQL on this machine, BENCH_POSTGRES_URL: fsync and synchronous_commit as the server has them; the server CPU columns leave out PostgreSQL\'s processes). The echo server gets the same messages on the same connections'
      : `(SQLite, WAL, synchronous=FULL, data dir on ${report.dataDirFs}). The echo server gets the same messages on the same connections`,
    'and sends each back unread. CPU: share of one core, over the run.',
    '',
  );
  row(['streams', 'connections', 'server', 'acked per second', 'p50 ms', 'p99 ms', 'refused', 'server CPU', 'server CPU µs per ack', 'client CPU', 'Sluice / echo']);
  row(['---:', '---:', '---', '---:', '---:', '---:', '---', '---:', '---:', '---:', '---:']);
  for (const r of report.throughput) {
    const echo = echoFor(r.streams);
    const ratio = r.target === 'sluice' && echo ? `${((r.result.perSecond / echo.result.perSecond) * 100).toFixed(0)}%` : '';
    row([int(r.streams), r.connections, serverName(r.target), int(r.result.perSecond), ms(r.result.p50Ms), ms(r.result.p99Ms),
      refusalText(r.result.refusals), `${r.serverCpuPercent.toFixed(0)}%`, cpuPerAck(r), `${r.result.clientCpuPercent.toFixed(0)}%`, ratio]);
  }

  lines.push('', `### Streams: ack latency at an offered load of ${int(OFFERED_PER_S)} charges per second`, '');
  lines.push(
    `Open loop: charges are sent on a fixed schedule (${int(OFFERED_PER_S)}/s over all connections, round-robin over`,
    'connections and streams, whatever the replies do); latency runs from the scheduled send time to the ack, so it',
    'includes any delay of the client itself (its timer wakes every ~1 ms and sends what is due). "ws echo after',
    'fdatasync" is the echo server again, replying only once the messages are synced to a file in Sluice\'s data dir',
    '(one `fdatasync` at a time, each for everything received while the last one ran): the least any server must',
    'wait before it acknowledges what is durable, so its p99 is the disk\'s share of Sluice\'s.',
    '',
  );
  row(['streams', 'connections', 'server', 'offered per second', 'acked per second', 'p50 ms', 'p99 ms', 'max ms', 'refused', 'server CPU', 'server CPU µs per ack']);
  row(['---:', '---:', '---', '---:', '---:', '---:', '---:', '---:', '---', '---:', '---:']);
  for (const r of report.latency) {
    row([int(r.streams), r.connections, serverName(r.target), int(r.result.offered / r.result.seconds), int(r.result.perSecond),
      ms(r.result.p50Ms), ms(r.result.p99Ms), ms(r.result.maxMs), refusalText(r.result.refusals), `${r.serverCpuPercent.toFixed(0)}%`, cpuPerAck(r)]);
  }

  lines.push('', '### Streams: Lightning payments per million charges', '');
  lines.push(
    'Sluice has no default thresholds (`settle_to_msat` 0 means no invoices), so these use a game\'s terms: prepaid',
    '(`maximum_msat` 0), a top-up invoice when the balance falls under `settle_threshold_msat`, for the amount that',
    'brings it back to `settle_to_msat`, no payout until close (`payout_threshold_msat` 0). 10 streams, each charged',
    '2,000 times (one charge in flight per stream), each with a payer that pays every invoice from a devnet wallet as',
    'soon as it is pushed, then closes the stream (one refund payout). Lightning payments = invoices paid + payouts;',
    'per million = payments × 10^6 / charges. Steady state: a top-up pays for ⌊(settle_to − threshold) / price⌋ + 1',
    'charges, so a long stream needs 10^6 / that many top-ups per million charges, plus one payout per stream.',
    '',
  );
  row(['terms', 'price msat', 'threshold → settle_to msat', 'charges', 'invoices paid', 'payouts', 'refused (retried)', 'Lightning payments per million charges', 'steady state per million']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---', '---:', '---:']);
  for (const r of report.lightning) {
    const perMillion = ((r.invoicesPaid + r.payouts) * 1e6) / r.charges;
    row([r.terms.name, int(Number(r.terms.priceMsat)), `${int(Number(r.terms.settleThresholdMsat))} → ${int(Number(r.terms.settleToMsat))}`, int(r.charges),
      int(r.invoicesPaid), int(r.payouts), refusalText(r.refusals), int(perMillion), int(1e6 / r.chargesPerTopUp)]);
  }

  lines.push('', '### Comparison: ILP STREAM (ilp-protocol-stream 2.7.1) between two in-process plugins', '');
  lines.push(
    `Sender and receiver in one process, joined by a minimal in-memory connector (no socket, no disk). The connector`,
    `rejects Prepares above ${int(MAX_PACKET_UNITS)} units with F08, so STREAM sends packets of ${int(MAX_PACKET_UNITS)} units: one money packet per`,
    'charge. Counted: Prepares with an amount that were fulfilled, during `sendTotal` on already-connected connections',
    '(the exchange-rate probe\'s test packets are rejected and not counted). STREAM sends one packet at a time per',
    `connection. ${int(ILP_PACKETS)} packets per run.`,
    '',
  );
  row(['connections', 'packets fulfilled', 'seconds', 'packets per second']);
  row(['---:', '---:', '---:', '---:']);
  for (const r of report.ilp) row([int(r.connections), int(r.packets), r.seconds.toFixed(2), int(r.packetsPerSecond)]);

  lines.push('', '### Streams: targets', '');
  row(['target', 'measured', 'result']);
  row(['---', '---', '---']);
  for (const streams of STREAM_COUNTS) {
    const s = sluiceFor(streams);
    const e = echoFor(streams);
    if (!s || !e) continue;
    const ratio = s.result.perSecond / e.result.perSecond;
    row([`≥ 50% of the echo server's rate, ${int(streams)} stream${streams > 1 ? 's' : ''}`,
      `${int(s.result.perSecond)} / ${int(e.result.perSecond)} = ${(ratio * 100).toFixed(0)}%`,
      ratio >= 0.5 ? met(true) : `${met(false)} (${(ratio / 0.5 * 100).toFixed(0)}% of the target)`]);
  }
  for (const streams of STREAM_COUNTS) {
    const s = sluiceFor(streams);
    const ilp = ilpFor(streams) ?? ilpFor(Math.max(...report.ilp.map((r) => r.connections)));
    if (!s || !ilp) continue;
    const ratio = s.result.perSecond / ilp.packetsPerSecond;
    row([`≥ 10× ILP STREAM's packets per second, ${int(streams)} stream${streams > 1 ? 's' : ''} (vs ${int(ilp.connections)} STREAM connection${ilp.connections > 1 ? 's' : ''})`,
      `${int(s.result.perSecond)} / ${int(ilp.packetsPerSecond)} = ${ratio.toFixed(1)}×`,
      ratio >= 10 ? met(true) : `${met(false)} (${(ratio / 10 * 100).toFixed(0)}% of the target)`]);
  }
  for (const r of report.latency.filter((r) => r.target === 'sluice')) {
    const refused = Object.values(r.result.refusals).reduce((a, b) => a + b, 0);
    const ok = r.result.p99Ms <= 10 && refused === 0;
    const durable = report.latency.find((d) => d.target === 'durable-echo' && d.streams === r.streams);
    const disk = durable ? ` (the echo after fdatasync: ${ms(durable.result.p99Ms)} ms)` : '';
    row([`p99 ≤ 10 ms at ${int(OFFERED_PER_S)} charges/s, ${int(r.streams)} streams`, `p99 ${ms(r.result.p99Ms)} ms${refused ? `, ${refused} refused` : ''}${disk}`,
      ok ? met(true) : `${met(false)} (${(r.result.p99Ms / 10).toFixed(1)}× the limit)`]);
  }
  lines.push('');
  return lines.join('\n');
}

function argValue(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const phases = argValue(args, '--phases')?.split(',') as StreamsPhase[] | undefined;
  const streamCounts = argValue(args, '--streams')?.split(',').map(Number);
  const targets = argValue(args, '--targets')?.split(',') as Target[] | undefined;
  const report = await runStreamsBenchmark({
    secondsPerRun: Number(argValue(args, '--seconds') ?? 5), ...(phases ? { phases } : {}), ...(streamCounts ? { streamCounts } : {}), ...(targets ? { targets } : {}),
  });
  const json = argValue(args, '--json');
  if (json) fs.writeFileSync(json, JSON.stringify(report, (_, value) => (typeof value === 'bigint' ? value.toString() : value), 2));
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write([
    `Run on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM,`,
    `${os.type()} ${os.release()}, Node ${process.version}. Command: \`npx tsx packages/server/bench/streams.ts${args.length ? ' ' + args.join(' ') : ''}\`.`,
    '',
    streamsMarkdown(report),
  ].join('\n'));
}
