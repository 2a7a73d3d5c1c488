/**
 * Issue 4's gateway benchmark: paid requests per second through `sluice gateway` (each
 * request carries the next hash-chain link, made per request by autocannon's
 * `setupRequest`) against the same gateway's unpriced route to the same upstream, in one
 * run. Target: paid >= 80% of unpriced.
 *
 * Setup, all on loopback: the upstream is a bare node:http server in its own process;
 * `sluice gateway --config` (the built CLI, devnet, SQLite in a temp dir) in another;
 * autocannon in this one. The server verifies each link with one SHA-256 and makes the
 * new index durable (group commit) before forwarding.
 *
 * A chain accepts its links strictly in order, so each connection pays with its own chain:
 * the load is `connections` autocannon instances of one connection each (pipelining 1),
 * run at the same time; the unpriced run has the same shape. Links are computed before the
 * run (the client's cost, not the server's); the header is built per request.
 *
 * Run alone: `npm run build && npx tsx packages/server/bench/gateway.ts [--seconds N] [--connections N] [--cpu-prof DIR]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { SERVER_NODE_FLAGS } from '../src/cli/node-flags.js';
import { formatChainHeader } from '../src/paycall/chain/math.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../dist/cli/main.js');
const ADMIN_KEY = `sa_bench-${randomBytes(12).toString('hex')}`;
/** Price of the paid route, and the chain step price: one step per call. */
const PRICE_MSAT = 10n;

export interface GatewayBenchRow {
  /** `direct`: the upstream without the gateway, for scale (the client's and upstream's limit). */
  route: 'direct' | 'unpriced' | 'paid';
  requestsPerS: number;
  /** Mean over connections of each connection's latency percentile, in ms. */
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  errors: number;
  gatewayCpuPercent: number;
  /**
   * Gateway process CPU time per request, in microseconds: less sensitive to a loaded machine
   * than requests/s (which then measures the scheduler and, on the paid route, the fsync).
   */
  gatewayCpuUsPerRequest: number;
}

export interface GatewayBenchReport {
  seconds: number;
  connections: number;
  dataDirFs: string;
  rows: GatewayBenchRow[];
  /** paid requests/s ÷ unpriced requests/s. */
  paidShare: number;
}

interface Child {
  child: ChildProcess;
  output(): string;
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
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, clock ticks of 10 ms
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
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

async function waitForOk(url: string, child: Child, what: string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.child.exitCode !== null) throw new Error(`${what} exited:\n${child.output()}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${what} did not answer ${url} within 30 s:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function filesystemOf(dir: string): string {
  const type = fs.statfsSync(dir).type;
  const names: Record<number, string> = { 0xef53: 'ext4', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs (no real fsync!)', 0x794c7630: 'overlayfs' };
  return names[type] ?? `filesystem type 0x${type.toString(16)}`;
}

const UPSTREAM_SCRIPT = `
const http = require('node:http');
const body = JSON.stringify({ ok: true });
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); })
  .listen(Number(process.argv[1]), '127.0.0.1');
