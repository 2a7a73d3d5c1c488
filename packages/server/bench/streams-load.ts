/**
 * The load generator of the streams benchmark: raw `ws` clients (not the SDK) sending
 * sluice.v1 `charge` requests, the same bytes to Sluice and to the bare echo server, so
 * the two differ only in what the server does with a message.
 *
 * - closed loop: every connection keeps `window` requests in flight (a new one goes out
 *   for each reply), spread round-robin over its streams; counted are replies received
 *   during the measured seconds, after a warm-up.
 * - open loop: requests go out on a fixed schedule (an offered load in charges per
 *   second, whatever the replies do); a request's latency runs from its scheduled time,
 *   not from when the event loop got round to sending it, so a stalled client or server
 *   cannot hide its own delay (coordinated omission).
 *
 * A Sluice reply counts as an acknowledged charge only when it is `ok` with
 * `replayed: false` (every ref is new, so a replay would be a bug); an `error` is counted
 * by its code. An echo reply counts when it is the request itself (type `charge`).
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { quantileOfSorted } from './quantile.js';

/** `echo` and `durable-echo`: streams-echo.ts without and with `--durable`. */
export type Target = 'sluice' | 'echo' | 'durable-echo';

export interface LoadConnection {
  ws: WebSocket;
  streamIds: string[];
}

export interface LoadResult {
  acked: number;
  seconds: number;
  perSecond: number;
  refusals: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Open loop: requests offered during the measured seconds (0 for a closed loop). */
  offered: number;
  clientCpuPercent: number;
}

export async function openConnection(url: string, protocol: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocol, { perMessageDeflate: false, headers });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

export interface Requester {
  /** Sends a request with a fresh id; resolves with its reply (`ok` or `error`). */
  request(message: Record<string, unknown>): Promise<Record<string, any>>;
  /** Every event pushed on this connection. */
  onEvent(listener: (event: Record<string, any>) => void): void;
  close(): void;
}

/** Request and reply over one connection, matched by id (setup traffic, not the measured load). */
export function createRequester(ws: WebSocket): Requester {
  const pending = new Map<string, (reply: Record<string, any>) => void>();
  const eventListeners: ((event: Record<string, any>) => void)[] = [];
  let counter = 0;
  let closedWith: string | null = null;
  ws.on('close', (code, reason) => {
    closedWith = `${code} ${reason.toString()}`;
  });
  ws.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString()) as Record<string, any>;
    if (message.type === 'event') {
      for (const listener of eventListeners) listener(message.event);
      return;
    }
    const resolve = pending.get(message.id);
    if (!resolve) throw new Error(`a reply to an unknown id: ${data.toString().slice(0, 200)}`);
    pending.delete(message.id);
    resolve(message);
  });
  return {
    request(message) {
      const id = `r${++counter}`;
      if (closedWith !== null) return Promise.reject(new Error(`the connection was closed: ${closedWith}`));
      return new Promise((resolve, reject) => {
        pending.set(id, resolve);
        ws.send(JSON.stringify({ ...message, id }), (error) => error && reject(error));
      });
    },
    onEvent(listener) {
      eventListeners.push(listener);
    },
    close() {
      ws.close();
    },
  };
}

/** The charge message, written the same way for both servers. */
function chargeMessage(id: string, streamId: string, ref: string): string {
  return `{"type":"charge","id":"${id}","stream_id":"${streamId}","event":"hit","ref":"${ref}"}`;
}

class Latencies {
  private values = new Float64Array(1 << 20);
  private count = 0;
  add(ms: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count++] = ms;
  }
  reset(): void {
    this.count = 0;
  }
  quantile(q: number): number {
    return quantileOfSorted(this.values.slice(0, this.count).sort(), q);
  }
}

interface Tally {
  measuring: boolean;
  acked: number;
  refusals: Record<string, number>;
  latencies: Latencies;
}

/** Reads one reply; returns the id it answers. */
function tallyReply(target: Target, data: Buffer, tally: Tally, timing: (id: string) => { ms: number; counted: boolean }): void {
  const reply = JSON.parse(data.toString()) as { type: string; id: string | null; replayed?: boolean; error?: { code: string } };
  const { ms, counted } = timing(reply.id ?? '');
  if (!counted) return;
  const acked = target !== 'sluice' ? reply.type === 'charge' : reply.type === 'ok' && reply.replayed === false;
  if (acked) {
    tally.acked += 1;
    tally.latencies.add(ms);
  } else {
    const code = reply.type === 'error' ? (reply.error?.code ?? 'error') : reply.type === 'ok' ? 'replayed' : `unexpected ${reply.type}`;
    tally.refusals[code] = (tally.refusals[code] ?? 0) + 1;
  }
}

