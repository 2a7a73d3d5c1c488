/**
 * The stream charge path without the socket: a working tool for A/B comparisons of the
 * service, the group commit and the SQLite money store (not a recorded benchmark: the issue's
 * figures are the WebSocket ones of streams.ts). It has no load generator competing for the
 * cores and no socket, so what it measures is the server's own work; its CPU figure counts
 * every thread of the process (the archive worker and the WAL syncs included). It still moves
 * with the shared 2-core VM (two runs of one build differed by up to 20% within an hour on
 * 2026-11-23): alternate the two builds and repeat, and trust only differences that hold.
 *
 *   npm run build && node --max-semi-space-size=64 --import tsx packages/server/bench/streams-charge-path.ts \
 *     [--streams 100] [--charges 300000] [--window 256] [--sweeps 0]
 *
 * With --sweeps K it measures the sweep instead: K rounds of one charge on every stream, in a
 * random order (as players charge), then one sweep of them all (settleCharges). Per sweep: its
 * wall time, the bytes the process wrote meanwhile (/proc/self/io wchar: the WAL frames of the
 * sweep's transactions, 4,120 bytes a page) and the event loop's longest pause (about its
 * longest transaction; monitorEventLoopDelay at 1 ms resolution), the medians printed.
 *
 * It loads the built server (packages/server/dist, as `npm start` runs it) relative to this
 * file, so in a second checkout (git worktree) it measures that checkout's build. SQLite in a
 * fresh temp dir, devnet Lightning; streams postpaid with a debt limit no run reaches; each
 * charge a new ref, `window` charges in flight, spread round-robin over the streams.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import type { createSluice as CreateSluice } from '../src/app.js';
import type { loadConfig as LoadConfig } from '../src/config.js';
import type { createInputFromBody as CreateInputFromBody } from '../src/streams/routes.js';
import { quantile } from './quantile.js';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist');
const load = async <T>(module: string, name: string): Promise<T> => (await import(pathToFileURL(path.join(dist, module)).href))[name] as T;
const createSluice = await load<typeof CreateSluice>('app.js', 'createSluice');
const loadConfig = await load<typeof LoadConfig>('config.js', 'loadConfig');
const createInputFromBody = await load<typeof CreateInputFromBody>('streams/routes.js', 'createInputFromBody');

const arg = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
};
const streamCount = arg('--streams', 100);
const charges = arg('--charges', 300_000);
const window = arg('--window', 256);
const sweeps = arg('--sweeps', 0);

/** Bytes this process has passed to write() so far (Linux). */
const writtenBytes = (): number => Number(/^wchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))?.[1] ?? Number.NaN);
const median = (values: number[]): number => quantile(values, 0.5);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-charge-path-'));
const loaded = loadConfig({ SLUICE_DATA_DIR: dir, SLUICE_LIGHTNING: 'devnet', SLUICE_DEVNET_SEED: 'charge-path', SLUICE_ADMIN_KEY: 'sa_charge-path-0123456789abcdef', PORT: '0' }, dir);
if (!loaded.ok) throw new Error(`config: ${JSON.stringify(loaded)}`);
const sluice = await createSluice(loaded.config, { logger: pino({ level: 'error' }) });
try {
  const { app } = await sluice.apps.createApp('charge path');
  const streamIds: string[] = [];
  for (let i = 0; i < streamCount; i += 1) {
    const created = await sluice.streams.create(app.id, createInputFromBody({ prices: { hit: '1000' }, maximum_msat: '1000000000000000' }, Date.now()));
    if (!created.ok) throw new Error(`stream.create: ${created.error}`);
    streamIds.push(created.stream.id);
  }
  if (sweeps > 0) {
    const ms: number[] = [];
    const bytes: number[] = [];
    const longest: number[] = [];
    // A sweep settles what the timer has not yet: the first round's charges run it first.
    await sluice.streams.settleCharges();
    for (let round = 0; round < sweeps; round += 1) {
      const order = [...streamIds].sort(() => Math.random() - 0.5);
      await Promise.all(order.map(async (id, i) => {
        const ack = await sluice.streams.charge(id, { event: 'hit', ref: `s${round}-${i}` });
        if (!ack.ok) throw new Error(`charge refused: ${ack.error}`);
      }));
      const pauses = monitorEventLoopDelay({ resolution: 1 });
      const b0 = writtenBytes();
      const t0 = performance.now();
      pauses.enable();
      await sluice.streams.settleCharges();
      pauses.disable();
      ms.push(performance.now() - t0);
      bytes.push(writtenBytes() - b0);
      longest.push(pauses.max / 1e6);
    }
    process.stdout.write(`${streamCount} streams, ${sweeps} sweeps: median ${median(ms).toFixed(1)} ms and ${(median(bytes) / 1024).toFixed(0)} KiB written per sweep `
      + `(${(median(bytes) / streamCount).toFixed(0)} bytes per stream); the event loop's longest pause in a sweep: median ${median(longest).toFixed(1)} ms, max ${Math.max(...longest).toFixed(1)} ms\n`);
  } else {
    await chargeLoop(streamIds);
  }
} finally {
  await sluice.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

async function chargeLoop(streamIds: readonly string[]): Promise<void> {
  let sent = 0;
  let answered = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const next = (): void => {
      const n = sent;
      sent += 1;
      sluice.streams.charge(streamIds[n % streamCount] as string, { event: 'hit', ref: `p${n}` }).then((ack) => {
        if (!ack.ok) throw new Error(`charge refused: ${ack.error}`);
        answered += 1;
        if (sent < charges) next();
        else if (answered === charges) resolve();
      }).catch(reject);
    };
    for (let i = 0; i < Math.min(window, charges); i += 1) next();
  });
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${streamCount} streams, ${charges} charges, window ${window}: ${Math.round(charges / (wallUs / 1e6))} charges/s, `
    + `${(wallUs / charges).toFixed(2)} µs wall and ${((cpu.user + cpu.system) / charges).toFixed(2)} µs CPU (all threads) per charge\n`);
}
