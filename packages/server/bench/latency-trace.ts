/**
 * Reads a latency trace written by the streams benchmark (BENCH_LATENCY_TRACE, streams.ts) and
 * says when the slow acks came: per window of the run, and folded over a period (a sweep's
 * interval, say), so a cause that recurs at a fixed rhythm shows as a peak at one phase.
 *
 *   npx tsx packages/server/bench/latency-trace.ts TRACE [--over 10] [--window 100]
 *     [--period 1000] [--bin 50] [--from 1000]
 *
 * --over: an ack slower than this many ms counts as slow. --from: acks scheduled before this
 * many ms are left out (the benchmark's 1 s warm-up, which its tables leave out too).
 * Windows holding more than 2% slow acks are listed.
 */
import fs from 'node:fs';
import { quantileOfSorted } from './quantile.js';

const args = process.argv.slice(2);
const file = args.find((arg, index) => !arg.startsWith('--') && !(args[index - 1] ?? '').startsWith('--'));
const option = (name: string, fallback: number, least: 'zero' | 'positive'): number => {
  const index = args.indexOf(name);
  const value = index >= 0 ? Number(args[index + 1]) : fallback;
  if (!Number.isFinite(value) || value < 0 || (least === 'positive' && value === 0)) {
    process.stderr.write(`latency-trace.ts: ${name} takes a number ${least === 'zero' ? '>= 0' : '> 0'}\n`);
    process.exit(2);
  }
  return value;
};
if (!file) {
  process.stderr.write('usage: latency-trace.ts TRACE [--over 10] [--window 100] [--period 1000] [--bin 50] [--from 1000]\n');
  process.exit(2);
}
const overMs = option('--over', 10, 'zero');
const windowMs = option('--window', 100, 'positive');
const periodMs = option('--period', 1000, 'positive');
const binMs = option('--bin', 50, 'positive');
const fromMs = option('--from', 1000, 'zero');

const latencies: number[] = [];
const windows = new Map<number, { acks: number; slow: number; maxMs: number }>();
const folded: number[] = new Array(Math.max(1, Math.ceil(periodMs / binMs))).fill(0);
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  if (line === '' || line.startsWith('#')) continue;
  const [scheduled, latency] = line.split(' ').map(Number) as [number, number];
  if (scheduled < fromMs) continue;
  latencies.push(latency);
  const key = Math.floor(scheduled / windowMs);
  const window = windows.get(key) ?? { acks: 0, slow: 0, maxMs: 0 };
  windows.set(key, window);
  window.acks += 1;
  window.maxMs = Math.max(window.maxMs, latency);
  if (latency > overMs) {
    window.slow += 1;
    folded[Math.floor((scheduled % periodMs) / binMs)]! += 1;
  }
}
if (latencies.length === 0) throw new Error(`no acks in ${file} from ${fromMs} ms on`);
latencies.sort((a, b) => a - b);
const quantile = (q: number): number => quantileOfSorted(latencies, q);
const slow = folded.reduce((sum, count) => sum + count, 0);
const out: string[] = [
  `${file}: ${latencies.length} acks from ${fromMs} ms on; p50 ${quantile(0.5).toFixed(2)} ms, p99 ${quantile(0.99).toFixed(2)} ms, max ${quantile(1).toFixed(2)} ms`,
  `${slow} acks over ${overMs} ms (${((100 * slow) / latencies.length).toFixed(2)}%)`,
  '',
  `windows of ${windowMs} ms with more than 2% of their acks over ${overMs} ms:`,
];
for (const [key, window] of [...windows].sort((a, b) => a[0] - b[0])) {
  if (window.slow > 0.02 * window.acks) out.push(`  ${String(key * windowMs).padStart(7)} ms  acks ${String(window.acks).padStart(5)}  slow ${String(window.slow).padStart(5)}  max ${window.maxMs.toFixed(1)} ms`);
}
out.push('', `acks over ${overMs} ms by phase of a ${periodMs} ms period (bins of ${binMs} ms):`);
out.push(folded.map((count, index) => `${index * binMs}: ${count}`).join('  '));
process.stdout.write(`${out.join('\n')}\n`);