function cpuSince(start: NodeJS.CpuUsage, seconds: number): number {
  const used = process.cpuUsage(start);
  return ((used.user + used.system) / 1e6 / seconds) * 100;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until no request is in flight on any connection (at most timeoutMs). */
async function drain(inFlight: () => number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (inFlight() > 0 && Date.now() < until) await sleep(5);
  if (inFlight() > 0) throw new Error(`${inFlight()} requests still unanswered ${timeoutMs} ms after the run`);
}

export async function closedLoop(options: {
  target: Target;
  connections: LoadConnection[];
  window: number;
  warmupS: number;
  seconds: number;
  refPrefix: string;
}): Promise<LoadResult> {
  const tally: Tally = { measuring: false, acked: 0, refusals: {}, latencies: new Latencies() };
  let running = true;
  let inFlight = 0;
  const listeners: (() => void)[] = [];
  options.connections.forEach((conn, connIndex) => {
    const sentAt = new Map<string, number>();
    let next = 0;
    const sendOne = () => {
      const n = next++;
      const id = String(n);
      const streamId = conn.streamIds[n % conn.streamIds.length] as string;
      sentAt.set(id, performance.now());
      inFlight += 1;
      conn.ws.send(chargeMessage(id, streamId, `${options.refPrefix}-${connIndex}-${n}`));
    };
    const onMessage = (data: Buffer) => {
      tallyReply(options.target, data, tally, (id) => {
        const at = sentAt.get(id);
        if (at === undefined) throw new Error(`a reply to an unknown id ${id}`);
        sentAt.delete(id);
        return { ms: performance.now() - at, counted: tally.measuring };
      });
      inFlight -= 1;
      if (running) sendOne();
    };
    conn.ws.on('message', onMessage);
    listeners.push(() => conn.ws.off('message', onMessage));
    for (let i = 0; i < options.window; i += 1) sendOne();
  });
  await sleep(options.warmupS * 1000);
  tally.measuring = true;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await sleep(options.seconds * 1000);
  tally.measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const clientCpuPercent = cpuSince(cpu, seconds);
  running = false;
  await drain(() => inFlight, 30_000);
  for (const off of listeners) off();
  return {
    acked: tally.acked, seconds, perSecond: tally.acked / seconds, refusals: tally.refusals,
    p50Ms: tally.latencies.quantile(0.5), p99Ms: tally.latencies.quantile(0.99), maxMs: tally.latencies.quantile(1),
    offered: 0, clientCpuPercent,
  };
}

export async function openLoop(options: {
  target: Target;
  connections: LoadConnection[];
  ratePerS: number;
  warmupS: number;
  seconds: number;
  refPrefix: string;
}): Promise<LoadResult> {
  const tally: Tally = { measuring: false, acked: 0, refusals: {}, latencies: new Latencies() };
  let inFlight = 0;
  const intervalMs = 1000 / options.ratePerS;
  const start = performance.now();
  const endAt = start + (options.warmupS + options.seconds) * 1000;
  const measureFrom = start + options.warmupS * 1000;
  const listeners: (() => void)[] = [];
  const scheduled = new Map<string, number>();
  /** BENCH_LATENCY_TRACE (streams.ts): each ack's scheduled time and latency, when asked for. */
  const trace: string[] | null = process.env.BENCH_LATENCY_TRACE ? [] : null;
  let sent = 0;
  const connCount = options.connections.length;
  for (const conn of options.connections) {
    const onMessage = (data: Buffer) => {
      tallyReply(options.target, data, tally, (id) => {
        const at = scheduled.get(id);
        if (at === undefined) throw new Error(`a reply to an unknown id ${id}`);
        scheduled.delete(id);
        const ms = performance.now() - at;
        trace?.push(`${(at - start).toFixed(2)} ${ms.toFixed(2)}`);
        return { ms, counted: at >= measureFrom };
      });
      inFlight -= 1;
    };
    conn.ws.on('message', onMessage);
    listeners.push(() => conn.ws.off('message', onMessage));
  }
  let measuredStart = 0;
  let cpu: NodeJS.CpuUsage | null = null;
  // Request n is due at start + n × interval; the measured ones are those due in the window.
  while (performance.now() < endAt) {
    const now = performance.now();
    const due = Math.floor((now - start) / intervalMs);
    while (sent <= due) {
      const n = sent++;
      const at = start + n * intervalMs;
      if (at >= endAt) break;
      if (!tally.measuring && at >= measureFrom) {
        tally.measuring = true;
        measuredStart = sent - 1;
        cpu = process.cpuUsage();
      }
      const conn = options.connections[n % connCount] as LoadConnection;
      const k = Math.floor(n / connCount);
      const id = String(n);
      scheduled.set(id, at);
      inFlight += 1;
      conn.ws.send(chargeMessage(id, conn.streamIds[k % conn.streamIds.length] as string, `${options.refPrefix}-${n}`));
    }
    await sleep(1);
  }
  const seconds = options.seconds;
  const clientCpuPercent = cpu ? cpuSince(cpu, seconds) : 0;
  // Replies to requests sent in the window count even when they arrive after it.
  await drain(() => inFlight, 30_000);
  for (const off of listeners) off();
  if (trace) fs.writeFileSync(`${process.env.BENCH_LATENCY_TRACE}.${options.target}.${connCount}`, `# start ${performance.timeOrigin + start}\n${trace.join('\n')}\n`);
  return {
    acked: tally.acked, seconds, perSecond: tally.acked / seconds, refusals: tally.refusals,
    p50Ms: tally.latencies.quantile(0.5), p99Ms: tally.latencies.quantile(0.99), maxMs: tally.latencies.quantile(1),
    offered: sent - measuredStart, clientCpuPercent,
  };
}