`;

async function json(url: string, method: string, body: unknown, key?: string): Promise<any> {
  const response = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  const parsed = await response.json();
  if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

/** The links w_0..w_steps of a chain, 32 bytes each in one buffer (w_i at i x 32). */
function chainLinks(seed: Buffer, steps: number): Buffer {
  const links = Buffer.allocUnsafe((steps + 1) * 32);
  let link = seed;
  for (let index = steps; index >= 0; index--) {
    link.copy(links, index * 32);
    link = createHash('sha256').update(link).digest();
  }
  return links;
}

/** Buys and pays one chain through the gateway; returns its id and links. */
async function buyChain(gatewayUrl: string, sluiceUrl: string, steps: number): Promise<{ id: string; links: Buffer; steps: number }> {
  const offer = (await fetch(`${gatewayUrl}/paid/x`)).headers.get('sluice-chain-offer') ?? '';
  const buy = /buy="([^"]+)"/.exec(offer)?.[1];
  const app = /app="([^"]+)"/.exec(offer)?.[1];
  if (!buy || !app) throw new Error(`no chain offer in the 402: ${offer}`);
  const links = chainLinks(randomBytes(32), steps);
  const chain = await json(buy, 'POST', { app_id: app, anchor: links.subarray(0, 32).toString('hex'), steps });
  await json(`${sluiceUrl}/v1/devnet/pay`, 'POST', { payment_request: chain.invoice.payment_request, wallet: 'alice' }, ADMIN_KEY);
  return { id: chain.chain_id, links, steps };
}

async function load(
  url: string,
  connections: number,
  seconds: number,
  headersFor: (connection: number) => (() => Record<string, string>) | null,
): Promise<{ requestsPerS: number; latencyP50Ms: number; latencyP99Ms: number; non2xx: number; errors: number }> {
  const results = await Promise.all(
    Array.from({ length: connections }, (_, connection) => {
      const next = headersFor(connection);
      return autocannon({
        url,
        connections: 1,
        pipelining: 1,
        duration: seconds,
        requests: [next === null ? { method: 'GET' } : { method: 'GET', setupRequest: (request) => ({ ...request, headers: { ...request.headers, ...next() } }) }],
      });
    }),
  );
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  return {
    requestsPerS: results.reduce((sum, result) => sum + result.requests.average, 0),
    latencyP50Ms: mean(results.map((result) => result.latency.p50)),
    latencyP99Ms: mean(results.map((result) => result.latency.p99)),
    non2xx: results.reduce((sum, result) => sum + result.non2xx, 0),
    errors: results.reduce((sum, result) => sum + result.errors + result.timeouts, 0),
  };
}

export async function runGatewayBenchmark(options: { seconds?: number; connections?: number; log?: (line: string) => void; cpuProfileDir?: string } = {}): Promise<GatewayBenchReport> {
  const seconds = options.seconds ?? 10;
  // A paid call waits for its index to be durable (one fsync per group commit), so paid
  // throughput is about connections / commit latency until the CPU is the limit: too few
  // connections would measure the disk, not the gateway.
  const connections = options.connections ?? 128;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-gateway-'));
  const [upstreamPort, apiPort, gatewayPort] = [await freePort(), await freePort(), await freePort()];
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const sluiceUrl = `http://127.0.0.1:${apiPort}`;
  const configFile = path.join(dataDir, 'gateway.json');
  fs.writeFileSync(configFile, JSON.stringify({
    listen: { host: '127.0.0.1', port: gatewayPort },
    upstream: `http://127.0.0.1:${upstreamPort}`,
    chain_step_msat: PRICE_MSAT.toString(),
    routes: [{ path: '/paid/*', price_msat: PRICE_MSAT.toString() }, { path: '/free/*', price_msat: '0' }],
  }));

  const upstream = track(spawn(process.execPath, ['-e', UPSTREAM_SCRIPT, String(upstreamPort)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  // --cpu-prof DIR: a V8 CPU profile of the gateway process (written when it exits) to open in DevTools.
  const profile = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.resolve(options.cpuProfileDir)];
  // With the server's Node.js flags, as the `sluice` command's shebang starts it (src/cli/node-flags.ts).
  const gateway = track(spawn(process.execPath, [...SERVER_NODE_FLAGS, ...profile, CLI, 'gateway', '--config', configFile], {
    env: {
      ...process.env, PORT: String(apiPort), HOST: '127.0.0.1', LOG_LEVEL: 'warn', SLUICE_DATA_DIR: path.join(dataDir, 'data'),
      SLUICE_ADMIN_KEY: ADMIN_KEY, SLUICE_DEVNET_SEED: 'sluice-bench', SLUICE_LIGHTNING: 'devnet',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  try {
    await waitForOk(`${gatewayUrl}/_sluice/health`, gateway, 'sluice gateway');
    // A generous bound on calls per connection; links are cheap to make before the run.
    // 1,000 calls per second per connection is far above what one connection gets here.
    const steps = Math.min(10_000_000, Math.max(2_000, seconds * 1_000));
    log(`buying ${connections} chains of ${steps} steps`);
    const chains = await Promise.all(Array.from({ length: connections }, () => buyChain(gatewayUrl, sluiceUrl, steps)));

    const rows: GatewayBenchRow[] = [];
    const measure = async (route: GatewayBenchRow['route'], run: () => ReturnType<typeof load>): Promise<void> => {
      const before = route === 'direct' ? 0 : gateway.cpuSeconds();
      const started = performance.now();
      const result = await run();
      const cpu = route === 'direct' ? 0 : (gateway.cpuSeconds() - before) / ((performance.now() - started) / 1000);
      rows.push({ route, ...result, gatewayCpuPercent: Math.round(cpu * 100), gatewayCpuUsPerRequest: result.requestsPerS > 0 ? Math.round((cpu / result.requestsPerS) * 1e6) : 0 });
      log(`${route}: ${Math.round(result.requestsPerS)} requests/s, non-2xx ${result.non2xx}, errors ${result.errors}`);
    };

    log('warm-up');
    await load(`${gatewayUrl}/free/x`, connections, 2, () => null);
    log(`upstream directly, ${connections} connections, ${seconds} s`);
    await measure('direct', () => load(`http://127.0.0.1:${upstreamPort}/free/x`, connections, seconds, () => null));
    log(`unpriced route, ${connections} connections, ${seconds} s`);
    await measure('unpriced', () => load(`${gatewayUrl}/free/x`, connections, seconds, () => null));
    log(`paid route, ${connections} connections, ${seconds} s`);
    await measure('paid', () =>
      load(`${gatewayUrl}/paid/x`, connections, seconds, (connection) => {
        const chain = chains[connection] as { id: string; links: Buffer; steps: number };
        let index = 0;
        return (): Record<string, string> => {
          index += 1;
          // Past the end the server refuses (chain_exhausted): counted as non-2xx, not hidden.
          if (index > chain.steps) return {};
          return { 'sluice-chain': formatChainHeader({ chainId: chain.id, index, link: chain.links.subarray(index * 32, index * 32 + 32) }) };
        };
      }),
    );
    const unpriced = rows.find((row) => row.route === 'unpriced') as GatewayBenchRow;
    const paid = rows.find((row) => row.route === 'paid') as GatewayBenchRow;
    return { seconds, connections, dataDirFs: filesystemOf(dataDir), rows, paidShare: paid.requestsPerS / unpriced.requestsPerS };
  } finally {
    await gateway.stop();
    await upstream.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

export function gatewayMarkdown(report: GatewayBenchReport): string {
  const cpuOf = (route: GatewayBenchRow['route']): number => report.rows.find((row) => row.route === route)?.gatewayCpuUsPerRequest ?? 0;
  const [paidCpu, unpricedCpu] = [cpuOf('paid'), cpuOf('unpriced')];
  const lines = [
    `### Gateway: paid vs unpriced requests per second (issue 4)`,
    '',
    `\`sluice gateway\` in front of a bare node:http upstream; autocannon with ${report.connections} connections (one chain each, pipelining 1), ${report.seconds} s per route; data dir on ${report.dataDirFs}. Paid calls carry a new \`Sluice-Chain\` link per request (one step, ${PRICE_MSAT} msat), verified and made durable before forwarding.`,
    '',
    '| route | requests/s | p50 ms | p99 ms | non-2xx | errors | gateway CPU | gateway CPU per request |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...report.rows.map((row) =>
      `| ${row.route === 'direct' ? 'upstream directly (no gateway)' : row.route} | ${Math.round(row.requestsPerS)} | ${row.latencyP50Ms.toFixed(1)} | ${row.latencyP99Ms.toFixed(1)} | ${row.non2xx} | ${row.errors} | ${row.route === 'direct' ? '-' : `${row.gatewayCpuPercent}%`} | ${row.route === 'direct' ? '-' : `${row.gatewayCpuUsPerRequest} µs`} |`),
    '',
    `Paid is ${(report.paidShare * 100).toFixed(1)}% of unpriced (target: >= 80%).`,
    `Gateway CPU per request: paid ${paidCpu} µs, unpriced ${unpricedCpu} µs (unpriced/paid ${(unpricedCpu / Math.max(1, paidCpu) * 100).toFixed(1)}%: the share a CPU-bound gateway would reach).`,
    '',
  ];
  return lines.join('\n');
}

function argValue(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const report = await runGatewayBenchmark({
    seconds: Number(argValue(args, '--seconds') ?? 10),
    connections: Number(argValue(args, '--connections') ?? 128),
    cpuProfileDir: argValue(args, '--cpu-prof'),
  });
  process.stdout.write(gatewayMarkdown(report));
}
